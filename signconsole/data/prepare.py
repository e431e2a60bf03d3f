"""Profile -> ready datasets: the one place a run's data is opened, checked and normalized."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from signconsole.config import Profile
from signconsole.data.augment import Augmentation
from signconsole.data.corpus import Corpus, CorpusError
from signconsole.data.dataset import BucketBatchSampler, SequenceDataset, padding_efficiency
from signconsole.data.normalize import FeatureStats, check_groups, ignored_groups
from signconsole.data.synthesis import Speller
from signconsole.data.vocabulary import Vocabulary
from signconsole.profile import resolve_path

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass
class PreparedData:
    root: Path
    vocabulary: Vocabulary
    train: SequenceDataset
    dev: SequenceDataset
    test: SequenceDataset | None
    stats: FeatureStats | None
    unit: str  # "letter" for the fingerspelling corpus, "gloss" otherwise
    batch_size: int = 16

    def summary(self) -> dict[str, object]:
        train_lengths = self.train.lengths()
        sampler = BucketBatchSampler(train_lengths, batch_size=self.batch_size, shuffle=False)
        splits = {"train": self.train, "dev": self.dev}
        if self.test is not None:
            splits["test"] = self.test
        return {
            "corpus": str(self.root),
            "sequences": {name: len(ds) for name, ds in splits.items()},
            "frames": {name: sum(ds.lengths()) for name, ds in splits.items()},
            "vocabulary": len(self.vocabulary) - 1,
            "unit": self.unit,
            "padding_efficiency": padding_efficiency(sampler.batches(), train_lengths),
            "skipped_too_long": {
                name: len(ds.skipped) for name, ds in splits.items() if ds.skipped
            },
            "unknown_glosses": {
                name: sum(ds.unknown.values()) for name, ds in splits.items() if ds.unknown
            },
        }


def corpus_directory(profile: Profile, progress: Progress | None = None) -> tuple[Path, str]:
    """Where the profile's corpus lives (building the built-in one on first use) and its unit."""
    if profile.data.corpus == "fingerspell":
        from signconsole.data.fingerspell import ensure_corpus

        report = (
            (lambda done, total: progress("building fingerspelling corpus", done, total))
            if progress
            else None
        )
        summary = ensure_corpus(profile.data.fingerspell, progress=report)
        return Path(summary.root), "letter"
    return resolve_path(profile, profile.data.corpus), "gloss"


def _speller(profile: Profile, corpus: Corpus, train: SequenceDataset) -> Speller:
    """The training split's speller: the stored train words, the held-out words to avoid."""
    config = profile.data.synthesis
    low, high = config.random_letters
    if not (0.0 <= config.random_share <= 1.0 and 1 <= low <= high and config.widen > 0):
        raise CorpusError(
            f"{profile.source or 'profile'}: data.synthesis needs 0 <= random_share <= 1, "
            f"1 <= random_letters[0] <= random_letters[1] and widen > 0; got {config}"
        )
    words = [entry.glosses for entry in train.entries]
    held = Corpus.open(corpus.root, ("dev", "test"))  # test too, even when not evaluated
    held_out = [glosses for split in ("dev", "test") for glosses in held.glosses(split)]
    letters = sum(len(word) for word in words)
    return Speller(
        profile.data.fingerspell,
        config,
        len(train),
        words,
        held_out,
        frames_per_letter=sum(train.length(i) for i in range(len(train))) / max(1, letters),
    )


def prepare_data(
    profile: Profile, progress: Progress | None = None, with_test: bool = True
) -> PreparedData:
    try:  # before anything is built or read
        check_groups(profile.data.ignore)
    except ValueError as error:  # an unknown group in data.ignore, or every group
        raise CorpusError(f"{profile.source or 'profile'}: {error}") from None
    root, unit = corpus_directory(profile, progress)
    splits = ("train", "dev", "test") if with_test else ("train", "dev")
    features = resolve_path(profile, profile.data.features) if profile.data.features else None
    corpus = Corpus.open(root, splits, features)
    vocabulary = Vocabulary.from_glosses(corpus.glosses("train"))
    data = profile.data

    def dataset(split: str, stats: FeatureStats | None) -> SequenceDataset:
        return SequenceDataset(
            corpus,
            split,
            vocabulary,
            data.normalization,
            stats,
            data.coordinates,
            data.max_frames,
            unknown_glosses="error" if split == "train" else "drop",
        )

    train = dataset("train", None)
    if data.synthesis.enabled and data.corpus == "fingerspell":
        # A folder corpus (a profile extending the demo with its own data.corpus) has no
        # lexicon to spell from: it trains on its stored files.
        train.synthesis = _speller(profile, corpus, train)
    if data.augment:
        train.augmentation = Augmentation(
            rotation_degrees=data.augment_rotation, noise=data.augment_noise
        )
    if len(train) == 0:
        raise CorpusError(f"{root}: the train split has no usable sequences")
    stats = None
    if data.normalization == "corpus_stats":
        if progress:
            progress("computing feature statistics on train", 0, 1)
        stats = train.compute_stats(data.ignore)
        train.stats = stats
        if train.synthesis is not None and "face" in ignored_groups(stats):
            # Only the face is left out of rendering: it is 468 of 543 landmarks, while the pose
            # carries the shoulders every body frame needs and a hand is 21 points (the
            # derivation skips any ignored group, whatever the speller renders).
            train.synthesis.leave_out_face()
    # data.ignore lives in the statistics: without corpus_stats there are none to hold it.
    dev = dataset("dev", stats)
    test = dataset("test", stats) if with_test else None
    for split in (train, dev, test):
        if split is not None:
            what = f"reading the {split.split} split"
            split.read_all(
                (lambda done, total, what=what: progress(what, done, total)) if progress else None
            )
    return PreparedData(root, vocabulary, train, dev, test, stats, unit, data.batch_size)

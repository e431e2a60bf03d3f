"""From corpus entries to padded, normalized batches.

`SequenceDataset` reads each feature file once (kept in memory as float16 landmarks, ~2 KB a
frame) and derives the 6516-vector on the fly; `collate` pads a batch and returns lengths. The
length-bucketed sampler keeps padding low: batches are drawn from sequences of similar length.
A training split may instead spell new sequences every epoch (`synthesis.Speller`); then the
stored files still serve statistics, checks and the doctor, and the speller serves batches.
`raw_item` + `collate_raw` give the landmarks themselves, padded, for the loader (`loader.py`),
which derives the features once per batch: on its threads, or on the GPU from float16 landmarks
(8x smaller than the 6516 floats).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.utils.data import Dataset, Sampler

from signconsole.data.augment import Augmentation, augmentation_generator
from signconsole.data.corpus import Corpus, CorpusError, Entry, frames_path
from signconsole.data.layout import LAYOUT, Columns
from signconsole.data.model_input import ModelInput
from signconsole.data.normalize import FeatureStats, StatsAccumulator, check_groups
from signconsole.data.readers import mapped_frame_count, read_mapped_features, read_sequence
from signconsole.data.synthesis import Speller
from signconsole.data.vocabulary import Vocabulary


@dataclass
class Item:
    id: str
    features: torch.Tensor | None  # [T, F] float32, normalized (raw items: stored, float16)
    targets: list[int]
    landmarks: torch.Tensor | None = None  # raw items: [T, 543, 3] float16
    mask: torch.Tensor | None = None  # raw items: [T, 543] bool
    columns: Columns | None = None  # features holds only these columns of the vector
    landmark_ids: torch.Tensor | None = None  # landmarks holds only these of the 543 (None: all)


@dataclass
class Batch:
    ids: list[str]
    features: torch.Tensor  # [B, T, F]
    lengths: torch.Tensor  # [B] int64
    targets: torch.Tensor  # [sum of target lengths] int64 (CTC concatenated form)
    target_lengths: torch.Tensor  # [B] int64
    # The features hold only these columns of the 6516-vector (the rest are 0): a compact
    # training batch for built-in models, whose fusion reads those columns alone. None: whole.
    columns: Columns | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return replace(
            self,
            # lengths stay on CPU: CTC and packing want them there
            features=self.features.to(device, non_blocking=non_blocking),
        )

    @property
    def frames(self) -> int:
        return int(self.lengths.sum())


class SequenceDataset(Dataset):
    def __init__(
        self,
        corpus: Corpus,
        split: str,
        vocabulary: Vocabulary,
        normalization: str = "none",
        stats: FeatureStats | None = None,
        coordinates: str = "raw",
        max_frames: int = 0,
        entries: list[Entry] | None = None,
        unknown_glosses: str = "error",
        augmentation: Augmentation | None = None,
    ) -> None:
        """`unknown_glosses`: "error" (train: the vocabulary is built from it) or "drop" (dev/test:
        a gloss the vocabulary lacks is left out of the loss targets and counted in
        `unknown`; WER still scores it against the full reference, as an error)."""
        self.corpus, self.split = corpus, split
        self.vocabulary = vocabulary
        self.normalization, self.stats, self.coordinates = normalization, stats, coordinates
        entries = list(corpus.splits[split] if entries is None else entries)
        self.paths = [corpus.feature_path(split, entry) for entry in entries]
        self.entries = entries
        self.augmentation = augmentation  # training split only; applied on every load
        self.synthesis: Speller | None = None  # training split only: new sequences every epoch
        self.epoch = 0  # seeds augmentation and synthesis, so every epoch sees new data
        self.unknown: Counter[str] = Counter()
        if unknown_glosses == "drop":
            for entry in entries:
                self.unknown.update(g for g in entry.glosses if g not in vocabulary)
            self.targets = [
                vocabulary.encode([g for g in e.glosses if g in vocabulary]) for e in entries
            ]
        else:
            self.targets = [vocabulary.encode(entry.glosses, entry.id) for entry in entries]
        self._cache: dict[int, tuple] = {}
        # Frames of each file read so far: the lengths every check and batch plan uses are the
        # files' own, never {split}.frames.csv's (which is checked against them instead).
        self._frames: dict[int, int] = {}
        # The first file of each kind read ("landmarks", "features"): a batch holds one kind.
        self._first_of_kind: dict[str, Path] = {}
        self._model_input: ModelInput | None = None
        self._model_input_key: tuple | None = None
        self.skipped: list[str] = []
        if max_frames:
            keep = [i for i in range(len(entries)) if self.length(i) <= max_frames]
            self.skipped = [entries[i].id for i in range(len(entries)) if i not in set(keep)]
            self.entries = [entries[i] for i in keep]
            self.paths = [self.paths[i] for i in keep]
            self.targets = [self.targets[i] for i in keep]
            self._cache = {
                new: self._cache[old] for new, old in enumerate(keep) if old in self._cache
            }
            self._frames = {new: self._frames[old] for new, old in enumerate(keep)}

    def __len__(self) -> int:
        return len(self.entries)

    def _raw(self, index: int) -> tuple:
        """(landmarks float16, mask), cached: ~2 KB a frame, 3 GB for Phoenix's train split; or
        (precomputed features float16,), never cached: read through a memory map each time."""
        cached = self._cache.get(index)
        if cached is None:
            mapped = read_mapped_features(self.paths[index])
            if mapped is not None:
                self._learn(index, len(mapped), "features")
                return (torch.from_numpy(mapped),)
            sequence = read_sequence(self.paths[index])
            if sequence.landmarks is not None:
                cached = (
                    torch.from_numpy(sequence.landmarks.astype("float16")),
                    torch.from_numpy(sequence.mask),
                )
            else:  # precomputed features in another container: held as float16
                cached = (torch.from_numpy(sequence.features.astype("float16")),)
            self._learn(index, sequence.n_frames, "landmarks" if len(cached) == 2 else "features")
            self._cache[index] = cached
        return cached

    def _learn(self, index: int, frames: int, kind: str) -> None:
        """Record what reading file `index` showed; a frames.csv count that disagrees with the
        file is an error (a file truncated or replaced since), not a length to train on."""
        entry = self.entries[index]
        if entry.frames is not None and entry.frames != frames:
            listed = frames_path(self.corpus.root, self.split)
            raise CorpusError(
                f"{listed}: sample {entry.id} has {entry.frames} frames there but its file "
                f"{self.paths[index]} has {frames}; if the file is right, delete {listed.name} "
                "(it is optional) or regenerate it, else re-extract the file"
            )
        self._frames[index] = frames
        self._first_of_kind.setdefault(kind, self.paths[index])
        if len(self._first_of_kind) > 1:
            raise CorpusError(
                f"{self.corpus.root}: the {self.split} split mixes landmark and feature files "
                f"(first: {self._first_of_kind['landmarks']} holds landmarks [T, 543, 3], "
                f"{self._first_of_kind['features']} features [T, {LAYOUT.dim}]); give every "
                "sequence the same kind of file"
            )

    def length(self, index: int) -> int:
        """Frames of sequence `index`, as its file holds them (read on first use)."""
        if index not in self._frames:
            frames = mapped_frame_count(self.paths[index])  # a header: no features copied
            if frames is None:
                self._raw(index)  # read (and cached) anyway, for training
            else:
                self._learn(index, frames, "features")
        return self._frames[index]

    def lengths(self) -> list[int]:
        """Frames per item; with synthesis, the expected frames of each training slot."""
        if self.synthesis is not None:
            return self.synthesis.lengths()
        return [self.length(i) for i in range(len(self))]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def raw_features(
        self, index: int, augment: bool = False, columns: Columns | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features before normalization and their validity (augmented when asked and set);
        derived from landmarks, only `columns` when given. Stored features come whole."""
        raw = self._raw(index)
        if len(raw) == 2:
            landmarks, mask = raw
            if augment and self.augmentation is not None:
                generator = augmentation_generator(self.epoch, index)
                landmarks, mask = self.augmentation(landmarks, mask, generator)
            return LAYOUT.features_with_validity(landmarks, mask, self.coordinates, columns)
        features = raw[0].float()
        return features, torch.ones_like(features, dtype=torch.bool)

    @property
    def model_input(self) -> ModelInput:
        """How features are derived and normalized (rebuilt when the statistics change: the
        train split gets its own after it computed them; the old object's id cannot be reused
        while the cached ModelInput still holds it)."""
        key = (self.coordinates, self.normalization, id(self.stats))
        if self._model_input is None or self._model_input_key != key:
            self._model_input = ModelInput(self.coordinates, self.normalization, self.stats)
            self._model_input_key = key
        return self._model_input

    def __getitem__(self, index: int) -> Item:
        """The stored sequence `index` (augmented when set): normalized float32 [T, 6516]."""
        item = self.training_item(index, synthesized=False)
        assert item.features is not None
        if item.columns is not None:
            return Item(item.id, item.columns.widen(item.features), item.targets)
        return item

    def training_item(self, index: int, synthesized: bool = True) -> Item:
        """One sequence's normalized features, derived on its own: `self[index]` (checks, the
        doctor, statistics' consumers) reads the stored files through it. Training batches are
        derived a whole batch at once (`loader.batch_stream`); a test holds the two equal. The
        features are the derived columns only (`item.columns`; collate puts them in place)."""
        item = self.raw_item(index, synthesized, shipped=False)
        model_input = self.model_input
        if item.landmarks is None:
            assert item.features is not None
            return Item(item.id, model_input.stored(item.features), item.targets)
        assert item.mask is not None
        features = model_input.derive(item.landmarks, item.mask, landmark_ids=item.landmark_ids)
        columns = None if model_input.columns.full else model_input.columns
        return Item(item.id, features, item.targets, columns=columns)

    def raw_item(
        self,
        index: int,
        synthesized: bool = True,
        shipped: bool = True,
        epoch: int | None = None,
    ) -> Item:
        """`training_item` before features are derived: landmarks [T, 543, 3] and mask
        (augmented or synthesized for `epoch`, default the dataset's; float16 when `shipped` to
        a device), or stored precomputed features as they are held (float16, not normalized).
        A speller that leaves the face out gives only the landmarks it renders
        (`Item.landmark_ids`).
        Loader workers pass the epoch of their batch: nothing shared is changed."""
        epoch = self.epoch if epoch is None else epoch
        if synthesized and self.synthesis is not None:
            return self.raw_items([index], shipped, epoch)[0]
        raw = self._raw(index)
        entry_id, targets = self.entries[index].id, self.targets[index]
        if len(raw) == 1:
            return Item(entry_id, raw[0], targets)
        landmarks, mask = raw
        if self.augmentation is not None:
            generator = augmentation_generator(epoch, index)
            landmarks, mask = self.augmentation(landmarks, mask, generator)
            landmarks = landmarks.half() if shipped else landmarks
        return Item(entry_id, None, targets, landmarks, mask)

    def raw_items(
        self, indices: list[int], shipped: bool = True, epoch: int | None = None
    ) -> list[Item]:
        """`raw_item` of each index, for a training batch: spelled sequences are rendered
        together (`Speller.samples`), each the same as alone."""
        epoch = self.epoch if epoch is None else epoch
        if self.synthesis is None:
            return [self.raw_item(index, shipped=shipped, epoch=epoch) for index in indices]
        kept = self.synthesis.landmark_ids
        return [
            Item(
                f"synth-e{epoch}-{index:06d}",
                None,
                self.vocabulary.encode(list(glosses)),
                landmarks,
                mask,
                None,
                kept,
            )
            for index, (glosses, landmarks, mask) in zip(
                indices, self.synthesis.samples(indices, epoch), strict=True
            )
        ]

    def read_all(self, report: Callable[[int, int], None] | None = None) -> None:
        """Read every file of the split once, now: a damaged dev or test file is reported before
        training starts, not at the first evaluation or after the last step. Landmarks stay
        cached (they are read for every evaluation anyway); memory-mapped features are only
        opened, which checks their header and shape."""
        for index in range(len(self)):
            self._raw(index)
            if report is not None and (index + 1 == len(self) or index % 64 == 0):
                report(index + 1, len(self))

    def compute_stats(self, ignore: tuple[str, ...] = ()) -> FeatureStats:
        """Corpus statistics; groups in `ignore` are not even derived (their statistics are
        set aside: see `normalize.ignoring`)."""
        check_groups(ignore)
        columns = LAYOUT.columns(ignore)
        accumulator = StatsAccumulator(LAYOUT.dim)
        for index in range(len(self)):
            features, valid = self.raw_features(index, columns=columns)
            whole = features.shape[-1] == LAYOUT.dim  # stored features, or nothing skipped
            accumulator.add(features, valid, None if whole else columns.index)
        return accumulator.stats(ignore)


def collate(items: list[Item]) -> Batch:
    lengths = torch.tensor([item.features.shape[0] for item in items], dtype=torch.long)
    columns = items[0].columns
    width = LAYOUT.dim if columns is not None else items[0].features.shape[1]
    features = torch.zeros(len(items), int(lengths.max()), width)
    for row, item in enumerate(items):
        if item.columns is None:
            features[row, : item.features.shape[0]] = item.features
        else:  # derived columns only: the rest stays 0, what normalization makes of them
            item.columns.widen(item.features, out=features[row, : item.features.shape[0]])
    targets = torch.tensor([t for item in items for t in item.targets], dtype=torch.long)
    target_lengths = torch.tensor([len(item.targets) for item in items], dtype=torch.long)
    return Batch([item.id for item in items], features, lengths, targets, target_lengths)


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-length sequences.

    Indices are sorted by length with a little random jitter (so batches differ between epochs),
    cut into batches, and the batch order shuffled. `sorted_first_epoch` runs the first epoch
    short-to-long, which gets CTC off its plateau sooner.
    """

    def __init__(
        self,
        lengths: list[int],
        batch_size: int,
        bucket_width: int = 8,
        shuffle: bool = True,
        seed: int = 0,
        sorted_first_epoch: bool = False,
    ) -> None:
        self.lengths, self.batch_size, self.bucket_width = lengths, batch_size, max(1, bucket_width)
        self.shuffle, self.seed, self.sorted_first_epoch = shuffle, seed, sorted_first_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 100_003 + self.epoch)
        jitter = (lambda: rng.random()) if self.shuffle else (lambda: 0.0)
        keyed = sorted(
            range(len(self.lengths)),
            key=lambda i: (self.lengths[i] // self.bucket_width, jitter(), self.lengths[i]),
        )
        batches = [keyed[i : i + self.batch_size] for i in range(0, len(keyed), self.batch_size)]
        if self.shuffle and not (self.sorted_first_epoch and self.epoch == 0):
            rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size


def padding_efficiency(batches: list[list[int]], lengths: list[int]) -> float:
    """Real frames / padded frames over all batches (1.0 = no padding)."""
    real = sum(lengths[i] for batch in batches for i in batch)
    padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches if batch)
    return real / padded if padded else 1.0

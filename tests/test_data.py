"""Feature files, the layout, the Phoenix corpus loader, the vocabulary and batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from signconsole.data.corpus import Corpus, CorpusError, read_annotations
from signconsole.data.dataset import (
    BucketBatchSampler,
    SequenceDataset,
    collate,
    padding_efficiency,
)
from signconsole.data.layout import FEATURE_DIM, LAYOUT
from signconsole.data.normalize import check_input, compute_stats, normalize
from signconsole.data.readers import FeatureFileError, read_sequence, write_landmarks
from signconsole.data.vocabulary import BLANK, UnknownGlossError, Vocabulary

PHOENIX = Path(__file__).resolve().parents[2] / "shared" / "phoenix-2014"
needs_phoenix = pytest.mark.skipif(not PHOENIX.exists(), reason=f"{PHOENIX} not on this machine")


def lexicon_clip(letter: str = "A") -> Path:
    from signconsole.data.fingerspell import load_alphabet

    return load_alphabet("ase")[letter]


# ------------------------------------------------------------------------------- readers


def test_pose_file_from_the_lexicon_reads_in_holistic_order() -> None:
    sequence = read_sequence(lexicon_clip("B"))
    assert sequence.landmarks.shape[1:] == (543, 3)
    assert sequence.fps == 25.0
    # The ASL lexicon zeroes the left hand: masked, never silent zeros.
    assert not sequence.mask[:, LAYOUT.left_hand_landmarks].any()
    assert sequence.mask[:, LAYOUT.right_hand_landmarks].all()
    assert sequence.mask[:, LAYOUT.pose_landmarks].mean() > 0.9


def test_landmark_npz_round_trip(tmp_path: Path) -> None:
    original = read_sequence(lexicon_clip("C"))
    write_landmarks(tmp_path / "c.npz", original.landmarks, original.mask, fps=25)
    again = read_sequence(tmp_path / "c.npz")
    assert again.landmarks.dtype == np.float16
    np.testing.assert_array_equal(again.mask, original.mask)
    np.testing.assert_allclose(
        again.landmarks[again.mask], original.landmarks[original.mask], rtol=1e-3
    )
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temp file


def test_npy_landmarks_and_features(tmp_path: Path) -> None:
    landmarks = np.random.rand(7, 543, 3).astype(np.float16)
    landmarks[:, 501:522] = 0  # a tool that writes zeros for a missing hand
    np.save(tmp_path / "lm.npy", landmarks)
    sequence = read_sequence(tmp_path / "lm.npy")
    assert not sequence.mask[:, 501:522].any() and sequence.mask[:, :501].all()
    np.save(tmp_path / "feat.npy", np.zeros((5, FEATURE_DIM), np.float32))
    assert read_sequence(tmp_path / "feat.npy").features.shape == (5, FEATURE_DIM)


@pytest.mark.parametrize(
    "content,needle",
    [
        (np.zeros((4, 100, 3)), "expected [T, 543, 3]"),
        (np.zeros((4, 17)), "neither landmarks"),
        (np.zeros((0, 543, 3)), "0 frames"),
        (np.full((3, 543, 3), np.nan), "NaN/Inf"),
    ],
)
def test_bad_feature_files_name_the_file(tmp_path: Path, content: np.ndarray, needle: str) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, content)
    with pytest.raises(FeatureFileError) as caught:
        read_sequence(path)
    assert str(path) in str(caught.value) and needle in str(caught.value)


def test_empty_and_corrupt_files(tmp_path: Path) -> None:
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    (tmp_path / "corrupt.pose").write_bytes(b"\x00\x01garbage")
    for name, needle in [
        ("empty.npz", "empty"),
        ("corrupt.npz", "cannot be read"),
        ("corrupt.pose", "cannot be read"),
    ]:
        with pytest.raises(FeatureFileError, match=needle):
            read_sequence(tmp_path / name)


# -------------------------------------------------------------------------------- layout


def test_layout_slices_partition_the_vector() -> None:
    blocks = list(LAYOUT.modalities().values())
    assert [b.stop - b.start for b in blocks] == [99, 126, 1404, 4887]
    assert blocks[-1].stop == FEATURE_DIM == 6516


def test_features_of_a_real_clip_follow_the_documented_formula() -> None:
    sequence = read_sequence(lexicon_clip("D"))
    landmarks = torch.from_numpy(sequence.landmarks)
    mask = torch.from_numpy(sequence.mask)
    features, valid = LAYOUT.features_with_validity(landmarks, mask)
    assert features.shape == (len(landmarks), FEATURE_DIM) and torch.isfinite(features).all()
    # pose block = raw pose coordinates; right hand block = right hand landmarks
    torch.testing.assert_close(features[:, LAYOUT.pose], landmarks[:, :33].reshape(-1, 99))
    torch.testing.assert_close(features[:, LAYOUT.right_hand], landmarks[:, 522:].reshape(-1, 63))
    # velocity of frame t = s[t] - s[t-1]
    spatial = features[:, LAYOUT.spatial]
    torch.testing.assert_close(
        features[5, LAYOUT.velocity][LAYOUT.pose], (spatial[5] - spatial[4])[LAYOUT.pose]
    )
    # a missing hand is invalid everywhere, and contributes zeros
    assert not valid[:, LAYOUT.left_hand].any() and (features[:, LAYOUT.left_hand] == 0).all()
    # relative block is body-centred: the shoulder centre is the origin
    relative = features[:, LAYOUT.relative].reshape(len(landmarks), 543, 3)
    centre = 0.5 * (relative[:, 11] + relative[:, 12])
    torch.testing.assert_close(centre, torch.zeros_like(centre), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "left_out",
    [
        ("face",),  # what a speller leaves out for a profile that ignores the face
        ("face", "left_hand"),  # and more than the columns skip
        ("pose",),  # the shoulders too: no body frame, the relative block is invalid
        ("face", "pose"),  # the hands alone, in order: read as given, still no body frame
    ],
)
@pytest.mark.parametrize("coordinates", ["raw", "shoulder"])
def test_landmarks_given_by_id_derive_as_if_the_rest_were_not_detected(
    left_out, coordinates
) -> None:
    """A sequence that holds only some of the 543 landmarks (`landmark_ids`) derives exactly
    the features of the same sequence widened to 543 with the others missing."""
    sequence = read_sequence(lexicon_clip("D"))
    landmarks, mask = torch.from_numpy(sequence.landmarks), torch.from_numpy(sequence.mask)
    groups = LAYOUT.landmark_groups()
    dropped = torch.zeros(543, dtype=torch.bool)
    for group in left_out:
        dropped[groups[group]] = True
    ids = torch.arange(543)[~dropped]
    widened_landmarks, widened_mask = landmarks.clone(), mask.clone()
    widened_landmarks[:, dropped], widened_mask[:, dropped] = 0.0, False
    for columns in (LAYOUT.columns(("face",)), LAYOUT.columns(), LAYOUT.columns(left_out)):
        expected = LAYOUT.features_with_validity(
            widened_landmarks, widened_mask, coordinates, columns
        )
        given_landmarks, given_mask = landmarks[:, ids], mask[:, ids]
        given = LAYOUT.features_with_validity(
            given_landmarks, given_mask, coordinates, columns, landmark_ids=ids
        )
        torch.testing.assert_close(given[0], expected[0], rtol=0, atol=0)
        assert torch.equal(given[1], expected[1])
        # The input is read, never written (landmarks given in order are used as they are).
        assert torch.equal(given_mask, mask[:, ids])
        assert torch.equal(given_landmarks, landmarks[:, ids])


# ------------------------------------------------------------------------- normalization


def test_corpus_stats_centre_and_keep_missing_at_zero() -> None:
    sequence = read_sequence(lexicon_clip("E"))
    features, valid = LAYOUT.features_with_validity(
        torch.from_numpy(sequence.landmarks), torch.from_numpy(sequence.mask)
    )
    stats = compute_stats(features, valid)
    normalized = normalize(features, valid, "corpus_stats", stats)
    assert torch.isfinite(normalized).all()
    assert (normalized[~valid] == 0).all()
    means = normalized[:, LAYOUT.pose][valid[:, LAYOUT.pose]].mean()
    assert abs(float(means)) < 1e-4
    # normalizing already-normalized data is recognized (seed 002)
    assert not check_input(features, valid).looks_standardized
    renormalized = check_input(normalized, valid)
    assert renormalized.looks_standardized


# --------------------------------------------------------------------------- vocabulary


def test_vocabulary_blank_at_zero_and_round_trip(tmp_path: Path) -> None:
    vocabulary = Vocabulary.from_glosses([["B", "A"], ["C", "A", "A"]])
    assert vocabulary.tokens[0] == BLANK and vocabulary.blank == 0
    assert vocabulary.encode(["A", "B", "C"]) == [1, 2, 3]
    assert vocabulary.decode([0, 1, 0, 3]) == ["A", "C"]
    vocabulary.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json") == vocabulary
    with pytest.raises(UnknownGlossError, match="'Z' in sample s7"):
        vocabulary.encode(["Z"], "s7")


@needs_phoenix
def test_real_phoenix_annotations_load_and_round_trip() -> None:
    corpus = Corpus.open(PHOENIX)
    assert [len(corpus.splits[s]) for s in ("train", "dev", "test")] == [5672, 540, 629]
    vocabulary = Vocabulary.from_glosses(corpus.glosses("train"))
    assert 1150 < len(vocabulary) - 1 < 1300  # about 1,230 glosses
    assert vocabulary.round_trip_failures(corpus.glosses("train")) == []
    frames = [e.frames for e in corpus.splits["train"]]
    assert min(frames) == 16 and max(frames) == 299
    unknown = {g for seq in corpus.glosses("dev") for g in seq if g not in vocabulary}
    assert len(unknown) < 60  # dev glosses unseen in train exist and are countable


def test_annotation_errors_name_file_and_line(tmp_path: Path) -> None:
    manual = tmp_path / "annotations" / "manual"
    manual.mkdir(parents=True)
    path = manual / "train.corpus.csv"
    path.write_text("id|folder|signer|annotation\na|a/1/*.png|S1|HALLO WELT\nb|b/1/*.png|S1\n")
    with pytest.raises(CorpusError, match=r"train.corpus.csv:3: expected 4 fields"):
        read_annotations(path)
    path.write_text("id|folder|annotation\n")
    with pytest.raises(CorpusError, match=":1: expected the header line"):
        read_annotations(path)


def test_missing_feature_file_names_the_sample(tmp_path: Path) -> None:
    manual = tmp_path / "annotations" / "manual"
    manual.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        (manual / f"{split}.corpus.csv").write_text("id|folder|signer|annotation\nx1|f|S|A B\n")
    corpus = Corpus.open(tmp_path)
    with pytest.raises(CorpusError, match="sample x1 .train.: no feature file"):
        corpus.feature_path("train", corpus.splits["train"][0])


# ------------------------------------------------------------------------------ batching


def test_bucketed_batches_cover_everything_once_and_pad_less() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(16, 300, size=500).tolist()  # Phoenix-like spread
    sampler = BucketBatchSampler(lengths, batch_size=8, bucket_width=8, seed=1)
    batches = sampler.batches()
    assert sorted(i for b in batches for i in b) == list(range(500))
    naive = [list(range(i, min(i + 8, 500))) for i in range(0, 500, 8)]
    assert padding_efficiency(batches, lengths) > 0.9 > padding_efficiency(naive, lengths)
    sampler.set_epoch(1)
    assert sampler.batches() != batches  # a new order every epoch, deterministic per seed


def test_dataset_and_collate_on_real_poses(tmp_path: Path) -> None:
    manual = tmp_path / "annotations" / "manual"
    manual.mkdir(parents=True)
    rows = []
    for index, letter in enumerate("ABC"):
        sequence = read_sequence(lexicon_clip(letter))
        write_landmarks(
            tmp_path / "features" / "train" / f"s{index}.npz", sequence.landmarks, sequence.mask, 25
        )
        rows.append(f"s{index}|s{index}|S1|{letter} {letter}")
    (manual / "train.corpus.csv").write_text("id|folder|signer|annotation\n" + "\n".join(rows))
    corpus = Corpus.open(tmp_path, ("train",))
    vocabulary = Vocabulary.from_glosses(corpus.glosses("train"))
    dataset = SequenceDataset(corpus, "train", vocabulary, "per_sample")
    batch = collate([dataset[0], dataset[1], dataset[2]])
    assert batch.features.shape == (3, int(batch.lengths.max()), FEATURE_DIM)
    assert batch.target_lengths.tolist() == [2, 2, 2]
    assert batch.targets.tolist() == [1, 1, 2, 2, 3, 3]
    short = int(batch.lengths.argmin())
    assert (batch.features[short, int(batch.lengths[short]) :] == 0).all()


def test_augmentation_moves_points_but_keeps_missing_ones_missing() -> None:
    from signconsole.data.augment import Augmentation

    sequence = read_sequence(lexicon_clip("F"))
    landmarks = torch.from_numpy(sequence.landmarks)
    mask = torch.from_numpy(sequence.mask)
    augment = Augmentation(speed=0.0, noise=0.0, shift=0.0, scale=0.0)
    moved, moved_mask = augment(landmarks, mask, torch.Generator().manual_seed(1))
    assert torch.equal(moved_mask, mask)
    assert (moved[~mask] == 0).all()  # the ASL left hand stays absent, never invented
    assert not torch.allclose(moved[mask], landmarks.float()[mask])
    # a pure rotation keeps distances between landmarks (here: both shoulders, every frame)
    before = (landmarks[:, 11, :2].float() - landmarks[:, 12, :2].float()).norm(dim=-1)
    after = (moved[:, 11, :2] - moved[:, 12, :2]).norm(dim=-1)
    torch.testing.assert_close(after, before)
    again, _ = augment(landmarks, mask, torch.Generator().manual_seed(1))
    assert torch.equal(again, moved)  # seeded: reproducible
    stretched, stretched_mask = Augmentation(speed=0.5)(
        landmarks, mask, torch.Generator().manual_seed(3)
    )
    assert stretched.shape[1:] == (543, 3) and stretched_mask.shape[0] == stretched.shape[0]
    assert stretched.shape[0] != landmarks.shape[0]


def test_ignored_landmark_groups_normalize_to_zero_in_every_block() -> None:
    from signconsole.data.normalize import ignoring

    sequence = read_sequence(lexicon_clip("W"))
    features, valid = LAYOUT.features_with_validity(
        torch.from_numpy(sequence.landmarks), torch.from_numpy(sequence.mask), "shoulder"
    )
    stats = ignoring(compute_stats(features, valid), ("face",))
    normalized = normalize(features, valid, "corpus_stats", stats)
    assert torch.isfinite(normalized).all()
    face = torch.zeros(FEATURE_DIM, dtype=torch.bool)
    for dims in LAYOUT.group_dims("face"):
        face[dims] = True
    assert face.sum() == 4 * 468 * 3
    assert not normalized[:, face].any()
    assert normalized[:, LAYOUT.right_hand].abs().sum() > 0  # the signing hand is still there
    with pytest.raises(ValueError, match="left_hand"):
        ignoring(stats, ("hands",))

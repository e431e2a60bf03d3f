"""A broken corpus is one line naming the file (and line, key or sample) and the fix, exit 2,
through `signconsole data summary`: annotations, frames.csv, feature files, data.corpus."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from signconsole.cli import main
from signconsole.config import FingerspellConfig
from signconsole.data.corpus import CorpusError, read_annotations
from signconsole.data.fingerspell import ensure_corpus

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "profiles" / "demo-student.toml"
SAMPLE = "features/train/ase-train-000003.npz"
TRAIN = "annotations/manual/train.corpus.csv"
FRAMES = "annotations/manual/train.frames.csv"


@pytest.fixture(scope="module")
def stored() -> Path:
    return Path(ensure_corpus(FingerspellConfig(lang="ase", seed=0, train=8, dev=8, test=8)).root)


@pytest.fixture
def corpus(stored: Path, tmp_path: Path) -> Path:
    """A private copy of the small stored corpus, to break."""
    return Path(shutil.copytree(stored, tmp_path / "corpus"))


def summary(capsys, corpus: Path, *overrides: str) -> tuple[int, str, str]:
    argv = ["data", "summary", str(PROFILE), "--set", f"data.corpus={corpus}"]
    argv += ["--set", "data.synthesis.enabled=false"]
    for override in overrides:
        argv += ["--set", override]
    code = main(argv)
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("signconsole:")]
    return code, captured.out, "\n".join(errors)


def landmarks_of(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}


def assert_one_line(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 0 and err.startswith("signconsole: error: "), err
    for needle in needles:
        assert needle in err, err


# --- frames.csv against the files -------------------------------------------------------------


def test_a_file_shorter_than_frames_csv_says_so(capsys, corpus: Path) -> None:
    arrays = landmarks_of(corpus / SAMPLE)
    listed = len(arrays["landmarks"])
    np.savez(corpus / SAMPLE, landmarks=arrays["landmarks"][:2], mask=arrays["mask"][:2])
    code, _, err = summary(capsys, corpus)
    assert_one_line(
        code,
        err,
        "train.frames.csv: sample ase-train-000003",
        f"has {listed} frames there but its file",
        "has 2;",
        "delete train.frames.csv",
    )


def test_frame_counts_are_the_files_own(capsys, corpus: Path, stored: Path) -> None:
    """Every count 9999: refused, never summed into 79992 frames; without frames.csv the real
    counts are used."""
    lines = (corpus / FRAMES).read_text().splitlines()
    (corpus / FRAMES).write_text(
        "\n".join([lines[0]] + [f"{line.split('|')[0]}|9999" for line in lines[1:]]) + "\n"
    )
    code, out, err = summary(capsys, corpus)
    assert_one_line(code, err, "has 9999 frames there")
    assert "79992" not in out
    real = sum(int(line.split("|")[1]) for line in lines[1:])
    (corpus / FRAMES).unlink()
    code, out, err = summary(capsys, corpus)
    assert code == 0 and f"│ train │ 8         │ {real}" in out


def test_the_lengths_a_dataset_gives_are_the_files(stored: Path, tmp_path: Path) -> None:
    """What the engine's CTC feasibility check and batch plan read (`dataset.lengths()`)."""
    from signconsole.data.corpus import Corpus
    from signconsole.data.dataset import SequenceDataset
    from signconsole.data.vocabulary import Vocabulary

    corpus_dir = Path(shutil.copytree(stored, tmp_path / "c"))
    arrays = landmarks_of(corpus_dir / SAMPLE)
    np.savez(corpus_dir / SAMPLE, landmarks=arrays["landmarks"][:2], mask=arrays["mask"][:2])
    (corpus_dir / FRAMES).unlink()
    corpus = Corpus.open(corpus_dir, ("train",))
    dataset = SequenceDataset(corpus, "train", Vocabulary.from_glosses(corpus.glosses("train")))
    assert dataset.lengths()[3] == 2


# --- annotation files ---------------------------------------------------------------------------


def test_latin1_annotations_name_the_byte_and_line(capsys, corpus: Path) -> None:
    lines = (corpus / TRAIN).read_text().splitlines()
    lines[3] = lines[3] + " \xc9"
    (corpus / TRAIN).write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    code, _, err = summary(capsys, corpus)
    assert_one_line(code, err, f"{TRAIN}: not UTF-8 text (byte 0xc9 at line 4); save it as UTF-8")


def test_frames_csv_in_latin1_is_one_line_too(tmp_path: Path) -> None:
    manual = tmp_path / "annotations" / "manual"
    manual.mkdir(parents=True)
    (manual / "train.corpus.csv").write_text("id|folder|signer|annotation\na|f|S|A\n")
    (manual / "train.frames.csv").write_bytes("id|frames\n\xe9|3\n".encode("latin-1"))
    with pytest.raises(
        CorpusError, match=r"train.frames.csv: not UTF-8 text \(byte 0xe9 at line 2"
    ):
        read_annotations(manual / "train.corpus.csv")


def test_an_annotation_file_with_a_byte_order_mark_is_read(capsys, corpus: Path) -> None:
    for split in ("train", "dev", "test"):
        for kind in ("corpus", "frames"):
            path = corpus / "annotations" / "manual" / f"{split}.{kind}.csv"
            path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    code, out, err = summary(capsys, corpus)
    assert code == 0, err
    assert "│ train │ 8" in out


def test_the_reserved_blank_token_names_file_and_line(capsys, corpus: Path) -> None:
    lines = (corpus / TRAIN).read_text().splitlines()
    lines[3] += " <blank>"
    (corpus / TRAIN).write_text("\n".join(lines) + "\n")
    code, _, err = summary(capsys, corpus)
    assert_one_line(code, err, f"{TRAIN}:4: sample ase-train-000002 uses <blank>")


def test_blank_in_dev_is_refused_as_well(tmp_path: Path) -> None:
    path = tmp_path / "dev.corpus.csv"
    path.write_text("id|folder|signer|annotation\na|f|S|A\nb|f|S|<blank> A\n")
    with pytest.raises(CorpusError, match=r"dev.corpus.csv:3: sample b uses <blank>"):
        read_annotations(path)


def test_an_annotation_path_that_is_a_folder(capsys, corpus: Path) -> None:
    (corpus / TRAIN).unlink()
    (corpus / TRAIN).mkdir()
    code, _, err = summary(capsys, corpus)
    assert_one_line(code, err, f"{TRAIN}: is a folder, expected a text file")


# --- feature files ------------------------------------------------------------------------------


def test_string_landmarks_name_file_key_and_dtype(capsys, corpus: Path) -> None:
    arrays = landmarks_of(corpus / SAMPLE)
    arrays["landmarks"] = arrays["landmarks"].astype(str)
    np.savez(corpus / SAMPLE, **arrays)
    code, _, err = summary(capsys, corpus)
    assert_one_line(code, err, f"{SAMPLE}: 'landmarks' has dtype <U", "expected float16 or float32")


def test_a_value_beyond_float16_is_refused_at_load(capsys, corpus: Path) -> None:
    arrays = landmarks_of(corpus / SAMPLE)
    arrays["landmarks"] = arrays["landmarks"].astype(np.float32)
    arrays["landmarks"][3, 3] = 1e30
    np.savez(corpus / SAMPLE, **arrays)
    code, _, err = summary(capsys, corpus)
    assert_one_line(
        code, err, f"{SAMPLE}: landmarks value 1e+30 at frame 3 is beyond float16 (+-65504)"
    )


def test_a_feature_file_among_landmark_files_is_refused_at_load(capsys, corpus: Path) -> None:
    frames = len(landmarks_of(corpus / SAMPLE)["landmarks"])
    (corpus / SAMPLE).unlink()
    features = np.random.default_rng(0).standard_normal((frames, 6516)).astype(np.float32)
    np.save((corpus / SAMPLE).with_suffix(".npy"), features)
    code, _, err = summary(capsys, corpus)
    assert_one_line(
        code,
        err,
        "the train split mixes landmark and feature files",
        "ase-train-000000.npz holds landmarks",
        "ase-train-000003.npy features",
    )


# --- the profile's data keys --------------------------------------------------------------------


def test_data_corpus_naming_a_file_says_it_is_a_file(capsys, tmp_path: Path) -> None:
    path = tmp_path / "afile"
    path.write_text("x")
    code, _, err = summary(capsys, path)
    assert_one_line(code, err, f"{path}: is a file, not a corpus folder")


def test_ignoring_every_landmark_group_is_refused() -> None:
    from signconsole.data.normalize import check_groups

    with pytest.raises(ValueError, match="data.ignore: ignores every landmark group"):
        check_groups(("face", "pose", "left_hand", "right_hand"))
    check_groups(("face", "pose", "left_hand"))  # one group left is enough


def test_the_summary_says_glosses_and_letters(capsys, corpus: Path) -> None:
    code, out, _ = summary(capsys, corpus)
    assert code == 0 and "vocabulary: 26 glosses + blank" in out and "glosss" not in out
    from signconsole.data.vocabulary import count_of

    assert [count_of(1, "gloss"), count_of(2, "letter")] == ["1 gloss", "2 letters"]


def test_mixing_is_caught_however_the_split_is_read(corpus: Path) -> None:
    """`eval` reads its split batch by batch, without `read_all`: the first feature file after a
    landmark file is the same one line, not a collate crash."""
    from signconsole.data.corpus import Corpus
    from signconsole.data.dataset import SequenceDataset
    from signconsole.data.vocabulary import Vocabulary

    frames = len(landmarks_of(corpus / SAMPLE)["landmarks"])
    (corpus / SAMPLE).unlink()
    np.save((corpus / SAMPLE).with_suffix(".npy"), np.zeros((frames, 6516), np.float32))
    opened = Corpus.open(corpus, ("train",))
    dataset = SequenceDataset(opened, "train", Vocabulary.from_glosses(opened.glosses("train")))
    with pytest.raises(CorpusError, match="mixes landmark and feature files"):
        for index in range(len(dataset)):
            dataset.raw_item(index)


def test_a_folder_in_place_of_a_feature_file(capsys, corpus: Path) -> None:
    (corpus / SAMPLE).unlink()
    (corpus / SAMPLE).mkdir()
    code, _, err = summary(capsys, corpus)
    assert_one_line(code, err, f"{SAMPLE}: is a folder, expected a feature file")


def test_frames_csv_is_checked_for_precomputed_features_too(tmp_path: Path) -> None:
    """Memory-mapped [T, 6516] files are never cached: their counts are checked all the same,
    and a length is read from the header alone."""
    from signconsole.data.corpus import Corpus
    from signconsole.data.dataset import SequenceDataset
    from signconsole.data.vocabulary import Vocabulary

    manual = tmp_path / "annotations" / "manual"
    manual.mkdir(parents=True)
    (tmp_path / "features" / "train").mkdir(parents=True)
    for index in range(2):
        np.save(tmp_path / "features" / "train" / f"s{index}.npy", np.zeros((5, 6516), np.float32))
    (manual / "train.corpus.csv").write_text("id|folder|signer|annotation\ns0|x|S|A\ns1|x|S|B\n")
    (manual / "train.frames.csv").write_text("id|frames\ns0|5\ns1|7\n")
    corpus = Corpus.open(tmp_path, ("train",))
    dataset = SequenceDataset(corpus, "train", Vocabulary.from_glosses(corpus.glosses("train")))
    assert dataset.length(0) == 5
    with pytest.raises(CorpusError, match="sample s1 has 7 frames there but its file .* has 5;"):
        dataset.read_all()

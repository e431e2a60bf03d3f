"""The built-in fingerspelling corpus: layout, contents, determinism and the cache."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from signconsole.config import FingerspellConfig
from signconsole.data.fingerspell import (
    FORMAT_VERSION,
    METADATA,
    WORDLIST_DIR,
    available_languages,
    build_corpus,
    corpus_cache_dir,
    ensure_corpus,
    lexicon_dir,
    load_alphabet,
    spell,
)
from signconsole.data.layout import FeatureLayout
from signconsole.data.lexicon import clip_bank
from signconsole.data.readers import read_sequence
from signconsole.data.spelling import render

SPLITS = ("train", "dev", "test")
SMALL = {"train": 30, "dev": 6, "test": 6}
# Latin (real English and German words), Arabic and Cyrillic (pseudo-words).
LANGUAGES = ("ase", "gsg", "jos", "ukl")


def small_config(lang: str = "ase", seed: int = 0) -> FingerspellConfig:
    return FingerspellConfig(lang=lang, seed=seed, **SMALL)


def read_rows(root: Path, split: str, kind: str) -> list[list[str]]:
    lines = (root / "annotations" / "manual" / f"{split}.{kind}.csv").read_text("utf-8")
    return [line.split("|") for line in lines.splitlines()]


def annotations(root: Path, split: str) -> list[tuple[str, ...]]:
    return [tuple(row[3].split(" ")) for row in read_rows(root, split, "corpus")[1:]]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fingerspell")
    return {lang: build_corpus(small_config(lang), root / lang).root for lang in LANGUAGES}


def lexicon_mask_union(lang: str) -> np.ndarray:
    """[543] bool: landmarks the lexicon detects in at least one frame of the language."""
    union = np.zeros(FeatureLayout.n_landmarks, dtype=bool)
    for path in load_alphabet(lang).values():
        union |= read_sequence(path).mask.any(axis=0)
    return union


# --- the lexicon -------------------------------------------------------------------------------


def test_lexicon_languages_and_alphabets():
    languages = available_languages()
    assert languages == sorted(languages)
    assert {"ase", "gsg", "gss", "jos", "ukl", "fsl"} <= set(languages)
    assert (lexicon_dir() / "index.csv").is_file()
    ase = load_alphabet("ase")
    assert list(ase) == [chr(code) for code in range(ord("A"), ord("Z") + 1)]
    assert all(path.is_file() for path in ase.values())
    assert "SCH" in load_alphabet("sgg")
    assert load_alphabet("fsl")["Q"] == ase["Q"]  # fsl reuses the ASL clips


def test_unknown_language_names_the_available_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown fingerspelling language 'xyz'") as error:
        load_alphabet("xyz")
    message = str(error.value)
    assert "\n" not in message
    assert all(code in message for code in available_languages())
    with pytest.raises(ValueError, match="available: .*ase"):
        build_corpus(small_config("xyz"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_spell_is_greedy_longest_match_and_case_insensitive():
    assert spell("Cat", load_alphabet("ase")) == ("C", "A", "T")
    assert spell("schule", load_alphabet("sgg")) == ("SCH", "U", "L", "E")
    assert spell("buch", load_alphabet("sgg")) == ("B", "U", "CH")
    assert spell("calle", load_alphabet("mfs")) == ("C", "A", "Ll", "E")
    assert spell("straße", load_alphabet("asq")) == ("S", "T", "R", "A", "ẞ", "E")
    assert spell("käse", load_alphabet("gsg")) == ("K", "ä", "S", "E")
    assert spell("café", load_alphabet("ase")) is None  # no É in the ASL lexicon
    assert spell("don't", load_alphabet("ase")) is None


def test_broken_gss_clips_are_cut_and_short_clips_stretched():
    bank = clip_bank("gss")
    # Ο has 258 frames and Φ 105: after the letter the hand flies tens of shoulder widths away.
    assert bank.clips["Ο"].frames <= 12
    assert bank.clips["Φ"].frames <= 12
    # gss letters are ~8 frames for a whole rest-raise-hold-lower: stretched to ~1 s.
    clip = bank.clips["Α"]
    assert clip.frames * clip.seconds_per_frame > 0.6
    rng = np.random.default_rng(0)
    for _ in range(10):
        landmarks, mask = render(("Ο", "Φ", "Α"), bank, rng)
        hands = slice(FeatureLayout.left_hand_landmarks.start, FeatureLayout.n_landmarks)
        centre = landmarks[:, [11, 12], :2].mean(axis=1)
        distance = np.linalg.norm(landmarks[:, hands, :2] - centre[:, None], axis=-1)
        assert distance[mask[:, hands]].max() < 3.5 * 200
        assert len(landmarks) >= 20


# --- the corpus --------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_sample_reads_back_consistent_with_the_lexicon(corpora, lang):
    root = corpora[lang]
    allowed = lexicon_mask_union(lang)
    for split in SPLITS:
        rows = read_rows(root, split, "corpus")
        assert rows[0] == ["id", "folder", "signer", "annotation"]
        assert len(rows) == SMALL[split] + 1
        frames = dict(read_rows(root, split, "frames")[1:])
        assert read_rows(root, split, "frames")[0] == ["id", "frames"]
        for sample_id, folder, signer, annotation in rows[1:]:
            assert re.fullmatch(rf"{lang}-{split}-\d{{6}}", sample_id)
            assert folder == f"features/{split}/{sample_id}.npz"
            assert signer == "lexicon"
            assert annotation == annotation.strip() and "  " not in annotation
            sequence = read_sequence(root / folder)
            landmarks, mask = sequence.landmarks, sequence.mask
            assert landmarks.shape == (int(frames[sample_id]), 543, 3)
            assert mask.shape == landmarks.shape[:2]
            assert sequence.fps == 25.0
            assert np.isfinite(landmarks.astype(np.float32)).all()
            # Never a landmark the lexicon does not have (ase: no left hand, no pose 15).
            assert not (mask.any(axis=0) & ~allowed).any()
            assert mask[:, FeatureLayout.face_landmarks].mean() > 0.9
            signing = mask[:, FeatureLayout.left_hand_landmarks].any(axis=1) | mask[
                :, FeatureLayout.right_hand_landmarks
            ].any(axis=1)
            assert signing.mean() > 0.5
        assert sorted(path.stem for path in (root / "features" / split).iterdir()) == sorted(frames)


def test_ase_left_hand_is_masked_everywhere(corpora):
    root = corpora["ase"]
    for split in SPLITS:
        for row in read_rows(root, split, "corpus")[1:]:
            mask = read_sequence(root / row[1]).mask
            assert not mask[:, FeatureLayout.left_hand_landmarks].any()
            assert mask[:, FeatureLayout.right_hand_landmarks].any()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_glosses_words_and_splits(corpora, lang):
    root = corpora[lang]
    alphabet = set(load_alphabet(lang))
    words = {split: annotations(root, split) for split in SPLITS}
    for split in SPLITS:
        assert all(gloss in alphabet for word in words[split] for gloss in word)
        assert all(len(word) >= 2 for word in words[split])
    # Every letter is trained; held-out word types are never seen in training.
    assert {gloss for word in words["train"] for gloss in word} == alphabet
    assert not set(words["dev"]) & set(words["train"])
    assert not set(words["test"]) & set(words["train"])
    assert not set(words["dev"]) & set(words["test"])


def test_ase_spells_real_english_words(corpora):
    vocabulary = set((WORDLIST_DIR / "en.txt").read_text("utf-8").lower().split())
    for split in SPLITS:
        for word in annotations(corpora["ase"], split):
            assert "".join(word).lower() in vocabulary


def test_summary_and_metadata_match_the_files(tmp_path):
    seen: list[tuple[int, int]] = []
    summary = build_corpus(
        small_config("gsg"), tmp_path / "gsg", progress=lambda d, t: seen.append((d, t))
    )
    root = tmp_path / "gsg"
    assert summary.root == root and summary.lang == "gsg"
    assert seen[0] == (0, 42) and seen[-1] == (42, 42)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    letters = set()
    for split in SPLITS:
        frames = [int(row[1]) for row in read_rows(root, split, "frames")[1:]]
        assert summary.counts[split] == SMALL[split] == len(frames)
        assert summary.frames[split] == sum(frames)
        assert summary.words[split] == len(set(annotations(root, split)))
        letters |= {gloss for word in annotations(root, split) for gloss in word}
    assert summary.letters == sorted(letters)
    metadata = (root / METADATA).read_text("utf-8")
    assert f'"format_version": {FORMAT_VERSION}' in metadata
    assert not list(tmp_path.glob(".gsg.*"))  # no temp dir left behind


def test_same_seed_same_corpus_other_seed_other_corpus(tmp_path):
    first = build_corpus(small_config(seed=3), tmp_path / "a").root
    second = build_corpus(small_config(seed=3), tmp_path / "b").root
    other = build_corpus(small_config(seed=4), tmp_path / "c").root
    for split in SPLITS:
        for kind in ("corpus", "frames"):
            name = Path("annotations", "manual", f"{split}.{kind}.csv")
            assert (first / name).read_bytes() == (second / name).read_bytes()
        for row in read_rows(first, split, "corpus")[1:]:
            a, b = read_sequence(first / row[1]), read_sequence(second / row[1])
            np.testing.assert_array_equal(a.landmarks, b.landmarks)
            np.testing.assert_array_equal(a.mask, b.mask)
    assert (first / METADATA).read_bytes() == (second / METADATA).read_bytes()
    train = Path("annotations", "manual", "train.corpus.csv")
    assert (first / train).read_bytes() != (other / train).read_bytes()
    sample = "features/train/ase-train-000000.npz"
    a, c = read_sequence(first / sample), read_sequence(other / sample)
    assert a.landmarks.shape != c.landmarks.shape or not np.array_equal(a.landmarks, c.landmarks)


def test_build_replaces_a_corpus_but_not_a_foreign_directory(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        build_corpus(small_config(), foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"

    target = tmp_path / "corpus"
    build_corpus(small_config(seed=1), target)
    summary = build_corpus(FingerspellConfig(lang="ase", seed=2, train=5, dev=2, test=2), target)
    assert summary.counts == {"train": 5, "dev": 2, "test": 2}
    assert len(list((target / "features" / "train").iterdir())) == 5


# --- the cache ---------------------------------------------------------------------------------


def test_cache_dir_names_lang_version_and_config(tmp_path, monkeypatch):
    folder = corpus_cache_dir(small_config("gsg"), tmp_path)
    assert folder.parent == tmp_path
    assert "gsg" in folder.name and f"v{FORMAT_VERSION}" in folder.name
    assert corpus_cache_dir(small_config("gsg"), tmp_path) == folder
    assert corpus_cache_dir(small_config("gsg", seed=1), tmp_path) != folder
    monkeypatch.setenv("SIGNCONSOLE_CACHE", str(tmp_path / "env"))
    assert corpus_cache_dir(small_config()).parent == tmp_path / "env"
    monkeypatch.delenv("SIGNCONSOLE_CACHE")
    assert corpus_cache_dir(small_config()).parent == Path.home() / ".cache" / "signconsole"


def test_ensure_corpus_reuses_a_complete_cache_and_rebuilds_an_incomplete_one(tmp_path):
    config = FingerspellConfig(lang="ase", seed=0, train=8, dev=3, test=3)
    calls: list[tuple[int, int]] = []
    built = ensure_corpus(config, tmp_path, progress=lambda d, t: calls.append((d, t)))
    assert built.root == corpus_cache_dir(config, tmp_path)
    assert calls[-1] == (14, 14)
    sample = built.root / "features" / "train" / "ase-train-000000.npz"
    stamp = sample.stat().st_mtime_ns

    calls.clear()
    reused = ensure_corpus(config, tmp_path, progress=lambda d, t: calls.append((d, t)))
    assert calls == []
    assert reused == built
    assert list(reused.counts) == list(SPLITS)  # split order survives the json round trip
    assert sample.stat().st_mtime_ns == stamp

    (built.root / METADATA).unlink()  # what a build killed before its last step leaves
    rebuilt = ensure_corpus(config, tmp_path, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1] == (14, 14)
    assert (built.root / METADATA).is_file()
    assert rebuilt == built

    (built.root / "features" / "dev" / "ase-dev-000001.npz").unlink()  # a damaged cache
    calls.clear()
    ensure_corpus(config, tmp_path, progress=lambda d, t: calls.append((d, t)))
    assert calls and (built.root / "features" / "dev" / "ase-dev-000001.npz").is_file()


# --- the command: what it may replace, and what it refuses ----------------------------------


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    from signconsole.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


TINY = ("--train", "2", "--dev", "1", "--test", "1")


def test_fingerspell_refuses_a_phoenix_folder_and_touches_nothing(tmp_path, capsys):
    phoenix = tmp_path / "phoenix"
    (phoenix / "annotations" / "manual").mkdir(parents=True)
    (phoenix / "annotations" / "manual" / "train.corpus.csv").write_text(
        "id|folder|signer|annotation\n"
    )
    (phoenix / "features" / "train").mkdir(parents=True)
    (phoenix / "features" / "train" / "a.npz").write_bytes(b"mine")
    (phoenix / "README-mine.txt").write_text("keep me")
    before = tree(phoenix)
    code, _, err = run_cli(capsys, "data", "fingerspell", "--out", str(phoenix), *TINY)
    assert code == 2
    assert err.count("\n") == 1 and "not a fingerspelling corpus built by signconsole" in err
    assert tree(phoenix) == before
    assert [p.name for p in tmp_path.iterdir()] == ["phoenix"]  # no temp folder left


def test_fingerspell_refuses_a_corpus_holding_a_file_it_did_not_write(tmp_path, capsys):
    target = tmp_path / "corpus"
    build_corpus(FingerspellConfig(lang="ase", seed=0, train=3, dev=1, test=1), target)
    (target / "features" / "notes.txt").write_text("mine")
    before = tree(target)
    code, _, err = run_cli(capsys, "data", "fingerspell", "--out", str(target), *TINY)
    assert code == 2 and "holds features/notes.txt" in err and err.count("\n") == 1
    assert tree(target) == before


def test_fingerspell_says_which_corpus_it_replaced_and_how_to_get_it_back(tmp_path, capsys):
    target = tmp_path / "corpus"
    build_corpus(FingerspellConfig(lang="ase", seed=5, train=3, dev=1, test=1), target)
    code, out, _ = run_cli(capsys, "data", "fingerspell", "--out", str(target), *TINY)
    assert code == 0
    assert "replaced the corpus that was in" in out and "ase, seed 5, 3/1/1" in out
    again = "signconsole data fingerspell --lang ase --seed 5 --train 3 --dev 1 --test 1"
    assert again in " ".join(out.split())
    assert len(list((target / "features" / "train").iterdir())) == 2


def test_an_interrupted_build_leaves_the_old_corpus_whole(tmp_path):
    target = tmp_path / "corpus"
    build_corpus(FingerspellConfig(lang="ase", seed=0, train=3, dev=1, test=1), target)
    before = tree(target)

    def interrupt(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_corpus(
            FingerspellConfig(lang="ase", seed=1, train=9, dev=1, test=1), target, interrupt
        )
    assert tree(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]


@pytest.mark.parametrize(
    "option,value,needle",
    [
        ("--train", "100000000", "--train must be in [1, 100000], got 100000000"),
        ("--dev", "0", "--dev must be in [1, 100000], got 0"),
        ("--seed", "-1", "--seed must be an integer in [0, 4294967295], got -1"),
    ],
)
def test_fingerspell_bounds_name_the_option(tmp_path, capsys, option, value, needle):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "data", "fingerspell", "--out", str(out), option, value)
    assert code == 2 and needle in err and err.count("\n") == 1
    assert not out.exists()


def test_a_large_build_says_what_it_will_cost_first():
    from signconsole.data.build_limits import estimate

    assert estimate(100_000) == "14.0 GB and 23 minutes of one CPU core"


def test_fingerspell_refuses_the_folder_it_runs_in(tmp_path, capsys, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    code, _, err = run_cli(capsys, "data", "fingerspell", "--out", ".", *TINY)
    assert code == 2 and "is the current folder or holds it" in err
    assert list(here.iterdir()) == [] and [p.name for p in tmp_path.iterdir()] == ["here"]
    code, _, _ = run_cli(capsys, "data", "fingerspell", "--out", "sub/", *TINY)
    assert code == 0 and (here / "sub" / "fingerspell.json").is_file()
    assert [p.name for p in here.iterdir()] == ["sub"]


def test_a_file_put_in_the_folder_during_the_build_is_not_swapped_away(tmp_path, monkeypatch):
    """The folder is checked again right before the finished build replaces it: a file a person
    put there meanwhile stays, and the finished corpus is kept beside it, named in the error."""
    from signconsole.data import fingerspell

    out = tmp_path / "corpus"
    build_corpus(small_config(), out)  # a corpus this command built: replaceable
    build_into = fingerspell._build_into

    def meanwhile(work, config, progress):
        (out / "notes.txt").write_text("mine\n")
        return build_into(work, config, progress)

    monkeypatch.setattr(fingerspell, "_build_into", meanwhile)
    with pytest.raises(ValueError, match=r"notes.txt.*changed during the build.*finished corpus"):
        build_corpus(small_config(seed=5), out)
    assert (out / "notes.txt").read_text() == "mine\n" and (out / METADATA).exists()
    kept = [p for p in tmp_path.iterdir() if p != out]
    assert len(kept) == 1 and (kept[0] / METADATA).exists()

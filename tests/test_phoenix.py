"""Phoenix-2014 scoring: the kit's cleaning rules, the corpus/STM/CTM files, the two conventions.

Fixture files under tests/fixtures/phoenix/ are hand-made and always run. The real annotations
(research use, kept out of the repository) are read from ../shared/phoenix-2014/ when present.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from signconsole.ctc.phoenix import (
    apply_kit_rules,
    clean_hypothesis,
    clean_sentence,
    convention_label,
    read_corpus_csv,
    read_ctm,
    read_stm,
    score,
    write_ctm,
)
from signconsole.ctc.wer import ErrorCounts

FIXTURES = Path(__file__).parent / "fixtures" / "phoenix"
REPO = Path(__file__).resolve().parents[1]
PHOENIX = next(
    (
        candidate
        for candidate in (REPO.parent / "shared" / "phoenix-2014", REPO / "shared" / "phoenix-2014")
        if candidate.is_dir()
    ),
    None,
)


@pytest.fixture
def phoenix() -> Path:
    if PHOENIX is None:
        pytest.skip("real Phoenix-2014 annotations not found at ../shared/phoenix-2014/")
    return PHOENIX


# --- cleaning rules, one hand-made line each ---------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (["loc-NORD", "REGEN"], ["NORD", "REGEN"]),
        (["cl-KOMMEN"], ["KOMMEN"]),
        (["qu-WAS"], ["WAS"]),
        (["poss-EUCH"], ["EUCH"]),
        (["lh-WOLKE"], ["WOLKE"]),
        (["S0NNE", "HABEN2"], ["SONNE", "HABEN"]),
        (["REGEN", "__EMOTION__", "WIND"], ["REGEN", "WIND"]),
        (["REGEN", "__PU__", "WIND"], ["REGEN", "WIND"]),
        (["__LEFTHAND__", "WIND"], ["WIND"]),
        (["WIND", "__EPENTHESIS__"], ["WIND"]),
        (["REGEN-PLUSPLUS", "loc-MINUS-PLUSPLUS"], ["REGEN", "MINUS"]),
        (["XXRAUM", "NORDWESTRAUM"], ["XX", "NORDWEST"]),
        (["loc-NORDRAUM-PLUSPLUS"], ["NORD"]),  # rules compose in the script's order
        (["ZEIGEN"], ["ZEIGEN-BILDSCHIRM"]),
        (["__ON__", "REGEN", "__OFF__"], ["__ON__", "REGEN", "__OFF__"]),  # these count
        (["__PU__", "__EMOTION__"], []),
    ],
)
def test_per_gloss_rules(raw: list[str], clean: list[str]) -> None:
    assert clean_hypothesis(raw) == clean
    assert clean_sentence(raw) == clean  # the port applies the same per-gloss rules


@pytest.mark.parametrize(
    ("raw", "joined"),
    [
        ("S H VOR POMMERN", "S+H VOR POMMERN"),
        ("REGEN A B", "REGEN A+B"),
        ("X S H", "X+S+H"),
        ("NORD SCH A X", "NORD SCH+A+X"),
        ("X NN A Y", "X NN+A+Y"),
        # The kit's own quirk, kept: rule 15 rewrites the "+" it matched as a space.
        ("A B C D", "A B+C+D"),
        ("WIE AUSSEHEN", "WIE-AUSSEHEN"),
        ("ZEIGEN BILD", "ZEIGEN-BILDSCHIRM BILD"),
    ],
)
def test_sentence_rules_join_spelled_letters(raw: str, joined: str) -> None:
    assert apply_kit_rules(raw) == joined
    assert clean_sentence(raw.split()) == joined.split()


def test_sentence_rules_collapse_repeated_glosses() -> None:
    # The perl passes collapse all-capitals glosses only; the port's final groupby takes the rest.
    assert apply_kit_rules("REGEN REGEN REGEN SONNE") == "REGEN SONNE"
    assert apply_kit_rules("NICHT-VIEL NICHT-VIEL") == "NICHT-VIEL NICHT-VIEL"
    assert clean_sentence(["NICHT-VIEL", "NICHT-VIEL", "WIND"]) == ["NICHT-VIEL", "WIND"]
    # A removed gloss between two equal ones leaves them adjacent, and they merge.
    assert clean_sentence(["REGEN", "__PU__", "REGEN"]) == ["REGEN"]


def test_official_cleaning_sees_one_gloss_at_a_time() -> None:
    # In the kit each CTM line holds one gloss, so the cross-gloss rules never fire there.
    glosses = ["S", "H", "WIE", "AUSSEHEN", "REGEN", "REGEN"]
    assert clean_hypothesis(glosses) == glosses
    assert clean_sentence(glosses) == ["S+H", "WIE-AUSSEHEN", "REGEN"]


def test_convention_labels() -> None:
    assert "official" in convention_label()
    assert "clean both" in convention_label(clean_references=True)


# --- files: fixtures that always run -----------------------------------------------------------


def test_read_corpus_csv_fixture() -> None:
    rows = read_corpus_csv(FIXTURES / "dev.corpus.csv")
    assert [row[0] for row in rows] == ["fixture_seq-1", "fixture_seq-2", "fixture_seq-3"]
    sample_id, folder, signer, glosses = rows[0]
    assert folder == "fixture_seq-1/1/*.png"
    assert signer == "Signer01"
    # The double space in the file does not make an empty gloss.
    assert glosses == ["__ON__", "MORGEN", "REGEN", "NORD", "WIND", "__OFF__"]


def test_malformed_csv_line_names_file_and_line() -> None:
    path = FIXTURES / "malformed.corpus.csv"
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}:3: expected 4 pipe-separated"):
        read_corpus_csv(path)


def test_read_stm_fixture_matches_csv() -> None:
    references = read_stm(FIXTURES / "groundtruth-dev.stm")
    rows = read_corpus_csv(FIXTURES / "dev.corpus.csv")
    assert references == {row[0]: row[3] for row in rows}


def test_read_stm_rejects_short_and_repeated_lines(tmp_path: Path) -> None:
    short = tmp_path / "short.stm"
    short.write_text("seq-1 1 signer01 0.0\n")
    with pytest.raises(ValueError, match=r"short.stm:1: expected"):
        read_stm(short)
    repeated = tmp_path / "repeated.stm"
    repeated.write_text("seq-1 1 s 0.0 1.0 A\nseq-1 1 s 0.0 1.0 B\n")
    with pytest.raises(ValueError, match=r"repeated.stm:2: id seq-1 already used on line 1"):
        read_stm(repeated)


def test_ctm_lines_are_kit_format_in_id_order(tmp_path: Path) -> None:
    hypotheses = {
        "seq-b": ["REGEN", "WIND"],
        "seq-a": ["__ON__", "SONNE", "WARM", "__OFF__"],
        "seq-c": [],
    }
    path = tmp_path / "hyp.ctm"
    write_ctm(path, hypotheses)
    line_format = re.compile(r"^(\S+) 1 (\d+\.\d{3}) (\d+\.\d{3}) (\S+)$")
    parsed = [line_format.match(line) for line in path.read_text().splitlines()]
    assert all(parsed), path.read_text()
    ids = [match.group(1) for match in parsed]
    assert ids == sorted(ids) == ["seq-a"] * 4 + ["seq-b"] * 2
    starts = [float(match.group(2)) for match in parsed[:4]]
    assert starts == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert {float(match.group(3)) for match in parsed} == {0.1}
    assert read_ctm(path) == {"seq-a": hypotheses["seq-a"], "seq-b": hypotheses["seq-b"]}


def test_ctm_refuses_glosses_that_would_break_the_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="whitespace"):
        write_ctm(tmp_path / "bad.ctm", {"seq-1": ["A B"]})


def test_score_fixture_official_and_port() -> None:
    references = read_stm(FIXTURES / "groundtruth-dev.stm")
    assert score(references, references) == ErrorCounts(hits=14, reference_words=14)
    hypotheses = {
        "fixture_seq-1": ["__ON__", "loc-MORGEN", "REGEN", "__PU__", "WIND", "__OFF__"],
        "fixture_seq-2": ["HEUTE", "SONNE", "WARM", "WARM"],
        # fixture_seq-3 missing: scored as empty, all 5 glosses deleted
    }
    official = score(references, hypotheses)
    # seq-1: NORD deleted; seq-2: one WARM inserted; seq-3: 5 deletions.
    assert official == ErrorCounts(deletions=6, insertions=1, hits=8, reference_words=14)
    # The port collapses WARM WARM in the hypothesis, and turns the reference of seq-3 into
    # S+H WOLKE MOEGLICH (3 glosses, 3 deletions).
    port = score(references, hypotheses, clean_references=True)
    assert port == ErrorCounts(deletions=4, hits=8, reference_words=12)


def test_score_rejects_unknown_hypothesis_ids() -> None:
    with pytest.raises(ValueError, match="no reference"):
        score({"seq-1": ["A"]}, {"seq-2": ["A"]})


def test_train_fixture_conventions_differ() -> None:
    raw = {row[0]: row[3] for row in read_corpus_csv(FIXTURES / "train.corpus.csv")}
    official = score(raw, raw)
    # Raw references keep loc-NORD, REGEN-PLUSPLUS, WESTRAUM, cl-KOMMEN, S0NNE, HABEN2,
    # poss-EUCH (7 substitutions) and __PU__, __EMOTION__ (2 deletions).
    assert official == ErrorCounts(substitutions=7, deletions=2, hits=3, reference_words=12)
    # The port cleans both sides alike: no errors, and REGEN REGEN-PLUSPLUS became one gloss.
    assert score(raw, raw, clean_references=True) == ErrorCounts(hits=9, reference_words=9)


# --- the real annotations, when present --------------------------------------------------------


def test_real_dev_csv_and_stm_agree(phoenix: Path) -> None:
    rows = read_corpus_csv(phoenix / "annotations" / "manual" / "dev.corpus.csv")
    references = read_stm(phoenix / "evaluation" / "phoenix2014-groundtruth-dev.stm")
    ids = [row[0] for row in rows]
    assert len(ids) == len(set(ids)) == 540
    assert set(references) == set(ids)
    assert all(references[sample_id] == glosses for sample_id, _, _, glosses in rows)


@pytest.mark.parametrize("split", ["dev", "test"])
def test_real_references_score_zero_against_themselves(phoenix: Path, split: str) -> None:
    references = read_stm(phoenix / "evaluation" / f"phoenix2014-groundtruth-{split}.stm")
    counts = score(references, references)
    assert counts.errors == 0
    assert counts.reference_words == sum(len(glosses) for glosses in references.values())
    assert score(references, references, clean_references=True).errors == 0


def test_real_references_keep_spelled_letters_and_repeats(phoenix: Path) -> None:
    # Evidence for per-gloss official cleaning: the references hold exactly what whole-sentence
    # cleaning would rewrite, so applying it to a perfect hypothesis would cost errors.
    references = read_stm(phoenix / "evaluation" / "phoenix2014-groundtruth-test.stm")
    sentence_cleaned = [clean_sentence(glosses) for glosses in references.values()]
    assert any(
        cleaned != glosses
        for cleaned, glosses in zip(sentence_cleaned, references.values(), strict=True)
    )
    assert any("S H VOR" in " ".join(glosses) for glosses in references.values())


def test_real_train_conventions_differ(phoenix: Path) -> None:
    rows = read_corpus_csv(phoenix / "annotations" / "manual" / "train.corpus.csv")
    assert len(rows) == 5672
    raw = {sample_id: glosses for sample_id, _, _, glosses in rows}
    official = score(raw, raw)
    port = score(raw, raw, clean_references=True)
    # Official: raw references (loc-, -PLUSPLUS, __EMOTION__, ...) against cleaned hypotheses.
    # Cleaning only renames or removes glosses, so the errors are substitutions and deletions.
    assert official.substitutions > 0
    assert official.deletions > 0
    assert official.insertions == 0
    assert official.reference_words == sum(len(glosses) for glosses in raw.values())
    # The port cleans the references the same way: perfect score, fewer reference glosses.
    assert port.errors == 0
    assert port.reference_words < official.reference_words


def test_a_scoring_file_that_is_not_utf8_names_the_file_and_line(tmp_path) -> None:
    from signconsole.ctc.phoenix import read_stm

    stm = tmp_path / "dev.stm"
    stm.write_bytes("a 1 s 0.0 1.0 REGEN\nb 1 s 0.0 1.0 M\xc4NNER\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"dev.stm.*not UTF-8.*line 2"):
        read_stm(stm)
    stm.write_bytes(b"\xef\xbb\xbf" + b"a 1 s 0.0 1.0 REGEN\n")  # a BOM, as Excel saves
    assert read_stm(stm) == {"a": ["REGEN"]}

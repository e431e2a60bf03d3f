"""Error counts, rates and alignments against hand-computed and jiwer-computed numbers."""

from __future__ import annotations

import random

import jiwer
import pytest

from signconsole.ctc.wer import AlignedToken, ErrorCounts, align, error_counts, rate_label


def test_hand_computed_substitution_and_deletion() -> None:
    # REF: A B C D / HYP: A X C -> B->X substituted, D deleted; 2 errors over 4 words.
    counts = error_counts([["A", "B", "C", "D"]], [["A", "X", "C"]])
    assert counts == ErrorCounts(
        substitutions=1, deletions=1, insertions=0, hits=2, reference_words=4
    )
    assert counts.errors == 2
    assert counts.rate == pytest.approx(0.5)


def test_hand_computed_insertion() -> None:
    counts = error_counts([["A", "B"]], [["A", "B", "C"]])
    assert (counts.substitutions, counts.deletions, counts.insertions, counts.hits) == (0, 0, 1, 2)
    assert counts.rate == pytest.approx(0.5)


def test_corpus_level_is_sum_of_counts_not_mean_of_rates() -> None:
    # Sentence rates are 1/1 and 0/9; the corpus rate is 1/10, not their mean 0.5.
    references = [["A"], list("BCDEFGHIJ")]
    hypotheses = [["X"], list("BCDEFGHIJ")]
    assert error_counts(references, hypotheses).rate == pytest.approx(0.1)


def test_matches_jiwer_on_random_corpus() -> None:
    rng = random.Random(0)
    words = ["REGEN", "SONNE", "WIND", "NORD", "SUED", "__ON__", "__OFF__"]
    references = [[rng.choice(words) for _ in range(rng.randint(1, 9))] for _ in range(50)]
    hypotheses = [[rng.choice(words) for _ in range(rng.randint(0, 9))] for _ in range(50)]
    counts = error_counts(references, hypotheses)
    expected = jiwer.process_words(
        [" ".join(r) for r in references], [" ".join(h) for h in hypotheses]
    )
    assert counts.rate == pytest.approx(expected.wer)
    assert counts.substitutions == expected.substitutions
    assert counts.deletions == expected.deletions
    assert counts.insertions == expected.insertions
    assert counts.reference_words == sum(len(r) for r in references)


def test_empty_hypothesis_is_all_deletions() -> None:
    counts = error_counts([["A", "B", "C"]], [[]])
    assert counts == ErrorCounts(deletions=3, reference_words=3)
    assert counts.rate == 1.0


def test_empty_reference_counts_insertions() -> None:
    counts = error_counts([[], ["A"]], [["X", "Y"], ["A"]])
    assert counts == ErrorCounts(insertions=2, hits=1, reference_words=1)
    assert counts.rate == pytest.approx(2.0)


def test_rate_without_reference_words() -> None:
    assert error_counts([[]], [[]]).rate == 0.0
    assert ErrorCounts().rate == 0.0
    assert ErrorCounts(insertions=3).rate == 1.0  # capped, not infinite


def test_counts_add_up() -> None:
    first = error_counts([["A", "B"]], [["A"]])
    second = error_counts([["C"]], [["X", "C"]])
    total = first + second
    assert total == ErrorCounts(
        substitutions=0, deletions=1, insertions=1, hits=2, reference_words=3
    )
    assert sum([first, second]) == total
    assert total == error_counts([["A", "B"], ["C"]], [["A"], ["X", "C"]])


def test_inconsistent_counts_are_rejected() -> None:
    with pytest.raises(ValueError, match="inconsistent"):
        ErrorCounts(substitutions=1, hits=1, reference_words=5)


def test_mismatched_corpus_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="pair up"):
        error_counts([["A"]], [])


def test_token_with_space_is_rejected() -> None:
    with pytest.raises(ValueError, match="whitespace"):
        error_counts([["A B"]], [["A"]])


def test_alignment_kinds() -> None:
    aligned = align(["A", "B", "C", "D"], ["A", "X", "C", "D", "F"])
    assert aligned == [
        AlignedToken("equal", "A", "A"),
        AlignedToken("substitute", "B", "X"),
        AlignedToken("equal", "C", "C"),
        AlignedToken("equal", "D", "D"),
        AlignedToken("insert", None, "F"),
    ]
    assert align(["A", "B", "C"], ["A", "C"]) == [
        AlignedToken("equal", "A", "A"),
        AlignedToken("delete", "B", None),
        AlignedToken("equal", "C", "C"),
    ]


def test_alignment_agrees_with_counts() -> None:
    reference, hypothesis = ["A", "B", "C", "D", "E"], ["B", "C", "X", "E", "F"]
    kinds = [token.kind for token in align(reference, hypothesis)]
    counts = error_counts([reference], [hypothesis])
    assert kinds.count("substitute") == counts.substitutions
    assert kinds.count("delete") == counts.deletions
    assert kinds.count("insert") == counts.insertions
    assert kinds.count("equal") == counts.hits


def test_alignment_of_empty_sides() -> None:
    assert align(["A", "B"], []) == [
        AlignedToken("delete", "A", None),
        AlignedToken("delete", "B", None),
    ]
    assert align([], ["A"]) == [AlignedToken("insert", None, "A")]
    assert align([], []) == []


def test_rate_label() -> None:
    assert rate_label("word") == "WER"
    assert rate_label("gloss") == "WER"
    assert rate_label("letter") == "LER"
    with pytest.raises(ValueError, match="unknown token unit"):
        rate_label("phoneme")

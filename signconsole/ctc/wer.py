"""Error rates (WER over glosses or words, LER over letters) and alignments, computed with jiwer.

Counts are corpus-level: S, D, I and hits are summed over all sentences and the rate is
(S + D + I) / N with N the number of reference tokens, the way sclite and the CSLR literature
report WER (not a mean of per-sentence rates).

jiwer minimises the plain edit distance (every error costs 1). sclite, which the Phoenix kit
uses, aligns with weights (substitution 4, insertion 3, deletion 3), so on the same pair it may
split the errors differently (D + I where jiwer reports two substitutions, say) and, rarely, on
long shifted sentences report a slightly different total.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import jiwer

AlignmentKind = Literal["equal", "substitute", "delete", "insert"]


@dataclass(frozen=True)
class ErrorCounts:
    """Edit operations summed over a corpus; `+` (and `sum`) combine corpora or batches."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    hits: int = 0
    reference_words: int = 0

    def __post_init__(self) -> None:
        if self.hits + self.substitutions + self.deletions != self.reference_words:
            raise ValueError(
                f"inconsistent counts: hits {self.hits} + substitutions {self.substitutions} + "
                f"deletions {self.deletions} != reference_words {self.reference_words}"
            )

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """(S + D + I) / N. With no reference words (N == 0): 0.0 when the hypotheses are empty
        too, else 1.0. The true ratio would be infinite; capping it at 100 % keeps plots, means
        and "best so far" comparisons finite, and N == 0 only happens on an empty or degenerate
        evaluation set anyway."""
        if self.reference_words == 0:
            return 0.0 if self.insertions == 0 else 1.0
        return self.errors / self.reference_words

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        if not isinstance(other, ErrorCounts):
            return NotImplemented
        return ErrorCounts(
            substitutions=self.substitutions + other.substitutions,
            deletions=self.deletions + other.deletions,
            insertions=self.insertions + other.insertions,
            hits=self.hits + other.hits,
            reference_words=self.reference_words + other.reference_words,
        )

    def __radd__(self, other: object) -> ErrorCounts:
        # sum() starts from the int 0; accept it so sum(list_of_counts) works without a start.
        if other == 0:
            return self
        return NotImplemented


def error_counts(
    references: Sequence[Sequence[str]], hypotheses: Sequence[Sequence[str]]
) -> ErrorCounts:
    """Corpus-level S/D/I/hits of token lists (glosses, words or letters) via jiwer.

    An empty hypothesis counts all its reference tokens as deletions; an empty reference counts
    all hypothesis tokens as insertions (jiwer 3 rejects empty references, so those pairs are
    counted here; they need no alignment).
    """
    if len(references) != len(hypotheses):
        raise ValueError(
            f"{len(references)} references but {len(hypotheses)} hypotheses; they pair up by index"
        )
    insertions_on_empty = 0
    paired_references: list[str] = []
    paired_hypotheses: list[str] = []
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        if not reference:
            insertions_on_empty += len(hypothesis)
            continue
        paired_references.append(_join(reference))
        paired_hypotheses.append(_join(hypothesis))
    counts = ErrorCounts(insertions=insertions_on_empty)
    if paired_references:
        output = jiwer.process_words(paired_references, paired_hypotheses)
        counts += ErrorCounts(
            substitutions=output.substitutions,
            deletions=output.deletions,
            insertions=output.insertions,
            hits=output.hits,
            reference_words=output.hits + output.substitutions + output.deletions,
        )
    return counts


@dataclass(frozen=True)
class AlignedToken:
    """One column of an alignment: `reference` is None for an insertion, `hypothesis` is None
    for a deletion."""

    kind: AlignmentKind
    reference: str | None
    hypothesis: str | None


def align(reference: Sequence[str], hypothesis: Sequence[str]) -> list[AlignedToken]:
    """Token-by-token alignment of one pair, from jiwer's alignment chunks, for marking S/D/I."""
    if not reference:
        return [AlignedToken("insert", None, token) for token in hypothesis]
    if not hypothesis:
        return [AlignedToken("delete", token, None) for token in reference]
    output = jiwer.process_words(_join(reference), _join(hypothesis))
    ref_tokens, hyp_tokens = output.references[0], output.hypotheses[0]
    aligned: list[AlignedToken] = []
    for chunk in output.alignments[0]:
        refs = ref_tokens[chunk.ref_start_idx : chunk.ref_end_idx]
        hyps = hyp_tokens[chunk.hyp_start_idx : chunk.hyp_end_idx]
        if chunk.type == "insert":
            aligned.extend(AlignedToken("insert", None, token) for token in hyps)
        elif chunk.type == "delete":
            aligned.extend(AlignedToken("delete", token, None) for token in refs)
        else:  # "equal" and "substitute" chunks pair tokens one to one
            aligned.extend(
                AlignedToken(chunk.type, ref, hyp) for ref, hyp in zip(refs, hyps, strict=True)
            )
    return aligned


def rate_label(unit: str) -> str:
    """The name of the error rate for a token unit: "WER" for words and glosses, "LER" (letter
    error rate) for letters."""
    labels = {"word": "WER", "gloss": "WER", "letter": "LER"}
    try:
        return labels[unit.lower()]
    except KeyError:
        raise ValueError(
            f"unknown token unit {unit!r}; expected one of {', '.join(labels)}"
        ) from None


def _join(tokens: Sequence[str]) -> str:
    # jiwer takes sentences and splits them on whitespace, so a token holding a space would be
    # scored as two; refuse it rather than miscount.
    for token in tokens:
        if not token or any(character.isspace() for character in token):
            raise ValueError(f"token {token!r} is empty or contains whitespace")
    return " ".join(tokens)

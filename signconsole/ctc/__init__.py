"""CTC decoding, error rates and Phoenix-2014 scoring."""

from signconsole.ctc.decode import beam_decode, greedy_decode
from signconsole.ctc.phoenix import (
    clean_hypothesis,
    clean_sentence,
    read_corpus_csv,
    read_ctm,
    read_stm,
    score,
    write_ctm,
)
from signconsole.ctc.wer import AlignedToken, ErrorCounts, align, error_counts, rate_label

__all__ = [
    "AlignedToken",
    "ErrorCounts",
    "align",
    "beam_decode",
    "clean_hypothesis",
    "clean_sentence",
    "error_counts",
    "greedy_decode",
    "rate_label",
    "read_corpus_csv",
    "read_ctm",
    "read_stm",
    "score",
    "write_ctm",
]

"""CTC decoders on hand-made probability matrices with hand-computed answers.

Vocabulary in these tests: 0 = blank, 1 = "a", 2 = "b", 3 = "c".
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from signconsole.ctc.decode import beam_decode, greedy_decode

BLANK, A, B = 0, 1, 2


def log_probs(*frames: list[float]) -> torch.Tensor:
    """[1, T, V] log-probabilities from rows of probabilities."""
    probs = torch.tensor(frames, dtype=torch.float32)
    assert torch.allclose(probs.sum(-1), torch.ones(len(frames)))
    return probs.log()[None]


def one_hot_frames(labels: list[int], vocabulary: int = 4, peak: float = 0.97) -> torch.Tensor:
    """[T, V] log-probs where frame t puts `peak` on labels[t] and spreads the rest evenly."""
    probs = torch.full((len(labels), vocabulary), (1 - peak) / (vocabulary - 1))
    probs[torch.arange(len(labels)), torch.tensor(labels)] = peak
    return probs.log()


def lengths_of(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


def both(log_probs: torch.Tensor, lengths: torch.Tensor) -> tuple[list, list]:
    return greedy_decode(log_probs, lengths), beam_decode(log_probs, lengths, beam_width=5)


def test_blank_and_repeats_collapse() -> None:
    frames = one_hot_frames([A, A, BLANK, B, B, BLANK])[None]
    assert both(frames, lengths_of(6)) == ([[A, B]], [[A, B]])


def test_repeat_separated_by_blank_is_two_labels() -> None:
    frames = one_hot_frames([A, BLANK, A])[None]
    assert both(frames, lengths_of(3)) == ([[A, A]], [[A, A]])


def test_repeat_without_blank_merges() -> None:
    frames = one_hot_frames([A, A, A])[None]
    assert both(frames, lengths_of(3)) == ([[A]], [[A]])


def test_all_blank_is_empty() -> None:
    frames = one_hot_frames([BLANK] * 5)[None]
    assert both(frames, lengths_of(5)) == ([[]], [[]])


def test_zero_length_is_empty() -> None:
    frames = one_hot_frames([A, B])[None]
    assert both(frames, lengths_of(0)) == ([[]], [[]])


def test_lengths_cut_padded_frames() -> None:
    # Frames 3 and 4 are padding that would add "b"; length 3 must hide them.
    frames = one_hot_frames([A, BLANK, A, B, B])[None]
    assert both(frames, lengths_of(3)) == ([[A, A]], [[A, A]])


def test_batch_with_different_lengths() -> None:
    batch = torch.stack(
        [
            one_hot_frames([A, B, B, BLANK, 3, 3]),
            one_hot_frames([B, BLANK, B, A, A, A]),  # its "a" lies past length 3
            one_hot_frames([BLANK, BLANK, A, BLANK, BLANK, BLANK]),  # its "a" lies past length 2
        ]
    )
    lengths = lengths_of(6, 3, 2)
    expected = [[A, B, 3], [B, B], []]
    assert both(batch, lengths) == (expected, expected)


def test_beam_beats_greedy_on_the_classic_example() -> None:
    # Two frames, p(a) = 0.4 and p(blank) = 0.6 in each. The best path is blank-blank (0.36),
    # so greedy says "". The labeling "a" collects a-a, a-blank and blank-a:
    # 0.16 + 0.24 + 0.24 = 0.64, so it is the most probable labeling.
    frames = log_probs([0.6, 0.4], [0.6, 0.4])
    assert greedy_decode(frames, lengths_of(2)) == [[]]
    assert beam_decode(frames, lengths_of(2), beam_width=2) == [[A]]


def test_beam_width_one_is_not_greedy() -> None:
    # Frame 0: a 0.6, blank 0.4. Frame 1: b 0.4, a 0.35, blank 0.25.
    # Best path a-b (0.24) gives "a b"; but P("a") = a-a 0.21 + a-blank 0.15 + blank-a 0.14
    # = 0.50 beats P("a b") = 0.24 and P("b") = 0.16. Width-1 prefix search keeps the prefix
    # "a" (0.36 after frame 1) over "a b" (0.24), so it agrees with the wide beam, not greedy.
    frames = log_probs([0.4, 0.6, 0.0], [0.25, 0.35, 0.4])
    assert greedy_decode(frames, lengths_of(2)) == [[A, B]]
    assert beam_decode(frames, lengths_of(2), beam_width=1) == [[A]]
    assert beam_decode(frames, lengths_of(2), beam_width=5) == [[A]]


def test_beam_width_one_equals_greedy_on_confident_frames() -> None:
    # What does hold: when every frame is near one-hot, path and labeling agree.
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        labels = torch.randint(0, 4, (12,), generator=generator).tolist()
        frames = one_hot_frames(labels, peak=0.999)[None]
        greedy = greedy_decode(frames, lengths_of(12))
        assert beam_decode(frames, lengths_of(12), beam_width=1) == greedy
        assert beam_decode(frames, lengths_of(12), beam_width=5) == greedy


def _best_labeling_by_enumeration(frames: torch.Tensor) -> list[int]:
    """The most probable labeling, summing every path (T and V small enough to enumerate)."""
    steps, vocabulary = frames.shape
    probs = frames.double().exp()
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(vocabulary), repeat=steps):
        labeling = tuple(label for label, _ in itertools.groupby(path) if label != BLANK)
        weight = math.prod(float(probs[t, label]) for t, label in enumerate(path))
        totals[labeling] = totals.get(labeling, 0.0) + weight
    return list(max(totals, key=totals.__getitem__))


@pytest.mark.parametrize("seed", range(10))
def test_wide_beam_finds_the_most_probable_labeling(seed: int) -> None:
    # With the beam wider than the number of prefixes nothing is pruned: the search is exact.
    generator = torch.Generator().manual_seed(seed)
    frames = torch.log_softmax(2 * torch.randn(5, 3, generator=generator), dim=-1)
    expected = _best_labeling_by_enumeration(frames)
    assert beam_decode(frames[None], lengths_of(5), beam_width=64) == [expected]


def test_large_vocabulary_matches_greedy_on_confident_frames() -> None:
    # Phoenix-sized (V = 1300, T = 300): exercises the per-frame top-k pruning.
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 1300, (2, 300), generator=generator)
    labels[:, ::3] = BLANK  # blanks between labels, as a trained CTC model emits
    logits = torch.randn(2, 300, 1300, generator=generator)
    logits.scatter_(2, labels[..., None], 25.0)
    frames = torch.log_softmax(logits, dim=-1)
    lengths = lengths_of(300, 217)
    assert beam_decode(frames, lengths, beam_width=5) == greedy_decode(frames, lengths)


def test_blank_index_other_than_zero() -> None:
    # Blank is the last index here; label 0 is an ordinary label.
    frames = log_probs([0.9, 0.05, 0.05], [0.05, 0.05, 0.9], [0.9, 0.05, 0.05])
    assert greedy_decode(frames, lengths_of(3), blank=2) == [[0, 0]]
    assert beam_decode(frames, lengths_of(3), blank=2) == [[0, 0]]


def test_half_precision_input() -> None:
    frames = one_hot_frames([A, BLANK, B])[None].to(torch.bfloat16)
    assert both(frames, lengths_of(3)) == ([[A, B]], [[A, B]])


@pytest.mark.parametrize("decode", [greedy_decode, beam_decode])
def test_bad_shapes_are_rejected(decode) -> None:
    frames = one_hot_frames([A, B])[None]
    with pytest.raises(ValueError, match=r"\[B, T, V\]"):
        decode(frames[0], lengths_of(2))
    with pytest.raises(ValueError, match="lengths must lie"):
        decode(frames, lengths_of(3))
    with pytest.raises(ValueError, match="lengths must be"):
        decode(frames, lengths_of(2, 2))
    with pytest.raises(ValueError, match="blank index"):
        decode(frames, lengths_of(2), blank=4)


def test_beam_width_must_be_positive() -> None:
    with pytest.raises(ValueError, match="beam_width"):
        beam_decode(one_hot_frames([A])[None], lengths_of(1), beam_width=0)

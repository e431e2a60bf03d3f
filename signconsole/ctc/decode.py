"""CTC decoding: greedy (best path) and prefix beam search.

Both decoders take LOG-probabilities [B, T, V] (the caller has applied log_softmax), the valid
length of each sample (frames past it are padding and are ignored) and the blank index. They
return one list of label ids per sample, repeats collapsed and blanks removed.

Greedy decoding finds the most probable *path*; prefix beam search approximates the most
probable *labeling*, which sums over every path that collapses to it. The two differ when the
probability mass of a labeling is spread over many paths (see `tests/test_ctc_decode.py` for the
classic two-frame example).
"""

from __future__ import annotations

import math

import numpy as np
import torch

_NEG_INF = float("-inf")


def greedy_decode(
    log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0
) -> list[list[int]]:
    """Best-path decoding: argmax per frame, cut to length, collapse repeats, drop blanks.

    Everything up to the final filter runs on the tensor's device, so a CUDA batch costs one
    device-to-host transfer instead of one per sample.
    """
    batch, frames, _ = _check_inputs(log_probs, lengths, blank)
    if frames == 0:
        return [[] for _ in range(batch)]
    best = log_probs.argmax(dim=-1)  # [B, T]
    previous = torch.nn.functional.pad(best[:, :-1], (1, 0), value=-1)
    valid = torch.arange(frames, device=best.device)[None, :] < lengths.to(best.device)[:, None]
    keep = valid & (best != blank) & (best != previous)
    # -1 marks dropped frames, so labels and mask travel in one tensor and one transfer.
    labels = best.masked_fill(~keep, -1).cpu().numpy()
    return [row[row >= 0].tolist() for row in labels]


def beam_decode(
    log_probs: torch.Tensor, lengths: torch.Tensor, beam_width: int = 5, blank: int = 0
) -> list[list[int]]:
    """CTC prefix beam search (Hannun et al. 2014), in the log domain.

    Each prefix carries two scores: p_blank (paths ending in blank) and p_nonblank (paths ending
    in its last label). The split is what makes repeats right: "A A" can only grow from a path
    that ended in blank, while A followed by A without a blank stays "A".

    Per frame only the `beam_width` most probable labels (plus blank, plus each beam's own last
    label, needed to keep a held label alive) are tried; that keeps the cost independent of V.
    Note that beam_width=1 is not greedy decoding: it keeps the best *prefix* (summed over
    paths), which can differ from the best path.
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    batch, frames, vocabulary = _check_inputs(log_probs, lengths, blank)
    if frames == 0:
        return [[] for _ in range(batch)]
    # One transfer for the batch; float64 so long sums of logs do not lose the small terms.
    all_log_probs = log_probs.detach().to("cpu", torch.float64).numpy()
    all_lengths = lengths.detach().cpu().tolist()
    top_k = min(beam_width, vocabulary - 1)
    return [
        _prefix_beam_search(all_log_probs[b, : int(all_lengths[b])], beam_width, top_k, blank)
        for b in range(batch)
    ]


def _check_inputs(
    log_probs: torch.Tensor, lengths: torch.Tensor, blank: int
) -> tuple[int, int, int]:
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be [B, T, V], got shape {tuple(log_probs.shape)}")
    batch, frames, vocabulary = log_probs.shape
    if lengths.dim() != 1 or lengths.shape[0] != batch:
        raise ValueError(f"lengths must be [B] = [{batch}], got shape {tuple(lengths.shape)}")
    if not 0 <= blank < vocabulary:
        raise ValueError(f"blank index {blank} is outside the vocabulary of size {vocabulary}")
    if batch and (int(lengths.min()) < 0 or int(lengths.max()) > frames):
        raise ValueError(
            f"lengths must lie in [0, {frames}] (the padded time axis), "
            f"got min {int(lengths.min())}, max {int(lengths.max())}"
        )
    return batch, frames, vocabulary


def _logaddexp(a: float, b: float) -> float:
    # math on Python floats: np.logaddexp on scalars costs ~1 us a call, which dominates here.
    if a == _NEG_INF:
        return b
    if b == _NEG_INF:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


def _prefix_beam_search(
    log_probs: np.ndarray, beam_width: int, top_k: int, blank: int
) -> list[int]:
    """Decode one sequence, log_probs [T, V] already cut to its length."""
    if log_probs.shape[0] == 0:
        return []
    candidates, candidate_scores = _top_labels(log_probs, top_k, blank)
    blank_scores = log_probs[:, blank].tolist()

    # prefix -> [log p_blank, log p_nonblank]; the empty prefix starts with all mass on blank.
    beams: dict[tuple[int, ...], list[float]] = {(): [0.0, _NEG_INF]}
    for t in range(log_probs.shape[0]):
        frame = log_probs[t]
        blank_score = blank_scores[t]
        labels = candidates[t]
        label_scores = candidate_scores[t]
        next_beams: dict[tuple[int, ...], list[float]] = {}
        for prefix, (p_blank, p_nonblank) in beams.items():
            total = _logaddexp(p_blank, p_nonblank)
            _add(next_beams, prefix, 0, total + blank_score)  # a blank never changes the prefix
            last = prefix[-1] if prefix else -1
            if last >= 0:
                # The last label held for one more frame: same prefix, still ending in it.
                _add(next_beams, prefix, 1, p_nonblank + float(frame[last]))
            for label, score in zip(labels, label_scores, strict=True):
                if label == last:
                    # A repeat only counts as a new label after a blank.
                    _add(next_beams, prefix + (label,), 1, p_blank + score)
                else:
                    _add(next_beams, prefix + (label,), 1, total + score)

        ranked = sorted(
            next_beams.items(), key=lambda item: _logaddexp(item[1][0], item[1][1]), reverse=True
        )
        beams = dict(ranked[:beam_width])

    best = max(beams.items(), key=lambda item: _logaddexp(item[1][0], item[1][1]))
    return list(best[0])


def _add(
    beams: dict[tuple[int, ...], list[float]], prefix: tuple[int, ...], slot: int, score: float
) -> None:
    """Add the path mass `score` to slot 0 (p_blank) or 1 (p_nonblank) of `prefix`."""
    entry = beams.get(prefix)
    if entry is None:
        entry = beams[prefix] = [_NEG_INF, _NEG_INF]
    entry[slot] = _logaddexp(entry[slot], score)


def _top_labels(
    log_probs: np.ndarray, top_k: int, blank: int
) -> tuple[list[list[int]], list[list[float]]]:
    """The top_k non-blank labels of every frame and their log-probs, as Python lists.

    One vectorized argpartition over [T, V] instead of one per frame, and plain lists because
    the search loop indexes them thousands of times.
    """
    if top_k <= 0:  # a vocabulary of blank alone
        return [[] for _ in range(log_probs.shape[0])], [[] for _ in range(log_probs.shape[0])]
    scores = log_probs.copy()
    scores[:, blank] = _NEG_INF
    if top_k >= scores.shape[1] - 1:
        order = np.argsort(-scores, axis=1)[:, :top_k]
    else:
        order = np.argpartition(-scores, top_k - 1, axis=1)[:, :top_k]
    top_scores = np.take_along_axis(scores, order, axis=1)
    return order.tolist(), top_scores.tolist()

"""Feature normalization, declared once in the profile and applied here and nowhere else.

Modes:
- ``none``          features as derived.
- ``corpus_stats``  per-dimension mean from the training split is subtracted; each block of the
                    layout (pose, hands, face, velocity, acceleration, relative) is divided by
                    its pooled standard deviation. Pooling per block, not per dimension, matters:
                    dividing every dimension by its own std amplifies noise on near-constant
                    points (the face) into large values.
- ``per_sample``    the same, with statistics of each sequence over its own frames.

Values resting on undetected landmarks are excluded from the statistics and stay 0 (the mean)
after normalization, so a missing hand never looks like a hand far away.

The seeds' NaN bug (002) was data normalized in the dataset and again in the training loop. Here
the statistics of the input are measured before normalizing (`input_looks_normalized`) so the
engine can raise a double-normalization alarm instead of dividing by a std of ~1 twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from signconsole.data.layout import LAYOUT

MODES = ("none", "per_sample", "corpus_stats")
_EPS = 1e-6


@dataclass
class FeatureStats:
    mean: torch.Tensor  # [F]
    scale: torch.Tensor  # [F], constant within each normalization block

    def save(self, path: str | Path) -> None:
        np.savez(path, mean=self.mean.numpy(), scale=self.scale.numpy())

    @classmethod
    def load(cls, path: str | Path) -> FeatureStats:
        with np.load(path) as data:
            return cls(torch.from_numpy(data["mean"]), torch.from_numpy(data["scale"]))


class StatsAccumulator:
    """Running masked sums over batches of [N, F] values (float64 to stay exact)."""

    def __init__(self, dim: int) -> None:
        self.count = torch.zeros(dim, dtype=torch.float64)
        self.total = torch.zeros(dim, dtype=torch.float64)
        self.total_sq = torch.zeros(dim, dtype=torch.float64)

    def add(
        self, values: torch.Tensor, valid: torch.Tensor, columns: torch.Tensor | None = None
    ) -> None:
        """`columns`: the dimensions `values` holds, when not all of them."""
        values = values.reshape(-1, values.shape[-1]).double()
        valid = valid.reshape(-1, valid.shape[-1])
        values = torch.where(valid, values, 0.0)
        where = slice(None) if columns is None else columns
        self.count[where] += valid.sum(0)
        self.total[where] += values.sum(0)
        self.total_sq[where] += (values * values).sum(0)

    def stats(self, ignore: tuple[str, ...] = ()) -> FeatureStats:
        """Statistics; the dimensions of the landmark groups in `ignore` neither count towards
        their blocks' pooled scales nor reach the model (see `ignoring`)."""
        count = self.count.clamp(min=1)
        mean = self.total / count
        variance = (self.total_sq / count - mean * mean).clamp(min=0)
        pooled_count = self.count.clone()
        for group in ignore:
            for dims in LAYOUT.group_dims(group) if group in LAYOUT.landmark_groups() else ():
                pooled_count[dims] = 0  # the face's noise would otherwise set the hands' scale
        scale = torch.ones_like(mean)
        for block in LAYOUT.normalization_blocks().values():
            n = pooled_count[block].sum()
            if n > 0:  # pooled variance of the block around each dimension's own mean
                pooled = (variance[block] * pooled_count[block]).sum() / n
                scale[block] = pooled.sqrt().clamp(min=_EPS)
        stats = FeatureStats(mean.float(), scale.float())
        return ignoring(stats, ignore) if ignore else stats


def check_groups(groups: tuple[str, ...]) -> None:
    """`data.ignore`: known groups, and at least one left for the model to see (with none, no
    feature is derived at all)."""
    known = LAYOUT.landmark_groups()
    unknown = [group for group in groups if group not in known]
    if unknown:
        raise ValueError(
            f"data.ignore: unknown landmark group(s) {', '.join(unknown)}; use {', '.join(known)}"
        )
    if set(known) <= set(groups):
        raise ValueError(
            f"data.ignore: ignores every landmark group ({', '.join(known)}); keep at least one"
        )


def ignoring(stats: FeatureStats, groups: tuple[str, ...]) -> FeatureStats:
    """`stats` with the dimensions of landmark `groups` (in every block: position, velocity,
    acceleration, relative) normalized to 0: mean 0, scale infinite. Held in the statistics, so
    everything that normalizes with a run's statistics (evaluation, decoding, a teacher) drops
    the same values. For fingerspelling the lexicon's face is a generic one plus noise: ~86% of
    the 6516 values, and nothing in them tells letters apart."""
    check_groups(groups)
    mean, scale = stats.mean.clone(), stats.scale.clone()
    for group in groups:
        for dims in LAYOUT.group_dims(group):
            mean[dims], scale[dims] = 0.0, float("inf")
    return FeatureStats(mean, scale)


def ignored_groups(stats: FeatureStats) -> tuple[str, ...]:
    """The landmark groups `ignoring` dropped from these statistics (every value scale = inf)."""
    if stats.scale.shape[-1] != LAYOUT.dim:  # precomputed features of another width
        return ()
    return tuple(
        group
        for group in LAYOUT.landmark_groups()
        if all(torch.isinf(stats.scale[dims]).all() for dims in LAYOUT.group_dims(group))
    )


def compute_stats(features: torch.Tensor, valid: torch.Tensor) -> FeatureStats:
    accumulator = StatsAccumulator(features.shape[-1])
    accumulator.add(features, valid)
    return accumulator.stats()


def normalize(
    features: torch.Tensor,
    valid: torch.Tensor,
    mode: str,
    stats: FeatureStats | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """Normalize [T, F] (one sequence) features. Invalid values come out as 0. `inplace`: into
    `features` itself (a tensor the caller just derived and owns: a batch's features are
    ~8-60 MB, and every new one is page-faulted in)."""
    out = features if inplace else None
    if mode == "none":
        return torch.where(valid, features, features.new_zeros(()), out=out)
    if mode == "per_sample":
        stats = compute_stats(features, valid)
    elif mode == "corpus_stats":
        if stats is None:
            raise ValueError("corpus_stats normalization needs statistics from the train split")
    else:
        raise ValueError(f"normalization must be one of {MODES}, got {mode!r}")
    if inplace:
        normalized = features.sub_(stats.mean).div_(stats.scale)
    else:
        normalized = (features - stats.mean) / stats.scale
    return torch.where(valid, normalized, normalized.new_zeros(()), out=out)


@dataclass(frozen=True)
class NormalizationCheck:
    """How standardized raw input already is, per block: the mean |per-dimension mean| and the
    pooled per-dimension std, over dimensions that vary at all (an always-missing hand is a
    constant 0 and says nothing about normalization)."""

    block_mean: dict[str, float]
    block_std: dict[str, float]

    @property
    def looks_standardized(self) -> bool:
        # Every block centred with unit spread per dimension: normalized upstream already.
        if not self.block_mean:
            return False
        return all(m < 0.1 for m in self.block_mean.values()) and all(
            0.7 < s < 1.4 for s in self.block_std.values()
        )


def check_input(features_sample: torch.Tensor, valid: torch.Tensor) -> NormalizationCheck:
    """Measure raw (pre-normalization) features [N, F]: standardized input normalized again is
    seed 002's NaN."""
    values = features_sample.reshape(-1, features_sample.shape[-1]).double()
    valid = valid.reshape(-1, valid.shape[-1])
    count = valid.sum(0).clamp(min=1)
    mean = torch.where(valid, values, 0.0).sum(0) / count
    variance = (torch.where(valid, (values - mean) ** 2, 0.0)).sum(0) / count
    varying = (variance > 1e-10) & (valid.sum(0) > 1)
    means, stds = {}, {}
    for name, block in LAYOUT.normalization_blocks().items():
        used = varying[block]
        if not used.any():
            continue
        means[name] = float(mean[block][used].abs().mean())
        stds[name] = float(variance[block][used].mean().sqrt())
    return NormalizationCheck(means, stds)

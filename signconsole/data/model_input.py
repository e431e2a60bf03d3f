"""Landmarks or stored features -> the normalized model input. One definition for training
batches (CPU threads or the device), evaluation, the doctor and `decode`.

Groups a profile ignores (`data.ignore`, held in the statistics as scale = inf) are never
derived: their values would be normalized to 0 anyway, and for the face that is 86% of the
6516-vector, the largest cost of preparing a batch on the CPU. `derive` returns the kept columns
only; `Columns.widen` (or `collate`) puts them in place in the full vector, with zeros elsewhere.
"""

from __future__ import annotations

import torch

from signconsole.data.layout import LAYOUT, Columns
from signconsole.data.normalize import FeatureStats, ignored_groups, normalize


class ModelInput:
    def __init__(self, coordinates: str, normalization: str, stats: FeatureStats | None) -> None:
        self.coordinates, self.normalization, self.stats = coordinates, normalization, stats
        skipped = ignored_groups(stats) if normalization == "corpus_stats" and stats else ()
        self.columns: Columns = LAYOUT.columns(skipped)
        self._stats: dict[tuple[torch.device, bool], FeatureStats] = {}

    def _stats_on(self, device: torch.device, columns_only: bool) -> FeatureStats | None:
        """The statistics (of the derived columns, or whole), copied to `device` once, not
        every batch."""
        if self.stats is None:
            return None
        key = (device, columns_only)
        if key not in self._stats:
            mean, scale = self.stats.mean, self.stats.scale
            if columns_only:
                mean, scale = mean[self.columns.index], scale[self.columns.index]
            self._stats[key] = FeatureStats(mean.to(device), scale.to(device))
        return self._stats[key]

    def derive(
        self,
        landmarks: torch.Tensor,
        mask: torch.Tensor,
        lengths: torch.Tensor | None = None,
        landmark_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Normalized values of `self.columns` from [T, 543, 3] landmarks and [T, 543] mask, or
        a padded batch of them with its `lengths`; with `landmark_ids`, only those of the 543."""
        values, valid = LAYOUT.features_with_validity(
            landmarks, mask, self.coordinates, self.columns, landmark_ids
        )
        return self._normalize(
            values, valid, self._stats_on(values.device, columns_only=True), lengths, inplace=True
        )

    def stored(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Normalized full-width values from precomputed features [T, F] or a padded batch."""
        features = features.float()
        if lengths is None:
            valid = torch.ones_like(features, dtype=torch.bool)
        else:
            frames = torch.arange(features.shape[-2], device=features.device)
            in_sequence = frames[None] < lengths.to(features.device)[:, None]
            valid = in_sequence[..., None].expand_as(features)
        return self._normalize(
            features, valid, self._stats_on(features.device, columns_only=False), lengths
        )

    def full(self, landmarks: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[T, 6516] normalized, the skipped columns 0."""
        return self.columns.widen(self.derive(landmarks, mask))

    def _normalize(
        self,
        values: torch.Tensor,
        valid: torch.Tensor,
        stats: FeatureStats | None,
        lengths: torch.Tensor | None,
        inplace: bool = False,
    ) -> torch.Tensor:
        if self.normalization == "per_sample" and lengths is not None:
            # Statistics of each sequence over its own frames, not the batch's padding.
            out = torch.zeros_like(values)
            for row, length in enumerate(lengths.tolist()):
                out[row, :length] = normalize(
                    values[row, :length], valid[row, :length], "per_sample"
                )
            return out
        return normalize(values, valid, self.normalization, stats, inplace)

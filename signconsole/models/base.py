"""The model contract and the masked building blocks every architecture shares.

A model maps features [B, T, 6516] and valid-frame counts [B] to a `ModelOutput`: raw logits
[B, T', V] (never log-probabilities: the CTC loss applies log_softmax exactly once), the exact
output lengths [B] and the encoder features [B, T', H] that feed the classifier.

Every architecture here has the same skeleton, `ConvRecurrentModel`:

    fusion (per frame) -> temporal conv stages (may subsample) -> BiLSTM -> Linear classifier

The conv stages run time-major, [B, T, C], the layout the fusion produces and the BiLSTM reads:
a kernel-k convolution is one matrix product over its k shifted views of time (`time_windows`),
so a 1x1 convolution is a plain `F.linear`. The parameters stay `nn.Conv1d`'s ([out, in, k]),
so state dicts and I3D checkpoint ports are unchanged. On a 2-core CPU this took the teacher's
convolutions 1.1-1.9x faster than `nn.Conv1d` on [B, C, T] (one GEMM over B*T rows instead of
oneDNN's small-channel kernels), and there are no transposes between stages.

Padding must never change a sample's result, so the temporal blocks keep one invariant: between
layers, every padding frame is exactly 0. A "same"-padded convolution then sees the same inputs
for a sample alone (zero padding) and inside a padded batch, max pools fill padding with -inf,
batch norm takes its statistics over valid frames only, and the LSTM runs on packed sequences.
Lengths are threaded through every layer with the exact conv arithmetic, so `output_lengths`
and `forward` cannot disagree.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from signconsole.config import ModelConfig
from signconsole.models.contract import ModelOutput, parameters_per_stage

TEMPORAL_STRIDES = (1, 2, 4)


def conv_output_length(
    lengths: torch.Tensor, kernel: int, stride: int, padding: int
) -> torch.Tensor:
    """PyTorch's exact conv/pool arithmetic: (L + 2p - k) // s + 1."""
    return torch.div(lengths + 2 * padding - kernel, stride, rounding_mode="floor") + 1


def time_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, frames, 1] bool, True on valid frames (the time-major layout of every stage)."""
    return (torch.arange(frames, device=lengths.device) < lengths[:, None])[:, :, None]


def time_windows(
    x: torch.Tensor, kernel: int, stride: int, padding: int, fill: float = 0.0
) -> list[torch.Tensor]:
    """The `kernel` views of x [B, T, C] that a window over time reads: view i holds, for every
    output frame t, input frame t * stride + i - padding (`fill` outside the sequence)."""
    frames = (x.shape[1] + 2 * padding - kernel) // stride + 1
    if padding:
        x = F.pad(x, (0, 0, padding, padding), value=fill)
    return [x[:, i : i + stride * (frames - 1) + 1 : stride] for i in range(kernel)]


def temporal_conv(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """`conv` applied to time-major x [B, T, C_in] -> [B, T', C_out], with conv's own weights.

    Dense: one `F.linear` over the concatenated windows (weight [out, in, k] read as
    [out, k * in]). Depthwise: a multiply-add per kernel tap. Other groupings go through
    nn.Conv1d on the channel-first view."""
    weight, bias = conv.weight, conv.bias
    out_channels, in_per_group, kernel = weight.shape
    (stride,), (padding,) = conv.stride, conv.padding
    assert isinstance(padding, int)
    if conv.groups == 1:
        if kernel == 1 and stride == 1 and not padding:
            return F.linear(x, weight[:, :, 0], bias)
        windows = torch.cat(time_windows(x, kernel, stride, padding), dim=-1)
        return F.linear(windows, weight.permute(0, 2, 1).reshape(out_channels, -1), bias)
    if conv.groups == out_channels == x.shape[-1]:
        windows = time_windows(x, kernel, stride, padding)
        y = windows[0] * weight[:, 0, 0]
        for tap in range(1, kernel):
            y = torch.addcmul(y, windows[tap], weight[:, 0, tap])
        return y if bias is None else y + bias
    return conv(x.transpose(1, 2)).transpose(1, 2)


def stride_plan(temporal_stride: int, points: int) -> tuple[int, ...]:
    """Strides for an architecture's downsampling points: the first log2(stride) points get 2."""
    if temporal_stride not in TEMPORAL_STRIDES:
        raise ValueError(
            f"temporal_stride must be one of {TEMPORAL_STRIDES}, got {temporal_stride}"
        )
    halvings = temporal_stride.bit_length() - 1
    if halvings > points:
        raise ValueError(f"temporal_stride {temporal_stride} needs {halvings} stride points")
    return tuple(2 if i < halvings else 1 for i in range(points))


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of `divisor`, never dropping below 90%.

    The MobileNet convention; every I3D and MobileNetV3 width is already a multiple of 8, so a
    width_multiplier of 1.0 reproduces both channel plans exactly.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """Batch norm over time-major x [B, T, C] whose training statistics come from valid frames.

    Zero padding frames would otherwise drag the batch mean and variance towards 0 by an amount
    that depends on how the batch was bucketed. Parameters and buffers are exactly those of
    nn.BatchNorm1d, so state dicts (and I3D checkpoint ports) map one to one. In eval mode it is
    the stock layer: running statistics, a per-channel affine map.

    Written out rather than nn.BatchNorm1d on a gathered copy of the valid frames: statistics
    are two masked sums, and the normalisation is one fused multiply-add (`addcmul`), half the
    elementwise passes of the textbook form, forward and backward.
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        x32 = x.float()  # statistics in fp32 also under autocast
        if self.training or not self.track_running_stats:
            mean, var, x32 = self._batch_statistics(x32, mask)
        else:
            assert self.running_mean is not None and self.running_var is not None
            mean, var = self.running_mean, self.running_var
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            scale = scale * self.weight
        shift = -mean * scale
        if self.affine:
            shift = shift + self.bias
        return torch.addcmul(shift, x32, scale).to(x.dtype)

    def _batch_statistics(
        self, x32: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean and (biased) variance over the valid frames, and the x they are the mean and
        variance of: x centred on the running mean, a constant, so that the one-pass variance
        E[x^2] - E[x]^2 stays accurate when the mean is large against the spread."""
        if self.running_mean is not None:
            x32 = x32 - self.running_mean.detach()
        if mask is None:
            # At least 2, as with a mask: one frame has no variance (nn.BatchNorm1d raises) and
            # the unbiased running variance would divide by 0.
            count = torch.tensor(max(2.0, float(x32.shape[0] * x32.shape[1])), device=x32.device)
            masked = x32
        else:
            valid = mask.to(torch.float32)
            count = valid.sum().clamp_min(2.0)
            masked = x32 * valid
        mean = masked.sum(dim=(0, 1)) / count
        var = ((masked * x32).sum(dim=(0, 1)) / count - mean.square()).clamp_min(0.0)
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum
                if momentum is None:  # cumulative moving average, as in nn.BatchNorm1d
                    momentum = 1.0 / float(self.num_batches_tracked)
                # The running mean moves by the batch mean of the centred x.
                self.running_mean.add_(mean, alpha=momentum)
                self.running_var.lerp_(var * count / (count - 1), momentum)  # unbiased, as torch
        return mean, var, x32


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "hswish": nn.Hardswish,
    "gelu": nn.GELU,
    "none": nn.Identity,
}
# 1 / sqrt(E[f(x)^2]) for x ~ N(0, 1): the init gain that keeps a unit signal at unit scale.
ACTIVATION_GAINS = {"relu": 2**0.5, "hswish": 1.74, "gelu": 1.53, "none": 1.0}


class ConvUnit(nn.Module):
    """Conv1d -> (masked) BatchNorm1d -> activation, "same" padding, padding frames kept at 0.

    Submodules are `conv` and `bn` so that I3D ports (`conv3d`/`bn`, `conv3d`/`batch3d`) map by a
    plain rename. `norm=False` gives a biased conv without batch norm.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        activation: str = "relu",
        norm: bool = True,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, kernel // 2
        self.conv = nn.Conv1d(
            in_channels,
            out_channels,
            kernel,
            stride=stride,
            padding=self.padding,
            groups=groups,
            bias=not norm,
        )
        self.bn = MaskedBatchNorm1d(out_channels, eps=bn_eps) if norm else None
        self.act = ACTIVATIONS[activation]()
        # He-style init (fan_in, gain per activation) keeps the signal's scale from layer to
        # layer. PyTorch's default conv init shrinks it ~3x per layer; batch statistics hide that
        # in training, but in eval mode before the running statistics adapt (an evaluation or a
        # collapse check at step 0) the student's deep stack handed the BiLSTM a ~1e-9 signal.
        fan_in = in_channels // groups * kernel
        nn.init.normal_(self.conv.weight, std=ACTIVATION_GAINS[activation] / fan_in**0.5)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return conv_output_length(lengths, self.kernel, self.stride, self.padding)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = self.output_lengths(lengths)
        x = temporal_conv(x, self.conv)
        mask = time_mask(lengths, x.shape[1])
        if self.bn is not None:
            x = self.bn(x, mask)
        return self.act(x).masked_fill(~mask, 0.0), lengths


class MaskedMaxPool1d(nn.Module):
    """Max pool over time with "same" padding; padding frames count as -inf, never as 0."""

    def __init__(self, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, kernel // 2

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return conv_output_length(lengths, self.kernel, self.stride, self.padding)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.masked_fill(~time_mask(lengths, x.shape[1]), float("-inf"))
        # torch's pool on the channel-first view (a transpose, no copy): its backward scatters
        # through saved indices, ~5x cheaper than a chain of torch.maximum over shifted views.
        x = F.max_pool1d(x.transpose(1, 2), self.kernel, self.stride, self.padding).transpose(1, 2)
        lengths = self.output_lengths(lengths)
        # Every valid output window holds a valid frame, so -inf survives only in padding.
        return x.masked_fill(~time_mask(lengths, x.shape[1]), 0.0), lengths


class Chain(nn.Sequential):
    """nn.Sequential for (x, lengths) layers: names stay `0`, `1`, ... or the OrderedDict keys."""

    def __init__(self, *layers: nn.Module | OrderedDict[str, nn.Module]) -> None:
        super().__init__(*layers)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for layer in self:
            lengths = layer.output_lengths(lengths)
        return lengths

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        for layer in self:
            x, lengths = layer(x, lengths)
        return x, lengths


class SequenceLSTM(nn.Module):
    """Bidirectional LSTM over packed sequences, so padding never reaches a sample's states."""

    def __init__(self, input_size: int, hidden_per_direction: int, layers: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(
            input_size,
            hidden_per_direction,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout
            if layers > 1
            else 0.0,  # torch warns on inter-layer dropout with 1 layer
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out  # padding frames are 0


class CSLRModel(nn.Module):
    """The contract every architecture fulfils; stages are direct submodules, in order."""

    stage_names: ClassVar[tuple[str, ...]] = ()

    def stages(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in self.stage_names}

    def parameters_per_stage(self) -> dict[str, int]:
        return parameters_per_stage(self.stages())

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> ModelOutput:
        raise NotImplementedError


def validate_config(config: ModelConfig, vocab_size: int) -> None:
    """Reject a model section that cannot build a working model, with the reason."""
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2 (blank + at least one gloss), got {vocab_size}")
    if config.hidden < 2 or config.hidden % 2:
        raise ValueError(f"model.hidden must be even and >= 2 (BiLSTM halves), got {config.hidden}")
    if config.fusion_dim < 1:
        raise ValueError(f"model.fusion_dim must be >= 1, got {config.fusion_dim}")
    if config.lstm_layers < 1:
        raise ValueError(f"model.lstm_layers must be >= 1, got {config.lstm_layers}")
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"model.dropout must be in [0, 1), got {config.dropout}")
    if config.width_multiplier <= 0:
        raise ValueError(f"model.width_multiplier must be > 0, got {config.width_multiplier}")
    stride_plan(config.temporal_stride, 2)  # raises on anything but 1, 2, 4


class ConvRecurrentModel(CSLRModel):
    """fusion -> temporal conv stages -> BiLSTM -> classifier, shared by all architectures.

    A subclass builds `self.fusion` (see fusion.py) and one `Chain` per name in `conv_stages`
    (time-major [B, T, C]), then calls `_build_head` with the channels of the last stage.
    """

    conv_stages: ClassVar[tuple[str, ...]] = ()

    def _build_head(self, in_channels: int, config: ModelConfig, vocab_size: int) -> None:
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = SequenceLSTM(
            in_channels, config.hidden // 2, config.lstm_layers, config.dropout
        )
        # Default nn.Linear init (kaiming-uniform, weights ~ U(+-1/sqrt(H))) on purpose: seed 000
        # initialised the classifier with std 0.001, the logits started flat, gradients into the
        # encoder were ~1000x too small and the signal died. Do not shrink this init.
        self.classifier = nn.Linear(2 * (config.hidden // 2), vocab_size)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.long().clamp_min(1)
        for name in self.conv_stages:
            lengths = getattr(self, name).output_lengths(lengths)
        return lengths

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> ModelOutput:
        # A zero-length sample is read as one (zero) frame so it still yields one output frame.
        lengths = lengths.to(device=features.device, dtype=torch.long).clamp_min(1)
        x = self.fusion(features, lengths)  # [B, T, hidden], padding = 0
        for name in self.conv_stages:
            x, lengths = getattr(self, name)(x, lengths)
        encoder = self.lstm(self.dropout(x), lengths)
        logits = self.classifier(self.dropout(encoder))
        return ModelOutput(logits=logits, lengths=lengths, encoder=encoder)

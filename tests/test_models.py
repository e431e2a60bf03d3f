"""Shape and contract tests for the models, on small synthetic tensors (fast, CPU)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from signconsole.config import ModelConfig
from signconsole.data.layout import FEATURE_DIM, LAYOUT
from signconsole.models.base import CSLRModel, MaskedBatchNorm1d, temporal_conv
from signconsole.models.contract import ModelOutput
from signconsole.models.fusion import skip_zero_columns
from signconsole.models.registry import ARCHITECTURES, build_model

VOCAB = 12
STAGES = {
    "i3d_teacher": ("fusion", "stem", "mixed_3", "mixed_4", "mixed_5", "lstm", "classifier"),
    "mobilenet_student": (
        "fusion",
        "stem",
        "blocks_1",
        "blocks_2",
        "blocks_3",
        "lstm",
        "classifier",
    ),
    "bilstm": ("fusion", "subsample", "lstm", "classifier"),
}


def small(architecture: str, stride: int = 4, **overrides: object) -> CSLRModel:
    fields: dict[str, object] = {
        "architecture": architecture,
        "hidden": 32,
        "fusion_dim": 8,
        "dropout": 0.1,
        "temporal_stride": stride,
        "width_multiplier": 0.25,
    }
    fields.update(overrides)
    torch.manual_seed(0)
    return build_model(ModelConfig(**fields), FEATURE_DIM, VOCAB)  # type: ignore[arg-type]


def features(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, frames, FEATURE_DIM, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("stride", [1, 2, 4])
@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_shapes_and_lengths(architecture: str, stride: int) -> None:
    model = small(architecture, stride)
    lengths = torch.tensor([37, 1, 20, 36])
    out = model(features(4, 37), lengths)
    assert isinstance(out, ModelOutput)
    expected = model.output_lengths(lengths)
    assert out.lengths.dtype == torch.int64
    assert torch.equal(out.lengths, expected)
    t_out = out.logits.shape[1]
    assert out.logits.shape == (4, t_out, VOCAB)
    assert out.encoder.shape == (4, t_out, 32)
    assert t_out == int(model.output_lengths(torch.tensor([37]))[0]) == int(expected.max())
    assert torch.all(expected >= 1)
    ceil = torch.tensor([math.ceil(int(n) / stride) for n in lengths])
    assert torch.all(expected >= ceil)  # no time collapse: at least T / stride frames
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_all_architectures_agree_on_output_lengths(stride: int) -> None:
    """T' = ceil(T / stride) everywhere, so teacher and student frames align for distillation."""
    lengths = torch.arange(1, 60)
    expected = torch.div(lengths + stride - 1, stride, rounding_mode="floor")
    for architecture in ARCHITECTURES:
        assert torch.equal(small(architecture, stride).output_lengths(lengths), expected)


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_stages_partition_the_parameters(architecture: str) -> None:
    model = small(architecture)
    assert model.stage_names == STAGES[architecture]
    stages = model.stages()
    assert list(stages) == list(STAGES[architecture])
    owner: dict[int, str] = {}
    for name, module in stages.items():
        for parameter in module.parameters():
            assert id(parameter) not in owner, f"parameter in {owner[id(parameter)]} and {name}"
            owner[id(parameter)] = name
    assert set(owner) == {id(p) for p in model.parameters()}
    per_stage = model.parameters_per_stage()
    assert all(count > 0 for count in per_stage.values())
    assert sum(per_stage.values()) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("stride", [1, 4])
@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_padding_does_not_change_a_sample(architecture: str, stride: int) -> None:
    model = small(architecture, stride).eval()
    short = 13
    batch = features(3, 40)
    batch[1, short:] = float("nan")  # padding content must never matter, not even NaN
    lengths = torch.tensor([40, short, 29])
    with torch.no_grad():
        padded = model(batch, lengths)
        alone = model(batch[1:2, :short], torch.tensor([short]))
    n = int(alone.lengths[0])
    assert int(padded.lengths[1]) == n
    torch.testing.assert_close(padded.logits[1, :n], alone.logits[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded.encoder[1, :n], alone.encoder[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_nan_padding_keeps_gradients_finite(architecture: str) -> None:
    model = small(architecture).train()
    batch = features(2, 24)
    batch[1, 10:] = float("nan")
    out = model(batch, torch.tensor([24, 10]))
    valid = torch.arange(out.logits.shape[1])[None, :] < out.lengths[:, None]
    out.logits[valid].sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


@pytest.mark.parametrize("ignored", [("face",), ("face", "left_hand"), ()])
@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_skipping_zero_columns_is_the_same_model(architecture: str, ignored: tuple) -> None:
    """A fusion told which columns the data fills computes the same outputs and gradients, from
    the same parameters (a checkpoint loads either way), as one reading all 6516, whether it is
    fed the whole vector or those columns alone (a compact batch)."""
    dense = small(architecture, fusion_dim=16).train()
    with torch.no_grad():  # LayerNorm gains and biases away from 1 and 0, so they matter
        for parameter in dense.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    skipping = copy.deepcopy(dense)
    columns = LAYOUT.columns(ignored)
    skip_zero_columns(skipping, columns)
    assert sorted(skipping.state_dict()) == sorted(dense.state_dict())
    batch = torch.zeros(3, 30, FEATURE_DIM)
    batch[..., columns.index] = features(3, 30)[..., columns.index]
    batch[2, 12:] = float("nan")  # padding is still masked before anything reads it
    lengths = torch.tensor([30, 25, 12])
    compact_model = copy.deepcopy(skipping)
    outputs = []
    for model, inputs in (
        (dense, batch),
        (skipping, batch),
        (compact_model, batch[..., columns.index]),
    ):
        torch.manual_seed(1)  # the same dropout masks
        out = model(inputs, lengths)
        valid = torch.arange(out.logits.shape[1])[None, :] < out.lengths[:, None]
        (out.logits[valid] * torch.arange(VOCAB)).sum().backward()
        outputs.append(out.logits[valid].detach())
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(outputs[2], outputs[1], atol=1e-6, rtol=1e-6)
    # float32 sums in another order: each gradient's difference against the whole gradient's
    # size (a gradient that is 0 in theory, behind a batch norm, is all rounding either way).
    # The I3D teacher's temporal projection, with the face and a hand skipped, differed by
    # 1.3e-4 of it on one machine's kernels and under 1e-4 on another's; a column read from the
    # wrong place differs by the gradient's own size.
    scale = float(torch.cat([p.grad.flatten() for p in dense.parameters()]).norm())
    for other in (skipping, compact_model):
        for (name, a), b in zip(dense.named_parameters(), other.parameters(), strict=True):
            assert a.grad is not None and b.grad is not None, name
            assert float((b.grad - a.grad).norm()) <= 1e-3 * scale, name
    if not columns.full:  # the whole width or the kept width, nothing else
        with pytest.raises(ValueError, match="6516 features per frame or its"):
            compact_model(batch[..., columns.index[:-1]], lengths)


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_no_time_collapse(architecture: str) -> None:
    """Seed 003: a global pool collapsed time to one frame; every frame then looked the same."""
    model = small(architecture, stride=4).eval()
    frames = 96
    x = features(1, frames)
    lengths = torch.tensor([frames])
    with torch.no_grad():
        base = model(x, lengths)
        # Frames differ from each other.
        assert base.encoder[0].std(dim=0).mean() > 1e-3
        assert base.logits[0].std(dim=0).mean() > 1e-3

        early = x.clone()
        early[0, :4] += 3.0 * torch.randn(4, FEATURE_DIM)
        change = (model(early, lengths).logits - base.logits)[0].abs().mean(dim=-1)
    t_out = change.shape[0]
    assert change[:2].mean() > 2 * change[-2:].mean()  # early input -> early output
    assert change.std() > 0.1 * change.mean()  # not a uniform shift of all frames

    middle = x.clone()
    middle[0, 44:52] += 3.0 * torch.randn(8, FEATURE_DIM)
    with torch.no_grad():
        change = (model(middle, lengths).logits - base.logits)[0].abs().mean(dim=-1)
    peak = int(change.argmax())
    assert abs(peak - 48 / 4) <= 3, f"largest change at output frame {peak} of {t_out}"


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_conv_stages_are_local_in_time(architecture: str) -> None:
    """Below the BiLSTM, a frame reaches only its receptive field: no global op over time."""
    model = small(architecture, stride=4).eval()
    assert not any(
        isinstance(m, nn.AdaptiveAvgPool1d | nn.AdaptiveMaxPool1d) for m in model.modules()
    )

    def conv_features(x: torch.Tensor) -> torch.Tensor:
        lengths = torch.tensor([x.shape[1]])
        h = model.fusion(x, lengths)
        for name in model.conv_stages:
            h, lengths = getattr(model, name)(h, lengths)
        return h[0]  # [T', C]

    x = features(1, 512)
    perturbed = x.clone()
    # Not a constant shift: the fusion's LayerNorm would cancel it (and the test then passed
    # on rounding noise alone).
    perturbed[0, 0] += 5.0 * torch.randn(x.shape[-1], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        change = (conv_features(perturbed) - conv_features(x)).abs().amax(dim=1)
    assert change[0] > 0
    assert torch.all(change[96:] == 0)  # 128 output frames; receptive fields end well before


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_logits_are_raw_and_not_flat(architecture: str) -> None:
    model = small(architecture).eval()
    with torch.no_grad():
        out = model(features(2, 30), torch.tensor([30, 30]))
    # log_softmax output would have logsumexp == 0 at every frame; the loss applies it once.
    assert out.logits.logsumexp(dim=-1).abs().min() > 0.1
    # Seed 000: a tiny classifier init gave flat logits and the signal died.
    assert out.logits.std(dim=-1).mean() > 0.05


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_one_frame_gives_one_output_frame(architecture: str) -> None:
    model = small(architecture, stride=4).eval()
    with torch.no_grad():
        out = model(features(1, 1), torch.tensor([1]))
    assert out.logits.shape[1] >= 1 and int(out.lengths[0]) >= 1
    assert int(model.output_lengths(torch.tensor([0]))[0]) >= 1


def test_invalid_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="temporal_stride"):
        small("bilstm", stride=3)
    with pytest.raises(ValueError, match="temporal_stride"):
        small("i3d_teacher", stride=8)
    with pytest.raises(ValueError, match="architecture"):
        build_model(ModelConfig(architecture="resnet"), FEATURE_DIM, VOCAB)
    with pytest.raises(ValueError, match="hidden"):
        small("mobilenet_student", hidden=33)


def test_teacher_mirrors_i3d_names_and_channels() -> None:
    model = build_model(ModelConfig(architecture="i3d_teacher", hidden=32), FEATURE_DIM, VOCAB)
    keys = set(model.state_dict())
    for key in (
        "stem.Conv1d_1a.conv.weight",
        "stem.Conv1d_2c.bn.running_var",
        "mixed_3.Mixed_3b.branch_0.conv.weight",
        "mixed_3.Mixed_3b.branch_1.1.conv.weight",
        "mixed_4.Mixed_4f.branch_2.0.bn.weight",
        "mixed_5.Mixed_5c.branch_3.1.conv.weight",
    ):
        assert key in keys, key
    assert not any(k.endswith("conv.bias") for k in keys if "mixed" in k or "stem" in k)
    # Width 1.0 is I3D's real channel plan (Mixed_3b: 64 + 128 + 32 + 32 = 256, ... 1024).
    assert model.mixed_3.Mixed_3b.out_channels == 256
    assert model.mixed_3.Mixed_3c.out_channels == 480
    assert model.mixed_4.Mixed_4f.out_channels == 832
    assert model.mixed_5.Mixed_5c.out_channels == 1024
    assert model.stem.Conv1d_1a.conv.kernel_size == (7,)
    assert model.mixed_3.Mixed_3b.branch_2[1].conv.kernel_size == (3,)


def test_masked_batch_norm_ignores_padding() -> None:
    torch.manual_seed(0)
    masked, reference = MaskedBatchNorm1d(5), nn.BatchNorm1d(5)
    x = torch.randn(2, 10, 5) * 3.0 + 40.0  # time-major [B, T, C]; a mean far from 0
    x[1, 6:] = 100.0  # padding
    mask = torch.ones(2, 10, 1, dtype=torch.bool)
    mask[1, 6:] = False
    for _ in range(3):  # the running statistics move; the batch statistics stay exact
        y = masked(x, mask)
        valid = torch.cat([x[0], x[1, :6]])  # [16, 5]: only the valid frames
        expected = reference(valid)
        # One-pass float32 statistics, centred on the running mean (0 at first, 40 away):
        # within 1e-4 of torch's two-pass ones on a unit-scale output.
        torch.testing.assert_close(torch.cat([y[0], y[1, :6]]), expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(masked.running_mean, reference.running_mean)
        torch.testing.assert_close(masked.running_var, reference.running_var, rtol=1e-4, atol=1e-4)
    masked.eval(), reference.eval()
    expected = reference(x.reshape(-1, 5)).reshape(2, 10, 5)
    torch.testing.assert_close(masked(x), expected, rtol=1e-4, atol=1e-4)
    masked.train()
    masked(torch.randn(1, 1, 5))  # one frame, no mask: finite statistics, not a division by 0
    assert torch.isfinite(masked.running_var).all()


def test_time_major_convolution_is_nn_conv1d() -> None:
    """The stages' convolutions read nn.Conv1d's weights on [B, T, C]: dense, depthwise and
    grouped, any stride, forward and gradients the same as the layer on [B, C, T]."""
    torch.manual_seed(0)
    for in_c, out_c, kernel, stride, groups, bias in [
        (6, 4, 1, 1, 1, False),
        (6, 4, 3, 2, 1, True),
        (5, 7, 7, 2, 1, False),
        (6, 6, 5, 1, 6, False),
        (6, 6, 3, 2, 6, True),
        (6, 4, 3, 1, 2, True),
    ]:
        conv = nn.Conv1d(in_c, out_c, kernel, stride, kernel // 2, groups=groups, bias=bias)
        x = torch.randn(3, 11, in_c, requires_grad=True)
        ours = temporal_conv(x, conv)
        grad = torch.randn_like(ours)
        (ours * grad).sum().backward()
        ours_grads = x.grad.clone(), conv.weight.grad.clone()
        x.grad, conv.weight.grad = None, None
        theirs = conv(x.transpose(1, 2)).transpose(1, 2)
        (theirs * grad).sum().backward()
        torch.testing.assert_close(ours, theirs)
        torch.testing.assert_close(ours_grads, (x.grad, conv.weight.grad))


@pytest.mark.parametrize("architecture", ["bilstm", "mobilenet_student"])
def test_tiny_overfit_with_ctc(architecture: str) -> None:
    """Two random sequences, fixed targets: CTC loss falls by >80% within 200 steps."""
    model = small(architecture, stride=4, hidden=64, fusion_dim=16, dropout=0.0).train()
    x = features(2, 48, seed=1)
    lengths = torch.tensor([48, 40])
    targets = torch.tensor([[3, 5, 7, 2, 9], [4, 4, 1, 8, 0]])  # second: 4 labels, 0-padded
    target_lengths = torch.tensor([5, 4])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(200):
        out = model(x, lengths)
        log_probs = out.logits.log_softmax(dim=-1).transpose(0, 1)  # as the engine does: once
        loss = nn.functional.ctc_loss(log_probs, targets, out.lengths, target_lengths)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if loss.item() < 0.2 * losses[0]:
            break
    assert losses[-1] < 0.2 * losses[0], f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"

"""The model contract, for built-in and user models alike, and the check that enforces it.

    forward(features [B, T, F] float, lengths [B] int) -> (logits [B, T', V], output_lengths [B])

- logits are raw scores: the loss applies log_softmax exactly once (seed 001);
- V is the vocabulary size including the CTC blank at index 0;
- output_lengths are integers, 1 <= output_lengths[b] <= T', reduced with the model's own
  temporal stride (seed 003: a pooled-away time axis is the classic failure);
- a third returned value, if any, is the encoder output [B, T', H] the sequence-collapse check
  watches (the built-in models return it); without it the check watches the logits;
- stages (freezing, per-stage LR and grad norms, pretrained loading) are the model's `stages()`
  mapping when it has one, else its top-level children in order.

`check_model` calls the model on one real batch before anything trains (doctor and every run)
and returns one line per violation.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from signconsole.errors import UserError
from signconsole.models.user_code import where as _where


class ModelOutput(NamedTuple):
    logits: torch.Tensor  # [B, T', V] raw, unnormalised
    lengths: torch.Tensor  # [B] int64, valid output frames per sample
    encoder: torch.Tensor | None  # [B, T', H] before the classifier, when the model returns it


class ContractError(UserError):
    """The model returned something the contract does not allow (the message says what)."""


def forward(model: nn.Module, features: torch.Tensor, lengths: torch.Tensor) -> ModelOutput:
    """Call a model and read its output by the contract: the one way every caller runs a model."""
    output = read_output(model(features, lengths))
    return output._replace(lengths=output.lengths.long())


def read_output(raw: object) -> ModelOutput:
    """A model's return value as a ModelOutput (lengths in the dtype the model gave)."""
    if isinstance(raw, torch.Tensor) or not isinstance(raw, tuple | list) or len(raw) < 2:
        raise ContractError(
            f"forward returned {_kind(raw)}; it must return (logits [B, T', V], output_lengths "
            "[B]): return the lengths too, even when time is not downsampled"
        )
    logits, out_lengths = raw[0], raw[1]
    encoder = raw[2] if len(raw) > 2 and isinstance(raw[2], torch.Tensor) else None
    if not isinstance(logits, torch.Tensor) or not isinstance(out_lengths, torch.Tensor):
        raise ContractError(
            f"forward returned ({_kind(logits)}, {_kind(out_lengths)}); both must be tensors"
        )
    return ModelOutput(logits, out_lengths, encoder)


def _kind(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {list(value.shape)}"
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__


LOOSE_STAGE = "model_params"  # parameters that sit on the model itself, outside every child


def model_stages(model: nn.Module) -> OrderedDict[str, nn.Module]:
    """The model's named stages, in input-to-output order.

    `stages()` when the model has it (any mapping of name -> module: dict, OrderedDict,
    nn.ModuleDict); it must cover every trainable parameter, or those would never train.
    Otherwise the top-level children, plus a `model_params` stage for parameters registered
    on the model itself (a learned positional embedding, a scale), so nothing is left out."""
    stages = getattr(model, "stages", None)
    if callable(stages) and not isinstance(stages, nn.Module):
        mapping = stages()
        if not isinstance(mapping, Mapping | nn.ModuleDict):
            raise ContractError(
                f"stages() returned {_kind(mapping)}; it must return a mapping of stage "
                "name -> nn.Module, input to output"
            )
        items = list(mapping.items())
        for name, module in items:
            if not isinstance(name, str):
                bad = f" has the key {name!r} ({type(name).__name__}), not a stage name (str)"
            elif not isinstance(module, nn.Module):
                bad = f"[{name!r}] is a {type(module).__name__}, not an nn.Module"
            else:
                continue
            raise ContractError(
                f"stages(){bad}; it must map stage names to the modules of the model, input to "
                "output, e.g. {'encoder': self.encoder, 'head': self.head}"
            )
        result = OrderedDict(items)
        loose = _loose_parameters(model, result)
        if loose:
            raise ContractError(
                f"stages() leaves out trainable parameters ({', '.join(loose[:4])}"
                f"{', ...' if len(loose) > 4 else ''}): they would never train; add their "
                "modules to stages()"
            )
        return result
    result = OrderedDict((name, child) for name, child in model.named_children())
    own = [p for p in model.parameters(recurse=False)]
    if own:
        holder = nn.Module()  # not registered in the model: its state_dict is unchanged
        for index, parameter in enumerate(own):
            holder.register_parameter(f"p{index}", parameter)
        result[LOOSE_STAGE] = holder
    return result


def _loose_parameters(model: nn.Module, stages: dict[str, nn.Module]) -> list[str]:
    staged = {id(p) for module in stages.values() for p in module.parameters()}
    return [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in staged]


class EncoderTap:
    """Keeps the input of the model's last stage (its classifier): the encoder output the
    sequence-collapse check watches, for models that do not return it themselves."""

    def __init__(self, stages: dict[str, nn.Module]) -> None:
        self.last: torch.Tensor | None = None
        self._handle = None
        if stages:
            last = list(stages.values())[-1]
            self._handle = last.register_forward_pre_hook(self._keep)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _keep(self, module: nn.Module, inputs: tuple) -> None:
        value = inputs[0] if inputs else None
        self.last = value if isinstance(value, torch.Tensor) and value.dim() == 3 else None

    def encoder(self, output: ModelOutput) -> torch.Tensor | None:
        """The encoder frames matching `output` ([B, T', H]), or None when unknown."""
        if output.encoder is not None:
            return output.encoder
        tapped = self.last
        if tapped is not None and tapped.shape[:2] == output.logits.shape[:2]:
            return tapped
        return None


def parameters_per_stage(stages: dict[str, nn.Module]) -> dict[str, int]:
    return {name: sum(p.numel() for p in module.parameters()) for name, module in stages.items()}


def ctc_frames_needed(target: list[int]) -> int:
    """Frames CTC needs for a label sequence: one per label, plus a blank between repeats."""
    return len(target) + sum(1 for a, b in zip(target, target[1:], strict=False) if a == b)


@dataclass
class ContractReport:
    errors: list[str] = field(default_factory=list)  # the run cannot train: stop before it starts
    collapsed: bool = False  # every output frame equals its neighbour: time pooled away
    normalized: str = ""  # "log_softmax" / "softmax": the output is already normalized
    stride: float = 1.0  # input frames per output frame, measured on the batch
    input_ignored: bool = False  # the logits did not change with the input (encoder unknown)


def check_model(
    model: nn.Module,
    features: torch.Tensor,
    lengths: torch.Tensor,
    targets: list[list[int]],
    vocab_size: int,
    autocast: Callable[[], object] | None = None,
) -> ContractReport:
    """Run the model once (eval mode, no grad) on a real batch and list what breaks the contract."""
    report = ContractReport()
    errors = report.errors
    if not any(p.requires_grad for p in model.parameters()):
        errors.append("the model has no trainable parameters")
    try:
        tap = EncoderTap(model_stages(model))
    except ContractError as error:
        errors.append(str(error))
        return report
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast() if autocast else _null():
            try:
                output = read_output(model(features, lengths))
            except ContractError as error:
                errors.append(str(error))
                return report
            except Exception as error:  # the user's forward: its error, where it happened
                errors.append(f"forward raised {type(error).__name__}: {error}{_where(error)}")
                return report
            logits, out_lengths = output.logits, output.lengths
            batch, frames = features.shape[0], features.shape[1]
            if logits.dim() != 3:
                errors.append(
                    f"logits have shape {list(logits.shape)}; they must be [B, T', V] "
                    f"(B = {batch}): keep the time axis, one row of scores per output frame"
                )
                return report
            if not logits.is_floating_point():
                errors.append(f"logits are {logits.dtype}; they must be floating point")
                return report
            if logits.shape[0] != batch:
                errors.append(f"logits have batch size {logits.shape[0]}, the input {batch}")
            if logits.shape[2] != vocab_size:
                errors.append(
                    f"logits have V = {logits.shape[2]} classes, the vocabulary has {vocab_size} "
                    "(blank at 0 included): build the classifier with num_classes outputs"
                )
            if out_lengths.is_floating_point() or out_lengths.dtype == torch.bool:
                errors.append(
                    f"output lengths are {out_lengths.dtype}; they must be integers (e.g. "
                    "torch.div(lengths, stride, rounding_mode='floor'))"
                )
            out_lengths = out_lengths.long().cpu()
            if tuple(out_lengths.shape) != (batch,):
                errors.append(f"output lengths have shape {list(out_lengths.shape)}, not [{batch}]")
                return report
            t_out = logits.shape[1]
            if int(out_lengths.max()) > t_out:
                errors.append(
                    f"output lengths reach {int(out_lengths.max())} but the logits have only "
                    f"T' = {t_out} frames (input T = {frames}): reduce the lengths with the "
                    "model's temporal stride"
                )
            if int(out_lengths.min()) < 1:
                errors.append("an output length is below 1: every sample needs an output frame")
            if not bool(torch.isfinite(logits.float()).all()):
                errors.append("the logits contain NaN or inf on a real batch before any training")
            report.stride = float(lengths.float().max()) / max(1, int(out_lengths.max()))
            short = [
                b
                for b, target in enumerate(targets)
                if int(out_lengths[b]) < ctc_frames_needed(target)
            ]
            if short and len(short) == batch:
                b = short[0]
                errors.append(
                    f"T' is too short for the targets: sample {b} has {int(out_lengths[b])} "
                    f"output frames for {len(targets[b])} labels (CTC needs at least "
                    f"{ctc_frames_needed(targets[b])}); downsample time less"
                )
            if errors:
                return report
            method = getattr(model, "output_lengths", None)
            if callable(method):
                try:  # infeasible samples are found with it: it must agree with forward
                    promised = _called_output_lengths(method, lengths).cpu()
                except ContractError as error:
                    errors.append(str(error))
                    return report
                if not torch.equal(promised, out_lengths):
                    errors.append(
                        f"output_lengths() gives {promised.tolist()[:6]} but forward returned "
                        f"{out_lengths.tolist()[:6]} for the same input lengths: make them agree"
                    )
                    return report
            encoder = tap.encoder(output)
            report.collapsed = time_collapsed(
                encoder if encoder is not None else logits, out_lengths
            )
            if not report.collapsed and encoder is not None and time_collapsed(logits, out_lengths):
                # The encoder varies in time but no output frame differs from the next: time is
                # pooled after it (a mean over time broadcast back, seed 003), unless the
                # classifier ignores its input (zero weights give the same logits for any input).
                report.collapsed = not _same_output(model, None, features, lengths, logits)
            valid = (
                torch.arange(t_out, device=logits.device)[None]
                < out_lengths.to(logits.device)[:, None]
            )
            report.normalized = normalized_output(logits[valid])
            if encoder is not None and _same_output(model, tap, features, lengths, encoder):
                errors.append(
                    "the output does not depend on the input features (two different batches "
                    "of the same lengths gave identical encoder outputs): is forward using them?"
                )
            elif encoder is None:
                # Only the logits to compare: a zero-initialised classifier also makes them
                # constant at step 0, so this is an alarm to read, not a refusal.
                report.input_ignored = _same_output(model, None, features, lengths, logits)
    finally:
        model.train(was_training)
        tap.close()
    return report


def _null():
    import contextlib

    return contextlib.nullcontext()


def normalized_output(frames: torch.Tensor) -> str:
    """How the model normalized its valid output frames [N, V] itself, which the contract
    forbids: "log_softmax" (logsumexp 0 on every frame), "softmax" (non-negative, summing to 1
    on every frame), or "" for raw logits."""
    frames = frames.detach().float()
    if not len(frames) or not bool(torch.isfinite(frames).all()):
        return ""
    if bool((frames.logsumexp(-1).abs() < 1e-3).all()):
        return "log_softmax"
    if bool((frames >= 0).all()) and bool(((frames.sum(-1) - 1).abs() < 1e-3).all()):
        return "softmax"
    return ""


def time_collapsed(encoder: torch.Tensor, lengths: torch.Tensor) -> bool:
    """True when, in every sample with 2+ output frames, all frames are (nearly) identical."""
    checked = 0
    for b in range(encoder.shape[0]):
        n = int(lengths[b])
        if n < 2:
            continue
        frames = encoder[b, :n].float()
        spread = (frames - frames[:1]).abs().max()
        if float(spread) > 1e-5 * (1 + float(frames.abs().max())):
            return False
        checked += 1
    return checked > 0


def _same_output(
    model: nn.Module,
    tap: EncoderTap | None,
    features: torch.Tensor,
    lengths: torch.Tensor,
    encoder: torch.Tensor,
) -> bool:
    """True when the encoder output (the logits when `tap` is None) is the same for another
    input of the same lengths. The encoder first: a zero-initialised classifier (a common CTC
    choice) makes the logits constant for any input at step 0."""
    encoder = encoder.detach().clone()
    generator = torch.Generator(device="cpu").manual_seed(0)
    other = torch.randn(features.shape, generator=generator).to(features.device, features.dtype)
    other_output = forward(model, other * features.float().std().clamp_min(1e-3), lengths)
    other_encoder = tap.encoder(other_output) if tap is not None else other_output.logits
    return (
        other_encoder is not None
        and other_encoder.shape == encoder.shape
        and bool(torch.allclose(other_encoder.float(), encoder.float(), atol=1e-6, rtol=1e-5))
    )


def output_lengths(model: nn.Module, lengths: torch.Tensor, stride: float) -> torch.Tensor:
    """Output frames per input length: the model's own `output_lengths` when it has one, else
    estimated from the stride measured by `check_model` (floor(T / stride), at least 1)."""
    exact = getattr(model, "output_lengths", None)
    if callable(exact):
        return _called_output_lengths(exact, lengths)
    return torch.div(lengths.float(), stride, rounding_mode="floor").long().clamp_min(1)


def _called_output_lengths(method: Callable, lengths: torch.Tensor) -> torch.Tensor:
    """The model's `output_lengths(lengths)`, or a ContractError that says what it returned."""
    try:
        result = method(lengths)
    except Exception as error:  # the user's method: its error, where it happened
        raise ContractError(
            f"output_lengths() raised {type(error).__name__}: {error}{_where(error)}"
        ) from None
    if (
        not isinstance(result, torch.Tensor)
        or result.is_floating_point()
        or result.dtype == torch.bool
        or tuple(result.shape) != tuple(lengths.shape)
    ):
        raise ContractError(
            f"output_lengths() returned {_kind(result)}"
            + (f" of {result.dtype}" if isinstance(result, torch.Tensor) else "")
            + f"; it must return an integer tensor of shape {list(lengths.shape)} (one output "
            "length per input length), or be removed"
        )
    return result.long()

"""Health checks that turn the seeds' failures into alarms with the seeds' own advice.

Checks run at the log interval on values the trainer already has (no extra forward passes),
except locating the first non-finite module, which re-runs the bad batch with hooks armed only
after a non-finite step was seen: healthy training pays nothing for it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from signconsole.config import HealthConfig
from signconsole.events import AlarmRaised, Severity

HINTS = {
    "input_ignored": "If the classifier starts at zero this clears after the first steps; "
    "otherwise check that forward() uses `features` (not only `lengths`).",
    "no_dev_split": "Give the corpus a dev split (annotations/manual/dev.corpus.csv) so runs can "
    "be scored, compared and early-stopped.",
    "model_source": "The run's model code is not the file the profile names any more; the run's "
    "copy (runs/<id>/model/) is what trained. Restore the original to silence this.",
    "nonfinite": "Check the input features for NaN/Inf and double normalization (seed 002); lower "
    "the learning rate, keep gradient clipping on (max_norm 1.0), add warmup.",
    "grad_explode": "Gradient norm far above the healthy 0.01-1.0 range: lower the learning rate, "
    "keep gradient clipping on (max_norm 1.0), add warmup.",
    "loss_explode": "The loss climbed above where training started: the steps overshoot. Lower "
    "the learning rate (10x; the - key halves it live), keep gradient clipping on (max_norm "
    "1.0), add warmup, and restart from a checkpoint before the climb.",
    "grad_vanish": "Gradients below 1e-3: the model is not learning (seed 000). Check that "
    "normalization is not under no_grad and the classifier init. If the loss jumped up before "
    "the gradients vanished, the learning rate was too high: lower it and restart from an "
    "earlier checkpoint; raise it only if it is small and the loss never moved.",
    "lr_too_high": "The learning rate is {lr:.3g}, far above what these models train with "
    "(1e-4 to 1e-2): lower it (the - key, or optimizer.learning_rate) and restart from a "
    "checkpoint before the trouble began.",
    "grad_vanish_stage": "Almost no gradient reaches this stage while the rest learns: look for "
    "normalization under no_grad, a detach(), or a layer that squashes its input (seed 000).",
    "after_blowup": "The run blew up earlier ({cause} at step {step}): the weights are likely "
    "saturated or dead, so this is a consequence, not the cause. Lower the learning rate (or "
    "keep clipping on and add warmup) and restart from a checkpoint before step {step}.",
    "signal_death": "Logits nearly uniform (seed 000 saw std 0.003): remove layers that squash the "
    "signal (attention with tanh), use a normal classifier init, check normalization.",
    "sequence_collapse": "Consecutive encoder frames are nearly identical (seed 003): a global "
    "pooling over time (AdaptiveAvgPool1d(1)) or too much temporal stride collapsed the sequence.",
    "blank_only": "Decodes are empty/blank after several evaluations: check the vocabulary "
    "(index->gloss map filled, blank at 0 only, seed 003), that log_softmax is applied once, and "
    "the learning rate (too low to leave the plateau, or so high the loss explodes); run "
    "`signconsole doctor`.",
    "ctc_infeasible": "Output shorter than target + repeats: CTC cannot align. Lower "
    "model.temporal_stride or drop sequences with more glosses than frames.",
    "log_probs_output": "The model's raw output is already normalized (log_softmax or softmax "
    "in forward) and the loss applies log_softmax again (seed 000/001). Return raw logits from "
    "forward().",
    "ignored_keys": "Move the values your model's constructor takes into [model.args] and "
    "remove the others from the profile (or set them to their defaults).",
    "double_normalization": "The input is already standardized (mean ~0, std ~1 per block) and the "
    'profile normalizes it again (seed 002). Set data.normalization = "none" for this corpus.',
}


# Alarms that mean the run blew up, and alarms that a blow-up causes in turn.
BLOWUPS = ("grad_explode", "nonfinite", "loss_explode")
HIGH_LR = 0.1  # above this, advice to raise the learning rate is never right
CONSEQUENCES = {"grad_vanish", "signal_death", "blank_only", "sequence_collapse"}


def _cause(key: str) -> str:
    if key.startswith("nonfinite"):
        return "a non-finite loss or gradient"
    if key.startswith("loss_explode"):
        return "the loss exploded"
    return "a gradient explosion"


@dataclass
class HealthMonitor:
    config: HealthConfig
    warmup_steps: int
    publish: Callable[[AlarmRaised], None]
    clip_norm: float = 0.0  # the optimizer's gradient clipping; 0 = off
    cooldown_steps: int = 200
    _last: dict[str, int] = field(default_factory=dict)
    consecutive_nonfinite: int = 0
    lr: float | None = None  # the newest learning rate, when the trainer reports it (observe)
    _best_loss: float = math.inf
    _first_loss: float | None = None

    def observe(self, step: int, loss: float, lr: float) -> None:
        """The learning rate, and whether the loss blew up (ten times its best so far, or
        non-finite), which later hints name as the cause. A finite loss that is also above the
        first one logged is worse than the untrained model: that is its own alarm, named before
        the vanishing gradients and dead outputs it causes. One late noisy batch at 10x a tiny
        best loss is not. Costs a few comparisons at the log interval."""
        self.lr = lr
        if loss == 0.0:  # a window of batches CTC could not align at all: no loss was measured
            return
        if self._first_loss is None and math.isfinite(loss):
            self._first_loss = loss
        exploded = not math.isfinite(loss) or loss > 10 * self._best_loss
        first = self._first_loss
        if exploded and math.isfinite(loss) and first is not None and loss > first:
            self.alarm(
                step,
                "loss_explode",
                "error",
                f"loss {loss:.3g} at step {step}: above its start ({first:.3g}) and "
                f"{loss / self._best_loss:.0f}x its best so far ({self._best_loss:.3g}); "
                f"learning rate {lr:.3g}",
            )
        if exploded:
            self._last.setdefault("loss_explode", step)
        elif loss < self._best_loss:
            self._best_loss = loss

    def alarm(
        self,
        step: int,
        kind: str,
        severity: Severity,
        message: str,
        stage: str = "",
        batch_ids: tuple[str, ...] = (),
        force: bool = False,
    ) -> None:
        last = self._last.get(kind + stage)
        if not force and last is not None and step - last < self.cooldown_steps:
            return  # one alarm per kind and stage per cooldown: a flood helps nobody
        self._last[kind + stage] = step
        self.publish(
            AlarmRaised(
                step,
                severity=severity,
                kind=kind,
                message=message,
                hint=self.hint(kind, stage),
                stage=stage,
                batch_ids=batch_ids,
            )
        )

    def hint(self, kind: str, stage: str = "") -> str:
        """The advice for an alarm, given what the run has already shown. Vanishing gradients,
        a dead output or blank decodes after an explosion or a non-finite loss are its
        consequences: advising a higher learning rate then would make things worse."""
        blowups = {k: s for k, s in self._last.items() if k.startswith(BLOWUPS)}
        if kind in CONSEQUENCES and blowups:
            key, step = min(blowups.items(), key=lambda item: item[1])
            return HINTS["after_blowup"].format(cause=_cause(key), step=step)
        if kind in CONSEQUENCES and self.lr is not None and self.lr > HIGH_LR:
            return HINTS["lr_too_high"].format(lr=self.lr)
        if kind == "grad_vanish" and stage:
            return HINTS["grad_vanish_stage"]
        return HINTS.get(kind, "")

    def check_gradients(self, step: int, total: float, per_stage: dict[str, float]) -> None:
        if not math.isfinite(total):
            return
        if total > self.config.grad_norm_explode and step <= 1 and self.clip_norm > 0:
            # The first step's gradient comes before any update: it measures the initialization,
            # not the learning rate, and clipping bounds what it does. A batch-normalized network
            # under CTC starts large (the demo teacher at 107) and settles within steps; only a
            # large gradient at a later check, or one that nothing clips, is an explosion. Nor
            # are its stages compared (below) with a total that clipping divided them by.
            return
        if total > self.config.grad_norm_explode:
            worst = max(per_stage, key=lambda k: per_stage[k]) if per_stage else ""
            # The total is measured before clipping, the stages after it (the trainer logs them
            # once clipped): compare stages by their share, never their norm with the total.
            squares = sum(norm * norm for norm in per_stage.values())
            share = per_stage[worst] ** 2 / squares if worst and squares > 0 else 0.0
            self.alarm(
                step,
                "grad_explode",
                "warning",
                f"gradient norm {total:.3g} > {self.config.grad_norm_explode:g} before clipping"
                + (f"; {worst} carries {share:.0%} of it" if worst else ""),
                worst,
            )
        elif step > self.warmup_steps and total < self.config.grad_norm_vanish:
            self.alarm(
                step,
                "grad_vanish",
                "warning",
                f"gradient norm {total:.2e} < {self.config.grad_norm_vanish:g}",
            )
        elif step > self.warmup_steps and total > 100 * self.config.grad_norm_vanish:
            # One trainable stage starved while the rest learns: seed 000's normalization under
            # no_grad, a detach, or a layer that squashes its input.
            for stage, norm in per_stage.items():
                if norm < self.config.grad_norm_vanish * 1e-2:
                    self.alarm(
                        step,
                        "grad_vanish",
                        "warning",
                        f"stage {stage} gets gradient norm {norm:.1e} while the total is "
                        f"{total:.2g}: almost nothing reaches it",
                        stage,
                    )

    def check_logits(self, step: int, logit_std: float) -> None:
        if math.isfinite(logit_std) and logit_std < self.config.logit_std_min:
            self.alarm(
                step,
                "signal_death",
                "error",
                f"logit std {logit_std:.4f} < {self.config.logit_std_min:g}: the output is "
                "nearly uniform",
                "classifier",
            )

    def check_collapse(self, step: int, similarity: float) -> None:
        if similarity > self.config.collapse_similarity:
            self.alarm(
                step,
                "sequence_collapse",
                "error",
                f"consecutive encoder frames have cosine similarity {similarity:.4f}: the "
                "sequence has collapsed in time",
            )

    def check_normalized(self, step: int, normalized: str) -> None:
        """`normalized`: what contract.normalized_output found ("" for raw logits)."""
        found = {
            "log_softmax": "has logsumexp 0 over the vocabulary on every frame: it is already "
            "log-probabilities (log_softmax in forward)",
            "softmax": "is non-negative and sums to 1 over the vocabulary on every frame: it "
            "is already probabilities (softmax in forward)",
        }.get(normalized)
        if found:
            message = f"raw model output {found}"
            self.alarm(step, "log_probs_output", "error", message, "classifier", force=True)

    def check_decodes(
        self,
        step: int,
        evaluation_index: int,
        epoch: int,
        blank_only_share: float,
        emitted_share: float,
    ) -> None:
        """Two different failures look alike on screen ("everything decodes to blank"):
        the model emits labels but the decoded strings are empty (the index->gloss map is
        broken, seed 003): an error at once; or the model still emits only blank (the CTC
        plateau, or not learning): a warning once it has lasted a while."""
        if blank_only_share >= 0.99 and emitted_share >= 0.5:
            self.alarm(
                step,
                "blank_only",
                "error",
                f"{emitted_share:.0%} of dev samples have labels on their best path but "
                f"{blank_only_share:.0%} decode to nothing: the vocabulary's index->gloss "
                "map loses them",
            )
        elif (
            blank_only_share >= 0.99
            and evaluation_index >= self.config.blank_only_after_evals
            and epoch >= 3
            and step >= 500  # the CTC plateau is normal for a while
        ):
            self.alarm(
                step,
                "blank_only",
                "warning",
                f"every dev decode is blank after {evaluation_index} evaluations "
                f"({epoch} epochs): the model has not left the CTC plateau",
            )


def sequence_similarity(encoder: torch.Tensor, lengths: torch.Tensor) -> float:
    """Mean cosine similarity of consecutive valid encoder frames after removing each sample's
    mean frame, [B, T, H] -> float.

    Centred, because what a collapse (seed 003) destroys is the variation in time: raw frames
    of a healthy RNN share a large mean vector and slowly moving signs keep raw cosines above
    0.99 (measured on a GRU over fingerspelling), while a time axis pooled away leaves nothing
    once the mean is removed. A sample whose frames do not vary at all counts as 1.0."""
    if encoder.shape[1] < 2:
        return 1.0
    x = encoder.float()
    frames = torch.arange(x.shape[1], device=x.device)[None]
    lengths = lengths.to(x.device)
    mask = (frames < lengths[:, None]).to(x.dtype)[..., None]  # [B, T, 1]
    mean = (x * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp_min(1)
    centred = (x - mean) * mask
    varying = centred.norm(dim=-1) > 1e-4 * (1 + x.norm(dim=-1))  # [B, T]
    a, b = centred[:, :-1], centred[:, 1:]
    cosine = nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-8)  # [B, T-1]
    cosine = torch.where(varying[:, :-1] | varying[:, 1:], cosine, torch.ones_like(cosine))
    valid = frames[:, :-1] < (lengths[:, None] - 1)
    if not valid.any():
        return 1.0
    return float(cosine[valid].mean())


class BufferGuard:
    """The model's buffers (BatchNorm running statistics and counters) as they were before a
    step, put back when the step turns out non-finite: the forward pass of a NaN batch has
    already written its statistics, and a skipped step must leave no trace anywhere."""

    def __init__(self, model: nn.Module) -> None:
        self.live = list(model.buffers())
        self.saved = [b.detach().clone() for b in self.live]

    def save(self) -> None:
        if self.live:
            torch._foreach_copy_(self.saved, self.live)

    def restore(self) -> None:
        if self.live:
            with torch.no_grad():
                torch._foreach_copy_(self.live, self.saved)


def stage_grad_norms(stages: dict[str, nn.Module]) -> dict[str, float]:
    """L2 norm of each stage's gradient (stages without gradients are left out)."""
    norms = {}
    for name, module in stages.items():
        grads = [p.grad.float().norm() for p in module.parameters() if p.grad is not None]
        if grads:
            norms[name] = float(torch.linalg.vector_norm(torch.stack(grads)))
    return norms


def first_nonfinite_module(
    model: nn.Module, run_forward_backward: Callable[[], None]
) -> tuple[str, str]:
    """Re-run a step with hooks on every module; return (module name, "forward"/"backward") of the
    first whose output or input gradient is non-finite, or ("", "") if it cannot be reproduced."""
    found: list[tuple[str, str]] = []
    handles = []

    def finite(value) -> bool:
        tensors = value if isinstance(value, tuple | list) else (value,)
        return all(
            t is None
            or not torch.is_tensor(t)
            or not t.is_floating_point()
            or bool(torch.isfinite(t).all())
            for t in tensors
        )

    for name, module in model.named_modules():
        if not name:
            continue

        def forward_hook(module, inputs, output, name=name):
            if not found and not finite(output):
                found.append((name, "forward"))

        def backward_hook(module, grad_input, grad_output, name=name):
            if not any(kind == "backward" for _, kind in found) and not finite(grad_output):
                found.append((name, "backward"))

        handles.append(module.register_forward_hook(forward_hook))
        handles.append(module.register_full_backward_hook(backward_hook))
    try:
        with warnings.catch_warnings():  # hooks on modules whose inputs need no grad: expected
            warnings.simplefilter("ignore", UserWarning)
            run_forward_backward()
    except Exception:  # noqa: BLE001 - diagnosis must never kill the run
        pass
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found else ("", "")

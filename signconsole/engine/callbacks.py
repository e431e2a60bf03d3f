"""What happens around a training step, one job per callback (Lightning's pattern).

The loop in trainer.py calls these hooks; a callback that holds state across a resume has
`state_dict`/`load_state_dict` and is saved in every checkpoint under its `key`.

    on_boundary(engine)           between optimizer steps: commands, pause, budget
    on_step_end(engine, result)   after each optimizer step (or skipped step)
    on_eval_end(engine, split, counts, is_best)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from signconsole.config import TrainingConfig
from signconsole.engine.health import first_nonfinite_module, sequence_similarity
from signconsole.events import CommandApplied, LearningRateChanged, StepLogged
from signconsole.models.contract import ModelOutput, normalized_output, time_collapsed

if TYPE_CHECKING:
    from signconsole.data.dataset import Batch
    from signconsole.engine.trainer import Engine


@dataclass
class StepResult:
    """What one optimizer step produced (tensors stay on the device: no sync here)."""

    loss: torch.Tensor  # mean loss over the step's micro-batches
    parts: dict[str, torch.Tensor]  # ctc, kd
    output: ModelOutput  # the last micro-batch's output
    grad_norm: torch.Tensor  # total norm before clipping
    stage_norms: dict[str, float]  # only on logged steps
    finite: bool  # False: the step was skipped
    batches: list[Batch]
    frames: int


class Callback:
    key = ""  # set by callbacks with state to save

    def on_train_start(self, engine: Engine) -> None:
        pass

    def on_boundary(self, engine: Engine) -> None:
        pass

    def on_step_end(self, engine: Engine, result: StepResult) -> None:
        pass

    def on_eval_end(self, engine: Engine, split: str, error_rate: float, is_best: bool) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@dataclass
class StepLogger(Callback):
    """Every `log_every` steps: one StepLogged (loss, lr, grad norms, frames/s) and the health
    checks that read the model's output. `.item()` syncs happen only here."""

    losses: list[torch.Tensor] = field(default_factory=list)
    skipped: int = 0
    window_start: float = 0.0
    window_frames: int = 0
    window_wait: float = 0.0  # engine.data_wait when the window began

    def on_train_start(self, engine: Engine) -> None:
        # frames/s of training: the engine's clock leaves setup and pauses out (a window that
        # spans a pause is not slowed by it)
        self.window_start = engine.clock.seconds()
        self.window_wait = engine.data_wait

    def on_step_end(self, engine: Engine, result: StepResult) -> None:
        self.losses.append(result.loss)
        self.window_frames += result.frames
        self.skipped += not result.finite
        if not engine.log_due(engine.state.step - 1):
            return
        now = engine.clock.seconds()
        step, output = engine.state.step, result.output
        loss = float(engine.dist.mean(torch.stack(self.losses).float().mean()))  # all ranks
        logits = output.logits.detach().float()
        valid = (
            torch.arange(logits.shape[1], device=logits.device)[None]
            < output.lengths.to(logits.device)[:, None]
        )
        logit_std = float(logits[valid].std()) if int(valid.sum()) > 1 else math.nan
        if step <= 1:  # log_softmax or softmax in the model: raw output already normalized
            engine.health.check_normalized(step, normalized_output(logits[valid]))
        group = engine.optimizer.param_groups[0]
        engine.health.observe(step, loss, group["lr"] / group["lr_multiplier"])  # for the hints
        engine.bus.publish(
            StepLogged(
                step,
                epoch=engine.state.epoch,
                loss=loss,
                parts={k: float(v) for k, v in result.parts.items()},
                lr=group["lr"] / group["lr_multiplier"],
                grad_norm=float(result.grad_norm),
                stage_grad_norms=result.stage_norms,
                frames_per_second=self.window_frames / max(now - self.window_start, 1e-9),
                logit_std=logit_std,
                skipped_steps=self.skipped,
                teacher_ms=engine.teacher_timer.take_ms(),
                data_wait_share=(engine.data_wait - self.window_wait)
                / max(now - self.window_start, 1e-9),
            )
        )
        self.losses, self.skipped = [], 0
        self.window_start, self.window_frames = now, 0
        self.window_wait = engine.data_wait
        engine.health.check_gradients(step, float(result.grad_norm), result.stage_norms)
        engine.health.check_logits(step, logit_std)
        encoder = engine.encoder_tap.encoder(output)
        similarity = None
        if step > engine.profile.schedule.warmup_steps and encoder is not None:
            similarity = sequence_similarity(encoder.detach(), output.lengths)
            engine.health.check_collapse(step, similarity)
        # Time pooled after the encoder (a mean broadcast back over T): every output frame of
        # every sample the same while the encoder still varies in time. Only then: a frozen or
        # zero-initialised head, or bf16 rounding, can make the logits constant for other
        # reasons. From the second step: a zero-initialised classifier moves after one update.
        encoder_varies = (
            similarity is not None and similarity <= engine.health.config.collapse_similarity
        )
        if (
            step > max(1, engine.profile.schedule.warmup_steps)
            and encoder_varies
            and time_collapsed(logits, output.lengths)
        ):
            engine.health.alarm(
                step,
                "sequence_collapse",
                "error",
                "every output frame of every sample is the same: the time axis is pooled away "
                "after the encoder (e.g. a mean over time repeated T times)",
            )


class ScheduleMarkers(Callback):
    """`schedule.name = "step"`: each decay is a decision a person wants marked on the charts
    (the smooth schedules are not)."""

    def on_step_end(self, engine: Engine, result: StepResult) -> None:
        config, step = engine.profile.schedule, engine.state.step
        after = step - config.warmup_steps
        if config.name == "step" and after > 0 and after % max(1, config.step_size) == 0:
            lr = engine.lr_control
            engine.bus.publish(
                LearningRateChanged(
                    step, lr=lr.lr(step), previous=lr.lr(step - 1), reason="schedule"
                )
            )


class NonFiniteGuard(Callback):
    """A skipped step gets an alarm naming the first module that went non-finite; after
    `health.nonfinite_pause_after` in a row the run pauses."""

    def on_step_end(self, engine: Engine, result: StepResult) -> None:
        health = engine.health
        if result.finite:
            health.consecutive_nonfinite = 0
            return
        if engine.scaler.is_enabled() and bool(torch.isfinite(result.loss)):
            return  # fp16: the GradScaler skipped an overflowing step and lowered its scale
        health.consecutive_nonfinite += 1
        batch = result.batches[-1]
        step = engine.state.step - 1  # the index of the skipped step (0-based, as it ran)

        def replay() -> None:
            engine.compute_loss(batch.to(engine.device))[0].backward()

        module, where = first_nonfinite_module(engine.model, replay)
        engine.optimizer.zero_grad(set_to_none=True)
        engine.buffer_guard.restore()  # the replay ran the batch forward in training mode again
        location = f"first non-finite {where} in {module}" if module else "source not reproduced"
        health.alarm(
            step,
            "nonfinite",
            "error",
            f"non-finite loss or gradient at step {step}; step skipped ({location})",
            stage=module,
            batch_ids=tuple(batch.ids),
            force=True,
        )
        limit = engine.profile.health.nonfinite_pause_after
        if limit and health.consecutive_nonfinite >= limit:
            reason = f"{health.consecutive_nonfinite} non-finite steps in a row"
            if engine.wait_for_person:  # the console: someone can look, lower the LR, resume
                engine.set_status("paused", reason)
            else:  # headless: nobody can send a resume; end with the last good state saved
                engine.checkpoint("last")
                engine.state.stop(reason, outcome="failed")


@dataclass
class PeriodicCheckpoint(Callback):
    """Refresh last.pt every `training.checkpoint_every` steps and every
    `training.checkpoint_minutes` of training, so a crash loses at most that much."""

    every: int
    minutes: float
    clock: ActiveClock
    _last_seconds: float = 0.0

    def on_train_start(self, engine: Engine) -> None:
        self._last_seconds = self.clock.seconds()  # a resume starts its own interval

    def on_step_end(self, engine: Engine, result: StepResult) -> None:
        by_steps = self.every and engine.state.step % self.every == 0
        now = self.clock.seconds()
        by_time = self.minutes and now - self._last_seconds >= self.minutes * 60
        if by_steps or by_time:
            engine.checkpoint("last")
            self._last_seconds = now


@dataclass
class EarlyStopping(Callback):
    """Stop after `patience` dev evaluations without a new best (a flag, not a break)."""

    patience: int
    key: str = "early_stopping"
    evals_without_improvement: int = 0

    def on_eval_end(self, engine: Engine, split: str, error_rate: float, is_best: bool) -> None:
        if split != "dev":
            return
        self.evals_without_improvement = 0 if is_best else self.evals_without_improvement + 1
        if self.patience and self.evals_without_improvement >= self.patience:
            engine.bus.publish(
                CommandApplied(
                    engine.state.step,
                    command="EarlyStopping",
                    detail=f"no dev improvement in {self.patience} evaluations",
                )
            )
            engine.state.stop("early stopping", outcome="finished")

    def state_dict(self) -> dict[str, Any]:
        return {"evals_without_improvement": self.evals_without_improvement}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.evals_without_improvement = int(state.get("evals_without_improvement", 0))


class PlateauDecay(Callback):
    """`schedule.name = "plateau"`: decay the LR when dev stops improving (state lives in the
    LR control, which checkpoints save)."""

    def on_eval_end(self, engine: Engine, split: str, error_rate: float, is_best: bool) -> None:
        step = engine.state.step
        previous = engine.lr_control.lr(step)
        if split == "dev" and engine.lr_control.observe_eval(error_rate):
            engine.bus.publish(
                LearningRateChanged(
                    step, lr=engine.lr_control.lr(step), previous=previous, reason="plateau"
                )
            )
            engine.bus.publish(
                CommandApplied(
                    engine.state.step,
                    command="PlateauDecay",
                    detail=f"lr x{engine.profile.schedule.gamma}",
                )
            )


@dataclass
class ActiveClock:
    """Seconds spent training: waits while paused are left out (`pause`/`resume`)."""

    before: float = 0.0
    _since: float | None = field(default_factory=lambda: time.monotonic())

    def seconds(self) -> float:
        running = time.monotonic() - self._since if self._since is not None else 0.0
        return self.before + running

    def pause(self) -> None:
        self.before, self._since = self.seconds(), None

    def resume(self) -> None:
        if self._since is None:
            self._since = time.monotonic()


@dataclass
class TimeBudget(Callback):
    """`training.max_minutes` of training time; time spent paused does not count, and the time
    already used survives a resume."""

    minutes: float
    clock: ActiveClock
    key: str = "time_budget"

    def on_boundary(self, engine: Engine) -> None:
        if not engine.dist.is_main:
            return  # rank 0's clock decides, for every rank (engine/inbox.py sends it)
        if self.minutes and self.clock.seconds() >= self.minutes * 60:
            engine.bus.publish(
                CommandApplied(
                    engine.state.step,
                    command="TimeBudget",
                    detail="training.max_minutes reached",
                )
            )
            engine.state.stop("time budget")

    def state_dict(self) -> dict[str, Any]:
        return {"used_seconds": self.clock.seconds()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.clock.before = float(state.get("used_seconds", 0.0))


@dataclass
class RankAgreement(Callback):
    """Several processes: the weights of every rank compared every `every` steps, after each
    stage change and at the end; a difference is an alarm (it should never happen)."""

    every: int = 200
    _due: bool = False

    def after_stage_change(self) -> None:
        self._due = True  # checked after the next step, when the new wrapper has synchronized

    def on_step_end(self, engine: Engine, result: StepResult) -> None:
        if engine.dist.enabled and (self._due or engine.state.step % self.every == 0):
            self._due = False
            self.check(engine)

    def check(self, engine: Engine, final: bool = False) -> None:
        if not engine.dist.enabled:
            return
        sums = engine.dist.checksums(engine.model)
        step = engine.state.step
        if len(set(sums)) > 1:
            engine.health.alarm(
                step,
                "ranks_diverged",
                "error",
                f"the weights differ between ranks at step {step} (checksums "
                + ", ".join(f"rank {r}: {v:.6g}" for r, v in enumerate(sums))
                + ")",
                force=True,
            )
        elif final:
            engine.bus.publish(
                CommandApplied(
                    step,
                    command="RanksAgree",
                    detail=f"weights identical on {len(sums)} ranks (checksum {sums[0]:.9g})",
                )
            )


def standard_callbacks(
    training: TrainingConfig, clock: ActiveClock, inbox: Callback
) -> list[Callback]:
    """What every run has around its steps, in order: the time budget before the inbox, so a
    stop it decides reaches every rank at the same boundary."""
    return [
        TimeBudget(training.max_minutes, clock),
        inbox,
        NonFiniteGuard(),
        StepLogger(),
        PeriodicCheckpoint(training.checkpoint_every, training.checkpoint_minutes, clock),
        PlateauDecay(),
        ScheduleMarkers(),
        EarlyStopping(training.early_stopping),
        RankAgreement(),
    ]

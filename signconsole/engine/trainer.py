"""The training engine, a recipe read top to bottom: setup -> train -> cleanup.

It runs in whatever thread calls `Engine.run()` (headless: the main thread; the console: one
worker thread) and builds the model in that thread (building it on another thread made CPU
training 2-4x slower). It talks only through the EventBus: events out, commands in, applied
between optimizer steps (engine/inbox.py). What happens around a step is a callback with one
job each (engine/callbacks.py); evaluations are engine/evaluator.py; what a checkpoint holds is
engine/checkpointing.py. `.item()` (a device sync) happens at the log interval and at
evaluations, plus one finiteness check of the gradient norm per step.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from signconsole.config import Profile
from signconsole.data.dataset import Batch
from signconsole.data.loader import BatchStream, LoaderWorkers
from signconsole.data.prepare import PreparedData, Progress
from signconsole.engine import callbacks as cb
from signconsole.engine import checkpointing, run_files
from signconsole.engine.assembly import assemble
from signconsole.engine.checkpoint import save_checkpoint
from signconsole.engine.distill import Teacher, TeacherTimer
from signconsole.engine.distributed import Distributed
from signconsole.engine.health import stage_grad_norms
from signconsole.engine.losses import ctc_loss, distillation_loss, kd_weight
from signconsole.engine.run_events import run_finished
from signconsole.engine.setup import resolve_device
from signconsole.engine.state import TrainState
from signconsole.events import CheckpointSaved, EventBus, StageChanged, StateChanged
from signconsole.models.contract import forward

FINAL_STATUSES = ("finished", "stopped", "failed")


@dataclass
class RunResult:
    run_dir: Path
    status: str
    best_error_rate: float | None
    best_step: int | None
    steps: int


class Engine:
    def __init__(
        self,
        profile: Profile,
        bus: EventBus,
        runs_dir: str | Path | None = None,
        resume: str | Path | None = None,
        data: PreparedData | None = None,
        progress: Progress | None = None,
        freeze_gc: bool = False,
        wait_for_person: bool = True,
        allow_changes: bool = False,
        dist: Distributed | None = None,
    ) -> None:
        self.profile, self.bus, self.data, self.progress = profile, bus, data, progress
        # The console pauses a run that keeps going non-finite; headless runs (nobody there to
        # resume them) end instead, with the last good state checkpointed.
        self.wait_for_person = wait_for_person
        self.allow_changes = allow_changes  # resume with a profile that differs from the run's
        self.dist = dist or Distributed.from_env()  # torchrun's ranks; one process without it
        self.recorder = None  # rank 0 only: run.db
        # Long-lived processes (CLI, console) freeze the objects setup creates: a full collection
        # scanning them holds the GIL for ~140 ms (benchmarks/README.md). Off by default so tests
        # that build many engines in one process still collect them.
        self.freeze_gc = freeze_gc
        self.runs_dir = Path(runs_dir or profile.output.runs_dir)
        self.resume_dir = Path(resume) if resume else None
        self.state = TrainState()
        self.run_dir: Path | None = None
        self.teacher: Teacher | None = None
        self.teacher_timer = TeacherTimer()
        self.clock = cb.ActiveClock()  # training time, pauses left out (the time budget)
        self.loader: LoaderWorkers | None = None  # the run's loader workers, started by setup
        self.compact_batches = False  # set by setup: batches hold only the columns models read
        self._stream: BatchStream | None = None  # this epoch's batches
        self._waited = 0.0  # seconds spent waiting for the batches of earlier epochs
        self.clock.pause()  # setup (data, model, checks) is not training time

    @property
    def step(self) -> int:
        return self.state.step

    @property
    def test_error_rate(self) -> float | None:
        return self.evaluator.test_error_rate

    # ------------------------------------------------------------------------------- setup
    def setup(self) -> None:
        assemble(self)  # engine/assembly.py: device, data, model, optimizer, run directory

    # ------------------------------------------------------------------------------- train
    def run(self) -> RunResult:
        started = time.time()
        try:
            self.setup()
            if self.freeze_gc:
                gc.collect()
                gc.freeze()
            self.set_status("running")
            self.train()
            return self.cleanup(started)
        except BaseException as error:
            log = None
            if self.run_dir is not None and self.state.status not in FINAL_STATUSES:
                # Interrupted: the last checkpoint on disk is where --resume picks up.
                interrupted = isinstance(error, KeyboardInterrupt)
                status = "stopped" if interrupted else "failed"
                self.set_status(status, "interrupted" if interrupted else repr(error)[:300])
                self.bus.publish(run_finished(self, status, started))
                self._close()
                if not interrupted:
                    log = run_files.record_traceback(self, error)
            failure = run_files.user_model_failure(self, error, log)
            if failure is not None:
                raise failure from None
            raise
        finally:
            if self._stream is not None:
                self._stream.close()  # an epoch cut short leaves batches queued
            if self.loader is not None:
                self.loader.close()  # the workers end with the run
            lock = getattr(self, "lock", None)
            if lock is not None:
                lock.release()  # however the run ended, another process may resume it now
            if self.freeze_gc:
                gc.unfreeze()  # the run's objects may be collected again once it is over

    def train(self) -> None:
        """Epochs of batches; an optimizer step every `grad_accumulation` batches; evaluations
        and commands between steps. Ends when a limit is reached or `state.stop_reason` is set."""
        training, state = self.profile.training, self.state
        self.clock.resume()
        for callback in self.callbacks:
            callback.on_train_start(self)
        if training.max_steps and state.step >= training.max_steps:
            return  # a resumed run that had already reached its end trains no extra step
        while not training.max_epochs or state.epoch < training.max_epochs:
            for name in self.control.scheduled(state.epoch):
                self.set_trainable(name, True, "schedule")
            pending: list[Batch] = []
            self.train_mode()
            for batch in self._epoch_batches():
                if not pending and self.boundary():  # between optimizer steps only
                    return
                pending.append(batch)
                state.batch_in_epoch += 1
                if len(pending) < training.grad_accumulation:
                    continue
                self.take_step(pending)
                pending = []
                if training.max_steps and state.step >= training.max_steps:
                    return  # a stop decided in the step ends the run at the next boundary
            if pending:  # the epoch's last, shorter accumulation
                self.take_step(pending)
                if training.max_steps and state.step >= training.max_steps:
                    return
            state.epoch += 1
            state.batch_in_epoch = 0
            if not training.eval_every and not state.stop_reason:
                self.evaluator.evaluate_dev()
            if self.boundary():  # every rank, once an epoch: a stop the evaluation decided
                return

    def _epoch_batches(self):
        """This rank's batches of the epoch, from where a resume left off, prepared on loader
        workers (data/loader.py) and delivered on the device."""
        epoch, max_epochs = self.state.epoch, self.profile.training.max_epochs
        batches = self._batches_of(epoch)[self.state.batch_in_epoch :]
        # The next epoch's first batches are prepared while this one ends and is evaluated.
        following = None if max_epochs and epoch + 1 >= max_epochs else epoch + 1
        then = None if following is None else (following, self._batches_of(following))
        if self._stream is not None:
            self._waited += self._stream.wait_seconds
            self._stream.close()
        assert self.loader is not None, "setup() starts the loader workers"
        self._stream = self.loader.stream(batches, epoch, then=then)
        return self._stream

    def _batches_of(self, epoch: int) -> list[list[int]]:
        """This rank's batches of `epoch`: the sampler's order is a function of the epoch."""
        self.sampler.set_epoch(epoch)
        return self.dist.shard(self.sampler.batches())

    @property
    def data_wait(self) -> float:
        """Seconds the loop has waited for its batches (StepLogger's data wait share)."""
        return self._waited + (self._stream.wait_seconds if self._stream is not None else 0.0)

    def take_step(self, batches: list[Batch]) -> None:
        """One optimizer step with its callbacks, and the evaluation when one is due."""
        result = self.train_step(batches)
        for callback in self.callbacks:
            callback.on_step_end(self, result)
        every = self.profile.training.eval_every
        if every and self.state.step % every == 0:
            self.evaluator.evaluate_dev()

    def boundary(self) -> bool:
        """Between optimizer steps: commands, pause, budget. True when the run must end."""
        for callback in self.callbacks:
            callback.on_boundary(self)
        return bool(self.state.stop_reason)

    def train_step(self, batches: list[Batch]) -> cb.StepResult:
        """forward -> loss -> backward per micro-batch, then clip and step (skipped when the
        gradient is not finite: weights never see a NaN)."""
        losses, frames = [], 0
        self.buffer_guard.save()
        for index, batch in enumerate(batches):
            on_device = batch.to(self.device, non_blocking=True)
            # DDP all-reduces the gradients once, on the step's last micro-batch (no_sync)
            last = index == len(batches) - 1
            with contextlib.nullcontext() if last or self.ddp is None else self.ddp.no_sync():
                loss, parts, output = self.compute_loss(on_device)
                self.scaler.scale(loss / len(batches)).backward()
            losses.append(loss.detach())
            frames += on_device.frames
        self.scaler.unscale_(self.optimizer)
        parameters = [p for p in self.model.parameters() if p.requires_grad and p.grad is not None]
        clip = self.profile.optimizer.grad_clip or math.inf
        grad_norm = (
            torch.nn.utils.clip_grad_norm_(parameters, clip) if parameters else torch.tensor(0.0)
        )
        stage_norms = stage_grad_norms(self.stages) if self.log_due(self.state.step) else {}
        finite = bool(torch.isfinite(grad_norm))
        if finite:
            lr = self.lr_control.lr(self.state.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group["lr_multiplier"]
            self.scaler.step(self.optimizer)
        else:
            self.buffer_guard.restore()
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        loss = torch.stack(losses).mean()
        return cb.StepResult(loss, parts, output, grad_norm, stage_norms, finite, batches, frames)

    def compute_loss(self, batch: Batch):
        with self.autocast():
            output = forward(self.forward_model, batch.features, batch.lengths.to(self.device))
        ctc = ctc_loss(output, batch.targets, batch.target_lengths)
        if self.teacher is None:
            return ctc, {"ctc": ctc.detach()}, output
        with self.teacher_timer.timing(self.device, self.log_due(self.state.step)):
            teacher_output = self.teacher.forward(batch.features, batch.lengths.to(self.device))
        kd = distillation_loss(output, teacher_output, self.profile.distill.temperature)
        alpha = kd_weight(self.profile.distill, self.state.step, self.total_steps)
        return alpha * kd + (1 - alpha) * ctc, {"ctc": ctc.detach(), "kd": kd.detach()}, output

    # ----------------------------------------------------------------- what callbacks use
    def log_due(self, step: int) -> bool:
        """Whether the step numbered `step` (0-based, before it is taken) gets logged."""
        return step == 0 or (step + 1) % self.profile.training.log_every == 0

    def autocast(self):
        precision = self.profile.training.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def train_mode(self) -> None:
        self.model.train()
        self.control.apply_modes(True)  # frozen stages stay in eval mode (BatchNorm statistics)

    def wrap_model(self) -> None:
        """The module the steps call: DDP over the parameters that train now (rebuilt after a
        stage change, on every rank at the same step), compiled when the profile asks."""
        wrapped = self.dist.wrap(self.model, self.device)
        parallel = isinstance(wrapped, torch.nn.parallel.DistributedDataParallel)
        self.ddp = wrapped if parallel else None
        compile_it = self.profile.training.compile
        self.forward_model = torch.compile(wrapped, dynamic=True) if compile_it else wrapped

    def set_trainable(self, stage: str, trainable: bool, reason: str) -> None:
        if self.control.set_trainable(stage, trainable):
            if self.dist.enabled:
                self.wrap_model()
                self.agreement.after_stage_change()
            if self.model.training:
                self.train_mode()
            self.bus.publish(
                StageChanged(self.state.step, stage=stage, trainable=trainable, reason=reason)
            )

    def set_status(self, status: str, reason: str = "") -> None:
        if status != self.state.status:
            self.state.status = status
            self.bus.publish(StateChanged(self.state.step, state=status, reason=reason))

    def checkpoint(self, which: str) -> None:
        if not self.dist.is_main:
            return  # rank 0 writes the run's checkpoints
        assert self.run_dir is not None
        path = self.run_dir / "checkpoints" / f"{which}.pt"
        if self.recorder is not None:
            # What run.db holds up to this step is committed before a checkpoint says the run
            # got this far: a resume trims only rows after it, so a row still in the writer's
            # batch when a kill came would otherwise be lost for good.
            self.recorder.db.flush()
        save_checkpoint(path, checkpointing.checkpoint_state(self))
        if which == "last":
            state = self.state
            self._last_saved = (state.step, state.epoch, state.batch_in_epoch)
        self.bus.publish(CheckpointSaved(self.state.step, path=str(path), which=which))

    # ----------------------------------------------------------------------------- cleanup
    def cleanup(self, started: float) -> RunResult:
        state = self.state
        self.agreement.check(self, final=True)  # every rank, one last time
        if not self.dist.is_main:
            return RunResult(self.run_dir, state.outcome, None, None, state.step)
        self.evaluator.evaluate_final()
        # A final evaluation may just have saved this very position.
        if getattr(self, "_last_saved", None) != (state.step, state.epoch, state.batch_in_epoch):
            self.checkpoint("last")
        self.evaluator.evaluate_test()
        if self.teacher is not None:
            self.evaluator.compare_with_teacher()
        outcome = state.outcome
        self.set_status(outcome, "" if outcome == "finished" else state.stop_reason)
        self.bus.publish(run_finished(self, outcome, started))
        self._close()
        return RunResult(self.run_dir, outcome, state.best_error_rate, state.best_step, state.step)

    def _close(self) -> None:
        recorder = getattr(self, "recorder", None)
        if recorder is not None:
            self.bus.unsubscribe(recorder)
            recorder.close()


__all__ = ["Engine", "RunResult", "resolve_device"]

"""The training engine: setup -> train -> cleanup, readable top to bottom.

It runs in whatever thread calls `Engine.run()` (headless: the main thread; the console: one
worker thread) and builds the model in that thread (building it on another thread made CPU
training 2-4x slower). It talks only through the EventBus: events out, commands in, applied
between optimizer steps. `.item()` (a device sync) happens at the log interval and at
evaluations, plus one finiteness check of the gradient norm per step.
"""

from __future__ import annotations

import gc
import math
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import torch

from signconsole.config import Profile
from signconsole.data.dataset import Batch, BucketBatchSampler, SequenceDataset
from signconsole.data.loader import batch_stream
from signconsole.data.normalize import check_input
from signconsole.data.prepare import PreparedData, Progress, prepare_data
from signconsole.data.vocabulary import Vocabulary
from signconsole.engine.checkpoint import (
    load_checkpoint,
    profile_hash,
    restore_rng,
    rng_state,
    save_checkpoint,
)
from signconsole.engine.distill import Teacher, load_teacher
from signconsole.engine.evaluate import evaluate_model
from signconsole.engine.freeze import StageControl
from signconsole.engine.health import HealthMonitor, first_nonfinite_module, sequence_similarity
from signconsole.engine.losses import ctc_loss, distillation_loss
from signconsole.engine.schedule import LearningRateControl
from signconsole.events import (
    AlarmRaised,
    CheckpointNow,
    CheckpointSaved,
    Command,
    CommandApplied,
    DistillationSummary,
    EvalFinished,
    EvaluateNow,
    EventBus,
    Freeze,
    Pause,
    PretrainedLoaded,
    Resume,
    RunFinished,
    RunStarted,
    SetLearningRate,
    StageChanged,
    StateChanged,
    StepLogged,
    Stop,
    Unfreeze,
    command_from_payload,
    describe_command,
)
from signconsole.models.pretrained import LoadReport, load_pretrained, profile_pretrained
from signconsole.models.registry import build_model
from signconsole.profile import profile_to_dict, profile_to_toml, with_absolute_paths
from signconsole.store.catalog import summarize
from signconsole.store.run import RunRecorder, new_run_dir


def resolve_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        from signconsole.errors import UserError

        raise UserError('training.device = "cuda" but no CUDA GPU is visible; use "auto" or "cpu"')
    return torch.device(setting)


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
    ) -> None:
        self.profile, self.bus = profile, bus
        # Long-lived processes (CLI, console) freeze the objects setup creates: data, model and
        # vocabulary live for the whole run, and a full collection scanning them holds the GIL
        # for ~140 ms (benchmarks/README.md). Off by default so tests that build many engines
        # in one process still collect them.
        self.freeze_gc = freeze_gc
        self.runs_dir = Path(runs_dir or profile.output.runs_dir)
        self.resume_dir = Path(resume) if resume else None
        self.data = data
        self.progress = progress
        self.state = "starting"
        self.step = 0
        self.epoch = 0
        self.run_dir: Path | None = None
        self.teacher: Teacher | None = None  # distillation runs only (set up in setup())
        self._teacher_seconds, self._teacher_calls = 0.0, 0
        self._last_saved: tuple[int, int, int] | None = None
        self.test_error_rate: float | None = None

    # ------------------------------------------------------------------------------- setup
    def setup(self) -> None:
        profile, training = self.profile, self.profile.training
        torch.manual_seed(training.seed)
        import random

        random.seed(training.seed)
        if training.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.device = resolve_device(training.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not training.deterministic
        if self.data is None:
            self.data = prepare_data(profile, self.progress)
        data = self.data
        self.vocabulary: Vocabulary = data.vocabulary
        if profile.kind == "distill":
            self.teacher = load_teacher(
                profile, list(self.vocabulary.tokens), data.stats, self.device
            )
        self.model = build_model(profile.model, len(self.vocabulary)).to(self.device)
        self.stages = self.model.stage_modules()
        self.pretrained_report: LoadReport | None = None
        if profile.model.pretrained.path and self.resume_dir is None:
            # Before the optimizer exists, so nothing of the random initialization lingers in
            # it; a resumed run already has these weights in its own checkpoint.
            self.pretrained_report = load_pretrained(
                self.model,
                self.stages,
                profile_pretrained(profile),
                list(self.vocabulary.tokens),
                profile.model.architecture,
            )
        self.control = StageControl(self.stages, profile.freeze, training.max_epochs)
        for name in profile.optimizer.stage_lr:
            self.control.check(name, "optimizer.stage_lr")
        self.optimizer = self._optimizer()
        self.sampler = BucketBatchSampler(
            data.train.lengths(),
            profile.data.batch_size,
            profile.data.bucket_width,
            shuffle=True,
            seed=training.seed,
            sorted_first_epoch=True,
        )
        steps_per_epoch = math.ceil(len(self.sampler) / training.grad_accumulation)
        total = steps_per_epoch * training.max_epochs
        if training.max_steps:
            total = min(total, training.max_steps) if training.max_epochs else training.max_steps
        self.steps_per_epoch, self.total_steps = steps_per_epoch, total
        self.lr_control = LearningRateControl(
            profile.optimizer.learning_rate, profile.schedule, total
        )
        self.health = HealthMonitor(profile.health, profile.schedule.warmup_steps, self.bus.publish)
        self.best_error_rate: float | None = None
        self.best_step: int | None = None
        self.evaluations = 0
        self.evals_without_improvement = 0
        self.batch_in_epoch = 0
        self.profile_toml = profile_to_toml(with_absolute_paths(profile))

        if self.resume_dir is not None:
            self.run_dir = self.resume_dir
            self._restore(self.run_dir / "checkpoints" / "last.pt")
        else:
            self.run_dir = new_run_dir(self.runs_dir, profile.name)
            (self.run_dir / "profile.toml").write_text(self.profile_toml)
            self.vocabulary.save(self.run_dir / "vocabulary.json")
            if data.stats is not None:
                data.stats.save(self.run_dir / "stats.npz")
            for name in self.control.initially_frozen:
                self.control.set_trainable(name, False)
        self.recorder = RunRecorder(self.run_dir)
        if self.resume_dir is not None:
            # Rows the interrupted process wrote after its last checkpoint describe steps that
            # are about to be trained again: drop them so every step has one value.
            self.recorder.db.forget_after(self.step)
        self.bus.subscribe(self.recorder)
        self.bus.publish(
            RunStarted(
                self.step,
                run_dir=str(self.run_dir),
                name=profile.name,
                kind=profile.kind,
                device=str(self.device),
                unit=data.unit,
                stages=tuple(self.stages),
                parameters=self.model.parameters_per_stage(),
                trainable=dict(self.control.trainable),
                total_steps=self.total_steps,
                profile_toml=self.profile_toml,
                resumed_from=str(self.resume_dir or ""),
                teacher=str(self.teacher.checkpoint) if self.teacher else "",
                teacher_parameters=self.teacher.parameters if self.teacher else 0,
                stage_schedule=tuple(
                    (epoch, tuple(names)) for epoch, names in self.control.schedule_text()
                ),
            )
        )
        if self.pretrained_report is not None:
            report = self.pretrained_report
            self.bus.publish(
                PretrainedLoaded(
                    self.step,
                    source=report.source,
                    source_format=report.source_format,
                    adapt=report.adapt,
                    stages=report.stage_rows(),
                    report=tuple(report.lines()),
                    notes=tuple(report.notes),
                )
            )
        if self.resume_dir is None:
            for name in self.control.initially_frozen:
                self.bus.publish(
                    StageChanged(self.step, stage=name, trainable=False, reason="profile")
                )
        self._check_data()

    def _optimizer(self) -> torch.optim.Optimizer:
        config = self.profile.optimizer
        groups = []
        for name, module in self.stages.items():
            params = list(module.parameters())
            if params:
                groups.append(
                    {
                        "params": params,
                        "stage": name,
                        "lr_multiplier": config.stage_lr.get(name, 1.0),
                    }
                )
        if config.name == "sgd":
            return torch.optim.SGD(
                groups,
                lr=config.learning_rate,
                momentum=config.momentum,
                weight_decay=config.weight_decay,
            )
        cls = torch.optim.AdamW if config.name == "adamw" else torch.optim.Adam
        return cls(
            groups, lr=config.learning_rate, betas=config.betas, weight_decay=config.weight_decay
        )

    def _check_data(self) -> None:
        """Checks that need no training: double normalization and CTC-infeasible samples."""
        data = self.data
        assert data is not None
        if data.train.normalization != "none" and len(data.train):
            raw = [data.train.raw_features(i) for i in range(min(32, len(data.train)))]
            check = check_input(torch.cat([r[0] for r in raw]), torch.cat([r[1] for r in raw]))
            if check.looks_standardized:
                self.health.alarm(
                    0,
                    "double_normalization",
                    "error",
                    f"input features are already standardized (block means "
                    f"{max(abs(m) for m in check.block_mean.values()):.3f} max |mean|) "
                    f"and data.normalization = {data.train.normalization!r} "
                    "normalizes them again",
                    force=True,
                )
        infeasible = []
        for dataset in (data.train, data.dev):
            for index, target in enumerate(dataset.targets):
                frames = torch.tensor([dataset.length(index)])
                out = int(self.model.output_lengths(frames)[0])
                labels = torch.tensor(target)
                need = len(target) + (
                    int((labels[1:] == labels[:-1]).sum()) if len(target) > 1 else 0
                )
                if out < need:
                    infeasible.append(dataset.entries[index].id)
        if infeasible:
            self.health.alarm(
                0,
                "ctc_infeasible",
                "warning",
                f"{len(infeasible)} sequences have fewer output frames than their "
                "target needs; they are left out of the loss",
                batch_ids=tuple(infeasible[:20]),
                force=True,
            )

    # ------------------------------------------------------------------------------- train
    def run(self) -> RunResult:
        started = time.time()
        try:
            self.setup()
            if self.freeze_gc:
                gc.collect()
                gc.freeze()
            self._set_state("running")
            status = self._train()
            return self._finish(status, started)
        except BaseException as error:
            if self.run_dir is not None and self.state not in ("finished", "failed"):
                reason = (
                    "interrupted" if isinstance(error, KeyboardInterrupt) else repr(error)[:300]
                )
                self._set_state("failed", reason)
                self.bus.publish(
                    RunFinished(
                        self.step,
                        status="failed",
                        best_error_rate=self.best_error_rate,
                        best_step=self.best_step,
                        best_checkpoint="",
                        epochs=self.epoch,
                        duration=time.time() - started,
                    )
                )
                self._close()
            raise
        finally:
            if self.freeze_gc:
                gc.unfreeze()  # the run's objects may be collected again once it is over

    def _train(self) -> str:
        training = self.profile.training
        loader_kwargs = {"workers": self.profile.data.num_workers}
        deadline = (
            time.monotonic() + training.max_minutes * 60 if training.max_minutes else math.inf
        )
        self._window_start, self._window_frames = time.monotonic(), 0
        self._losses: list[torch.Tensor] = []
        self._skipped = 0
        self._last_db_poll = 0.0
        while self.epoch < training.max_epochs or (not training.max_epochs and training.max_steps):
            for name in self.control.scheduled(self.epoch):
                self._set_trainable(name, True, "schedule")
            self.sampler.set_epoch(self.epoch)
            batches = self.sampler.batches()[self.batch_in_epoch :]
            loader = batch_stream(
                self.data.train, batches, self.device, epoch=self.epoch, **loader_kwargs
            )
            accumulated = 0
            self.model.train()
            self.control.apply_modes(True)
            for batch in loader:
                outcome = self._boundary(deadline)
                if outcome:
                    return outcome
                self._forward_backward(batch, scale=1.0 / training.grad_accumulation)
                accumulated += 1
                self.batch_in_epoch += 1
                if accumulated == training.grad_accumulation:
                    self._optimizer_step(batch)
                    accumulated = 0
                    if self._eval_due():
                        self._evaluate()
                        if self._early_stop():
                            return "finished"
                    if training.max_steps and self.step >= training.max_steps:
                        return "finished"
            if accumulated:
                self._optimizer_step(batch)
            self.epoch += 1
            self.batch_in_epoch = 0
            if not training.eval_every:
                self._evaluate()
                if self._early_stop():
                    return "finished"
        return "finished"

    def _boundary(self, deadline: float) -> str:
        """Between steps: apply commands, wait while paused, honour the time budget."""
        self._apply_commands()
        while self.state == "paused":
            command = self.bus.wait_command(0.2)
            if command is not None:
                self._apply(command)
            self._apply_store_commands(force=True)
        if self.state == "stopping":
            return "finished"
        if time.monotonic() > deadline:
            self.bus.publish(
                CommandApplied(
                    self.step, command="TimeBudget", detail="training.max_minutes reached"
                )
            )
            return "finished"
        return ""

    def _forward_backward(self, batch: Batch, scale: float) -> None:
        self._current = batch
        batch = batch.to(self.device, non_blocking=True)
        loss, parts, output = self._loss(batch)
        (loss * scale).backward()
        self._losses.append(loss.detach())
        self._parts = parts
        self._output = output
        self._window_frames += batch.frames

    def _loss(self, batch: Batch):
        with self._autocast():
            output = self.model(batch.features, batch.lengths.to(self.device))
        ctc = ctc_loss(output, batch.targets, batch.target_lengths)
        if self.teacher is None:
            return ctc, {"ctc": ctc.detach()}, output
        # On CUDA the pass is timed only on batches that get logged: timing needs a sync.
        timed = self.device.type != "cuda" or (self.step + 1) % self.profile.training.log_every == 0
        if timed and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        started = time.perf_counter()
        teacher_output = self.teacher.forward(batch.features, batch.lengths.to(self.device))
        if timed:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self._teacher_seconds += time.perf_counter() - started
            self._teacher_calls += 1
        kd = distillation_loss(output, teacher_output, self.profile.distill.temperature)
        alpha = self.profile.distill.alpha
        loss = alpha * kd + (1 - alpha) * ctc
        return loss, {"ctc": ctc.detach(), "kd": kd.detach()}, output

    def _autocast(self):
        precision = self.profile.training.precision
        if self.device.type == "cuda" and precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if precision == "bf16" else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return torch.autocast("cpu", enabled=False)

    def _trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad and p.grad is not None]

    def _optimizer_step(self, batch: Batch) -> None:
        training, optimizer_config = self.profile.training, self.profile.optimizer
        parameters = self._trainable_parameters()
        max_norm = optimizer_config.grad_clip if optimizer_config.grad_clip > 0 else math.inf
        total_norm = (
            torch.nn.utils.clip_grad_norm_(parameters, max_norm)
            if parameters
            else torch.tensor(0.0)
        )
        log_now = (self.step + 1) % training.log_every == 0 or self.step == 0
        stage_norms = self._stage_grad_norms() if log_now else {}
        if not bool(torch.isfinite(total_norm)):
            self._nonfinite(batch)
        else:
            self.health.consecutive_nonfinite = 0
            lr = self.lr_control.lr(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group["lr_multiplier"]
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if log_now:
            self._log(float(total_norm), stage_norms)
        every = training.checkpoint_every
        if every and self.step % every == 0:
            self._checkpoint("last")

    def _stage_grad_norms(self) -> dict[str, float]:
        norms = {}
        for name, module in self.stages.items():
            grads = [p.grad for p in module.parameters() if p.grad is not None]
            if grads:
                norms[name] = float(
                    torch.linalg.vector_norm(
                        torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])
                    )
                )
        return norms

    def _nonfinite(self, batch: Batch) -> None:
        """Skip the step (weights never see a NaN), name the module, pause after N in a row."""
        self._skipped += 1
        self.health.consecutive_nonfinite += 1
        self.optimizer.zero_grad(set_to_none=True)

        def replay() -> None:
            loss, _, _ = self._loss(batch.to(self.device))
            loss.backward()

        module, where = first_nonfinite_module(self.model, replay)
        self.optimizer.zero_grad(set_to_none=True)
        location = f"first non-finite {where} in {module}" if module else "source not reproduced"
        self.health.alarm(
            self.step,
            "nonfinite",
            "error",
            f"non-finite loss or gradient at step {self.step}; step skipped ({location})",
            stage=module,
            batch_ids=tuple(batch.ids),
            force=True,
        )
        limit = self.profile.health.nonfinite_pause_after
        if limit and self.health.consecutive_nonfinite >= limit:
            self._set_state(
                "paused", f"{self.health.consecutive_nonfinite} non-finite steps in a row"
            )

    def _log(self, grad_norm: float, stage_norms: dict[str, float]) -> None:
        now = time.monotonic()
        losses = torch.stack(self._losses).float() if self._losses else torch.tensor([math.nan])
        loss = float(losses.mean())
        self._losses = []
        output = self._output
        logits = output.logits.detach().float()
        valid = (
            torch.arange(logits.shape[1], device=logits.device)[None]
            < output.lengths.to(logits.device)[:, None]
        )
        logit_std = float(logits[valid].std()) if valid.any() else math.nan
        if self.step <= 1:  # log_softmax in the model: raw output already normalized per frame
            self.health.check_log_probs(self.step, float(logits[valid].logsumexp(-1).abs().mean()))
        similarity = sequence_similarity(output.encoder.detach(), output.lengths)
        fps = self._window_frames / max(now - self._window_start, 1e-9)
        self._window_start, self._window_frames = now, 0
        self.bus.publish(
            StepLogged(
                self.step,
                epoch=self.epoch,
                loss=loss,
                parts={k: float(v) for k, v in self._parts.items()},
                lr=self.optimizer.param_groups[0]["lr"]
                / self.optimizer.param_groups[0]["lr_multiplier"],
                grad_norm=grad_norm,
                stage_grad_norms=stage_norms,
                frames_per_second=fps,
                logit_std=logit_std,
                skipped_steps=self._skipped,
                teacher_ms=1000 * self._teacher_seconds / max(1, self._teacher_calls),
            )
        )
        self._teacher_seconds, self._teacher_calls = 0.0, 0
        self._skipped = 0
        self.health.check_gradients(self.step, grad_norm, stage_norms)
        self.health.check_logits(self.step, logit_std)
        if self.step > self.profile.schedule.warmup_steps:
            self.health.check_collapse(self.step, similarity)

    # -------------------------------------------------------------------------- evaluation
    def _eval_due(self) -> bool:
        every = self.profile.training.eval_every
        return bool(every) and self.step % every == 0

    def evaluate_split(self, dataset: SequenceDataset, samples: int = 0):
        """Loss (CTC only, also when distilling: dev losses compare across runs), error counts
        and sample decodes over a split."""
        was_training = self.model.training
        result = evaluate_model(
            self.model,
            dataset,
            self.vocabulary,
            device=self.device,
            batch_size=self.profile.data.batch_size,
            beam_width=self.profile.training.beam_width,
            wer_normalization=self.profile.data.wer_normalization,
            samples=samples,
            autocast=self._autocast,
        )
        if was_training:
            self.model.train()
            self.control.apply_modes(True)
        self.last_emitted = result.emitted
        return result.loss, result.counts, result.samples, result.blank_only

    def _evaluate(self) -> None:
        loss, counts, samples, blank_only = self.evaluate_split(
            self.data.dev, self.profile.training.sample_decodes
        )
        self.evaluations += 1
        rate = counts.rate
        is_best = self.best_error_rate is None or rate < self.best_error_rate
        if is_best:
            self.best_error_rate, self.best_step = rate, self.step
            self.evals_without_improvement = 0
        else:
            self.evals_without_improvement += 1
        if self.lr_control.observe_eval(rate):
            self.bus.publish(
                CommandApplied(
                    self.step, command="PlateauDecay", detail=f"lr x{self.profile.schedule.gamma}"
                )
            )
        self._publish_evaluation("dev", loss, counts, samples, blank_only, is_best)
        self.health.check_decodes(
            self.step, self.evaluations, self.epoch, blank_only, self.last_emitted
        )
        self._checkpoint("last")
        if is_best:
            self._checkpoint("best")

    def _evaluate_test(self) -> None:
        """Score the best checkpoint on the test split once, at the end of the run."""
        best = self.run_dir / "checkpoints" / "best.pt"
        if self.data.test is None or not len(self.data.test) or not best.exists():
            return
        current = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(load_checkpoint(best, map_location=self.device)["model"])
        loss, counts, samples, blank_only = self.evaluate_split(
            self.data.test, self.profile.training.sample_decodes
        )
        self.model.load_state_dict(current)
        self.test_error_rate = counts.rate
        self._publish_evaluation("test", loss, counts, samples, blank_only, is_best=False)

    def _compare_with_teacher(self) -> None:
        """Distillation runs end with teacher vs student on this run's dev and test splits."""
        from signconsole.engine import distill_summary

        assert self.teacher is not None and self.data is not None
        teacher = self.teacher
        rates = {}
        for split in ("dev", "test"):
            dataset = getattr(self.data, split)
            if dataset is not None and len(dataset):
                rates[split] = evaluate_model(
                    teacher.model,
                    dataset,
                    self.vocabulary,
                    device=self.device,
                    batch_size=self.profile.data.batch_size,
                    beam_width=1,
                    wer_normalization=self.profile.data.wer_normalization,
                ).counts.rate
        timing_split = self.data.dev
        rows = [
            distill_summary.ModelRow(
                "teacher",
                str(teacher.run_dir or teacher.checkpoint),
                teacher.parameters,
                distill_summary.weights_megabytes(teacher.model),
                distill_summary.cpu_ms_per_sequence(teacher.model, timing_split),
                rates.get("dev"),
                rates.get("test"),
            ),
            distill_summary.ModelRow(
                "student (distilled)",
                str(self.run_dir),
                sum(p.numel() for p in self.model.parameters()),
                distill_summary.weights_megabytes(self.model),
                distill_summary.cpu_ms_per_sequence(self.model, timing_split),
                self.best_error_rate,
                self.test_error_rate,
            ),
        ]
        profile_dict = tomllib.loads(self.profile_toml)
        baseline = distill_summary.find_baseline(self.runs_dir, profile_dict, self.run_dir)
        if baseline is not None:
            summary = summarize(baseline)
            rows.append(
                distill_summary.ModelRow(
                    "student (no distillation)",
                    str(baseline),
                    rows[1].parameters,
                    rows[1].size_mb,
                    rows[1].cpu_ms_per_sequence,  # the same architecture
                    summary.best_error_rate if summary else None,
                    summary.test_error_rate if summary else None,
                )
            )
        self.bus.publish(
            DistillationSummary(
                self.step,
                unit=self.data.unit,
                rows=tuple(row.to_dict() for row in rows),
                table=tuple(distill_summary.format_rows(rows, self.data.unit)),
            )
        )

    def _publish_evaluation(self, split, loss, counts, samples, blank_only, is_best) -> None:
        self.bus.publish(
            EvalFinished(
                self.step,
                epoch=self.epoch,
                split=split,
                loss=loss,
                error_rate=counts.rate,
                substitutions=counts.substitutions,
                deletions=counts.deletions,
                insertions=counts.insertions,
                reference_words=counts.reference_words,
                unit=self.data.unit,
                is_best=is_best,
                samples=tuple(samples),
                blank_only=blank_only,
            )
        )

    def _early_stop(self) -> bool:
        patience = self.profile.training.early_stopping
        if patience and self.evals_without_improvement >= patience:
            self.bus.publish(
                CommandApplied(
                    self.step,
                    command="EarlyStopping",
                    detail=f"no dev improvement in {patience} evaluations",
                )
            )
            return True
        return False

    # -------------------------------------------------------------------------- commands
    def _apply_commands(self) -> None:
        for command in self.bus.pending_commands():
            self._apply(command)
        self._apply_store_commands()

    def _apply_store_commands(self, force: bool = False) -> None:
        """Commands from other processes (attach) arrive through run.db; poll about once a second."""
        now = time.monotonic()
        if not force and now - self._last_db_poll < 1.0:
            return
        self._last_db_poll = now
        db = self.recorder.db
        for command_id, payload in db.pending_commands():
            try:
                command = command_from_payload(payload)
            except (KeyError, TypeError):
                command = None
            db.mark_command_applied(command_id, self.step)
            if command is not None:
                self._apply(command)
        db.connection.commit()

    def _apply(self, command: Command) -> None:
        detail = ""
        if isinstance(command, Pause):
            self._set_state("paused", "paused by user")
        elif isinstance(command, Resume):
            self.health.consecutive_nonfinite = 0
            self._set_state("running", "resumed by user")
        elif isinstance(command, Stop):
            self._set_state("stopping", command.reason)
        elif isinstance(command, Freeze | Unfreeze):
            trainable = isinstance(command, Unfreeze)
            if command.stage not in self.stages:
                detail = f"ignored: unknown stage {command.stage!r}"
            else:
                self._set_trainable(command.stage, trainable, "command")
        elif isinstance(command, SetLearningRate):
            if command.value is not None and command.value > 0:
                self.lr_control.set_exact(command.value, self.step)
            elif command.factor is not None and command.factor > 0:
                self.lr_control.scale(command.factor)
            else:
                detail = "ignored: learning rate must be positive"
            detail = detail or f"next lr {self.lr_control.lr(self.step):.3g}"
        elif isinstance(command, CheckpointNow):
            self._checkpoint("last")
        elif isinstance(command, EvaluateNow):
            self._evaluate()
        self.bus.publish(
            CommandApplied(
                self.step,
                command=describe_command(command),
                detail=detail or f"from {command.source}",
            )
        )

    def _set_trainable(self, stage: str, trainable: bool, reason: str) -> None:
        if self.control.set_trainable(stage, trainable):
            if self.model.training:
                self.model.train()
                self.control.apply_modes(True)
            self.bus.publish(
                StageChanged(self.step, stage=stage, trainable=trainable, reason=reason)
            )

    def _set_state(self, state: str, reason: str = "") -> None:
        if state != self.state:
            self.state = state
            self.bus.publish(StateChanged(self.step, state=state, reason=reason))

    # ------------------------------------------------------------------------- checkpoints
    def _checkpoint(self, which: str) -> None:
        assert self.run_dir is not None
        state = {
            "format": 1,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_control": self.lr_control.state_dict(),
            "rng": rng_state(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "trainable": dict(self.control.trainable),
            "vocabulary": list(self.vocabulary.tokens),
            "profile": profile_to_dict(self.profile),
            "profile_hash": profile_hash(self.profile_toml),
            "best_error_rate": self.best_error_rate,
            "best_step": self.best_step,
            "evaluations": self.evaluations,
            "evals_without_improvement": self.evals_without_improvement,
            "unit": self.data.unit,
        }
        if self.data.stats is not None:
            state["stats"] = {"mean": self.data.stats.mean, "scale": self.data.stats.scale}
        path = save_checkpoint(self.run_dir / "checkpoints" / f"{which}.pt", state)
        if which == "last":
            self._last_saved = (self.step, self.epoch, self.batch_in_epoch)
        self.bus.publish(CheckpointSaved(self.step, path=str(path), which=which))

    def _restore(self, path: Path) -> None:
        state = load_checkpoint(path, map_location=self.device)
        if list(self.vocabulary.tokens) != state["vocabulary"]:
            from signconsole.errors import UserError

            raise UserError(
                f"{path}: the run's vocabulary differs from the corpus now; resume "
                "with the corpus the run was trained on"
            )
        self.model.load_state_dict(state["model"])
        for name, trainable in state["trainable"].items():
            self.control.set_trainable(name, trainable)
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_control.load_state_dict(state["lr_control"])
        restore_rng(state["rng"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.batch_in_epoch = state["batch_in_epoch"]
        self.best_error_rate, self.best_step = state["best_error_rate"], state["best_step"]
        self.evaluations = state["evaluations"]
        self.evals_without_improvement = state["evals_without_improvement"]
        self._resumed_hash = state["profile_hash"]

    # ----------------------------------------------------------------------------- finish
    def _finish(self, status: str, started: float) -> RunResult:
        # A final evaluation may just have saved this very position.
        if self._last_saved != (self.step, self.epoch, self.batch_in_epoch):
            self._checkpoint("last")
        self._evaluate_test()
        if self.teacher is not None:
            self._compare_with_teacher()
        self._set_state("finished", "")
        best = self.run_dir / "checkpoints" / "best.pt"
        self.bus.publish(
            RunFinished(
                self.step,
                status="finished",
                best_error_rate=self.best_error_rate,
                best_step=self.best_step,
                best_checkpoint=str(best) if best.exists() else "",
                epochs=self.epoch,
                duration=time.time() - started,
            )
        )
        self._close()
        return RunResult(self.run_dir, status, self.best_error_rate, self.best_step, self.step)

    def _close(self) -> None:
        recorder = getattr(self, "recorder", None)
        if recorder is not None:
            self.bus.unsubscribe(recorder)
            recorder.close()


__all__ = ["AlarmRaised", "Engine", "RunResult", "resolve_device"]

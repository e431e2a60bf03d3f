"""Evaluations during and after training: dev (best checkpoint, callbacks), test on the best
checkpoint, and the teacher-vs-student table of a distillation run. Scoring itself is
`engine/evaluate.py`, shared with `signconsole eval`."""

from __future__ import annotations

import tomllib
from typing import TYPE_CHECKING

from signconsole.data.dataset import SequenceDataset
from signconsole.engine.checkpoint import load_checkpoint
from signconsole.engine.evaluate import EvalResult, evaluate_model
from signconsole.events import DistillationSummary, EvalFinished
from signconsole.store.catalog import summarize

if TYPE_CHECKING:
    from signconsole.engine.trainer import Engine


class Evaluator:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.test_error_rate: float | None = None

    def evaluate_split(self, dataset: SequenceDataset, samples: int = 0) -> EvalResult:
        """Loss (CTC only, also when distilling: dev losses compare across runs), error counts
        and sample decodes over a split; the model goes back to training mode after."""
        engine = self.engine
        was_training = engine.model.training
        result = evaluate_model(
            engine.model,
            dataset,
            engine.vocabulary,
            device=engine.device,
            batch_size=engine.profile.data.batch_size,
            beam_width=engine.profile.training.beam_width,
            wer_normalization=engine.profile.data.wer_normalization,
            samples=samples,
            autocast=engine.autocast,
        )
        if was_training:
            engine.train_mode()
        return result

    def evaluate_dev(self) -> None:
        engine, state = self.engine, self.engine.state
        if not engine.dist.is_main:
            return  # rank 0 evaluates; its decisions reach the others at the next boundary
        if not len(engine.data.dev):  # nothing to score: no best, no early stopping (alarmed)
            engine.checkpoint("last")
            return
        result = self.evaluate_split(engine.data.dev, engine.profile.training.sample_decodes)
        state.evaluations += 1
        state.evaluated_step = state.step
        rate = result.counts.rate
        is_best = state.best_error_rate is None or rate < state.best_error_rate
        if is_best:
            # best.pt is written before anything records it as the best (last.pt, the store).
            # It holds the state that names it the best; a write that fails (a full disk) puts
            # the previous best back, so the failed run's summary names the best.pt on disk.
            previous = state.best_error_rate, state.best_step
            state.best_error_rate, state.best_step = rate, state.step
            try:
                engine.checkpoint("best")
            except BaseException:
                state.best_error_rate, state.best_step = previous
                raise
        for callback in engine.callbacks:
            callback.on_eval_end(engine, "dev", rate, is_best)
        self._publish("dev", result, is_best)
        engine.health.check_decodes(
            state.step, state.evaluations, state.epoch, result.blank_only, result.emitted
        )
        engine.checkpoint("last")

    def evaluate_final(self) -> None:
        """At the end of a run that reached its end (its limits, early stopping, the time
        budget; not a person's stop): a dev evaluation of the last step when none has seen it.
        A run shorter than its first eval_every would otherwise end with no dev score, no
        best checkpoint and so no test score."""
        state = self.engine.state
        reached_end = state.outcome == "finished" or state.stop_reason == "time budget"
        if reached_end and state.step > 0 and state.evaluated_step != state.step:
            self.evaluate_dev()

    def evaluate_test(self) -> None:
        """Score the best checkpoint on the test split once, at the end of the run."""
        engine = self.engine
        if not engine.dist.is_main:
            return
        best = engine.run_dir / "checkpoints" / "best.pt"
        if engine.data.test is None or not len(engine.data.test) or not best.exists():
            return
        current = {k: v.clone() for k, v in engine.model.state_dict().items()}
        engine.model.load_state_dict(load_checkpoint(best, map_location=engine.device)["model"])
        result = self.evaluate_split(engine.data.test, engine.profile.training.sample_decodes)
        engine.model.load_state_dict(current)
        self.test_error_rate = result.counts.rate
        self._publish("test", result, is_best=False)

    def _publish(self, split: str, result: EvalResult, is_best: bool) -> None:
        engine, counts = self.engine, result.counts
        engine.bus.publish(
            EvalFinished(
                engine.state.step,
                epoch=engine.state.epoch,
                split=split,
                loss=result.loss,
                error_rate=counts.rate,
                substitutions=counts.substitutions,
                deletions=counts.deletions,
                insertions=counts.insertions,
                reference_words=counts.reference_words,
                unit=engine.data.unit,
                is_best=is_best,
                samples=tuple(result.samples),
                blank_only=result.blank_only,
            )
        )

    def compare_with_teacher(self) -> None:
        """Distillation runs end with teacher vs student on this run's dev and test splits."""
        from signconsole.engine import distill_summary as ds

        engine = self.engine
        teacher, data = engine.teacher, engine.data
        assert teacher is not None
        rates = {}
        for split in ("dev", "test"):
            dataset = getattr(data, split)
            if dataset is not None and len(dataset):
                rates[split] = evaluate_model(
                    teacher.model,
                    dataset,
                    engine.vocabulary,
                    device=engine.device,
                    batch_size=engine.profile.data.batch_size,
                    beam_width=1,
                    wer_normalization=engine.profile.data.wer_normalization,
                ).counts.rate
        student = engine.model
        rows = [
            ds.ModelRow(
                "teacher",
                str(teacher.run_dir or teacher.checkpoint),
                teacher.parameters,
                ds.weights_megabytes(teacher.model),
                ds.cpu_ms_per_sequence(teacher.model, data.dev),
                rates.get("dev"),
                rates.get("test"),
            ),
            ds.ModelRow(
                "student (distilled)",
                str(engine.run_dir),
                sum(p.numel() for p in student.parameters()),
                ds.weights_megabytes(student),
                ds.cpu_ms_per_sequence(student, data.dev),
                engine.state.best_error_rate,
                self.test_error_rate,
            ),
        ]
        profile_dict = tomllib.loads(engine.profile_toml)
        baseline = ds.find_baseline(
            engine.runs_dir, profile_dict, engine.run_dir, engine.state.step
        )
        if baseline is not None:
            summary = summarize(baseline)
            rows.append(
                ds.ModelRow(
                    "student (no distillation)",
                    str(baseline),
                    rows[1].parameters,
                    rows[1].size_mb,
                    rows[1].cpu_ms_per_sequence,  # the same architecture
                    summary.best_error_rate if summary else None,
                    summary.test_error_rate if summary else None,
                )
            )
        engine.bus.publish(
            DistillationSummary(
                engine.state.step,
                unit=data.unit,
                rows=tuple(row.to_dict() for row in rows),
                table=tuple(ds.format_rows(rows, data.unit)),
            )
        )

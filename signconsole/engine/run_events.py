"""The events that open and close a run: what it is, what it loaded, how it ended."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from signconsole.events import PretrainedLoaded, RunFinished, RunStarted, StageChanged
from signconsole.models.contract import parameters_per_stage
from signconsole.profile_model import ignored_builtin_keys

if TYPE_CHECKING:
    from signconsole.engine.trainer import Engine


def publish_start(engine: Engine, source_note: str) -> None:
    state, teacher = engine.state, engine.teacher
    engine.bus.publish(
        RunStarted(
            state.step,
            run_dir=str(engine.run_dir),
            name=engine.profile.name,
            kind=engine.profile.kind,
            device=str(engine.device),
            unit=engine.data.unit,
            stages=tuple(engine.stages),
            parameters=parameters_per_stage(engine.stages),
            trainable=dict(engine.control.trainable),
            total_steps=engine.total_steps,
            profile_toml=engine.profile_toml,
            resumed_from=str(engine.resume_dir or ""),
            teacher=str(teacher.checkpoint) if teacher else "",
            teacher_parameters=teacher.parameters if teacher else 0,
            stage_schedule=tuple(
                (epoch, tuple(names)) for epoch, names in engine.control.schedule_text()
            ),
        )
    )
    for note in (source_note, teacher.note if teacher else ""):
        if note:
            engine.health.alarm(state.step, "model_source", "warning", note, force=True)
    ignored = ignored_builtin_keys(engine.profile)
    if ignored and engine.resume_dir is None:
        engine.health.alarm(state.step, "ignored_keys", "warning", ignored, force=True)
    report = engine.pretrained_report
    if report is not None:
        engine.bus.publish(
            PretrainedLoaded(
                state.step,
                source=report.source,
                source_format=report.source_format,
                adapt=report.adapt,
                stages=report.stage_rows(),
                report=tuple(report.lines()),
                notes=tuple(report.notes),
            )
        )
    if engine.resume_dir is None:
        for name in engine.control.initially_frozen:
            engine.bus.publish(
                StageChanged(state.step, stage=name, trainable=False, reason="profile")
            )


def run_finished(engine: Engine, status: str, started: float) -> RunFinished:
    best = engine.run_dir / "checkpoints" / "best.pt" if engine.run_dir else None
    return RunFinished(
        engine.state.step,
        status=status,
        best_error_rate=engine.state.best_error_rate,
        best_step=engine.state.best_step,
        best_checkpoint=str(best) if status != "failed" and best and best.exists() else "",
        epochs=engine.state.epoch,
        duration=time.time() - started,
    )

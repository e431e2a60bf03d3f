"""What the console shows, folded from events: plain Python, no Textual, no tensors.

The console drains the bus a few times a second and feeds every event here; widgets then read
this model and redraw only what changed (`version` counters per pane). Series keep every point
the engine logged at its log interval; charts downsample to their width when drawing.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

from signconsole.events import (
    AlarmRaised,
    CheckpointSaved,
    CommandApplied,
    DistillationSummary,
    EvalFinished,
    Event,
    PretrainedLoaded,
    RunFinished,
    RunStarted,
    StageChanged,
    StateChanged,
    StepLogged,
)


@dataclass
class Series:
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, step: int, value: float) -> None:
        self.steps.append(step)
        self.values.append(value)

    def last(self) -> float | None:
        return self.values[-1] if self.values else None


@dataclass
class StageView:
    name: str
    parameters: int
    trainable: bool
    grad_norms: deque[float] = field(default_factory=lambda: deque(maxlen=60))
    pretrained: str = ""  # "loaded/tensors" when the run started from pretrained weights


@dataclass
class TimelineEntry:
    step: int
    time: float
    kind: str  # "alarm", "command", "stage", "state", "checkpoint"
    severity: str
    text: str
    hint: str = ""
    where: str = ""


@dataclass
class RunView:
    name: str = ""
    kind: str = ""
    device: str = ""
    unit: str = "gloss"
    run_dir: str = ""
    state: str = "starting"
    state_reason: str = ""
    step: int = 0
    epoch: int = 0
    total_steps: int = 0
    frames_per_second: float = 0.0
    steps_per_second: float = 0.0
    started: float = field(default_factory=time.time)
    best_error_rate: float | None = None
    best_step: int | None = None
    lr: float | None = None
    teacher_ms: float = 0.0  # distillation: the teacher's forward pass per batch
    comparison: tuple[str, ...] = ()  # distillation: teacher vs student table, at the end
    # Review: steps of the dev evaluations, and which one the Decodes tab shows (index, count).
    evaluations: list[int] = field(default_factory=list)
    eval_position: tuple[int, int] | None = None
    series: dict[str, Series] = field(default_factory=dict)
    stages: dict[str, StageView] = field(default_factory=dict)
    schedule: list[tuple[int, list[str]]] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)  # newest last
    # Steps where the run changed course (stage frozen/unfrozen, LR set): drawn on the charts.
    markers: list[tuple[int, str]] = field(default_factory=list)
    unseen_alarms: int = 0
    latest_eval: EvalFinished | None = None
    test_eval: EvalFinished | None = None
    finished: RunFinished | None = None
    # change counters: a pane redraws only when its counter moved
    charts_version: int = 0
    stages_version: int = 0
    timeline_version: int = 0
    decodes_version: int = 0
    status_version: int = 0
    _rate_anchor: tuple[float, int] | None = None

    @property
    def rate_name(self) -> str:
        return "LER" if self.unit == "letter" else "WER"

    def series_for(self, name: str) -> Series:
        return self.series.setdefault(name, Series())

    def eta_seconds(self) -> float | None:
        if not self.total_steps or self.steps_per_second <= 0 or self.state != "running":
            return None
        return max(0.0, (self.total_steps - self.step) / self.steps_per_second)

    def apply(self, event: Event) -> None:
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is not None:
            handler(event)
            self.status_version += 1

    def _on_RunStarted(self, event: RunStarted) -> None:
        self.name, self.kind, self.device, self.unit = (
            event.name,
            event.kind,
            event.device,
            event.unit,
        )
        self.run_dir, self.total_steps, self.step = event.run_dir, event.total_steps, event.step
        self.stages = {
            name: StageView(name, event.parameters.get(name, 0), event.trainable.get(name, True))
            for name in event.stages
        }
        self.schedule = [(epoch, list(names)) for epoch, names in event.stage_schedule]
        self.started = event.time
        self.stages_version += 1

    def _on_StepLogged(self, event: StepLogged) -> None:
        now = event.time
        if self._rate_anchor is not None:
            anchor_time, anchor_step = self._rate_anchor
            if now > anchor_time and event.step > anchor_step:
                rate = (event.step - anchor_step) / (now - anchor_time)
                self.steps_per_second = (
                    rate
                    if not self.steps_per_second
                    else (0.7 * self.steps_per_second + 0.3 * rate)
                )
        self._rate_anchor = (now, event.step)
        self.step, self.epoch = event.step, event.epoch
        self.frames_per_second, self.lr = event.frames_per_second, event.lr
        self.teacher_ms = event.teacher_ms
        self.series_for("train/loss").add(event.step, event.loss)
        for part, value in event.parts.items():
            if len(event.parts) > 1:
                self.series_for(f"train/{part}").add(event.step, value)
        self.series_for("lr").add(event.step, event.lr)
        self.series_for("grad_norm/total").add(event.step, event.grad_norm)
        for stage, norm in event.stage_grad_norms.items():
            self.series_for(f"grad_norm/{stage}").add(event.step, norm)
            if stage in self.stages:
                self.stages[stage].grad_norms.append(norm)
        self.charts_version += 1
        if event.stage_grad_norms:
            self.stages_version += 1

    def _on_EvalFinished(self, event: EvalFinished) -> None:
        if event.split != "dev":
            self.test_eval = event
            self.decodes_version += 1
            return
        self.series_for("dev/loss").add(event.step, event.loss)
        self.series_for("dev/error_rate").add(event.step, event.error_rate)
        if event.is_best:
            self.best_error_rate, self.best_step = event.error_rate, event.step
        self.latest_eval = event
        self.charts_version += 1
        self.decodes_version += 1

    def _on_AlarmRaised(self, event: AlarmRaised) -> None:
        where = event.stage
        if event.batch_ids:
            ids = ", ".join(event.batch_ids[:4]) + (" ..." if len(event.batch_ids) > 4 else "")
            where = f"{where} batch {ids}".strip()
        self.add_entry(
            TimelineEntry(
                event.step,
                event.time,
                "alarm",
                event.severity,
                f"{event.kind}: {event.message}",
                event.hint,
                where,
            )
        )
        self.unseen_alarms += 1

    def _on_PretrainedLoaded(self, event: PretrainedLoaded) -> None:
        for stage, tensors, loaded, _adapted, _skipped in event.stages:
            if stage in self.stages:
                self.stages[stage].pretrained = f"{loaded}/{tensors}"
        self.stages_version += 1
        summary = event.report[0] if event.report else f"pretrained weights from {event.source}"
        self.add_entry(
            TimelineEntry(
                event.step,
                event.time,
                "pretrained",
                "warning" if event.notes else "info",
                summary,
                "; ".join(event.notes),
            )
        )

    def _on_DistillationSummary(self, event: DistillationSummary) -> None:
        self.comparison = event.table
        self.decodes_version += 1
        self.add_entry(
            TimelineEntry(
                event.step,
                event.time,
                "summary",
                "info",
                "teacher vs student: see the Decodes tab (and comparison.json)",
            )
        )

    def _on_StageChanged(self, event: StageChanged) -> None:
        if event.stage in self.stages:
            self.stages[event.stage].trainable = event.trainable
        self.stages_version += 1
        if event.reason != "profile":  # the profile's initial freeze is the starting point
            self.markers.append((event.step, event.stage))
            self.charts_version += 1
        verb = "unfrozen" if event.trainable else "frozen"
        self.add_entry(
            TimelineEntry(
                event.step,
                event.time,
                "stage",
                "info",
                f"stage {event.stage} {verb} ({event.reason})",
            )
        )

    def _on_StateChanged(self, event: StateChanged) -> None:
        self.state, self.state_reason = event.state, event.reason
        if event.reason or event.state not in ("running", "starting"):
            self.add_entry(
                TimelineEntry(
                    event.step,
                    event.time,
                    "state",
                    "warning" if event.state == "failed" else "info",
                    f"{event.state}" + (f": {event.reason}" if event.reason else ""),
                )
            )

    def _on_CommandApplied(self, event: CommandApplied) -> None:
        if event.command.startswith("SetLearningRate"):
            self.markers.append((event.step, "lr"))
            self.charts_version += 1
        self.add_entry(
            TimelineEntry(
                event.step, event.time, "command", "info", f"{event.command} {event.detail}".strip()
            )
        )

    def _on_CheckpointSaved(self, event: CheckpointSaved) -> None:
        if event.which == "best":
            return
        self.add_entry(
            TimelineEntry(event.step, event.time, "checkpoint", "info", f"checkpoint {event.which}")
        )

    def _on_RunFinished(self, event: RunFinished) -> None:
        self.finished = event
        self.state = event.status
        self.step = event.step

    def add_entry(self, entry: TimelineEntry) -> None:
        self.timeline.append(entry)
        self.timeline_version += 1


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"

"""What the console shows, folded from events: plain Python, no Textual, no tensors.

One RunView serves the live console, attach and review: a run source (tui/source.py) feeds it
events through `apply` and metric rows through `add_metrics` (a StepLogged is only a bundle of
metric rows, so both paths meet there). Widgets read this model and redraw only what changed
(`version` counters per pane). Series are bounded (tui/series.py); the store keeps every value.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field, fields

from signconsole import metrics as m
from signconsole.events import (
    AlarmRaised,
    CheckpointSaved,
    CommandApplied,
    DistillationSummary,
    EvalFinished,
    Event,
    LearningRateChanged,
    PretrainedLoaded,
    RunFinished,
    RunStarted,
    StageChanged,
    StateChanged,
    StepLogged,
)
from signconsole.tui.series import Series

TIMELINE_LIMIT = 2000  # entries kept for the Events tab (the store keeps them all)
TOP_STAGES = 3  # grad-norm chart: the total and this many stages (all of them on demand)

_SEVERITY = {"info": 0, "warning": 1, "error": 2}


def describe_evaluation(event: EvalFinished) -> str:
    """An evaluation as the Events tab lists it: what log.txt says, and whether it was a new
    best (the best checkpoint is written for it) or the test score of the best checkpoint."""
    if event.split == "dev":
        return f"eval {m.describe_eval(event)}" + ("  new best" if event.is_best else "")
    return f"eval {m.describe_eval(event)}  (best checkpoint)"


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
    kind: str  # "alarm", "command", "stage", "state", "checkpoint", "lr", "eval", ...
    severity: str
    text: str
    hint: str = ""
    where: str = ""


@dataclass
class RunView:
    name: str = ""
    kind: str = ""
    device: str = ""
    unit: str = ""  # "letter" or "gloss" once the run started
    run_dir: str = ""
    resumed_from: str = ""
    state: str = "starting"
    state_reason: str = ""
    step: int = 0
    epoch: int = 0  # as the engine counts it, from 0 (shown from 1: `epoch_text`)
    total_epochs: int = 0  # the profile's training.max_epochs (0 = not known)
    total_steps: int = 0
    frames_per_second: float = 0.0
    steps_per_second: float = 0.0
    started: float = field(default_factory=time.time)
    best_error_rate: float | None = None
    best_step: int | None = None
    lr: float | None = None
    teacher_ms: float = 0.0  # distillation: the teacher's forward pass per batch
    comparison: tuple[str, ...] = ()  # distillation: teacher vs student table, at the end
    evals: list[EvalFinished] = field(default_factory=list)  # dev evaluations, oldest first
    eval_index: int | None = None  # which one the Decodes tab shows (None = the newest)
    test_eval: EvalFinished | None = None
    series: dict[str, Series] = field(default_factory=dict)
    stages: dict[str, StageView] = field(default_factory=dict)
    schedule: list[tuple[int, list[str]]] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)  # newest last
    # Steps where the run changed course (stage frozen/unfrozen, LR changed): drawn on the charts.
    markers: list[tuple[int, str]] = field(default_factory=list)
    unseen_alarms: int = 0  # since the Events tab was last open
    alarm: TimelineEntry | None = None  # the newest alarm, until the person acknowledges it
    finished: RunFinished | None = None
    pending: str = ""  # a command sent, until the engine reports one applied (CommandApplied)
    # Commands the engine refused, not yet told in a toast (the Events tab keeps them all).
    untold_rejections: list[str] = field(default_factory=list)
    # Chart options, changed by keys: the visible step range and what the charts draw.
    zoom: tuple[int, int] | None = None
    loss_log: bool = True  # a CTC loss falls by orders of magnitude: linear flattens it
    grad_all_stages: bool = False
    # change counters: a pane redraws only when its counter moved
    charts_version: int = 0
    stages_version: int = 0
    timeline_version: int = 0
    decodes_version: int = 0
    status_version: int = 0
    _rate_anchor: tuple[float, int] | None = None
    _lr_events: bool = False  # the engine publishes LearningRateChanged: no command guessing

    @property
    def rate_name(self) -> str:
        # Before the run says what it counts, naming it WER would be a guess (often wrong).
        return m.rate_name(self.unit) if self.unit else "error"

    @property
    def latest_eval(self) -> EvalFinished | None:
        """The dev evaluation the Decodes tab shows."""
        if not self.evals:
            return None
        index = len(self.evals) - 1 if self.eval_index is None else self.eval_index
        return self.evals[index]

    @property
    def eval_position(self) -> tuple[int, int] | None:
        if not self.evals:
            return None
        index = len(self.evals) - 1 if self.eval_index is None else self.eval_index
        return index, len(self.evals)

    @property
    def evaluations(self) -> list[int]:
        return [e.step for e in self.evals]

    def step_range(self) -> tuple[int, int] | None:
        """The steps every chart spans: from the first charted step to the newest, so charts
        side by side put a step at the same column (the error chart's evaluations included)."""
        firsts = [s.steps[0] for s in self.series.values() if s.steps]
        if not firsts:
            return None
        lasts = [s.steps[-1] for s in self.series.values() if s.steps]
        return min(firsts), max(max(lasts), self.step)

    def series_for(self, name: str) -> Series:
        return self.series.setdefault(name, Series())

    def epoch_text(self) -> str:
        """The epoch a person counts, from 1, out of the planned ones when known."""
        shown = self.epoch + 1
        if self.total_epochs:
            return f"ep {min(shown, self.total_epochs)}/{self.total_epochs}"
        return f"ep {shown}"

    def set_total_epochs(self, profile_toml: str) -> None:
        """training.max_epochs from the run's profile text (the event's, or profile.toml)."""
        import tomllib

        try:
            epochs = tomllib.loads(profile_toml).get("training", {}).get("max_epochs", 0)
        except (tomllib.TOMLDecodeError, AttributeError):
            return
        if isinstance(epochs, int) and epochs > 0:
            self.total_epochs = epochs

    def eta_seconds(self) -> float | None:
        if not self.total_steps or self.steps_per_second <= 0 or self.state != "running":
            return None
        return max(0.0, (self.total_steps - self.step) / self.steps_per_second)

    # ---------------------------------------------------------------------------- intake
    def apply(self, event: Event) -> None:
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is not None:
            handler(event)
            self.status_version += 1

    def add_metrics(self, step: int, values: dict[str, float], now: float | None = None) -> None:
        """One logged step's metric rows, from a StepLogged or from the store's metrics table."""
        now = time.time() if now is None else now
        if self._rate_anchor is not None:
            anchor_time, anchor_step = self._rate_anchor
            if now > anchor_time and step > anchor_step:
                rate = (step - anchor_step) / (now - anchor_time)
                previous = self.steps_per_second
                self.steps_per_second = rate if not previous else 0.7 * previous + 0.3 * rate
        self._rate_anchor = (now, step)
        self.step = max(self.step, step)
        parts = [n for n in values if n.startswith(m.TRAIN_PREFIX) and n != m.TRAIN_LOSS]
        stage_norms = False
        for name, value in values.items():
            if name.startswith(m.CHARTED) and not (len(parts) == 1 and name in parts):
                self.series_for(name).add(step, value)  # a single part is the loss twice
            if name.startswith(m.GRAD_PREFIX) and name != m.GRAD_TOTAL:
                stage = self.stages.get(name[len(m.GRAD_PREFIX) :])
                if stage is not None and math.isfinite(value):
                    stage.grad_norms.append(value)
                    stage_norms = True
        self.epoch = int(values.get(m.EPOCH, self.epoch))
        self.lr = values.get(m.LR, self.lr)
        # The engine's frames/s leaves pauses out (its training clock): shown as it comes.
        self.frames_per_second = values.get(m.FRAMES_PER_SECOND, self.frames_per_second)
        self.teacher_ms = values.get(m.TEACHER_MS, self.teacher_ms)
        self.charts_version += 1
        self.status_version += 1
        if stage_norms:
            self.stages_version += 1

    def load_series(self, name: str, points: list[tuple[int, float | None]]) -> None:
        """A whole downsampled history at once (from the store): replaces what was there."""
        series = Series()
        for step, value in points:
            series.add(step, math.nan if value is None else value)
        self.series[name] = series
        stage = (
            self.stages.get(name[len(m.GRAD_PREFIX) :]) if name.startswith(m.GRAD_PREFIX) else None
        )
        if stage is not None:
            stage.grad_norms.clear()
            stage.grad_norms.extend(v for v in series.values[-60:] if math.isfinite(v))
            self.stages_version += 1
        self.charts_version += 1

    def reset(self) -> None:
        """Forget the run (its store was trimmed under a follower, which reads it again): the
        chart options stay, every change counter moves on so each pane redraws."""
        kept = {"zoom": self.zoom, "loss_log": self.loss_log, "grad_all": self.grad_all_stages}
        versions = {f.name: getattr(self, f.name) + 1 for f in fields(self) if "_version" in f.name}
        for name, value in vars(RunView()).items():
            setattr(self, name, value)
        self.zoom, self.loss_log, self.grad_all_stages = kept.values()
        for name, value in versions.items():
            setattr(self, name, value)

    def add_entry(self, entry: TimelineEntry) -> None:
        self.timeline.append(entry)
        if len(self.timeline) > TIMELINE_LIMIT:
            del self.timeline[: len(self.timeline) - TIMELINE_LIMIT]
        self.timeline_version += 1

    def acknowledge(self) -> None:
        """The person has seen the alarms: the status line and the banner let go of them."""
        if self.alarm is not None or self.unseen_alarms:
            self.alarm, self.unseen_alarms = None, 0
            self.status_version += 1

    def apply_failure(self, text: str) -> None:
        """The engine died without an event saying so (an exception in its thread)."""
        self._raise(TimelineEntry(self.step, time.time(), "alarm", "error", text))
        self.status_version += 1

    def show_eval(self, index: int | None) -> None:
        self.eval_index = None if index is None else max(0, min(index, len(self.evals) - 1))
        self.decodes_version += 1

    def mark(self, step: int, label: str) -> None:
        if (step, label) not in self.markers[-8:]:  # a command and its event mark once
            self.markers.append((step, label))
            self.charts_version += 1

    def top_stages(self, count: int = TOP_STAGES) -> list[str]:
        """Stages by their newest gradient norm, largest first: the ones worth a line."""
        latest = {
            name: stage.grad_norms[-1] for name, stage in self.stages.items() if stage.grad_norms
        }
        return sorted(latest, key=lambda name: -latest[name])[:count]

    # --------------------------------------------------------------------------- handlers
    def _on_RunStarted(self, event: RunStarted) -> None:
        self.name, self.kind, self.device = event.name, event.kind, event.device
        self.unit, self.run_dir, self.total_steps = event.unit, event.run_dir, event.total_steps
        self.resumed_from, self.finished = event.resumed_from, None  # a resume goes on
        self.step = max(self.step, event.step)
        self.stages = {
            name: StageView(name, event.parameters.get(name, 0), event.trainable.get(name, True))
            for name in event.stages
        }
        self.schedule = [(epoch, list(names)) for epoch, names in event.stage_schedule]
        self.started = event.time
        if event.profile_toml:
            self.set_total_epochs(event.profile_toml)
        if event.resumed_from:  # the run's earlier life is history; say where this one began
            text = f"resumed from step {event.step} (checkpoints/last.pt)"
            self.add_entry(TimelineEntry(event.step, event.time, "state", "info", text))
        self.stages_version += 1
        self.charts_version += 1  # the error chart's title names the unit
        self.decodes_version += 1

    def _on_StepLogged(self, event: StepLogged) -> None:
        self.epoch = event.epoch
        self.add_metrics(event.step, m.step_metrics(event), event.time)

    def _on_EvalFinished(self, event: EvalFinished) -> None:
        self.decodes_version += 1
        self.add_entry(
            TimelineEntry(event.step, event.time, "eval", "info", describe_evaluation(event))
        )
        if event.split != "dev":
            self.test_eval = event
            return
        self.series_for(m.DEV_LOSS).add(event.step, event.loss)
        self.series_for(m.DEV_ERROR).add(event.step, event.error_rate)
        if event.is_best:
            self.best_error_rate, self.best_step = event.error_rate, event.step
        self.evals.append(event)
        self.charts_version += 1

    def _on_AlarmRaised(self, event: AlarmRaised) -> None:
        text, where = m.describe_alarm(event), m.alarm_where(event)
        entry = TimelineEntry(
            event.step, event.time, "alarm", event.severity, text, event.hint, where
        )
        self._raise(entry)

    def _raise(self, entry: TimelineEntry) -> None:
        """The banner and status line hold the most severe unacknowledged alarm, the newest
        among equals: an error (the loss exploded) is not pushed out by the warnings it causes
        in the same step (gradients vanishing stage by stage)."""
        self.add_entry(entry)
        self.unseen_alarms += 1
        if self.alarm is None or _SEVERITY[entry.severity] >= _SEVERITY[self.alarm.severity]:
            self.alarm = entry

    def _on_PretrainedLoaded(self, event: PretrainedLoaded) -> None:
        for stage, tensors, loaded, _adapted, _skipped in event.stages:
            if stage in self.stages:
                self.stages[stage].pretrained = f"{loaded}/{tensors}"
        self.stages_version += 1
        summary = event.report[0] if event.report else f"pretrained weights from {event.source}"
        severity = "warning" if event.notes else "info"
        self.add_entry(
            TimelineEntry(
                event.step, event.time, "pretrained", severity, summary, "; ".join(event.notes)
            )
        )

    def _on_DistillationSummary(self, event: DistillationSummary) -> None:
        self.comparison = event.table
        self.decodes_version += 1
        text = "teacher vs student: see the Decodes tab (and comparison.json)"
        self.add_entry(TimelineEntry(event.step, event.time, "summary", "info", text))

    def _on_StageChanged(self, event: StageChanged) -> None:
        if event.stage in self.stages:
            self.stages[event.stage].trainable = event.trainable
        self.stages_version += 1
        if event.reason != "profile":  # the profile's initial freeze is the starting point
            self.mark(event.step, event.stage)
        text = m.describe_stage(event)
        self.add_entry(TimelineEntry(event.step, event.time, "stage", "info", text))

    def _on_StateChanged(self, event: StateChanged) -> None:
        if event.state in ("paused", "running"):
            self._rate_anchor = None  # steps/s (the ETA) measures training, not the pause
        self.state, self.state_reason = event.state, event.reason
        # The engine's step at the change (a pause lands between two logged steps): the
        # status line says where it really stopped.
        self.step = max(self.step, event.step)
        if m.state_worth_telling(event):
            severity = "warning" if event.state == "failed" else "info"
            text = m.describe_state(event)
            self.add_entry(TimelineEntry(event.step, event.time, "state", severity, text))

    def _on_LearningRateChanged(self, event: LearningRateChanged) -> None:
        self._lr_events = True
        self.lr = event.lr
        self.mark(event.step, "lr")
        if m.lr_change_worth_telling(event):
            text = m.describe_lr(event)
            self.add_entry(TimelineEntry(event.step, event.time, "lr", "info", text))

    def _on_CommandApplied(self, event: CommandApplied) -> None:
        # Runs recorded before the engine published LearningRateChanged: the command's name.
        if not self._lr_events and m.command_name(event) in m.LR_COMMANDS:
            self.mark(event.step, "lr")
        text = m.describe_applied(event)
        rejected = event.detail.startswith("rejected")
        severity = "warning" if rejected else "info"
        self.add_entry(TimelineEntry(event.step, event.time, "command", severity, text))
        if rejected:
            self.untold_rejections.append(text)
        self.pending = ""

    def _on_CheckpointSaved(self, event: CheckpointSaved) -> None:
        # The path under the run directory: the table's column is narrow, and the run is known.
        path = event.path
        if self.run_dir and path.startswith(self.run_dir.rstrip("/") + "/"):
            path = path[len(self.run_dir.rstrip("/")) + 1 :]
        text = f"checkpoint {event.which} -> {path}"
        self.add_entry(TimelineEntry(event.step, event.time, "checkpoint", "info", text))

    def _on_RunFinished(self, event: RunFinished) -> None:
        self.finished = event
        self.state = event.status
        self.step = max(self.step, event.step)

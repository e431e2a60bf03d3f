"""Review mode: the run screen filled from a run's store instead of a live engine.

`signconsole show RUN` opens this. The same panes read the same `RunView`; here it is rebuilt from
run.db: lifecycle events and alarms are replayed through `RunView.apply` (so stages, timeline,
markers and state mean exactly what they meant live), and every chart series is a downsampled SQL
query over the visible step range. A run that is still training is followed (the view is rebuilt
when the store changes, about once a second) and its controls reach the headless engine through
the store's commands table, applied at its next step boundary.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from textual.binding import Binding

from signconsole.events import (
    EVENT_TYPES,
    AlarmRaised,
    Command,
    EvalFinished,
    Event,
    SampleDecode,
)
from signconsole.store.compare import describe_evaluation
from signconsole.store.reader import RunReader
from signconsole.tui.run_screen import RunScreen
from signconsole.tui.state import RunView, Series, TimelineEntry

CHART_POINTS = 400  # per series: more than any terminal chart has pixel columns
CHARTED = ("train/", "dev/", "grad_norm/", "lr")  # the metrics the charts draw
LIVE_STATES = ("running", "paused", "stopping", "starting")
# Bindings that drive training: shown only while the reviewed run is alive.
CONTROL_ACTIONS = {
    "toggle_pause",
    "toggle_stage",
    "lr_factor",
    "set_lr",
    "checkpoint",
    "evaluate",
    "stop",
}


@dataclass
class Zoom:
    """The visible step range; None = the whole run."""

    start: int | None = None
    end: int | None = None


def build_view(reader: RunReader, zoom: Zoom, eval_index: int | None = None) -> RunView:
    """Everything the panes show, from the store. `eval_index` picks the dev evaluation whose
    decodes are shown (None = the newest)."""
    view = RunView()
    replay: list[tuple[float, int, Event]] = []
    for _, kind, payload in reader.events():
        cls = EVENT_TYPES.get(kind)
        if cls is None:
            continue
        fields = {k: v for k, v in payload.items() if k != "type"}
        try:
            replay.append((fields.get("time", 0.0), 0, cls(**fields)))
        except TypeError:  # a run written by another version: skip what no longer fits
            continue
    for alarm in reader.alarms():
        event = AlarmRaised(
            alarm["step"],
            time=alarm["time"],
            severity=alarm["severity"],
            kind=alarm["kind"],
            message=alarm["message"],
            hint=alarm["hint"],
            stage=alarm["stage"],
            batch_ids=alarm["batch_ids"],
        )
        replay.append((alarm["time"], 1, event))
    for _, _, event in sorted(replay, key=lambda item: (item[0], item[1])):
        view.apply(event)
    view.unseen_alarms = 0  # nothing is new in a review
    for row in reader.stored_evaluations():
        view.add_entry(
            TimelineEntry(row["step"], row["time"], "eval", "info", describe_evaluation(row))
        )

    meta = reader.meta()
    summary = reader.summary()
    view.name = view.name or meta.get("name", reader.run_dir.name)
    view.kind = view.kind or meta.get("kind", "")
    view.unit = meta.get("unit", view.unit)
    view.run_dir = str(reader.run_dir)
    if summary is not None:
        view.state = summary.status  # a dead process shows as killed, not running
    view.step = reader.last_step()
    names = reader.metric_names()
    for name in names:
        if not name.startswith(CHARTED):
            continue  # the charts' series only; single values below
        points = reader.series(name, CHART_POINTS, zoom.start, zoom.end)
        series = Series(
            [step for step, _ in points],
            [math.nan if value is None else value for _, value in points],
        )
        view.series[name] = series
        for stage in view.stages.values():
            if name == f"grad_norm/{stage.name}":
                stage.grad_norms.clear()
                stage.grad_norms.extend(v for v in series.values[-60:] if math.isfinite(v))
    if "train/ctc" in view.series and "train/kd" not in view.series:
        del view.series["train/ctc"]  # the only part of the loss: the same line twice
    epoch = reader.last_value("epoch")
    view.epoch = int(epoch) if epoch is not None else view.epoch
    lr = view.series.get("lr")
    view.lr = lr.values[-1] if lr and lr.values else None
    view.teacher_ms = reader.last_value("teacher_ms") or 0.0
    view.frames_per_second = reader.last_value("frames_per_second") or 0.0

    evaluations = reader.evals()
    dev = [e for e in evaluations if e.split == "dev"]
    best = min(
        (e for e in dev if math.isfinite(e.error_rate)),
        key=lambda e: (e.error_rate, e.step),
        default=None,
    )
    if best is not None:
        view.best_error_rate, view.best_step = best.error_rate, best.step
    view.evaluations = [e.step for e in dev]
    if dev:
        index = len(dev) - 1 if eval_index is None else max(0, min(eval_index, len(dev) - 1))
        view.eval_position = (index, len(dev))
        view.latest_eval = _eval_event(dev[index], reader)
    tests = [e for e in evaluations if e.split != "dev"]
    if tests:
        view.test_eval = _eval_event(tests[-1], reader)
    view.charts_version += 1
    view.stages_version += 1
    view.timeline_version += 1
    view.decodes_version += 1
    return view


def _eval_event(evaluation: EvalFinished, reader: RunReader) -> EvalFinished:
    if evaluation.split != "dev":
        return evaluation
    samples = tuple(
        SampleDecode(d.sample_id, d.reference, d.greedy, d.beam, d.error_rate)
        for d in reader.decodes(evaluation.step)
    )
    return dataclasses.replace(evaluation, samples=samples)


class ReviewScreen(RunScreen):
    """The run screen on a run's store: zoom, step through evaluations, follow a live run."""

    BINDINGS = [
        *RunScreen.BINDINGS,
        Binding("left_square_bracket", "zoom(0.5)", "zoom in", id="zoom_in"),
        Binding("right_square_bracket", "zoom(2.0)", "zoom out", id="zoom_out"),
        Binding("less_than_sign", "pan(-1)", "pan ←", show=False),
        Binding("greater_than_sign", "pan(1)", "pan →", show=False),
        Binding("0", "zoom_reset", "whole run", show=False),
        Binding("comma", "step_eval(-1)", "older eval", show=False),
        Binding("full_stop", "step_eval(1)", "newer eval", show=False),
    ]

    def __init__(self, reader: RunReader, zoom: Zoom | None = None) -> None:
        super().__init__(host=None)
        self.reader = reader
        self.zoom = zoom or Zoom()
        self.eval_index: int | None = None
        self._marker: tuple | None = None
        self.view = build_view(reader, self.zoom)

    def on_mount(self) -> None:  # Textual calls RunScreen.on_mount too (focus, status line)
        self._marker = self.reader.change_marker()
        self.refresh_panes(force_charts=True)
        self.set_interval(1.0, self.poll)

    def on_unmount(self) -> None:
        self.reader.close()

    @property
    def live(self) -> bool:
        return self.view.state in LIVE_STATES

    @property
    def running(self) -> bool:
        return self.live

    def poll(self) -> None:
        """Rebuild when the run wrote something; otherwise only watch a live run's status (its
        process may die without writing: it then shows as killed)."""
        marker = self.reader.change_marker()
        if marker != self._marker:
            self._marker = marker
            self.rebuild()
        elif self.live:
            summary = self.reader.summary()
            if summary is not None and summary.status != self.view.state:
                self.rebuild()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # A finished run takes no commands: the footer keeps what works.
        return self.live or action not in CONTROL_ACTIONS

    def rebuild(self) -> None:
        view = build_view(self.reader, self.zoom, self.eval_index)
        # The panes hold the view object: update it in place, moving every change counter on.
        counters = [name for name in vars(view) if name.endswith("_version")]
        moved = {name: getattr(self.view, name) + 1 for name in counters}
        self.view.__dict__.update(view.__dict__)
        was_live = self.live
        self.view.__dict__.update(moved)
        if self.live != was_live:
            self.refresh_bindings()
        self.refresh_panes(force_charts=True)

    def _send(self, command: Command, note: str) -> None:
        if not self.live:
            self.notify(f"the run is {self.view.state}: review only", severity="warning")
            return
        self.reader.send(command, source="attach")
        self.notify(f"{note}: sent to the run, applied at its next step", timeout=2)

    def action_quit_run(self) -> None:
        # Leaving a review never touches the run: back to the picker, or out of `show`.
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
        else:
            self.app.exit()

    # ---------------------------------------------------------------------- navigation
    def _span(self) -> tuple[int, int]:
        last = max(1, self.reader.last_step())
        return (self.zoom.start or 0, self.zoom.end or last)

    def action_zoom(self, factor: float) -> None:
        start, end = self._span()
        last = max(1, self.reader.last_step())
        width = max(4, int((end - start) * factor))
        if width >= last:
            self.zoom = Zoom()
        else:
            end = end if self.zoom.end is not None else last
            self.zoom = Zoom(max(0, end - width), end)
        self.rebuild()
        self.notify(self._zoom_text(), timeout=1.5)

    def action_pan(self, direction: int) -> None:
        if self.zoom.start is None:
            return
        start, end = self._span()
        last = max(1, self.reader.last_step())
        shift = direction * max(1, (end - start) // 2)
        shift = max(-start, min(shift, last - end))
        self.zoom = Zoom(start + shift, end + shift)
        self.rebuild()
        self.notify(self._zoom_text(), timeout=1.5)

    def action_zoom_reset(self) -> None:
        self.zoom = Zoom()
        self.rebuild()

    def _zoom_text(self) -> str:
        if self.zoom.start is None:
            return "whole run"
        return f"steps {self.zoom.start}-{self.zoom.end}  ([ ] zoom, < > pan, 0 whole run)"

    def action_step_eval(self, direction: int) -> None:
        count = len(self.view.evaluations)
        if not count:
            return
        current = self.eval_index if self.eval_index is not None else count - 1
        self.eval_index = max(0, min(count - 1, current + direction))
        self.rebuild()
        self.action_show_tab("decodes")

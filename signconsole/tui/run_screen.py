"""The live run screen: status line, four charts, and tabs for stages, events and decodes."""

from __future__ import annotations

import asyncio
import time

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane

from signconsole.events import (
    CheckpointNow,
    EvaluateNow,
    Freeze,
    Pause,
    Resume,
    SetLearningRate,
    Stop,
    Unfreeze,
)
from signconsole.tui.dialogs import AskLearningRate, Confirm
from signconsole.tui.host import EngineHost
from signconsole.tui.panes import ChartPane, DecodesPane, StagesPane, TimelinePane, status_text
from signconsole.tui.state import RunView, TimelineEntry

CHART_INTERVAL = 1.0  # seconds between chart redraws: charts are the costly part of a frame
DRAIN_INTERVAL = 0.2  # seconds between bus drains: key presses show within half a second


class RunScreen(Screen):
    BINDINGS = [
        Binding("space", "toggle_pause", "pause/resume", id="pause"),
        Binding("f", "toggle_stage", "freeze/unfreeze", id="freeze"),
        Binding("minus", "lr_factor(0.5)", "lr ÷2", id="lr_down"),
        Binding("plus,equals_sign", "lr_factor(2.0)", "lr ×2", id="lr_up"),
        Binding("l", "set_lr", "set lr", id="set_lr"),
        Binding("c", "checkpoint", "checkpoint", id="checkpoint"),
        Binding("e", "evaluate", "eval", id="evaluate"),
        Binding("s", "stop", "stop", id="stop"),
        Binding("1", "show_tab('stages')", "stages", show=False),
        Binding("2", "show_tab('events')", "events", show=False),
        Binding("3", "show_tab('decodes')", "decodes", show=False),
        Binding("q", "quit_run", "quit", id="quit"),
    ]

    def __init__(self, host: EngineHost | None) -> None:
        super().__init__()
        self.host = host
        self.view = RunView()
        self._last_chart_draw = 0.0
        self._reported_error = False
        self._pane_error = False
        self._events_label = "Events"
        self._schedule_text = ""

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        with Grid(id="charts"):
            for kind in ("loss", "error", "grad", "lr"):
                yield ChartPane(kind, self.view, id=f"chart-{kind}")
        with TabbedContent(id="tabs", initial="stages"):
            with TabPane("Stages", id="stages"):
                yield StagesPane(self.view, id="stages-table")
                yield Static(id="schedule", classes="hint")
            with TabPane("Events", id="events"):
                yield TimelinePane(self.view, id="timeline")
            with TabPane("Decodes", id="decodes"):
                yield DecodesPane(self.view, id="decodes-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(StagesPane).focus()  # arrow keys pick the stage that f toggles
        self.query_one("#status", Static).update(status_text(self.view, self.size.width))
        if self.host is None:  # review mode (a subclass reads a run's store instead)
            return
        self.set_interval(DRAIN_INTERVAL, self.drain)
        loop = asyncio.get_running_loop()
        # A paused engine shows PAUSED within a frame instead of up to a drain tick later
        # (benchmarks/README.md: 9 ms instead of ~100 ms after the step boundary).
        self.host.wake = lambda: loop.call_soon_threadsafe(self.call_later, self.drain)
        self.app.run_worker(
            self.host.run,
            name="engine",
            group="engine",
            thread=True,
            exclusive=True,
            exit_on_error=False,
        )

    # ----------------------------------------------------------------------- event intake
    def drain(self) -> None:
        events = self.host.drain()
        for event in events:
            self.view.apply(event)
        if self.host.done.is_set() and self.host.error and not self._reported_error:
            self._reported_error = True
            self.view.state = "failed"
            self.view.add_entry(
                TimelineEntry(
                    self.view.step, time.time(), "alarm", "error", f"run failed: {self.host.error}"
                )
            )
            self.view.unseen_alarms += 1
            self.view.status_version += 1
            self.notify(self.host.error, title="run failed", severity="error", timeout=30)
        if not events and not self._reported_error:
            return
        try:
            self.refresh_panes()
        except Exception as error:  # noqa: BLE001 - a pane bug must not take the run down
            if not self._pane_error:
                self._pane_error = True
                self.notify(
                    f"a pane failed to draw: {error!r}; training continues",
                    title="display error",
                    severity="error",
                    timeout=30,
                )

    def on_resize(self, event: events.Resize) -> None:
        # The status line drops its least important parts to fit: refit it to the new width
        # now, not at the next event (a finished or reviewed run may have none coming).
        self.query_one("#status", Static).update(
            status_text(self.view, event.size.width), layout=False
        )

    def on_unmount(self) -> None:
        if self.host is not None:
            self.host.wake = None

    def refresh_panes(self, force_charts: bool = False) -> None:
        # The status line is one row high whatever it says: no relayout of the screen for it.
        self.query_one("#status", Static).update(
            status_text(self.view, self.size.width), layout=False
        )
        now = time.monotonic()
        if force_charts or now - self._last_chart_draw >= CHART_INTERVAL or self.view.finished:
            self._last_chart_draw = now
            for pane in self.query(ChartPane):
                pane.update_if_changed()
        self.query_one(StagesPane).update_if_changed()
        self.query_one(TimelinePane).update_if_changed()
        self.query_one(DecodesPane).update_if_changed()
        self._update_schedule()
        tabs = self.query_one(TabbedContent)
        events_tab = tabs.get_tab("events")
        if self.view.unseen_alarms and tabs.active != "events":
            label = f"Events [reverse bold red] {self.view.unseen_alarms} new [/]"
        else:
            self.view.unseen_alarms = 0
            label = "Events"
        if label != self._events_label:  # setting a label relayouts the tab bar
            self._events_label = label
            events_tab.label = label

    def _update_schedule(self) -> None:
        view = self.view
        schedule = view.schedule
        frozen = [s.name for s in view.stages.values() if not s.trainable]
        text = f"frozen: {', '.join(frozen) if frozen else 'none'}"
        if schedule:
            upcoming = [f"epoch {e}: {', '.join(n)}" for e, n in schedule if e > view.epoch]
            text += "   schedule: " + ("; ".join(upcoming) if upcoming else "done")
        text += "   (f toggles the selected stage)"
        if text != self._schedule_text:
            self._schedule_text = text
            self.query_one("#schedule", Static).update(text)

    @on(TabbedContent.TabActivated)
    def _tab_changed(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "events":
            self.view.unseen_alarms = 0
            self.refresh_panes()

    # ---------------------------------------------------------------------------- controls
    @property
    def running(self) -> bool:
        return not self.host.done.is_set() and self.view.state not in ("finished", "failed")

    def _send(self, command, note: str) -> None:
        if not self.running:
            self.notify("the run is not training", severity="warning")
            return
        self.host.send(command)
        self.notify(f"{note}: applied at the next step", timeout=1.5)

    def action_toggle_pause(self) -> None:
        paused = self.view.state == "paused"
        self._send(
            Resume(source="console") if paused else Pause(source="console"),
            "resume" if paused else "pause",
        )

    def action_toggle_stage(self) -> None:
        stage = self.query_one(StagesPane).selected_stage()
        if stage is None:
            self.notify("no stage selected: open the Stages tab (1)", severity="warning")
            return
        trainable = self.view.stages[stage].trainable
        command = (
            Freeze(stage, source="console") if trainable else Unfreeze(stage, source="console")
        )
        self._send(command, f"{'freeze' if trainable else 'unfreeze'} {stage}")

    def action_lr_factor(self, factor: float) -> None:
        self._send(SetLearningRate(factor=factor, source="console"), f"lr ×{factor:g}")

    def action_set_lr(self) -> None:
        def chosen(value: float | None) -> None:
            if value is not None:
                self._send(SetLearningRate(value=value, source="console"), f"lr = {value:.3g}")

        self.app.push_screen(AskLearningRate(self.view.lr), chosen)

    def action_checkpoint(self) -> None:
        self._send(CheckpointNow(source="console"), "checkpoint")

    def action_evaluate(self) -> None:
        self._send(EvaluateNow(source="console"), "evaluation")

    def action_stop(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._send(Stop(reason="stopped from the console", source="console"), "stop")

        if self.running:
            self.app.push_screen(Confirm("Stop training? A checkpoint is written first."), answered)

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_quit_run(self) -> None:
        if not self.running:
            self.app.exit()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.host.send(Stop(reason="console quit", source="console"))
                self.notify("stopping: writing a checkpoint, then quitting", timeout=10)
                self.set_interval(0.2, self._exit_when_done)

        self.app.push_screen(Confirm("Quit? The run stops cleanly with a checkpoint."), answered)

    def _exit_when_done(self) -> None:
        if self.host.done.is_set():
            self.drain()
            self.app.exit()

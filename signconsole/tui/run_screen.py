"""The run screen: status line, alarm banner, four charts, and tabs for stages, events and decodes.

One screen for every way a run is watched: the live console (a BusSource over the engine in this
process), attach and review (a StoreSource over a run's store). The source decides what is new
and whether commands reach an engine; the screen only draws the RunView and maps keys to actions
(tui/controls.py).
"""

from __future__ import annotations

import asyncio
import time

from textual import events, on
from textual.app import ComposeResult
from textual.containers import Grid, VerticalScroll
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane

from signconsole.tui.chart_pane import ChartPane
from signconsole.tui.controls import RunControls
from signconsole.tui.panes import (
    DecodesPane,
    StagesPane,
    TimelinePane,
    banner_text,
    entry_text,
    status_text,
)
from signconsole.tui.source import BusSource, RunSource
from signconsole.tui.state import RunView, TimelineEntry

CHART_INTERVAL = 1.0  # seconds between chart redraws: charts are the costly part of a frame
DRAIN_INTERVAL = 0.2  # seconds between bus drains: key presses show within half a second
STORE_INTERVAL = 1.0  # seconds between reads of a followed store (a few indexed queries)
TAB_FOCUS = {"stages": "#stages-table", "events": "#timeline", "decodes": "#decodes-scroll"}


class RunScreen(RunControls):
    def __init__(self, source: RunSource, zoom: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.source = source
        self.view = RunView(zoom=zoom)
        self._last_chart_draw = 0.0
        self._reported_error = False
        self._pane_error = False
        self._events_label = "Events"
        self._schedule_text = ""
        self._banner: TimelineEntry | None = None
        self._footer_state: tuple[bool, bool, bool] | None = None

    @property
    def host(self):
        """The in-process engine's host (live console), else None."""
        return self.source.host if isinstance(self.source, BusSource) else None

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        yield Static(id="alarm")
        with Grid(id="charts"):
            for kind in ("loss", "error", "grad", "lr"):
                yield ChartPane(kind, self.view, id=f"chart-{kind}")
        with TabbedContent(id="tabs", initial="stages"):
            with TabPane("Stages", id="stages"):
                yield StagesPane(self.view, id="stages-table")
                yield Static(id="schedule", classes="hint")
            with TabPane("Events", id="events"):
                yield TimelinePane(self.view, id="timeline")
                yield Static(id="detail", classes="hint")
            with TabPane("Decodes", id="decodes"), VerticalScroll(id="decodes-scroll"):
                yield DecodesPane(self.view, id="decodes-text")
        yield Footer(compact=True, show_command_palette=False)  # ? lists it

    def on_mount(self) -> None:
        self.query_one(StagesPane).focus()  # arrow keys pick the stage that f toggles
        self.query_one("#alarm", Static).display = False
        host = self.host
        if host is None:  # a store: read it now, then follow it
            self.drain(force_charts=True)
            self.set_interval(STORE_INTERVAL, self.drain)
            return
        self.refresh_status()
        self.set_interval(DRAIN_INTERVAL, self.drain)
        loop = asyncio.get_running_loop()
        # A paused engine shows PAUSED within a frame instead of up to a drain tick later
        # (benchmarks/README.md: 9 ms instead of ~100 ms after the step boundary).
        host.wake = lambda: loop.call_soon_threadsafe(self.call_later, self.drain)
        self.app.run_worker(
            host.run,
            name="engine",
            group="engine",
            thread=True,
            exclusive=True,
            exit_on_error=False,
        )

    def on_unmount(self) -> None:
        if self.host is not None:
            self.host.wake = None
        self.source.close()

    # ----------------------------------------------------------------------- event intake
    def drain(self, force_charts: bool = False) -> None:
        changed = self.source.read(self.view)
        host = self.host
        if host is not None and host.done.is_set() and host.error and not self._reported_error:
            self._reported_error = True
            self.view.state = "failed"
            self.view.apply_failure(f"run failed: {host.error}")
            changed = True
        self._refresh_footer()  # an engine that ended sends no event: the footer follows anyway
        if not changed and not force_charts:
            return
        try:
            self.refresh_panes(force_charts)
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
        self.refresh_status(event.size.width)
        if self._banner is not None:  # the banner's two lines are cut to the new width
            self.query_one("#alarm", Static).update(self._banner_text(self._banner))
        # A short terminal: the tabs get as much room as the charts, so the Events tab shows
        # rows and the selected one's full text even with the alarm banner up (80x24).
        short = event.size.height < 30
        self.query_one("#charts").styles.height = "1fr" if short else "3fr"
        self.query_one("#tabs").styles.height = "1fr" if short else "2fr"

    def refresh_status(self, width: int | None = None) -> None:
        # The status line is one row high whatever it says: no relayout of the screen for it.
        text = status_text(self.view, width or self.size.width)
        self.query_one("#status", Static).update(text, layout=False)

    def refresh_panes(self, force_charts: bool = False) -> None:
        self.refresh_status()
        self._show_alarm()
        self._tell_rejections()
        now = time.monotonic()
        if force_charts or now - self._last_chart_draw >= CHART_INTERVAL or self.view.finished:
            self._last_chart_draw = now
            for pane in self.query(ChartPane):
                pane.update_if_changed()
        self.query_one(StagesPane).update_if_changed()
        timeline = self.query_one(TimelinePane)
        version = timeline._drawn_version
        timeline.update_if_changed()
        if timeline._drawn_version != version:
            self._show_detail()
        self.query_one(DecodesPane).update_if_changed()
        self._update_schedule()
        self._update_events_label()
        self._refresh_footer()

    def _refresh_footer(self) -> None:
        """The footer offers what works now: the training keys while the engine takes
        commands, space named after what it does (pause or resume), `a` while an alarm is up."""
        bindings = (self.live, self.view.state == "paused", self.view.alarm is not None)
        if bindings != self._footer_state:
            self._footer_state = bindings
            self.refresh_bindings()
            self._update_schedule()  # its "f toggles" hint goes with the f key

    # ---------------------------------------------------------------------------- alarms
    def _show_alarm(self) -> None:
        """A new alarm: a banner with its full hint, a toast, the terminal bell; the banner and
        the status line keep it until `a` acknowledges it."""
        alarm = self.view.alarm
        if alarm is self._banner:
            return
        banner = self.query_one("#alarm", Static)
        self._banner = alarm
        banner.display = alarm is not None
        if alarm is None:
            return
        banner.update(self._banner_text(alarm))
        banner.set_class(alarm.severity == "error", "error-alarm")
        self.notify(alarm.text, title="alarm", severity="error", timeout=8)
        if getattr(self.app, "bell_on_alarm", True):
            self.app.bell()

    def _banner_text(self, alarm: TimelineEntry):
        # border (1) and padding (1 each side): what is left of the width for the text
        return banner_text(alarm, max(20, (self.size.width or 80) - 3))

    def _tell_rejections(self) -> None:
        """A command the engine refused: the toast that said "sent" is answered by one that
        says why not (the Events tab keeps it)."""
        while self.view.untold_rejections:
            text = self.view.untold_rejections.pop(0)
            self.notify(text, title="command rejected", severity="warning", timeout=10)

    def _update_events_label(self) -> None:
        tabs = self.query_one(TabbedContent)
        if self.view.unseen_alarms and tabs.active != "events":
            label = f"Events [reverse bold red] {self.view.unseen_alarms} new [/]"
        else:
            label = "Events"
        if label != self._events_label:  # setting a label relayouts the tab bar
            self._events_label = label
            tabs.get_tab("events").label = label

    def _update_schedule(self) -> None:
        view = self.view
        frozen = [s.name for s in view.stages.values() if not s.trainable]
        text = f"frozen: {', '.join(frozen) if frozen else 'none'}"
        if view.schedule:
            upcoming = [f"epoch {e}: {', '.join(n)}" for e, n in view.schedule if e > view.epoch]
            text += "   schedule: " + ("; ".join(upcoming) if upcoming else "done")
        selected = self.query_one(StagesPane).selected_stage()
        if selected and self.live:  # a review or an ended run: f does nothing, so no hint
            text += f"   (f toggles {selected})"
        if text != self._schedule_text:
            self._schedule_text = text
            self.query_one("#schedule", Static).update(text)

    def _show_detail(self) -> None:
        entry = self.query_one(TimelinePane).highlighted()
        self.query_one("#detail", Static).update(entry_text(entry))

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "timeline":
            self._show_detail()
        elif event.data_table.id == "stages-table":
            self._update_schedule()

    @on(TabbedContent.TabActivated)
    def _tab_changed(self, event: TabbedContent.TabActivated) -> None:
        # Whatever opened the tab (a key, a click), the keys go to what it shows: arrows move
        # the Stages cursor there, scroll the events or the decodes.
        pane_id = event.pane.id or ""
        if pane_id == "events":
            self.view.unseen_alarms = 0
            self._update_events_label()
            if self.view.alarm is not None:  # the banner's alarm, written out in full below
                self.query_one(TimelinePane).select(self.view.alarm)
        target = TAB_FOCUS.get(pane_id)
        if target:
            self.call_after_refresh(self.query_one(target).focus)

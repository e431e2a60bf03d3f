"""How console_overhead.py measures the console: the UI thread's work, counted and timed by
wrapping the console's own methods in this process (signconsole is not modified), and a bus sink
that stamps the training steps a span starts and ends at.

Import it after `signconsole.runtime.tune_process()`: it imports the console, hence torch.
"""

from __future__ import annotations

import functools
import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from textual._compositor import CompositorUpdate
from textual.app import App
from textual.screen import Screen

from signconsole.events import RunFinished, StateChanged, StepLogged
from signconsole.tui.chart_pane import ChartPane
from signconsole.tui.panes import DecodesPane, StagesPane, TimelinePane
from signconsole.tui.run_screen import RunScreen

LABELS = (
    "drain",  # RunScreen.drain: bus events -> RunView -> refresh_panes (when events came)
    "refresh_panes",  # status line, chart invalidation, tables, schedule line, tab label
    "stages rebuild",  # StagesPane.update_if_changed that rebuilt the table (clear + add_row)
    "timeline rebuild",  # TimelinePane.update_if_changed that rebuilt the table
    "decodes update",  # DecodesPane.update_if_changed that updated
    "screen update",  # Screen._on_timer_update: layout, widget renders, compositing, display
    "frame",  # Screen._compositor_refresh: one composited frame (inside screen update)
    "chart render",  # ChartPane.render (inside frame)
    "encode",  # the frame turned into escape codes (inside frame); see the module docstring
    "gc",  # garbage collections run by the UI thread (its allocations trigger them)
    "gc full",  # the generation-2 ones among them (every object in the process: the long ones)
    "gc full, any thread",  # generation-2 collections run by any thread (B and C alike)
)
UI_LABELS = LABELS[:-1]


class Meter:
    """Counts and times UI-thread work by wrapping methods of the console's classes."""

    def __init__(self, encode: bool) -> None:
        # Every key exists up front: the training thread copies these dicts while the UI thread
        # updates them, and a dict that never grows is safe to copy under the GIL.
        self.calls = dict.fromkeys(LABELS, 0)
        self.seconds = dict.fromkeys(LABELS, 0.0)  # wall: GIL waits included
        self.cpu = dict.fromkeys(LABELS, 0.0)  # the UI thread's CPU time
        self.encoded_bytes = 0
        self.encode = encode
        self.on_frame: Callable[[], None] | None = None  # called after each composited frame
        self.ui_ident = threading.main_thread().ident
        self._gc_start: dict[int, tuple[float, float]] = {}  # thread: collection started
        # False: RunScreen.drain returns at once (the console stays attached, idle, not drawing;
        # events wait in the host's deque). Flipped by the Probe in the training thread.
        self.drawing = True

    def wrap(self, cls: type, name: str, label: str, when=None, after=None) -> None:
        original = getattr(cls, name)
        meter = self

        @functools.wraps(original)
        def wrapper(obj, *args, **kwargs):
            if when is not None and not when(obj):
                return original(obj, *args, **kwargs)
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return original(obj, *args, **kwargs)
            finally:
                meter.seconds[label] += time.perf_counter() - start
                meter.cpu[label] += time.thread_time() - cpu
                meter.calls[label] += 1
                if after is not None:
                    after()

        setattr(cls, name, wrapper)

    def install(self) -> None:
        def changed(counter: str):
            return lambda pane: getattr(pane.view, counter) != pane._drawn_version

        self.wrap(RunScreen, "drain", "drain")
        timed_drain = RunScreen.drain

        @functools.wraps(timed_drain)
        def gated_drain(screen) -> None:
            if self.drawing:
                timed_drain(screen)

        RunScreen.drain = gated_drain
        self.wrap(RunScreen, "refresh_panes", "refresh_panes")
        self.wrap(StagesPane, "update_if_changed", "stages rebuild", changed("stages_version"))
        self.wrap(
            TimelinePane, "update_if_changed", "timeline rebuild", changed("timeline_version")
        )
        self.wrap(DecodesPane, "update_if_changed", "decodes update", changed("decodes_version"))
        self.wrap(Screen, "_on_timer_update", "screen update")
        self.wrap(Screen, "_compositor_refresh", "frame", after=self._frame_done)
        self.wrap(ChartPane, "render", "chart render")
        original_display = App._display
        meter = self

        @functools.wraps(original_display)
        def display(app, screen, renderable):
            original_display(app, screen, renderable)
            if meter.encode and app.is_headless and isinstance(renderable, CompositorUpdate):
                start, cpu = time.perf_counter(), time.thread_time()
                meter.encoded_bytes += len(renderable.render_segments(app.console))
                meter.seconds["encode"] += time.perf_counter() - start
                meter.cpu["encode"] += time.thread_time() - cpu
                meter.calls["encode"] += 1

        App._display = display
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict) -> None:
        ident = threading.get_ident()
        if phase == "start":
            self._gc_start[ident] = (time.perf_counter(), time.thread_time())
            return
        start = self._gc_start.pop(ident, None)
        if start is None:
            return
        wall, cpu = time.perf_counter() - start[0], time.thread_time() - start[1]
        full = info["generation"] == 2
        labels = (["gc", "gc full"] if full else ["gc"]) if ident == self.ui_ident else []
        for label in [*labels, "gc full, any thread"] if full else labels:
            self.seconds[label] += wall
            self.cpu[label] += cpu
            self.calls[label] += 1

    def _frame_done(self) -> None:
        if self.on_frame is not None:
            self.on_frame()


def thread_cpu_clock(ident: int) -> Callable[[], float]:
    clock = time.pthread_getcpuclockid(ident)
    return lambda: time.clock_gettime(clock)


@dataclass
class Mark:
    """One point of a span, taken in the training thread when a StepLogged is published."""

    wall: float
    process_cpu: float  # every thread of the process (OpenMP workers included)
    engine_cpu: float  # the training thread
    ui_cpu: float  # the main thread: Textual's event loop in B, idle in A's and C's rounds
    calls: dict[str, int]
    seconds: dict[str, float]
    cpu: dict[str, float]
    encoded_bytes: int


class Probe:
    """A bus sink: stamps the StepLogged events of steps `first` and `last` and the times of all
    of them, records state changes, switches the console's drawing on `toggles` (step: drawing),
    and reports step `until` (default `last`)."""

    def __init__(
        self,
        first: int,
        last: int,
        meter: Meter,
        until: int | None = None,
        toggles: dict[int, bool] | None = None,
    ) -> None:
        self.first, self.last, self.meter = first, last, meter
        self.until = last if until is None else until
        self.toggles = toggles or {}
        self.ui_cpu = thread_cpu_clock(threading.main_thread().ident)
        self.marks: dict[int, Mark] = {}
        self.logged: dict[int, float] = {}  # step: time of its StepLogged
        self.states: list[tuple[float, str]] = []
        self.reached = threading.Event()  # step `until`, or the run ended
        self.notify: Callable[[], None] | None = None  # also called then (B: wakes the loop)

    def __call__(self, event) -> None:
        now = time.perf_counter()
        if isinstance(event, StepLogged):
            self.logged[event.step] = now
            if event.step in self.toggles:
                self.meter.drawing = self.toggles[event.step]
        if isinstance(event, StepLogged) and event.step in (self.first, self.last):
            meter = self.meter
            self.marks[event.step] = Mark(
                now,
                time.process_time(),
                time.thread_time(),
                self.ui_cpu(),
                dict(meter.calls),
                dict(meter.seconds),
                dict(meter.cpu),
                meter.encoded_bytes,
            )
        elif isinstance(event, StateChanged):
            self.states.append((now, event.state))
        if (isinstance(event, StepLogged) and event.step == self.until) or isinstance(
            event, RunFinished
        ):
            self.reached.set()
            if self.notify is not None:
                self.notify()


@dataclass
class Span:
    steps: int
    wall: float
    process_cpu: float
    engine_cpu: float
    ui_cpu: float
    calls: dict[str, int]
    seconds: dict[str, float]
    cpu: dict[str, float]
    encoded_bytes: int
    # per key press: seconds from pressing space to (command sent, engine paused, PAUSED shown)
    latencies: list[tuple[float, float, float]] = field(default_factory=list)
    # per pair of adjacent sub-spans of one console run: (frames/s drawing, frames/s not)
    toggled: list[tuple[float, float]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.steps / self.wall

    @classmethod
    def of(cls, probe: Probe) -> Span:
        if probe.first not in probe.marks or probe.last not in probe.marks:
            raise RuntimeError(f"the run ended before step {probe.last}")
        a, b = probe.marks[probe.first], probe.marks[probe.last]
        return cls(
            probe.last - probe.first,
            b.wall - a.wall,
            b.process_cpu - a.process_cpu,
            b.engine_cpu - a.engine_cpu,
            b.ui_cpu - a.ui_cpu,
            {k: b.calls[k] - a.calls[k] for k in LABELS},
            {k: b.seconds[k] - a.seconds[k] for k in LABELS},
            {k: b.cpu[k] - a.cpu[k] for k in LABELS},
            b.encoded_bytes - a.encoded_bytes,
        )

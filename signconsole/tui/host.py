"""Runs the engine for the console and hands its events to the UI thread.

The engine publishes from its own thread into a plain deque (append is atomic and never blocks
the trainer); the console drains it on a timer. No Textual call happens in the training thread:
`call_from_thread` would block the trainer until the UI ran it.
"""

from __future__ import annotations

import threading
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path

from signconsole.commands.run import Outcome
from signconsole.events import (
    AlarmRaised,
    Command,
    CommandApplied,
    EvalFinished,
    Event,
    EventBus,
    RunFinished,
    StageChanged,
    StateChanged,
)

# Events a person is waiting to see (they pressed a key, or something broke): the console is
# woken for these instead of waiting for its next drain tick.
URGENT_EVENTS = (StateChanged, CommandApplied, StageChanged, AlarmRaised, EvalFinished, RunFinished)


class EngineHost:
    def __init__(
        self,
        profile_path: Path,
        runs_dir: str | None = None,
        overrides: tuple[str, ...] = (),
        resume: str | None = None,
    ) -> None:
        self.profile_path, self.runs_dir = profile_path, runs_dir
        self.overrides, self.resume = overrides, resume
        self.bus = EventBus()
        self.events: deque[Event] = deque()
        self.bus.subscribe(self._collect)
        # What `signconsole run` prints at the end of a run, kept from the bus itself (not from
        # the screen, which may be gone before the engine's last events): cli.py prints it
        # when the console exits.
        self.outcome = Outcome()
        self.bus.subscribe(self.outcome)
        # Set by the console to a callable that only schedules a drain on its event loop
        # (loop.call_soon_threadsafe): it must never block the training thread.
        self.wake: Callable[[], None] | None = None
        self.error: str | None = None
        self.error_detail: str = ""
        self.done = threading.Event()
        self.engine = None  # set in the worker once built; tests reach the real engine through it

    def run(self) -> None:
        """The worker body: load, build (in this thread: model creation belongs to the training
        thread) and train. Errors are kept for the UI; the run store has already recorded them."""
        try:
            from signconsole.engine.trainer import Engine
            from signconsole.profile import load_profile

            profile = load_profile(self.profile_path, self.overrides)
            self.engine = Engine(
                profile, self.bus, runs_dir=self.runs_dir, resume=self.resume, freeze_gc=True
            )
            self.engine.run()
        except Exception as error:  # noqa: BLE001 - shown on screen, never silent
            from signconsole.errors import user_error_lines

            lines = user_error_lines(error)
            self.error = "; ".join(lines) if lines else f"{type(error).__name__}: {error}"
            self.error_detail = "" if lines else traceback.format_exc()
        finally:
            self.done.set()

    def _collect(self, event: Event) -> None:
        self.events.append(event)
        if self.wake is not None and isinstance(event, URGENT_EVENTS):
            self.wake()

    def send(self, command: Command) -> None:
        self.bus.send(command)

    def drain(self, limit: int = 5000) -> list[Event]:
        drained = []
        while self.events and len(drained) < limit:
            drained.append(self.events.popleft())
        return drained

"""Where a run screen's RunView gets its data: one interface, two implementations.

- `BusSource`: the engine in this process (the live console). Events arrive on the bus; a
  resumed run first gets its history from the store, so its charts start where it left off.
- `StoreSource`: a run's store (review, attach to a headless run). The first read replays the
  stored events and loads downsampled series; every later read takes only rows written since.
- `JobSource`: a multi-process job the console started (launch.py): a StoreSource once the job's
  run exists, and the job's own state and output before that.

Both fold into the same `RunView` through `apply` and `add_metrics`, so the run screen, its panes
and its keys are the same for a live run, an attached one and a finished one; only `can_control`
and what `send` does differ. No Textual here, no tensors.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Protocol

from signconsole import metrics as m
from signconsole.events import Command, EvalFinished, Event, RunStarted, Stop
from signconsole.launch import Job
from signconsole.store.compare import describe_evaluation
from signconsole.store.reader import RunReader
from signconsole.tui.host import EngineHost
from signconsole.tui.state import RunView, TimelineEntry

CHART_POINTS = 400  # per series loaded from the store: more than a chart has pixel columns
LIVE_STATES = ("running", "paused", "stopping", "starting")
EVAL_SPLITS = ("dev/", "test/")  # metric rows the evaluations already carry as events
STATUS_EVERY = 3.0  # seconds between liveness checks of a followed run (reads meta + pid)


class RunSource(Protocol):
    owns_run: bool  # quitting the screen stops the run (the engine lives in this process)

    def read(self, view: RunView) -> bool:
        """Fold whatever is new into the view; True when something changed."""

    def can_control(self, view: RunView) -> bool:
        """Whether commands reach a training engine now."""

    def send(self, command: Command) -> None: ...

    def run_ended(self) -> bool:
        """The run this screen owns has ended (its engine or job is gone)."""

    def load_range(self, view: RunView) -> None:
        """The view's zoom changed: reload the series it draws, if the source can do better
        than the points already in memory."""

    def with_samples(self, evaluation: EvalFinished) -> EvalFinished:
        """The evaluation with its sample decodes (a store loads them on demand)."""

    def close(self) -> None: ...


# ---------------------------------------------------------------------------- from a store


def replay(
    reader: RunReader, view: RunView, upto: dict[str, int], before: float | None = None
) -> None:
    """Every stored event, alarm and evaluation up to the `upto` rowids, in the order they
    happened, through `RunView.apply`: stages, markers and the timeline mean what they meant
    live. `before`: only what happened before that time (a resumed run's earlier life)."""
    items: list[tuple[float, int, Event]] = []
    for order, events in enumerate(
        (
            reader.events_between(0, upto["events"]),
            reader.alarms_between(0, upto["alarms"]),
            reader.evals_between(0, upto["evals"]),
        )
    ):
        items += [(event.time, order, event) for event in events]
    items.sort(key=lambda item: (item[0], item[1]))
    for when, _, event in items:
        if before is None or when < before:
            view.apply(event)
    for row in reader.stored_evaluations(0, upto["evaluations"]):
        text = describe_evaluation(row)
        view.add_entry(TimelineEntry(row["step"], row["time"], "eval", "info", text))


def load_series(reader: RunReader, view: RunView, end: int | None = None) -> None:
    """The charted metrics, downsampled in SQL over the view's zoom (or up to `end`)."""
    start, stop = view.zoom if view.zoom else (None, end)
    for name in reader.metric_names():
        if name.startswith(m.CHARTED) and not name.startswith(EVAL_SPLITS):
            view.load_series(name, reader.series(name, CHART_POINTS, start, stop))
    if m.train_part("ctc") in view.series and m.train_part("kd") not in view.series:
        del view.series[m.train_part("ctc")]  # the only part of the loss: the same line twice


def settle_history(view: RunView) -> None:
    """History is not news: no banner, no bell, no badge for alarms already stored, no toast
    for commands refused long ago."""
    view.acknowledge()
    view.untold_rejections.clear()


class StoreSource:
    owns_run = False

    def __init__(self, reader: RunReader) -> None:
        self.reader = reader
        self.marks: dict[str, int] | None = None
        self._last_status = 0.0

    def read(self, view: RunView) -> bool:
        marks = self.reader.max_rowids()
        if self.marks is None or any(marks[t] < self.marks[t] for t in marks):
            self._first_read(view, marks)  # first time, or the run was resumed and trimmed
            return True
        changed = marks != self.marks
        if changed:
            self._read_new(view, marks)
        if view.state in LIVE_STATES and time.monotonic() - self._last_status > STATUS_EVERY:
            self._last_status = time.monotonic()
            changed |= self.check_status(view)
        return changed

    def _first_read(self, view: RunView, marks: dict[str, int]) -> None:
        if self.marks is not None:
            view.reset()
        reader = self.reader
        replay(reader, view, marks)
        meta = reader.meta()
        view.name = view.name or meta.get("name", reader.run_dir.name)
        view.kind = view.kind or meta.get("kind", "")
        view.unit = meta.get("unit", view.unit)
        view.run_dir = str(reader.run_dir)
        view.set_total_epochs(reader.profile_text())
        load_series(reader, view)
        view.step = max(view.step, reader.last_step())
        epoch = reader.last_value(m.EPOCH)
        view.epoch = int(epoch) if epoch is not None else view.epoch
        lr = view.series.get(m.LR)
        view.lr = lr.last() if lr else view.lr
        view.teacher_ms = reader.last_value(m.TEACHER_MS) or 0.0
        view.frames_per_second = reader.last_value(m.FRAMES_PER_SECOND) or 0.0
        self.check_status(view)
        settle_history(view)
        if view.evals:
            view.evals[-1] = self.with_samples(view.evals[-1])
        view.decodes_version += 1
        self.marks = marks

    def _read_new(self, view: RunView, marks: dict[str, int]) -> None:
        reader, old = self.reader, self.marks
        assert old is not None
        items: list[tuple[float, int, Event]] = []
        for order, events in enumerate(
            (
                reader.events_between(old["events"], marks["events"]),
                reader.alarms_between(old["alarms"], marks["alarms"]),
                [self.with_samples(e) for e in reader.evals_between(old["evals"], marks["evals"])],
            )
        ):
            items += [(event.time, order, event) for event in events]
        by_step: dict[int, dict[str, float]] = defaultdict(dict)
        for step, name, value in reader.metric_rows(old["metrics"], marks["metrics"]):
            if not name.startswith(EVAL_SPLITS):
                by_step[step][name] = value
        now = time.time()
        for step in sorted(by_step):
            view.add_metrics(step, by_step[step], now)
        for _, _, event in sorted(items, key=lambda item: (item[0], item[1])):
            view.apply(event)
        for row in reader.stored_evaluations(old["evaluations"], marks["evaluations"]):
            text = describe_evaluation(row)
            view.add_entry(TimelineEntry(row["step"], row["time"], "eval", "info", text))
        self.marks = marks

    def check_status(self, view: RunView) -> bool:
        """A process that died without a word shows as killed, not running."""
        summary = self.reader.summary()
        if summary is None or summary.status == view.state:
            return False
        view.state = summary.status
        view.status_version += 1
        return True

    def can_control(self, view: RunView) -> bool:
        return view.state in LIVE_STATES

    def send(self, command: Command) -> None:
        self.reader.send(command, source="attach")

    def run_ended(self) -> bool:
        return True  # owns no run

    def load_range(self, view: RunView) -> None:
        load_series(self.reader, view)

    def with_samples(self, evaluation: EvalFinished) -> EvalFinished:
        if evaluation.samples or evaluation.split != "dev":
            return evaluation
        from dataclasses import replace

        return replace(evaluation, samples=self.reader.samples(evaluation.step))

    def close(self) -> None:
        self.reader.close()


# ------------------------------------------------------------------------------ from the bus


class BusSource:
    owns_run = True

    def __init__(self, host: EngineHost) -> None:
        self.host = host
        self._introduced = False

    def read(self, view: RunView) -> bool:
        introduced = not self._introduced
        if introduced:
            self._introduced = True
            self._introduce(view)
        events = self.host.drain()
        for event in events:
            if isinstance(event, RunStarted) and event.resumed_from:
                self._history(view, event)
            view.apply(event)
        return bool(events) or introduced

    def _introduce(self, view: RunView) -> None:
        """Before the engine has loaded anything: the profile's name and, for a resume, the
        step it goes on from (its store says), instead of "..." and step 0."""
        view.name = view.name or self.host.profile_path.stem
        if self.host.resume and (Path(self.host.resume) / "run.db").exists():
            try:
                with RunReader(self.host.resume) as reader:
                    view.name = reader.meta().get("name", view.name)
                    view.step = max(view.step, reader.last_step())
            except Exception:  # noqa: BLE001 - a guess for the first second; the engine decides
                pass
        view.status_version += 1

    def _history(self, view: RunView, started: RunStarted) -> None:
        """A resumed run: what it did before this process, from its store, so the charts show
        the whole run and not only the steps since the resume."""
        database = Path(started.run_dir) / "run.db"
        if not database.exists():
            return
        with RunReader(started.run_dir) as reader:
            marks = reader.max_rowids()
            replay(reader, view, marks, before=started.time)
            load_series(reader, view, end=started.step)
            epoch = reader.last_value(m.EPOCH)  # until this process logs its first step
            view.epoch = int(epoch) if epoch is not None else view.epoch
        settle_history(view)

    def can_control(self, view: RunView) -> bool:
        return not self.host.done.is_set() and view.state not in ("finished", "failed", "killed")

    def send(self, command: Command) -> None:
        self.host.send(command)

    def run_ended(self) -> bool:
        return self.host.done.is_set()

    def load_range(self, view: RunView) -> None:
        view.charts_version += 1  # the points in memory are all there is: redraw over the range

    def with_samples(self, evaluation: EvalFinished) -> EvalFinished:
        return evaluation

    def close(self) -> None:
        return None


# ---------------------------------------------------------------------- from a started job


class JobSource:
    """A job of several processes this console started: followed through its store like an
    attached run, but owned: quitting the screen stops the whole job."""

    owns_run = True

    def __init__(self, job: Job) -> None:
        self.job = job
        self.store: StoreSource | None = None
        self.pending: list[Command] = []  # sent before the run existed: delivered when it does
        self._ended = False

    def read(self, view: RunView) -> bool:
        if self.store is None and not self._attach():
            return self._starting(view)
        assert self.store is not None
        changed = self.store.read(view)
        if not self.job.running and not self._ended:
            self._ended = True
            changed |= self.store.check_status(view)  # a job that died shows as killed
            if self.job.process.returncode not in (0, 130) and view.state in LIVE_STATES:
                view.state = "failed"
                view.apply_failure(self._exit_text())
                changed = True
            self.job.finish()
        return changed

    def _attach(self) -> bool:
        run_dir = self.job.find_run()
        if run_dir is None or not (run_dir / "run.db").exists():
            return False
        self.store = StoreSource(RunReader(run_dir))
        for command in self.pending:
            self.send(command)
        self.pending.clear()
        return True

    def _starting(self, view: RunView) -> bool:
        """No run yet: torchrun and the data are starting, or the job failed before its run."""
        if self.job.running or self._ended:
            return False
        self._ended = True
        view.state = "failed"
        view.apply_failure(self._exit_text())
        return True

    def _exit_text(self) -> str:
        said = " | ".join(self.job.last_lines(2)) or "no output"
        return f"job exited with code {self.job.process.returncode}: {said} (log: {self.job.log})"

    def can_control(self, view: RunView) -> bool:
        return self.job.running and (self.store is None or view.state in LIVE_STATES)

    def send(self, command: Command) -> None:
        if self.store is not None:
            self.store.reader.send(command, source="console")  # this console's own job
        elif isinstance(command, Stop):
            self.job.stop(command.reason)  # through its store if it has one by now
        else:
            self.pending.append(command)

    def run_ended(self) -> bool:
        return not self.job.running

    def load_range(self, view: RunView) -> None:
        if self.store is not None:
            self.store.load_range(view)

    def with_samples(self, evaluation: EvalFinished) -> EvalFinished:
        return self.store.with_samples(evaluation) if self.store is not None else evaluation

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        if not self.job.running:
            self.job.finish()

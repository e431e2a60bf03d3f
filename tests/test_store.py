"""The run store: readable while a run writes, non-finite values kept, downsampled series, and
commands queued through run.db by another connection."""

from __future__ import annotations

import json
import math
import random
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from signconsole.engine.trainer import Engine
from signconsole.events import (
    CheckpointSaved,
    CommandApplied,
    Event,
    EventBus,
    Pause,
    Resume,
    RunFinished,
    RunStarted,
    StateChanged,
    StepLogged,
    Stop,
    to_payload,
)
from signconsole.store.db import RunDatabase, metric_row, metric_series, read_meta
from signconsole.store.run import RunRecorder

TIMEOUT = 180.0  # generous: the machine may be busy with another training job


def wait_for(condition, timeout: float = TIMEOUT, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout:.0f} s")


def readonly(path: Path) -> sqlite3.Connection:
    # A short timeout: a reader held up by a writer's transaction (seconds) fails instead of
    # hiding it, but the moment WAL mode itself takes to reset its log after a checkpoint
    # (seen once under a loaded CI machine as "database is locked") is not a failure.
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.25)


class EngineThread:
    """The real engine in a worker thread (as the console runs it), its events recorded."""

    def __init__(self, profile, data, runs_dir: Path) -> None:
        self.bus = EventBus()
        self.engine = Engine(profile, self.bus, runs_dir=runs_dir, data=data)
        self.events: list[Event] = []
        self.started = threading.Event()
        self.error: BaseException | None = None
        self.bus.subscribe(self._sink)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _sink(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, RunStarted):
            self.run_dir = Path(event.run_dir)
            self.started.set()

    def _run(self) -> None:
        try:
            self.engine.run()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test thread
            self.error = error

    def __enter__(self) -> EngineThread:
        self.thread.start()
        assert self.started.wait(TIMEOUT), "the run did not start"
        return self

    def __exit__(self, *exc) -> None:
        if self.thread.is_alive():  # a failed test must not leave a run behind
            self.bus.send(Stop(reason="test teardown"))
            self.bus.send(Resume())
        self.thread.join(TIMEOUT)

    def alive(self) -> bool:
        return self.thread.is_alive()

    def finish(self) -> None:
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the run did not finish"
        if self.error is not None:
            raise self.error
        assert not self.bus.sink_errors, self.bus.sink_errors


# ------------------------------------------------------------------------ concurrent reading


def test_run_db_is_readable_while_a_run_writes(small_profile, small_data, runs_dir) -> None:
    profile = small_profile("training.max_steps=30", "training.eval_every=3")
    counts: list[int] = []
    statuses: set[str] = set()
    with EngineThread(profile, small_data, runs_dir) as run:
        path = run.run_dir / "run.db"
        held = readonly(path)  # one long-lived reader ...
        try:
            while run.alive():
                counts.append(held.execute("SELECT count(*) FROM metrics").fetchone()[0])
                fresh = readonly(path)  # ... and one fresh connection per poll
                try:
                    fresh.row_factory = sqlite3.Row
                    statuses.add(read_meta(fresh).get("status", ""))
                    fresh.execute("SELECT count(*) FROM evals").fetchone()
                finally:
                    fresh.close()
                time.sleep(0.01)
        finally:
            held.close()
        run.finish()

    assert len(counts) > 20
    assert counts == sorted(counts)  # never goes back
    assert len(set(counts)) >= 3, f"metrics did not grow while polled: {sorted(set(counts))}"
    assert "running" in statuses
    final = readonly(path)
    try:
        total = final.execute("SELECT count(*) FROM metrics").fetchone()[0]
        steps = final.execute(
            "SELECT count(DISTINCT step) FROM metrics WHERE name = 'train/loss'"
        ).fetchone()[0]
        status = json.loads(
            final.execute("SELECT value FROM meta WHERE key = 'status'").fetchone()[0]
        )
    finally:
        final.close()
    assert total >= counts[-1] and steps == 30 and status == "finished"


# ----------------------------------------------------------------------- non-finite values


def test_metric_row_keeps_nonfinite_values() -> None:
    assert metric_row(3, "loss", 1.5) == (3, "loss", 1.5, None)
    assert metric_row(3, "loss", math.nan) == (3, "loss", None, "nan")
    assert metric_row(3, "loss", math.inf) == (3, "loss", math.inf, "inf")
    assert metric_row(3, "loss", -math.inf) == (3, "loss", -math.inf, "-inf")


def test_nonfinite_values_survive_the_database(tmp_path: Path) -> None:
    db = RunDatabase(tmp_path / "run.db")
    db.add_metrics(1, {"a": 0.25, "b": math.nan, "c": math.inf, "d": -math.inf})
    db.close()

    # And through the recorder, as a skipped step's StepLogged arrives.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    recorder = RunRecorder(run_dir)
    recorder(
        StepLogged(
            7,
            epoch=0,
            loss=math.nan,
            parts={"ctc": math.nan},
            lr=1e-3,
            grad_norm=math.inf,
            stage_grad_norms={},
            frames_per_second=100.0,
            logit_std=math.nan,
            skipped_steps=1,
        )
    )
    recorder.close()

    for path, expected in [
        (
            tmp_path / "run.db",
            {
                "a": (1, 0.25, None),
                "b": (1, None, "nan"),
                "c": (1, math.inf, "inf"),
                "d": (1, -math.inf, "-inf"),
            },
        ),
        (
            run_dir / "run.db",
            {
                "train/loss": (7, None, "nan"),
                "train/ctc": (7, None, "nan"),
                "grad_norm/total": (7, math.inf, "inf"),
                "logit_std": (7, None, "nan"),
                "lr": (7, 1e-3, None),
            },
        ),
    ]:
        connection = readonly(path)
        try:
            rows = {
                name: (step, value, nonfinite)
                for step, name, value, nonfinite in connection.execute(
                    "SELECT step, name, value, nonfinite FROM metrics"
                )
            }
        finally:
            connection.close()
        for name, row in expected.items():
            assert rows[name] == row, name


# ----------------------------------------------------------------------------- downsampling


def test_metric_series_downsamples_to_bucket_means(tmp_path: Path) -> None:
    rng = random.Random(0)
    values = {step: rng.uniform(-1.0, 1.0) for step in range(1, 100_001)}
    db = RunDatabase(tmp_path / "run.db")
    db.connection.executemany(
        "INSERT INTO metrics (step, name, value, nonfinite) VALUES (?, ?, ?, ?)",
        [metric_row(step, "train/loss", value) for step, value in values.items()]
        + [metric_row(step, "other", 1e6) for step in range(1, 100_001, 7)],
    )
    db.connection.commit()
    connection = readonly(db.path)
    connection.row_factory = sqlite3.Row

    def check(series, low: int, high: int, points: int) -> None:
        assert 0 < len(series) <= points + 1  # the last bucket may hold the remainder
        steps = [step for step, _ in series]
        assert steps == sorted(set(steps)) and steps[-1] == high
        # Each point is the mean of the steps since the previous point (contiguous buckets,
        # labelled by their last step): together they cover [low, high] exactly once.
        previous = low - 1
        for step, value in series:
            members = [values[s] for s in range(previous + 1, step + 1)]
            assert value == pytest.approx(sum(members) / len(members), abs=1e-9), step
            previous = step

    try:
        started = time.monotonic()
        series = metric_series(connection, "train/loss", points=500)
        elapsed = time.monotonic() - started
        check(series, 1, 100_000, 500)
        assert len(series) >= 450
        window = metric_series(connection, "train/loss", points=100, start=40_001, end=60_000)
        check(window, 40_001, 60_000, 100)
        assert metric_series(connection, "missing", points=500) == []
    finally:
        connection.close()
        db.close()
    assert elapsed < 10.0  # one grouped query, not a Python loop over 100k rows


# ------------------------------------------------------------------- commands through run.db


def test_commands_queued_in_run_db_are_applied(small_profile, small_data, runs_dir) -> None:
    profile = small_profile("training.max_steps=2000", "training.eval_every=0")

    def queue(path: Path, command) -> int:
        writer = sqlite3.connect(path, timeout=30)  # another connection, as `attach` would
        try:
            with writer:
                cursor = writer.execute(
                    "INSERT INTO commands (time, source, payload) VALUES (?, ?, ?)",
                    (time.time(), "test", json.dumps(to_payload(command))),
                )
            return cursor.lastrowid
        finally:
            writer.close()

    def applied_step(path: Path, command_id: int):
        connection = readonly(path)
        try:
            return connection.execute(
                "SELECT applied_step FROM commands WHERE id = ?", (command_id,)
            ).fetchone()[0]
        finally:
            connection.close()

    def state_event(run: EngineThread, state: str, reason: str) -> StateChanged | None:
        return next(
            (
                e
                for e in list(run.events)
                if isinstance(e, StateChanged) and (e.state, e.reason) == (state, reason)
            ),
            None,
        )

    with EngineThread(profile, small_data, runs_dir) as run:
        path = run.run_dir / "run.db"
        wait_for(lambda: any(isinstance(e, StepLogged) for e in list(run.events)))
        assert to_payload(Pause(source="test")) == {"type": "Pause", "source": "test"}
        pause_id = queue(path, Pause(source="test"))
        paused = wait_for(lambda: state_event(run, "paused", "paused by user"))
        wait_for(lambda: applied_step(path, pause_id) is not None)
        step = applied_step(path, pause_id)
        assert step == paused.step
        held = [run.engine.step]
        for _ in range(5):
            time.sleep(0.1)
            held.append(run.engine.step)
        assert set(held) == {paused.step}  # paused: no step ran

        resume_id = queue(path, Resume(source="test"))
        wait_for(lambda: state_event(run, "running", "resumed by user"))
        wait_for(lambda: run.engine.step > step + 1)  # training again
        stop_id = queue(path, Stop(reason="queued stop", source="test"))
        run.finish()

    assert all(applied_step(path, i) is not None for i in (pause_id, resume_id, stop_id))
    applied = [(e.command, e.detail) for e in run.events if isinstance(e, CommandApplied)]
    assert applied == [
        ("Pause", "from test"),
        ("Resume", "from test"),
        ("Stop reason=queued stop", "from test"),
    ]
    states = [(e.state, e.reason) for e in run.events if isinstance(e, StateChanged)]
    assert states[1:] == [
        ("paused", "paused by user"),
        ("running", "resumed by user"),
        ("stopping", "queued stop"),
        ("stopped", "queued stop"),  # a person's stop: resumable, not "finished"
    ]
    assert run.engine.step < 2000


# ------------------------------------------------------------------------- history on resume


def test_resume_keeps_one_point_per_step(small_profile, train) -> None:
    """What a kill -9 after step 8 leaves: metrics committed up to step 8, last.pt from the
    evaluation at step 5 (here: the run finishes, then last.pt is put back to its step-5 copy;
    `signconsole run` killed with SIGKILL and resumed shows the same)."""
    profile = small_profile("training.max_steps=8", "training.eval_every=5")
    saved: dict[str, bytes] = {}

    def keep_step_5(event, engine) -> None:
        if isinstance(event, CheckpointSaved) and (event.which, event.step) == ("last", 5):
            saved["last"] = Path(event.path).read_bytes()

    run_dir = train(profile, keep_step_5).result.run_dir
    (run_dir / "checkpoints" / "last.pt").write_bytes(saved["last"])
    resumed = train(profile, resume=run_dir)
    assert resumed.of(RunStarted)[0].step == 5 and resumed.result.steps == 8

    connection = readonly(run_dir / "run.db")
    try:
        steps = [
            step
            for (step,) in connection.execute(
                "SELECT step FROM metrics WHERE name = 'train/loss' ORDER BY rowid"
            )
        ]
    finally:
        connection.close()
    assert steps == list(range(1, 9)), f"train/loss rows by step: {steps}"


def test_a_resumed_run_keeps_its_first_start_and_sums_the_time_it_trained(tmp_path) -> None:
    """`runs` and `compare` show a resumed run's time training, session by session: a session
    stopped, one killed (counted up to its newest event), one finished; not the days between."""
    from signconsole.store.catalog import summarize

    run_dir = tmp_path / "20261201-090000-demo"
    run_dir.mkdir()

    def started(at: float, step: int) -> RunStarted:
        return RunStarted(
            step, str(run_dir), "demo", "student", "cpu", "letter", ("model",), {"model": 1},
            {"model": True}, 100, time=at,
        )  # fmt: skip

    def finished(at: float, step: int, status: str) -> RunFinished:
        return RunFinished(step, status, None, None, "", 1, 0.0, time=at)

    recorder = RunRecorder(run_dir)
    try:
        recorder(started(1_000.0, 0))
        recorder(finished(1_100.0, 40, "stopped"))  # 100 s
        recorder(started(90_000.0, 40))  # the next day; killed after 30 s
        recorder(StateChanged(41, "running", time=90_030.0))
        killed = summarize(run_dir)  # no process holds the run: killed, timed to its last event
        assert killed.ended == 90_030.0 and killed.duration == pytest.approx(130.0)
        recorder(started(200_000.0, 40))
        recorder(finished(200_045.0, 100, "finished"))  # 45 s
    finally:
        recorder.close()
    summary = summarize(run_dir)
    assert summary.status == "finished" and summary.started == 1_000.0
    assert summary.duration == pytest.approx(175.0)

"""`signconsole run` as a scheduler runs it: a subprocess whose stdout is a file, stopped by
SIGTERM or killed outright, then resumed."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from signconsole.engine.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

TIMEOUT = 240.0  # generous: the machine may be busy with another training job
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")
LONG = ("--set", "training.max_steps=400", "--set", "training.eval_every=5")  # stopped early


def environment() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CLICOLOR_FORCE"):
        env.pop(name, None)  # what a scheduler gives: no forced colour
    return env


def start(args: list[str], runs_dir: Path, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "signconsole", "run", *args, "--runs-dir", str(runs_dir)]
    with log.open("wb") as out:  # a file, not a TTY (and never a full pipe)
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment(),
        )


@contextmanager
def running(args: list[str], runs_dir: Path, log: Path) -> Iterator[subprocess.Popen]:
    """A started run that is killed on the way out if the test left it running."""
    process = start(args, runs_dir, log)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def finish(process: subprocess.Popen, log: Path) -> int:
    try:
        return process.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"signconsole run did not exit:\n{log.read_text()[-3000:]}") from None


def run_to_end(args: list[str], runs_dir: Path, log: Path) -> tuple[int, str]:
    with running(args, runs_dir, log) as process:
        code = finish(process, log)
    return code, log.read_text(encoding="utf-8", errors="replace")


def query(db: Path, sql: str, parameters: tuple = ()) -> list[tuple]:
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return connection.execute(sql, parameters).fetchall()
    finally:
        connection.close()


def meta(db: Path) -> dict:
    return {key: json.loads(value) for key, value in query(db, "SELECT key, value FROM meta")}


def only_run(runs_dir: Path) -> Path:
    runs = [p for p in runs_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def wait_until(process: subprocess.Popen, log: Path, ready) -> None:
    """Poll `ready()` until true; fail if the process exits first or time runs out."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except (OSError, sqlite3.Error, AssertionError):
            pass  # not there yet: run dir or run.db still being created
        if process.poll() is not None:
            raise AssertionError(f"exited early ({process.returncode}):\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"not ready in {TIMEOUT:.0f} s:\n{log.read_text()[-3000:]}")


def evaluated(runs_dir: Path) -> bool:
    return query(only_run(runs_dir) / "run.db", "SELECT count(*) FROM evals")[0][0] >= 1


# ---------------------------------------------------------------------------------- plain run


def test_short_run_prints_plain_timestamped_lines(small_args, tmp_path) -> None:
    runs_dir = tmp_path / "runs"
    code, out = run_to_end(small_args, runs_dir, tmp_path / "out.txt")  # 12 steps, eval at 6, 12

    assert code == 0, out[-3000:]
    assert "\x1b" not in out, "ANSI escape codes in a log file"
    assert "\r" not in out, "carriage-return redraws in a log file"
    lines = out.splitlines()
    stamped = [STAMP.sub("", line) for line in lines if STAMP.match(line)]
    run_dir = only_run(runs_dir)
    assert any(line.startswith(f"run {run_dir} ") for line in stamped)
    assert any(line.startswith("epoch 0 step 1/12 loss ") for line in stamped)
    assert [line.split(":")[0] for line in stamped if line.startswith("eval step")] == [
        "eval step 6",
        "eval step 12",
    ]
    # Every progress/event line carries its timestamp: nothing of the reporter is unstamped.
    for line in lines:
        if re.search(r"\b(eval step|epoch \d+ step) \d+", line):
            assert STAMP.match(line), line

    info = meta(run_dir / "run.db")
    assert info["status"] == "finished" and info["last_step"] == 12
    best = f"{info['best_error_rate']:.2%} at step {info['best_step']}"
    summary = [line for line in lines if "best dev LER" in line]
    assert len(summary) == 1 and best in summary[0], (best, summary)


# ----------------------------------------------------------------------------------- SIGTERM


def test_sigterm_stops_cleanly_and_resume_completes(small_args, tmp_path) -> None:
    runs_dir, log = tmp_path / "runs", tmp_path / "first.txt"
    with running([*small_args, *LONG], runs_dir, log) as process:
        wait_until(process, log, lambda: evaluated(runs_dir))  # training, past its first eval
        process.send_signal(signal.SIGTERM)
        code = finish(process, log)
    out = log.read_text()

    assert code == 130, out[-3000:]
    run_dir = only_run(runs_dir)
    db = run_dir / "run.db"
    info = meta(db)
    stopped_at = info["last_step"]
    assert info["status"] == "stopped" and 5 <= stopped_at < 400  # not its planned end
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert last["step"] == stopped_at
    reasons = [
        json.loads(payload)["reason"]
        for (payload,) in query(
            db, "SELECT payload FROM events WHERE type = 'StateChanged' ORDER BY rowid"
        )
    ]
    assert any(r.startswith("SIGTERM") for r in reasons), reasons
    assert "SIGTERM" in (run_dir / "log.txt").read_text()
    before = query(db, "SELECT step, name, value, nonfinite FROM metrics ORDER BY rowid")
    assert {step for step, name, *_ in before if name == "train/loss"} == set(
        range(1, stopped_at + 1)
    )

    target = stopped_at + 4
    code, out = run_to_end(
        [*small_args, *LONG, "--set", f"training.max_steps={target}", "--resume", str(run_dir)],
        runs_dir,
        tmp_path / "resumed.txt",
    )
    assert code == 0, out[-3000:]
    assert only_run(runs_dir) == run_dir  # resumed in place, no new run directory
    after = query(db, "SELECT step, name, value, nonfinite FROM metrics ORDER BY rowid")
    assert after[: len(before)] == before  # the history before the stop is untouched
    losses = [step for step, name, *_ in after if name == "train/loss"]
    assert losses == list(range(1, target + 1))  # and continues without a gap or a repeat
    info = meta(db)
    assert info["status"] == "finished" and info["last_step"] == target


# ----------------------------------------------------------------------------------- kill -9


def test_kill_9_leaves_a_readable_run_that_resumes(small_args, tmp_path) -> None:
    runs_dir, log = tmp_path / "runs", tmp_path / "first.txt"
    with running([*small_args, *LONG], runs_dir, log) as process:
        # Killed while training, as soon as the first evaluation has written last.pt.
        wait_until(process, log, lambda: (only_run(runs_dir) / "checkpoints" / "last.pt").exists())
        process.kill()
        assert finish(process, log) == -signal.SIGKILL

    run_dir = only_run(runs_dir)
    db = run_dir / "run.db"
    checkpoint_step = load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]
    assert checkpoint_step >= 5
    before = query(db, "SELECT step, name, value, nonfinite FROM metrics ORDER BY rowid")
    assert meta(db)["status"] == "running"  # nobody got to write the end
    assert query(db, "SELECT count(*) FROM evals WHERE step <= ?", (checkpoint_step,))[0][0] >= 1
    kept = [row for row in before if row[0] <= checkpoint_step]
    assert {row[0] for row in kept if row[1] == "train/loss"} == set(range(1, checkpoint_step + 1))

    target = checkpoint_step + 4
    code, out = run_to_end(
        [*small_args, *LONG, "--set", f"training.max_steps={target}", "--resume", str(run_dir)],
        runs_dir,
        tmp_path / "resumed.txt",
    )
    assert code == 0, out[-3000:]
    after = query(db, "SELECT step, name, value, nonfinite FROM metrics ORDER BY rowid")
    assert [row for row in after if row[0] <= checkpoint_step] == kept  # history kept
    assert {row[0] for row in after if row[1] == "train/loss"} == set(range(1, target + 1))
    info = meta(db)
    assert info["status"] == "finished" and info["last_step"] == target

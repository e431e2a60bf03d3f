"""`signconsole run` as a scheduler runs it: a subprocess whose stdout is a file, stopped by
SIGTERM or killed outright, then resumed."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
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
    assert info["status"] == "stopped" and 5 <= stopped_at < 400  # by SIGTERM: resumable
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
        [
            *small_args,
            *LONG,
            "--set",
            f"training.max_steps={target}",
            "--resume",
            str(run_dir),
            "--allow-changes",  # a shorter max_steps than the first run's
        ],
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


@pytest.mark.parametrize("split", ["dev", "test"])
def test_a_damaged_dev_or_test_file_stops_the_run_before_it_trains(
    small_args, small_data, tmp_path, split
) -> None:
    """Every split is read at start: a damaged file is one line naming it, exit 2, and no run
    directory, instead of a failure at the first evaluation or after the last step."""
    corpus = tmp_path / "corpus"
    shutil.copytree(small_data.root, corpus)
    damaged = sorted((corpus / "features" / split).iterdir())[3]
    damaged.write_bytes(damaged.read_bytes()[:100])
    runs = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-m", "signconsole", "run", *small_args, "--runs-dir", str(runs)]
        + ["--set", f"data.corpus={corpus}", "--set", "data.synthesis.enabled=false"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if str(damaged) in line]
    assert len(errors) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert not runs.exists() or not any(runs.iterdir())


def test_kill_9_loop_during_checkpoint_writes(small_args, tmp_path) -> None:
    """Killed again and again while it writes checkpoints (last.pt every step, best.pt at each
    new best): every kill leaves checkpoints that load, a best.pt at or past the best that
    last.pt records (it is written first), a run.db that passes integrity_check and still says
    running, and a resume keeps the history up to the checkpoint row for row; the run then
    resumes to its end with one loss per step and test scored on the best it names."""
    runs_dir = tmp_path / "runs"
    settings = [*small_args]
    for key in ("training.max_steps=40", "training.eval_every=2", "training.checkpoint_every=1"):
        settings += ["--set", key]
    pauses = random.Random(16)
    run_dir: Path | None = None
    reached, kept = 0, []
    for kill in range(3):
        args = settings if run_dir is None else [*settings, "--resume", str(run_dir)]
        log = tmp_path / f"kill-{kill}.txt"
        with running(args, runs_dir, log) as process:
            # Training (checkpoints every step) has gone a few steps past the last kill ...
            wait_until(process, log, lambda target=reached + 3: last_step(runs_dir) >= target)
            time.sleep(pauses.uniform(0.0, 0.2))  # ... then a kill at a random moment
            process.kill()
            assert finish(process, log) == -signal.SIGKILL
        run_dir = only_run(runs_dir)
        last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
        best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
        assert best["step"] >= (last["best_step"] or 0), (kill, best["step"], last["best_step"])
        db = run_dir / "run.db"
        assert query(db, "PRAGMA integrity_check") == [("ok",)]
        assert meta(db)["status"] == "running"  # nobody got to write the end
        rows = query(db, "SELECT step, name, value, nonfinite FROM metrics ORDER BY rowid")
        assert rows[: len(kept)] == kept  # what the last resume started from, untouched
        reached = last["step"]
        kept = [row for row in rows if row[0] <= reached]

    assert run_dir is not None and reached < 40, "the kills came too late to test anything"
    code, out = run_to_end([*settings, "--resume", str(run_dir)], runs_dir, tmp_path / "end.txt")
    assert code == 0, out[-3000:]
    db = run_dir / "run.db"
    losses = query(db, "SELECT step FROM metrics WHERE name = 'train/loss'")
    assert sorted(step for (step,) in losses) == list(range(1, 41))  # one per step, none twice
    info = meta(db)
    assert info["status"] == "finished"
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert best["step"] == load_checkpoint(run_dir / "checkpoints" / "last.pt")["best_step"]
    assert f"at step {best['step']}" in out  # the summary names the checkpoint test scored


def last_step(runs_dir: Path) -> int:
    """The newest step with a checkpoint on disk (0 before the first)."""
    try:
        return load_checkpoint(only_run(runs_dir) / "checkpoints" / "last.pt")["step"]
    except Exception:  # not written yet, or caught mid-replace by this reader
        return 0

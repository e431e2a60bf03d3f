"""`signconsole runs`: statuses as a user needs them (a dead process is killed, not running)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from signconsole.store.catalog import list_runs
from signconsole.store.db import RunDatabase


def fake_run(root: Path, name: str, status: str, pid: int, started: float, best: float | None):
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    db = RunDatabase(run / "run.db")
    db.set_meta(
        name=name,
        kind="student" if "s" in name else "teacher",
        status=status,
        pid=pid,
        host=socket.gethostname(),
        started=started,
        unit="letter",
    )
    db.add_metrics(40, {"train/loss": 1.0})
    if best is not None:
        db.execute("INSERT INTO evals (step, split, error_rate) VALUES (?, 'dev', ?)", (30, best))
        db.execute("INSERT INTO evals (step, split, error_rate) VALUES (?, 'dev', ?)", (40, 0.9))
    db.close()


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_list_runs_statuses_and_best(tmp_path: Path) -> None:
    fake_run(tmp_path, "a-student", "finished", os.getpid(), 100.0, 0.25)
    fake_run(tmp_path, "b-student", "running", os.getpid(), 200.0, None)  # this process: alive
    fake_run(tmp_path, "c-teacher", "running", dead_pid(), 300.0, 0.5)  # died without an end
    fake_run(tmp_path, "d-teacher", "failed", os.getpid(), 400.0, None)
    runs = list_runs(tmp_path)
    assert [r.name for r in runs] == ["d-teacher", "c-teacher", "b-student", "a-student"]
    assert {r.name: r.status for r in runs} == {
        "a-student": "finished",
        "b-student": "running",
        "c-teacher": "killed",
        "d-teacher": "failed",
    }
    finished = runs[-1]
    assert (finished.best_error_rate, finished.best_step, finished.steps) == (0.25, 30, 40)


def test_runs_command_filters(tmp_path: Path) -> None:
    fake_run(tmp_path, "a-student", "finished", os.getpid(), 100.0, 0.25)
    fake_run(tmp_path, "c-teacher", "running", dead_pid(), 300.0, 0.5)

    def runs(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "signconsole", "runs", "--dir", str(tmp_path), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    everything = runs()
    assert "a-student" in everything and "c-teacher" in everything and "25.0%" in everything
    killed = runs("--status", "killed")
    assert "c-teacher" in killed and "a-student" not in killed
    assert "a-student" in runs("--kind", "student") and "c-teacher" not in runs("--kind", "student")


def test_lock_decides_live_or_killed_and_only_unfinished_runs_resume(tmp_path: Path) -> None:
    from signconsole.store.lock import RunLock

    # Recorded with a live pid (this process), so only the lock can tell that it died.
    fake_run(tmp_path, "a-student", "running", os.getpid(), 100.0, None)
    fake_run(tmp_path, "b-student", "paused", os.getpid(), 200.0, None)
    fake_run(tmp_path, "c-student", "stopped", os.getpid(), 300.0, None)
    fake_run(tmp_path, "d-student", "finished", os.getpid(), 400.0, None)
    for name in ("a-student", "b-student", "c-student", "d-student"):
        (tmp_path / name / "checkpoints" / "last.pt").write_bytes(b"")
    held = RunLock.acquire(tmp_path / "a-student")
    stale = RunLock.acquire(tmp_path / "b-student")
    stale_holder = (tmp_path / "b-student" / "run.lock").read_text()
    stale.release()
    (tmp_path / "b-student" / "run.lock").write_text(
        stale_holder.replace(f'"pid": {os.getpid()}', f'"pid": {dead_pid()}')
    )
    try:
        runs = {r.name: r for r in list_runs(tmp_path)}
    finally:
        held.release()
    assert {name: r.status for name, r in runs.items()} == {
        "a-student": "running",
        "b-student": "killed",  # its lock names a dead process
        "c-student": "stopped",
        "d-student": "finished",
    }
    assert {name for name, r in runs.items() if r.resumable} == {"b-student", "c-student"}
    assert runs["a-student"].why_not_resumable.startswith("running in another process")
    assert runs["d-student"].why_not_resumable.startswith("finished: nothing left to train")

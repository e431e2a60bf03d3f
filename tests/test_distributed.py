"""One run on two processes (torchrun, gloo on CPU): the same losses as one process with the same
global batch, controls applied on every rank at the same step, identical weights on every rank
(checked by the engine, read back from run.db), and a killed rank leaves a resumable run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SMALL

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "profiles" / "demo-student.toml"
# 24 sequences in 4 batches of 6: one process accumulating 2 batches per step sees exactly the
# pairs that two processes see in one step each. No dropout and no augmentation: with those the
# ranks draw different random numbers than one process would.
COMMON = (
    *SMALL,
    "data.batch_size=6",
    "data.augment=false",
    "model.dropout=0.0",
    "training.sample_decodes=1",
    "training.beam_width=1",
)

pytestmark = pytest.mark.slow


def signconsole(*args: str, sets: tuple[str, ...], background: bool = False, **kwargs):
    command = [sys.executable, "-m", "signconsole", *args]
    for key in (*COMMON, *sets):
        command += ["--set", key]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if background:
        return subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, **kwargs)


def losses(run_dir: Path) -> dict[int, float]:
    connection = sqlite3.connect(run_dir / "run.db")
    rows = connection.execute(
        "SELECT step, value FROM metrics WHERE name = 'train/loss'"
    ).fetchall()
    connection.close()
    return dict(rows)


def events(run_dir: Path, kind: str) -> list[dict]:
    connection = sqlite3.connect(run_dir / "run.db")
    rows = connection.execute("SELECT payload FROM events WHERE type = ?", (kind,)).fetchall()
    connection.close()
    return [json.loads(row[0]) for row in rows]


def only_run(runs: Path) -> Path:
    [run_dir] = list(runs.iterdir())
    return run_dir


def test_two_processes_match_one_with_the_same_global_batch(tmp_path) -> None:
    """8 batches of 3: one process accumulating 4 per step sees exactly the batches two
    processes accumulating 2 each see (every other batch each); the ranks all-reduce once per
    step (DDP's no_sync on the first micro-batch), which must not change the result."""
    steps = ("training.max_steps=6", "training.eval_every=3", "data.batch_size=3")
    one = signconsole(
        "run",
        str(PROFILE),
        "--runs-dir",
        str(tmp_path / "one"),
        sets=(*steps, "training.grad_accumulation=4"),
    )
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    two = signconsole(
        "run",
        str(PROFILE),
        "--runs-dir",
        str(tmp_path / "two"),
        "--nproc",
        "2",
        sets=(*steps, "training.grad_accumulation=2"),
    )
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    single, double = losses(only_run(tmp_path / "one")), losses(only_run(tmp_path / "two"))
    assert sorted(single) == sorted(double) == list(range(1, 7))
    for step in single:  # summation order differs (all-reduce vs accumulation): float noise
        assert double[step] == pytest.approx(single[step], rel=1e-4), step
    [agree] = events(only_run(tmp_path / "two"), "CommandApplied")[-1:]
    assert agree["command"] == "RanksAgree" and "2 ranks" in agree["detail"]


def queue(db: Path, payload: dict) -> None:
    connection = sqlite3.connect(db, timeout=30)
    with connection:
        connection.execute(
            "INSERT INTO commands (time, source, payload) VALUES (?, ?, ?)",
            (time.time(), "test", json.dumps(payload)),
        )
    connection.close()


def wait_for(condition, what: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except sqlite3.Error:  # run.db exists but rank 0 is still creating its tables
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def meta(db: Path, key: str):
    try:
        connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        row = connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        connection.close()
        return json.loads(row[0]) if row else None
    except sqlite3.Error:
        return None


def test_controls_reach_every_rank_at_the_same_step(tmp_path) -> None:
    """Pause (held longer than a few heartbeats), LR change and an unfreeze, sent through the
    store mid-run: applied once, and the weights of both ranks identical afterwards. Then
    Ctrl+C: every rank stops after a checkpoint, exit 130, no traceback, the resume command."""
    runs = tmp_path / "runs"
    process = signconsole(
        "run",
        str(PROFILE),
        "--runs-dir",
        str(runs),
        "--nproc",
        "2",
        sets=("training.max_steps=100000", "training.eval_every=20", 'freeze.frozen=["lstm"]'),
        background=True,
    )
    try:
        run_dir = wait_for(lambda: next(iter(runs.glob("*")), None), "the run directory")
        db = run_dir / "run.db"
        wait_for(lambda: losses(run_dir) if db.exists() else None, "the first steps")
        queue(db, {"type": "Pause", "source": "test"})
        wait_for(lambda: meta(db, "status") == "paused", "the pause")
        time.sleep(3)  # paused for many heartbeats: no collective may time out
        queue(db, {"type": "SetLearningRate", "value": 5e-4, "source": "test"})
        queue(db, {"type": "Unfreeze", "stage": "lstm", "source": "test"})
        queue(db, {"type": "Resume", "source": "test"})
        wait_for(lambda: any(e["trainable"] for e in events(run_dir, "StageChanged")), "unfreeze")
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, output[-3000:]  # stopped by a person, resumable
    assert "Traceback" not in output, output[-3000:]
    assert f"--resume {run_dir} --nproc 2" in output
    applied = {e["command"]: e for e in events(run_dir, "CommandApplied")}
    assert "next lr 0.0005" in applied["SetLearningRate value=0.0005"]["detail"]
    [unfrozen] = [e for e in events(run_dir, "StageChanged") if e["trainable"]]
    assert unfrozen["stage"] == "lstm"
    assert applied["RanksAgree"]["detail"].startswith("weights identical on 2 ranks")
    assert not [e for e in events(run_dir, "AlarmRaised") if e["kind"] == "ranks_diverged"]


def test_a_killed_rank_ends_the_job_and_leaves_a_resumable_run(tmp_path) -> None:
    runs = tmp_path / "runs"
    sets = ("training.max_steps=400", "training.eval_every=4", "training.checkpoint_every=2")
    process = signconsole(
        "run", str(PROFILE), "--runs-dir", str(runs), "--nproc", "2", sets=sets, background=True
    )
    try:
        run_dir = wait_for(lambda: next(iter(runs.glob("*")), None), "the run directory")
        wait_for(lambda: (run_dir / "checkpoints" / "last.pt").exists(), "a checkpoint")
        victim = wait_for(lambda: rank_pid(process.pid, 1), "rank 1's process")
        os.kill(victim, signal.SIGKILL)
        output, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0, output[-3000:]  # torchrun reports the dead rank
    import torch

    saved = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"]
    target = saved + 4
    resumed = signconsole(
        "run",
        str(run_dir / "profile.toml"),
        "--resume",
        str(run_dir),
        "--nproc",
        "2",
        "--allow-changes",
        sets=(*sets[1:], f"training.max_steps={target}"),
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert max(losses(run_dir)) == target


def rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the worker with RANK=rank below `launcher` (signconsole's --nproc launcher,
    whose torchrun started the workers)."""
    parents: dict[int, int] = {}
    ranks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parents[int(entry.name)] = int(
                (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            )
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if f"RANK={rank}".encode() in environ:
            ranks[int(entry.name)] = rank
    for pid in ranks:
        ancestor = parents.get(pid)
        while ancestor is not None and ancestor > 1:
            if ancestor == launcher:
                return pid
            ancestor = parents.get(ancestor)
    return None


async def test_the_console_starts_a_two_process_job_and_quitting_stops_it(tmp_path) -> None:
    """`training.nproc = 2` in the console: the job runs as child processes, the screen follows
    it through its store, space pauses every rank, and quitting stops the whole job cleanly
    (a checkpoint, status stopped, no process left)."""
    from signconsole.tui.app import SignConsole

    runs = tmp_path / "runs"
    long_run = ("training.max_steps=100000", "training.max_epochs=100000", "training.eval_every=0")
    app = SignConsole(
        profile=PROFILE, runs_dir=str(runs), overrides=(*COMMON, *long_run, "training.nproc=2")
    )
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen

        async def until(condition, what: str) -> None:
            deadline = time.monotonic() + 300
            while not condition():
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                assert app.job.job.running, app.job.job.last_lines(20)
                await pilot.pause(0.1)

        await until(lambda: app.job.store is not None and screen.view.step >= 2, "training")
        await pilot.press("space")
        await until(lambda: screen.view.state == "paused", "the pause")
        run_dir = app.job.job.run_dir
        paused_at = max(losses(run_dir))
        time.sleep(1.5)
        assert max(losses(run_dir)) == paused_at  # both ranks hold: rank 0 decides for both
        await pilot.press("q")
        await pilot.press("y")
        deadline = time.monotonic() + 120
        while not app.job.run_ended():
            assert time.monotonic() < deadline, "the job did not stop"
            await pilot.pause(0.2)
    job = app.job.job
    assert job.process.returncode == 130  # stopped by a person: resumable
    assert meta(run_dir / "run.db", "status") == "stopped"
    assert (run_dir / "checkpoints" / "last.pt").exists()
    assert not job.log.exists()  # the run keeps its own log; the job's is for failures
    applied = {e["command"]: e for e in events(run_dir, "CommandApplied")}
    assert applied["RanksAgree"]["detail"].startswith("weights identical on 2 ranks")

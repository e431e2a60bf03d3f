"""`signconsole run`: however a run ends, it says how, where the run is and the exact command that
continues it, with an exit code that follows the status; a resume that cannot be right is refused
before any data is prepared."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import sys
from pathlib import Path

import pytest
from test_headless import evaluated, finish, only_run, run_to_end, running, wait_until

from signconsole.cli import ExitCode, main
from signconsole.commands.run import Outcome, end_lines, exit_code
from signconsole.store.db import RunDatabase
from signconsole.store.lock import RunLock

ROOT = Path(__file__).resolve().parent.parent
PROFILE = str(ROOT / "profiles" / "demo-student.toml")


def test_exit_code_follows_the_status() -> None:
    assert exit_code("finished", "", signalled=False) == ExitCode.OK
    assert exit_code("stopped", "SIGTERM: stopping after a checkpoint", True) == 130
    assert exit_code("stopped", "stopped by user", signalled=False) == 130
    assert exit_code("stopped", "time budget", signalled=False) == ExitCode.OK
    assert exit_code("failed", "non-finite loss", signalled=False) == ExitCode.FAILED


def test_end_lines_name_the_run_and_how_to_continue(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "20260101-000000-my run"
    (run / "checkpoints").mkdir(parents=True)
    outcome = Outcome(run_dir=str(run), reason="SIGINT: stopping after a checkpoint", step=42)
    assert end_lines(outcome, "stopped")[:2] == [
        "stopped (SIGINT: stopping after a checkpoint) at step 42",
        f"run directory: {run}",
    ]
    assert "nothing to resume" in end_lines(outcome, "failed")[2]  # no checkpoint yet
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    resume = end_lines(outcome, "failed")[2]
    assert resume.startswith("resume: ")
    assert shlex.split(resume.removeprefix("resume: ")) == [
        "signconsole",
        "run",
        f"{run}/profile.toml",
        "--resume",
        str(run),
    ]  # quoted: the space in the name survives a paste into a shell
    assert end_lines(outcome, "finished") == [
        "finished at step 42",
        f"run directory: {run}",
        f"review: signconsole show '{run}'",
    ]


def recorded_run(root: Path, status: str) -> Path:
    run = root / f"20260101-000000-{status}"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    db = RunDatabase(run / "run.db")
    db.set_meta(
        name=run.name,
        kind="student",
        status=status,
        pid=os.getpid(),
        host=socket.gethostname(),
        started=1.0,
    )
    db.close()
    return run


def refused(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(arguments) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and out == "", (out, err)
    return lines[0]


def test_resume_of_a_live_run_is_refused_naming_the_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = recorded_run(tmp_path, "running")
    with RunLock(run):
        line = refused(["run", PROFILE, "--resume", str(run)], capsys)
    assert f"pid {os.getpid()}" in line and f"`signconsole show {run}`" in line


def test_resume_of_a_finished_or_unreadable_run_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    finished = recorded_run(tmp_path, "finished")
    line = refused(["run", PROFILE, "--resume", str(finished)], capsys)
    assert "finished; nothing is left to resume" in line and "model.pretrained.path" in line
    damaged = recorded_run(tmp_path, "stopped")
    (damaged / "run.db").write_bytes(b"not a database" * 100)
    assert "cannot read this run" in refused(["run", PROFILE, "--resume", str(damaged)], capsys)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_prints_the_resume_command_and_that_command_finishes_the_run(
    small_args: list[str], tmp_path: Path
) -> None:
    runs_dir, log = tmp_path / "runs", tmp_path / "first.txt"
    long = ["--set", "training.max_steps=40", "--set", "training.eval_every=5"]
    with running([*small_args, *long], runs_dir, log) as process:
        wait_until(process, log, lambda: evaluated(runs_dir))
        process.send_signal(signal.SIGTERM)
        code = finish(process, log)
    out = log.read_text()
    run = only_run(runs_dir)
    assert code == 130, out[-3000:]
    assert "stopped (SIGTERM: stopping after a checkpoint) at step " in out
    assert f"run directory: {run}\n" in out
    [resume] = [line for line in out.splitlines() if line.startswith("resume: ")]
    command = shlex.split(resume.removeprefix("resume: "))
    assert command[:2] == ["signconsole", "run"] and command[-2:] == ["--resume", str(run)]

    # The printed command, as a user pastes it (`signconsole` is `python -m signconsole` here).
    code, out = run_to_end(command[2:], runs_dir, tmp_path / "resumed.txt")
    assert code == 0, out[-3000:]
    assert "finished at step 40" in out and f"review: signconsole show {run}" in out
    assert only_run(runs_dir) == run


def test_a_runs_folder_that_cannot_be_one_is_one_line_before_any_data(tmp_path, capsys) -> None:
    afile = tmp_path / "afile"
    afile.write_text("notes\n")
    for runs_dir, said in (
        (afile, "is a file, not a runs folder"),
        (afile / "runs", "cannot make"),
    ):
        assert main(["run", PROFILE, "--runs-dir", str(runs_dir)]) == 2
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1, err
    assert afile.read_text() == "notes\n"

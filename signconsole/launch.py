"""A training job in child processes: torchrun and its ranks, started as one process group.

Two users: the console (`training.nproc` > 1) and `signconsole run --nproc N`. The console cannot
be one of the ranks: torchrun's ranks are peers that meet at every step, and a rank that also
draws a terminal would hold the others back. So the job runs in its own process group and is
followed and controlled through its run store, as `show` does for a headless run: the job's
rank 0 records the launch id it was given in run.db, which is how its run directory is found.
Stopping goes through the store too (a Stop command: every rank ends at the same step after a
checkpoint); signals would reach torchrun's agent, which kills the ranks on its own.

No Textual and no torch here: the console imports this.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

LAUNCH_VARIABLE = "SIGNCONSOLE_LAUNCH_ID"
STOP_WAIT = 120.0  # seconds for a stopped job to checkpoint and end before it is terminated


@dataclass
class Job:
    process: subprocess.Popen
    launch_id: str
    runs_dir: Path
    log: Path | None  # the job's output (torchrun, rank 0), when not on this terminal
    run_dir: Path | None = None  # known at once for a resume, else found once the run starts
    started: float = field(default_factory=time.time)

    @classmethod
    def start(
        cls,
        profile: Path,
        nproc: int,
        runs_dir: str | Path | None = None,
        overrides: tuple[str, ...] = (),
        resume: str | Path | None = None,
    ) -> Job:
        """The console's job: `signconsole run PROFILE --nproc N`, its output in a log file."""
        runs = Path(runs_dir or "runs")
        runs.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "signconsole", "run", str(profile)]
        command += ["--nproc", str(nproc), "--runs-dir", str(runs)]
        for override in overrides:
            command += ["--set", override]
        if resume:
            command += ["--resume", str(resume)]
        launch_id = new_launch_id()
        log = runs / f".job-{launch_id}.log"
        with log.open("wb") as output:
            return cls.launch(command, runs, resume, launch_id, output=output, log=log)

    @classmethod
    def launch(
        cls,
        command: list[str],
        runs_dir: Path,
        resume: str | Path | None,
        launch_id: str,
        output: IO[bytes] | None = None,
        log: Path | None = None,
        environment: dict[str, str] | None = None,
    ) -> Job:
        """Start `command` in its own process group (`output`: where it writes; None: here)."""
        environment = {**os.environ, **(environment or {}), LAUNCH_VARIABLE: launch_id}
        if output is not None:
            for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
                environment.pop(name, None)  # its output goes to a file: plain lines
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            env=environment,
            start_new_session=True,  # a process group of its own: the terminal's ^C stays here
        )
        return cls(process, launch_id, runs_dir, log, Path(resume) if resume else None)

    def stop(self, reason: str) -> None:
        """Ask the job to stop: through its store once its run exists (every rank stops at the
        same step, after a checkpoint), else by SIGTERM (nothing is trained yet)."""
        from signconsole.events import Stop
        from signconsole.store.reader import RunReader

        run_dir = self.find_run()
        if run_dir is None or not (run_dir / "run.db").exists():
            self.terminate()
            return
        with RunReader(run_dir) as reader:
            reader.send(Stop(reason=reason), source="signal")

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def find_run(self) -> Path | None:
        """The run directory this job trains into, once its rank 0 has recorded the start."""
        if self.run_dir is not None:
            return self.run_dir
        try:
            candidates = [p for p in self.runs_dir.iterdir() if p.is_dir()]
        except OSError:
            return None
        for folder in candidates:
            database = folder / "run.db"
            try:
                if database.stat().st_mtime < self.started - 1:
                    continue  # an older run: not opened at all
            except OSError:
                continue
            if _launch_of(database) == self.launch_id:
                self.run_dir = folder
                break
        return self.run_dir

    def last_lines(self, count: int = 3) -> list[str]:
        if self.log is None:
            return []
        try:
            with self.log.open(encoding="utf-8", errors="replace") as text:
                lines = deque((line.rstrip() for line in text if line.strip()), maxlen=count)
        except OSError:
            return []
        return list(lines)

    def terminate(self) -> None:
        """SIGTERM to the whole group: torchrun passes it to every rank, which checkpoint."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.killpg(self.process.pid, signal.SIGTERM)

    def wait(self, timeout: float = STOP_WAIT) -> int:
        """Wait for the job to end (it was asked to stop); terminate it, then kill it, if it
        takes longer than `timeout`."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.terminate()
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    def finish(self) -> None:
        """After the job ended: its log is kept only when it has something to explain."""
        ended_well = self.process.returncode in (0, 130)  # finished, or stopped by a person
        if not self.running and ended_well and self.run_dir is not None and self.log:
            self.log.unlink(missing_ok=True)


def new_launch_id() -> str:
    """This process's launch id when a console started it (its job is this launcher), else a
    new one."""
    return os.environ.get(LAUNCH_VARIABLE) or f"{os.getpid()}-{time.time_ns()}"


def _launch_of(database: Path) -> str:
    try:
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1)
        try:
            row = connection.execute("SELECT value FROM meta WHERE key = 'launch'").fetchone()
        finally:
            connection.close()
    except sqlite3.Error:
        return ""  # still being created, or not a run store
    try:
        return str(json.loads(row[0])) if row else ""
    except (TypeError, ValueError):
        return ""

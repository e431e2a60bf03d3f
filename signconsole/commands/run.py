"""`signconsole run PROFILE`: headless training with the same engine the console drives.

However the run ends (its planned end, Ctrl+C, SIGTERM, a stop from `show`, the time budget, an
error), the last lines say how it ended, where the run directory is and the exact command that
continues it. The exit code follows the status (see `ExitCode`): finished 0; stopped by a person
130; stopped by the time budget 0 (the budget is a limit the profile asked for); failed 1.

Under torchrun every rank whose engine returned exits 0, whatever the status: torchrun takes any
other code for a failed rank and kills the others, rank 0 included, in the middle of its
checkpoint and test. The `--nproc` launcher gets rank 0's real code through a file and exits
with it.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from signconsole.cli import ExitCode
from signconsole.events import EvalFinished, Event, RunFinished, RunStarted, StateChanged


@dataclass
class Outcome:
    """An event sink remembering what the end-of-run lines need (`signconsole run`, and the
    console for a run it trained: see `print_run_end`)."""

    run_dir: str = ""
    status: str = ""
    reason: str = ""
    step: int = 0
    unit: str = ""
    finished: RunFinished | None = None
    test_result: EvalFinished | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.run_dir, self.unit = event.run_dir, event.unit
        elif isinstance(event, StateChanged) and event.state in ("stopping", "stopped", "failed"):
            self.reason = event.reason or self.reason
        elif isinstance(event, EvalFinished) and event.split != "dev":
            self.test_result = event
        elif isinstance(event, RunFinished):
            self.status, self.step, self.finished = event.status, event.step, event


EXIT_FILE_VARIABLE = "SIGNCONSOLE_EXIT_FILE"  # where rank 0 leaves its exit code for --nproc


def resume_command(run_dir: str, nproc: int = 1) -> str:
    """The command that continues `run_dir`: its own resolved profile, so later edits to the
    original profile file (or forgotten --set) cannot change what the resumed run trains."""
    command = ["signconsole", "run", str(Path(run_dir) / "profile.toml"), "--resume", run_dir]
    return shlex.join(command + (["--nproc", str(nproc)] if nproc > 1 else []))


def end_lines(outcome: Outcome, status: str, nproc: int = 1) -> list[str]:
    run_dir = outcome.run_dir
    how = status + (f" ({outcome.reason})" if outcome.reason and status != "finished" else "")
    lines = [f"{how} at step {outcome.step}", f"run directory: {run_dir}"]
    if status == "finished":
        lines.append(f"review: {shlex.join(['signconsole', 'show', run_dir])}")
    elif (Path(run_dir) / "checkpoints" / "last.pt").exists():
        lines.append(f"resume: {resume_command(run_dir, nproc)}")
    else:
        lines.append("no checkpoint was saved yet, so there is nothing to resume: run it again")
    return lines


def print_run_end(console, outcome: Outcome, status: str, nproc: int = 1) -> None:
    """What the console prints when it exits after training a run: the run summary and the
    end lines, the same functions `signconsole run` prints them with."""
    from signconsole.commands.reporter import print_summary, summary_rows

    if outcome.finished is not None:
        rows = summary_rows(outcome.finished, outcome.run_dir, outcome.unit, outcome.test_result)
        print_summary(console, rows, interactive=console.is_terminal)
    for line in end_lines(outcome, status, nproc):
        console.print(line, markup=False, soft_wrap=True)


def exit_code(status: str, reason: str, signalled: bool) -> ExitCode:
    if status == "finished":
        return ExitCode.OK
    if status == "stopped":
        budget = "budget" in reason and not signalled  # the engine's reason: "time budget"
        return ExitCode.OK if budget else ExitCode.INTERRUPTED
    return ExitCode.FAILED


def launch_torchrun(nproc: int, runs_dir: Path, resume: str | None) -> int:
    """`signconsole run ... --nproc N` runs `torchrun --standalone --nproc-per-node N -m
    signconsole run ...`: PyTorch's own launcher (rendezvous, a dead rank ends the job), and
    exits with rank 0's code (see the module docstring).

    The job runs in a process group of its own (launch.py): Ctrl+C or SIGTERM here becomes a
    Stop through the run store, so every rank stops at the same step after a checkpoint and
    torchrun's agent, which would kill the ranks on a signal, never sees one. A second one
    terminates the job."""
    import tempfile

    from signconsole.launch import Job, new_launch_id

    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            argv.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc-per-node={nproc}", "-m", "signconsole", *argv]
    sys.stdout.flush()
    with tempfile.TemporaryDirectory(prefix="signconsole-job-") as folder:
        exit_file = Path(folder) / "exit-code"
        job = Job.launch(
            command,
            runs_dir,
            resume,
            new_launch_id(),
            environment={EXIT_FILE_VARIABLE: str(exit_file)},
        )
        asked: list[int] = []

        def stop(signum: int, _frame) -> None:
            if asked:
                job.terminate()
                return
            asked.append(signum)
            job.stop(f"{signal.Signals(signum).name}: stopping after a checkpoint")

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop)
        returned = job.process.wait()
        try:
            return int(exit_file.read_text())
        except (OSError, ValueError):  # rank 0 never got to the end: a rank or torchrun failed
            return ExitCode.FAILED if returned else ExitCode.OK


def check_resumable(resume_dir: Path) -> None:
    """Refuse a resume that cannot be right, before the (slow) data preparation."""
    from signconsole.errors import UserError
    from signconsole.store.catalog import require_readable
    from signconsole.store.lock import refuse_if_live

    if not (resume_dir / "checkpoints" / "last.pt").exists():
        raise UserError(
            f"{resume_dir}: no checkpoints/last.pt to resume from; pass a run "
            "directory made by `signconsole run`"
        )
    refuse_if_live(resume_dir)  # the engine's RunLock decides; this only fails early
    summary = require_readable(resume_dir)
    if summary.status == "finished":
        raise UserError(
            f"{resume_dir}: this run finished; nothing is left to resume. To train further, "
            f"start a new run from its weights: --set model.pretrained.path={resume_dir}"
        )


def run_command(
    profile_path: Path,
    overrides: list[str],
    resume: str | None,
    runs_dir: str | None,
    allow_changes: bool = False,
    nproc: int | None = None,
) -> int:
    from signconsole.profile import load_profile

    if nproc is not None and nproc < 1:
        from signconsole.errors import UserError

        raise UserError(f"--nproc {nproc}: give the number of processes (1 or more)")
    if resume:
        check_resumable(Path(resume))
    profile = load_profile(profile_path, overrides)
    nproc = profile.training.nproc if nproc is None else nproc
    if not resume:
        from signconsole.store.run import ensure_runs_dir

        ensure_runs_dir(runs_dir or profile.output.runs_dir)
    if nproc > 1 and "WORLD_SIZE" not in os.environ:  # torchrun starts this command N times
        return launch_torchrun(nproc, Path(runs_dir or profile.output.runs_dir), resume)
    # Only now the heavy imports (torch): a bad profile is reported in a fraction of a second.
    from rich.console import Console

    from signconsole.commands.data import print_data_summary
    from signconsole.commands.progress import progress_reporter
    from signconsole.commands.reporter import HeadlessReporter
    from signconsole.data.prepare import prepare_data
    from signconsole.engine.distributed import Distributed
    from signconsole.engine.trainer import Engine
    from signconsole.events import EventBus, Stop

    dist = Distributed.from_env()
    dist.start(profile.training.device)
    if dist.is_main:
        with progress_reporter() as progress:
            data = prepare_data(profile, progress)
        dist.barrier()  # rank 0 built the corpus cache; the other ranks read it now
        print_data_summary(data.summary())
    else:
        dist.barrier()
        data = prepare_data(profile, None)

    bus = EventBus()
    reporter = HeadlessReporter()
    outcome = Outcome()
    if dist.is_main:  # one report, rank 0's: the other ranks train silently
        bus.subscribe(reporter)
    bus.subscribe(outcome)
    stopped_by: list[str] = []

    def request_stop(signum, _frame) -> None:
        name = signal.Signals(signum).name
        if stopped_by:  # a second Ctrl+C: stop now, the last checkpoint is still on disk
            raise KeyboardInterrupt
        stopped_by.append(name)
        bus.send(Stop(reason=f"{name}: stopping after a checkpoint", source="signal"))

    console = Console(highlight=False)
    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    status = "failed"  # unless the engine returns: an exception went past it
    returned = False
    try:
        result = Engine(
            profile,
            bus,
            runs_dir=runs_dir,
            resume=resume,
            data=data,
            freeze_gc=True,
            wait_for_person=False,  # headless: nobody can resume a paused run
            allow_changes=allow_changes,
            dist=dist,
        ).run()
        returned = True
        status = outcome.status or result.status
        reporter.summary()
    except KeyboardInterrupt:
        status = "stopped"
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        dist.close(finished_together=returned)
        if outcome.run_dir and dist.is_main:  # however it ended: where the run is, how to go on
            for line in end_lines(outcome, status, dist.world):
                console.print(line, markup=False, soft_wrap=True)
    code = exit_code(status, outcome.reason, bool(stopped_by))
    if dist.enabled:
        if dist.is_main and os.environ.get(EXIT_FILE_VARIABLE):
            Path(os.environ[EXIT_FILE_VARIABLE]).write_text(str(int(code)))
        return ExitCode.OK  # see the module docstring
    return code

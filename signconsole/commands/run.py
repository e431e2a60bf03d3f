"""`signconsole run PROFILE`: headless training with the same engine the console drives."""

from __future__ import annotations

import signal
from pathlib import Path

from signconsole.cli import ExitCode


def run_command(
    profile_path: Path, overrides: list[str], resume: str | None, runs_dir: str | None
) -> int:
    from signconsole.errors import UserError
    from signconsole.profile import load_profile

    if resume:
        resume_dir = Path(resume)
        if not (resume_dir / "checkpoints" / "last.pt").exists():
            raise UserError(
                f"{resume_dir}: no checkpoints/last.pt to resume from; pass a run "
                "directory made by `signconsole run`"
            )
    profile = load_profile(profile_path, overrides)
    # Only now the heavy imports (torch): a bad profile is reported in a fraction of a second.
    from signconsole.commands.data import print_data_summary
    from signconsole.commands.progress import progress_reporter
    from signconsole.commands.reporter import HeadlessReporter
    from signconsole.data.prepare import prepare_data
    from signconsole.engine.trainer import Engine
    from signconsole.events import EventBus, Stop

    with progress_reporter() as progress:
        data = prepare_data(profile, progress)
    print_data_summary(data.summary())

    bus = EventBus()
    reporter = HeadlessReporter()
    bus.subscribe(reporter)
    stopped_by: list[str] = []

    def request_stop(signum, _frame) -> None:
        name = signal.Signals(signum).name
        if stopped_by:  # a second Ctrl+C: stop now, the last checkpoint is still on disk
            raise KeyboardInterrupt
        stopped_by.append(name)
        bus.send(Stop(reason=f"{name}: stopping after a checkpoint", source="signal"))

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        Engine(profile, bus, runs_dir=runs_dir, resume=resume, data=data, freeze_gc=True).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    reporter.summary()
    if stopped_by:
        return ExitCode.INTERRUPTED
    return ExitCode.OK

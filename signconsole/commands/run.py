"""`signconsole run PROFILE`: headless training."""

from __future__ import annotations

from pathlib import Path

from signconsole.cli import ExitCode


def run_command(profile_path: Path, overrides: list[str], resume: str | None, runs_dir: str | None) -> int:
    from signconsole.commands.data import print_data_summary
    from signconsole.commands.progress import progress_reporter
    from signconsole.data.prepare import prepare_data
    from signconsole.profile import load_profile

    profile = load_profile(profile_path, overrides)
    with progress_reporter() as progress:
        data = prepare_data(profile, progress)
    print_data_summary(data.summary())
    print("signconsole: the training engine is not implemented in this version yet.")
    return ExitCode.NOT_IMPLEMENTED

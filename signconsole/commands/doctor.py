"""`signconsole doctor PROFILE`: pre-flight checks, then the overfit test; a pass/fail table."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from signconsole.cli import ExitCode

MARKS = {"pass": "[green]pass[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}


def doctor_command(profile_path: Path, overrides: list[str], skip_overfit: bool = False) -> int:
    from rich.markup import escape

    from signconsole.commands.progress import progress_reporter
    from signconsole.engine.doctor import Check, preflight
    from signconsole.engine.overfit import overfit
    from signconsole.events import EvalFinished
    from signconsole.profile import load_profile

    console = Console(highlight=False)
    profile = load_profile(profile_path, overrides)
    with progress_reporter() as progress:
        checks, data = preflight(profile, progress)
    blocked = any(c.status == "fail" for c in checks)
    if data is not None and not blocked and not skip_overfit:
        count = profile.health.overfit_samples
        console.print(
            f"overfit test: {count} training sequences to 0% error, at most "
            f"{profile.health.overfit_max_steps} steps ..."
        )

        def show(event) -> None:
            if isinstance(event, EvalFinished):
                console.print(
                    f"  step {event.step}: error {event.error_rate:.1%} loss {event.loss:.3f}"
                )

        result = overfit(profile, data, on_event=show)
        if result.passed:
            checks.append(
                Check(
                    "overfit test",
                    "pass",
                    f"{count} sequences at 0% after {result.steps} steps ({result.seconds:.0f} s)",
                )
            )
        else:
            best = "-" if result.best_error_rate is None else f"{result.best_error_rate:.1%}"
            seen = "; alarms: " + " | ".join(result.alarms[:3]) if result.alarms else ""
            checks.append(
                Check(
                    "overfit test",
                    "fail",
                    f"not solved in {result.steps} steps (best {best}){seen}",
                    "a model that cannot memorize 5 sequences has a bug: check "
                    "log_softmax, normalization, the vocabulary, time collapse",
                )
            )
    elif skip_overfit:
        checks.append(Check("overfit test", "warn", "skipped (--no-overfit)"))
    else:
        checks.append(Check("overfit test", "warn", "not run: fix the failures above first"))

    if console.is_terminal:
        table = Table(
            "check", "", "result", title=f"signconsole doctor {profile_path}", show_lines=False
        )
        table.columns[2].overflow = "fold"  # a long path wraps whole instead of ending in "…"
        for check in checks:
            hint = f"\n[dim]{escape(check.hint)}[/]" if check.hint else ""
            table.add_row(check.name, MARKS[check.status], escape(check.detail) + hint)
        console.print(table)
    else:  # a pipe or a log file: one whole line per check, whatever the width
        console.print(f"signconsole doctor {profile_path}", markup=False, soft_wrap=True)
        for check in checks:
            line = f"{check.status.upper():4}  {check.name}: {check.detail}"
            console.print(line, markup=False, soft_wrap=True)
            if check.hint:
                console.print(f"      hint: {check.hint}", markup=False, soft_wrap=True)
    failed = [c for c in checks if c.status == "fail"]
    console.print(
        f"[bold red]{len(failed)} check(s) failed[/]"
        if failed
        else "[bold green]all checks passed[/]"
    )
    return ExitCode.FAILED if failed else ExitCode.OK

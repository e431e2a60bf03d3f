"""Headless output: a Rich progress line on a terminal; plain timestamped lines at a steady rate
under nohup, a scheduler or a pipe (a redrawn bar in a log file is a known pain). Alarms,
evaluations and state changes are printed as they happen in both modes."""

from __future__ import annotations

import math
import sys
import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from signconsole import metrics as m
from signconsole.events import (
    AlarmRaised,
    CheckpointSaved,
    CommandApplied,
    DistillationSummary,
    EvalFinished,
    Event,
    LearningRateChanged,
    PretrainedLoaded,
    RunFinished,
    RunStarted,
    StageChanged,
    StateChanged,
    StepLogged,
)
from signconsole.metrics import format_duration

rate_name = m.rate_name


class HeadlessReporter:
    def __init__(self, interactive: bool | None = None, plain_interval: float = 30.0) -> None:
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self.console = Console(highlight=False)
        self.plain_interval = plain_interval
        self._last_plain = 0.0
        self.unit = "gloss"
        self.total = 0
        self.best: float | None = None
        self.last_eval = ""
        self.last_step_status = ""
        self.progress: Progress | None = None
        self.task = None
        self.finished: RunFinished | None = None
        self.test_result: EvalFinished | None = None
        self.run_dir = ""
        self._rate: tuple[float, int, float] | None = None  # (time, step, steps/s) for the ETA

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.unit, self.total, self.run_dir = event.unit, event.total_steps, event.run_dir
            params = sum(event.parameters.values())
            self._print(
                f"run {event.run_dir}  {event.kind}  device {event.device}  "
                f"{params / 1e6:.2f}M parameters  {event.total_steps} steps planned"
            )
            if event.teacher:
                self._print(
                    f"teacher {event.teacher} ({event.teacher_parameters / 1e6:.2f}M parameters)"
                )
            if self.interactive:
                self.progress = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(bar_width=12),
                    TextColumn("{task.completed}/{task.total}", style="dim"),
                    TimeRemainingColumn(),
                    TextColumn("{task.fields[status]}"),
                    console=self.console,
                    transient=False,
                )
                self.progress.start()
                self.task = self.progress.add_task(
                    "epoch 0", total=event.total_steps or None, completed=event.step, status=""
                )
        elif isinstance(event, StepLogged):
            parts = (
                " (" + " ".join(f"{k} {v:.3f}" for k, v in event.parts.items()) + ")"
                if len(event.parts) > 1
                else ""
            )
            teacher = f" teacher {event.teacher_ms:.0f} ms/batch" if event.teacher_ms else ""
            self.last_step_status = (
                f"loss {event.loss:.4f}{parts} lr {event.lr:.1e} |g| {event.grad_norm:.3g} "
                f"{event.frames_per_second:,.0f} fr/s{teacher}"
            )
            status = self.bar_status()
            if self.progress is not None:
                self.progress.update(
                    self.task,
                    completed=event.step,
                    description=f"ep {event.epoch}",
                    status=status,
                )
            else:
                self._measure(event)
                if time.monotonic() - self._last_plain >= self.plain_interval:
                    self._last_plain = time.monotonic()
                    self._print(
                        f"epoch {event.epoch} step {event.step}/{self.total}{self._eta(event)} "
                        f"{status}"
                    )
        elif isinstance(event, EvalFinished) and event.split != "dev":
            self.test_result = event
            self._print(f"{event.split} (best checkpoint): {m.describe_eval(event, split=False)}")
        elif isinstance(event, EvalFinished):
            name = rate_name(event.unit)
            if self.best is None or event.error_rate < self.best:
                self.best = event.error_rate
            self.last_eval = f" dev {name} {event.error_rate:.1%} best {self.best:.1%}"
            if self.progress is not None:  # the bar shows the newest evaluation at once
                self.progress.update(self.task, status=self.bar_status())
            self._print(
                f"eval step {event.step}: {m.describe_eval(event)}"
                + ("  best" if event.is_best else "")
            )
            for sample in event.samples[:2]:
                self._print(
                    f"    {sample.id}: ref {' '.join(sample.reference)!s:30} "
                    f"hyp {' '.join(sample.beam) or '(empty)'}"
                )
        elif isinstance(event, AlarmRaised):
            colour = "red" if event.severity == "error" else "yellow"
            where = f" [{event.stage}]" if event.stage else ""
            self._print(
                f"[{colour}]ALARM {event.kind}{escape(where)} at step {event.step}: "
                f"{escape(event.message)}[/]\n    hint: {escape(event.hint)}",
                markup=True,
            )
        elif isinstance(event, DistillationSummary):
            self._print("teacher vs student:\n" + "\n".join(f"  {line}" for line in event.table))
        elif isinstance(event, PretrainedLoaded):
            self._print("\n".join(event.report))
        elif isinstance(event, StageChanged):
            self._print(f"step {event.step}: {m.describe_stage(event)}")
        elif isinstance(event, StateChanged):
            if m.state_worth_telling(event):
                self._print(f"step {event.step}: {m.describe_state(event)}")
        elif isinstance(event, CommandApplied):
            self._print(f"step {event.step}: {m.describe_applied(event)}")
        elif isinstance(event, LearningRateChanged) and m.lr_change_worth_telling(event):
            self._print(f"step {event.step}: {m.describe_lr(event)}")
        elif isinstance(event, CheckpointSaved) and event.which == "best":
            pass
        elif isinstance(event, RunFinished):
            self.finished = event
            if self.progress is not None:
                self.progress.stop()

    def _measure(self, event: StepLogged) -> None:
        """Steps per second, smoothed, for the ETA of plain lines (Rich measures its own)."""
        if self._rate is not None:
            then, step, rate = self._rate
            if event.time > then and event.step > step:
                now_rate = (event.step - step) / (event.time - then)
                rate = now_rate if not rate else 0.8 * rate + 0.2 * now_rate
            self._rate = (event.time, event.step, rate)
        else:
            self._rate = (event.time, event.step, 0.0)

    def _eta(self, event: StepLogged) -> str:
        if self._rate is None or not self._rate[2] or not self.total:
            return ""
        seconds = max(0, self.total - event.step) / self._rate[2]
        return f" ETA {format_duration(seconds)}"

    def bar_status(self) -> str:
        """Most important first: a narrow terminal cuts the end of the line."""
        return f"{self.last_eval.strip()}  {self.last_step_status}".strip()

    def _print(self, text: str, markup: bool = False) -> None:
        if not self.interactive:
            text = time.strftime("%Y-%m-%d %H:%M:%S ") + text
        if self.progress is not None:
            self.progress.console.print(text, markup=markup)
        else:
            self.console.print(text, markup=markup, soft_wrap=True)
        sys.stdout.flush()

    def summary(self) -> None:
        if self.finished is None:
            return
        rows = summary_rows(self.finished, self.run_dir, self.unit, self.test_result)
        if not self.interactive:
            self._print("run summary")  # timestamped, as every plain line
        print_summary(self.console, rows, self.interactive, header=False)


def summary_rows(
    event: RunFinished, run_dir: str, unit: str, test_result: EvalFinished | None
) -> list[tuple[str, str]]:
    """The run summary's rows: `signconsole run` prints them at the end of a run, and the
    console when it exits after training one."""
    best = event.best_error_rate
    rows = [
        ("status", event.status),
        ("run", run_dir),
        ("steps / epochs", f"{event.step} / {event.epochs}"),
        ("duration", f"{event.duration / 60:.1f} min"),
        (
            f"best dev {rate_name(unit)}",
            "-" if best is None or math.isnan(best) else f"{best:.2%} at step {event.best_step}",
        ),
    ]
    if test_result is not None:
        rows.append((f"test {rate_name(unit)} (best checkpoint)", f"{test_result.error_rate:.2%}"))
    rows.append(("best checkpoint", event.best_checkpoint or "-"))
    return rows


def print_summary(
    console: Console, rows: list[tuple[str, str]], interactive: bool, header: bool = True
) -> None:
    """A table on a terminal; whole `key: value` lines in a pipe or a log file (never a path
    cut to the console's width)."""
    if not interactive:
        lines = (["run summary"] if header else []) + [f"  {key}: {value}" for key, value in rows]
        for line in lines:
            console.print(line, markup=False, soft_wrap=True)
        console.file.flush()
        return
    from rich.table import Table

    table = Table(title="run summary", show_header=False)
    table.add_column(overflow="fold")
    table.add_column(overflow="fold")  # a long path wraps instead of ending in "…"
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)

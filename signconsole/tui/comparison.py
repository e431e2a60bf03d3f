"""Runs side by side as Rich renderables: best metrics, overlaid curves, the profile diff.

Rich only (no Textual): `signconsole compare` prints these, the console's compare screen shows
the same objects.
"""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from signconsole import metrics as m
from signconsole.metrics import format_duration
from signconsole.store.compare import profile_diff, run_facts
from signconsole.store.reader import RunReader
from signconsole.tui.chart import Line, render_chart

RUN_COLOURS = ("cyan", "magenta", "green", "yellow", "red", "blue", "white")
CURVES = (
    (m.TRAIN_LOSS, "train loss", {}),
    (m.DEV_ERROR, "dev error rate", {"percent": True, "y_min": 0.0}),
    (m.GRAD_TOTAL, "grad norm (log)", {"log_y": True}),
)


def comparison_renderables(
    paths: list[Path], width: int, span: tuple[int, int] | None = None
) -> list[RenderableType]:
    readers = [RunReader(path) for path in paths]
    try:
        facts = [run_facts(reader) for reader in readers]
        parts: list[RenderableType] = [best_metrics_table(facts, RUN_COLOURS)]
        legend = Text("  ").join(
            Text(f"■ {fact.name}", style=RUN_COLOURS[i % len(RUN_COLOURS)])
            for i, fact in enumerate(facts)
        )
        for name, title, options in CURVES:
            lines = []
            for index, reader in enumerate(readers):
                points = reader.series(name, width * 2, *(span or (None, None)))
                values = [math.nan if v is None else v for _, v in points]
                colour = RUN_COLOURS[index % len(RUN_COLOURS)]
                lines.append(Line(facts[index].name, [s for s, _ in points], values, colour))
            chart = render_chart(lines, width, 12, **options)
            parts.append(Panel(Group(legend, chart), title=title, title_align="left"))
        parts.append(diff_table(facts))
        return parts
    finally:
        for reader in readers:
            reader.close()


def best_metrics_table(facts, colours) -> Table:
    """Runs as columns, metrics as rows: stays readable at 80 columns with a few runs."""
    table = Table(title="best metrics", title_justify="left")
    table.add_column("")
    for index, fact in enumerate(facts):
        table.add_column(
            Text(fact.name, style=colours[index % len(colours)]), justify="right", overflow="fold"
        )

    def percent(value: float | None, unit: str) -> str:
        return "-" if value is None else f"{'LER' if unit == 'letter' else 'WER'} {value:.2%}"

    rows = {
        "kind": [f.kind for f in facts],
        "status": [f.status for f in facts],
        "parameters": [f"{f.parameters / 1e6:.2f}M" if f.parameters else "-" for f in facts],
        "best dev": [percent(f.best_error_rate, f.unit) for f in facts],
        "at step": [str(f.best_step if f.best_step is not None else "-") for f in facts],
        "test (best ckpt)": [percent(f.test_error_rate, f.unit) for f in facts],
        "best dev loss": [
            "-" if f.best_dev_loss is None else f"{f.best_dev_loss:.4f}" for f in facts
        ],
        "steps": [str(f.steps) for f in facts],
        "duration": [format_duration(f.duration) for f in facts],
    }
    if any(f.evaluations for f in facts):
        rows["signconsole eval"] = ["\n".join(f.evaluations[-3:]) or "-" for f in facts]
    for label, values in rows.items():
        table.add_row(label, *values)
    return table


def diff_table(facts) -> Table | Text:
    rows = profile_diff([fact.profile for fact in facts])
    if not rows:
        return Text("profiles: identical", style="dim")
    table = Table(title="profile keys that differ", title_justify="left")
    table.add_column("key", no_wrap=True)
    for fact in facts:
        table.add_column(fact.name, overflow="fold")
    for key, values in rows:
        table.add_row(key, *(str(value) if value != "" else '""' for value in values))
    return table

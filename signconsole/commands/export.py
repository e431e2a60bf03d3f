"""`signconsole export RUN --format csv|tensorboard`: a run's history for other tools.

csv: `metrics.csv` (one row per logged step, one column per metric; empty where a metric was not
logged at that step, `nan`/`inf` where it was non-finite), `evals.csv`, `decodes.csv`,
`alarms.csv`. tensorboard: an event file written with torch.utils.tensorboard (needs the
`tensorboard` package: `pip install -e ".[tensorboard]"`), every metric as a scalar, evaluations'
S/D/I as scalars, the profile and the alarms as text.
"""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

from rich.console import Console

from signconsole.errors import UserError
from signconsole.store.catalog import require_readable
from signconsole.store.reader import RunReader, find_run


def export_command(run: str, runs_dir: str, export_format: str, out: str | None) -> int:
    run_dir = find_run(run, runs_dir)
    target = (
        Path(out) if out else run_dir / ("export-csv" if export_format == "csv" else "tensorboard")
    )
    require_readable(run_dir)
    try:
        with RunReader(run_dir) as reader:
            if export_format == "csv":
                written = export_csv(reader, target)
            else:
                written = export_tensorboard(reader, target)
    except sqlite3.Error as error:  # damage past the summary: some tables or rows
        raise UserError(
            f"{run_dir}: run.db is damaged ({error}); the files in {target} are incomplete"
        ) from None
    Console(highlight=False).print(
        f"exported {run_dir.name} ({export_format}) to {target}: "
        + ", ".join(f"{name} ({rows} rows)" for name, rows in written.items())
    )
    return 0


def _value(value: float | None, nonfinite: str | None) -> str:
    if nonfinite:
        return nonfinite
    # Anything but a number (a damaged row) is left empty, as a value never logged.
    return repr(value) if isinstance(value, int | float) else ""


def metric_rows(reader: RunReader):
    """(step, {name: text}) in step order, streamed from the store."""
    cursor = reader.connection.execute(
        "SELECT step, name, value, nonfinite FROM metrics ORDER BY step"
    )
    step, values = None, {}
    for row in cursor:
        if row["step"] != step and step is not None:
            yield step, values
            values = {}
        step = row["step"]
        values[row["name"]] = _value(row["value"], row["nonfinite"])
    if step is not None:
        yield step, values


def export_csv(reader: RunReader, target: Path) -> dict[str, int]:
    target.mkdir(parents=True, exist_ok=True)
    names = reader.metric_names()
    written: dict[str, int] = {}
    with (target / "metrics.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", *names])
        count = 0
        for step, values in metric_rows(reader):
            writer.writerow([step, *(values.get(name, "") for name in names)])
            count += 1
        written["metrics.csv"] = count
    tables = {
        "evals.csv": "SELECT step, epoch, split, loss, error_rate, substitutions, deletions, "
        "insertions, reference_words, unit, is_best, blank_only, time FROM evals ORDER BY step",
        "decodes.csv": "SELECT step, sample_id, reference, greedy, beam, error_rate FROM decodes "
        "ORDER BY step, rowid",
        "alarms.csv": "SELECT step, time, severity, kind, message, hint, stage, batch_ids "
        "FROM alarms ORDER BY step, time",
    }
    for name, query in tables.items():
        cursor = reader.connection.execute(query)
        columns = [description[0] for description in cursor.description]
        with (target / name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            rows = 0
            for row in cursor:
                writer.writerow(list(row))
                rows += 1
        written[name] = rows
    return written


def export_tensorboard(reader: RunReader, target: Path) -> dict[str, int]:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError(
            "--format tensorboard needs the tensorboard package: "
            'pip install -e ".[tensorboard]" (or pip install tensorboard); --format csv needs '
            "nothing"
        ) from None
    target.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(log_dir=str(target))
    scalars = 0
    try:
        for step, values in metric_rows(reader):
            for name, text in values.items():
                if text:
                    writer.add_scalar(name, float(text), step)  # "nan" and "inf" parse too
                    scalars += 1
        for evaluation in reader.evals():
            for part in ("substitutions", "deletions", "insertions"):
                writer.add_scalar(
                    f"{evaluation.split}/{part}", getattr(evaluation, part), evaluation.step
                )
                scalars += 1
        profile = reader.profile_text()
        if profile:
            writer.add_text("profile", "```toml\n" + profile + "\n```", 0)
        for alarm in reader.alarms():
            writer.add_text(
                "alarms",
                f"**{alarm['severity']} {alarm['kind']}**: {alarm['message']} — {alarm['hint']}",
                alarm["step"],
            )
    finally:
        writer.close()
    return {"scalars": scalars}

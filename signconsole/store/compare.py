"""What differs between runs: best metrics side by side and the profile keys that differ."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signconsole.store.reader import RunReader

MISSING = "(unset)"


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and inline tables stay values."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):  # an empty table adds no key: its keys show as unset
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def profile_diff(profiles: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """(dotted key, value per profile) for every key whose values are not all equal."""
    flats = [flatten(profile) for profile in profiles]
    keys = sorted(set().union(*flats)) if flats else []
    rows = []
    for key in keys:
        values = [flat.get(key, MISSING) for flat in flats]
        if any(value != values[0] for value in values[1:]):
            rows.append((key, values))
    return rows


@dataclass(frozen=True)
class RunFacts:
    name: str  # run directory name
    kind: str
    status: str
    unit: str
    parameters: int
    best_error_rate: float | None
    best_step: int | None
    test_error_rate: float | None
    best_dev_loss: float | None
    steps: int
    duration: float | None
    profile: dict[str, Any]
    evaluations: tuple[str, ...] = ()  # `signconsole eval` results stored with the run


def describe_evaluation(row: dict[str, Any]) -> str:
    name = "LER" if row["unit"] == "letter" else "WER"
    data = Path(row["data"]).name
    return f"{row['split']} of {data} (step {row['step']}, {row['decoder']}): {name} {row['error_rate']:.2%}"


def _parameter_count(stored: object) -> int:
    """The run's parameters summed over its stages (a damaged meta row counts as 0)."""
    if not isinstance(stored, dict):
        return 0
    return int(sum(v for v in stored.values() if isinstance(v, int) and not isinstance(v, bool)))


def run_facts(reader: RunReader) -> RunFacts:
    summary = reader.summary()
    meta = reader.meta()
    try:
        profile = tomllib.loads(reader.profile_text())
    except tomllib.TOMLDecodeError:
        profile = {}
    dev = [e for e in reader.evals("dev") if math.isfinite(e.loss)]
    return RunFacts(
        name=reader.run_dir.name,
        kind=summary.kind if summary else "?",
        status=summary.status if summary else "unknown",
        unit=summary.unit if summary else "gloss",
        parameters=_parameter_count(meta.get("parameters")),
        best_error_rate=summary.best_error_rate if summary else None,
        best_step=summary.best_step if summary else None,
        test_error_rate=summary.test_error_rate if summary else None,
        best_dev_loss=min((e.loss for e in dev), default=None),
        steps=summary.steps if summary else 0,
        duration=summary.duration if summary else None,
        profile=profile,
        evaluations=tuple(describe_evaluation(r) for r in reader.stored_evaluations()),
    )

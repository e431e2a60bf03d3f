"""Teacher vs student at the end of a distillation run: what the distillation bought.

For each model: parameters, size of its weights on disk, CPU inference time per sequence, dev and
test error. The teacher is scored here on the student's own dev and test splits with the same
evaluation code, so the numbers compare directly. The same student trained without distillation
is looked up in the runs directory (a finished student run whose model and data sections equal
this run's) and listed when one exists.
"""

from __future__ import annotations

import copy
import io
import statistics
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from signconsole.data.dataset import SequenceDataset
from signconsole.store.catalog import list_runs

TIMED_SEQUENCES = 20


@dataclass(frozen=True)
class ModelRow:
    role: str  # "teacher", "student (distilled)", "student (no distillation)"
    run: str  # run directory or checkpoint
    parameters: int
    size_mb: float  # float32 weights as torch.save writes them
    cpu_ms_per_sequence: float | None
    dev_error: float | None  # best dev error rate
    test_error: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def weights_megabytes(model: nn.Module) -> float:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / 1e6


@torch.no_grad()
def cpu_ms_per_sequence(model: nn.Module, dataset: SequenceDataset) -> float | None:
    """Median milliseconds for one sequence on the CPU (batch size 1, eval mode), over the first
    TIMED_SEQUENCES sequences of the split by id, after one warm-up pass."""
    if not len(dataset):
        return None
    cpu_model = copy.deepcopy(model).cpu().eval()
    order = sorted(range(len(dataset)), key=lambda i: dataset.entries[i].id)[:TIMED_SEQUENCES]
    timings = []
    for position, index in enumerate([order[0], *order]):
        features = dataset[index].features[None]
        lengths = torch.tensor([features.shape[1]])
        started = time.perf_counter()
        cpu_model(features, lengths)
        if position:  # the first pass warms up allocators and kernels
            timings.append(1000 * (time.perf_counter() - started))
    return statistics.median(timings)


def comparable_section(profile_dict: dict[str, Any], section: str) -> dict[str, Any]:
    values = dict(profile_dict.get(section, {}))
    values.pop("pretrained", None)
    return values


def find_baseline(
    runs_dir: Path, profile_dict: dict[str, Any], exclude: Path, min_steps: int
) -> Path | None:
    """The newest student run with this run's model and data sections that ran to its end or
    to its budget (finished or stopped, not failed) and trained at least `min_steps` steps,
    the distilled run's. A student stopped early would make any distillation look like a gain
    (a 50-step run at 94% LER beside a distilled one at 3%)."""
    for run in list_runs(runs_dir):
        if (
            run.path == exclude
            or run.kind != "student"
            or run.status not in ("finished", "stopped")
            or run.steps < min_steps
        ):
            continue
        try:
            theirs = tomllib.loads((run.path / "profile.toml").read_text())
        except (OSError, tomllib.TOMLDecodeError):
            continue
        if all(
            comparable_section(theirs, section) == comparable_section(profile_dict, section)
            for section in ("model", "data")
        ):
            return run.path
    return None


def format_rows(rows: list[ModelRow], unit: str) -> list[str]:
    name = "LER" if unit == "letter" else "WER"

    def rate(value: float | None) -> str:
        return f"{value:.2%}" if value is not None else "-"

    lines = [
        f"{'model':<26} {'params':>9} {'MB':>7} {'CPU ms/seq':>10} {'dev ' + name:>9} "
        f"{'test ' + name:>9}"
    ]
    for row in rows:
        ms = f"{row.cpu_ms_per_sequence:.1f}" if row.cpu_ms_per_sequence is not None else "-"
        lines.append(
            f"{row.role:<26} {row.parameters:>9,} {row.size_mb:>7.2f} {ms:>10} "
            f"{rate(row.dev_error):>9} {rate(row.test_error):>9}"
        )
    return lines

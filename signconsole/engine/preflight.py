"""Alarms raised before the first step: what the data and the contract check already show."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from signconsole.data.normalize import check_input
from signconsole.models.contract import ContractReport, ctc_frames_needed, output_lengths

if TYPE_CHECKING:
    from signconsole.data.dataset import SequenceDataset
    from signconsole.engine.health import HealthMonitor
    from signconsole.engine.trainer import Engine


def infeasible_samples(
    model: torch.nn.Module, datasets: list[SequenceDataset], stride: float
) -> tuple[list[str], float]:
    """Ids of samples with fewer output frames than CTC needs, and the tightest ratio of output
    frames to frames needed over all samples."""
    infeasible, tightest = [], float("inf")
    for dataset in datasets:
        outputs = output_lengths(model, torch.tensor(dataset.lengths()), stride)
        for index, target in enumerate(dataset.targets):
            need = ctc_frames_needed(list(target))
            tightest = min(tightest, int(outputs[index]) / max(1, need))
            if int(outputs[index]) < need:
                infeasible.append(dataset.entries[index].id)
    return infeasible, tightest


def contract_alarms(health: HealthMonitor, report: ContractReport) -> None:
    health.check_normalized(0, report.normalized)
    if report.input_ignored:
        health.alarm(
            0,
            "input_ignored",
            "warning",
            "the model's output did not change when its input did (one real batch against "
            "noise of the same lengths): forward may not be using its features",
            force=True,
        )
    if report.collapsed:
        health.alarm(
            0,
            "sequence_collapse",
            "error",
            "every output frame of every sample is identical before training: the model "
            "pools the time axis away (e.g. AdaptiveAvgPool1d(1) then repeat)",
            force=True,
        )


def data_alarms(engine: Engine) -> None:
    """Double normalization and CTC-infeasible samples."""
    data, health = engine.data, engine.health
    if data.train.normalization != "none" and len(data.train):
        raw = [data.train.raw_features(i) for i in range(min(32, len(data.train)))]
        check = check_input(torch.cat([r[0] for r in raw]), torch.cat([r[1] for r in raw]))
        if check.looks_standardized:
            health.alarm(
                0,
                "double_normalization",
                "error",
                f"input features are already standardized (block means "
                f"{max(abs(m) for m in check.block_mean.values()):.3f} max |mean|) "
                f"and data.normalization = {data.train.normalization!r} "
                "normalizes them again",
                force=True,
            )
    if not len(data.dev):
        health.alarm(
            0,
            "no_dev_split",
            "warning",
            "the dev split is empty: no evaluations, no best checkpoint, no early stopping",
            force=True,
        )
    splits = [split for split in (data.train, data.dev, data.test) if split is not None]
    infeasible, _ = infeasible_samples(engine.model, splits, engine.contract.stride)
    if infeasible:
        shown = ", ".join(infeasible[:5]) + (", ..." if len(infeasible) > 5 else "")
        health.alarm(
            0,
            "ctc_infeasible",
            "warning",
            f"{len(infeasible)} sequence{'s' if len(infeasible) > 1 else ''} ({shown}) "
            f"{'have' if len(infeasible) > 1 else 'has'} fewer output frames than the target "
            "needs; left out of the loss and its gradient",
            batch_ids=tuple(infeasible[:20]),
            force=True,
        )

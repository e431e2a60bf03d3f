"""The pieces a run is built from: device, model (checked against the contract on a real
batch), optimizer with one param group per stage, batch sampler and step counts."""

from __future__ import annotations

import math
import os
import random

import numpy as np
import torch
from torch import nn

from signconsole.config import DataConfig, OptimizerConfig, Profile, TrainingConfig
from signconsole.data.dataset import Batch, BucketBatchSampler, SequenceDataset, collate
from signconsole.data.vocabulary import Vocabulary
from signconsole.errors import UserError
from signconsole.models.contract import ContractReport, check_model
from signconsole.models.pretrained import LoadReport, load_pretrained, profile_pretrained


def resolve_device(setting: str, option: str = "training.device") -> torch.device:
    """ "auto", "cpu", "cuda", "cuda:N" or "mps", checked against what this machine has;
    `option` is how the user gave it (the profile key, or a command's `--device`)."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    key = f"{option} = {setting!r}" if option.startswith("training.") else f"{option} {setting}"
    if setting.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f'{key} but no CUDA GPU is visible; use "auto" or "cpu"')
        device = torch.device(setting)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(
                f"{key} but this machine has {torch.cuda.device_count()} visible GPU(s) "
                f"(cuda:0 to cuda:{torch.cuda.device_count() - 1}); check CUDA_VISIBLE_DEVICES"
            )
        return device
    if setting == "mps" and not torch.backends.mps.is_available():
        raise UserError(f'{key} but MPS is not available here; use "auto" or "cpu"')
    return torch.device(setting)


_TORCH_DEFAULT_THREADS: list[int] = []  # torch's intra-op threads before the first run changed them


def share_cpu_cores(data: DataConfig, device: torch.device) -> int:
    """On the CPU, give each loader worker a core of its own and the step the rest.

    The step's intra-op threads and the workers otherwise share the same cores: every parallel
    op of the step then waits on whichever of its halves the worker preempted. On a 2-core
    machine the demo student and teacher stepped as fast on 1 thread as on 2 (median 1.06x and
    1.01x), while a loader beside two step threads held the whole run to 0.74-0.88 of a loop fed
    for free (benchmarks/README.md). An explicit OMP_NUM_THREADS (torchrun sets 1) is left as it
    is. Returns the step's thread count."""
    if not _TORCH_DEFAULT_THREADS:
        _TORCH_DEFAULT_THREADS.append(torch.get_num_threads())
    default = _TORCH_DEFAULT_THREADS[0]
    if device.type != "cpu" or "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    try:
        cores = len(os.sched_getaffinity(0))  # what this process may use (taskset, cgroups)
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, min(default, cores - data.num_workers)))
    return torch.get_num_threads()


def check_precision(training: TrainingConfig, device: torch.device) -> None:
    """A precision the device cannot honour is an error, not a silent fp32 run."""
    if training.precision == "fp16" and device.type != "cuda":
        raise UserError(
            f'training.precision = "fp16" needs a CUDA device; this run is on {device}: use '
            '"bf16" (CPU autocast) or "fp32"'
        )


def probe_batch(dataset: SequenceDataset, size: int) -> Batch:
    """A real batch spanning the split's lengths (shortest to longest), for the contract check.

    Drawn without touching the global RNG streams, so a run trains exactly as it would without
    the probe (augmentation draws from them)."""
    lengths = dataset.lengths()
    order = sorted(range(len(dataset)), key=lengths.__getitem__)
    count = min(size, len(order))
    picks = sorted({order[round(i * (len(order) - 1) / max(1, count - 1))] for i in range(count)})
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        batch = collate([dataset[i] for i in picks])
    random.setstate(python_state)
    np.random.set_state(numpy_state)
    return batch


def check_contract(
    model: nn.Module, batch: Batch, vocab_size: int, device: torch.device, where: str
) -> ContractReport:
    """Run the contract check; every violation in one UserError (one line each)."""
    targets, offset = [], 0
    for length in batch.target_lengths.tolist():
        targets.append(batch.targets[offset : offset + length].tolist())
        offset += length
    report = check_model(
        model, batch.features.to(device), batch.lengths.to(device), targets, vocab_size
    )
    if report.errors:
        raise UserError(
            "\n".join(f"{where}: the model breaks the contract: {e}" for e in report.errors)
        )
    return report


def build_optimizer(stages: dict[str, nn.Module], config: OptimizerConfig) -> torch.optim.Optimizer:
    """One param group per stage (freezing and per-stage LR act on groups); parameters no stage
    holds go in a last group so they still train."""
    groups, seen = [], set()
    for name, module in stages.items():
        params = [p for p in module.parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            groups.append(
                {"params": params, "stage": name, "lr_multiplier": config.stage_lr.get(name, 1.0)}
            )
    if config.name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=config.learning_rate,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
    cls = torch.optim.AdamW if config.name == "adamw" else torch.optim.Adam
    return cls(
        groups, lr=config.learning_rate, betas=config.betas, weight_decay=config.weight_decay
    )


def orphan_parameters(model: nn.Module, stages: dict[str, nn.Module]) -> list[str]:
    """Names of trainable parameters that belong to no stage (they would never train)."""
    staged = {id(p) for module in stages.values() for p in module.parameters()}
    return [n for n, p in model.named_parameters() if id(p) not in staged]


def make_sampler(profile: Profile, dataset: SequenceDataset) -> BucketBatchSampler:
    return BucketBatchSampler(
        dataset.lengths(),
        profile.data.batch_size,
        profile.data.bucket_width,
        shuffle=True,
        seed=profile.training.seed,
        sorted_first_epoch=True,
    )


def step_counts(training: TrainingConfig, batches_per_epoch: int) -> tuple[int, int]:
    """(optimizer steps per epoch, total steps; 0 = unknown: only a time budget ends the run)."""
    per_epoch = math.ceil(batches_per_epoch / training.grad_accumulation)
    total = per_epoch * training.max_epochs
    if training.max_steps:
        total = min(total, training.max_steps) if training.max_epochs else training.max_steps
    return per_epoch, total


def load_pretrained_weights(
    model: nn.Module, stages: dict[str, nn.Module], profile: Profile, vocabulary: Vocabulary
) -> LoadReport:
    """`model.pretrained` into a new model, before the optimizer exists (so nothing of the
    random initialization lingers in its state)."""
    return load_pretrained(
        model,
        stages,
        profile_pretrained(profile),
        list(vocabulary.tokens),
        profile.model.architecture,
    )

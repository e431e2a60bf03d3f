"""Scoring a model on a split: CTC loss, greedy error rate and a few beam-searched sample decodes.

One function for the engine's evaluations, the distillation summary and `signconsole eval`, so
their numbers agree by construction.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from signconsole.ctc.decode import beam_decode, greedy_decode
from signconsole.ctc.phoenix import clean_hypothesis
from signconsole.ctc.wer import ErrorCounts, error_counts
from signconsole.data.dataset import BucketBatchSampler, SequenceDataset, collate
from signconsole.data.vocabulary import Vocabulary
from signconsole.engine.losses import ctc_loss
from signconsole.events import SampleDecode
from signconsole.models.contract import forward


@dataclass
class EvalResult:
    loss: float  # CTC loss (mean over sequences with a finite loss)
    counts: ErrorCounts  # of the greedy hypotheses
    samples: list[SampleDecode]
    blank_only: float  # share of hypotheses that came out empty
    emitted: float  # share of best paths with any label at all (before the vocabulary)
    references: list[list[str]]
    hypotheses: list[list[str]]
    ids: list[str]
    seconds: float  # wall time of the forward passes and decoding


def sample_ids_to_show(dataset: SequenceDataset, count: int) -> set[str]:
    """The same few samples at every evaluation (so a user watches them improve), spread over
    the split and with distinct references."""
    if count <= 0:
        return set()
    first_of_each: dict[tuple[str, ...], str] = {}
    for entry in sorted(dataset.entries, key=lambda e: e.id):
        first_of_each.setdefault(entry.glosses, entry.id)
    candidates = list(first_of_each.values())
    stride = max(1, len(candidates) // count)
    return set(candidates[::stride][:count])


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    dataset: SequenceDataset,
    vocabulary: Vocabulary,
    *,
    device: torch.device,
    batch_size: int,
    beam_width: int = 5,
    wer_normalization: str = "none",
    samples: int = 0,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    decoder: str = "greedy",
) -> EvalResult:
    """The model is put in eval mode and left there; callers restore training mode.

    `decoder`: "greedy" (the engine's evaluations) or "beam" (every hypothesis by prefix beam
    search with `beam_width`; `signconsole eval --beam N`). Sample decodes always show both."""
    model.eval()
    started = time.perf_counter()
    total_loss, total_count, emitted = 0.0, 0, 0
    references: list[list[str]] = []
    hypotheses: list[list[str]] = []
    ids: list[str] = []
    decoded: list[SampleDecode] = []
    sampler = BucketBatchSampler(dataset.lengths(), batch_size, shuffle=False)
    loader = DataLoader(dataset, batch_sampler=sampler.batches(), collate_fn=collate)
    by_id = {entry.id: entry for entry in dataset.entries}
    clean = clean_hypothesis if wer_normalization == "phoenix" else list
    shown = sample_ids_to_show(dataset, samples)
    for batch in loader:
        batch = batch.to(device)
        with autocast():
            output = forward(model, batch.features, batch.lengths.to(device))
        loss = ctc_loss(output, batch.targets, batch.target_lengths)
        if math.isfinite(float(loss)):
            total_loss += float(loss) * len(batch.ids)
            total_count += len(batch.ids)
        log_probs = output.logits.float().log_softmax(-1)
        greedy = greedy_decode(log_probs, output.lengths)
        chosen = beam_decode(log_probs, output.lengths, beam_width) if decoder == "beam" else greedy
        for row, sample_id in enumerate(batch.ids):
            reference = list(by_id[sample_id].glosses)
            emitted += bool(greedy[row])
            hypothesis = clean(vocabulary.decode(chosen[row]))
            greedy_hypothesis = clean(vocabulary.decode(greedy[row]))
            references.append(reference)
            hypotheses.append(hypothesis)
            ids.append(sample_id)
            if sample_id in shown:
                beam_path = beam_decode(
                    log_probs[row : row + 1], output.lengths[row : row + 1], beam_width
                )[0]
                beam = clean(vocabulary.decode(beam_path))
                decoded.append(
                    SampleDecode(
                        sample_id,
                        tuple(reference),
                        tuple(greedy_hypothesis),
                        tuple(beam),
                        error_counts([reference], [beam]).rate,
                    )
                )
    count = max(1, len(hypotheses))
    return EvalResult(
        loss=total_loss / total_count if total_count else math.nan,
        counts=error_counts(references, hypotheses),
        samples=decoded,
        blank_only=sum(1 for h in hypotheses if not h) / count,
        emitted=emitted / count,
        references=references,
        hypotheses=hypotheses,
        ids=ids,
        seconds=time.perf_counter() - started,
    )

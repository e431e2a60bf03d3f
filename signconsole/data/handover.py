"""How a batch prepared in a worker process reaches the training process: its small tensors.

The big ones (features, or landmarks and mask) cross in the worker's shared-memory slots and
arrive copied into the training process's own memory (data/slots.py); the small ones go by
value in the result pipe (`small_by_value`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from signconsole.data.collating import RawBatch
from signconsole.data.dataset import Batch

# A batch's tensors of a few hundred bytes (`landmark_ids`: which landmarks a raw batch holds,
# or None). Pickled as tensors, each would cross to the training process as a shared-memory
# file of its own, whose descriptor that process then fetches from the worker over a socket
# (multiprocessing's resource sharer) and maps: 2.6-3.5 ms of its CPU a batch for five of
# them, against bytes in the result pipe (benchmarks/README.md, 2026-12-02 14:00-15:40).
SMALL_FIELDS = ("lengths", "targets", "target_lengths", "landmark_ids")


def small_by_value(prepared: RawBatch | Batch) -> RawBatch | Batch:
    """The batch a worker returns: its small tensors as numpy arrays, which pickle by value."""
    return replace(prepared, **_converted(prepared, torch.Tensor, torch.Tensor.numpy))


def small_as_tensors(prepared: RawBatch | Batch) -> RawBatch | Batch:
    """`small_by_value` undone in the training process (no copy: the arrays are its own)."""
    arrays = _converted(prepared, np.ndarray, torch.from_numpy)
    return replace(prepared, **arrays) if arrays else prepared


def _converted(prepared: object, kind: type, convert: Callable) -> dict[str, object]:
    fields = (getattr(prepared, name, None) for name in SMALL_FIELDS)
    return {
        name: convert(value)
        for name, value in zip(SMALL_FIELDS, fields, strict=True)
        if isinstance(value, kind)
    }

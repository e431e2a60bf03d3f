"""How a batch prepared in a worker process reaches the training process.

Its big tensors (features, or landmarks and mask) come back in shared memory, handed over by
descriptor; its small ones go by value in the result pipe (`small_by_value`). As a batch arrives,
the executor's thread copies it out of shared memory into the trainer's own memory
(`into_own_memory`), so the training step reads a batch as it would from an ideal loader.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
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


def into_own_memory(pin: bool, future: Future) -> None:
    """A batch returned by a worker process, moved into this process's own memory as it
    arrives, in the executor's own thread (`own_memory`)."""
    if not future.cancelled() and future.exception() is None:
        own_memory(future.result(), pin)


def own_memory(prepared: object, pin: bool) -> object:
    """Copy the big tensors of a batch a worker process returned out of shared memory (pinned
    when they go to a GPU); the shared file is then only unmapped here, its pages freed in the
    worker. Returns `prepared`, changed in place.

    The training thread then reads the batch from its own memory, as from an ideal loader. Read
    where it arrives, a batch costs the step twice: its shared pages are mapped on first touch
    (~4 of ~5 ms to first read a demo batch), and they are 4 KB pages where the process's own
    large tensors sit on 2 MB ones, so a matrix product reading them ran ~5-10% slower
    (benchmarks/README.md, 2026-12-02 14:00-15:40). The executor's thread does it as each batch
    arrives; `finish` does what it has not done yet, so the step never reads shared memory."""
    for name in ("features", "landmarks", "mask"):
        tensor = getattr(prepared, name, None)
        if tensor is not None and tensor.is_shared():
            setattr(prepared, name, tensor.pin_memory() if pin else tensor.clone())
    return prepared

"""Shared-memory slots: how a batch's big tensors cross from a worker process, reused.

A worker process writes a batch's big tensors (features, or landmarks and mask) into one of its
slots, shared memory it makes once and reuses batch after batch, and returns `InSlot`
placeholders in their place. The training process maps a slot the first time it arrives (its
file descriptor travels once, with that batch) and, as the result is unpickled in the executor's
thread, copies the tensors out into its own memory and marks the slot free. Nothing shared ever
reaches the training step.

Before, every batch was a new shared-memory file: made and zero-filled page by page in the
worker, its descriptor fetched over a socket and mapped by the training process, faulted in
there on the copy, and freed later. That was ~9-13 of the worker's ~44 ms of CPU a demo batch
on the core the training step shares (benchmarks/README.md, 2026-12-03). Written by hand: torch
shares a tensor by a new descriptor each time it is pickled, and DataLoader's workers do the
same; neither reuses a buffer across batches.

A slot's first `HEADER` bytes say whether a batch in it is still on its way (1) or was copied
out (0). A worker writes into the first free slot it has and makes a new one when none is, so
no count of batches in flight is assumed anywhere.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

import torch

BIG_FIELDS = ("features", "landmarks", "mask")
HEADER = 64  # bytes; also each tensor's alignment in a slot
GROWTH = 1.25  # a slot made for a batch has room for one a quarter longer


def _aligned(size: int) -> int:
    return math.ceil(size / HEADER) * HEADER


@dataclass(frozen=True)
class InSlot:
    """A tensor a worker wrote into slot `slot`, as it travels to the training process.

    Unpickled there it is the tensor itself, copied into that process's own memory (`_arrive`).
    `storage` is the slot's shared memory, sent with the first batch in a new slot only."""

    slot: tuple[int, int]  # (worker pid, slot number)
    storage: torch.UntypedStorage | None
    offset: int  # bytes
    shape: tuple[int, ...]
    dtype: torch.dtype
    tensors: int  # how many the batch put in the slot: once all are copied out, it is free

    def __reduce__(self):
        return _arrive, (
            self.slot,
            self.storage,
            self.offset,
            self.shape,
            self.dtype,
            self.tensors,
        )


class WorkerSlots:
    """The slots of one worker process."""

    def __init__(self) -> None:
        self._storages: list[torch.UntypedStorage] = []

    def __len__(self) -> int:
        return len(self._storages)

    def hold(self, prepared):
        """`prepared` (a Batch or RawBatch) with its big tensors written into a free slot and
        replaced by `InSlot` placeholders, to be returned to the training process."""
        tensors = {
            name: tensor.contiguous()
            for name in BIG_FIELDS
            if (tensor := getattr(prepared, name, None)) is not None
        }
        if not tensors:
            return prepared
        size = HEADER + sum(_aligned(tensor.nbytes) for tensor in tensors.values())
        number, announce = self._free_slot(size)
        storage = self._storages[number]
        placed, offset = {}, HEADER
        for name, tensor in tensors.items():
            view = torch.empty(0, dtype=tensor.dtype).set_(
                storage, offset // tensor.dtype.itemsize, tensor.shape
            )
            view.copy_(tensor)
            placed[name] = InSlot(
                (os.getpid(), number),
                storage if announce else None,
                offset,
                tuple(tensor.shape),
                tensor.dtype,
                tensors=len(tensors),
            )
            offset += _aligned(tensor.nbytes)
        _flag(storage).fill_(1)  # on its way: not written again until the trainer copied it
        return replace(prepared, **placed)

    def _free_slot(self, size: int) -> tuple[int, bool]:
        """A free slot with room for `size` bytes, and whether it is new (its memory must
        travel with this batch)."""
        free = [n for n, storage in enumerate(self._storages) if _flag(storage).item() == 0]
        roomy = [n for n in free if self._storages[n].nbytes() >= size]
        if roomy:
            return roomy[0], False
        if free:  # grown: the smaller memory goes, the new one travels with this batch
            self._storages[free[0]] = _new_storage(size)
            return free[0], True
        self._storages.append(_new_storage(size))
        return len(self._storages) - 1, True


def _new_storage(size: int) -> torch.UntypedStorage:
    storage = torch.UntypedStorage._new_shared(_aligned(int(size * GROWTH)))
    _flag(storage).fill_(0)
    return storage


def _flag(storage: torch.UntypedStorage) -> torch.Tensor:
    return torch.empty(0, dtype=torch.uint8).set_(storage, 0, (1,))


# The training process's mappings of the workers' slots, by (worker pid, slot number).
_mapped: dict[tuple[int, int], torch.UntypedStorage] = {}
# Set in the training process when its batches go to a GPU (`LoaderWorkers`): a batch is copied
# out of its slot straight into pinned memory, which the copy to the device wants, instead of
# into pageable memory and then once more, pinned, in the training thread.
pin_arrivals = False
_arrived: dict[tuple[int, int], int] = {}  # tensors of a slot's batch copied out so far


def _arrive(
    slot: tuple[int, int],
    storage: torch.UntypedStorage | None,
    offset: int,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    tensors: int,
) -> torch.Tensor:
    """A tensor from a worker's slot, copied into this process's memory (while unpickling; the
    batch's tensors arrive in whatever order its fields are restored)."""
    if storage is not None:
        _mapped[slot] = storage  # a new or grown slot; the old mapping is dropped
    storage = _mapped[slot]
    view = torch.empty(0, dtype=dtype).set_(storage, offset // dtype.itemsize, shape)
    own = (
        torch.empty(shape, dtype=dtype, pin_memory=True).copy_(view)
        if pin_arrivals
        else view.clone()
    )
    arrived = _arrived.pop(slot, 0) + 1
    if arrived == tensors:
        _flag(storage).fill_(0)
    else:
        _arrived[slot] = arrived
    return own


def forget(pids: list[int]) -> None:
    """Unmap the slots of worker processes that ended (their memory is freed with the last
    mapping)."""
    for key in [key for key in _mapped if key[0] in pids]:
        del _mapped[key]
        _arrived.pop(key, None)

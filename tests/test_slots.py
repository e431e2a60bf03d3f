"""A worker's shared-memory slots (data/slots.py), in one process: what the training process
unpickles is the batch that was put in, in its own memory; a slot is written again only once
its batch was copied out, and its memory travels only when it is new."""

from __future__ import annotations

import os
from multiprocessing.reduction import ForkingPickler

import pytest
import torch

from signconsole.data import slots
from signconsole.data.collating import RawBatch
from signconsole.data.dataset import Batch


@pytest.fixture(autouse=True)
def _forget_this_process_slots():
    yield
    slots.forget([os.getpid()])


def batch(frames: int, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(2, frames, 9, generator=generator)
    lengths = torch.tensor([frames, frames - 1])
    return Batch(["a", "b"], features, lengths, torch.tensor([1, 2, 3]), torch.tensor([2, 1]))


def travel(prepared):
    """What the training process gets: the worker's result pickled and unpickled."""
    return ForkingPickler.loads(ForkingPickler.dumps(prepared))


def test_a_batch_arrives_equal_in_this_process_memory_and_frees_its_slot() -> None:
    worker = slots.WorkerSlots()
    sent = batch(30)
    held = worker.hold(sent)
    assert isinstance(held.features, slots.InSlot) and held.features.storage is not None
    arrived = travel(held)
    assert torch.equal(arrived.features, sent.features) and not arrived.features.is_shared()
    assert arrived.ids == sent.ids and torch.equal(arrived.lengths, sent.lengths)
    again = worker.hold(batch(20, seed=1))  # fits: the same slot, its memory not sent again
    assert len(worker) == 1 and again.features.storage is None
    assert torch.equal(travel(again).features, batch(20, seed=1).features)


def test_a_slot_whose_batch_is_on_its_way_is_not_written_until_it_arrives() -> None:
    worker = slots.WorkerSlots()
    first, second = worker.hold(batch(30, 1)), worker.hold(batch(30, 2))
    assert len(worker) == 2  # the first slot was still in flight: a second one was made
    assert torch.equal(travel(second).features, batch(30, 2).features)
    assert torch.equal(travel(first).features, batch(30, 1).features)
    worker.hold(batch(30, 3))
    assert len(worker) == 2  # both free again: no third


def test_a_longer_batch_grows_its_slot_and_sends_the_new_memory() -> None:
    worker = slots.WorkerSlots()
    travel(worker.hold(batch(10)))
    longer = worker.hold(batch(400, seed=4))
    assert len(worker) == 1 and longer.features.storage is not None
    assert torch.equal(travel(longer).features, batch(400, seed=4).features)


def test_landmarks_and_mask_share_one_slot_and_keep_their_dtypes() -> None:
    """A raw batch (float16 landmarks, a bool mask of odd size) in one slot, each aligned."""
    landmarks = torch.randn(3, 7, 5, 3).half()
    mask = torch.rand(3, 7, 5) > 0.5
    raw = RawBatch(["x"] * 3, torch.tensor([7, 6, 5]), torch.tensor([1]), torch.tensor([1]))
    raw.landmarks, raw.mask = landmarks, mask
    worker = slots.WorkerSlots()
    held = worker.hold(raw)
    assert held.landmarks.slot == held.mask.slot and held.mask.tensors == 2
    assert held.mask.offset % slots.HEADER == 0
    arrived = travel(held)
    assert arrived.landmarks.dtype == torch.float16 and arrived.mask.dtype == torch.bool
    assert torch.equal(arrived.landmarks, landmarks) and torch.equal(arrived.mask, mask)
    worker.hold(raw)
    assert len(worker) == 1  # freed once its last tensor was copied out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs a CUDA device")
def test_batches_for_a_gpu_arrive_in_pinned_memory(monkeypatch) -> None:
    monkeypatch.setattr(slots, "pin_arrivals", True)
    worker = slots.WorkerSlots()
    arrived = travel(worker.hold(batch(30)))
    assert arrived.features.is_pinned() and torch.equal(arrived.features, batch(30).features)


def test_a_slot_is_free_once_all_its_tensors_arrived_in_any_order() -> None:
    raw = RawBatch(["x"], torch.tensor([4]), torch.tensor([1]), torch.tensor([1]))
    raw.landmarks, raw.mask = torch.randn(1, 4, 5, 3).half(), torch.ones(1, 4, 5, dtype=torch.bool)
    worker = slots.WorkerSlots()
    held = worker.hold(raw)
    assert torch.equal(travel(held.mask), raw.mask)  # the mask first: the slot is still busy
    worker.hold(raw)
    assert len(worker) == 2
    assert torch.equal(travel(held.landmarks), raw.landmarks)  # now all of it: free
    worker.hold(raw)
    assert len(worker) == 2


def test_a_batch_takes_a_free_slot_with_room_before_growing_another() -> None:
    worker = slots.WorkerSlots()
    large, small = worker.hold(batch(400)), worker.hold(batch(10))  # slot 0 large, slot 1 small
    travel(small), travel(large)
    again = worker.hold(batch(400, seed=2))
    assert again.features.slot[1] == 0 and again.features.storage is None and len(worker) == 2

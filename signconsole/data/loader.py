"""Ready batches prepared off the training thread.

Preparing a batch (reading or spelling sequences, augmenting, deriving the 6516-vector,
normalizing, padding) took 45-70 ms a batch in the training thread, a fifth of a demo step; on a
GPU the model waited for it. `batch_stream` prepares batches on background threads, `prefetch`
ahead, in order, while the training thread steps.

Threads, not worker processes: they share the dataset's one in-memory store (float16 landmarks
or features), where each DataLoader worker process would hold its own copy of it; the heavy parts
(numpy, torch and zlib kernels) release the GIL.

Either way a batch is padded as landmarks first (`collate_raw`) and its 6516-vectors derived and
normalized for the whole batch at once (`Featurizer`). On the CPU the loader threads do that; on
CUDA they ship float16 landmarks and their mask in pinned memory (2 KB a frame, 1/8 of the 26 KB
float32 6516-vector) and the vectors are derived on the device.

Every item's augmentation and synthesis is seeded by (epoch, index), so the batches are the
same whatever the number of threads and whichever finishes first.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import torch

from signconsole.data.dataset import Batch, Item, SequenceDataset
from signconsole.data.layout import LAYOUT
from signconsole.data.model_input import ModelInput


@dataclass
class RawBatch:
    """A padded batch before features: landmarks + mask (float16 when shipped to a device), or
    stored features (float16)."""

    ids: list[str]
    lengths: torch.Tensor  # [B] int64
    targets: torch.Tensor  # CTC concatenated form
    target_lengths: torch.Tensor  # [B]
    landmarks: torch.Tensor | None = None  # [B, T, 543, 3]
    mask: torch.Tensor | None = None  # [B, T, 543] bool, False on padding
    features: torch.Tensor | None = None  # [B, T, F] float16, precomputed files

    def pin_memory(self) -> RawBatch:
        def pin(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.pin_memory()

        return replace(
            self, landmarks=pin(self.landmarks), mask=pin(self.mask), features=pin(self.features)
        )

    def to(self, device: torch.device, non_blocking: bool = False) -> RawBatch:
        def move(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.to(device, non_blocking=non_blocking)

        return replace(
            self,
            landmarks=move(self.landmarks),
            mask=move(self.mask),
            features=move(self.features),
        )


def collate_raw(items: list[Item]) -> RawBatch:
    lengths = [
        len(item.landmarks if item.landmarks is not None else item.features) for item in items
    ]
    frames = max(lengths)
    targets = torch.tensor([t for item in items for t in item.targets], dtype=torch.long)
    target_lengths = torch.tensor([len(item.targets) for item in items], dtype=torch.long)
    batch = RawBatch([item.id for item in items], torch.tensor(lengths), targets, target_lengths)
    if items[0].landmarks is not None:
        dtype = items[0].landmarks.dtype  # float16 shipped to a device, float32 on the CPU
        batch.landmarks = torch.zeros(len(items), frames, LAYOUT.n_landmarks, 3, dtype=dtype)
        batch.mask = torch.zeros(len(items), frames, LAYOUT.n_landmarks, dtype=torch.bool)
        for row, item in enumerate(items):
            batch.landmarks[row, : lengths[row]] = item.landmarks
            batch.mask[row, : lengths[row]] = item.mask
    else:
        first = items[0].features
        assert first is not None
        batch.features = torch.zeros(len(items), frames, first.shape[-1], dtype=torch.half)
        for row, item in enumerate(items):
            batch.features[row, : lengths[row]] = item.features
    return batch


class Featurizer:
    """RawBatch -> Batch on the batch's device: the dataset's own `ModelInput` derives and
    normalizes there what the CPU path derives per sequence."""

    def __init__(self, model_input: ModelInput) -> None:
        self.model_input = model_input

    def __call__(self, raw: RawBatch) -> Batch:
        if raw.landmarks is not None:
            assert raw.mask is not None
            values = self.model_input.derive(raw.landmarks, raw.mask, raw.lengths)
            features = self.model_input.columns.widen(values)
        else:
            assert raw.features is not None
            features = self.model_input.stored(raw.features, raw.lengths)
        return Batch(raw.ids, features, raw.lengths, raw.targets, raw.target_lengths)


class BatchStream:
    """An iterator of ready batches; `close()` (also on exhaustion or when dropped) stops the
    threads. `wait_seconds` is the time the consumer spent waiting in `next()`."""

    def __init__(
        self,
        prepare: Callable[[list[int]], object],
        finish: Callable[[object], Batch],
        batches: list[list[int]],
        workers: int,
        prefetch: int,
    ) -> None:
        self._prepare, self._finish = prepare, finish
        self._todo = iter(batches)
        self._pending: deque[Future] = deque()
        self._pool = (
            ThreadPoolExecutor(workers, thread_name_prefix="batches") if workers > 0 else None
        )
        self.wait_seconds = 0.0
        if self._pool is not None:
            for indices in itertools.islice(self._todo, max(1, prefetch)):
                self._pending.append(self._pool.submit(prepare, indices))

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        started = time.perf_counter()
        try:
            if self._pool is None:
                indices = next(self._todo, None)
                if indices is None:
                    raise StopIteration
                prepared = self._prepare(indices)
            else:
                if not self._pending:
                    self.close()
                    raise StopIteration
                prepared = self._pending.popleft().result()  # re-raises a failed preparation
                following = next(self._todo, None)
                if following is not None:
                    self._pending.append(self._pool.submit(self._prepare, following))
            return self._finish(prepared)
        finally:
            self.wait_seconds += time.perf_counter() - started

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending.clear()

    def __del__(self) -> None:
        self.close()


def batch_stream(
    dataset: SequenceDataset,
    batches: list[list[int]],
    device: torch.device | str,
    *,
    epoch: int = 0,
    workers: int = 1,
    prefetch: int = 4,
    features_on_device: bool | None = None,
) -> BatchStream:
    """Batches of `dataset` for the index lists `batches` (a sampler's epoch), ready on `device`.

    `workers` threads prepare up to `prefetch` batches ahead (0: each batch is prepared in the
    calling thread when asked for, as a plain loop would). `features_on_device` (default: on
    CUDA) ships float16 landmarks and derives the features on the device."""
    device = torch.device(device)
    dataset.set_epoch(epoch)
    on_device = device.type == "cuda" if features_on_device is None else features_on_device
    pin = device.type == "cuda"
    featurizer = Featurizer(dataset.model_input)

    def prepare(indices: list[int]) -> RawBatch | Batch:
        # Padded first, then derived and normalized once for the whole batch: one set of
        # tensor ops instead of one per sequence (~10% of a demo batch's preparation).
        raw = collate_raw([dataset.raw_item(i, shipped=on_device) for i in indices])
        if on_device:
            return raw.pin_memory() if pin else raw
        batch = featurizer(raw)
        return replace(batch, features=batch.features.pin_memory()) if pin else batch

    def finish(prepared: object) -> Batch:
        if isinstance(prepared, Batch):
            return prepared.to(device, non_blocking=True)
        assert isinstance(prepared, RawBatch)
        return featurizer(prepared.to(device, non_blocking=True))

    return BatchStream(prepare, finish, batches, workers, prefetch)

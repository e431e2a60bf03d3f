"""Ready batches prepared off the training thread.

Preparing a batch (reading or spelling sequences, augmenting, deriving the 6516-vector,
normalizing, padding) took 45-70 ms a batch in the training thread, a fifth of a demo step; on a
GPU the model waited for it. `batch_stream` prepares batches on background workers, `prefetch`
ahead, in order, while the training thread steps.

Workers are forked processes where the platform allows it (`data.loader = "auto"`: Linux), else
threads; `LoaderWorkers` starts them once a run and `stream` hands out an epoch's batches.
Forked, they share the dataset's one in-memory store (float16 landmarks or features)
copy-on-write instead of each unpickling a copy, and they do not take the training thread's GIL:
a loader thread spelling sequences in Python competes with the step's own Python (it dispatches
~2,000 ops a step). Beside a loader kept busy, the demo's bare loop ran at a median 0.80 of its
speed alone with a thread, 0.89 with a process (benchmarks/README.md). A worker process returns
a batch's big tensors through shared-memory slots it reuses, and the training process copies
them into its own memory as the result arrives, in the executor's thread (data/slots.py); the
small ones go by value in the pipe (data/handover.py). The engine starts the workers before it
builds the model (`LoaderWorkers.start`). A worker ignores Ctrl-C (the trainer handles it) and
exits when its trainer dies; it never holds the run lock (store/lock.py).

Either way a batch is padded as landmarks first (`collate_raw`) and its 6516-vectors derived and
normalized for the whole batch at once (`Featurizer`). On the CPU the workers do that; on CUDA
they ship float16 landmarks and their mask (3.8 KB a frame, 1/7 of the 26 KB float32 6516-vector;
525 bytes when the face is ignored and the speller leaves it out), pinned on the training
process's side, and the vectors are derived on the device. Only the big tensors travel in shared
memory; the small ones go by value in the pipe (data/handover.py).

Every item's augmentation and synthesis is seeded by (epoch, index), so the batches are the
same whatever the number or kind of workers and whichever finishes first.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Literal

import torch
import torch.multiprocessing  # noqa: F401  (registers the shared-memory pickling of tensors)

from signconsole.config import LoaderKind
from signconsole.data import slots
from signconsole.data.collating import Featurizer, RawBatch, collate_raw
from signconsole.data.dataset import Batch, SequenceDataset
from signconsole.data.handover import small_as_tensors, small_by_value
from signconsole.errors import UserError
from signconsole.runtime import release_free_heap, worker_processes_available


class LoaderError(UserError):
    pass


def resolve_loader(kind: str) -> Literal["processes", "threads"]:
    if kind == "threads":
        return "threads"
    if worker_processes_available():
        return "processes"
    if kind == "processes":
        raise LoaderError(
            f'data.loader = "processes" needs fork (Linux); this is {sys.platform}: '
            'set data.loader = "auto" or "threads"'
        )
    return "threads"


# What a forked worker runs: its batch preparation, inherited through fork by `_start_worker`
# (a closure over the dataset cannot be pickled, and pickling the dataset would copy its store).
_prepare_in_this_worker: Callable[[int, list[int]], object] | None = None


def is_shared_memory_error(error: BaseException) -> bool:
    """Whether torch failed to make or grow a shared-memory file (`/torch_<pid>_...` in
    /dev/shm), the way a worker hands a batch over: /dev/shm full or limited."""
    message = str(error)
    return "</torch_" in message or "shared memory" in message


_slots = slots.WorkerSlots()  # a worker process's own (`_start_worker`)


def _start_worker(prepare: Callable[[int, list[int], bool], object], parent: int) -> None:
    global _prepare_in_this_worker, _slots
    _prepare_in_this_worker = prepare
    _slots = slots.WorkerSlots()
    # A worker waits on a queue it also holds the writing end of, so it never sees the parent
    # die (killed, a torchrun rank torn down): it would live on as an orphan. It checks instead.
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    # Ctrl-C reaches the whole process group: the trainer handles it and closes the pool; a
    # worker dying of it first would break the pool under a run that is stopping cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)  # one core per worker: the step keeps the others


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _prepare_in_worker(epoch: int, indices: list[int], compact: bool) -> object:
    assert _prepare_in_this_worker is not None, "not a worker started by LoaderWorkers"
    return small_by_value(_slots.hold(_prepare_in_this_worker(epoch, indices, compact)))


Queued = tuple[int, list[int], Future]  # (epoch, indices, the batch being prepared)


def settle(futures: list[Future]) -> None:
    """Cancel what has not started and wait for what has, so the workers are idle after."""
    for future in futures:
        future.cancel()
    for future in futures:
        if not future.cancelled():
            with contextlib.suppress(Exception):
                future.result()


class LoaderWorkers:
    """The workers preparing one dataset's batches for a whole run (forked once, not once an
    epoch), and how a prepared batch reaches `device`. `stream` gives an epoch's batches."""

    def __init__(
        self,
        dataset: SequenceDataset,
        device: torch.device | str,
        workers: int = 1,
        loader: LoaderKind = "auto",
        features_on_device: bool | None = None,
        compact: bool = False,
    ) -> None:
        self._pool: Executor | None = None
        self._carried: deque[Queued] = deque()  # a later epoch's batches, already submitted
        self.dataset = dataset
        self.device = torch.device(device)
        self.workers = workers
        self.kind = resolve_loader(loader)
        self.on_device = (
            self.device.type == "cuda" if features_on_device is None else features_on_device
        )
        self.pin = self.device.type == "cuda"
        # A forked worker must not touch CUDA (pinning does): the training process pins instead,
        # as it copies each batch out of its slot.
        self.pin_in_worker = self.pin and self.kind == "threads"
        if self.pin and self.kind == "processes":
            slots.pin_arrivals = True
        self.featurizer = Featurizer(dataset.model_input, compact)

    @property
    def compact(self) -> bool:
        """Whether batches hold only the derived columns (`Featurizer`). It may change after
        the workers started: every request says which it wants."""
        return self.featurizer.compact

    @compact.setter
    def compact(self, compact: bool) -> None:
        self.featurizer.compact = compact and not self.featurizer.model_input.columns.full

    def start(self) -> None:
        """Start the workers now rather than at the first batch.

        A forked worker shares the training process's memory copy-on-write, so every page that
        existed at the fork is copied the first time the trainer writes it afterwards. The
        engine starts its workers before it builds the model and runs it on a probe batch
        (engine/assembly.py): started at the first batch, the run's first 20 steps took ~30,000
        extra page faults and ran up to 30% slower (benchmarks/README.md, 2026-12-02
        14:00-15:40)."""
        if self.workers > 0 and self._pool is None:
            if self.kind == "processes":
                release_free_heap()  # a second run in one process (the console) has a big heap
            self._executor().submit(os.getpid)  # a process pool forks its workers here

    def _executor(self) -> Executor:
        if self._pool is None:
            if self.kind == "processes":
                self._pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("fork"),
                    initializer=_start_worker,
                    initargs=(self.prepare, os.getpid()),
                )
            else:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="batches")
        return self._pool

    def prepare(
        self, epoch: int, indices: list[int], compact: bool | None = None
    ) -> RawBatch | Batch:
        # Padded first, then derived and normalized once for the whole batch: one set of
        # tensor ops instead of one per sequence (~10% of a demo batch's preparation).
        if compact is not None:  # a worker process's own copy, set as the request says
            self.compact = compact
        items = self.dataset.raw_items(indices, shipped=self.on_device, epoch=epoch)
        raw = collate_raw(items)
        if self.on_device:
            return raw.pin_memory() if self.pin_in_worker else raw
        batch = self.featurizer(raw)
        if self.pin_in_worker:
            return replace(batch, features=batch.features.pin_memory())
        return batch

    def finish(self, prepared: object) -> Batch:
        prepared = small_as_tensors(prepared)  # type: ignore[arg-type]
        if isinstance(prepared, Batch):
            return prepared.to(self.device, non_blocking=self.pin_in_worker)
        assert isinstance(prepared, RawBatch)
        if self.pin and not self.pin_in_worker:
            prepared = prepared.pin_memory()
        return self.featurizer(prepared.to(self.device, non_blocking=self.pin))

    def submit(self, epoch: int, indices: list[int]) -> Future:
        pool = self._executor()
        if self.kind == "processes":
            return pool.submit(_prepare_in_worker, epoch, indices, self.compact)
        return pool.submit(self.prepare, epoch, indices)

    def stream(
        self,
        batches: list[list[int]],
        epoch: int,
        prefetch: int = 4,
        then: tuple[int, list[list[int]]] | None = None,
    ) -> BatchStream:
        """The batches `batches` (a sampler's epoch, index lists) of `epoch`, in order.

        `then`, the next epoch and its batches: once this epoch's are all queued, the workers
        go on with the next one's first batches (during the epoch's end and its evaluation),
        and the next `stream` starts on those instead of on idle workers."""
        self.dataset.set_epoch(epoch)  # what the dataset's own items (checks, probes) then see
        return BatchStream(self, batches, epoch, prefetch, then=then)

    def carry(self, queued: list[Queued]) -> None:
        """Keep batches already submitted for a later epoch until its stream starts."""
        self.drop_carried()
        self._carried = deque(queued)

    def take_carried(self, wanted: deque[tuple[int, list[int]]]) -> deque[Queued]:
        """The carried batches that are the first of `wanted` (removed from it), in order; the
        others are cancelled."""
        taken: deque[Queued] = deque()
        while self._carried and wanted and self._carried[0][:2] == wanted[0]:
            taken.append(self._carried.popleft())
            wanted.popleft()
        self.drop_carried()
        return taken

    def drop_carried(self) -> None:
        settle([future for _, _, future in self._carried])
        self._carried.clear()

    def close(self) -> None:
        self.drop_carried()
        if self._pool is not None:
            pids = list(getattr(self._pool, "_processes", None) or ())
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            slots.forget(pids)

    def __del__(self) -> None:
        # Dropped at interpreter exit, multiprocessing may have closed the pool's pipes already.
        with contextlib.suppress(OSError):
            self.close()


class BatchStream:
    """An iterator of an epoch's ready batches. `close()` (also on exhaustion or when dropped)
    cancels what it still had queued of its epoch and hands the next epoch's (`then`) to the
    workers. `wait_seconds` is the time the consumer spent waiting in `next()`."""

    def __init__(
        self,
        workers: LoaderWorkers,
        batches: list[list[int]],
        epoch: int,
        prefetch: int,
        owns_workers: bool = False,
        then: tuple[int, list[list[int]]] | None = None,
    ) -> None:
        self._workers, self._epoch, self._owns = workers, epoch, owns_workers
        self._todo: deque[tuple[int, list[int]]] = deque((epoch, b) for b in batches)
        if then is not None:
            self._todo.extend((then[0], b) for b in then[1])
        self._parallel = workers.workers > 0
        self._prefetch = max(1, prefetch)
        self.wait_seconds = 0.0
        self._pending: deque[Queued] = deque()
        if self._parallel:
            self._pending = workers.take_carried(self._todo)
            self._fill()

    def _fill(self) -> None:
        while len(self._pending) < self._prefetch and self._todo:
            epoch, indices = self._todo.popleft()
            self._pending.append((epoch, indices, self._workers.submit(epoch, indices)))

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        started = time.perf_counter()
        workers = self._workers
        try:
            if not self._parallel:
                if not self._todo or self._todo[0][0] != self._epoch:
                    raise StopIteration
                prepared = workers.prepare(self._epoch, self._todo.popleft()[1])
            else:
                if not self._pending or self._pending[0][0] != self._epoch:
                    self.close()
                    raise StopIteration
                prepared = self._result(self._pending.popleft()[2])
                self._fill()
            return workers.finish(prepared)
        finally:
            self.wait_seconds += time.perf_counter() - started

    def _result(self, future: Future) -> object:
        """The prepared batch; a failed preparation re-raises here, in the training thread."""
        try:
            return future.result()
        except BrokenProcessPool:
            self._stop()
            raise LoaderError(
                "a worker process preparing batches died (killed, out of memory, or out of "
                "shared memory); lower data.num_workers or data.batch_size, give /dev/shm more "
                'room (docker run --shm-size=2g), or set data.loader = "threads"'
            ) from None
        except RuntimeError as error:
            if not is_shared_memory_error(error):
                raise
            self._stop()
            raise LoaderError(
                f"a loader worker could not get shared memory for a batch ({error}): /dev/shm "
                "is full or too small (Docker gives 64 MB); give it more room (docker run "
                '--shm-size=2g), lower data.batch_size, or set data.loader = "threads"'
            ) from None

    def _stop(self) -> None:
        self._pending.clear()
        self._workers.close()

    def close(self) -> None:
        """Cancel this epoch's batches still queued and wait for those being prepared; the next
        epoch's go to the workers for the next stream (they are the run's next batches whether
        this epoch ended or was cut short: a resume starts a new process)."""
        pending, self._pending = self._pending, deque()
        settle([future for epoch, _, future in pending if epoch == self._epoch])
        ahead = [queued for queued in pending if queued[0] != self._epoch]
        if self._owns:
            settle([future for _, _, future in ahead])
            self._workers.close()
        elif ahead:
            self._workers.carry(ahead)

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
    loader: LoaderKind = "auto",
    features_on_device: bool | None = None,
    compact: bool = False,
) -> BatchStream:
    """One epoch's batches of `dataset` on workers of its own, which end with the stream (the
    engine keeps one `LoaderWorkers` for the whole run instead).

    `workers` processes or threads (`loader`) prepare up to `prefetch` batches ahead (0: each
    batch is prepared in the calling thread when asked for, as a plain loop would).
    `features_on_device` (default: on CUDA) ships float16 landmarks and derives the features on
    the device. `compact`: only the derived columns (see `Featurizer`)."""
    pool = LoaderWorkers(dataset, device, workers, loader, features_on_device, compact)
    dataset.set_epoch(epoch)
    return BatchStream(pool, batches, epoch, prefetch, owns_workers=True)

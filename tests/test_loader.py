"""Batches prepared off the training thread: same batches as a plain loop, in order, errors
surface, workers (threads or processes) stop; features derived from float16 landmarks equal the
dataset's own."""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from signconsole.data import loader as loader_module
from signconsole.data import slots
from signconsole.data.collating import Featurizer, collate_raw
from signconsole.data.dataset import BucketBatchSampler, SequenceDataset, collate
from signconsole.data.layout import FEATURE_DIM
from signconsole.data.loader import (
    LoaderError,
    LoaderWorkers,
    batch_stream,
    worker_processes_available,
)
from signconsole.data.model_input import ModelInput


def epoch_batches(dataset: SequenceDataset, epoch: int = 0) -> list[list[int]]:
    sampler = BucketBatchSampler(dataset.lengths(), 4, shuffle=True, seed=1)
    sampler.set_epoch(epoch)
    return sampler.batches()


def loader_workers() -> list:
    threads = [t for t in threading.enumerate() if t.name.startswith("batches")]
    return [*threads, *multiprocessing.active_children()]


LOADERS = [
    "threads",
    pytest.param(
        "processes",
        marks=pytest.mark.skipif(not worker_processes_available(), reason="needs fork (Linux)"),
    ),
]


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("workers", [1, 3])
def test_workers_give_the_batches_of_a_plain_loop_in_order(
    spelled_data, workers: int, loader: str
) -> None:
    train = spelled_data.train
    batches = epoch_batches(train, epoch=2)
    plain = list(batch_stream(train, batches, "cpu", epoch=2, workers=0))
    stream = batch_stream(
        train, batches, "cpu", epoch=2, workers=workers, prefetch=3, loader=loader
    )
    prepared = list(stream)
    assert [b.ids for b in prepared] == [b.ids for b in plain]
    for a, b in zip(prepared, plain, strict=True):
        assert torch.equal(a.features, b.features) and torch.equal(a.targets, b.targets)
    assert not loader_workers()  # exhausted: the workers are gone


@pytest.mark.parametrize("loader", LOADERS)
def test_one_set_of_workers_serves_every_epoch_of_a_run(spelled_data, loader: str) -> None:
    """Forked once a run, not once an epoch; each epoch still gets its own spelled sequences."""
    train = spelled_data.train
    workers = LoaderWorkers(train, "cpu", 1, loader)
    seen = set()
    try:
        for epoch in (3, 4):
            batches = epoch_batches(train, epoch)[:3]
            prepared = list(workers.stream(batches, epoch))
            plain = list(batch_stream(train, batches, "cpu", epoch=epoch, workers=0))
            for a, b in zip(prepared, plain, strict=True):
                assert a.ids == b.ids and torch.equal(a.features, b.features)
            seen |= {p.pid for p in multiprocessing.active_children()}
            seen |= {t.ident for t in threading.enumerate() if t.name.startswith("batches")}
    finally:
        workers.close()
    assert len(seen) == 1
    assert not loader_workers()


@pytest.mark.parametrize("loader", LOADERS)
def test_the_next_epochs_first_batches_are_prepared_before_its_stream_starts(
    spelled_data, loader: str
) -> None:
    """At an epoch's end the workers are already on the next epoch's batches (the engine's
    evaluation runs meanwhile); the next stream takes them as they are, each prepared once.
    When the next epoch turns out different (a stop, a changed plan) they are dropped."""
    train = spelled_data.train
    workers = LoaderWorkers(train, "cpu", 1, loader)
    submitted: list[tuple[int, list[int]]] = []
    submit = workers.submit
    workers.submit = lambda epoch, indices: (
        submitted.append((epoch, indices))
        or submit(  # type: ignore[method-assign]
            epoch, indices
        )
    )
    first, second = epoch_batches(train, 3)[:2], epoch_batches(train, 4)[:5]
    try:
        assert len(list(workers.stream(first, 3, prefetch=3, then=(4, second)))) == 2
        ahead = submitted[2:]
        assert ahead == [(4, b) for b in second[:3]]  # queued before epoch 4's stream exists
        prepared = list(workers.stream(second, 4, prefetch=3, then=(5, [])))
        assert submitted == [(3, b) for b in first] + [(4, b) for b in second]  # none twice
        plain = list(batch_stream(train, second, "cpu", epoch=4, workers=0))
        for a, b in zip(prepared, plain, strict=True):
            assert a.ids == b.ids and torch.equal(a.features, b.features)

        list(workers.stream(first, 3, prefetch=2, then=(4, second)))
        other = epoch_batches(train, 4)[5:7]  # not what was queued: prepared anew, in order
        prepared = list(workers.stream(other, 4, prefetch=2))
        plain = list(batch_stream(train, other, "cpu", epoch=4, workers=0))
        for a, b in zip(prepared, plain, strict=True):
            assert a.ids == b.ids and torch.equal(a.features, b.features)
    finally:
        workers.close()
    assert not loader_workers()


@pytest.mark.skipif(not worker_processes_available(), reason="needs fork (Linux)")
def test_worker_processes_survive_ctrl_c_and_a_killed_one_is_one_clear_error(
    spelled_data,
) -> None:
    """Ctrl-C reaches the whole process group: the trainer stops cleanly, so the workers must
    not die of it. A worker killed outright (out of memory) is one line saying what to change."""
    train = spelled_data.train
    batches = epoch_batches(train)
    stream = batch_stream(train, batches, "cpu", workers=1, prefetch=2, loader="processes")
    first = next(stream)
    (worker,) = multiprocessing.active_children()
    os.kill(worker.pid, signal.SIGINT)
    rest = list(stream)
    assert [first.ids, *(b.ids for b in rest)] == [
        b.ids for b in batch_stream(train, batches, "cpu", workers=0)
    ]
    stream = batch_stream(train, batches, "cpu", workers=1, prefetch=1, loader="processes")
    next(stream)
    (worker,) = multiprocessing.active_children()
    os.kill(worker.pid, signal.SIGKILL)
    with pytest.raises(LoaderError, match="worker process preparing batches died.*data.loader"):
        list(stream)
    assert not loader_workers()


def start_worker_without_room(prepare, parent) -> None:
    """A worker whose shared-memory files cannot grow past 64 KB, as in a full /dev/shm (torch
    raises its own error either way: here EFBIG, there ENOSPC)."""
    loader_module._start_worker_unlimited(prepare, parent)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))


@pytest.mark.skipif(not worker_processes_available(), reason="needs fork (Linux)")
def test_shared_memory_running_out_is_one_clear_error(spelled_data, monkeypatch) -> None:
    """Docker gives /dev/shm 64 MB: a worker that cannot hand its batch over in shared memory is
    one line saying what to change, and its workers end."""
    monkeypatch.setattr(
        loader_module, "_start_worker_unlimited", loader_module._start_worker, raising=False
    )
    monkeypatch.setattr(loader_module, "_start_worker", start_worker_without_room)
    train = spelled_data.train
    stream = batch_stream(train, epoch_batches(train), "cpu", workers=1, loader="processes")
    with pytest.raises(LoaderError, match=r"shared memory.*--shm-size.*data.loader") as raised:
        next(stream)
    assert "\n" not in str(raised.value)
    assert not loader_workers()


KILLED_TRAINER = """
import multiprocessing, os, signal, time
from signconsole.data.loader import BatchStream, LoaderWorkers
class Slow(LoaderWorkers):  # no dataset: a worker that is busy when its trainer dies
    def __init__(self):
        self.workers, self.kind, self._pool, self._carried = 1, "processes", None, []
        self.pin = False
    compact = False
    def prepare(self, epoch, indices, compact=None):
        time.sleep(60)
stream = BatchStream(Slow(), [[0], [1]], 0, 1)
time.sleep(0.5)
print(*(p.pid for p in multiprocessing.active_children()), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(not worker_processes_available(), reason="needs fork (Linux)")
def test_a_worker_process_exits_when_its_trainer_is_killed() -> None:
    """kill -9 of a trainer (or torchrun tearing a rank down) must not leave its workers behind,
    holding its stdout, memory and open files."""
    import subprocess
    import sys
    import time

    trainer = subprocess.run(
        [sys.executable, "-c", KILLED_TRAINER], capture_output=True, text=True, timeout=60
    )  # returns once every holder of stdout has gone: the trainer and its worker
    assert trainer.returncode == -signal.SIGKILL, trainer.stderr
    workers = [int(pid) for pid in trainer.stdout.split()]
    assert len(workers) == 1

    def running(pid: int) -> bool:  # a zombie (no init reaping it in a container) has exited
        try:
            return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and running(workers[0]):
        time.sleep(0.1)
    assert not running(workers[0])


@pytest.mark.parametrize("loader", LOADERS)
def test_compact_batches_hold_the_derived_columns_of_the_whole_vector(
    spelled_data, loader: str
) -> None:
    """For a built-in model the batches carry only the columns the profile does not ignore, in
    vector order, and say which; widened they are the whole-vector batches exactly."""
    train = spelled_data.train
    columns = train.model_input.columns
    assert not columns.full  # the demo ignores the face
    batches = epoch_batches(train)[:3]
    whole = list(batch_stream(train, batches, "cpu", workers=0))
    compact = list(batch_stream(train, batches, "cpu", workers=1, loader=loader, compact=True))
    for a, b in zip(compact, whole, strict=True):
        assert a.columns is columns or torch.equal(a.columns.index, columns.index)
        assert b.columns is None and a.ids == b.ids
        assert a.features.shape == (*b.features.shape[:-1], len(columns.index))
        assert torch.equal(columns.widen(a.features), b.features)


@pytest.mark.skipif(not worker_processes_available(), reason="needs fork (Linux)")
def test_a_batch_from_a_worker_process_is_in_this_process_memory_before_the_step_reads_it(
    spelled_data,
) -> None:
    """Shared memory from a worker is mapped into this process on first touch, page by page, in
    4 KB pages: the executor's thread copies the batch into this process's own memory as it
    arrives, so the step neither takes those page faults nor reads small pages."""
    train = spelled_data.train
    stream = batch_stream(train, epoch_batches(train)[:1], "cpu", workers=1, loader="processes")
    batch = next(stream)
    time.sleep(0.5)  # the arrival callback has run; nothing else is in flight
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    batch.features.sum()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    pages = batch.features.nbytes // 4096
    assert not batch.features.is_shared() and pages > 100
    assert faults < pages / 50, f"{faults} page faults reading {pages} pages"
    stream.close()


def shared_batches_held(pid: int, at_least: int) -> int:
    """How many shared-memory files of at least `at_least` bytes process `pid` holds open: a
    tensor a worker process shares keeps one, so this counts the batches it keeps alive."""
    held = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        path = f"/proc/{pid}/fd/{fd}"
        try:
            shared = "/dev/shm/" in os.readlink(path) or "memfd:" in os.readlink(path)
            held += shared and os.stat(path).st_size >= at_least
        except OSError:  # closed while listed
            continue
    return held


@pytest.mark.skipif(not worker_processes_available(), reason="needs fork (Linux)")
def test_a_worker_process_reuses_a_few_shared_memory_slots_for_all_its_batches(
    spelled_data,
) -> None:
    """A worker hands its batches over in shared memory it reuses (data/slots.py): over two
    epochs it holds no more slots than batches can be in flight (the prefetch, and one being
    written), each mapped once in this process, whatever the number of batches."""
    train = spelled_data.train
    batches = epoch_batches(train, 0) + epoch_batches(train, 1)  # any index lists will do
    workers = LoaderWorkers(train, "cpu", 1, "processes")
    prefetch = 2
    assert 2 * len(batches) > 4 * (prefetch + 1)  # streamed twice
    reference = list(batch_stream(train, batches, "cpu", workers=0))
    for epoch in (0, 1):
        for batch, expected in zip(
            workers.stream(batches, epoch, prefetch), reference, strict=True
        ):
            assert not batch.features.is_shared()
            if epoch == 0:
                assert torch.equal(batch.features, expected.features)
    (pid,) = workers._pool._processes
    held = shared_batches_held(pid, 0)
    mapped = [key for key in slots._mapped if key[0] == pid]
    workers.close()
    assert 1 <= held <= prefetch + 1, f"the worker holds {held} shared-memory files"
    assert len(mapped) == held
    assert not [key for key in slots._mapped if key[0] == pid], "closed, its slots are unmapped"


@pytest.mark.skipif(not worker_processes_available(), reason="needs fork (Linux)")
@pytest.mark.parametrize("compact", [False, True])
def test_a_batch_from_a_worker_process_arrives_whole_with_only_its_big_tensors_shared(
    spelled_data, compact
) -> None:
    """Only the features travel in shared memory; lengths, targets and the columns go by value
    in the pipe (each shared tensor costs the training process a descriptor fetched over a
    socket and a mapping). The training loop gets them in its own memory (a matrix product read
    4 KB shared pages ~5-10% slower), the same values as those prepared in this thread."""
    train = spelled_data.train
    assert not train.model_input.columns.full, "the profile ignores the face"
    batches = epoch_batches(train, 0) + epoch_batches(train, 1)
    workers = LoaderWorkers(train, "cpu", 1, "processes", compact=compact)
    reference = list(batch_stream(train, batches[:3], "cpu", workers=0, compact=compact))
    for batch, expected in zip(workers.stream(batches, 0), reference, strict=False):
        assert type(batch.lengths) is torch.Tensor and batch.targets.dtype == torch.long
        assert torch.equal(batch.lengths, expected.lengths)
        assert torch.equal(batch.targets, expected.targets)
        assert torch.equal(batch.target_lengths, expected.target_lengths)
        assert torch.equal(batch.features, expected.features)
        assert not batch.features.is_shared()
        assert (batch.columns is None) == (not compact)
        if compact:
            assert torch.equal(batch.columns.index, expected.columns.index)
    for _ in workers.stream(batches, 0):
        pass
    (pid,) = workers._pool._processes
    held = shared_batches_held(pid, 0)
    workers.close()
    assert held <= 5, f"the worker holds {held} shared-memory files (prefetch 4, one more)"


def test_features_derived_from_float16_landmarks_match_the_dataset(spelled_data) -> None:
    """The CUDA path (landmarks shipped, features derived in the batch) run on the CPU."""
    train = spelled_data.train
    batches = epoch_batches(train)[:3]
    reference = list(batch_stream(train, batches, "cpu", workers=0))
    on_device = list(batch_stream(train, batches, "cpu", workers=1, features_on_device=True))
    for a, b in zip(on_device, reference, strict=True):
        assert a.ids == b.ids and torch.equal(a.lengths, b.lengths)
        assert a.features.shape == b.features.shape and a.features.shape[-1] == FEATURE_DIM
        torch.testing.assert_close(a.features, b.features, rtol=1e-4, atol=1e-4)


def test_raw_batches_are_float16_and_many_times_smaller_than_features(spelled_data) -> None:
    """What a GPU is sent: float16 landmarks (1/8 of the float32 vector's bytes), and with the
    face ignored only the 75 landmarks rendered, not the 543 (`RawBatch.landmark_ids`)."""
    train = spelled_data.train
    raw = collate_raw([train.raw_item(i) for i in range(4)])
    batch = collate([train.training_item(i) for i in range(4)])
    assert raw.landmarks.dtype == torch.float16 and raw.mask.dtype == torch.bool
    kept = len(raw.landmark_ids)
    assert raw.landmarks.shape[2] == raw.mask.shape[2] == kept == 75
    assert batch.features.nbytes * kept == 8 * 543 * raw.landmarks.nbytes
    assert batch.features.nbytes > 40 * (raw.landmarks.nbytes + raw.mask.nbytes)
    derived = Featurizer(train.model_input)(raw)  # from the 75, as on the device
    torch.testing.assert_close(derived.features, batch.features, rtol=1e-4, atol=1e-4)


def test_per_sample_normalization_of_a_padded_batch_ignores_the_padding(spelled_data) -> None:
    train = spelled_data.train
    items = [train.raw_item(i) for i in range(3)]
    batch = Featurizer(ModelInput(train.coordinates, "per_sample", None))(collate_raw(items))
    alone = Featurizer(ModelInput(train.coordinates, "per_sample", None))(collate_raw(items[:1]))
    length = int(alone.lengths[0])
    torch.testing.assert_close(batch.features[0, :length], alone.features[0], rtol=1e-4, atol=1e-4)
    assert not batch.features[0, length:].any()


@pytest.mark.parametrize("loader", LOADERS)
def test_a_failing_batch_raises_in_the_consumer_and_stopping_early_ends_the_workers(
    spelled_data, loader: str
) -> None:
    train = spelled_data.train
    batches = epoch_batches(train)
    broken = [*batches[:1], [len(train) + 5], *batches[1:]]
    stream = batch_stream(train, broken, "cpu", workers=2, loader=loader)
    next(stream)
    with pytest.raises(IndexError):
        next(stream)
    stream.close()
    stream = batch_stream(train, batches, "cpu", workers=2, prefetch=2, loader=loader)
    next(stream)
    stream.close()  # what the engine's early return does by dropping the stream
    assert not loader_workers()


def test_precomputed_features_apart_from_the_annotations_are_read_as_float16(
    tmp_path: Path,
) -> None:
    """`data.features`: feature files in their own folder; .npy features mapped, not cached."""
    from signconsole.data.corpus import Corpus, CorpusError
    from signconsole.data.vocabulary import Vocabulary

    annotations, features = tmp_path / "corpus", tmp_path / "extracted"
    manual = annotations / "annotations" / "manual"
    manual.mkdir(parents=True)
    (features / "train").mkdir(parents=True)
    lines = ["id|folder|signer|annotation"]
    for index in range(3):
        values = np.random.default_rng(index).standard_normal((5 + index, FEATURE_DIM))
        np.save(features / "train" / f"s{index}.npy", values.astype(np.float32))
        lines.append(f"s{index}|s{index}|x|A B")
    (manual / "train.corpus.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(CorpusError, match="data.features"):
        Corpus.open(annotations, ("train",), features=tmp_path / "missing")
    corpus = Corpus.open(annotations, ("train",), features=features)
    dataset = SequenceDataset(corpus, "train", Vocabulary.from_glosses(corpus.glosses("train")))
    item = dataset.raw_item(2)
    assert item.features.dtype == torch.float16 and item.features.shape == (7, FEATURE_DIM)
    stored = np.load(features / "train" / "s2.npy")
    np.testing.assert_allclose(item.features.float().numpy(), stored, rtol=1e-3, atol=1e-3)
    assert dataset[2].features.dtype == torch.float32  # training sees float32
    assert not dataset._cache  # nothing of the corpus is kept in memory


@pytest.mark.skipif(not worker_processes_available(), reason="needs fork (Linux)")
def test_the_engine_forks_its_loader_workers_before_it_builds_the_model(
    small_profile, spelled_data, runs_dir, monkeypatch
) -> None:
    """A forked worker shares the trainer's memory copy-on-write: every page that exists at the
    fork is copied at the trainer's next write to it. Forked after the model was built and run
    on a probe batch, the run's first steps took thousands of such copies each."""
    from signconsole.engine import assembly
    from signconsole.engine.trainer import Engine
    from signconsole.events import EventBus

    workers_when_built = []
    build = assembly.build_from_source

    def counting_build(*args, **kwargs):
        workers_when_built.append(len(multiprocessing.active_children()))
        return build(*args, **kwargs)

    monkeypatch.setattr(assembly, "build_from_source", counting_build)
    profile = small_profile("data.num_workers=1", 'data.loader="processes"')
    engine = Engine(profile, EventBus(), runs_dir=runs_dir, data=spelled_data)
    try:
        engine.setup()
        assert workers_when_built == [1]
        # The batches the workers then prepare follow what setup decided after the fork.
        assert engine.compact_batches, "a built-in model on a profile that ignores the face"
        assert engine.loader.compact == engine.compact_batches
        batch = next(iter(engine.loader.stream(engine.sampler.batches()[:1], 0)))
        assert (batch.columns is not None) == engine.compact_batches
    finally:
        engine.loader.close()
        engine._close()

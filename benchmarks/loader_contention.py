"""Does the loader worker slow the training step beside it? The engine's step, alone and beside work.

    python benchmarks/loader_contention.py [--model student|bilstm] [--cycles N] [--block STEPS]

The engine's own step (`training_paths.EnginePath`, after `setup()`, on the engine's thread
count) trains on resident batches, the same order in every block, in blocks of `--block` steps
under one of three conditions, each cycle running them in a new (seeded) random order:

  alone   nothing else runs.
  loader  the engine's own `LoaderWorkers` stream the run's batches, one taken per step and
          dropped: the worker process prepares them exactly as in `Engine.run()` and hands them
          over, but the step still trains on the resident batch, so only its speed can change.
  spin    a forked process spins in pure Python (no memory traffic), as busy as a worker can be:
          whether the machine's other core slows this one at all (shared physical cores, power
          and frequency limits of the host).

The first `--skip` steps of a block are not counted (the loader's prefetch fills or drains).
Reported per condition: the step's time against `alone` in the same cycle (median over cycles,
and the ratio of the sums). engine_overhead.py's whole run shows the same split inside
`Engine.run()` ("the run's steps / the same steps on the pool"), with the time spent waiting for
batches; this isolates the step's share from the run-to-run noise of whole runs.

Numbers only: nothing here is asserted, and nothing runs it in the tests.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from signconsole.runtime import tune_process  # noqa: E402

tune_process()  # before torch is imported, as the CLI does

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from training_paths import COMMON, MODELS, EnginePath, engine_batches, load, run_batches  # noqa: E402

from signconsole.data.loader import LoaderWorkers  # noqa: E402
from signconsole.engine.trainer import Engine  # noqa: E402
from signconsole.events import EventBus  # noqa: E402

CONDITIONS = ("alone", "loader", "spin")


def spin(busy) -> None:
    """A forked process: spins in Python while `busy` is 1, idles while 0, ends at -1."""
    while busy.value >= 0:
        if busy.value == 1:
            total = 0
            for value in range(20_000):
                total += value * value
        else:
            time.sleep(0.005)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="student")
    parser.add_argument("--cycles", type=int, default=12, help="each runs every condition once")
    parser.add_argument("--block", type=int, default=12, help="steps per block")
    parser.add_argument("--skip", type=int, default=4, help="first steps of a block not counted")
    parser.add_argument("--pool", type=int, default=20, help="resident batches stepped on")
    args = parser.parse_args(argv)
    profile, data = load(args.model, COMMON)
    with tempfile.TemporaryDirectory(prefix="loader-contention-") as tmp:
        engine = Engine(profile, EventBus(), runs_dir=Path(tmp), data=data)
        engine.setup()  # the engine's thread count (a core kept for the worker), its model
        compact = engine.compact_batches
        pool = run_batches(profile, data, 2 * args.pool, compact)[1::2]
        path = EnginePath(engine)
        for batch in pool:  # warm-up
            path.step(batch)
        loader = LoaderWorkers(
            data.train, "cpu", profile.data.num_workers, profile.data.loader, compact=compact
        )
        stream = loader.stream(engine_batches(profile, data, args.cycles * args.block, 1), 1)
        context = multiprocessing.get_context("fork")
        busy = context.Value("i", 0)
        spinner = context.Process(target=spin, args=(busy,), daemon=True)
        spinner.start()
        print(
            f"loader contention: model={args.model}, {len(pool)} resident batches, "
            f"{torch.get_num_threads()} step thread(s), {profile.data.num_workers} loader "
            f"worker(s) ({loader.kind}), cpus={os.cpu_count()}, blocks of {args.block} steps "
            f"({args.skip} not counted), {args.cycles} cycles"
        )
        seconds: dict[str, list[float]] = {name: [] for name in CONDITIONS}
        order = [i % len(pool) for i in range(args.block)]
        shuffle = random.Random(0)
        try:
            for cycle in range(args.cycles):
                conditions = list(CONDITIONS)
                shuffle.shuffle(conditions)
                for condition in conditions:
                    busy.value = 1 if condition == "spin" else 0
                    counted = 0.0
                    for position, index in enumerate(order):
                        if condition == "loader":
                            next(stream)
                        started = time.perf_counter()
                        path.step(pool[index])
                        if position >= args.skip:
                            counted += time.perf_counter() - started
                    seconds[condition].append(counted)
                print(
                    f"  cycle {cycle + 1:2d}: "
                    + "  ".join(f"{name} {seconds[name][-1]:.3f} s" for name in CONDITIONS),
                    flush=True,
                )
        finally:
            busy.value = -1
            spinner.join(2)
            stream.close()
            loader.close()
            engine._close()
    print()
    for name in CONDITIONS[1:]:
        ratios = [
            alone / other for alone, other in zip(seconds["alone"], seconds[name], strict=True)
        ]
        print(
            f"step alone / step beside the {name}: median {statistics.median(ratios):.3f} "
            f"(min {min(ratios):.3f}, max {max(ratios):.3f}; summed "
            f"{sum(seconds['alone']) / sum(seconds[name]):.3f})"
        )
    step = sum(seconds["alone"]) / (args.cycles * (args.block - args.skip))
    print(f"a step alone: {step * 1e3:.0f} ms on average")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

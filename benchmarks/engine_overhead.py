"""Engine overhead: the real training engine against a bare PyTorch loop, same model, same batches.

    python benchmarks/engine_overhead.py [--model student|bilstm] [--steps N] [--rounds R]

Two paths train identically initialised copies of one model on the same pre-collated batches,
interleaved in one process (round r runs A then B, round r+1 runs B then A, after a warm-up round
that is not counted), so machine noise and warm caches hit both alike:

  bare    model(features, lengths) -> logits.float().log_softmax(-1) -> F.ctc_loss(reduction
          "none") / target_lengths, mean -> backward -> clip_grad_norm_(1.0) -> AdamW step ->
          zero_grad. Nothing else.
  engine  the real `Engine` after `setup()`: the event bus with the SQLite run store (RunRecorder)
          and one more sink subscribed, health checks, command polling, LR schedule, logging
          every `training.log_every` steps. Per step it runs exactly what `Engine._train` runs
          per batch: `boundary()` and `take_step()`
          (evaluation is disabled: `training.eval_every` is huge).

The bare path is fed by an ideal loader: its batches were collated beforehand and cost nothing.
The ratio engine/bare of steps per second (the median of the per-round ratios) is the engine's
per-step overhead. The process is tuned as the CLI tunes it (`signconsole/runtime.py`);
`--untuned` leaves glibc's allocator defaults, whose adaptive mmap threshold adds run-to-run
noise (see README.md).

The headline figure is the whole `Engine.run()` (its loader workers preparing batches from the
dataset, epoch ends, callbacks, everything after its first step) against a bare loop fed by an
ideal loader, interleaved (benchmarks/interleaved.py): every `--block` steps the run pauses and
the bare loop, on the engine's thread count, takes the same steps on the very batches the run
just trained on, already in memory, stepping the run's own model with the run's optimizer
(it removes any difference of model instance from the comparison; on 2026-12-02 the two loops
differed by 2-5%, on 2026-12-03 by under 0.5%). bare/run time summed over every block of
`--interleaved-runs` runs of `--interleaved-steps` steps. Target 0.98 or better. Also printed:
the same against a bare loop in a process of its own (spawned, a model of its own, each block's
batches unpickled into its memory before the block is timed: a training script fed by an ideal
loader), and per run, block by block, the page faults of the run and the loops, the run's time
in its steps and waiting for batches, and the loader worker's CPU time.

Also printed, the headline until 2026-12-02 17:00: whole runs of `--run-steps` steps paired
with passes of reference loops over a resident pool of every k-th batch of the run (`--pool`),
alternating (`--run-rounds`): the bare loop on one thread and on every core, and the engine's
own step. Each loop's time per step is fitted against padded frames and summed over the run's
steady steps; each reference gets the median of its pair ratios, and the figure is the lowest.
Passes a minute apart drifted by up to ±10% against each other here, more than the gap sought.

Numbers only: nothing here is asserted, and nothing runs it in the tests.
"""

from __future__ import annotations

import os
import sys  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from signconsole.runtime import tune_process  # noqa: E402

# Before torch is imported, what the CLI does (passive OpenMP threads, pinned malloc thresholds,
# large tensors on huge pages): the numbers are what `signconsole run` gets. `--untuned` keeps
# only the OpenMP policy, to see the allocator's share.
if "--untuned" in sys.argv:
    os.environ["SIGNCONSOLE_NO_MALLOPT"] = "1"
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "0")
tune_process()

import argparse  # noqa: E402
import cProfile  # noqa: E402
import math  # noqa: E402
import pstats  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from interleaved import (  # noqa: E402  (next to this file)
    InProcessLoop,
    LoopProcess,
    interleaved_run,
    summarize,
)
from pool_reference import paired_passes  # noqa: E402
from training_paths import (  # noqa: E402  (next to this file; console_overhead.py uses them too)
    COMMON,
    MODELS,
    PROFILE,
    BarePath,
    ConsoleSink,
    EnginePath,
    Timing,
    collate_batches,
    data_loading_seconds,
    engine_batches,
    load,
    timed,
)

from signconsole.data.layout import LAYOUT  # noqa: E402
from signconsole.data.loader import resolve_loader  # noqa: E402
from signconsole.engine.trainer import Engine  # noqa: E402
from signconsole.events import EventBus  # noqa: E402
from signconsole.models.fusion import skip_zero_columns  # noqa: E402
from signconsole.models.registry import build_model  # noqa: E402

# Per path per round: about 5 s each on a 2-core CPU, so 10 rounds take about 2 minutes.
DEFAULT_STEPS = {"student": 20, "bilstm": 50}
DEFAULT_RUN_STEPS = {"student": 120, "bilstm": 300}  # the full Engine.run(): 30-60 s

__all__ = ["BarePath", "EnginePath", "COMMON", "MODELS", "PROFILE", "engine_batches", "load"]


def profile_engine(engine_path: EnginePath, batches, order, top: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    timed(engine_path, batches, order)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout)
    print(f"\ncProfile of the engine path, {len(order)} steps (cumulative, top {top}):")
    stats.sort_stats("cumulative").print_stats(top)
    print(f"cProfile of the engine path (own time, top {top}):")
    stats.sort_stats("tottime").print_stats(top)


# ------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="student")
    parser.add_argument("--steps", type=int, help="steps per path per round (default per model)")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds (plus a warm-up)")
    parser.add_argument(
        "--batches", type=int, default=38, help="pre-collated batches (38 = one epoch)"
    )
    parser.add_argument(
        "--run-steps", type=int, help="steps of the full Engine.run() (default per model); 0 = skip"
    )
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument(
        "--pool", type=int, default=20, help="batches of the run the whole-run reference cycles"
    )
    parser.add_argument(
        "--run-rounds",
        type=int,
        default=3,
        help="whole Engine.run()s, each paired with a bare pass",
    )
    parser.add_argument(
        "--interleaved-runs",
        type=int,
        default=2,
        help="whole runs interleaved block by block with the bare loop (the headline); 0 = skip",
    )
    parser.add_argument(
        "--interleaved-steps", type=int, help="steps of each interleaved run (default per model)"
    )
    parser.add_argument("--block", type=int, default=20, help="steps per interleaved block")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--profile-steps", type=int, default=0, help="then cProfile the engine path this long"
    )
    parser.add_argument(
        "--untuned",
        action="store_true",
        help="glibc malloc's default thresholds and 4 KB pages (the CLI tunes both)",
    )
    args = parser.parse_args(argv)
    steps = args.steps or DEFAULT_STEPS[args.model]
    run_steps = DEFAULT_RUN_STEPS[args.model] if args.run_steps is None else args.run_steps
    if args.threads:
        torch.set_num_threads(args.threads)
    # The bare loop fed by an ideal loader gets every core torch would use; the engine on the
    # CPU keeps a core per loader worker (engine/setup.py `share_cpu_cores`).
    bare_threads = torch.get_num_threads()

    load_average = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    print(
        f"engine overhead: model={args.model} steps/round={steps} rounds={args.rounds} "
        f"batches={args.batches} allocator={'glibc default' if args.untuned else 'as the CLI sets it'}"
    )
    print(
        f"torch {torch.__version__}  threads={torch.get_num_threads()}  "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')}  cpus={os.cpu_count()}  "
        f"load average at start={' '.join(f'{x:.2f}' for x in load_average)}"
    )
    profile, data = load(args.model, args.overrides)

    with tempfile.TemporaryDirectory(prefix="engine-overhead-") as tmp:
        bus = EventBus()
        sink = ConsoleSink()
        bus.subscribe(sink)
        engine = Engine(profile, bus, runs_dir=Path(tmp), data=data)
        engine.setup()  # seeds, builds the model, subscribes the RunRecorder
        # Both paths get the batches in the form the engine's loader ships them.
        compact = engine.compact_batches
        batches, indices = collate_batches(profile, data, args.batches, compact)
        frames_per_batch = statistics.mean(b.frames for b in batches)
        loading = data_loading_seconds(data, indices, compact)
        print(
            f"data: {len(data.train)} train sequences, {len(batches)} batches of "
            f"{profile.data.batch_size}, {frames_per_batch:.0f} frames a batch on average, "
            f"{batches[0].features.shape[-1]} values a frame; preparing a batch (dataset + "
            f"collate, one thread) {loading * 1e3:.1f} ms; the engine prepares them on "
            f"{profile.data.num_workers} loader worker(s), {resolve_loader(profile.data.loader)}"
        )
        engine_threads = torch.get_num_threads()  # the step-only rounds: both paths alike
        bare_model = build_model(profile.model, LAYOUT.dim, len(data.vocabulary))
        bare_model.load_state_dict(engine.model.state_dict())  # identical initial weights
        skip_zero_columns(bare_model, data.train.model_input.columns)  # as the engine does
        parameters = sum(p.numel() for p in bare_model.parameters())
        print(
            f"model: {profile.model.architecture}, {parameters / 1e6:.2f}M parameters; torch "
            f"threads: {engine_threads} in the engine (and in both paths of the step rounds), "
            f"{' or '.join(str(n) for n in sorted({engine_threads, bare_threads}))} in the "
            "whole-run bare loop"
        )
        paths = [BarePath(bare_model, profile), EnginePath(engine)]

        def order(round_index: int) -> list[int]:
            start = round_index * steps
            return [(start + i) % len(batches) for i in range(steps)]

        warm = order(0)[: max(10, steps // 4)]
        for path in paths:
            timed(path, batches, warm)
        results: dict[str, list[Timing]] = {p.name: [] for p in paths}
        for round_index in range(args.rounds):
            # Round-robin, the first path alternating: A B, B A, A B, ...
            sequence = paths if round_index % 2 == 0 else paths[::-1]
            for path in sequence:
                results[path.name].append(timed(path, batches, order(round_index + 1)))
            bare, eng = results["bare"][-1], results["engine"][-1]
            print(
                f"  round {round_index + 1:2d}: bare {steps / bare.wall:6.2f} steps/s "
                f"({bare.cpu / steps * 1e3:6.1f} CPU ms/step)   engine "
                f"{steps / eng.wall:6.2f} steps/s ({eng.cpu / steps * 1e3:6.1f} CPU ms/step)   "
                f"ratio {bare.wall / eng.wall:.3f} (CPU {bare.cpu / eng.cpu:.3f})   page faults/step "
                f"{bare.faults // steps}/{eng.faults // steps}"
            )
        if args.profile_steps:
            profile_order = [i % len(batches) for i in range(args.profile_steps)]
            profile_engine(paths[1], batches, profile_order, 30)
        recorded = sink.events
        full = paired_passes(
            profile,
            data,
            paths,
            run_steps=run_steps,
            rounds=args.run_rounds,
            pool_size=args.pool,
            compact=compact,
            thread_counts=sorted({engine_threads, bare_threads}),
            engine_threads=engine_threads,
            runs_dir=Path(tmp),
        )
        interleaved = None
        if args.interleaved_runs > 0:
            # The headline: whole runs, each paused every `--block` steps for the bare loop to
            # take the same steps on the same batches (benchmarks/interleaved.py).
            interleaved_steps = args.interleaved_steps or 2 * DEFAULT_RUN_STEPS[args.model]

            # The headline's loop steps the run's own model with the run's optimizer (no
            # difference of model instance) in the run's process, where it finds the memory
            # the run's steps just faulted in; the loop in a process of its own does not
            # (benchmarks/README.md, 2026-12-03 06:00-07:00).
            loops = {
                "bare loop in the run's process, the run's model": lambda run: InProcessLoop(
                    BarePath(run.model, profile, run.optimizer)
                ),
                "bare loop in a process of its own": lambda run: LoopProcess(profile, run),
            }
            blocks = []
            for index in range(args.interleaved_runs):
                run_dir = Path(tmp) / f"interleaved{index}"
                blocks.append(
                    interleaved_run(profile, data, interleaved_steps, run_dir, loops, args.block)
                )
                for name in loops:
                    ratios = ", ".join(f"{b[name] / b['run']:.3f}" for b in blocks[-1])
                    print(
                        f"  interleaved run {index + 1}, {name}: {len(blocks[-1])} blocks of "
                        f"{args.block} steps, loop/run {summarize([blocks[-1]], name)['ratio']:.3f}"
                        f" ({ratios})",
                        flush=True,
                    )
                run_blocks = blocks[-1]
                print(
                    "    minor page faults a block: "
                    + "; ".join(
                        f"{who} {', '.join(str(int(b[f'{who} faults'])) for b in run_blocks)}"
                        for who in ("run", *loops)
                    )
                    + "; huge pages faulted in during the run's blocks (machine-wide) "
                    + ", ".join(str(int(b["run huge page faults"])) for b in run_blocks),
                    flush=True,
                )
                print(
                    "    the run's blocks, seconds (take_step / waiting for batches / the rest): "
                    + ", ".join(
                        f"{b['run steps']:.2f}/{b['run waiting']:.3f}/"
                        f"{b['run'] - b['run steps'] - b['run waiting']:.3f}"
                        for b in run_blocks
                    )
                    + "; the loader worker's CPU seconds in the run's block and the loops' "
                    + ", ".join(
                        f"{b['worker busy']:.2f}/{b['worker busy in loops']:.2f}"
                        for b in run_blocks
                    )
                    + "; the loops': "
                    + "; ".join(", ".join(f"{b[name]:.2f}" for b in run_blocks) for name in loops),
                    flush=True,
                )
            interleaved = {name: summarize(blocks, name) for name in loops}
        engine._close()

    def median(name: str, value) -> float:
        return statistics.median(value(t) for t in results[name])

    def per_round(value) -> list[float]:
        """bare/engine per round (both ran back to back): steadier than a ratio of medians
        when the machine's speed drifts between rounds."""
        pairs = zip(results["bare"], results["engine"], strict=True)
        return [value(b) / value(e) for b, e in pairs]

    wall_ratios = per_round(lambda t: t.wall)
    cpu_ratios = per_round(lambda t: t.cpu)
    ratio, cpu_ratio = statistics.median(wall_ratios), statistics.median(cpu_ratios)
    rates = {name: median(name, lambda t: t.steps / t.wall) for name in results}
    best = {name: max(t.steps / t.wall for t in results[name]) for name in results}
    frame_rates = {name: median(name, lambda t: t.frames / t.wall) for name in results}
    cpu_ms = {name: median(name, lambda t: t.cpu / t.steps * 1e3) for name in results}
    faults = {name: median(name, lambda t: t.faults / t.steps) for name in results}

    print()
    header = (
        f"{'path':<22}{'steps/s':>9}{'best':>8}{'frames/s':>10}{'CPU ms/step':>13}"
        f"{'faults/step':>13}{'ratio':>8}"
    )
    print(header)
    print("-" * len(header))
    for label, name, value in (("bare loop", "bare", 1.0), ("engine step", "engine", ratio)):
        print(
            f"{label:<22}{rates[name]:>9.2f}{best[name]:>8.2f}{frame_rates[name]:>10.0f}"
            f"{cpu_ms[name]:>13.1f}{faults[name]:>13.0f}{value:>8.3f}"
        )
    if full is not None:
        for label, rate, fps, versus in (
            ("bare, pool of the run", full["bare"], f"{full['bare_fps']:.0f}", 1.0),
            ("engine.run() steady", full["steady"], f"{full['steady_fps']:.0f}", full["ratio"]),
            # (its ratio: the pass-paired figure, against the fastest reference loop)
            ("engine.run() overall", full["overall"], "", None),
        ):
            shown = "" if versus is None else f"{versus:.3f}"
            print(f"{label:<22}{rate:>9.2f}{'':>8}{fps:>10}{'':>26}{shown:>8}")
    print()
    if interleaved is not None:
        for index, (name, figure) in enumerate(interleaved.items()):
            label = "HEADLINE whole run" if index == 0 else "  whole run"
            print(
                f"{label}, data included / a {name}, fed by an ideal loader on the same batches, "
                f"interleaved every {args.block} steps = {figure['ratio']:.3f} (summed over "
                f"{figure['blocks']} blocks of {figure['runs']} runs; runs "
                f"{', '.join(f'{r:.3f}' for r in figure['per_run'])}; block median "
                f"{figure['median']:.3f}, quartiles {figure['low']:.3f}-{figure['high']:.3f}, "
                f"standard error of the block mean {figure['stderr']:.3f}; without each run's first "
                f"{figure['warmup_blocks']} blocks {figure['steady']:.3f})"
                + (
                    f"; target >= 0.98: {'met' if figure['ratio'] >= 0.98 else 'NOT met'}"
                    if index == 0
                    else ""
                )
            )
    if full is not None:
        ratios = full["pair_ratios"]
        print(
            f"whole passes paired with a loop on a resident pool, against the fastest "
            f"({full['reference']}) = {full['ratio']:.3f} (median of {len(ratios)} alternating "
            f"pairs, min {min(ratios):.3f}, max {max(ratios):.3f})"
        )
        for name, value in full["medians"].items():
            values = ", ".join(f"{r['ratios'][name]:.3f}" for r in full["runs"])
            print(f"  whole run / {name} on the resident pool: {value:.3f} (median; {values})")
        print(
            f"  whole run / whichever reference was fastest in each pair: {full['floor']:.3f} "
            "(median; a floor: the per-pair pick favours the luckiest pass)"
        )
        for label, key in (
            (
                "the run's steps / the same steps on the pool (the step beside the loader)",
                "step_slowdown",
            ),
            (
                "share of the run outside its steps (batch handover, loop, epoch ends)",
                "outside_share",
            ),
            ("share of the run waiting for batches", "wait_share"),
        ):
            values = [f[key] for f in full["runs"]]
            print(
                f"  {label}: {statistics.median(values):.3f} "
                f"(median; {', '.join(f'{v:.3f}' for v in values)})"
            )
    print(
        f"ratio engine/bare = {ratio:.3f} wall (median of {len(wall_ratios)} per-round ratios, "
        f"min {min(wall_ratios):.3f}, max {max(wall_ratios):.3f}); "
        f"{cpu_ratio:.3f} CPU time (min {min(cpu_ratios):.3f}, max {max(cpu_ratios):.3f}) "
        "(the step alone, data excluded)"
    )
    print(f"events seen by the extra sink during the A/B rounds: {recorded}")
    if full is not None:
        print(
            f"engine.run(): {full['steps']} steps in {full['wall']:.1f} s wall (setup, data "
            "checks, loader threads, final checkpoint included); steady = between the first and "
            "last StepLogged, frames/s = from the engine's own StepLogged.frames_per_second; "
            f"{full['events']} events; the steady row's ratio is the pass-paired figure"
        )
    load_average = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in load_average)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

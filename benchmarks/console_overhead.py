"""Console overhead: training steps/s with the live console drawing, against the engine alone and
the bare PyTorch loop; same model, same batches.

    python benchmarks/console_overhead.py [--model student|bilstm] [--steps N] [--rounds R]

Three paths, interleaved in rounds (the order changes every round, B before C in every other
round, so machine noise and drift hit all alike):

  A  bare     `engine_overhead.BarePath` (model, log_softmax, CTC, backward, clip, AdamW) on the
              very batches the engine trains on during the measured span, collated beforehand:
              no data loading. Main thread.
  C  engine   `EngineHost.run()` (load the profile, build `Engine`, `Engine.run()`, which loads its
              own data: DataLoader, `num_workers = 0`, in the training thread) in a plain thread.
              No Textual anywhere: what the console's worker runs, minus the console.
  B  console  `SignConsole(host=EngineHost(...))` under Textual's `run_test` (headless driver,
              120x40, notifications on): the same EngineHost in Textual's thread worker, the
              RunScreen draining the bus every 0.2 s and redrawing charts at most once a second.

B and C run the same profile (the demo profile plus `engine_overhead.MODELS[model]` and
`engine_overhead.COMMON`: evaluation and the time budget off). A sink on the engine's bus stamps
the `StepLogged` events of steps W and W+N in the training thread (perf_counter and the CPU
clocks of the UI thread, the training thread and the process): rate = N / elapsed. B/C is the
console's own cost (target >= 0.95); B/A and C/A include data loading, which A leaves out.
Separate runs differ by several percent on a busy machine, so each console run then also
alternates drawing off and on in sub-spans of K steps (ABBA order; off: `RunScreen.drain`
returns at once, the console stays attached and idle, events wait in the host's deque): the
paired on/off ratio is the drawing's cost inside one run.

Frames are rendered for real: Textual's compositor builds every frame in headless mode too (widget
`render()`, strips, compositing); only the last step, turning the frame into terminal escape
codes, is skipped by `App._display` when headless. This script does that step in the UI thread
(and discards the bytes) so a frame costs what it costs in a terminal; `--no-encode` skips it.
UI work is counted by wrapping the console's methods in this process (console_meter.py;
signconsole is not modified): chart `render()` calls, bus drains, DataTable rebuilds, screen
updates, frames, and the garbage collections the UI thread runs.

After the span, each console round measures key-press latency while training saturates the CPU:
`pilot.press("space")` at a random point of a step, then the time until the console puts Pause
on the bus, until the engine reports "paused" (it applies commands between steps) and until the
first frame whose status line says PAUSED is composited; then space again to resume.

Numbers only: nothing here is asserted, and nothing runs it in the tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # engine_overhead.py and console_meter.py, next to this file

from signconsole.runtime import tune_process  # noqa: E402

# Before torch is imported, as the CLI does: OMP_WAIT_POLICY=PASSIVE, glibc malloc pinned.
tune_process()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import engine_overhead as eo  # noqa: E402
import torch  # noqa: E402
from console_meter import LABELS, UI_LABELS, Meter, Probe, Span, thread_cpu_clock  # noqa: E402
from textual.widgets import Static  # noqa: E402

from signconsole.data.dataset import Batch, collate  # noqa: E402
from signconsole.data.layout import LAYOUT  # noqa: E402
from signconsole.events import Stop  # noqa: E402
from signconsole.models.fusion import skip_zero_columns  # noqa: E402
from signconsole.models.registry import build_model  # noqa: E402
from signconsole.tui.app import SignConsole  # noqa: E402
from signconsole.tui.host import EngineHost  # noqa: E402

SIZE = (120, 40)
# Steps per round (N) and warm-up steps before the span (W); both multiples of log_every (10).
DEFAULT_STEPS = {"student": 40, "bilstm": 80}
DEFAULT_WARMUP = {"student": 20, "bilstm": 20}
# After the span, console rounds alternate drawing off/on in sub-spans of this many steps (about
# 3 s each): the drawing's cost inside one run, free of the run-to-run spread.
DEFAULT_TOGGLE = {"student": 10, "bilstm": 20}
# Every order once in six rounds; B runs before C in rounds 1, 3, 5 and after it in 2, 4, 6.
ORDERS = ("ABC", "ACB", "BCA", "CBA", "BAC", "CAB")
EXTRA_STEPS = 10_000  # max_steps = W + N + this: room for the key-press phase; Stop ends the run


# ------------------------------------------------------------------------------------- paths
def span_batches(profile, data, first: int, count: int) -> list[Batch]:
    """The batches the engine trains on from step `first` (0-based) on, collated as the
    engine's DataLoader does."""
    assert profile.training.grad_accumulation == 1, "one batch per step"
    indices = eo.engine_batches(profile, data, first + count)[first:]
    return [collate([data.train[i] for i in batch]) for batch in indices]


def bare_round(path: eo.BarePath, batches: list[Batch]) -> Span:
    ui_cpu = thread_cpu_clock(threading.main_thread().ident)
    ui = ui_cpu()
    timing = eo.timed(path, batches, list(range(len(batches))))
    engine_cpu = ui_cpu() - ui  # the bare loop runs in the main thread
    zero = dict.fromkeys(LABELS, 0)
    return Span(timing.steps, timing.wall, timing.cpu, engine_cpu, 0.0, zero, zero, zero, 0)


def engine_round(overrides: tuple[str, ...], runs_dir: Path, probe: Probe) -> Span:
    host = EngineHost(eo.PROFILE, str(runs_dir), overrides)
    host.bus.subscribe(probe)
    thread = threading.Thread(target=host.run, name="engine")
    thread.start()
    probe.reached.wait()  # the main thread sleeps: no GIL, no CPU
    host.send(Stop(reason="benchmark", source="benchmark"))
    thread.join()
    if host.error:
        raise RuntimeError(host.error + host.error_detail)
    return Span.of(probe)


async def press_latency(
    pilot, app: SignConsole, probe: Probe, meter: Meter, sent: list[float], step_time: float
) -> tuple[float, float, float]:
    """Seconds from pressing space to (Pause on the bus, engine paused, PAUSED composited)."""
    engine = app.host.engine
    status = app.screen.query_one("#status", Static)
    await asyncio.sleep(random.uniform(0.0, step_time))  # land anywhere in a step
    shown = asyncio.Event()
    frame_time = 0.0

    def on_frame() -> None:
        nonlocal frame_time
        if not shown.is_set() and "PAUSED" in str(status.content):
            frame_time = time.perf_counter()
            shown.set()

    meter.on_frame = on_frame
    known, commands = len(probe.states), len(sent)
    start = time.perf_counter()
    await pilot.press("space")
    await asyncio.wait_for(shown.wait(), timeout=60)
    meter.on_frame = None
    paused = next(t for t, state in probe.states[known:] if state == "paused")
    step = engine.step
    await pilot.press("space")  # resume; wait until training saturates the CPU again
    while engine.step < step + 2:
        await asyncio.sleep(0.05)
    return sent[commands] - start, paused - start, frame_time - start


def toggle_plan(
    start: int, length: int, pairs: int, flip: bool
) -> tuple[dict[int, bool], list[int]]:
    """Sub-spans of `length` steps from step `start`, drawing off/on in ABBA order (off on, on
    off, ...: a linear drift cancels out; `flip`: on off, off on, ...): {step: drawing from
    there} and the boundaries. Every run trains on the same batches, so flipping every other
    round gives each sub-span (its batches) drawing on and off equally often."""
    toggles: dict[int, bool] = {}
    bounds = [start + i * length for i in range(2 * pairs + 1)]
    for pair in range(pairs):
        order = (False, True) if (pair % 2 == 0) != flip else (True, False)
        for half, drawing in enumerate(order):
            toggles[bounds[2 * pair + half]] = drawing
    toggles[bounds[-1]] = True
    return toggles, bounds


def toggled_rates(probe: Probe, bounds: list[int], frames: list[int]) -> list[tuple[float, float]]:
    """(drawing, not drawing) frames/s for each pair of adjacent sub-spans: frames, not steps,
    because the sub-spans train on different batches (`frames[i]`: real frames of step i)."""
    pairs = []
    for index in range(0, len(bounds) - 1, 2):
        rates = {}
        for a, b in ((bounds[index], bounds[index + 1]), (bounds[index + 1], bounds[index + 2])):
            rates[probe.toggles[a]] = sum(frames[a:b]) / (probe.logged[b] - probe.logged[a])
        pairs.append((rates[True], rates[False]))
    return pairs


async def console_round(
    overrides: tuple[str, ...],
    runs_dir: Path,
    probe: Probe,
    meter: Meter,
    presses: int,
    bounds: list[int],
    frames: list[int],
) -> Span:
    host = EngineHost(eo.PROFILE, str(runs_dir), overrides)
    host.bus.subscribe(probe)
    sent: list[float] = []  # when the console put a command on the bus
    send = host.send

    def timed_send(command) -> None:
        sent.append(time.perf_counter())
        send(command)

    host.send = timed_send
    app = SignConsole(runs_dir=str(runs_dir), host=host)
    loop = asyncio.get_running_loop()
    reached = asyncio.Event()
    probe.notify = lambda: loop.call_soon_threadsafe(reached.set)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await reached.wait()  # nothing of ours runs in the UI thread during the spans
        span = Span.of(probe)
        span.toggled = toggled_rates(probe, bounds, frames) if len(bounds) > 1 else []
        meter.drawing = True
        for _ in range(presses):
            latency = await press_latency(pilot, app, probe, meter, sent, 1 / span.rate)
            span.latencies.append(latency)
        host.send(Stop(reason="benchmark", source="benchmark"))
        while not host.done.is_set():
            await asyncio.sleep(0.1)
    if host.error:
        raise RuntimeError(host.error + host.error_detail)
    return span


# -------------------------------------------------------------------------------------- main
def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def ratios(numerator: list[Span], denominator: list[Span]) -> list[float]:
    return [n.rate / d.rate for n, d in zip(numerator, denominator, strict=True)]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}..{max(values):.3f})"


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(eo.MODELS), default="student")
    parser.add_argument("--steps", type=int, help="N: steps per path per round (default per model)")
    parser.add_argument("--warmup", type=int, help="W: engine steps before the span")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of A, B and C")
    parser.add_argument(
        "--presses", type=int, default=3, help="pause key presses per console round"
    )
    parser.add_argument(
        "--toggle", type=int, help="steps per drawing on/off sub-span (default per model)"
    )
    parser.add_argument(
        "--pairs", type=int, default=2, help="on/off sub-span pairs per console round (0: none)"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--no-encode", action="store_true", help="leave frames unencoded (Textual's headless)"
    )
    args = parser.parse_args(argv)
    profile, data = eo.load(args.model, args.overrides)
    every = profile.training.log_every
    steps = args.steps or DEFAULT_STEPS[args.model]
    warmup = args.warmup or DEFAULT_WARMUP[args.model]
    toggle = args.toggle or DEFAULT_TOGGLE[args.model]
    if steps % every or warmup % every or toggle % every:
        parser.error(
            f"--steps, --warmup and --toggle must be multiples of training.log_every = {every}"
        )
    last = warmup + steps + 2 * args.pairs * toggle  # the toggle phase's last step
    frames_per_step = [
        sum(data.train.length(i) for i in batch) for batch in eo.engine_batches(profile, data, last)
    ]
    overrides = (
        *eo.MODELS[args.model],
        *eo.COMMON,
        *args.overrides,
        f"training.max_steps={warmup + steps + EXTRA_STEPS}",
    )
    meter = Meter(encode=not args.no_encode)
    meter.install()

    print(
        f"console overhead: model={args.model} span={steps} steps after {warmup} "
        f"rounds={args.rounds} on/off pairs={args.pairs}x2x{toggle} steps size={SIZE[0]}x{SIZE[1]} "
        f"frames={'headless' if args.no_encode else 'encoded'}"
    )
    print(
        f"torch {torch.__version__}  threads={torch.get_num_threads()}  "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')}  cpus={os.cpu_count()}  "
        f"load average at start={load_average()}"
    )
    batches = span_batches(profile, data, warmup, steps)
    frames = statistics.mean(b.frames for b in batches)
    print(f"span: batches {warmup}..{warmup + steps - 1}, {frames:.0f} frames a batch on average")
    torch.manual_seed(profile.training.seed)  # the engine's initial weights
    model = build_model(profile.model, LAYOUT.dim, len(data.vocabulary))
    skip_zero_columns(model, data.train.model_input.columns)  # as the engine does
    print(
        f"model: {profile.model.architecture}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters"
    )
    bare = eo.BarePath(model, profile)
    eo.timed(bare, batches, list(range(min(10, steps))))  # warm-up, not counted
    results: dict[str, list[Span]] = {"A": [], "B": [], "C": []}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="console-overhead-") as tmp:
        for round_index in range(args.rounds):
            order = ORDERS[round_index % len(ORDERS)]
            loads = [load_average().split()[0]]
            for name in order:
                runs_dir = Path(tmp) / f"{round_index}{name}"
                probe = Probe(warmup, warmup + steps, meter)
                if name == "A":
                    span = bare_round(bare, batches)
                elif name == "C":
                    span = engine_round(overrides, runs_dir, probe)
                else:
                    toggles, bounds = toggle_plan(
                        warmup + steps, toggle, args.pairs, flip=round_index % 2 == 1
                    )
                    probe = Probe(warmup, warmup + steps, meter, bounds[-1], toggles)
                    span = asyncio.run(
                        console_round(
                            overrides, runs_dir, probe, meter, args.presses, bounds, frames_per_step
                        )
                    )
                results[name].append(span)
                loads.append(load_average().split()[0])
            a, b, c = (results[name][-1] for name in "ABC")
            print(
                f"  round {round_index + 1} ({order}, load {'/'.join(loads)}): "
                f"A {a.rate:5.2f}  C {c.rate:5.2f}  B {b.rate:5.2f} steps/s   "
                f"B/C {b.rate / c.rate:.3f}  B/A {b.rate / a.rate:.3f}  C/A {c.rate / a.rate:.3f}"
            )
            print(
                f"      console: UI thread {b.ui_cpu / b.wall:.1%} of a core, "
                f"{b.calls['chart render'] / b.wall:.2f} chart renders/s, "
                f"{b.calls['frame'] / b.wall:.2f} frames/s; drawing on/off "
                + " ".join(f"{on / off:.3f}" for on, off in b.toggled)
                + "; PAUSED shown after "
                + "/".join(f"{x[2] * 1e3:.0f}" for x in b.latencies)
                + " ms"
            )
    elapsed = time.perf_counter() - started

    a, b, c = results["A"], results["B"], results["C"]
    print()
    header = f"{'path':<28}{'steps/s':>9}{'best':>8}{'CPU ms/step':>13}{'vs A':>8}"
    print(header)
    print("-" * len(header))
    for label, spans in (("A bare loop (no loading)", a), ("C engine alone", c), ("B console", b)):
        rate = statistics.median(s.rate for s in spans)
        cpu = statistics.median(s.process_cpu / s.steps * 1e3 for s in spans)
        best = max(s.rate for s in spans)
        print(
            f"{label:<28}{rate:>9.2f}{best:>8.2f}{cpu:>13.1f}{rate / statistics.median(s.rate for s in a):>8.3f}"
        )
    b_c = ratios(b, c)
    print()
    print(
        f"B/C (console's own cost) = {spread(b_c)}: median (min..max) of {len(b_c)} per-round "
        f"ratios; target >= 0.95: {'met' if statistics.median(b_c) >= 0.95 else 'NOT met'}"
    )
    print(f"B/A = {spread(ratios(b, a))}   C/A = {spread(ratios(c, a))}")
    toggled = [on / off for span in b for on, off in span.toggled]
    if toggled:
        print(
            f"drawing on/off within console runs = {spread(toggled)}: median (min..max) of "
            f"{len(toggled)} pairs of adjacent {toggle}-step sub-spans (ABBA order), frames/s; "
            f"on {statistics.median(on for s in b for on, _ in s.toggled):.0f} frames/s, "
            f"off {statistics.median(off for s in b for _, off in s.toggled):.0f} frames/s"
        )
    print("CPU ms per step (median; process = training thread + UI thread + the rest):")
    for label, spans in (("C engine alone", c), ("B console", b)):

        def per_step(value, spans=spans) -> float:
            return statistics.median(value(s) / s.steps * 1e3 for s in spans)

        print(
            f"  {label:<16} process {per_step(lambda s: s.process_cpu):6.1f}  training thread "
            f"{per_step(lambda s: s.engine_cpu):6.1f}  UI thread {per_step(lambda s: s.ui_cpu):5.2f}"
            f"  rest (OpenMP workers) "
            f"{per_step(lambda s: s.process_cpu - s.engine_cpu - s.ui_cpu):6.1f}"
        )
    print("full (generation-2) garbage collections during the spans, any thread, GIL held:")
    for label, spans in (("C engine alone", c), ("B console", b)):
        wall = sum(s.wall for s in spans)
        count = sum(s.calls["gc full, any thread"] for s in spans)
        seconds = sum(s.seconds["gc full, any thread"] for s in spans)
        each = f", {seconds / count * 1e3:.0f} ms each" if count else ""
        print(
            f"  {label:<16} {count} in {wall:.0f} s ({count / wall * 60:.1f} a minute{each}): "
            f"{seconds / wall:.2%} of the time"
        )

    # What the UI thread did during the console's spans, per second of span.
    wall = sum(s.wall for s in b)
    ui_cpu = sum(s.ui_cpu for s in b)
    print()
    print(
        f"UI thread during the console spans ({wall:.0f} s): {ui_cpu / wall * 1e3:.1f} ms CPU a "
        f"second ({ui_cpu / wall:.2%} of a core); per second of span (nested: refresh_panes and "
        "the rebuilds are inside drain; frame inside screen update; chart render and encode "
        "inside frame; gc anywhere); wall - CPU = waiting (GIL, CPU):"
    )
    for label in UI_LABELS:
        calls = sum(s.calls[label] for s in b)
        seconds = sum(s.seconds[label] for s in b)
        cpu = sum(s.cpu[label] for s in b)
        per_call = (
            f"  a call {seconds / calls * 1e3:6.2f} ms wall {cpu / calls * 1e3:6.2f} ms CPU"
            if calls
            else ""
        )
        print(
            f"  {label:<17}{calls / wall:6.2f}/s {seconds / wall * 1e3:7.2f} ms wall "
            f"{cpu / wall * 1e3:7.2f} ms CPU{per_call}"
        )
    if not args.no_encode:
        print(f"  encoded output: {sum(s.encoded_bytes for s in b) / wall / 1e3:.1f} kB/s")

    latencies = [latency for s in b for latency in s.latencies]
    if latencies:
        print()
        print(
            f"pause key latency ({len(latencies)} presses while training; ms; press = "
            "pilot.press('space') called):"
        )
        parts = (
            ("press -> Pause on the bus", lambda x: x[0]),
            ("  bus -> engine paused", lambda x: x[1] - x[0]),
            ("  engine -> PAUSED frame", lambda x: x[2] - x[1]),
            ("press -> PAUSED frame", lambda x: x[2]),
        )
        for label, value in parts:
            values = [value(x) * 1e3 for x in latencies]
            print(
                f"  {label:<26} median {statistics.median(values):6.0f}  "
                f"p90 {quantile(values, 0.9):6.0f}  max {max(values):6.0f}"
            )
        print(
            "  each press (to bus / paused / frame): "
            + ", ".join(f"{x[0] * 1e3:.0f}/{x[1] * 1e3:.0f}/{x[2] * 1e3:.0f}" for x in latencies)
        )
    print()
    print(f"total {elapsed:.0f} s; load average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

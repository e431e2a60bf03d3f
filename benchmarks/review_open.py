"""How long `signconsole show` takes to open a big run: a generated run.db with a million metric
rows (and evaluations, decodes, alarms, stage changes), then

- build: a StoreSource's first read into a RunView (the SQL queries: downsampled series, events, evals);
- first frame: the console in review mode under App.run_test, from start until the screen has
  rendered the charts (headless: composited, not written to a terminal).

    python benchmarks/review_open.py                  # 1,000,000 rows: 50 metrics x 20,000 steps
    python benchmarks/review_open.py --steps 100000   # 5,000,000 rows

Prints numbers; asserts nothing. The target is under a second to open a 1M-row run.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import tempfile
import time
from pathlib import Path

from signconsole.events import (
    AlarmRaised,
    EvalFinished,
    RunFinished,
    RunStarted,
    SampleDecode,
    StageChanged,
    StateChanged,
)
from signconsole.store.reader import RunReader
from signconsole.store.run import RunRecorder
from signconsole.tui.source import StoreSource
from signconsole.tui.state import RunView

STAGES = ("fusion", "stem", "blocks_1", "blocks_2", "blocks_3", "lstm", "classifier")


def generate(run_dir: Path, steps: int, metrics: int) -> int:
    """A run with `metrics` metric names logged at every step; returns the metric row count."""
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoints").mkdir()
    (run_dir / "profile.toml").write_text('name = "generated"\nkind = "student"\n')
    recorder = RunRecorder(run_dir)
    t0 = time.time() - steps / 10
    recorder(
        RunStarted(
            0,
            time=t0,
            run_dir=str(run_dir),
            name="generated",
            kind="student",
            device="cpu",
            unit="letter",
            stages=STAGES,
            parameters=dict.fromkeys(STAGES, 100_000),
            trainable=dict.fromkeys(STAGES, True),
            total_steps=steps,
            profile_toml="",
        )
    )
    recorder(StateChanged(0, time=t0, state="running"))
    names = ["train/loss", "lr", "grad_norm/total", "frames_per_second", "logit_std", "epoch"]
    names += [f"grad_norm/{stage}" for stage in STAGES]
    # The rest as more stages: every series is then one the charts draw (the worst case).
    names += [f"grad_norm/stage_{i:02d}" for i in range(metrics - len(names))]
    rng = random.Random(0)
    db = recorder.db
    rows = 0
    for step in range(1, steps + 1):
        values = {name: math.exp(-step / steps) + 0.05 * rng.random() for name in names}
        values["epoch"] = float(step // 500)
        db.add_metrics(step, values)
        rows += len(values)
        if step % 50_000 == 0:
            db.flush()
        if step % 500 == 0:
            rate = math.exp(-3 * step / steps)
            recorder(
                EvalFinished(
                    step,
                    time=t0 + step / 10,
                    epoch=step // 500,
                    split="dev",
                    loss=rate,
                    error_rate=rate,
                    substitutions=10,
                    deletions=5,
                    insertions=2,
                    reference_words=400,
                    unit="letter",
                    is_best=True,
                    samples=tuple(
                        SampleDecode(f"dev-{i}", ("A", "B"), ("A",), ("A", "B"), 0.0)
                        for i in range(6)
                    ),
                )
            )
        if step % 5000 == 0:
            recorder(
                StageChanged(
                    step, time=t0 + step / 10, stage="fusion", trainable=False, reason="command"
                )
            )
            recorder(
                AlarmRaised(
                    step,
                    time=t0 + step / 10,
                    severity="warning",
                    kind="grad_explode",
                    message="gradient norm 150 > 100",
                    hint="lower the learning rate",
                )
            )
    recorder(
        RunFinished(
            steps,
            time=t0 + steps / 10,
            status="finished",
            best_error_rate=0.05,
            best_step=steps,
            best_checkpoint="",
            epochs=steps // 500,
            duration=steps / 10,
        )
    )
    recorder.close()
    return rows


def time_build(run_dir: Path) -> float:
    started = time.perf_counter()
    source = StoreSource(RunReader(run_dir))
    source.read(RunView())  # the first read: replay + downsampled series, as `show` opens
    source.close()
    return time.perf_counter() - started


async def time_first_frame(run_dir: Path) -> float:
    from signconsole.tui.app import SignConsole
    from signconsole.tui.chart_pane import ChartPane

    started = time.perf_counter()
    app = SignConsole(review=run_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        while not any(pane.region.width for pane in app.screen.query(ChartPane)):
            await pilot.pause(0.005)
        await pilot.pause()  # let the first frame with the charts composite
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--metrics", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "20260101-000000-generated"
        started = time.perf_counter()
        rows = generate(run_dir, args.steps, args.metrics)
        size = (run_dir / "run.db").stat().st_size / 1e6
        print(
            f"generated {rows:,} metric rows ({args.metrics} metrics x {args.steps:,} steps), "
            f"{args.steps // 500} evaluations, run.db {size:.0f} MB, "
            f"in {time.perf_counter() - started:.1f} s"
        )
        builds = [time_build(run_dir) for _ in range(args.repeats)]
        print(
            f"open (RunReader + review view: all queries): median {statistics.median(builds):.3f} s"
            f"  min {min(builds):.3f}  max {max(builds):.3f}  ({args.repeats} runs)"
        )
        frames = [asyncio.run(time_first_frame(run_dir)) for _ in range(args.repeats)]
        print(
            "console in review mode, start to first frame with charts: median "
            f"{statistics.median(frames):.3f} s  min {min(frames):.3f}  max {max(frames):.3f}"
        )


if __name__ == "__main__":
    main()

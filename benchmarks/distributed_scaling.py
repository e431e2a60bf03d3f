"""Scaling of one run over several processes: steps/s and samples/s for 1 and N processes.

    python benchmarks/distributed_scaling.py                       # CPU: 1 vs 2 processes (gloo)
    python benchmarks/distributed_scaling.py --device cuda --nproc 1 2 4 8 \
        --precision bf16 --compile both                            # a GPU machine, as is

Each configuration is a real `signconsole run --nproc N` (torchrun) of the same profile with the
same per-process batch, so N processes train N times the samples per step. "data wait" is rank 0's
logged `data_wait_share`: the share of training time its loop spent waiting for the next batch
(on a GPU: the share of time the GPU starves for data).
Rates are rank 0's logged frames/s (each window: data, step, logging) times N, over the mean
training sequence length; the first logged window (warm-up, compilation) is left out.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(profile: Path, nproc: int, sets: list[str], runs: Path) -> Path:
    command = [sys.executable, "-m", "signconsole", "run", str(profile), "--runs-dir", str(runs)]
    command += ["--nproc", str(nproc)]
    for key in sets:
        command += ["--set", key]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"run failed ({nproc} processes):\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    print(f"  ({nproc} processes: {time.monotonic() - started:.0f} s in all)", file=sys.stderr)
    return max(runs.iterdir(), key=lambda p: p.stat().st_mtime)


def measure(run_dir: Path, batch: int, nproc: int, frames_per_sample: float) -> dict[str, float]:
    """From rank 0's logged frames/s (each window covers data, step and logging): every rank
    trains batches of the same length buckets, so the job's rate is N times rank 0's."""
    connection = sqlite3.connect(run_dir / "run.db")
    rates = [
        value
        for step, value in connection.execute(
            "SELECT step, value FROM metrics WHERE name = 'frames_per_second' ORDER BY step"
        )
    ][1:]  # the first window includes the warm-up (and compilation)
    waits = connection.execute(
        "SELECT AVG(value) FROM metrics WHERE name = 'data_wait_share'"
    ).fetchone()[0]
    connection.close()
    samples_per_second = sum(rates) / len(rates) * nproc / frames_per_sample
    steps_per_second = samples_per_second / (batch * nproc)
    return {
        "steps_per_second": steps_per_second,
        "samples_per_second": samples_per_second,
        "data_wait_share": waits if waits is not None else math.nan,
    }


def mean_frames(profile: Path, sets: list[str]) -> float:
    from signconsole.data.prepare import prepare_data
    from signconsole.profile import load_profile

    train = prepare_data(load_profile(profile, sets)).train
    lengths = train.lengths()
    return sum(lengths) / len(lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=str(ROOT / "profiles" / "demo-student.toml"))
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--compile", default="off", choices=("off", "on", "both"))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=16, help="data.batch_size per process")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    compiles = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    frames = 0.0
    print(
        f"{'processes':>9} {'compile':>7} {'steps/s':>8} {'samples/s':>10} {'speed-up':>8} "
        f"{'data wait':>9}"
    )
    for (compiled,) in itertools.product(compiles):
        baseline = None
        for nproc in args.nproc:
            sets = [
                f'training.device="{args.device}"',
                f'training.precision="{args.precision}"',
                f"training.compile={'true' if compiled else 'false'}",
                f"training.max_steps={args.steps}",
                "training.max_epochs=0",
                "training.max_minutes=0",
                f"training.eval_every={args.steps}",
                "training.log_every=5",
                f"data.batch_size={args.batch}",
                *args.extra,
            ]
            frames = frames or mean_frames(Path(args.profile), sets)
            with tempfile.TemporaryDirectory(prefix="signconsole-scaling-") as runs:
                run_dir = run(Path(args.profile), nproc, sets, Path(runs))
                numbers = measure(run_dir, args.batch, nproc, frames)
            baseline = baseline or numbers["samples_per_second"]
            wait = numbers["data_wait_share"]
            print(
                f"{nproc:>9} {'on' if compiled else 'off':>7} {numbers['steps_per_second']:>8.2f} "
                f"{numbers['samples_per_second']:>10.1f} "
                f"{numbers['samples_per_second'] / baseline:>7.2f}x "
                f"{'n/a' if wait != wait else f'{wait:.0%}':>9}",
                flush=True,
            )


if __name__ == "__main__":
    main()

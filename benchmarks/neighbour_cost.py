"""What work on the machine's other CPU costs a single-threaded kernel on this one.

    python benchmarks/neighbour_cost.py [--rounds 6]

A loader worker runs on the CPU the training step does not use. On a machine whose CPUs are
separate cores that costs the step little; on one whose two CPUs are hyperthreads of one core
(a cloud VM's vCPUs often are, and the guest cannot tell: `lscpu` here says 1 thread a core)
every busy cycle beside the step slows it. This pins a kernel (512x512 matrix products and the
[16, 256] x [256, 1024] products of an LSTM step, torch on one thread) to CPU 0 and times it
alone and beside neighbours pinned to CPU 1: `yes` (a syscall loop), a pure-Python spin, numpy
streaming a 128 MB array and numpy on an array that fits in L2. Rounds alternate the neighbours;
medians are printed as alone / beside.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

NEIGHBOURS: dict[str, list[str] | None] = {
    "alone": None,
    "yes (syscalls)": ["yes"],
    "python spin": [sys.executable, "-c", "while True: pass"],
    "numpy, 128 MB": [
        sys.executable, "-c", "import numpy as np\nx = np.ones(16_000_000)\nwhile True: x * 1.0001",
    ],
    "numpy, in L2": [
        sys.executable, "-c", "import numpy as np\nx = np.ones(30_000)\nwhile True: x * 1.0001",
    ],
}  # fmt: skip


def kernel(a: torch.Tensor, b: torch.Tensor, h: torch.Tensor, w: torch.Tensor) -> float:
    started = time.perf_counter()
    for _ in range(200):
        a @ b
    for _ in range(3000):
        h @ w
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs two CPUs")
    torch.set_num_threads(1)
    os.sched_setaffinity(0, {0})
    tensors = (
        torch.randn(512, 512),
        torch.randn(512, 512),
        torch.randn(16, 256),
        torch.randn(256, 1024),
    )
    kernel(*tensors)
    times: dict[str, list[float]] = {name: [] for name in NEIGHBOURS}
    for _ in range(args.rounds):
        for name, command in NEIGHBOURS.items():
            neighbour = None
            if command is not None:
                neighbour = subprocess.Popen(
                    ["taskset", "-c", "1", *command], stdout=subprocess.DEVNULL
                )
                time.sleep(0.3)
            times[name].append(kernel(*tensors))
            if neighbour is not None:
                neighbour.kill()
                neighbour.wait()
    alone = statistics.median(times["alone"])
    print(
        f"torch {torch.__version__}, kernel pinned to CPU 0, neighbour to CPU 1, {args.rounds} rounds"
    )
    for name, measured in times.items():
        median = statistics.median(measured)
        print(f"{name:16s} {median:6.3f} s   alone / beside {alone / median:.3f}")


if __name__ == "__main__":
    main()

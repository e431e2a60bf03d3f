"""Data loading against training: steps/s and the share of step time spent waiting for data.

    python benchmarks/data_loader.py [--case demo-student|phoenix-teacher ...] [--device cpu|cuda]
                                     [--workers 0 1 2] [--loader auto|processes|threads]
                                     [--steps N]

A bare training loop (forward, CTC, backward, clip, AdamW) over the batches the engine's sampler
draws, fed by `data.loader.batch_stream`:

- `ideal`      the same batches collated beforehand and held on the device: no data cost at all,
               the upper bound a loader can reach;
- `workers=0`  each batch prepared in the training thread when asked for (before: the engine's
               DataLoader with `num_workers = 0`);
- `workers=N`  N loader workers preparing batches ahead (after): forked processes where the
               platform allows (`--loader auto`, the engine's default), else threads.

`wait` is the time the loop spent inside `next()` over its wall time. On CUDA, features are
derived on the device from float16 landmarks (the default there); `--host-features` ships the
float32 vectors instead, for comparison.

Cases: `demo-student` is profiles/demo-student.toml as shipped (training sequences spelled anew,
so a batch costs rendering too); `phoenix-teacher` is profiles/phoenix-teacher.toml on a
Phoenix-sized landmark corpus (real sequence lengths and glosses, synthetic values:
benchmarks/phoenix_sized.py, first `--phoenix-sequences` training sequences).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from signconsole.data.dataset import BucketBatchSampler  # noqa: E402
from signconsole.data.layout import LAYOUT  # noqa: E402
from signconsole.data.loader import batch_stream, resolve_loader  # noqa: E402
from signconsole.data.prepare import prepare_data  # noqa: E402
from signconsole.models.fusion import reads_only, skip_zero_columns  # noqa: E402
from signconsole.models.registry import build_model  # noqa: E402
from signconsole.profile import load_profile  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CASES = ("demo-student", "phoenix-teacher")


def load_case(case: str, sequences: int, device: str):
    if case == "demo-student":
        overrides = [f"training.device={device}"]
        profile = load_profile(ROOT / "profiles" / "demo-student.toml", overrides)
    else:
        import phoenix_sized

        corpus = phoenix_sized.build("landmarks", sequences)
        overrides = [f"data.corpus={corpus}", f"training.device={device}"]
        if device == "cpu":
            overrides.append("training.precision=fp32")
        profile = load_profile(ROOT / "profiles" / "phoenix-teacher.toml", overrides)
    return profile, prepare_data(profile, with_test=False)


class Loop:
    """The bare step: what engine_overhead.py's bare path does."""

    def __init__(self, profile, vocabulary_size: int, device: torch.device, columns) -> None:
        torch.manual_seed(0)
        self.model = build_model(profile.model, LAYOUT.dim, vocabulary_size).to(device).train()
        skip_zero_columns(self.model, columns)  # as the engine does
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.device = device
        precision = profile.training.precision
        self.autocast = device.type == "cuda" and precision in ("bf16", "fp16")

    def step(self, batch) -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
            output = self.model(batch.features, batch.lengths.to(self.device))
        log_probs = output.logits.float().log_softmax(-1)
        ctc = F.ctc_loss(
            log_probs.transpose(0, 1),
            batch.targets.to(self.device),
            output.lengths,
            batch.target_lengths.to(self.device),
            reduction="none",
        )
        (ctc / batch.target_lengths.to(self.device).clamp(min=1)).mean().backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def measure(loop: Loop, batches, steps: int, warmup: int) -> tuple[float, float]:
    """(steps/s, share of wall time waiting in next()) over `steps` after `warmup` steps."""
    iterator = iter(batches)
    for _ in range(warmup):
        loop.step(next(iterator))
    loop.sync()
    waited_before = getattr(batches, "wait_seconds", 0.0)
    start = time.perf_counter()
    for _ in range(steps):
        loop.step(next(iterator))
    loop.sync()
    wall = time.perf_counter() - start
    waited = getattr(batches, "wait_seconds", 0.0) - waited_before
    if hasattr(batches, "close"):
        batches.close()
    return steps / wall, waited / wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=CASES, action="append")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--loader", default="auto", choices=("auto", "processes", "threads"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--phoenix-sequences", type=int, default=400)
    parser.add_argument("--host-features", action="store_true")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"torch {torch.__version__} device={device} threads={torch.get_num_threads()} "
        f"cpus={os.cpu_count()} load average at start "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"{'case':<17}{'feeding':<22}{'steps/s':>9}{'wait':>8}{'vs ideal':>10}")
    for case in args.case or CASES:
        profile, data = load_case(case, args.phoenix_sequences, args.device)
        sampler = BucketBatchSampler(
            data.train.lengths(), profile.data.batch_size, shuffle=True, seed=0
        )
        sampler.set_epoch(1)
        index_batches = sampler.batches()
        needed = args.steps + args.warmup
        index_batches = (index_batches * (needed // len(index_batches) + 1))[:needed]
        columns = data.train.model_input.columns
        loop = Loop(profile, len(data.vocabulary), device, columns)
        # A built-in model: the batches hold only the columns it reads, as the engine ships them.
        compact = reads_only(loop.model, columns, user_code=False)
        ideal = list(
            batch_stream(data.train, index_batches, device, epoch=1, workers=0, compact=compact)
        )
        rate_ideal, _ = measure(loop, ideal, args.steps, args.warmup)
        del ideal
        print(f"{case:<17}{'ideal (pre-collated)':<22}{rate_ideal:>9.2f}{'':>8}{1.0:>10.3f}")
        on_device = False if args.host_features else None
        for workers in args.workers:
            stream = batch_stream(
                data.train,
                index_batches,
                device,
                epoch=1,
                workers=workers,
                loader=args.loader,
                features_on_device=on_device,
                compact=compact,
            )
            rate, wait = measure(loop, stream, args.steps, args.warmup)
            kind = resolve_loader(args.loader)
            label = f"workers={workers}" + (" (before)" if workers == 0 else f" {kind}")
            print(
                f"{case:<17}{label:<22}{rate:>9.2f}{100 * wait:>7.1f}%{rate / rate_ideal:>10.3f}",
                flush=True,
            )
    print(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

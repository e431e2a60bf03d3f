"""Resident memory of a Phoenix-sized training split, landmark and precomputed inputs.

    python benchmarks/data_memory.py --kind landmarks|features [--sequences N] [--workers 1]

Writes (once) the Phoenix-sized corpus of benchmarks/phoenix_sized.py (5,672 training sequences
at their real lengths, synthetic values), opens its train split as the engine does, and runs one
epoch of batches through `data.loader.batch_stream` (batch 8, `--workers` loader threads).
Prints the process's resident memory (VmRSS) after opening, after the epoch, and its peak
(VmHWM), with the size of the inputs on disk for scale. Run each kind in its own process: the
peak is per process.

Landmarks are cached in memory as float16 (~3.3 KB a frame); precomputed features are never
cached but read through a memory map per sequence (26 KB a frame as float32, 13 KB as float16:
a whole-corpus cache would be 10-21 GB).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from signconsole.runtime import tune_process  # noqa: E402

tune_process()  # before torch, as the CLI does (huge pages change what a process holds)

import argparse  # noqa: E402
import time  # noqa: E402

import phoenix_sized  # noqa: E402

from signconsole.data.corpus import Corpus  # noqa: E402
from signconsole.data.dataset import BucketBatchSampler, SequenceDataset  # noqa: E402
from signconsole.data.loader import batch_stream  # noqa: E402
from signconsole.data.vocabulary import Vocabulary  # noqa: E402


def status_gb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=phoenix_sized.KINDS, required=True)
    parser.add_argument("--sequences", type=int, help="first N training sequences (default all)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    started = time.perf_counter()
    root = phoenix_sized.build(args.kind, args.sequences)
    built = time.perf_counter() - started
    disk = sum(f.stat().st_size for f in (root / "features" / "train").iterdir()) / 1024**3
    rss_start = status_gb("VmRSS")
    corpus = Corpus.open(root, ("train",))
    dataset = SequenceDataset(corpus, "train", Vocabulary.from_glosses(corpus.glosses("train")))
    frames = sum(dataset.lengths())
    sampler = BucketBatchSampler(dataset.lengths(), args.batch_size, shuffle=True, seed=0)
    sampler.set_epoch(1)
    rss_open = status_gb("VmRSS")
    started = time.perf_counter()
    steps = 0
    for _batch in batch_stream(dataset, sampler.batches(), "cpu", epoch=1, workers=args.workers):
        steps += 1
    epoch = time.perf_counter() - started
    print(
        f"{args.kind}: {len(dataset)} sequences, {frames} frames, {disk:.2f} GB on disk "
        f"(written in {built:.0f} s or cached); batch {args.batch_size}, workers {args.workers}"
    )
    print(
        f"RSS at start {rss_start:.2f} GB, after opening {rss_open:.2f} GB, after one epoch "
        f"({steps} batches, {epoch:.0f} s) {status_gb('VmRSS'):.2f} GB, "
        f"peak {status_gb('VmHWM'):.2f} GB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

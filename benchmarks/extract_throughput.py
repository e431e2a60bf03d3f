"""Throughput of `signconsole extract` against MediaPipe Holistic called directly.

The same frames (scikit-image's astronaut photograph with a small drift per frame, Phoenix-sized
210x260 by default) written as a Phoenix-layout corpus of frame folders, then:

- direct: one process, `mp.solutions.holistic.Holistic` (the settings extract uses) run on every
  frame, images already decoded in memory: MediaPipe's own speed, nothing else;
- extract with --workers 1, 2, ... (PNG decoding, pose-format conversion, atomic .npz writes,
  worker processes included), each from an empty output folder.

    python benchmarks/extract_throughput.py                     # 8 sequences x 60 frames
    python benchmarks/extract_throughput.py --sequences 16 --workers 1 2 4

Prints frames/s; asserts nothing. Target: extract with one worker within 10% of direct.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def frames(count: int, width: int, height: int) -> list[np.ndarray]:
    from skimage import data

    image = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (width, height))
    out = []
    for i in range(count):
        shift = np.float32([[1, 0, i % 7], [0, 1, i % 5]])
        out.append(cv2.warpAffine(image, shift, (width, height), borderMode=cv2.BORDER_REFLECT))
    return out


def write_corpus(root: Path, sequences: int, images: list[np.ndarray]) -> None:
    manual = root / "annotations" / "manual"
    manual.mkdir(parents=True)
    lines = ["id|folder|signer|annotation"]
    for index in range(sequences):
        sample_id = f"seq-{index:03d}"
        lines.append(f"{sample_id}|{sample_id}/1/*.png|Signer01|ASTRONAUT")
        folder = root / "features" / "fullFrame-210x260px" / "train" / sample_id / "1"
        folder.mkdir(parents=True)
        for number, image in enumerate(images):
            cv2.imwrite(str(folder / f"images{number:04d}.png"), image)
    (manual / "train.corpus.csv").write_text("\n".join(lines) + "\n")


def direct(sequences: int, images: list[np.ndarray]) -> float:
    import mediapipe as mp

    from signconsole.extract.worker import HOLISTIC_CONFIG, quiet_native_logs

    rgb = [cv2.cvtColor(image, cv2.COLOR_BGR2RGB) for image in images]
    started = time.perf_counter()
    with quiet_native_logs():
        for _ in range(sequences):  # a fresh tracker per sequence, as extract does
            with mp.solutions.holistic.Holistic(**HOLISTIC_CONFIG) as holistic:
                for frame in rgb:
                    holistic.process(frame)
    return sequences * len(rgb) / (time.perf_counter() - started)


def extract(corpus: Path, workers: int, total_frames: int) -> tuple[float, float]:
    """(frames/s of the whole command, frames/s per worker while extracting: decoding, Holistic
    and conversion per sequence, from extract-summary.json)."""
    command = [sys.executable, "-m", "signconsole", "extract", str(corpus)]
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        command += ["--out", out, "--workers", str(workers)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        whole = total_frames / (time.perf_counter() - started)
        sequences = json.loads((Path(out) / "extract-summary.json").read_text())["sequences"]
        steady = sum(s["frames"] for s in sequences) / sum(s["seconds"] for s in sequences)
        return whole, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", default="210x260", help="WIDTHxHEIGHT of the frames")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    images = frames(args.frames, width, height)
    total = args.sequences * args.frames
    print(
        f"{args.sequences} sequences x {args.frames} frames of {width}x{height}, "
        f"{os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        write_corpus(corpus, args.sequences, images)
        base = direct(args.sequences, images)
        print(f"direct Holistic, one process:  {base:6.1f} frames/s")
        for workers in args.workers:
            whole, steady = extract(corpus, workers, total)
            print(
                f"extract --workers {workers}: whole command {whole:6.1f} frames/s "
                f"({whole / base:.2f}x direct; process start, imports, model loads included); "
                f"per worker while extracting {steady:6.1f} frames/s ({steady / base:.2f}x)"
            )


if __name__ == "__main__":
    main()

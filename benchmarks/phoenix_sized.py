"""A Phoenix-sized corpus with synthetic values, for data-path benchmarks.

The real Phoenix-2014 annotations (../shared/phoenix-2014: ids, glosses, frame counts) with one
feature file per sequence at its real length, filled with random values: landmarks (`.npz`,
float16 + mask, the layout `signconsole extract` writes, uncompressed) or precomputed [T, 6516] features (`.npy`,
float16, as a feature extractor would store them). Written once per (kind, count) under
$SIGNCONSOLE_CACHE and reused.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from signconsole.data.layout import FEATURE_DIM, N_LANDMARKS

PHOENIX = Path(__file__).resolve().parents[2] / "shared" / "phoenix-2014"
KINDS = ("landmarks", "features")
FPS = np.float32(25.0)


def phoenix_root() -> Path:
    for candidate in (PHOENIX, Path("/work/shared/phoenix-2014")):
        if (candidate / "annotations" / "manual" / "train.frames.csv").exists():
            return candidate
    raise SystemExit(f"{PHOENIX}: Phoenix-2014 annotations not found")


def build(kind: str, count: int | None = None, cache: Path | None = None) -> Path:
    """The corpus folder: annotations for train (first `count` sequences, all by default) and
    features/train/{id}.npz|.npy."""
    assert kind in KINDS
    cache = cache or Path(os.environ.get("SIGNCONSOLE_CACHE") or Path.home() / ".cache/signconsole")
    source = phoenix_root() / "annotations" / "manual"
    corpus_lines = source.joinpath("train.corpus.csv").read_text(encoding="utf-8").splitlines()
    frame_lines = source.joinpath("train.frames.csv").read_text(encoding="utf-8").splitlines()
    count = len(corpus_lines) - 1 if count is None else count
    root = cache / f"phoenix-sized-{kind}-{count}"
    if (root / "complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    manual, features = root / "annotations" / "manual", root / "features" / "train"
    manual.mkdir(parents=True)
    features.mkdir(parents=True)
    frames = dict(line.split("|") for line in frame_lines[1:])
    rng = np.random.default_rng(0)
    kept = [corpus_lines[0]]
    for line in corpus_lines[1 : count + 1]:
        sample = line.split("|")[0]
        length = int(frames[sample])
        if kind == "landmarks":
            # The layout `write_landmarks` produces, written uncompressed: compressing 2.6 GB
            # of random float16 took over 18 minutes and changes nothing the process holds.
            landmarks = rng.random((length, N_LANDMARKS, 3), dtype=np.float32).astype(np.float16)
            mask = np.ones((length, N_LANDMARKS), dtype=bool)
            np.savez(features / f"{sample}.npz", landmarks=landmarks, mask=mask, fps=FPS)
        else:
            values = rng.standard_normal((length, FEATURE_DIM), dtype=np.float32)
            np.save(features / f"{sample}.npy", values.astype(np.float16))
        fields = line.split("|")
        kept.append("|".join([fields[0], f"features/train/{sample}", *fields[2:]]))
    (manual / "train.corpus.csv").write_text("\n".join(kept) + "\n", encoding="utf-8")
    header, *rows = frame_lines
    (manual / "train.frames.csv").write_text("\n".join([header, *rows[:count]]) + "\n")
    for split in ("dev", "test"):  # empty held-out splits: benchmarks read train only
        (manual / f"{split}.corpus.csv").write_text(corpus_lines[0] + "\n", encoding="utf-8")
    (root / "complete").write_text("")
    return root

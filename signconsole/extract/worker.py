"""One sequence through MediaPipe Holistic, written atomically.

Holistic runs through pose-format's `load_holistic` (the same code that made the fingerspelling
lexicon the demo trains on, so coordinates mean the same: pixels, z scaled like x). Each sequence
gets a fresh Holistic instance: tracking state from one video must not leak into the next.
Outputs are written to a temporary file and renamed, so a killed worker never leaves a file that
looks complete, and a rerun skips exactly the sequences that are done.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from signconsole.extract.sources import SequenceSource, SourceError, open_sequence

PARTS = {"pose": slice(0, 33), "face": slice(33, 501), "left": slice(501, 522)}
PARTS["right"] = slice(522, 543)  # the hands
HOLISTIC_CONFIG = {"static_image_mode": False, "model_complexity": 1}


@dataclass
class SequenceResult:
    id: str
    status: str  # "done", "skipped" (output already there), "failed"
    output: str = ""
    frames: int = 0
    fps: float = 0.0
    seconds: float = 0.0  # wall time of decoding + Holistic
    detected: dict[str, float] = field(default_factory=dict)  # share of frames per part
    reason: str = ""


def run_holistic(frames, fps: float, width: int, height: int):
    """Frames (RGB arrays, any iterable) -> a pose-format Pose of MediaPipe Holistic landmarks."""
    from pose_format.utils.holistic import load_holistic

    options = {}
    if "reuse" in inspect.signature(load_holistic).parameters:
        options["reuse"] = False  # a fresh tracker per sequence
    with quiet_native_logs():
        return load_holistic(
            frames,
            fps=fps,
            width=width,
            height=height,
            progress=False,
            additional_holistic_config=dict(HOLISTIC_CONFIG),
            **options,
        )


@contextlib.contextmanager
def quiet_native_logs():
    """MediaPipe's C++ side (glog, TFLite) writes notes to file descriptor 2 that no Python
    setting silences; send them to /dev/null while Holistic runs, then restore stderr."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to protect
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def extract_sequence(
    source: SequenceSource, out_dir: Path, output_format: str, overwrite: bool
) -> SequenceResult:
    from signconsole.data.readers import landmarks_from_pose, write_landmarks

    suffix = ".pose" if output_format == "pose" else ".npz"
    output = out_dir / source.output_name(suffix)
    if output.exists() and not overwrite:
        return SequenceResult(source.id, "skipped", str(output))
    started = time.perf_counter()
    try:
        opened = open_sequence(source)
        pose = run_holistic(opened.frames, opened.fps, opened.width, opened.height)
        landmarks, mask, fps = landmarks_from_pose(pose, source.video or source.id)
    except SourceError as error:
        return SequenceResult(source.id, "failed", reason=str(error))
    except Exception as error:  # noqa: BLE001 - one bad sequence must not stop the others
        return SequenceResult(source.id, "failed", reason=f"{type(error).__name__}: {error}")
    seconds = time.perf_counter() - started
    detected = {name: float(mask[:, part].any(axis=1).mean()) for name, part in PARTS.items()}
    result = SequenceResult(source.id, "done", str(output), len(landmarks), fps, seconds, detected)
    if not mask.any():
        result.status, result.output = "failed", ""
        result.reason = f"no person detected in any of its {len(landmarks)} frames"
        return result
    if output_format == "pose":
        _write_pose(pose, output)
    else:
        write_landmarks(output, landmarks.astype(np.float32), mask, fps)
    return result


def _write_pose(pose, path: Path) -> None:
    from signconsole.data.readers import readable_like_any_file

    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            pose.write(handle)
        readable_like_any_file(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

"""Readers and the writer for per-sequence feature files.

Four formats are read, each sniffed by extension and shape:

- ``.npz``  signconsole's landmark file: ``landmarks`` [T, 543, 3] (float16) + ``mask`` [T, 543]
  (bool, True = detected) + ``fps``. What `extract` and `data fingerspell` write.
- ``.pose`` pose-format files (MediaPipe Holistic): the first four components are used in
  Holistic order (pose 33, face 478 -> first 468, left hand 21, right hand 21); a point that
  pose-format masks (confidence 0) is missing.
- ``.npy`` [T, 543, 3] landmarks (float16 ok); a point whose three values are all 0 counts as
  missing, the convention of tools that write zeros for undetected hands.
- ``.npy`` [T, 6516] precomputed features, as the seeds stored them (no mask: all present).

Every problem is a `FeatureFileError` whose message names the file and says how to fix it.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from signconsole.data.layout import FEATURE_DIM, N_FACE, N_HAND, N_LANDMARKS, N_POSE

FEATURE_SUFFIXES = (".npz", ".pose", ".npy")
FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504


class FeatureFileError(ValueError):
    """A feature file that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Sequence:
    """One sequence as read from disk: landmarks with a mask, or precomputed features."""

    landmarks: np.ndarray | None  # [T, 543, 3] float16/float32
    mask: np.ndarray | None  # [T, 543] bool, True = detected
    features: np.ndarray | None  # [T, 6516] float32, for precomputed files
    fps: float | None

    @property
    def n_frames(self) -> int:
        array = self.landmarks if self.landmarks is not None else self.features
        assert array is not None
        return int(array.shape[0])


def read_sequence(path: str | Path) -> Sequence:
    path = Path(path)
    if not path.exists():
        raise FeatureFileError(f"{path}: file not found")
    if path.is_dir():
        raise FeatureFileError(f"{path}: is a folder, expected a feature file; remove or rename it")
    if path.stat().st_size == 0:
        raise FeatureFileError(f"{path}: file is empty; re-extract or rebuild this sequence")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            sequence = _read_npz(path)
        elif suffix == ".npy":
            sequence = _read_npy(path)
        elif suffix == ".pose":
            sequence = _read_pose(path)
        else:
            raise FeatureFileError(
                f"{path}: unknown feature file type {suffix!r}; expected one of "
                f"{', '.join(FEATURE_SUFFIXES)}"
            )
    except FeatureFileError:
        raise
    except Exception as error:  # a truncated or foreign file: numpy/pose-format raise anything
        raise FeatureFileError(
            f"{path}: cannot be read ({type(error).__name__}: {error}); the file is corrupt or "
            "not a feature file, re-extract it"
        ) from None
    if sequence.landmarks is not None:
        _check_finite(path, "landmarks", sequence.landmarks)
    else:
        assert sequence.features is not None
        _check_finite(path, "features", sequence.features)
    return sequence


def read_mapped_features(path: str | Path) -> np.ndarray | None:
    """A precomputed [T, 6516] `.npy` file as float16, read through a memory map; None for any
    other file. Nothing stays mapped or cached: a Phoenix-sized train split is ~10 GB even as
    float16, so each load copies one sequence out of the OS page cache instead."""
    path = Path(path)
    mapped = _map_features(path)
    if mapped is None:
        return None
    with np.errstate(over="ignore"):  # a value beyond float16 is reported below, by name
        features = np.array(mapped, dtype=np.float16)  # a copy, even of a float16 file
    if not np.isfinite(features).all():
        _check_finite(path, "features", mapped)  # the file's own values say what is wrong
    del mapped  # unmapped now: the copy is all this process keeps
    return features


def mapped_frame_count(path: str | Path) -> int | None:
    """Frames of a precomputed [T, 6516] `.npy` file, from its header alone; None for any other
    file (whose frames only a full read tells)."""
    mapped = _map_features(Path(path))
    return None if mapped is None else int(mapped.shape[0])


def _map_features(path: Path) -> np.ndarray | None:
    """A [T, 6516] `.npy` file memory-mapped (nothing read yet but its header), None for any
    other file; a header that is not numbers or says 0 frames is a FeatureFileError."""
    if path.suffix.lower() != ".npy" or path.is_dir():
        return None  # a folder named *.npy: read_sequence says what it is
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as error:
        raise FeatureFileError(
            f"{path}: cannot be read ({type(error).__name__}: {error}); the file is corrupt or "
            "not a feature file, re-extract it"
        ) from None
    if mapped.ndim != 2 or mapped.shape[1] != FEATURE_DIM:
        return None
    _check_numbers(path, "array", mapped)
    if mapped.shape[0] == 0:
        raise FeatureFileError(f"{path}: has 0 frames; re-extract this sequence")
    return mapped


def _read_npz(path: Path) -> Sequence:
    with np.load(path, allow_pickle=False) as archive:
        missing = {"landmarks", "mask"} - set(archive.files)
        if missing:
            raise FeatureFileError(
                f"{path}: .npz landmark file lacks {', '.join(sorted(missing))}; it needs "
                "'landmarks' [T, 543, 3] and 'mask' [T, 543]"
            )
        landmarks = archive["landmarks"]
        mask = archive["mask"]
        fps = archive["fps"] if "fps" in archive.files else None
    _check_numbers(path, "landmarks", landmarks)
    _check_numbers(path, "mask", mask, allow_bool=True)
    mask = mask.astype(bool)
    fps = _frame_rate(path, fps)
    _check_landmark_shape(path, landmarks)
    if mask.shape != landmarks.shape[:2]:
        raise FeatureFileError(
            f"{path}: mask has shape {list(mask.shape)}, expected {list(landmarks.shape[:2])}"
        )
    return Sequence(landmarks=landmarks, mask=mask, features=None, fps=fps)


def _frame_rate(path: Path, stored: np.ndarray | None) -> float | None:
    """The `fps` entry of an .npz as a number; 0 (written for "unknown") or none is None."""
    if stored is None:
        return None
    if stored.size != 1 or not np.issubdtype(stored.dtype, np.number):
        raise FeatureFileError(
            f"{path}: 'fps' is {stored.dtype} of shape {list(stored.shape)}, expected one "
            "number (0 for unknown); rewrite the file"
        )
    fps = float(stored.reshape(()))
    return fps if math.isfinite(fps) and fps > 0 else None


def _read_npy(path: Path) -> Sequence:
    array = np.load(path, allow_pickle=False)
    _check_numbers(path, "array", array)
    if array.ndim == 3:
        _check_landmark_shape(path, array)
        mask = np.any(array != 0, axis=-1)
        return Sequence(landmarks=array, mask=mask, features=None, fps=None)
    if array.ndim == 2 and array.shape[1] == FEATURE_DIM:
        if array.shape[0] == 0:
            raise FeatureFileError(f"{path}: has 0 frames; re-extract this sequence")
        return Sequence(landmarks=None, mask=None, features=array.astype(np.float32), fps=None)
    raise FeatureFileError(
        f"{path}: array of shape {list(array.shape)} is neither landmarks [T, {N_LANDMARKS}, 3] "
        f"nor features [T, {FEATURE_DIM}]"
    )


def _read_pose(path: Path) -> Sequence:
    from pose_format import Pose  # imported here: pose-format pulls in more than numpy

    landmarks, mask, fps = landmarks_from_pose(Pose.read(path.read_bytes()), path)
    return Sequence(landmarks=landmarks, mask=mask, features=None, fps=fps)


def landmarks_from_pose(pose, where: str | Path) -> tuple[np.ndarray, np.ndarray, float]:
    """A pose-format Holistic pose -> landmarks [T, 543, 3] float32, mask [T, 543], fps."""
    names = [component.name for component in pose.header.components]
    wanted = [
        ("POSE_LANDMARKS", N_POSE),
        ("FACE_LANDMARKS", N_FACE),
        ("LEFT_HAND_LANDMARKS", N_HAND),
        ("RIGHT_HAND_LANDMARKS", N_HAND),
    ]
    data = pose.body.data[:, 0]  # first person: [T, points, dims]
    points = np.ma.getdata(data)
    masked = np.ma.getmaskarray(data)
    parts, part_masks = [], []
    for name, count in wanted:
        if name not in names:
            raise FeatureFileError(
                f"{where}: .pose file has no {name} component (it has {', '.join(names)}); "
                "signconsole needs MediaPipe Holistic poses"
            )
        start = sum(len(c.points) for c in pose.header.components[: names.index(name)])
        available = len(pose.header.components[names.index(name)].points)
        if available < count:
            raise FeatureFileError(f"{where}: {name} has {available} points, expected {count}")
        parts.append(points[:, start : start + count, :3])
        part_masks.append(~masked[:, start : start + count, :3].any(axis=-1))
    landmarks = np.concatenate(parts, axis=1).astype(np.float32)
    mask = np.concatenate(part_masks, axis=1)
    if landmarks.shape[0] == 0:
        raise FeatureFileError(f"{where}: has 0 frames; re-extract this sequence")
    if landmarks.shape[-1] < 3:  # a 2D pose file: z unknown
        landmarks = np.pad(landmarks, ((0, 0), (0, 0), (0, 3 - landmarks.shape[-1])))
    return landmarks, mask, float(pose.body.fps)


def _check_landmark_shape(path: Path, landmarks: np.ndarray) -> None:
    if landmarks.ndim != 3 or landmarks.shape[1:] != (N_LANDMARKS, 3):
        raise FeatureFileError(
            f"{path}: landmarks have shape {list(landmarks.shape)}, expected [T, {N_LANDMARKS}, 3] "
            "(pose 33, face 468, left hand 21, right hand 21)"
        )
    if landmarks.shape[0] == 0:
        raise FeatureFileError(f"{path}: has 0 frames; re-extract this sequence")


def _check_numbers(path: Path, key: str, array: np.ndarray, allow_bool: bool = False) -> None:
    """Real numbers (or, for a mask, booleans): a string or complex array would fail deep in
    numpy or torch with a message that names neither the file nor the key."""
    kind = array.dtype.kind
    if kind in "iuf" or (allow_bool and kind == "b"):
        return
    expected = "booleans (or 0/1)" if allow_bool else "float16 or float32 numbers"
    raise FeatureFileError(
        f"{path}: '{key}' has dtype {array.dtype}, expected {expected}; rewrite the file with "
        "numeric arrays or re-extract it"
    )


def _check_finite(path: Path, key: str, array: np.ndarray) -> None:
    """Finite, and within float16: the dataset keeps every sequence as float16, where a larger
    value becomes inf and surfaces much later as the model's non-finite output."""
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        raise FeatureFileError(
            f"{path}: contains NaN/Inf ({int((~finite).sum())} values, first at frame {bad[0]}); "
            "mark undetected landmarks in the mask instead of writing NaN, or re-extract"
        )
    if array.dtype.itemsize <= 2 or array.size == 0:  # float16 or narrow ints: in range
        return
    beyond = np.abs(array) > FLOAT16_MAX
    if beyond.any():
        where = np.argwhere(beyond)[0]
        value = float(array[tuple(where)])
        raise FeatureFileError(
            f"{path}: {key} value {value:.4g} at frame {where[0]} is beyond float16 "
            f"(+-{FLOAT16_MAX:.0f}), the precision sequences are kept in; store coordinates "
            "in pixels or normalized units, or re-extract"
        )


def write_landmarks(
    path: str | Path, landmarks: np.ndarray, mask: np.ndarray, fps: float | None = None
) -> None:
    """Write an .npz landmark file atomically: a killed writer never leaves a file that looks done."""
    path = Path(path)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (N_LANDMARKS, 3):
        raise ValueError(f"landmarks must be [T, {N_LANDMARKS}, 3], got {list(landmarks.shape)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            np.savez_compressed(
                handle,
                landmarks=np.where(mask[..., None], landmarks, 0).astype(np.float16),
                mask=mask.astype(bool),
                fps=np.float32(fps if fps is not None else 0.0),
            )
        readable_like_any_file(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def readable_like_any_file(path: str | Path) -> None:
    """mkstemp creates 0600 files; give the finished file the mode a plain open() would (umask),
    so other users and tools can read the corpus."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)

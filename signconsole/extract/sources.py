"""What `signconsole extract` reads: sequences found under INPUT, and their frames.

INPUT may be a video file, a folder of videos, a folder of frame images (one sequence), or a
corpus in the Phoenix-2014 layout whose `folder` column names per-sequence frame folders
(`01April_2010_Thursday_heute_default-0/1/*.png`, under `features/fullFrame-210x260px/<split>/`).
Frames are decoded with OpenCV and handed on as RGB arrays, one at a time, so a long video never
sits in memory whole.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
PHOENIX_FPS = 25.0  # the Phoenix-2014 recordings; frame folders carry no rate of their own
PHOENIX_FRAME_ROOTS = ("features/fullFrame-210x260px/{split}", "{split}", "")


class SourceError(ValueError):
    """One sequence cannot be read; the message says why (the others go on)."""


class InputError(ValueError):
    """INPUT as a whole is unusable (missing, nothing to extract)."""


@dataclass(frozen=True)
class SequenceSource:
    id: str
    split: str | None  # Phoenix corpora: train/dev/test
    video: str | None = None  # a video file, or
    frames: tuple[str, ...] = ()  # frame image files in order
    frames_pattern: str = ""  # what was looked for, for messages

    def output_name(self, suffix: str) -> str:
        """Where the corpus loader looks: features/<split>/<id> for Phoenix, else <id>."""
        return f"features/{self.split}/{self.id}{suffix}" if self.split else f"{self.id}{suffix}"


def find_sequences(input_path: Path) -> tuple[list[SequenceSource], bool]:
    """The sequences under INPUT, and whether INPUT is a Phoenix-layout corpus."""
    if not input_path.exists():
        raise InputError(f"{input_path}: no such file or folder")
    if input_path.is_file():
        if input_path.suffix.lower() not in VIDEO_SUFFIXES:
            raise InputError(
                f"{input_path}: not a video ({', '.join(VIDEO_SUFFIXES)}); give a video, a folder "
                "of videos, a folder of frames or a Phoenix-layout corpus"
            )
        return [SequenceSource(input_path.stem, None, video=str(input_path))], False
    annotations = sorted((input_path / "annotations" / "manual").glob("*.corpus.csv"))
    if annotations:
        return _phoenix(input_path, annotations), True
    videos = sorted(p for p in input_path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if videos:
        return [SequenceSource(p.stem, None, video=str(p)) for p in videos], False
    images = _images(input_path)
    if images:
        return [SequenceSource(input_path.name, None, frames=tuple(images))], False
    raise InputError(
        f"{input_path}: nothing to extract (no videos, no frame images, no "
        "annotations/manual/*.corpus.csv)"
    )


def _images(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _phoenix(root: Path, annotations: list[Path]) -> list[SequenceSource]:
    from signconsole.data.corpus import read_annotations

    sources = []
    for path in annotations:
        split = path.name.split(".")[0]
        for entry in read_annotations(path):
            frames: list[str] = []
            looked = ""
            for template in PHOENIX_FRAME_ROOTS:
                base = root / template.format(split=split)
                pattern = str(base / entry.folder)
                looked = looked or pattern
                found = sorted(glob.glob(pattern))
                if found:
                    frames = [f for f in found if Path(f).suffix.lower() in IMAGE_SUFFIXES]
                    break
            sources.append(
                SequenceSource(entry.id, split, frames=tuple(frames), frames_pattern=looked)
            )
    return sources


@dataclass
class OpenedSequence:
    frames: Iterator[np.ndarray]  # RGB uint8 [H, W, 3]
    fps: float
    width: int
    height: int


def open_sequence(source: SequenceSource) -> OpenedSequence:
    import cv2

    if source.video is not None:
        capture = cv2.VideoCapture(source.video)
        if not capture.isOpened():
            raise SourceError(f"{source.video}: OpenCV cannot open this video (corrupt or codec?)")
        ok, first = capture.read()
        if not ok or first is None:
            capture.release()
            raise SourceError(f"{source.video}: no frame could be decoded")
        fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        height, width = first.shape[:2]

        def video_frames() -> Iterator[np.ndarray]:
            frame = first
            try:
                while frame is not None:
                    yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                    ok, frame = capture.read()
                    if not ok:
                        break
            finally:
                capture.release()

        return OpenedSequence(video_frames(), fps if fps > 0 else 25.0, width, height)

    if not source.frames:
        raise SourceError(
            f"{source.id}: no frame images"
            + (f" at {source.frames_pattern}" if source.frames_pattern else "")
        )
    first = cv2.imread(source.frames[0])
    if first is None:
        raise SourceError(f"{source.frames[0]}: not a readable image")
    height, width = first.shape[:2]

    def image_frames() -> Iterator[np.ndarray]:
        for path in source.frames:
            image = cv2.imread(path)
            if image is None:
                raise SourceError(f"{path}: not a readable image")
            if image.shape[:2] != (height, width):
                raise SourceError(
                    f"{source.id}: frames have different sizes ({width}x{height} in "
                    f"{Path(source.frames[0]).name}, {image.shape[1]}x{image.shape[0]} in "
                    f"{Path(path).name}); resize them to one size first"
                )
            yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    fps = PHOENIX_FPS if source.split else 25.0
    return OpenedSequence(image_frames(), fps, width, height)

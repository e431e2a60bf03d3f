"""The fingerspelling lexicon of `spoken-to-signed`: its languages, alphabets and letter clips.

`spoken-to-signed` ships one pose clip per letter for about twenty sign languages. Each clip runs
rest -> raise -> hold -> lower; `clip_bank` loads a language's clips once, cleaned up and with
their phases found, for `spelling.py` to chain into spelled sequences.
"""

from __future__ import annotations

import csv
import functools
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np

from signconsole.data.layout import LEFT_SHOULDER, N_FACE, RIGHT_SHOULDER, FeatureLayout
from signconsole.data.readers import read_sequence

OUTPUT_FPS = 25.0

# Clip clean-up. Two gss clips continue after the letter with the hand tens of shoulder widths
# away (tracking garbage); the genuine letter is the part before that.
MAX_HAND_DISTANCE = 3.0  # shoulder widths from the shoulder centre; real clips stay below ~2.6
# gss clips are ~8 frames for a whole rest-raise-hold-lower (temporally subsampled); a language
# whose median letter is shorter than this is stretched to NOMINAL_LETTER_SECONDS.
MIN_LETTER_SECONDS = 0.6
NOMINAL_LETTER_SECONDS = 1.0
HOLD_THRESHOLD = 0.25  # hold = hand within this fraction of the rest->hold height of the hold


# Per hand: its landmark range and the pose points (wrist first, then pinky, index, thumb) that
# move with it, so the body's hand points agree with the jittered hand.
_HANDS = (
    (FeatureLayout.left_hand_landmarks, (15, 17, 19, 21)),
    (FeatureLayout.right_hand_landmarks, (16, 18, 20, 22)),
)


# --- the lexicon -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    path: Path
    spoken_language: str
    signed_language: str
    gloss: str


def lexicon_dir() -> Path:
    """The fingerspelling lexicon folder inside the installed spoken-to-signed package."""
    folder = Path(str(resources.files("spoken_to_signed") / "assets" / "fingerspelling_lexicon"))
    if not (folder / "index.csv").exists():
        raise FileNotFoundError(
            f"{folder}: fingerspelling lexicon not found; reinstall spoken-to-signed "
            "(pip install 'spoken-to-signed>=0.4')"
        )
    return folder


@functools.cache
def _index() -> tuple[_Entry, ...]:
    folder = lexicon_dir()
    with (folder / "index.csv").open(encoding="utf-8", newline="") as handle:
        return tuple(
            _Entry(
                path=folder / row["path"],
                spoken_language=row["spoken_language"],
                signed_language=row["signed_language"],
                gloss=unicodedata.normalize("NFC", row["glosses"].strip()),
            )
            for row in csv.DictReader(handle)
        )


def available_languages() -> list[str]:
    return sorted({entry.signed_language for entry in _index()})


def _entries(lang: str) -> list[_Entry]:
    entries = [entry for entry in _index() if entry.signed_language == lang]
    if not entries:
        raise ValueError(
            f"unknown fingerspelling language {lang!r}; available: "
            f"{', '.join(available_languages())}"
        )
    return entries


def load_alphabet(lang: str) -> dict[str, Path]:
    """Gloss (letter, or a multi-letter sign like "SCH") -> clip path, in lexicon order."""
    alphabet: dict[str, Path] = {}
    for entry in _entries(lang):
        alphabet.setdefault(entry.gloss, entry.path)  # first row wins should one repeat
    return alphabet


def spell(word: str, glosses: Iterable[str]) -> tuple[str, ...] | None:
    """Greedy longest-match tokenization of `word` into lexicon glosses, case-insensitive.

    None when some part of the word has no gloss. `str.lower`, not `casefold`, so that "ß" stays
    one letter instead of matching "ss".
    """
    by_key = {unicodedata.normalize("NFC", g).lower(): g for g in glosses}
    longest = max((len(key) for key in by_key), default=0)
    text = unicodedata.normalize("NFC", word.strip()).lower()
    tokens: list[str] = []
    position = 0
    while position < len(text):
        for size in range(min(longest, len(text) - position), 0, -1):
            gloss = by_key.get(text[position : position + size])
            if gloss is not None:
                tokens.append(gloss)
                position += size
                break
        else:
            return None
    return tuple(tokens) or None


# --- clips -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Clip:
    offset: int  # first frame in the bank
    frames: int
    hand: int  # the signing hand: 0 left (ise), 1 right (most languages)
    raise_end: int  # first frame of the hold
    lower_start: int  # last frame of the hold
    seconds_per_frame: float  # after the language's stretch


@dataclass(frozen=True)
class ClipBank:
    """Every clip of a language in one array, so a sample is a single vectorized gather."""

    landmarks: np.ndarray  # [N, K, 3] float32; K = 543 unless `landmark_index` says otherwise
    mask: np.ndarray  # [N, K] bool
    clips: dict[str, _Clip]
    landmark_index: np.ndarray | None = None  # the 543-layout index of each column; None: all
    hands: tuple = _HANDS  # per hand: its landmark range and its pose points, in this bank

    @cached_property
    def planes(self) -> np.ndarray:
        """The landmarks as coordinate planes [3, N, K] (x, y, z), what rendering reads."""
        planes = np.ascontiguousarray(self.landmarks.transpose(2, 0, 1))
        planes.flags.writeable = False
        return planes

    def without_face(self) -> ClipBank:
        """The bank without the face's 468 landmarks (86% of the work of rendering a
        sequence), for a profile that ignores the face: its values never reach the model.
        Pose stays first, so the shoulders and the pose's hand points keep their indices."""
        if self.landmark_index is not None:
            return self
        face = FeatureLayout.face_landmarks
        keep = np.r_[0 : face.start, face.stop : self.landmarks.shape[1]]
        hands = tuple(
            (slice(hand.start - N_FACE, hand.stop - N_FACE), points) for hand, points in _HANDS
        )
        landmarks, mask = self.landmarks[:, keep], self.mask[:, keep]
        landmarks.flags.writeable = mask.flags.writeable = False
        return ClipBank(landmarks, mask, self.clips, keep, hands)


def _shoulder_frame(landmarks: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float]:
    """Median shoulder centre and width of a clip (the canvas centre if shoulders are missing)."""
    both = mask[:, LEFT_SHOULDER] & mask[:, RIGHT_SHOULDER]
    if not both.any():
        return np.array([250.0, 250.0], dtype=np.float32), 200.0
    left, right = landmarks[both, LEFT_SHOULDER, :2], landmarks[both, RIGHT_SHOULDER, :2]
    width = float(np.median(np.linalg.norm(left - right, axis=-1)))
    return np.median((left + right) / 2, axis=0), max(width, 1e-3)


def _clean_length(landmarks: np.ndarray, mask: np.ndarray) -> int:
    """Frames to keep: up to the first frame whose hands fly off the body (tracking garbage)."""
    centre, width = _shoulder_frame(landmarks, mask)
    hands = slice(FeatureLayout.left_hand_landmarks.start, FeatureLayout.right_hand_landmarks.stop)
    distance = np.linalg.norm(landmarks[:, hands, :2] - centre, axis=-1) / width
    far = (np.where(mask[:, hands], distance, 0.0) > MAX_HAND_DISTANCE).any(axis=1)
    bad = np.flatnonzero(far[1:])
    return int(bad[0]) + 1 if bad.size else len(landmarks)


def _signing_hand(mask: np.ndarray) -> int:
    """The hand seen most in the clip: ise signs with the left, the others with the right."""
    return int(np.argmax([mask[:, hand].sum() for hand, _ in _HANDS]))


def _phases(landmarks: np.ndarray, mask: np.ndarray, side: int) -> tuple[int, int]:
    """(first, last) frame of the hold: where the signing hand is up near its hold height."""
    frames = len(landmarks)
    hand = _HANDS[side][0]
    present = mask[:, hand].any(axis=1)
    if present.sum() < 2:
        return 0, frames - 1
    counts = np.maximum(mask[:, hand].sum(axis=1), 1)
    height = np.where(mask[:, hand], landmarks[:, hand, 1], 0.0).sum(axis=1) / counts
    middle = np.zeros(frames, dtype=bool)
    middle[frames // 3 : max(frames // 3 + 1, 2 * frames // 3)] = True
    reference = present & middle if (present & middle).any() else present
    hold = float(np.median(height[reference]))
    rest = float(height[present].max())  # image y grows downwards: rest is the largest y
    up = present & (height <= hold + HOLD_THRESHOLD * (rest - hold))
    if not up.any():
        return 0, frames - 1
    return int(np.flatnonzero(up)[0]), int(np.flatnonzero(up)[-1])


@functools.cache
def clip_bank(lang: str) -> ClipBank:
    raw: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    for gloss, path in load_alphabet(lang).items():
        sequence = read_sequence(path)
        assert sequence.landmarks is not None and sequence.mask is not None
        landmarks = sequence.landmarks.astype(np.float32)
        mask = sequence.mask.astype(bool)
        keep = _clean_length(landmarks, mask)
        raw[gloss] = (landmarks[:keep], mask[:keep], float(sequence.fps or OUTPUT_FPS))

    median_seconds = float(np.median([len(lm) / fps for lm, _, fps in raw.values()]))
    stretch = (
        NOMINAL_LETTER_SECONDS / median_seconds if median_seconds < MIN_LETTER_SECONDS else 1.0
    )
    clips: dict[str, _Clip] = {}
    offset = 0
    for gloss, (landmarks, mask, fps) in raw.items():
        side = _signing_hand(mask)
        first, last = _phases(landmarks, mask, side)
        clips[gloss] = _Clip(offset, len(landmarks), side, first, last, stretch / fps)
        offset += len(landmarks)
    landmarks = np.concatenate([lm for lm, _, _ in raw.values()])
    mask = np.concatenate([m for _, m, _ in raw.values()])
    landmarks.flags.writeable = mask.flags.writeable = False  # cached and shared by every sample
    return ClipBank(landmarks=landmarks, mask=mask, clips=clips)

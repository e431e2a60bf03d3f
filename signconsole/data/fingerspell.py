"""The built-in demo corpus: continuous fingerspelling spelled from real MediaPipe poses.

`spoken-to-signed` ships one pose clip per letter for about twenty sign languages. Each clip runs
rest -> raise -> hold -> lower. A sample here is a word spelled by chaining its letters' clips:
the raise and lower phases between letters are mostly cut so the letters flow, short eased
transitions join them, and every letter and every sample gets its own augmentation (speed,
trimming, hand rotation, an affine jitter of the whole body, landmark noise). With a single clip
per letter, augmentation is all the variety the corpus has.

The output is a Phoenix-2014 layout directory, so the one corpus loader serves both:

    ROOT/annotations/manual/{split}.corpus.csv   id|folder|signer|annotation
    ROOT/annotations/manual/{split}.frames.csv   id|frames
    ROOT/features/{split}/{id}.npz               landmarks + mask (`write_landmarks`)
    ROOT/fingerspell.json                        config + summary, written last

Everything is a pure function of (lang, seed, counts): the same config gives byte-identical
annotations and identical landmark arrays.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import unicodedata
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from signconsole.config import FingerspellConfig
from signconsole.data.layout import LEFT_SHOULDER, RIGHT_SHOULDER, FeatureLayout
from signconsole.data.readers import read_sequence, write_landmarks

FORMAT_VERSION = 1  # bump when the output changes for the same config: old caches rebuild
SPLITS = ("train", "dev", "test")
OUTPUT_FPS = 25.0
SIGNER = "lexicon"
METADATA = "fingerspell.json"
WORDLIST_DIR = Path(__file__).parent / "wordlists"

MIN_SPELLABLE_WORDS = 60  # fewer real words than this: spell pseudo-words instead
PSEUDO_WORDS = 400  # pseudo-word types generated for a language without a usable word list
PSEUDO_LENGTH = (3, 7)  # glosses per pseudo-word, inclusive

# Clip clean-up. Two gss clips continue after the letter with the hand tens of shoulder widths
# away (tracking garbage); the genuine letter is the part before that.
MAX_HAND_DISTANCE = 3.0  # shoulder widths from the shoulder centre; real clips stay below ~2.6
# gss clips are ~8 frames for a whole rest-raise-hold-lower (temporally subsampled); a language
# whose median letter is shorter than this is stretched to NOMINAL_LETTER_SECONDS.
MIN_LETTER_SECONDS = 0.6
NOMINAL_LETTER_SECONDS = 1.0
HOLD_THRESHOLD = 0.25  # hold = hand within this fraction of the rest->hold height of the hold

# Augmentation ranges (uniform). Pixel values are on the lexicon's canvas, where the shoulders are
# ~200 px apart.
TEMPO = (0.8, 1.25)  # per sample: >1 is slower (more frames)
HOLD_SPEED = (0.3, 0.8)  # per letter: fraction of the citation-form hold kept (time-stretched)
MOTION_SPEED = (0.7, 1.3)  # per letter: time-stretch of the kept raise/lower motion
EDGE_KEEP = (0.4, 1.0)  # fraction of the raise (first letter) / lower (last letter) kept
INNER_KEEP = (0.0, 0.35)  # same between letters, where the hand stays up
TRANSITION_FRAMES = (2, 5)  # eased interpolation between consecutive letters, inclusive
HAND_ROTATION = np.deg2rad(8.0)  # per letter, each hand about its wrist
HAND_SCALE = (0.94, 1.06)  # per letter, each hand about its wrist
DOUBLE_SLIDE = (12.0, 30.0)  # px: a repeated letter slides sideways, as signers do
BODY_ROTATION = np.deg2rad(7.0)  # per sample, about the shoulder centre
BODY_SCALE = (0.9, 1.1)
BODY_ASPECT = (0.96, 1.04)
BODY_SHIFT = 20.0  # px
NOISE_SIGMA = (0.4, 1.2)  # px, per-frame gaussian on x and y

# Per hand: its landmark range and the pose points (wrist first, then pinky, index, thumb) that
# move with it, so the body's hand points agree with the jittered hand.
_HANDS = (
    (FeatureLayout.left_hand_landmarks, (15, 17, 19, 21)),
    (FeatureLayout.right_hand_landmarks, (16, 18, 20, 22)),
)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class CorpusSummary:
    root: Path
    lang: str
    counts: dict[str, int]  # split -> sequences
    frames: dict[str, int]  # split -> total frames
    letters: list[str]  # sorted gloss inventory used
    words: dict[str, int]  # split -> distinct words


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
class _Bank:
    """Every clip of a language in one array, so a sample is a single vectorized gather."""

    landmarks: np.ndarray  # [N, 543, 3] float32
    mask: np.ndarray  # [N, 543] bool
    clips: dict[str, _Clip]


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
def _bank(lang: str) -> _Bank:
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
    return _Bank(landmarks=landmarks, mask=mask, clips=clips)


# --- words -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Vocabulary:
    words: list[tuple[str, ...]]  # gloss sequences, unique
    source: str  # where they came from, for fingerspell.json


def _rng(config: FingerspellConfig, *stream: int) -> np.random.Generator:
    # crc32, not hash(): Python salts str hashes per process.
    key = [config.seed, zlib.crc32(config.lang.encode("utf-8")), *stream]
    return np.random.default_rng(np.random.SeedSequence(key))


def _read_wordlist(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pseudo_word(rng: np.random.Generator, glosses: list[str]) -> tuple[str, ...]:
    length = int(rng.integers(PSEUDO_LENGTH[0], PSEUDO_LENGTH[1] + 1))
    return tuple(glosses[i] for i in rng.integers(0, len(glosses), size=length))


def _vocabulary(config: FingerspellConfig, alphabet: list[str]) -> _Vocabulary:
    spoken = _entries(config.lang)[0].spoken_language
    path = WORDLIST_DIR / f"{spoken}.txt"
    words: dict[tuple[str, ...], None] = {}  # an ordered set
    if path.exists():
        for word in _read_wordlist(path):
            tokens = spell(word, alphabet)
            if tokens is not None and len(tokens) >= 2:
                words.setdefault(tokens)
    source = f"wordlists/{path.name}"
    rng = _rng(config, 0)
    if len(words) < MIN_SPELLABLE_WORDS:
        # No usable list (Arabic, Greek, Ukrainian, ...): letters in random order still teach
        # a recognizer to segment and read continuous fingerspelling.
        words, source = {}, "pseudo-words"
        for _ in range(PSEUDO_WORDS * 20):  # bounded: a tiny alphabet has few distinct words
            if len(words) >= PSEUDO_WORDS:
                break
            words.setdefault(_pseudo_word(rng, alphabet))
    # Letters no real word spells (e.g. sgg "ÖÖ") still have to appear in train: add two
    # pseudo-words around each; _split_words puts them in train through the cover.
    present = {gloss for word in words for gloss in word}
    missing = [gloss for gloss in alphabet if gloss not in present]
    for gloss in missing:
        for _ in range(2):
            before, after = _pseudo_word(rng, alphabet)[:2], _pseudo_word(rng, alphabet)[:2]
            words.setdefault((*before, gloss, *after))
    if missing:
        source += f" + pseudo-words for {' '.join(missing)}"
    return _Vocabulary(list(words), source)


def _cover(words: list[tuple[str, ...]], alphabet: list[str]) -> list[tuple[str, ...]]:
    """A small set of words spelling every letter (greedy set cover, ties by order)."""
    uncovered = set(alphabet)
    chosen: list[tuple[str, ...]] = []
    while uncovered:
        best = max(words, key=lambda word: len(uncovered.intersection(word)))
        if not uncovered.intersection(best):
            break
        chosen.append(best)
        uncovered -= set(best)
    return chosen


def _type_count(available: int, count: int, total: int) -> int:
    """Word types for a held-out split: its share of the samples, at least 1, at most its count."""
    if count <= 0 or total <= 0:
        return 0
    return min(count, max(1, round(available * count / total)))


def _split_words(
    config: FingerspellConfig, vocabulary: _Vocabulary, alphabet: list[str]
) -> tuple[dict[str, list[tuple[str, ...]]], list[tuple[str, ...]]]:
    """Disjoint word types per split, and the cover words train must spell first."""
    rng = _rng(config, 1)
    shuffled = [vocabulary.words[i] for i in rng.permutation(len(vocabulary.words))]
    cover = _cover(shuffled, alphabet)
    chosen = set(cover)
    rest = [word for word in shuffled if word not in chosen]
    total = config.train + config.dev + config.test
    n_dev = _type_count(len(rest), config.dev, total)
    n_test = _type_count(len(rest), config.test, total)
    # Train keeps at least half of the non-cover types however the counts are skewed.
    while n_dev + n_test > len(rest) // 2 and (n_dev > 1 or n_test > 1):
        if n_dev >= n_test:
            n_dev -= 1
        else:
            n_test -= 1
    splits = {
        "dev": rest[:n_dev],
        "test": rest[n_dev : n_dev + n_test],
        "train": cover + rest[n_dev + n_test :],
    }
    return splits, cover


def _plan(
    types: list[tuple[str, ...]],
    count: int,
    rng: np.random.Generator,
    first: list[tuple[str, ...]] | None = None,
) -> list[tuple[str, ...]]:
    """`count` words: `first` in order, then shuffled passes over the types (balanced use)."""
    plan = list(first or [])[:count]
    while len(plan) < count and types:
        plan.extend(types[i] for i in rng.permutation(len(types)))
    return plan[:count]


# --- rendering -------------------------------------------------------------------------------


def _letter_positions(
    clip: _Clip, keep_raise: float, keep_lower: float, hold_speed: float, motion_speed: float
) -> np.ndarray:
    """Fractional clip-frame positions for one letter at the output frame rate.

    The kept part of the raise, the hold and the kept part of the lower phase are each
    time-stretched on their own, so holds can shrink while the motion keeps its pace.
    """
    first, last, end_frame = clip.raise_end, clip.lower_start, clip.frames - 1
    start = first - round(keep_raise * first)
    end = last + round(keep_lower * (end_frame - last))
    knots = np.array([start, first, last, end], dtype=np.float64)
    outputs = []
    for length, speed, minimum in (
        (first - start, motion_speed, 0),
        (last - first, hold_speed, 2),  # even a one-frame hold is seen for a couple of frames
        (end - last, motion_speed, 0),
    ):
        frames = round(length * clip.seconds_per_frame * OUTPUT_FPS * speed)
        outputs.append(max(frames, minimum, 1 if length else 0))
    times = np.concatenate([[0], np.cumsum(outputs)])
    return np.interp(np.arange(times[-1] + 1), times, knots)


@dataclass
class _Timeline:
    """Per output frame: the two bank frames it blends, their weight, and the hands' jitter."""

    first: list[np.ndarray]  # [n] bank frame
    second: list[np.ndarray]  # [n] bank frame
    weight: list[np.ndarray]  # [n] of `second`
    hands: list[np.ndarray]  # [n, 2 hands, 4]: angle, scale, shift x, shift y

    def add(
        self, first: np.ndarray, second: np.ndarray, weight: np.ndarray, hands: np.ndarray
    ) -> None:
        self.first.append(first)
        self.second.append(second)
        self.weight.append(weight)
        self.hands.append(hands)


def _hand_state(rng: np.random.Generator, clip: _Clip, repeated: np.ndarray | None) -> np.ndarray:
    """[2 hands, 4] jitter of one letter; `repeated` is the previous state for a double letter."""
    state = np.zeros((2, 4))
    state[:, 0] = rng.uniform(-HAND_ROTATION, HAND_ROTATION, size=2)
    state[:, 1] = rng.uniform(*HAND_SCALE, size=2)
    if repeated is not None:
        # Two identical clips in a row would be one long hold; signers mark the repeat with a
        # small slide of the signing hand, which also shows a recognizer the letter boundary.
        state[:, 2:] = repeated[:, 2:]
        slide = rng.uniform(*DOUBLE_SLIDE) * rng.choice([-1.0, 1.0])
        state[clip.hand, 2] += slide
    return state


def _timeline(glosses: tuple[str, ...], bank: _Bank, rng: np.random.Generator) -> _Timeline:
    timeline = _Timeline([], [], [], [])
    tempo = rng.uniform(*TEMPO)
    previous: tuple[int, np.ndarray] | None = None  # last bank frame and hand state
    for index, gloss in enumerate(glosses):
        clip = bank.clips[gloss]
        keep_raise = rng.uniform(*(EDGE_KEEP if index == 0 else INNER_KEEP))
        keep_lower = rng.uniform(*(EDGE_KEEP if index == len(glosses) - 1 else INNER_KEEP))
        hold_speed = tempo * rng.uniform(*HOLD_SPEED)
        motion_speed = tempo * rng.uniform(*MOTION_SPEED)
        repeated = previous[1] if previous and glosses[index - 1] == gloss else None
        hands = _hand_state(rng, clip, repeated)
        positions = _letter_positions(clip, keep_raise, keep_lower, hold_speed, motion_speed)
        floor = np.floor(positions).astype(np.int64)
        if previous is not None:
            last_frame, last_hands = previous
            steps = int(rng.integers(TRANSITION_FRAMES[0], TRANSITION_FRAMES[1] + 1))
            t = np.arange(1, steps + 1) / (steps + 1)
            ease = t * t * (3 - 2 * t)  # smoothstep: the hand accelerates, then settles
            timeline.add(
                np.full(steps, last_frame),
                np.full(steps, clip.offset + floor[0]),
                ease,
                last_hands + (hands - last_hands) * ease[:, None, None],
            )
        timeline.add(
            clip.offset + floor,
            clip.offset + np.minimum(floor + 1, clip.frames - 1),
            positions - floor,
            np.broadcast_to(hands, (len(positions), 2, 4)),
        )
        previous = (clip.offset + int(round(positions[-1])), hands)
    return timeline


def _rotate(xy: np.ndarray, angle: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Rotate and scale [T, K, 2] offsets by per-frame angle [T] and scale [T]."""
    cos, sin = (np.cos(angle) * scale)[:, None], (np.sin(angle) * scale)[:, None]
    x, y = xy[..., 0], xy[..., 1]
    return np.stack([cos * x - sin * y, sin * x + cos * y], axis=-1)


def _jitter_hands(points: np.ndarray, mask: np.ndarray, hands: np.ndarray) -> None:
    """Per-letter rotation and scale of each hand about its wrist, then its shift (in place).

    The pose's hand points (wrist, pinky, index, thumb) move with the hand so body and hand
    agree. Where the pivot wrist is missing (ase never sees pose 15, yet sees the fingers next to
    it) those points are only shifted: rotating about a missing point would fling them away.
    """
    for side, (hand, pose_points) in enumerate(_HANDS):
        angle, scale, shift = hands[:, side, 0], hands[:, side, 1], hands[:, side, None, 2:]
        for group in (np.arange(hand.start, hand.stop), np.array(pose_points)):
            pivot_present = mask[:, group[0]]
            wrist = points[:, group[0], None, :2].copy()
            offsets = points[:, group[1:], :2] - wrist
            rotated = wrist + _rotate(
                offsets, np.where(pivot_present, angle, 0.0), np.where(pivot_present, scale, 1.0)
            )
            points[:, group[1:], :2] = rotated
            points[:, group, :2] += shift.astype(np.float32)


def _jitter_body(points: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    """One affine per sample about the shoulder centre: rotation, scale, aspect, shift."""
    both = mask[:, LEFT_SHOULDER] & mask[:, RIGHT_SHOULDER]
    if both.any():
        shoulders = points[both][:, [LEFT_SHOULDER, RIGHT_SHOULDER], :2]
        pivot = shoulders.mean(axis=(0, 1))
    else:
        pivot = points[mask][:, :2].mean(axis=0) if mask.any() else np.zeros(2, np.float32)
    angle = rng.uniform(-BODY_ROTATION, BODY_ROTATION)
    scale = rng.uniform(*BODY_SCALE)
    aspect = rng.uniform(*BODY_ASPECT)
    shift = rng.uniform(-BODY_SHIFT, BODY_SHIFT, size=2)
    cos, sin = np.cos(angle), np.sin(angle)
    matrix = np.array([[cos, -sin], [sin, cos]]) @ np.diag([scale * aspect, scale / aspect])
    offsets = points[..., :2] - pivot
    points[..., :2] = offsets @ matrix.T.astype(np.float32) + (pivot + shift)


def _render(
    glosses: tuple[str, ...], bank: _Bank, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One augmented sample: landmarks [T, 543, 3] float32 and mask [T, 543]."""
    timeline = _timeline(glosses, bank, rng)
    first = np.concatenate(timeline.first)
    second = np.concatenate(timeline.second)
    weight = np.concatenate(timeline.weight).astype(np.float32)
    w = weight[:, None, None]
    points = bank.landmarks[first] * (1 - w) + bank.landmarks[second] * w
    # A blended landmark exists only where every frame it draws from has it: a hand the
    # lexicon masked is never invented by interpolation.
    mask = (bank.mask[first] | (weight >= 1)[:, None]) & (
        bank.mask[second] | (weight <= 0)[:, None]
    )
    _jitter_hands(points, mask, np.concatenate(timeline.hands))
    _jitter_body(points, mask, rng)
    sigma = rng.uniform(*NOISE_SIGMA)
    points[..., :2] += sigma * rng.standard_normal(points[..., :2].shape, dtype=np.float32)
    points = np.where(mask[..., None], points, 0.0).astype(np.float32)
    return points, mask


# --- building --------------------------------------------------------------------------------


class _Writer:
    """Compresses and writes samples on worker threads (zlib releases the GIL).

    Rendering stays on the caller's thread, so the random streams and the output never depend on
    thread timing. At most a few samples wait in memory.
    """

    def __init__(self, written: Callable[[], None]) -> None:
        self._workers = max(1, min(4, os.cpu_count() or 1))
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="fingerspell")
        self._pending: deque[Future[None]] = deque()
        self._written = written

    def submit(self, path: Path, landmarks: np.ndarray, mask: np.ndarray) -> None:
        self._pending.append(self._pool.submit(write_landmarks, path, landmarks, mask, OUTPUT_FPS))
        while len(self._pending) > 2 * self._workers:
            self._collect()

    def _collect(self) -> None:
        self._pending.popleft().result()  # re-raises a failed write here
        self._written()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        try:
            while error_type is None and self._pending:
                self._collect()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _sample_id(lang: str, split: str, index: int) -> str:
    return f"{lang}-{split}-{index:06d}"


def _build_into(
    work: Path, config: FingerspellConfig, progress: Progress | None
) -> dict[str, object]:
    alphabet = list(load_alphabet(config.lang))
    bank = _bank(config.lang)
    vocabulary = _vocabulary(config, alphabet)
    split_types, cover = _split_words(config, vocabulary, alphabet)
    counts = {"train": config.train, "dev": config.dev, "test": config.test}
    plans = {
        split: _plan(
            split_types[split],
            counts[split],
            _rng(config, 2, number),
            cover if split == "train" else None,
        )
        for number, split in enumerate(SPLITS)
    }
    total = sum(len(plan) for plan in plans.values())
    done = 0
    if progress:
        progress(done, total)

    def written() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    manual = work / "annotations" / "manual"
    manual.mkdir(parents=True)
    frames: dict[str, int] = {}
    with _Writer(written) as writer:
        for number, split in enumerate(SPLITS):
            (work / "features" / split).mkdir(parents=True)  # even when the split is empty
            corpus_lines = ["id|folder|signer|annotation"]
            frame_lines = ["id|frames"]
            for index, glosses in enumerate(plans[split]):
                sample_id = _sample_id(config.lang, split, index)
                folder = f"features/{split}/{sample_id}.npz"
                landmarks, mask = _render(glosses, bank, _rng(config, 3, number, index))
                writer.submit(work / folder, landmarks, mask)
                corpus_lines.append(f"{sample_id}|{folder}|{SIGNER}|{' '.join(glosses)}")
                frame_lines.append(f"{sample_id}|{len(landmarks)}")
                frames[split] = frames.get(split, 0) + len(landmarks)
            _write_text(manual / f"{split}.corpus.csv", corpus_lines)
            _write_text(manual / f"{split}.frames.csv", frame_lines)
    return {
        "format_version": FORMAT_VERSION,
        "config": asdict(config),
        "lang": config.lang,
        "spoken_language": _entries(config.lang)[0].spoken_language,
        "word_source": vocabulary.source,
        "fps": OUTPUT_FPS,
        "counts": {split: len(plans[split]) for split in SPLITS},
        "frames": {split: frames.get(split, 0) for split in SPLITS},
        "letters": sorted({gloss for plan in plans.values() for word in plan for gloss in word}),
        "words": {split: len(set(plans[split])) for split in SPLITS},
        "word_types": {split: len(split_types[split]) for split in SPLITS},
    }


def _write_text(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


def _summary(root: Path, metadata: dict) -> CorpusSummary:
    return CorpusSummary(
        root=root,
        lang=metadata["lang"],
        counts={split: metadata["counts"][split] for split in SPLITS},  # json sorts keys
        frames={split: metadata["frames"][split] for split in SPLITS},
        letters=list(metadata["letters"]),
        words={split: metadata["words"][split] for split in SPLITS},
    )


def _looks_like_corpus(folder: Path) -> bool:
    return (folder / METADATA).exists() or (folder / "annotations" / "manual").is_dir()


def _remove_stale_builds(target: Path) -> None:
    """Delete temp dirs of builds of `target` whose process is gone (a killed build)."""
    for folder in target.parent.glob(f".{target.name}.building-*"):
        match = re.match(r"\d+", folder.name.rsplit(".building-", 1)[1])
        if match is None:
            continue
        try:
            os.kill(int(match.group()), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # alive but someone else's process
            continue


def _install(work: Path, target: Path) -> None:
    """Swap the finished build in: the target is never seen half-written."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / "corpus")
    os.replace(work, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_corpus(
    config: FingerspellConfig, out_dir: Path, progress: Progress | None = None
) -> CorpusSummary:
    """Spell the corpus of `config` into `out_dir`, replacing an earlier corpus there.

    The build goes to a temp dir beside `out_dir` and is renamed into place when complete, with
    fingerspell.json written last. Reports progress as (sequences done, sequences total).
    """
    load_alphabet(config.lang)  # an unknown language fails before anything is touched
    for split in SPLITS:
        if getattr(config, split) < 0:
            raise ValueError(f"fingerspell.{split} must be >= 0, got {getattr(config, split)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir}: exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not _looks_like_corpus(out_dir):
        raise ValueError(
            f"{out_dir}: directory is not empty and holds no fingerspelling corpus; "
            "choose a new or empty output directory"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(out_dir)
    # Not mkdtemp: its 0700 mode would stick to the corpus; mkdir honours the umask.
    work = out_dir.parent / f".{out_dir.name}.building-{os.getpid()}-{secrets.token_hex(4)}"
    work.mkdir()
    try:
        metadata = _build_into(work, config, progress)
        text = json.dumps(metadata, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        (work / METADATA).write_text(text, encoding="utf-8")  # last: marks the build complete
        _install(work, out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return _summary(out_dir, metadata)


# --- the cache -------------------------------------------------------------------------------


def corpus_cache_dir(config: FingerspellConfig, cache_root: Path | None = None) -> Path:
    """Where `ensure_corpus` keeps the corpus of `config`: one folder per config and format."""
    if cache_root is None:
        env = os.environ.get("SIGNCONSOLE_CACHE")
        cache_root = Path(env) if env else Path.home() / ".cache" / "signconsole"
    key = json.dumps({"format": FORMAT_VERSION, "config": asdict(config)}, sort_keys=True)
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:10]
    lang = re.sub(r"[^A-Za-z0-9_-]", "_", config.lang) or "_"
    return Path(cache_root) / f"fingerspell-{lang}-v{FORMAT_VERSION}-{digest}"


def _complete(root: Path, config: FingerspellConfig) -> CorpusSummary | None:
    """The summary of a finished build of exactly `config` at `root`, else None."""
    try:
        metadata = json.loads((root / METADATA).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if metadata.get("format_version") != FORMAT_VERSION or metadata.get("config") != asdict(config):
        return None
    manual = root / "annotations" / "manual"
    try:
        for split in SPLITS:
            if not (manual / f"{split}.corpus.csv").is_file():
                return None
            if not (manual / f"{split}.frames.csv").is_file():
                return None
            files = sum(1 for _ in (root / "features" / split).glob("*.npz"))
            if files != metadata["counts"][split]:
                return None
        return _summary(root, metadata)
    except (KeyError, TypeError):  # a hand-edited or foreign fingerspell.json: rebuild
        return None


def ensure_corpus(
    config: FingerspellConfig, cache_root: Path | None = None, progress: Progress | None = None
) -> CorpusSummary:
    """The cached corpus of `config`, built on first use (or when the cache is incomplete)."""
    target = corpus_cache_dir(config, cache_root)
    summary = _complete(target, config)
    if summary is not None:
        return summary
    return build_corpus(config, target, progress)

"""Spelled sequences rendered from the lexicon's letter clips (lexicon.py).

A spelled sequence chains its letters' clips: the raise and lower phases between letters are
mostly cut so the letters flow, short eased transitions join them, and every letter and every
sequence gets its own variation (speed, trimming, hand rotation, an affine jitter of the whole
body, landmark noise) drawn from the ranges of a `Variation`. With a single clip per letter, that
variation is all the variety the data has.

`fingerspell.py` renders a fixed corpus with these functions; `synthesis.py` renders new training
sequences on the fly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from signconsole.data.layout import LEFT_SHOULDER, RIGHT_SHOULDER
from signconsole.data.lexicon import OUTPUT_FPS, ClipBank, _Clip

DOUBLE_SLIDE = (12.0, 30.0)  # px: a repeated letter slides sideways, as signers do


@dataclass(frozen=True)
class Variation:
    """Uniform ranges of the variation of a rendered sequence. Pixel values are on the lexicon's
    canvas, where the shoulders are ~200 px apart. The defaults are the fixed corpus's."""

    tempo: tuple[float, float] = (0.8, 1.25)  # per sequence: >1 is slower (more frames)
    hold_speed: tuple[float, float] = (0.3, 0.8)  # per letter: share of the hold kept (stretched)
    motion_speed: tuple[float, float] = (0.7, 1.3)  # per letter: stretch of raise/lower motion
    edge_keep: tuple[float, float] = (0.4, 1.0)  # share of the first raise / last lower kept
    inner_keep: tuple[float, float] = (0.0, 0.35)  # same between letters (the hand stays up)
    transition_frames: tuple[int, int] = (2, 5)  # eased frames between letters, inclusive
    hand_rotation: float = 8.0  # degrees, per letter, each hand about its wrist
    hand_scale: tuple[float, float] = (0.94, 1.06)  # per letter, each hand about its wrist
    body_rotation: float = 7.0  # degrees, per sequence, about the shoulder centre
    body_scale: tuple[float, float] = (0.9, 1.1)
    body_aspect: tuple[float, float] = (0.96, 1.04)
    body_shift: float = 20.0  # px
    noise_sigma: tuple[float, float] = (0.4, 1.2)  # px, per-frame gaussian on x and y

    def widened(self, factor: float) -> Variation:
        """Every range `factor` times as wide about its centre (speeds and keeps stay positive,
        keeps at most 1): training on wider ranges than any test set covers what it cannot see."""

        if factor == 1.0:
            return self  # exactly the corpus's ranges, not a rounding away from them

        def wide(low: float, high: float, floor: float = 0.05, ceil: float = 1e9) -> tuple:
            centre, half = (low + high) / 2, (high - low) / 2 * factor
            return (max(floor, centre - half), min(ceil, centre + half))

        return replace(
            self,
            tempo=wide(*self.tempo),
            hold_speed=wide(*self.hold_speed),
            motion_speed=wide(*self.motion_speed),
            edge_keep=wide(*self.edge_keep, floor=0.0, ceil=1.0),
            inner_keep=wide(*self.inner_keep, floor=0.0, ceil=1.0),
            transition_frames=(
                max(1, round(self.transition_frames[0] / factor)),
                round(self.transition_frames[1] * factor),
            ),
            hand_rotation=self.hand_rotation * factor,
            hand_scale=wide(*self.hand_scale),
            body_rotation=self.body_rotation * factor,
            body_scale=wide(*self.body_scale),
            body_aspect=wide(*self.body_aspect),
            body_shift=self.body_shift * factor,
            noise_sigma=wide(*self.noise_sigma, floor=0.0),
        )


CORPUS_VARIATION = Variation()


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
    times = [0]  # output frame of each knot, as Python ints: numpy calls on 4 values cost more
    for length, speed, minimum in (
        (first - start, motion_speed, 0),
        (last - first, hold_speed, 2),  # even a one-frame hold is seen for a couple of frames
        (end - last, motion_speed, 0),
    ):
        frames = round(length * clip.seconds_per_frame * OUTPUT_FPS * speed)
        times.append(times[-1] + max(frames, minimum, 1 if length else 0))
    return np.interp(np.arange(times[-1] + 1), times, [start, first, last, end])


@dataclass
class _Timeline:
    """Per output frame: the two bank frames it blends, their weight, and the hands' jitter."""

    first: list[np.ndarray]  # [n] bank frame
    second: list[np.ndarray]  # [n] bank frame
    weight: list[np.ndarray]  # [n] of `second`
    hands: list[np.ndarray]  # [m, 2 hands, 4]: angle, scale, shift x, shift y
    repeats: list[int]  # [m]: frames each row of `hands` holds for (a letter's is constant)

    def add(
        self, first: np.ndarray, second: np.ndarray, weight: np.ndarray, hands: np.ndarray
    ) -> None:
        """`hands`: [n, 2, 4], one per frame, or [2, 4] for all n frames."""
        self.first.append(first)
        self.second.append(second)
        self.weight.append(weight)
        if hands.ndim == 2:
            self.hands.append(hands[None])
            self.repeats.append(len(first))
        else:
            self.hands.append(hands)
            self.repeats.extend([1] * len(hands))


def _hand_state(
    rng: np.random.Generator, clip: _Clip, repeated: np.ndarray | None, variation: Variation
) -> np.ndarray:
    """[2 hands, 4] jitter of one letter; `repeated` is the previous state for a double letter."""
    state = np.zeros((2, 4))
    limit = np.deg2rad(variation.hand_rotation)
    state[:, 0] = rng.uniform(-limit, limit, size=2)
    state[:, 1] = rng.uniform(*variation.hand_scale, size=2)
    if repeated is not None:
        # Two identical clips in a row would be one long hold; signers mark the repeat with a
        # small slide of the signing hand, which also shows a recognizer the letter boundary.
        state[:, 2:] = repeated[:, 2:]
        slide = rng.uniform(*DOUBLE_SLIDE) * rng.choice([-1.0, 1.0])
        state[clip.hand, 2] += slide
    return state


def _timeline(
    glosses: tuple[str, ...], bank: ClipBank, rng: np.random.Generator, variation: Variation
) -> _Timeline:
    v = variation
    timeline = _Timeline([], [], [], [], [])
    tempo = rng.uniform(*v.tempo)
    previous: tuple[int, np.ndarray] | None = None  # last bank frame and hand state
    for index, gloss in enumerate(glosses):
        clip = bank.clips[gloss]
        keep_raise = rng.uniform(*(v.edge_keep if index == 0 else v.inner_keep))
        keep_lower = rng.uniform(*(v.edge_keep if index == len(glosses) - 1 else v.inner_keep))
        hold_speed = tempo * rng.uniform(*v.hold_speed)
        motion_speed = tempo * rng.uniform(*v.motion_speed)
        repeated = previous[1] if previous and glosses[index - 1] == gloss else None
        hands = _hand_state(rng, clip, repeated, v)
        positions = _letter_positions(clip, keep_raise, keep_lower, hold_speed, motion_speed)
        floor = np.floor(positions).astype(np.int64)
        if previous is not None:
            last_frame, last_hands = previous
            steps = int(rng.integers(v.transition_frames[0], v.transition_frames[1] + 1))
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
            hands,
        )
        previous = (clip.offset + int(round(positions[-1])), hands)
    return timeline


def _jitter_hands(
    x_plane: np.ndarray, y_plane: np.ndarray, mask: np.ndarray, hands: np.ndarray, layout: tuple
) -> None:
    """Per-letter rotation and scale of each hand about its wrist, then its shift (in place).

    The pose's hand points (wrist, pinky, index, thumb) move with the hand so body and hand
    agree. Where the pivot wrist is missing (ase never sees pose 15, yet sees the fingers next to
    it) those points are only shifted: rotating about a missing point would fling them away.
    The four groups (each hand, each hand's pose points) are rotated in one pass over all their
    points: a loop over groups cost a fifth of rendering a sequence.
    """
    pivots, members, sides = [], [], []
    for side, (hand, pose_points) in enumerate(layout):
        for group in (list(range(hand.start, hand.stop)), list(pose_points)):
            pivots += [group[0]] * (len(group) - 1)
            members += group[1:]
            sides += [side] * (len(group) - 1)
    # cos/sin are taken per hand, not per point.
    present = mask[:, pivots]  # [T, M]
    angle, scale = hands[:, :, 0], hands[:, :, 1]  # [T, 2 hands]
    cos = np.where(present, (np.cos(angle) * scale)[:, sides], 1.0)
    sin = np.where(present, (np.sin(angle) * scale)[:, sides], 0.0)
    wrist_x, wrist_y = x_plane[:, pivots], y_plane[:, pivots]  # copies; no pivot is a member
    x, y = x_plane[:, members] - wrist_x, y_plane[:, members] - wrist_y
    x_plane[:, members] = wrist_x + (cos * x - sin * y)
    y_plane[:, members] = wrist_y + (sin * x + cos * y)
    for side, (hand, pose_points) in enumerate(layout):
        moved = [*range(hand.start, hand.stop), *pose_points]
        shift = hands[:, side, 2:].astype(np.float32)
        x_plane[:, moved] += shift[:, 0, None]
        y_plane[:, moved] += shift[:, 1, None]


@dataclass
class _Draws:
    """Every random choice of one sequence, drawn in one fixed order from its own generator:
    a sequence is the same rendered alone or beside others."""

    timeline: _Timeline
    body: tuple[float, float, float, np.ndarray]  # rotation, scale, aspect, shift [2]
    sigma: float  # landmark noise, px
    noise_seed: int


def _draw(
    glosses: tuple[str, ...], bank: ClipBank, rng: np.random.Generator, variation: Variation
) -> _Draws:
    timeline = _timeline(glosses, bank, rng, variation)
    limit = np.deg2rad(variation.body_rotation)
    body = (
        rng.uniform(-limit, limit),
        rng.uniform(*variation.body_scale),
        rng.uniform(*variation.body_aspect),
        rng.uniform(-variation.body_shift, variation.body_shift, size=2),
    )
    sigma = rng.uniform(*variation.noise_sigma)
    return _Draws(timeline, body, sigma, int(rng.integers(2**62)))


def _body_affine(
    x_plane: np.ndarray,
    y_plane: np.ndarray,
    mask: np.ndarray,
    body: tuple[float, float, float, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """One sequence's affine about its shoulder centre: rotation, scale, aspect, shift. Returns
    the [2, 2] matrix and the offset, float32."""
    both = mask[:, LEFT_SHOULDER] & mask[:, RIGHT_SHOULDER]
    # The centre is averaged over [frames, 2, xy] or [points, xy] as before the planes: the
    # same summation order, the same float32 result to the bit.
    if both.any():
        shoulders = [LEFT_SHOULDER, RIGHT_SHOULDER]
        pivot = np.stack([x_plane[both][:, shoulders], y_plane[both][:, shoulders]], axis=-1)
        pivot = pivot.mean(axis=(0, 1))
    elif mask.any():
        pivot = np.stack([x_plane[mask], y_plane[mask]], axis=-1).mean(axis=0)
    else:
        pivot = np.zeros(2, np.float32)
    angle, scale, aspect, shift = body
    cos, sin = np.cos(angle), np.sin(angle)
    matrix = np.array([[cos, -sin], [sin, cos]]) @ np.diag([scale * aspect, scale / aspect])
    offset = (pivot + shift - matrix @ pivot).astype(np.float32)
    return matrix.astype(np.float32), offset


def render(
    glosses: tuple[str, ...],
    bank: ClipBank,
    rng: np.random.Generator,
    variation: Variation = CORPUS_VARIATION,
) -> tuple[np.ndarray, np.ndarray]:
    """One spelled sequence: landmarks [T, K, 3] float32 and mask [T, K], K the bank's
    landmarks (543 unless it left the face out)."""
    points, mask, _ = render_batch([(glosses, rng)], bank, variation)
    return points, mask


def render_batch(
    requests: list[tuple[tuple[str, ...], np.random.Generator]],
    bank: ClipBank,
    variation: Variation = CORPUS_VARIATION,
    dtype: type = np.float32,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Several spelled sequences (glosses, each with its own generator), each exactly as
    `render` gives it alone: their landmarks and masks one after another along time, and the
    frame where each ends. Landmarks are `dtype` (float16 for a training batch).

    The random draws are made sequence by sequence; the array work then runs once over all
    their frames. A ~90-frame sequence of 75 landmarks is a few hundred microseconds of
    arithmetic and a few milliseconds of per-call overhead, so a loader worker renders its whole
    batch in one pass (benchmarks/README.md, 2026-12-02 17:00)."""
    draws = [_draw(glosses, bank, rng, variation) for glosses, rng in requests]
    first = np.concatenate([part for d in draws for part in d.timeline.first])
    second = np.concatenate([part for d in draws for part in d.timeline.second])
    weight = np.concatenate([part for d in draws for part in d.timeline.weight])
    weight = weight.astype(np.float32)
    ends = np.cumsum([sum(len(part) for part in d.timeline.first) for d in draws])
    starts = np.concatenate([[0], ends[:-1]])
    # Coordinate planes [3, frames, K]: every operation below runs along K contiguous values.
    # On [frames, K, 3] its innermost loop was 3 (or 2) long, and the blend alone took ~6 ms
    # of a 16-sequence batch.
    w = weight[:, None]
    planes = bank.planes[:, first] * (1 - w) + bank.planes[:, second] * w
    x_plane, y_plane = planes[0], planes[1]
    # A blended landmark exists only where every frame it draws from has it: a hand the
    # lexicon masked is never invented by interpolation.
    mask = (bank.mask[first] | (weight >= 1)[:, None]) & (
        bank.mask[second] | (weight <= 0)[:, None]
    )
    hands = np.repeat(
        np.concatenate([part for d in draws for part in d.timeline.hands]),
        [count for d in draws for count in d.timeline.repeats],
        axis=0,
    )
    _jitter_hands(x_plane, y_plane, mask, hands, bank.hands)
    # Per frame, its sequence's affine and noise level; the shoulder centre is each sequence's.
    matrices = np.empty((len(first), 2, 2), np.float32)
    offsets = np.empty((len(first), 2), np.float32)
    sigmas = np.empty((len(first), 1), np.float32)
    noise = torch.empty((len(first), mask.shape[1], 2))
    for d, start, end in zip(draws, starts, ends, strict=True):
        frames = slice(start, end)
        affine = _body_affine(x_plane[frames], y_plane[frames], mask[frames], d.body)
        matrices[frames], offsets[frames] = affine
        sigmas[frames] = d.sigma
        # torch's generator draws normals ~2x as fast as numpy's; seeded from the sequence's.
        generator = torch.Generator().manual_seed(d.noise_seed)
        torch.randn(noise[frames].shape, generator=generator, out=noise[frames])
    # Written out per coordinate: a [T*543, 2] @ [2, 2] matmul took ~15x as long.
    x, y = x_plane.copy(), y_plane.copy()
    x_plane[:] = matrices[:, 0, 0, None] * x + matrices[:, 0, 1, None] * y + offsets[:, 0, None]
    y_plane[:] = matrices[:, 1, 0, None] * x + matrices[:, 1, 1, None] * y + offsets[:, 1, None]
    noise_xy = noise.numpy()
    x_plane += sigmas * noise_xy[..., 0]
    y_plane += sigmas * noise_xy[..., 1]
    points = np.empty((*mask.shape, 3), dtype)
    for axis in range(3):
        plane = planes[axis]
        plane[~mask] = 0.0
        points[..., axis] = plane  # one interleaving pass, cast to `dtype` on the way
    return points, mask, ends.tolist()

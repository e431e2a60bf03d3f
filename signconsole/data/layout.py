"""The feature layout: the one contract between landmark data and models.

Per frame, MediaPipe Holistic gives 543 landmarks x (x, y, z):

    landmark index    0..32    pose        (33)
                     33..500   face        (468)
                    501..521   left hand   (21)
                    522..542   right hand  (21)

(the order of MediaPipe Holistic and of .pose files, whose 478-point face is cut to its first 468).

The model input is a 6516-vector per frame, in this order (the layout the seeds used):

    pose 99 | hands 126 (left 63, right 63) | face 1404 | temporal 4887

The first 1629 values are the spatial coordinates s[t] of the 543 landmarks reordered to
pose, left hand, right hand, face and flattened landmark-major (x, y, z of one landmark, then the
next). The temporal block is three
1629-vectors derived from s:

    velocity      v[t] = s[t] - s[t-1]            (v[0] = 0)
    acceleration  a[t] = v[t] - v[t-1]            (a[0] = 0)
    relative      r[t] = (p[t] - c[t]) / w[t]     body-centred position of every landmark:
                                                  c = shoulder centre (mean of pose 11 and 12),
                                                  w = shoulder width (x, y distance of 11 and 12)

A landmark that was not detected is a mask bit, not a silent zero: its spatial value is written
as 0 so the vector stays finite, and every temporal value that touches a missing landmark
(either frame of a difference, or a missing shoulder) is 0 as well, so a hand entering the frame
never shows up as a huge fake velocity.

`coordinates` chooses the units of s (and so of v and a): `"raw"` keeps the coordinates as stored
(pixels for .pose files, 0..1 for MediaPipe output), `"shoulder"` uses the body-centred frame of r,
which cancels camera distance and position across signers and recordings (not rotation). The
relative block is body-centred either way, so a model always sees one translation- and
scale-free view.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import torch

N_POSE, N_HAND, N_FACE = 33, 21, 468
N_LANDMARKS = N_POSE + 2 * N_HAND + N_FACE  # 543
SPATIAL_DIM = N_LANDMARKS * 3  # 1629
FEATURE_DIM = SPATIAL_DIM * 4  # 6516
LEFT_SHOULDER, RIGHT_SHOULDER = 11, 12
COORDINATE_SYSTEMS = ("raw", "shoulder")


class FeatureLayout:
    """Owns every slice of the landmark array and of the 6516-vector.

    Fusion modules, diagnostics and extraction all read their ranges from here, so a change of
    layout happens in one place.
    """

    # Landmark ranges in the [T, 543, 3] array.
    pose_landmarks: ClassVar[slice] = slice(0, N_POSE)
    face_landmarks: ClassVar[slice] = slice(N_POSE, N_POSE + N_FACE)
    left_hand_landmarks: ClassVar[slice] = slice(N_POSE + N_FACE, N_POSE + N_FACE + N_HAND)
    right_hand_landmarks: ClassVar[slice] = slice(N_POSE + N_FACE + N_HAND, N_LANDMARKS)

    # Ranges in the 6516-vector.
    pose: ClassVar[slice] = slice(0, 99)
    hands: ClassVar[slice] = slice(99, 225)
    left_hand: ClassVar[slice] = slice(99, 162)
    right_hand: ClassVar[slice] = slice(162, 225)
    face: ClassVar[slice] = slice(225, SPATIAL_DIM)
    spatial: ClassVar[slice] = slice(0, SPATIAL_DIM)
    temporal: ClassVar[slice] = slice(SPATIAL_DIM, FEATURE_DIM)
    velocity: ClassVar[slice] = slice(SPATIAL_DIM, 2 * SPATIAL_DIM)
    acceleration: ClassVar[slice] = slice(2 * SPATIAL_DIM, 3 * SPATIAL_DIM)
    relative: ClassVar[slice] = slice(3 * SPATIAL_DIM, FEATURE_DIM)

    n_landmarks: ClassVar[int] = N_LANDMARKS
    dim: ClassVar[int] = FEATURE_DIM

    def normalization_blocks(self) -> dict[str, slice]:
        """Blocks whose values share one scale: statistics are pooled within each."""
        return {
            "pose": self.pose,
            "hands": self.hands,
            "face": self.face,
            "velocity": self.velocity,
            "acceleration": self.acceleration,
            "relative": self.relative,
        }

    def modalities(self) -> dict[str, slice]:
        """The four modality blocks the fusion encoders consume, in vector order."""
        return {
            "pose": self.pose,
            "hands": self.hands,
            "face": self.face,
            "temporal": self.temporal,
        }

    def landmark_groups(self) -> dict[str, slice]:
        """Landmark-index ranges, for detection rates and diagnostics."""
        return {
            "pose": self.pose_landmarks,
            "left_hand": self.left_hand_landmarks,
            "right_hand": self.right_hand_landmarks,
            "face": self.face_landmarks,
        }

    def group_dims(self, group: str) -> list[slice]:
        """The ranges of one landmark group (pose, left_hand, right_hand, face) in the vector:
        its spatial values and the same positions of the three temporal blocks."""
        spatial = {
            "pose": self.pose,
            "left_hand": self.left_hand,
            "right_hand": self.right_hand,
            "face": self.face,
        }[group]
        return [
            slice(spatial.start + k * SPATIAL_DIM, spatial.stop + k * SPATIAL_DIM) for k in range(4)
        ]

    def columns(self, skip: tuple[str, ...] = ()) -> Columns:
        """The part of the vector a derivation computes: every landmark group but `skip`.
        Skipped groups are the ones a profile ignores (`data.ignore`): their values would be
        zeroed by normalization anyway, and the face alone is 86% of the vector."""
        if not skip:
            return ALL_COLUMNS
        groups = self.landmark_groups()  # names are checked where the profile is read
        skipped = torch.zeros(N_LANDMARKS, dtype=torch.bool)
        for group in skip:
            skipped[groups[group]] = True
        kept = ~skipped[_VECTOR_ORDER]  # by position in the vector
        landmarks = _VECTOR_ORDER[kept]
        positions = torch.arange(N_LANDMARKS)[kept]
        spatial = (positions[:, None] * 3 + torch.arange(3)).flatten()
        index = torch.cat([spatial + block * SPATIAL_DIM for block in range(4)])
        return Columns(landmarks, index, full=False)

    def features(
        self, landmarks: torch.Tensor, mask: torch.Tensor, coordinates: str = "raw"
    ) -> torch.Tensor:
        """Derive [..., T, 6516] features from [..., T, 543, 3] landmarks and a [..., T, 543] mask.

        Works on a single sequence or a padded batch (padding frames should be masked out).
        """
        return self.features_with_validity(landmarks, mask, coordinates)[0]

    def features_with_validity(
        self,
        landmarks: torch.Tensor,
        mask: torch.Tensor,
        coordinates: str = "raw",
        columns: Columns | None = None,
        landmark_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and a same-shaped bool tensor: True where the value rests on detected
        landmarks. Normalization uses it so missing values neither skew statistics nor move.
        With `columns`, only those columns ([..., T, len(columns.index)], in vector order).
        With `landmark_ids` (indices into the 543), `landmarks` and `mask` hold only those
        landmarks, in that order: a speller that leaves the face out never widens its sequences
        to 543."""
        if coordinates not in COORDINATE_SYSTEMS:
            raise ValueError(
                f"coordinates must be one of {COORDINATE_SYSTEMS}, got {coordinates!r}"
            )
        columns = columns or ALL_COLUMNS
        order, (left, right), lacking = _positions(columns, landmark_ids)
        shoulders = landmarks[..., [left, right], :].float()  # [..., T, 2, 3]
        shoulders_present = mask[..., left].bool() & mask[..., right].bool()
        if lacking is not None and bool(lacking[-2:].any()):  # as a widened input's zeros
            shoulders = shoulders * ~lacking[-2:, None].to(shoulders.device)
            shoulders_present = torch.zeros_like(shoulders_present)
        centre = shoulders.mean(dim=-2)  # [..., T, 3]
        width = (shoulders[..., 0, :2] - shoulders[..., 1, :2]).norm(dim=-1)
        # A frame without both shoulders has no body frame: keep it finite, the mask decides.
        width = torch.where(shoulders_present & (width > 1e-6), width, torch.ones_like(width))

        # Landmark order (pose, face, hands) -> vector order (pose, hands, face), kept ones only.
        if _in_order(order, landmarks.shape[-2]):
            # Every landmark given, already in vector order (a speller's 75 without the face):
            # gathering them all was ~5 ms of a demo batch.
            points, present = landmarks.float(), mask.bool()
        else:
            order = order.to(landmarks.device)
            points, present = landmarks[..., order, :].float(), mask[..., order].bool()
        if lacking is not None:
            present = present & ~lacking[:-2].to(present.device)
        body = (points - centre[..., None, :]) / width[..., None, None]
        if coordinates == "shoulder":
            points = body

        # The four blocks are written straight into one [..., T, 4 * 3K] tensor, and their
        # validity into one bool tensor: no concatenation. Every operation runs over rows of
        # 3K contiguous values (a condition per landmark broadcast over x, y, z made the inner
        # loop 3 long and took longer than the whole derivation). A loader worker derives every
        # training batch this way.
        *lead, frames, kept, _ = points.shape
        width3 = 3 * kept
        features = points.new_empty((*lead, frames, 4 * width3))
        valid = torch.zeros((*lead, frames, 4 * width3), dtype=torch.bool, device=points.device)
        spatial, velocity, acceleration, relative = (
            features[..., k * width3 : (k + 1) * width3] for k in range(4)
        )
        spatial_ok, velocity_ok, acceleration_ok, relative_ok = (
            valid[..., k * width3 : (k + 1) * width3] for k in range(4)
        )
        zero = points.new_zeros(())
        spatial_ok.copy_(present.repeat_interleave(3, dim=-1))
        torch.where(spatial_ok, points.flatten(-2), zero, out=spatial)

        # velocity v[t] = s[t] - s[t-1] and acceleration a[t] = v[t] - v[t-1], where every
        # frame they rest on has the landmark; v[0], a[0], a[1] are 0 and invalid.
        torch.bitwise_and(
            spatial_ok[..., 1:, :], spatial_ok[..., :-1, :], out=velocity_ok[..., 1:, :]
        )
        velocity[..., :1, :] = 0.0
        torch.sub(spatial[..., 1:, :], spatial[..., :-1, :], out=velocity[..., 1:, :])
        torch.where(velocity_ok[..., 1:, :], velocity[..., 1:, :], zero, out=velocity[..., 1:, :])
        torch.bitwise_and(
            velocity_ok[..., 2:, :], velocity_ok[..., 1:-1, :], out=acceleration_ok[..., 2:, :]
        )
        acceleration[..., :2, :] = 0.0
        torch.sub(velocity[..., 2:, :], velocity[..., 1:-1, :], out=acceleration[..., 2:, :])
        torch.where(
            acceleration_ok[..., 2:, :],
            acceleration[..., 2:, :],
            zero,
            out=acceleration[..., 2:, :],
        )

        torch.bitwise_and(spatial_ok, shoulders_present[..., None], out=relative_ok)
        torch.where(relative_ok, body.flatten(-2), zero, out=relative)
        return features, valid


@dataclass(frozen=True)
class Columns:
    """The landmarks a derivation reads (in vector order) and the 6516-vector column of each
    value it produces: a derivation that skips ignored groups computes only those."""

    landmarks: torch.Tensor  # [K] landmark indices into the [..., 543, 3] array
    index: torch.Tensor  # [12K] columns of the full vector, ascending
    full: bool  # every column: the values are the whole vector as they are

    @cached_property
    def runs(self) -> list[tuple[int, int, int]]:
        """(first column, end column, first value) of each stretch of consecutive columns: the
        face left out leaves four (one per block), and four slice copies are ~3x as fast as
        one indexed copy of a 60 MB batch."""
        index = self.index.tolist()
        runs, start = [], 0
        for position in range(1, len(index) + 1):
            if position == len(index) or index[position] != index[position - 1] + 1:
                runs.append((index[start], index[position - 1] + 1, start))
                start = position
        return runs

    def __reduce__(self):
        # By value (a few KB): a loader worker returns the columns with every compact batch,
        # and pickled as tensors each would cross as a shared-memory file (data/handover.py).
        return (_columns_from_arrays, (self.landmarks.numpy(), self.index.numpy(), self.full))

    def widen(self, values: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """[..., C] values -> [..., 6516] with zeros in the skipped columns (written into `out`
        when given, whose skipped columns must be zeros already)."""
        if self.full and out is None:
            return values
        wide = values.new_zeros((*values.shape[:-1], FEATURE_DIM)) if out is None else out
        for first, end, source in self.runs:
            wide[..., first:end] = values[..., source : source + end - first]
        return wide

    def take(self, wide: torch.Tensor) -> torch.Tensor:
        """[..., 6516] -> [..., C]: the values of these columns, in order (`widen` undone)."""
        if self.full:
            return wide
        return torch.cat([wide[..., first:end] for first, end, _ in self.runs], dim=-1)


def _positions(
    columns: Columns, landmark_ids: torch.Tensor | None
) -> tuple[torch.Tensor, list[int], torch.Tensor | None]:
    """Where the landmarks a derivation reads sit in its input: the columns' landmarks (in
    vector order) and the two shoulders, as indices into the 543 or, with `landmark_ids`, into
    those. A landmark they lack was not detected, as a widened input would say: its index is
    clamped to 0 and the third value, the lacking ones (None: none), masks it out."""
    if landmark_ids is None:
        return columns.landmarks, [LEFT_SHOULDER, RIGHT_SHOULDER], None
    lookup = torch.full((N_LANDMARKS,), -1, dtype=torch.long)
    lookup[landmark_ids.cpu().long()] = torch.arange(len(landmark_ids))
    order, shoulders = lookup[columns.landmarks], lookup[[LEFT_SHOULDER, RIGHT_SHOULDER]]
    lacking = torch.cat([order, shoulders]) < 0
    if not bool(lacking.any()):
        return order, shoulders.tolist(), None
    return order.clamp(min=0), shoulders.clamp(min=0).tolist(), lacking


def _in_order(order: torch.Tensor, given: int) -> bool:
    """Whether `order` takes each of `given` landmarks once, in the order given."""
    return len(order) == given and bool(torch.equal(order, torch.arange(given)))


def _columns_from_arrays(landmarks, index, full: bool) -> Columns:
    return Columns(torch.from_numpy(landmarks), torch.from_numpy(index), full)


_VECTOR_ORDER = torch.cat(
    [
        torch.arange(0, N_POSE),
        torch.arange(N_POSE + N_FACE, N_LANDMARKS),
        torch.arange(N_POSE, N_POSE + N_FACE),
    ]
)

ALL_COLUMNS = Columns(_VECTOR_ORDER, torch.arange(FEATURE_DIM), full=True)
LAYOUT = FeatureLayout()

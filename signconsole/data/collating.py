"""A padded batch before and after its features: what a loader worker builds.

`collate_raw` pads items as landmarks (or stored features) into a `RawBatch`; `Featurizer`
derives and normalizes the whole batch's model input at once, on the CPU in a worker or on the
batch's device (data/loader.py decides where).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from signconsole.data.dataset import Batch, Item
from signconsole.data.model_input import ModelInput


@dataclass
class RawBatch:
    """A padded batch before features: landmarks + mask (float16 when shipped to a device), or
    stored features (float16)."""

    ids: list[str]
    lengths: torch.Tensor  # [B] int64
    targets: torch.Tensor  # CTC concatenated form
    target_lengths: torch.Tensor  # [B]
    landmarks: torch.Tensor | None = None  # [B, T, 543 or len(landmark_ids), 3]
    mask: torch.Tensor | None = None  # [B, T, 543 or len(landmark_ids)] bool, False on padding
    features: torch.Tensor | None = None  # [B, T, F] float16, precomputed files
    landmark_ids: torch.Tensor | None = None  # landmarks holds only these of the 543 (None: all)

    def pin_memory(self) -> RawBatch:
        def pin(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.pin_memory()

        return replace(
            self, landmarks=pin(self.landmarks), mask=pin(self.mask), features=pin(self.features)
        )

    def to(self, device: torch.device, non_blocking: bool = False) -> RawBatch:
        def move(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.to(device, non_blocking=non_blocking)

        return replace(
            self,
            landmarks=move(self.landmarks),
            mask=move(self.mask),
            features=move(self.features),
        )


def collate_raw(items: list[Item]) -> RawBatch:
    lengths = [
        len(item.landmarks if item.landmarks is not None else item.features) for item in items
    ]
    frames = max(lengths)
    targets = torch.tensor([t for item in items for t in item.targets], dtype=torch.long)
    target_lengths = torch.tensor([len(item.targets) for item in items], dtype=torch.long)
    batch = RawBatch([item.id for item in items], torch.tensor(lengths), targets, target_lengths)
    if items[0].landmarks is not None:
        first = items[0]
        batch.landmark_ids = first.landmark_ids
        if any(not _same_landmarks(item.landmark_ids, first.landmark_ids) for item in items):
            raise ValueError("a batch mixes items that hold different sets of landmarks")
        dtype = first.landmarks.dtype  # float16 shipped to a device, float32 on the CPU
        width = first.landmarks.shape[1]
        batch.landmarks = torch.zeros(len(items), frames, width, 3, dtype=dtype)
        batch.mask = torch.zeros(len(items), frames, width, dtype=torch.bool)
        for row, item in enumerate(items):
            batch.landmarks[row, : lengths[row]] = item.landmarks
            batch.mask[row, : lengths[row]] = item.mask
    else:
        first = items[0].features
        assert first is not None
        batch.features = torch.zeros(len(items), frames, first.shape[-1], dtype=torch.half)
        for row, item in enumerate(items):
            batch.features[row, : lengths[row]] = item.features
    return batch


def _same_landmarks(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is b
    return a is b or torch.equal(a, b)


class Featurizer:
    """RawBatch -> Batch on the batch's device: the dataset's own `ModelInput` derives and
    normalizes there what the CPU path derives per sequence.

    `compact`: the batch keeps only the derived columns (`Batch.columns`) instead of putting
    them in place in the 6516-vector, for a model that reads those columns alone (a built-in
    fusion, `models.fusion.reads_only`). With the face ignored that is 900 of 6516 values a
    frame: widening took ~44 ms of a ~165 ms demo batch, and the 7x larger batch is paged into
    the training process when the model reads it."""

    def __init__(self, model_input: ModelInput, compact: bool = False) -> None:
        self.model_input = model_input
        self.compact = compact and not model_input.columns.full

    def __call__(self, raw: RawBatch) -> Batch:
        columns = None
        if raw.landmarks is not None:
            assert raw.mask is not None
            values = self.model_input.derive(raw.landmarks, raw.mask, raw.lengths, raw.landmark_ids)
            if self.compact:
                features, columns = values, self.model_input.columns
            else:
                features = self.model_input.columns.widen(values)
        else:
            assert raw.features is not None
            features = self.model_input.stored(raw.features, raw.lengths)
        return Batch(raw.ids, features, raw.lengths, raw.targets, raw.target_lengths, columns)

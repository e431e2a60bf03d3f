"""Training sequences spelled anew every epoch: determinism, variety, held-out words, lengths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from signconsole.config import FingerspellConfig, SynthesisConfig
from signconsole.data.dataset import collate
from signconsole.data.layout import LAYOUT
from signconsole.data.lexicon import clip_bank
from signconsole.data.normalize import ignored_groups, normalize
from signconsole.data.prepare import prepare_data
from signconsole.data.spelling import CORPUS_VARIATION, Variation, render, render_batch
from signconsole.data.synthesis import Speller

WORDS = [tuple("CAT"), tuple("DOG"), tuple("HOUSE"), tuple("GREEN"), tuple("WATER")]
HELD_OUT = [tuple("KID"), tuple("OPEN"), tuple("AB")]


def speller(slots: int = 40, **config: object) -> Speller:
    return Speller(
        FingerspellConfig(lang="ase"),
        SynthesisConfig(enabled=True, **config),  # type: ignore[arg-type]
        slots,
        WORDS,
        HELD_OUT,
        frames_per_letter=13.0,
    )


def test_a_slot_is_the_same_within_an_epoch_and_new_in_the_next() -> None:
    spell = speller()
    glosses, landmarks, mask = spell.sample(3, epoch=0)
    again = speller().sample(3, epoch=0)  # another process or thread: the same sample
    assert again[0] == glosses
    assert np.array_equal(again[1].numpy(), landmarks.numpy())
    later = spell.sample(3, epoch=1)
    assert later[1].shape != landmarks.shape or not np.array_equal(later[1], landmarks)
    assert len(later[0]) == len(glosses)  # the slot keeps its letter count (its bucket)
    assert landmarks.dtype.is_floating_point and landmarks.element_size() == 2  # float16
    assert landmarks.shape[1:] == (543, 3) and mask.shape == landmarks.shape[:2]


@pytest.mark.parametrize("lang", ["ase", "gss"])
def test_a_batch_renders_every_sequence_exactly_as_it_renders_alone(lang: str) -> None:
    """A loader worker renders its batch in one pass (`render_batch`); each sequence in it is
    bit for bit the one `render` gives alone, with the face or without it, in float16 too."""
    variation = CORPUS_VARIATION.widened(1.5)
    whole = clip_bank(lang)
    letters = sorted(whole.clips)
    words = [
        (letters[0], letters[0], letters[1]),  # a double letter: the repeat slides
        tuple(letters[2:9]),
        (letters[-1],),
        tuple(reversed(letters[:5])),
    ]
    for bank in (whole, whole.without_face()):
        alone = [render(w, bank, np.random.default_rng(i), variation) for i, w in enumerate(words)]
        for dtype in (np.float32, np.float16):
            requests = [(w, np.random.default_rng(i)) for i, w in enumerate(words)]
            points, mask, ends = render_batch(requests, bank, variation, dtype)
            assert points.dtype == dtype and ends[-1] == len(points) == len(mask)
            for (expected, expected_mask), start, end in zip(
                alone, [0, *ends[:-1]], ends, strict=True
            ):
                assert np.array_equal(points[start:end], expected.astype(dtype))
                assert np.array_equal(mask[start:end], expected_mask)


def test_a_speller_batch_holds_the_samples_it_gives_one_by_one() -> None:
    spell = speller(slots=40, random_share=0.5)
    spell.leave_out_face()
    slots = [5, 0, 17, 5, 39]  # any order, a slot twice
    for (glosses, landmarks, mask), slot in zip(spell.samples(slots, epoch=2), slots, strict=True):
        alone = speller(slots=40, random_share=0.5)
        alone.leave_out_face()
        expected = alone.sample(slot, epoch=2)
        assert glosses == expected[0]
        assert torch.equal(landmarks, expected[1]) and torch.equal(mask, expected[2])
        assert landmarks.shape[1:] == (75, 3) and landmarks.dtype == torch.float16


def test_words_come_from_train_and_random_strings_avoid_held_out_words() -> None:
    spell = speller(slots=200, random_share=0.5, random_letters=(2, 2))
    seen = [spell.sample(i, epoch)[0] for epoch in range(3) for i in range(200)]
    words = [g for g in seen if g in WORDS]
    strings = [g for g in seen if g not in WORDS]
    assert 0.35 < len(words) / len(seen) < 0.65
    assert all(len(g) == 2 for g in strings)
    assert len(set(strings)) > 100  # random strings, not a few repeated ones
    assert tuple("AB") not in strings  # a held-out word is never spelled in training


def test_expected_lengths_track_rendered_lengths() -> None:
    spell = speller(slots=60)
    expected = np.array(spell.lengths(), dtype=float)
    rendered = np.array([len(spell.sample(i, 0)[1]) for i in range(60)], dtype=float)
    # Good enough to bucket by: strongly correlated and on the same scale.
    assert np.corrcoef(expected, rendered)[0, 1] > 0.8
    assert 0.6 < rendered.sum() / expected.sum() < 1.6


def test_widened_variation_keeps_its_centres_and_valid_bounds() -> None:
    wide = CORPUS_VARIATION.widened(2.0)
    assert wide.body_rotation == 2 * CORPUS_VARIATION.body_rotation
    assert np.mean(wide.tempo) == pytest.approx(np.mean(CORPUS_VARIATION.tempo))
    assert wide.tempo[1] - wide.tempo[0] == pytest.approx(
        2 * (CORPUS_VARIATION.tempo[1] - CORPUS_VARIATION.tempo[0])
    )
    assert wide.edge_keep[0] >= 0 and wide.edge_keep[1] <= 1.0 and wide.hold_speed[0] > 0
    assert Variation().widened(1.0) == Variation()


def test_a_folder_corpus_trains_on_its_stored_files(small_profile, spelled_data) -> None:
    """A profile extending the demo with its own corpus has no lexicon to spell from."""
    profile = small_profile(
        f"data.corpus={str(spelled_data.root)!r}", "data.synthesis.enabled=true"
    )
    assert profile.data.synthesis.enabled
    data = prepare_data(profile)
    assert data.train.synthesis is None
    assert data.train.training_item(0).id == data.train.entries[0].id


def test_prepared_demo_data_spells_new_training_sequences(spelled_data) -> None:
    train = spelled_data.train
    assert train.synthesis is not None
    train.set_epoch(0)
    first = train.training_item(0)
    train.set_epoch(1)
    second = train.training_item(0)
    assert first.id != second.id and collate([first]).features.shape[-1] == 6516
    assert not (
        first.features.shape == second.features.shape and (first.features == second.features).all()
    )
    assert all(0 < t < len(spelled_data.vocabulary) for t in first.targets)
    assert train[0].id == train.entries[0].id  # checks and the doctor read the stored files
    train.set_epoch(0)


def test_an_ignored_face_is_never_derived_and_the_model_sees_the_same_input(spelled_data) -> None:
    # The demo ignores the face: training items carry only the other columns, the speller
    # renders no face, and collate's full vector equals deriving everything and normalizing.
    train = spelled_data.train
    assert "face" in ignored_groups(train.stats)
    train.set_epoch(0)
    item = train.training_item(3)
    assert item.columns is not None and item.features.shape[1] == 6516 - 4 * 1404
    raw = train.raw_item(3)
    # The face is not rendered: the item holds the other 75 landmarks only, never widened.
    face = set(range(LAYOUT.face_landmarks.start, LAYOUT.face_landmarks.stop))
    assert raw.landmark_ids is not None and not face & set(raw.landmark_ids.tolist())
    assert raw.landmarks.shape[1] == raw.mask.shape[1] == len(raw.landmark_ids) == 543 - len(face)
    landmarks = torch.zeros(len(raw.landmarks), 543, 3, dtype=raw.landmarks.dtype)
    mask = torch.zeros(len(raw.landmarks), 543, dtype=torch.bool)
    landmarks[:, raw.landmark_ids], mask[:, raw.landmark_ids] = raw.landmarks, raw.mask
    full, valid = LAYOUT.features_with_validity(landmarks, mask, train.coordinates)
    expected = normalize(full, valid, train.normalization, train.stats)
    batch = collate([item])
    torch.testing.assert_close(batch.features[0], expected)
    # Stored sequences (checks, evaluation) come full width from __getitem__ too.
    stored = train[0]
    assert stored.columns is None and stored.features.shape[1] == 6516
    for dims in LAYOUT.group_dims("face"):
        assert (stored.features[:, dims] == 0).all()

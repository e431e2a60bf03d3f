"""Training sequences spelled afresh every epoch (`[data.synthesis]`).

The lexicon has one clip per letter, so a fixed corpus of 600 spelled words is memorized: the
demo student's train loss fell to 0.08 while dev letter error stalled at 11%. Here each training
slot is rendered anew every epoch: another word (or a random letter string) with new variation,
drawn from ranges wider than the stored corpus's (`Variation.widened`), so a model meets far more
than it can memorize and is pushed towards what any signer's spelling shares.

Slot `i` keeps its letter count across epochs, so its length in frames is known in advance (up to
the variation) and the length-bucketed sampler still builds batches of similar length. What it
spells changes: a training word of that length, or a random string (`random_share` of the slots),
which teaches reading letters rather than words and covers strings longer than any word. Random
strings that happen to be a dev or test word are redrawn: held-out words stay held out.

A sample is a pure function of (corpus config, epoch, slot): reruns, resumes and any number of
loader threads give the same data.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import torch

from signconsole.config import FingerspellConfig, SynthesisConfig
from signconsole.data.lexicon import clip_bank, load_alphabet
from signconsole.data.spelling import CORPUS_VARIATION, render_batch

# Frames of one letter, measured on the stored ASL corpus (46155 frames for 3.4k letters);
# used only for bucketing, where a rough estimate is enough.
EDGE_FRAMES = 6.0  # the kept first raise and last lower, beyond the letters' own frames


class Speller:
    """Renders slot `index` of epoch `epoch`: (glosses, landmarks [T, K, 3] float16, mask)."""

    def __init__(
        self,
        corpus: FingerspellConfig,
        config: SynthesisConfig,
        slots: int,
        train_words: Iterable[tuple[str, ...]],
        held_out: Iterable[tuple[str, ...]],
        frames_per_letter: float,
    ) -> None:
        self.corpus, self.config = corpus, config
        self.bank = clip_bank(corpus.lang)
        self.alphabet = list(load_alphabet(corpus.lang))
        self.variation = CORPUS_VARIATION.widened(config.widen)
        self.held_out = set(held_out)
        self.by_length: dict[int, list[tuple[str, ...]]] = defaultdict(list)
        for word in dict.fromkeys(train_words):  # ordered and unique: a stable draw
            self.by_length[len(word)].append(word)
        lengths = sorted(self.by_length)
        if not lengths:
            raise ValueError("data.synthesis needs at least one training word")
        rng = self._rng(0)
        low, high = config.random_letters
        # Word slots take the letter counts of training words in their proportions.
        counts = np.array([len(self.by_length[n]) for n in lengths], dtype=np.float64)
        self.random = rng.random(slots) < config.random_share
        self.letters = np.where(
            self.random,
            rng.integers(low, high + 1, size=slots),
            rng.choice(lengths, size=slots, p=counts / counts.sum()),
        )
        self.frames_per_letter = frames_per_letter
        # The landmarks (of the 543) a sample holds, when the bank leaves some out; None: all.
        self.landmark_ids: torch.Tensor | None = None

    def _rng(self, *stream: int) -> np.random.Generator:
        # crc32, not hash(): Python salts str hashes per process.
        key = [self.corpus.seed, zlib.crc32(self.corpus.lang.encode("utf-8")), 7, *stream]
        return np.random.default_rng(np.random.SeedSequence(key))

    def __len__(self) -> int:
        return len(self.letters)

    def lengths(self) -> list[int]:
        """Expected frames of every slot, for length bucketing."""
        return [round(EDGE_FRAMES + n * self.frames_per_letter) for n in self.letters]

    def glosses(self, index: int, rng: np.random.Generator) -> tuple[str, ...]:
        letters = int(self.letters[index])
        if not self.random[index]:
            words = self.by_length[letters]
            return words[int(rng.integers(len(words)))]
        for _ in range(100):
            word = tuple(self.alphabet[i] for i in rng.integers(len(self.alphabet), size=letters))
            if word not in self.held_out:
                return word
        return word  # a tiny alphabet whose every string is held out: nothing better exists

    def sample(self, index: int, epoch: int) -> tuple[tuple[str, ...], torch.Tensor, torch.Tensor]:
        """(glosses, landmarks [T, K, 3] float16, mask [T, K]): K = 543, or the `landmark_ids` the
        bank keeps. A left-out face stays left out: widening every sequence to 543 (zeros for
        the face) was ~10% of a worker's batch, and 7x the landmarks shipped to a GPU."""
        return self.samples([index], epoch)[0]

    def samples(
        self, indices: list[int], epoch: int
    ) -> list[tuple[tuple[str, ...], torch.Tensor, torch.Tensor]]:
        """`sample` of each slot of `indices`, rendered together (`render_batch`): a loader
        worker's batch in one pass. Each is the same as when it is rendered alone."""
        rngs = [self._rng(1, epoch, index) for index in indices]
        glosses = [self.glosses(index, rng) for index, rng in zip(indices, rngs, strict=True)]
        points, mask, ends = render_batch(
            list(zip(glosses, rngs, strict=True)), self.bank, self.variation, np.float16
        )
        landmarks, masks = torch.from_numpy(points), torch.from_numpy(mask)  # samples are views
        starts = [0, *ends[:-1]]
        return [
            (words, landmarks[start:end], masks[start:end])
            for words, start, end in zip(glosses, starts, ends, strict=True)
        ]

    def leave_out_face(self) -> None:
        """Render without the face from now on: the profile ignores it (`data.ignore`)."""
        self.bank = self.bank.without_face()
        assert self.bank.landmark_index is not None
        self.landmark_ids = torch.from_numpy(np.asarray(self.bank.landmark_index, dtype=np.int64))

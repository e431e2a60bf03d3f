"""Gloss vocabulary: blank is index 0, nothing else collides with it, and both maps are built
from one list so they cannot drift apart (seed 003: an `idx2word` that was never filled decoded
everything to `<blank>`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

BLANK = "<blank>"


class UnknownGlossError(ValueError):
    pass


def plural(unit: str) -> str:
    """The plural of a vocabulary unit ("letter", "gloss") or any English noun ending like one:
    "gloss" + "s" was the console's "glosss"."""
    if unit.endswith(("s", "sh", "ch", "x", "z")):
        return unit + "es"
    return unit + "s"


def count_of(count: int, unit: str) -> str:
    """'1 gloss', '26 letters', '0 glosses'."""
    return f"{count} {unit if count == 1 else plural(unit)}"


@dataclass(frozen=True)
class Vocabulary:
    tokens: tuple[str, ...]  # tokens[0] is always BLANK

    def __post_init__(self) -> None:
        if not self.tokens or self.tokens[0] != BLANK:
            raise ValueError(f"vocabulary must start with {BLANK!r} at index 0")
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("vocabulary has duplicate tokens")
        object.__setattr__(self, "_index", {token: i for i, token in enumerate(self.tokens)})

    @classmethod
    def from_glosses(cls, sequences: Iterable[Iterable[str]]) -> Vocabulary:
        glosses = sorted({gloss for sequence in sequences for gloss in sequence})
        if BLANK in glosses:
            raise ValueError(f"the annotations use the reserved token {BLANK!r}")
        return cls((BLANK, *glosses))

    @property
    def blank(self) -> int:
        return 0

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, gloss: str) -> bool:
        return gloss in self._index  # type: ignore[attr-defined]

    def encode(self, glosses: Iterable[str], sample_id: str = "") -> list[int]:
        index: dict[str, int] = self._index  # type: ignore[attr-defined]
        ids = []
        for gloss in glosses:
            if gloss not in index:
                where = f" in sample {sample_id}" if sample_id else ""
                raise UnknownGlossError(
                    f"gloss {gloss!r}{where} is not in the vocabulary ({len(self) - 1} glosses "
                    "from the training split); evaluate with the run's own corpus or count it as "
                    "an error with --unknown count"
                )
            ids.append(index[gloss])
        return ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids if i != 0]

    def round_trip_failures(self, sequences: Iterable[Iterable[str]]) -> list[list[str]]:
        """Sequences that do not survive encode -> decode unchanged (should be none)."""
        failures = []
        for sequence in sequences:
            sequence = list(sequence)
            try:
                if self.decode(self.encode(sequence)) != sequence:
                    failures.append(sequence)
            except UnknownGlossError:
                failures.append(sequence)
        return failures

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"blank": 0, "tokens": list(self.tokens)}, indent=0))

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        data = json.loads(Path(path).read_text())
        return cls(tuple(data["tokens"]))

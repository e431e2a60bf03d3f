"""A corpus in the Phoenix-2014 layout.

    ROOT/annotations/manual/{train,dev,test}.corpus.csv   id|folder|signer|annotation (header line)
    ROOT/annotations/manual/{split}.frames.csv            id|frames (optional)
    ROOT/features/{split}/{id}.{npz,npy,pose}             one feature file per id

The feature file of a sample is found, in order: the `folder` column when it names a file with a
feature suffix (relative to ROOT), then features/{split}/{id}.*, then features/{id}.*. Phoenix's
own `folder` column points at PNG frames; `signconsole extract` turns those into feature files
named by id. With `data.features = DIR` the feature files are looked up in DIR instead of
ROOT/features (DIR/{split}/{id}.*, then DIR/{id}.*), so one annotation folder can serve several
feature sets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from signconsole.data.readers import FEATURE_SUFFIXES
from signconsole.data.vocabulary import BLANK

SPLITS = ("train", "dev", "test")
HEADER = ("id", "folder", "signer", "annotation")


class CorpusError(ValueError):
    """A corpus problem; the message names the file, line or sample id and the fix."""


@dataclass(frozen=True)
class Entry:
    id: str
    folder: str
    signer: str
    glosses: tuple[str, ...]
    frames: int | None  # from {split}.frames.csv when present


def annotation_path(root: Path, split: str) -> Path:
    return root / "annotations" / "manual" / f"{split}.corpus.csv"


def frames_path(root: Path, split: str) -> Path:
    return root / "annotations" / "manual" / f"{split}.frames.csv"


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (a byte-order mark, as Excel writes, is dropped; CRLF is
    fine). Anything else is a CorpusError naming the file, and the line of the first byte that
    is not UTF-8."""
    if path.is_dir():
        raise CorpusError(f"{path}: is a folder, expected a text file; remove or rename it")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CorpusError(
            f"{path}: cannot be read ({error.strerror or error}); check its permissions"
        ) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise CorpusError(
            f"{path}: not UTF-8 text (byte 0x{data[error.start]:02x} at line {line}); "
            "save it as UTF-8"
        ) from None
    # Split on newlines only: str.splitlines also breaks at U+2028, U+0085 and friends, which
    # a gloss may hold, and the line numbers in messages would no longer match an editor's.
    return [line.removesuffix("\r") for line in text.split("\n")]


def read_annotations(path: Path) -> list[Entry]:
    """Parse one split's corpus.csv; every malformed line is reported with file and line."""
    if not path.exists():
        raise CorpusError(
            f"{path}: annotation file not found; a corpus needs "
            "annotations/manual/{train,dev,test}.corpus.csv"
        )
    lines = read_lines(path)
    if not lines or lines[0].strip().split("|") != list(HEADER):
        raise CorpusError(f"{path}:1: expected the header line {'|'.join(HEADER)}")
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 4:
            raise CorpusError(
                f"{path}:{number}: expected 4 fields (id|folder|signer|annotation), "
                f"found {len(fields)}: {line[:80]!r}"
            )
        sample_id, folder, signer, annotation = (f.strip() for f in fields)
        if not sample_id:
            raise CorpusError(f"{path}:{number}: empty id")
        if sample_id in seen:
            raise CorpusError(
                f"{path}:{number}: id {sample_id} already used on line {seen[sample_id]}"
            )
        seen[sample_id] = number
        glosses = tuple(annotation.split())
        if not glosses:
            raise CorpusError(f"{path}:{number}: sample {sample_id} has an empty annotation")
        if BLANK in glosses:
            raise CorpusError(
                f"{path}:{number}: sample {sample_id} uses {BLANK}, the token CTC reserves for "
                "'no gloss'; rename that gloss"
            )
        entries.append(Entry(sample_id, folder, signer, glosses, None))
    frames = read_frames(path.with_name(path.name.replace(".corpus.csv", ".frames.csv")))
    if frames:
        entries = [Entry(e.id, e.folder, e.signer, e.glosses, frames.get(e.id)) for e in entries]
    return entries


def read_frames(path: Path) -> dict[str, int]:
    """{split}.frames.csv: the frame count of each sample as its files held when it was written.
    Optional; the dataset checks every count against the file it reads (a stale count would
    mislead the length checks)."""
    if not path.exists():
        return {}
    frames: dict[str, int] = {}
    for number, line in enumerate(read_lines(path), start=1):
        fields = line.split("|")
        if (number == 1 and fields[0].strip() == "id") or not line.strip():
            continue
        if len(fields) != 2 or not re.fullmatch(r"[0-9]+", fields[1].strip()):
            raise CorpusError(
                f"{path}:{number}: expected id|frames (frames a whole number), found "
                f"{line[:80]!r}; fix the line or delete {path.name} (it is optional)"
            )
        frames[fields[0].strip()] = int(fields[1])
    return frames


@dataclass(frozen=True)
class Corpus:
    root: Path
    splits: dict[str, list[Entry]]
    features: Path | None = None  # `data.features`: feature files apart from the annotations

    @classmethod
    def open(
        cls, root: str | Path, splits: tuple[str, ...] = SPLITS, features: str | Path | None = None
    ) -> Corpus:
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise CorpusError(
                f"{root}: is a file, not a corpus folder; set data.corpus in the profile to the "
                'folder holding annotations/ and features/, or to "fingerspell"'
            )
        if features is not None and Path(features).exists() and not Path(features).is_dir():
            raise CorpusError(
                f"{features}: is a file, not a folder; set data.features in the profile to the "
                'folder holding {split}/{id}.npz|.npy|.pose (or "" for ROOT/features)'
            )
        if not root.is_dir():
            raise CorpusError(
                f"{root}: corpus directory not found; set data.corpus in the profile "
                'to a Phoenix-layout folder or to "fingerspell"'
            )
        if features is not None and not Path(features).is_dir():
            raise CorpusError(
                f"{features}: features folder not found; set data.features in the profile to "
                'the folder holding {split}/{id}.npz|.npy|.pose (or "" for ROOT/features)'
            )
        return cls(
            root,
            {split: read_annotations(annotation_path(root, split)) for split in splits},
            Path(features) if features is not None else None,
        )

    def feature_path(self, split: str, entry: Entry) -> Path:
        base = self.features or self.root / "features"
        candidates = []
        if Path(entry.folder).suffix.lower() in FEATURE_SUFFIXES:
            candidates.append((self.features or self.root) / entry.folder)
        for folder in (base / split, base):
            candidates.extend(folder / f"{entry.id}{suffix}" for suffix in FEATURE_SUFFIXES)
        for candidate in candidates:
            if candidate.exists():
                return candidate
        raise CorpusError(
            f"sample {entry.id} ({split}): no feature file; looked for {candidates[0]} and "
            f"{len(candidates) - 1} other names. Run `signconsole extract` on the corpus first"
        )

    def glosses(self, split: str) -> list[tuple[str, ...]]:
        return [entry.glosses for entry in self.splits[split]]

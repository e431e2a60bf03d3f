"""The built-in demo corpus: continuous fingerspelling spelled from real MediaPipe poses.

A sample is a word spelled by chaining its letters' clips from the `spoken-to-signed` lexicon
(`spelling.py` renders it, each with its own variation). Dev and test words are held out from
train. Training may also draw new sequences every epoch instead (`synthesis.py`).

The output is a Phoenix-2014 layout directory, so the one corpus loader serves both:

    ROOT/annotations/manual/{split}.corpus.csv   id|folder|signer|annotation
    ROOT/annotations/manual/{split}.frames.csv   id|frames
    ROOT/features/{split}/{id}.npz               landmarks + mask (`write_landmarks`)
    ROOT/fingerspell.json                        config + summary, written last

Everything is a pure function of (lang, seed, counts): the same config gives byte-identical
annotations and identical landmark arrays.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from signconsole.config import FingerspellConfig
from signconsole.data.build_folder import (
    METADATA,
    describe,
    install,
    rebuild_command,
    remove_stale_builds,
    replaced_corpus,
    work_folder,
)
from signconsole.data.build_limits import check_config
from signconsole.data.lexicon import (  # noqa: F401 (re-exported: the corpus API in one place)
    OUTPUT_FPS,
    _entries,
    available_languages,
    clip_bank,
    lexicon_dir,
    load_alphabet,
    spell,
)
from signconsole.data.readers import write_landmarks
from signconsole.data.spelling import render

FORMAT_VERSION = 2  # bump when the output changes for the same config: old caches rebuild
SPLITS = ("train", "dev", "test")
SIGNER = "lexicon"
WORDLIST_DIR = Path(__file__).parent / "wordlists"

MIN_SPELLABLE_WORDS = 60  # fewer real words than this: spell pseudo-words instead
PSEUDO_WORDS = 400  # pseudo-word types generated for a language without a usable word list
PSEUDO_LENGTH = (3, 7)  # glosses per pseudo-word, inclusive

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class CorpusSummary:
    root: Path
    lang: str
    counts: dict[str, int]  # split -> sequences
    frames: dict[str, int]  # split -> total frames
    letters: list[str]  # sorted gloss inventory used
    words: dict[str, int]  # split -> distinct words
    replaced: str | None = None  # the corpus the build replaced in its folder (`describe`)
    rebuild: str | None = None  # the command that builds that replaced corpus again


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
    bank = clip_bank(config.lang)
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
                landmarks, mask = render(glosses, bank, _rng(config, 3, number, index))
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


def build_corpus(
    config: FingerspellConfig, out_dir: Path, progress: Progress | None = None
) -> CorpusSummary:
    """Spell the corpus of `config` into `out_dir`: a new or empty folder, or one holding a
    fingerspelling corpus (and nothing else), which is replaced (`CorpusSummary.replaced` says
    what it was). Any other folder is refused (ValueError) before anything is written.

    The build goes to a temp dir beside `out_dir` and is renamed into place when complete, with
    fingerspell.json written last. Reports progress as (sequences done, sequences total).
    """
    load_alphabet(config.lang)  # an unknown language fails before anything is touched
    check_config(config, lambda name: f"fingerspell.{name}")
    previous = replaced_corpus(Path(out_dir))
    out_dir = Path(out_dir).resolve()  # "out" and "out/" have a parent to build beside
    summary = _build(config, out_dir, progress, recheck=True)
    if previous is None:
        return summary
    return replace(summary, replaced=describe(previous), rebuild=rebuild_command(previous, out_dir))


def _build(
    config: FingerspellConfig, out_dir: Path, progress: Progress | None, recheck: bool = False
) -> CorpusSummary:
    """Build into a temp folder beside `out_dir`, then swap it in (whatever `out_dir` held).
    `recheck`: look at `out_dir` again right before the swap (a person may have put a file in it
    during a long build); then a finished build is kept beside it, not swapped in."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(out_dir)
    work = work_folder(out_dir)
    keep = False
    try:
        metadata = _build_into(work, config, progress)
        text = json.dumps(metadata, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        (work / METADATA).write_text(text, encoding="utf-8")  # last: marks the build complete
        if recheck:
            try:
                replaced_corpus(out_dir)
            except ValueError as error:
                keep = True
                raise ValueError(
                    f"{error} (it changed during the build; the finished corpus is in {work})"
                ) from None
        install(work, out_dir)
    except BaseException:
        if not keep:
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
    # Two runs started together on a fresh cache (the ranks of a job, a console and a headless
    # run) would both build it, and the second swap would pull the corpus from under the first
    # reader: one builds, the others wait for it and read the result.
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{target.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        summary = _complete(target, config)
        if summary is not None:
            return summary
        # The cache folder is signconsole's own, named by the config: replaced whatever it holds.
        return _build(config, target, progress)

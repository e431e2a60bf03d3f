"""How a fingerspelling run generalizes beyond its own test split.

    python benchmarks/demo_generalization.py RUN [RUN ...] [--runs-dir runs] [--sequences 80]

For each run (a run directory or name; its best checkpoint), letter error rate (greedy) on:

- `test`    the run's own test split (held-out words, the stored corpus's variation);
- `harder`  the same held-out words rendered anew with every variation range twice as wide as
            the stored corpus's (speed, trims, transitions, hand and body rotation/scale/shift,
            noise), wider than the demo trains on (1.5x);
- `long`    random strings of 8-12 letters (no word structure, longer than most words), the
            stored corpus's variation.

The two extra sets are rendered from the lexicon with their own seed (a pure function of the
language and the set), written once in the Phoenix layout under $SIGNCONSOLE_CACHE and scored
with `engine.evaluate.evaluate_model`, the code the engine evaluates with.
"""

from __future__ import annotations

import argparse
import os
import sys
import zlib
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from signconsole.commands.evaluate import run_or_name  # noqa: E402
from signconsole.data.corpus import Corpus  # noqa: E402
from signconsole.data.dataset import SequenceDataset  # noqa: E402
from signconsole.data.fingerspell import ensure_corpus  # noqa: E402
from signconsole.data.lexicon import OUTPUT_FPS, clip_bank, load_alphabet  # noqa: E402
from signconsole.data.readers import write_landmarks  # noqa: E402
from signconsole.data.spelling import CORPUS_VARIATION, render  # noqa: E402
from signconsole.engine.evaluate import evaluate_model  # noqa: E402
from signconsole.engine.inference import load_trained  # noqa: E402

HARDER = 2.0  # variation ranges x the stored corpus's
LONG_LETTERS = (8, 12)
SET_VERSION = 1  # bump when a set's definition changes: old copies are rebuilt


def build_set(root: Path, lang: str, words: list[tuple[str, ...]], wide: float) -> Path:
    """Render `words` into a Phoenix-layout test split at `root` (once; reused after)."""
    done = root / "complete"
    if done.exists():
        return root
    bank = clip_bank(lang)
    variation = CORPUS_VARIATION.widened(wide)
    manual, features = root / "annotations" / "manual", root / "features" / "test"
    manual.mkdir(parents=True, exist_ok=True)
    features.mkdir(parents=True, exist_ok=True)
    lines = ["id|folder|signer|annotation"]
    for index, word in enumerate(words):
        key = [SET_VERSION, zlib.crc32(f"{lang} {wide} {index}".encode())]
        landmarks, mask = render(word, bank, np.random.default_rng(key), variation)
        sample = f"{lang}-set-{index:05d}"
        write_landmarks(features / f"{sample}.npz", landmarks, mask, OUTPUT_FPS)
        lines.append(f"{sample}|features/test/{sample}.npz|lexicon|{' '.join(word)}")
    (manual / "test.corpus.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    done.write_text("")
    return root


def random_strings(lang: str, count: int) -> list[tuple[str, ...]]:
    alphabet = list(load_alphabet(lang))
    rng = np.random.default_rng([SET_VERSION, zlib.crc32(lang.encode()), 99])
    lengths = rng.integers(LONG_LETTERS[0], LONG_LETTERS[1] + 1, size=count)
    return [tuple(alphabet[i] for i in rng.integers(len(alphabet), size=n)) for n in lengths]


def score(trained, root: Path, split: str = "test") -> float:
    """Greedy LER of `trained` on `root`'s split, normalized with the run's own statistics."""
    data = trained.profile.data
    corpus = Corpus.open(root, (split,))
    options = {"normalization": data.normalization, "coordinates": data.coordinates}
    dataset = SequenceDataset(
        corpus, split, trained.vocabulary, stats=trained.stats, unknown_glosses="drop", **options
    )
    result = evaluate_model(
        trained.model, dataset, trained.vocabulary, device=trained.device, batch_size=16
    )
    return result.counts.rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--sequences", type=int, default=80, help="sequences in the long set")
    args = parser.parse_args()
    cache = Path(os.environ.get("SIGNCONSOLE_CACHE") or Path.home() / ".cache" / "signconsole")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    print(f"{'run':<48} {'lang':<5} {'test':>7} {'harder':>7} {'long':>7}")
    for run in args.runs:
        trained = load_trained(run_or_name(run, args.runs_dir), torch.device("cpu"))
        config = trained.profile.data.fingerspell
        corpus = ensure_corpus(config).root
        test_words = Corpus.open(corpus, ("test",)).glosses("test")
        tag = f"{config.lang}-s{config.seed}-n{len(test_words)}-v{SET_VERSION}"
        harder = build_set(cache / f"generalization-harder-{tag}", config.lang, test_words, HARDER)
        long_words = random_strings(config.lang, args.sequences)
        long = build_set(cache / f"generalization-long-{tag}", config.lang, long_words, 1.0)
        rates = [score(trained, root) for root in (corpus, harder, long)]
        name = trained.run_dir.name if trained.run_dir else str(trained.checkpoint)
        cells = " ".join(f"{100 * rate:6.2f}%" for rate in rates)
        print(f"{name:<48} {config.lang:<5} {cells}", flush=True)


if __name__ == "__main__":
    main()

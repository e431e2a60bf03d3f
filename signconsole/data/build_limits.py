"""How large a fingerspelling corpus may be, and what a build costs.

The bounds are the ones `profile_checks` puts on `data.fingerspell.*`, so the command and a
profile accept the same corpora. Past them a build does not fail, it runs for hours and fills
the disk: the cap says so before anything is spelled.
"""

from __future__ import annotations

from collections.abc import Callable

from signconsole.config import FingerspellConfig

SPLITS = ("train", "dev", "test")
MAX_SEQUENCES = 100_000  # per split, as profile_checks bounds data.fingerspell.*
SEED_MAX = 2**32 - 1  # profile_checks.SEED_MAX (not imported: it pulls in the models)
# What one sequence costs on the project's 2-core CPU VM: the demo corpus's 760 sequences took
# 10.4 s and 106 MB on 2026-12-03 (`data fingerspell --train 600 --dev 80 --test 80`, quiet).
SECONDS_PER_SEQUENCE = 0.014
BYTES_PER_SEQUENCE = 140_000


def check_config(config: FingerspellConfig, option: Callable[[str], str] = str) -> None:
    """Counts and seed a build can finish; `option` names a field as the caller's user knows it
    (`--train` on the command line, `data.fingerspell.train` in a profile)."""
    if not 0 <= config.seed <= SEED_MAX:
        raise ValueError(
            f"{option('seed')} must be an integer in [0, {SEED_MAX}], got {config.seed}"
        )
    for split in SPLITS:
        count = getattr(config, split)
        if not 1 <= count <= MAX_SEQUENCES:
            raise ValueError(
                f"{option(split)} must be in [1, {MAX_SEQUENCES}], got {count}: a split of "
                f"{MAX_SEQUENCES} sequences is ~{estimate(MAX_SEQUENCES)}; past that a build "
                "runs for hours and fills the disk (train on spelled sequences instead: "
                "[data.synthesis])"
            )


def estimate(sequences: int) -> str:
    """'14.0 GB and 23 minutes', the rough cost of spelling `sequences` sequences."""
    gigabytes = sequences * BYTES_PER_SEQUENCE / 1e9
    minutes = sequences * SECONDS_PER_SEQUENCE / 60
    size = f"{gigabytes:.1f} GB" if gigabytes >= 1 else f"{gigabytes * 1000:.0f} MB"
    return f"{size} and {minutes:.0f} minutes of one CPU core"

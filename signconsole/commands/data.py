"""`signconsole data ...`: build the fingerspelling corpus, list languages, summarize a profile's data."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

LARGE_BUILD = 5_000  # sequences; a build this large says what it will cost before it starts


def dispatch(args: argparse.Namespace) -> int:
    if args.data_command == "languages":
        return languages()
    if args.data_command == "fingerspell":
        return fingerspell(args)
    return summary(Path(args.profile), args.overrides)


def languages() -> int:
    from signconsole.data.fingerspell import available_languages, load_alphabet

    table = Table("code", "letters", title="Fingerspelling lexicon")
    for code in available_languages():
        table.add_row(code, " ".join(sorted(load_alphabet(code))))
    Console().print(table)
    return 0


def fingerspell(args: argparse.Namespace) -> int:
    from signconsole.commands.progress import progress_reporter
    from signconsole.config import FingerspellConfig
    from signconsole.data.build_limits import check_config, estimate
    from signconsole.data.fingerspell import build_corpus
    from signconsole.errors import UserError

    config = FingerspellConfig(
        lang=args.lang, seed=args.seed, train=args.train, dev=args.dev, test=args.test
    )
    console = Console()
    try:
        check_config(config, lambda name: f"--{name}")
        total = config.train + config.dev + config.test
        if total > LARGE_BUILD:
            console.print(f"spelling {total} sequences: about {estimate(total)}")
        with progress_reporter() as progress:
            result = build_corpus(
                config, Path(args.out), progress=lambda d, t: progress("spelling words", d, t)
            )
    except ValueError as error:  # unknown language, a folder in the way: the message says which
        raise UserError(str(error)) from None
    table = Table("split", "sequences", "frames", "distinct words", title=f"{result.root}")
    for split, count in result.counts.items():
        table.add_row(split, str(count), str(result.frames[split]), str(result.words[split]))
    console.print(table)
    console.print(f"{len(result.letters)} letters: {' '.join(result.letters)}")
    if result.replaced is not None:
        again = f"; to build it again: {result.rebuild}" if result.rebuild else ""
        console.print(
            f"replaced the corpus that was in {result.root} ({result.replaced}){again}",
            highlight=False,
            soft_wrap=True,
        )
    return 0


def summary(profile_path: Path, overrides: list[str]) -> int:
    from signconsole.commands.progress import progress_reporter
    from signconsole.data.prepare import prepare_data
    from signconsole.profile import load_profile

    profile = load_profile(profile_path, overrides)
    with progress_reporter() as progress:
        data = prepare_data(profile, progress)
    print_data_summary(data.summary())
    return 0


def print_data_summary(summary: dict, console: Console | None = None) -> None:
    from signconsole.data.vocabulary import count_of

    console = console or Console()
    table = Table("split", "sequences", "frames", title=f"corpus {summary['corpus']}")
    for split, count in summary["sequences"].items():
        table.add_row(split, str(count), str(summary["frames"][split]))
    console.print(table)
    console.print(
        f"vocabulary: {count_of(summary['vocabulary'], summary['unit'])} + blank    "
        f"padding efficiency (train batches): {summary['padding_efficiency']:.1%}"
    )
    for split, count in summary.get("skipped_too_long", {}).items():
        console.print(f"[yellow]{split}: {count} sequences longer than data.max_frames skipped[/]")
    for split, count in summary.get("unknown_glosses", {}).items():
        console.print(
            f"[yellow]{split}: {count} gloss occurrences not in the train vocabulary "
            "(scored as errors)[/]"
        )

"""`signconsole` command line.

Imports stay lazy: `--help` must answer in well under a second, and the headless commands never
import Textual. Every expected failure (bad profile, bad data) ends as one line on stderr per
problem and a documented exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """Process exit codes (API: scripts and schedulers rely on them)."""

    OK = 0
    FAILED = 1  # the run failed (non-finite loss pause, doctor check failed, ...)
    BAD_INPUT = 2  # the profile, the data or the command line is wrong; nothing was trained
    NOT_IMPLEMENTED = 3  # reserved: a command this version does not provide (none at present)
    INTERRUPTED = 130  # Ctrl+C / SIGTERM: stopped cleanly after a checkpoint


# `signconsole runs --status`: what signconsole.store.catalog documents (not imported here, to
# keep --help fast); finished = its planned end, stopped = by a person or the time budget,
# killed = its process died without recording an end.
RUN_STATUSES = ("running", "paused", "finished", "stopped", "failed", "killed", "unreadable")

COMMANDS = (
    "run",
    "runs",
    "show",
    "compare",
    "doctor",
    "extract",
    "eval",
    "decode",
    "export",
    "data",
)


def _runs_dir_option(command: argparse.ArgumentParser, description: str) -> None:
    """The review commands' runs directory: `--dir`, or `--runs-dir` as `run` and the console
    spell it."""
    command.add_argument("--dir", "--runs-dir", default="runs", help=description)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="signconsole",
        description="Train continuous sign language recognition models from a terminal.",
        epilog="`signconsole` alone opens the console; `signconsole PROFILE.toml` opens it on a profile.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="train a profile headless")
    run.add_argument("profile", help="profile TOML file")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a profile key, e.g. --set optimizer.learning_rate=3e-4",
    )
    run.add_argument(
        "--resume", metavar="RUN", help="continue a run directory from its last checkpoint"
    )
    run.add_argument(
        "--nproc",
        type=int,
        default=None,
        metavar="N",
        help="train on N processes (N GPUs, or CPU processes with gloo) through torchrun "
        "(default: the profile's training.nproc, 1)",
    )
    run.add_argument(
        "--allow-changes",
        action="store_true",
        help="resume even though the profile differs from the run's (the difference is recorded)",
    )
    run.add_argument(
        "--runs-dir",
        metavar="DIR",
        help="where run directories go (default: profile's output.runs_dir)",
    )

    runs = commands.add_parser("runs", help="list past and running runs")
    _runs_dir_option(runs, "runs directory (default: runs/)")
    runs.add_argument("--kind", choices=("teacher", "student", "distill"))
    runs.add_argument("--status", choices=RUN_STATUSES, help="only runs with this status")

    show = commands.add_parser("show", help="review a run (follows it live if still training)")
    show.add_argument("run", help="run directory, or a run name in --dir (newest match)")
    _runs_dir_option(show, "runs directory (default: runs/)")
    show.add_argument(
        "--steps", metavar="START:END", help="open zoomed to a step range, e.g. 1000:5000"
    )

    compare = commands.add_parser(
        "compare", help="compare runs: curves, best metrics, profile diff"
    )
    compare.add_argument("runs", nargs="+", help="run directories or run names in --dir")
    _runs_dir_option(compare, "runs directory (default: runs/)")
    compare.add_argument("--steps", metavar="START:END", help="only this step range in the curves")

    doctor = commands.add_parser("doctor", help="pre-flight checks and the overfit test")
    doctor.add_argument("profile")
    doctor.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    doctor.add_argument(
        "--no-overfit", action="store_true", help="only the checks without training"
    )

    extract = commands.add_parser(
        "extract", help="MediaPipe landmarks from videos or frame folders"
    )
    extract.add_argument(
        "input", help="a video, a folder of videos, a folder of frames, or a Phoenix corpus"
    )
    extract.add_argument("--out", required=True, help="output folder")
    extract.add_argument("--workers", type=int, help="worker processes (default: the CPU count)")
    extract.add_argument(
        "--format",
        choices=("npz", "pose"),
        default="npz",
        help="npz: [T, 543, 3] float16 + mask (default); pose: pose-format .pose",
    )
    extract.add_argument(
        "--overwrite", action="store_true", help="redo sequences whose output exists"
    )

    evaluate = commands.add_parser("eval", help="score a checkpoint on a split")
    evaluate.add_argument("run", help="run directory (its best.pt) or a checkpoint file")
    evaluate.add_argument(
        "--data", metavar="CORPUS_DIR", help="a Phoenix-layout corpus (default: the run's own)"
    )
    evaluate.add_argument("--split", choices=("dev", "test", "train"), default="test")
    evaluate.add_argument(
        "--beam", type=int, default=1, help="beam width; 1 = greedy decoding (as in training)"
    )
    evaluate.add_argument("--device", default="auto", help="auto, cpu or cuda")
    _runs_dir_option(evaluate, "runs directory for run names")
    evaluate.add_argument("--json", metavar="FILE", help="write the results as JSON")
    evaluate.add_argument(
        "--ctm", metavar="FILE", help="write hypotheses as CTM (for the Phoenix sclite scoring)"
    )
    evaluate.add_argument(
        "--allow-untrained", action="store_true", help="score a checkpoint at step 0 anyway"
    )
    decode = commands.add_parser("decode", help="decode feature files with a checkpoint")
    decode.add_argument("run", help="run directory (its best.pt) or a checkpoint file")
    decode.add_argument("files", nargs="+", help=".pose, landmark .npz/.npy or feature .npy")
    decode.add_argument("--beam", type=int, default=5)
    decode.add_argument("--device", default="auto")
    _runs_dir_option(decode, "runs directory for run names")
    decode.add_argument(
        "--allow-untrained", action="store_true", help="decode with a checkpoint at step 0 anyway"
    )
    export = commands.add_parser("export", help="export a run's metrics (csv, tensorboard)")
    export.add_argument("run", help="run directory, or a run name in --dir")
    _runs_dir_option(export, "runs directory (default: runs/)")
    export.add_argument("--format", choices=("csv", "tensorboard"), default="csv")
    export.add_argument(
        "--out", help="output directory (default: RUN/export-csv or RUN/tensorboard)"
    )

    data = commands.add_parser("data", help="build and inspect corpora")
    data_commands = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    fingerspell = data_commands.add_parser(
        "fingerspell", help="build the continuous fingerspelling corpus from the real pose lexicon"
    )
    fingerspell.add_argument(
        "--lang", default="ase", help="sign language code (see `data languages`)"
    )
    fingerspell.add_argument("--out", required=True, help="output directory (Phoenix layout)")
    fingerspell.add_argument("--seed", type=int, default=0)
    fingerspell.add_argument("--train", type=int, default=600, help="training sequences")
    fingerspell.add_argument("--dev", type=int, default=80)
    fingerspell.add_argument("--test", type=int, default=80)
    data_commands.add_parser("languages", help="sign languages in the fingerspelling lexicon")
    summary = data_commands.add_parser("summary", help="open a profile's data and summarize it")
    summary.add_argument("profile")
    summary.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    from signconsole.runtime import tune_process

    tune_process()  # before torch is imported: OpenMP wait policy, malloc thresholds
    argv = sys.argv[1:] if argv is None else argv
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        args = _console_parser().parse_args(argv)  # `signconsole [PROFILE.toml] [--set ...]`
        args.command = None
    else:
        args = _parser().parse_args(argv)
    try:
        return int(_dispatch(args))
    except KeyboardInterrupt:
        print("signconsole: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as error:  # expected user errors become one line each; others propagate
        from signconsole.errors import user_error_lines

        lines = user_error_lines(error)
        if lines is None:
            raise
        for line in lines:
            print(f"signconsole: error: {line}", file=sys.stderr)
        return ExitCode.BAD_INPUT


def _console_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="signconsole", description="Open the live console (see `signconsole --help`)."
    )
    parser.add_argument("profile", nargs="?", help="start this profile right away")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--runs-dir", metavar="DIR", help="where run directories go")
    parser.add_argument(
        "--profiles",
        metavar="DIR",
        default="profiles",
        help="folder the picker lists (default: profiles/)",
    )
    return parser


def _console(args: argparse.Namespace) -> int:
    from signconsole.errors import UserError

    if args.profile is not None:
        from signconsole.profile import load_profile

        if not Path(args.profile).exists():
            raise UserError(f"{args.profile}: no such profile (and not a command: see --help)")
        # A bad profile fails here with one line, before the screen opens.
        load_profile(args.profile, args.overrides)
    from signconsole.tui.app import SignConsole

    app = SignConsole(
        Path(args.profile) if args.profile else None,
        profiles_dir=Path(args.profiles),
        runs_dir=args.runs_dir,
        overrides=tuple(args.overrides),
    )
    app.run()
    # The screen is gone: say how each run trained here ended, where it is and how to go on,
    # with the lines `signconsole run` ends with.
    from rich.console import Console

    from signconsole.commands.run import print_run_end

    console = Console(highlight=False)
    for outcome, status in app.trained_runs():
        print_run_end(console, outcome, status)
    return ExitCode.OK


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command is None:
        return _console(args)
    if command == "run":
        from signconsole.commands.run import run_command

        return run_command(
            Path(args.profile),
            args.overrides,
            args.resume,
            args.runs_dir,
            args.allow_changes,
            args.nproc,
        )
    if command == "runs":
        from signconsole.commands.runs import runs_command

        return runs_command(Path(args.dir), args.kind, args.status)
    if command == "doctor":
        from signconsole.commands.doctor import doctor_command

        return doctor_command(Path(args.profile), args.overrides, args.no_overfit)
    if command == "show":
        from signconsole.commands.review import show_command

        return show_command(args.run, args.dir, args.steps)
    if command == "compare":
        from signconsole.commands.review import compare_command

        return compare_command(args.runs, args.dir, args.steps)
    if command == "export":
        from signconsole.commands.export import export_command

        return export_command(args.run, args.dir, args.format, args.out)
    if command == "extract":
        from signconsole.extract.command import extract_command

        return extract_command(args.input, args.out, args.workers, args.format, args.overwrite)
    if command == "eval":
        from signconsole.commands.evaluate import eval_command

        return eval_command(
            args.run,
            args.data,
            args.split,
            args.beam,
            args.device,
            args.json,
            args.ctm,
            args.dir,
            allow_untrained=args.allow_untrained,
        )
    if command == "decode":
        from signconsole.commands.evaluate import decode_command

        return decode_command(
            args.run, args.files, args.beam, args.device, args.dir, args.allow_untrained
        )
    if command == "data":
        from signconsole.commands import data

        return data.dispatch(args)
    raise AssertionError(f"unhandled command {command!r}")  # argparse only lets known ones in


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

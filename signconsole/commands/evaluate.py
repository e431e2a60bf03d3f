"""`signconsole eval` (score a checkpoint on a split) and `signconsole decode` (try it on files).

The scoring is `engine.evaluate.evaluate_model`, the code the engine evaluates with, so a number
printed here and one in the run agree on the same data. Features are prepared with the
checkpoint's own normalization statistics, never ones recomputed on the evaluated corpus.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from signconsole.ctc.wer import align, error_counts
from signconsole.data.vocabulary import plural
from signconsole.errors import UserError

LENGTH_BUCKETS = 4
CONFUSIONS = 10
# As `training.beam_width` allows (profile_checks.py): a prefix beam search keeps this many
# prefixes a frame, and at 100,000 one sequence took minutes.
MAX_BEAM = 1000


def check_beam(beam: int) -> None:
    if not 1 <= beam <= MAX_BEAM:
        raise UserError(
            f"--beam {beam}: give 1 (greedy decoding) to {MAX_BEAM} (prefix beam search)"
        )


def device_option(name: str):
    """`--device` of eval and decode, checked against this machine before anything loads."""
    from signconsole.engine.setup import resolve_device

    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", name):
        raise UserError(f"--device {name!r}: give auto, cpu, cuda, cuda:N or mps")
    return resolve_device(name, "--device")


def check_output_file(option: str, path: str | None) -> None:
    """An output file's folder exists and the path is no folder: said before the evaluation
    runs, not after it."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{option} {path}: is a folder; give a file name")
    if not target.parent.is_dir():
        raise UserError(f"{option} {path}: folder {target.parent} does not exist")


@dataclass(frozen=True)
class EvalReport:
    checkpoint: str
    step: int
    data: str
    split: str
    decoder: str
    unit: str
    sequences: int
    error_rate: float
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int
    loss: float
    unknown_glosses: dict[str, int]
    confusions: list[tuple[str, str, int]]  # (reference, hypothesis, count); "" = del/ins
    by_length: list[dict]  # frames range, sequences, error rate
    sequences_per_second: float
    real_time_factor: float | None  # processing time / video time
    fps: float | None


def eval_command(
    run: str,
    data: str | None,
    split: str,
    beam: int,
    device_name: str,
    json_path: str | None,
    ctm_path: str | None,
    runs_dir: str = "runs",
    allow_untrained: bool = False,
) -> int:
    from signconsole.data.corpus import Corpus, CorpusError
    from signconsole.data.dataset import SequenceDataset
    from signconsole.data.prepare import corpus_directory
    from signconsole.engine.evaluate import evaluate_model

    check_beam(beam)
    check_output_file("--json", json_path)
    check_output_file("--ctm", ctm_path)
    device = device_option(device_name)
    trained = load_checked(run, runs_dir, device, allow_untrained)
    if trained.note:
        print(f"signconsole: note: {trained.note}", file=sys.stderr)
    profile = trained.profile
    # The unit follows the model: one trained on letters spells, whatever corpus it reads.
    unit = "letter" if profile.data.corpus == "fingerspell" else "gloss"
    root = Path(data) if data else corpus_directory(profile)[0]
    if data and not root.is_dir():
        raise UserError(
            f"--data {root}: no such directory; give a corpus in the Phoenix layout "
            "(annotations/manual/<split>.corpus.csv and the feature files)"
        )
    try:
        corpus = Corpus.open(root, (split,))
    except (CorpusError, FileNotFoundError) as error:
        raise UserError(str(error)) from None
    dataset = SequenceDataset(
        corpus,
        split,
        trained.vocabulary,
        profile.data.normalization,
        trained.stats,
        profile.data.coordinates,
        unknown_glosses="drop",
    )
    if not len(dataset):
        raise UserError(f"{root}: the {split} split has no sequences")
    decoder = "beam" if beam > 1 else "greedy"
    result = evaluate_model(
        trained.model,
        dataset,
        trained.vocabulary,
        device=device,
        batch_size=profile.data.batch_size,
        beam_width=beam,
        wer_normalization=profile.data.wer_normalization,
        decoder=decoder,
    )
    frames = {entry.id: dataset.length(i) for i, entry in enumerate(dataset.entries)}
    fps = _corpus_fps(dataset)
    video_seconds = sum(frames.values()) / fps if fps else None
    report = EvalReport(
        checkpoint=str(trained.checkpoint),
        step=trained.step,
        data=str(root),
        split=split,
        decoder=f"beam {beam}" if decoder == "beam" else "greedy",
        unit=unit,
        sequences=len(result.ids),
        error_rate=result.counts.rate,
        substitutions=result.counts.substitutions,
        deletions=result.counts.deletions,
        insertions=result.counts.insertions,
        reference_words=result.counts.reference_words,
        loss=result.loss,
        unknown_glosses=dict(dataset.unknown.most_common()),
        confusions=confusions(result.references, result.hypotheses),
        by_length=by_length(result.ids, result.references, result.hypotheses, frames),
        sequences_per_second=len(result.ids) / result.seconds,
        real_time_factor=result.seconds / video_seconds if video_seconds else None,
        fps=fps,
    )
    print_report(report)
    if json_path:
        Path(json_path).write_text(json.dumps(report.__dict__, indent=2) + "\n")
    if ctm_path:
        write_ctm(Path(ctm_path), result.ids, result.hypotheses, frames, fps or 25.0)
    if trained.run_dir is not None:
        _store(trained.run_dir, report)
    return 0


def load_checked(run: str, runs_dir: str, device, allow_untrained: bool):
    """The checkpoint `run` names, said out loud (which file, which run, which step), refused
    when it was never trained: scoring or decoding with random weights is never what was meant."""
    from signconsole.engine.inference import load_trained

    trained = load_trained(run_or_name(run, runs_dir), device)
    if trained.step == 0 and not allow_untrained:
        better = newest_trained(run, runs_dir)
        suggestion = f"; the newest trained run named {run!r} is {better}" if better else ""
        raise UserError(
            f"{trained.checkpoint}: step 0, the model was never trained{suggestion}; name a "
            "trained run (`signconsole runs` lists their steps) or pass --allow-untrained"
        )
    return trained


def checkpoint_words(checkpoint: Path | str, run_dir: Path | None, step: int) -> str:
    run = run_dir.name if run_dir is not None else "no run directory"
    return f"checkpoint {checkpoint} (run {run}, step {step})"


def newest_trained(text: str, runs_dir: str) -> Path | None:
    """The newest run `text` names whose checkpoint has training steps behind it."""
    from signconsole.models.pretrained import read_state, resolve_checkpoint
    from signconsole.store.reader import find_runs

    for path in reversed(find_runs(text, runs_dir)):
        try:
            if int(read_state(resolve_checkpoint(str(path))).get("step", 0)) > 0:
                return path
        except UserError:  # no checkpoint, or not one torch can read safely
            continue
    return None


def run_or_name(text: str, runs_dir: str) -> str:
    """A checkpoint or run path as given, else a run name in `runs_dir` (newest match)."""
    if Path(text).exists() or any(char in text for char in "*?["):
        return text
    from signconsole.store.reader import find_run

    return str(find_run(text, runs_dir))


def _corpus_fps(dataset) -> float | None:
    from signconsole.data.readers import read_sequence

    try:
        return read_sequence(dataset.paths[0]).fps
    except Exception:  # noqa: BLE001 - fps is a nicety for the real-time factor
        return None


def confusions(references, hypotheses) -> list[tuple[str, str, int]]:
    """The most frequent errors: (reference, hypothesis) substitutions, ("X", "") deletions and
    ("", "Y") insertions, counted over the split."""
    counter: Counter[tuple[str, str]] = Counter()
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        for token in align(reference, hypothesis):
            if token.kind != "equal":
                counter[(token.reference or "", token.hypothesis or "")] += 1
    return [(ref, hyp, count) for (ref, hyp), count in counter.most_common(CONFUSIONS)]


def by_length(ids, references, hypotheses, frames: dict[str, int]) -> list[dict]:
    """Error rate per input-length quartile (by frames): long sequences usually fail first."""
    order = sorted(range(len(ids)), key=lambda i: frames[ids[i]])
    size = max(1, -(-len(order) // LENGTH_BUCKETS))
    buckets = []
    for start in range(0, len(order), size):
        chunk = order[start : start + size]
        counts = error_counts([references[i] for i in chunk], [hypotheses[i] for i in chunk])
        lengths = [frames[ids[i]] for i in chunk]
        buckets.append(
            {
                "frames": f"{min(lengths)}-{max(lengths)}",
                "sequences": len(chunk),
                "median_frames": statistics.median(lengths),
                "error_rate": counts.rate,
            }
        )
    return buckets


def print_report(report: EvalReport) -> None:
    console = Console(highlight=False)
    name = "LER" if report.unit == "letter" else "WER"
    run_dir = Path(report.checkpoint).parent.parent
    run_dir = run_dir if (run_dir / "run.db").exists() else None
    console.print(
        f"{checkpoint_words(report.checkpoint, run_dir, report.step)} on {report.data} "
        f"\\[{report.split}], {report.sequences} sequences, {report.decoder} decoding",
        soft_wrap=True,
    )
    console.print(
        f"[bold]{name} {report.error_rate:.2%}[/]  (S {report.substitutions} D "
        f"{report.deletions} I {report.insertions} / {report.reference_words})  CTC loss "
        f"{report.loss:.4f}"
    )
    if report.error_rate > 1.0:
        console.print(
            f"[bold yellow]{name} above 100%: the hypotheses hold more errors than the references "
            f"have {plural(report.unit)} ({report.insertions} insertions). The model is undertrained or "
            "diverged, or the corpus does not match its vocabulary.[/]"
        )
    if report.unknown_glosses:
        unknown = sum(report.unknown_glosses.values())
        listed = ", ".join(f"{g} x{n}" for g, n in list(report.unknown_glosses.items())[:8])
        console.print(
            f"[yellow]{unknown} reference glosses are not in the model's vocabulary[/] (scored "
            f"as errors: the model cannot output them): {listed}"
        )
    if report.confusions:
        table = Table("reference", "hypothesis", "count", title="most frequent errors")
        for reference, hypothesis, count in report.confusions:
            table.add_row(reference or "(insertion)", hypothesis or "(deletion)", str(count))
        console.print(table)
    table = Table("frames", "sequences", name, title="error rate by sequence length")
    for bucket in report.by_length:
        table.add_row(bucket["frames"], str(bucket["sequences"]), f"{bucket['error_rate']:.2%}")
    console.print(table)
    rtf = (
        f", real-time factor {report.real_time_factor:.4f} at {report.fps:g} fps"
        if report.real_time_factor
        else ""
    )
    console.print(f"throughput: {report.sequences_per_second:.1f} sequences/s{rtf}")


def write_ctm(
    path: Path, ids: list[str], hypotheses: list[list[str]], frames: dict[str, int], fps: float
) -> None:
    """CTM as the Phoenix kit's sclite scoring reads it: `<id> 1 <start> <dur> <gloss>`, sorted by
    id. CTC gives no word timing worth the name, so each hypothesis spreads its glosses evenly
    over its sequence's duration; a sequence decoded to nothing gets the kit's [EMPTY] marker."""
    lines = []
    for sample_id, hypothesis in sorted(zip(ids, hypotheses, strict=True)):
        duration = frames[sample_id] / fps
        words = hypothesis or ["[EMPTY]"]
        step = duration / len(words)
        for index, word in enumerate(words):
            lines.append(f"{sample_id} 1 {index * step:.3f} {step:.3f} {word}")
    path.write_text("\n".join(lines) + "\n")


def _store(run_dir: Path, report: EvalReport) -> None:
    """The result goes into the run's store, for `show` and `compare`."""
    import sqlite3

    from signconsole.store.db import connect

    try:
        connection = connect(run_dir / "run.db")
        connection.execute(
            "INSERT INTO evaluations (time, checkpoint, step, data, split, decoder, unit, "
            "error_rate, substitutions, deletions, insertions, reference_words, sequences, "
            "report) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                time.time(),
                report.checkpoint,
                report.step,
                report.data,
                report.split,
                report.decoder,
                report.unit,
                report.error_rate,
                report.substitutions,
                report.deletions,
                report.insertions,
                report.reference_words,
                report.sequences,
                json.dumps(report.__dict__),
            ),
        )
        connection.commit()
        connection.close()
    except sqlite3.Error as error:
        Console(stderr=True).print(f"note: not stored in {run_dir / 'run.db'} ({error})")


def decode_command(
    run: str,
    files: list[str],
    beam: int,
    device_name: str,
    runs_dir: str = "runs",
    allow_untrained: bool = False,
) -> int:
    import torch

    from signconsole.ctc.decode import beam_decode, greedy_decode
    from signconsole.data.readers import FeatureFileError
    from signconsole.models.contract import forward

    check_beam(beam)
    trained = load_checked(run, runs_dir, device_option(device_name), allow_untrained)
    if trained.note:
        print(f"signconsole: note: {trained.note}", file=sys.stderr)
    console = Console(highlight=False)
    errors = Console(stderr=True, highlight=False)
    words = checkpoint_words(trained.checkpoint, trained.run_dir, trained.step)
    console.print(words, markup=False, soft_wrap=True)
    failed = 0
    for name in files:
        try:
            features, _ = trained.features(name)
        except FeatureFileError as error:  # the message names the file; the rest go on
            errors.print(f"signconsole: error: {error}", markup=False, soft_wrap=True)
            failed += 1
            continue
        with torch.no_grad():
            output = forward(
                trained.model, features[None].to(trained.device), torch.tensor([features.shape[0]])
            )
        log_probs = output.logits.float().log_softmax(-1)
        greedy = trained.vocabulary.decode(greedy_decode(log_probs, output.lengths)[0])
        best = trained.vocabulary.decode(beam_decode(log_probs, output.lengths, beam)[0])
        console.print(f"[bold]{name}[/] ({features.shape[0]} frames)")
        console.print(f"  greedy  {' '.join(greedy) or '(empty)'}")
        console.print(f"  beam {beam:<2} {' '.join(best) or '(empty)'}")
    return 1 if failed else 0

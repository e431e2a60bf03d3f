"""`signconsole extract INPUT --out DIR`: MediaPipe Holistic landmarks for every sequence.

Sequences run in worker processes (spawned: MediaPipe and OpenCV keep threads a fork would copy
half-alive), one sequence per task, with a Rich progress bar counting frames. A sequence that
fails is reported with its reason and the rest go on; the exit code says whether any failed.
Finished outputs are skipped on a rerun (unless --overwrite), and temporary files of a killed run
are cleaned up first. `extract-summary.json` in DIR lists every sequence.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from signconsole.errors import UserError
from signconsole.extract.sources import InputError, SequenceSource, find_sequences
from signconsole.extract.worker import PARTS, SequenceResult, extract_sequence

SHOWN_ROWS = 30  # per-sequence rows printed; the JSON summary has them all


def check_mediapipe() -> None:
    try:
        import cv2  # noqa: F401
        import mediapipe  # noqa: F401
    except ImportError as error:
        raise UserError(
            f"extract needs MediaPipe and OpenCV ({error.name} is missing): "
            'pip install -e ".[extract]" (mediapipe 0.10.21 ships the Holistic models)'
        ) from None


def extract_command(
    input_path: str, out: str, workers: int | None, output_format: str, overwrite: bool
) -> int:
    check_mediapipe()
    source_path, out_dir = Path(input_path), Path(out)
    try:
        sources, phoenix = find_sequences(source_path)
    except InputError as error:
        raise UserError(str(error)) from None
    workers = max(1, workers or os.cpu_count() or 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out_dir)
    if phoenix and out_dir.resolve() != source_path.resolve():
        # DIR becomes a corpus the loader opens as it is: annotations beside the features.
        target = out_dir / "annotations" / "manual"
        target.mkdir(parents=True, exist_ok=True)
        for annotation in (source_path / "annotations" / "manual").glob("*.csv"):
            shutil.copy2(annotation, target / annotation.name)
    console = Console(highlight=False)
    console.print(
        f"extract: {len(sources)} sequences from {source_path} -> {out_dir} "
        f"({output_format}, {workers} worker{'s' if workers > 1 else ''})"
    )
    started = time.perf_counter()
    results = _run(sources, out_dir, output_format, overwrite, workers, console)
    elapsed = time.perf_counter() - started
    _report(results, console, elapsed)
    summary = {
        "input": str(source_path),
        "format": output_format,
        "workers": workers,
        "seconds": elapsed,
        "sequences": [asdict(r) for r in results],
    }
    (out_dir / "extract-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if any(r.status == "failed" for r in results) else 0


def _remove_stale_temporaries(out_dir: Path) -> None:
    for stale in out_dir.rglob(".*.tmp"):
        stale.unlink(missing_ok=True)


def _run(
    sources: list[SequenceSource],
    out_dir: Path,
    output_format: str,
    overwrite: bool,
    workers: int,
    console: Console,
) -> list[SequenceResult]:
    results: list[SequenceResult] = []
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    frames_done, started = 0, time.perf_counter()
    with progress:
        task = progress.add_task("sequences", total=len(sources), rate="")

        def done(result: SequenceResult) -> None:
            nonlocal frames_done
            results.append(result)
            frames_done += result.frames if result.status == "done" else 0
            rate = frames_done / max(1e-9, time.perf_counter() - started)
            progress.update(task, advance=1, rate=f"{frames_done:,} frames, {rate:.1f} frames/s")
            if result.status == "failed":
                progress.console.print(f"[red]failed[/] {result.id}: {result.reason}")

        if workers == 1:
            for source in sources:
                done(extract_sequence(source, out_dir, output_format, overwrite))
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = {
                    pool.submit(extract_sequence, source, out_dir, output_format, overwrite): source
                    for source in sources
                }
                for future in as_completed(futures):
                    try:
                        done(future.result())
                    except Exception as error:  # noqa: BLE001 - a worker died (e.g. killed)
                        done(SequenceResult(futures[future].id, "failed", reason=repr(error)))
    order = {source.id: i for i, source in enumerate(sources)}
    return sorted(results, key=lambda r: order.get(r.id, 0))


def _report(results: list[SequenceResult], console: Console, elapsed: float) -> None:
    extracted = [r for r in results if r.status == "done"]
    table = Table("sequence", "status", "frames", "fps", *PARTS, "reason", title="extraction")
    shown = results if len(results) <= SHOWN_ROWS else [r for r in results if r.status == "failed"]
    for result in shown[:SHOWN_ROWS]:
        table.add_row(
            result.id,
            result.status,
            str(result.frames or ""),
            f"{result.fps:g}" if result.fps else "",
            *(f"{result.detected[p]:.0%}" if result.detected else "" for p in PARTS),
            result.reason,
        )
    frames = sum(r.frames for r in extracted)
    if frames:
        share = {p: sum(r.detected[p] * r.frames for r in extracted) / frames for p in PARTS}
        table.add_row(
            "all",
            f"{len(extracted)} done",
            f"{frames:,}",
            "",
            *(f"{share[p]:.0%}" for p in PARTS),
            "",
            style="bold",
        )
    if shown or frames:
        console.print(table)
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    compute = sum(r.seconds for r in extracted)
    console.print(
        f"{counts['done']} extracted, {counts['skipped']} already there (skipped), "
        f"{counts['failed']} failed in {elapsed:.1f} s"
        + (f"; {frames / compute:.1f} frames/s per worker" if compute else "")
    )

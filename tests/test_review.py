"""Reviewing runs: `show` on a recorded run (Pilot), attaching to a live headless run from a second
process, `compare` (best metrics, profile diff) and `export` read back by csv and TensorBoard."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
from conftest import PROFILE, SMALL
from test_headless import TIMEOUT, only_run, running, wait_until

from signconsole.cli import main
from signconsole.events import Stop
from signconsole.store.compare import flatten, profile_diff
from signconsole.store.reader import RunReader, find_run
from signconsole.tui.app import SignConsole
from signconsole.tui.panes import status_text


@pytest.fixture
def finished_run(small_profile, train):
    """A finished small run with two evaluations, a freeze at step 3 and a test score."""
    from signconsole.events import Freeze, StepLogged

    def freeze_at_3(event, engine) -> None:
        if isinstance(event, StepLogged) and event.step == 3:
            engine.bus.send(Freeze(stage="fusion"))

    return train(small_profile(), freeze_at_3).result.run_dir


async def test_show_reviews_a_recorded_run(finished_run: Path) -> None:
    app = SignConsole(review=finished_run)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        screen = app.screen
        view = screen.view
        assert view.state == "finished" and view.step == 12
        assert view.stages["fusion"].trainable is False  # replayed from the stored events
        assert (3, "fusion") in view.markers
        assert view.series["train/loss"].steps[-1] == 12
        assert view.latest_eval.step == 12 and view.latest_eval.samples
        assert view.test_eval is not None
        assert "FINISHED" in str(status_text(view))

        await pilot.press("comma")  # the older evaluation, with its own decodes
        await pilot.pause(0.2)
        assert screen.view.latest_eval.step == 6
        assert screen.view.eval_position == (0, 2)

        await pilot.press("left_square_bracket")  # zoom in: the newest half of the run
        await pilot.pause(0.2)
        steps = screen.view.series["train/loss"].steps
        assert steps[0] >= 6 and steps[-1] == 12
        await pilot.press("0")
        await pilot.pause(0.2)
        assert screen.view.series["train/loss"].steps[0] == 1

        await pilot.press("space")  # no controls on a finished run: nothing is queued
        await pilot.pause(0.2)
        with RunReader(finished_run) as reader:
            count = reader.connection.execute("SELECT count(*) FROM commands").fetchone()[0]
        assert count == 0
        await pilot.press("q")


def test_show_names_a_missing_run_in_one_line(tmp_path: Path, capsys) -> None:
    assert main(["show", "nope", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope: no run there" in err[0]


def test_find_run_by_name_picks_the_newest(tmp_path: Path) -> None:
    for name in ("20260101-000000-demo", "20260102-000000-demo", "20260103-000000-other"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.db").touch()
    assert find_run("demo", tmp_path).name == "20260102-000000-demo"
    assert find_run(str(tmp_path / "20260101-000000-demo")).name == "20260101-000000-demo"


@pytest.mark.slow
async def test_attach_pauses_and_resumes_a_headless_run(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    log = tmp_path / "run.log"
    args = [str(PROFILE), *(a for key in SMALL for a in ("--set", key))]
    args += ["--set", "training.max_steps=100000", "--set", "training.max_epochs=100000"]
    args += ["--set", "training.eval_every=0"]
    with running(args, runs_dir, log) as process:

        def run_dir() -> Path:  # the runs folder is made first, the run's folder later
            return only_run(runs_dir)

        def steps() -> int:
            if not (run_dir() / "run.db").exists():
                return 0  # the run directory is made first, its store a moment later
            with RunReader(run_dir()) as reader:
                return reader.last_step()

        wait_until(process, log, lambda: steps() >= 3)
        app = SignConsole(review=run_dir())
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.screen

            async def until(condition, what: str) -> None:
                deadline = time.monotonic() + TIMEOUT
                while not condition():
                    assert time.monotonic() < deadline, f"timed out waiting for {what}"
                    assert process.poll() is None, log.read_text()[-2000:]
                    await pilot.pause(0.1)

            assert screen.live
            await pilot.press("space")  # Pause, through the run's commands table
            await until(lambda: screen.view.state == "paused", "the run to pause")
            paused_at = steps()
            time.sleep(1.5)
            assert steps() == paused_at  # the headless engine really stopped stepping
            await until(lambda: "PAUSED" in str(status_text(screen.view)), "PAUSED on screen")

            # A second reviewer (another terminal) sees the same state.
            with RunReader(run_dir()) as other:
                assert other.summary().status == "paused"

            await pilot.press("space")  # Resume
            await until(lambda: steps() > paused_at + 2, "training to restart")
            await until(lambda: screen.view.state == "running", "RUNNING on screen")
            with RunReader(run_dir()) as reader:
                applied = reader.connection.execute(
                    "SELECT source, applied_step FROM commands ORDER BY id"
                ).fetchall()
                reader.send(Stop(reason="test done"))
            assert [row[0] for row in applied] == ["attach", "attach"]
            assert all(row[1] is not None for row in applied)
        assert process.wait(timeout=TIMEOUT) == 130  # stopped by a person: resumable (ExitCode)


def test_profile_diff_lists_only_keys_that_differ() -> None:
    a = {"name": "a", "model": {"hidden": 64, "dropout": 0.1}, "optimizer": {"stage_lr": {}}}
    b = {"name": "b", "model": {"hidden": 96, "dropout": 0.1}, "optimizer": {"stage_lr": {"x": 2}}}
    assert flatten(a) == {"name": "a", "model.hidden": 64, "model.dropout": 0.1}
    assert profile_diff([a, b]) == [
        ("model.hidden", [64, 96]),
        ("name", ["a", "b"]),
        ("optimizer.stage_lr.x", ["(unset)", 2]),
    ]
    assert profile_diff([a, a]) == []


def test_compare_prints_best_metrics_curves_and_the_diff(
    small_profile, train, capsys, monkeypatch
) -> None:
    first = train(small_profile()).result.run_dir
    second = train(small_profile("model.hidden=96")).result.run_dir
    monkeypatch.setenv("COLUMNS", "160")
    assert main(["compare", str(first), str(second)]) == 0
    out = capsys.readouterr().out
    assert "best metrics" in out and "test (best ckpt)" in out
    for title in ("train loss", "dev error rate", "grad norm (log)"):
        assert title in out
    assert "model.hidden" in out and " 64 " in out and " 96 " in out
    assert "model.dropout" not in out  # equal keys stay out of the diff
    with RunReader(first) as reader:
        best = reader.summary().best_error_rate
    assert f"{best:.2%}" in out


def test_export_csv_and_tensorboard_read_back(finished_run: Path, tmp_path: Path) -> None:
    assert main(["export", str(finished_run), "--out", str(tmp_path / "csv")]) == 0
    with (tmp_path / "csv" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    with RunReader(finished_run) as reader:
        loss = reader.connection.execute(
            "SELECT step, value FROM metrics WHERE name = 'train/loss' ORDER BY step"
        ).fetchall()
        evals = reader.evals()
    by_step = {int(row["step"]): row for row in rows}
    assert [(s, float(by_step[s]["train/loss"])) for s, _ in loss] == [tuple(r) for r in loss]
    with (tmp_path / "csv" / "evals.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(evals)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert (
        main(
            ["export", str(finished_run), "--format", "tensorboard", "--out", str(tmp_path / "tb")]
        )
        == 0
    )
    accumulator = EventAccumulator(str(tmp_path / "tb"))
    accumulator.Reload()
    scalars = accumulator.Scalars("train/loss")
    assert [(e.step, pytest.approx(e.value)) for e in scalars] == [tuple(r) for r in loss]
    assert "dev/substitutions" in accumulator.Tags()["scalars"]


def test_reader_refuses_a_directory_without_a_store(tmp_path: Path) -> None:
    from signconsole.store.reader import RunNotFound

    with pytest.raises(RunNotFound, match="no run.db"):
        RunReader(tmp_path)


async def test_picker_reviews_and_compares_marked_runs(small_profile, train, runs_dir, tmp_path):
    from signconsole.tui.compare_screen import CompareScreen
    from signconsole.tui.run_screen import RunScreen
    from signconsole.tui.source import StoreSource

    train(small_profile())
    train(small_profile("model.hidden=96"))
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    app = SignConsole(profiles_dir=profiles, runs_dir=str(runs_dir))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        await pilot.press("tab")  # from the (empty) profiles list to the runs
        assert app.focused.id == "runs"
        await pilot.press("v")
        await pilot.pause(0.3)
        assert isinstance(app.screen, RunScreen) and isinstance(app.screen.source, StoreSource)
        assert app.screen.view.step == 12
        await pilot.press("q")  # back to the picker, not out of the app
        await pilot.pause(0.2)
        picker = app.screen
        await pilot.press("m", "down", "m")
        assert len(picker.marked) == 2
        await pilot.press("c")
        await pilot.pause(0.5)
        assert isinstance(app.screen, CompareScreen)
        assert app.screen.runs == [Path(p) for p in picker.marked]
        screen_text = app.export_screenshot().replace("&#160;", " ")  # the screen, as SVG
        assert "best metrics" in screen_text and "test (best ckpt)" in screen_text
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert app.screen is picker


def test_export_to_a_file_path_is_one_line(finished_run: Path, tmp_path: Path, capsys) -> None:
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("keep me")
    assert main(["export", str(finished_run), "--out", str(not_a_folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{not_a_folder}: file exists" in err[0]
    assert not_a_folder.read_text() == "keep me"

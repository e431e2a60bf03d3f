"""A damaged run.db (truncated, random bytes, tables missing, malformed rows) costs that one run:
`runs` lists it as unreadable with the reason and the rest as usual; `show`, `compare` and
`export` say in one line what they cannot read. Never a traceback."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
from pathlib import Path

import pytest

from signconsole.cli import main
from signconsole.store.catalog import list_runs
from signconsole.store.db import RunDatabase

PROFILE = 'name = "x"\nkind = "student"\n'


def good_run(root: Path, name: str, started: float, best: float) -> Path:
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "profile.toml").write_text(PROFILE)
    db = RunDatabase(run / "run.db")
    db.set_meta(
        name=name,
        kind="student",
        status="finished",
        pid=os.getpid(),
        host=socket.gethostname(),
        started=started,
        finished=started + 60,
        unit="letter",
        last_step=20,
    )
    for step in range(1, 21):
        db.add_metrics(step, {"train/loss": 2.0 / step, "lr": 1e-3})
    db.execute(
        "INSERT INTO evals (step, epoch, split, loss, error_rate, substitutions, deletions, "
        "insertions, reference_words, unit, is_best, blank_only, time) "
        "VALUES (10, 0, 'dev', 1.0, ?, 1, 1, 1, 10, 'letter', 1, 0.0, ?)",
        (best, started + 30),
    )
    db.close()
    return run


def damaged_runs(root: Path) -> dict[str, Path]:
    """Each kind of damage, next to a good run whose run.db they start from."""
    template = good_run(root / "template", "template", 1.0, 0.5)
    runs = {}

    def copy(name: str) -> Path:
        run = root / name
        shutil.copytree(template, run)
        runs[name] = run
        return run / "run.db"

    database = copy("truncated")
    database.write_bytes(database.read_bytes()[:1500])
    copy("random-bytes").write_bytes(os.urandom(16384))
    copy("empty").write_bytes(b"")
    database = copy("no-evals-table")
    with sqlite3.connect(database) as connection:
        connection.execute("DROP TABLE evals")
    database = copy("directory")
    database.unlink()
    database.mkdir()
    shutil.rmtree(root / "template")
    return runs


def malformed_rows_run(root: Path) -> Path:
    """Readable SQLite whose rows are not what signconsole writes: must list, not crash."""
    run = good_run(root, "malformed-rows", 500.0, 0.3)
    with sqlite3.connect(run / "run.db") as connection:
        connection.execute("UPDATE meta SET value = 'not json' WHERE key = 'kind'")
        connection.execute("UPDATE meta SET value = '\"yesterday\"' WHERE key = 'started'")
        connection.execute("UPDATE meta SET value = '[1, 2]' WHERE key = 'last_step'")
        connection.execute("INSERT INTO evals (step, split, error_rate) VALUES ('x', 'dev', 'abc')")
        connection.execute("INSERT INTO metrics (step, name, value) VALUES ('y', 'lr', 'high')")
    return run


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    good_run(root, "20260101-000000-good", 1000.0, 0.25)
    good_run(root, "20260102-000000-better", 2000.0, 0.125)
    damaged_runs(root)
    malformed_rows_run(root)
    return root


DAMAGED = ("truncated", "random-bytes", "empty", "no-evals-table", "directory")


def test_list_runs_marks_each_damaged_run_and_lists_the_rest(runs_dir: Path) -> None:
    runs = {run.path.name: run for run in list_runs(runs_dir)}
    for name in DAMAGED:
        assert runs[name].status == "unreadable", name
        assert runs[name].problem.startswith("run.db: "), runs[name]
        assert not runs[name].resumable
    good = runs["20260101-000000-good"]
    assert (good.status, good.best_error_rate, good.steps) == ("finished", 0.25, 20)
    odd = runs["malformed-rows"]
    assert odd.status == "finished" and odd.best_error_rate == 0.3  # the text row is skipped
    assert odd.kind == "not json" and odd.started is None and odd.steps == 20


def test_runs_command_lists_everything_and_says_why(
    runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "--dir", str(runs_dir)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    for name in (*DAMAGED, "20260101-000000-good", "20260102-000000-better", "malformed-rows"):
        assert name in out, name
    reasons = [line for line in out.splitlines() if ": unreadable: run.db: " in line]
    assert sorted(line.split(":")[0] for line in reasons) == sorted(DAMAGED)
    assert "12.5%" in out and "25.0%" in out

    assert main(["runs", "--dir", str(runs_dir), "--status", "unreadable"]) == 0
    only = capsys.readouterr().out
    assert "truncated" in only and "20260101-000000-good" not in only


@pytest.mark.parametrize("name", DAMAGED)
def test_show_and_export_of_a_damaged_run_are_one_line(
    name: str, runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["show", name], ["export", name, "--format", "csv"]):
        assert main([*command, "--dir", str(runs_dir)]) == 2
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        if name != "directory":  # find_run: a run.db that is a folder is no run at all
            assert "cannot read this run" in lines[0] and name in lines[0]
    assert not (runs_dir / name / "export-csv").exists()


def test_export_of_malformed_rows_still_writes_what_is_there(
    runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "malformed-rows", "--dir", str(runs_dir)]) == 0
    metrics = (runs_dir / "malformed-rows" / "export-csv" / "metrics.csv").read_text()
    assert metrics.splitlines()[0] == "step,lr,train/loss" and len(metrics.splitlines()) == 22


def test_compare_leaves_out_the_damaged_run_and_compares_the_rest(
    runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["compare", "20260101-000000-good", "truncated", "20260102-000000-better"]
    assert main([*arguments, "--dir", str(runs_dir)]) == 0
    out, err = capsys.readouterr()
    assert "12.50%" in out and "25.00%" in out
    [warning] = err.strip().splitlines()
    assert "truncated" in warning and "left out of the comparison" in warning

    assert main(["compare", "20260101-000000-good", "random-bytes", "--dir", str(runs_dir)]) == 2
    err = capsys.readouterr().err
    assert "two or more readable runs; 1 left" in err and "Traceback" not in err


def test_review_commands_take_the_runs_directory_by_the_name_run_and_the_console_use(
    runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `signconsole run` and the console spell it --runs-dir; a user carries that over.
    assert main(["runs", "--dir", str(runs_dir)]) == 0
    by_dir = capsys.readouterr().out
    assert main(["runs", "--runs-dir", str(runs_dir)]) == 0
    assert capsys.readouterr().out == by_dir
    assert main(["export", "20260101-000000-good", "--runs-dir", str(runs_dir)]) == 0
    assert "20260101-000000-good" in capsys.readouterr().out


def odd_values_run(root: Path) -> Path:
    """Rows of the right types in the wrong shapes: an unknown status, a kind with markup,
    parameters that are a list, an event payload and alarm batch ids that are not JSON, and
    metric rows with a text step or value."""
    run = good_run(root, "odd-values", 3000.0, 0.2)
    with sqlite3.connect(run / "run.db") as connection:
        connection.execute("UPDATE meta SET value = '\"bogus\"' WHERE key = 'status'")
        connection.execute("UPDATE meta SET value = '\"[red]x[/]\"' WHERE key = 'kind'")
        connection.execute("INSERT INTO meta VALUES ('parameters', '[1, 2]')")
        connection.execute("INSERT INTO events VALUES (3, 3001.0, 'StateChanged', '{not json')")
        connection.execute(
            "INSERT INTO events VALUES (4, 3002.0, 'StateChanged', "
            '\'{"step": 4, "state": "paused"}\')'
        )
        connection.execute(
            "INSERT INTO alarms VALUES (5, 3003.0, 'error', 'nonfinite', 'm', 'h', 'lstm', '{bad')"
        )
        connection.execute("INSERT INTO metrics (step, name, value) VALUES ('x', 'lr', 0.1)")
        connection.execute("INSERT INTO metrics (step, name, value) VALUES (7, 'lr', 'high')")
    return run


def test_odd_values_in_readable_rows_are_shown_as_unknown_or_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from signconsole.store.reader import RunReader

    root = tmp_path / "runs"
    good_run(root, "20260101-000000-good", 1000.0, 0.25)
    run = odd_values_run(root)
    assert main(["runs", "--dir", str(root)]) == 0
    out, err = capsys.readouterr()
    assert "odd-values" in out and "unknown" in out and "[red]x[/]" in out and not err

    assert main(["compare", "20260101-000000-good", "odd-values", "--dir", str(root)]) == 0
    out, err = capsys.readouterr()
    assert "20.00%" in out and "Traceback" not in err

    with RunReader(run) as reader:
        [event] = reader.events_between(0, 10**9)  # the row that is not JSON is skipped
        assert event.state == "paused"
        [alarm] = reader.alarms_between(0, 10**9)
        assert alarm.kind == "nonfinite" and alarm.batch_ids == ()
        rows = reader.metric_rows(0, 10**9)
        assert all(isinstance(step, int) for step, _, _ in rows)
        assert [step for step, _, value in rows if value != value] == [7]  # NaN, not 'high'
        series = reader.series("lr")
        assert [step for step, _ in series] == list(range(1, 21))  # 'x' and 'high' left out


async def test_show_of_a_run_with_odd_rows_opens_its_review(tmp_path: Path) -> None:
    from signconsole.tui.app import SignConsole

    run = odd_values_run(tmp_path / "runs")
    app = SignConsole(review=run)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.3)
        view = app.screen.view
        assert view.series["train/loss"].steps[-1] == 20
        await pilot.press("q")

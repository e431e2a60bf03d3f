"""What a newcomer saw driving the console in tmux, one test per defect class: numbers cut at a
column's first width, an LR the engine rejects, a silent exit, a thin Events tab, an 80x24
screen that hid rows, help cut mid-word, keys offered that no longer work, a picker that went
stale, a paused status line that lied, charts that did not line up, decodes that did not say
what they scored. Scripted runs (tests/test_tui.py's ScriptedHost): no engine, no torch step."""

from __future__ import annotations

import dataclasses
import html
import io
import re
from pathlib import Path

from rich.console import Console
from test_tui import (
    ScriptedHost,
    finished_events,
    folded,
    recorded,
    scripted_events,
    wait_for,
)

from signconsole.events import (
    AlarmRaised,
    CheckpointSaved,
    CommandApplied,
    EvalFinished,
    RunFinished,
    RunStarted,
    SampleDecode,
    SetLearningRate,
    StateChanged,
    StepLogged,
    Stop,
)
from signconsole.tui.app import SignConsole
from signconsole.tui.chart import AXIS_WIDTH, Line, render_chart
from signconsole.tui.panes import DecodesPane, StagesPane, banner_text, shorten, status_text
from signconsole.tui.state import RunView, TimelineEntry

T0 = 1_700_000_000.0


def screen_text(app) -> str:
    """The screen as plain text rows (from the SVG screenshot Textual exports)."""
    svg = app.export_screenshot()
    rows: dict[int, list[tuple[float, str]]] = {}
    pattern = (
        r'<text [^>]*x="([\d.]+)" y="[\d.]+" textLength="[\d.]+" '
        r'clip-path="url\(#terminal-\d+-line-(\d+)\)">([^<]*)</text>'
    )
    for found in re.finditer(pattern, svg):
        text = html.unescape(found.group(3)).replace("\xa0", " ")
        rows.setdefault(int(found.group(2)), []).append((float(found.group(1)), text))
    lines = []
    for number in range(max(rows) + 1 if rows else 0):
        line = ""
        for x, text in sorted(rows.get(number, [])):
            line = line.ljust(round(x / 12.2)) + text
        lines.append(line.rstrip())
    return "\n".join(lines)


def started(**changes) -> RunStarted:
    return dataclasses.replace(scripted_events()[0], **changes)


def logged(step: int, norms: dict[str, float] | None = None, fps: float = 4300.0) -> StepLogged:
    return StepLogged(
        step,
        time=T0 + step,
        epoch=step // 38,
        loss=1.0,
        parts={"ctc": 1.0},
        lr=1.5e-3,
        grad_norm=1.0,
        stage_grad_norms=norms or {},
        frames_per_second=fps,
        logit_std=1.0,
    )


def dev_eval(step: int, rate: float, best: bool, split: str = "dev", samples=()) -> EvalFinished:
    return EvalFinished(
        step,
        time=T0 + step,
        epoch=1,
        split=split,
        loss=0.5,
        error_rate=rate,
        substitutions=1,
        deletions=2,
        insertions=0,
        reference_words=100,
        unit="letter",
        is_best=best,
        samples=samples,
    )


class StoppingHost(ScriptedHost):
    """An engine that takes its time to stop: a Stop leaves it running (done unset)."""

    def send(self, command) -> None:
        self.sent.append(command)


# ----------------------------------------------------------- 1. numbers keep their exponent


async def test_stage_norms_keep_their_exponent_when_the_rows_were_built_empty() -> None:
    # The rows are built at RunStarted, before any norm: the column was sized from "" and
    # later values were cut to "9.64" (0.0964). Live and review share one format and width.
    host = ScriptedHost([started()])
    app = SignConsole(host=host, bell=False)
    async with app.run_test(size=(120, 36)) as pilot:
        table = app.screen.query_one(StagesPane)
        await wait_for(pilot, lambda: table.row_count == 7, what="the stages table")
        norms = {"fusion": 0.728, "lstm": 0.0810, "blocks_3": 0.0964, "classifier": 123.0}
        host.events.append(logged(10, norms))
        await wait_for(pilot, lambda: "7.28e-01" in screen_text(app), what="the norms")
        shown = screen_text(app)
        for value in ("7.28e-01", "8.10e-02", "9.64e-02", "1.23e+02"):
            assert value in shown, shown
        host.send(Stop())


# ------------------------------------------------------------ 2. the LR dialog's own check


def test_the_dialogs_limits_are_the_engines() -> None:
    from signconsole.engine import inbox
    from signconsole.tui import dialogs

    assert dialogs.MAX_LEARNING_RATE == inbox.MAX_LEARNING_RATE
    assert dialogs.MAX_LR_FACTOR == inbox.MAX_LR_FACTOR
    assert dialogs.learning_rate_problem(50.0) and dialogs.learning_rate_problem(float("nan"))
    assert not dialogs.learning_rate_problem(3e-4) and not dialogs.learning_rate_problem(10.0)
    assert dialogs.lr_factor_problem(6.0, 2.0) and not dialogs.lr_factor_problem(1e-3, 2.0)


async def test_a_learning_rate_the_engine_would_reject_is_never_sent() -> None:
    host = ScriptedHost()
    app = SignConsole(host=host, bell=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.screen.view.lr is not None, what="the run's lr")
        await pilot.press("l")
        await wait_for(pilot, lambda: "AskLearningRate" in type(app.screen).__name__)
        await pilot.pause(0.1)
        shown = screen_text(app)
        assert "now 0.002" in shown and "(0, 10]" in shown  # the current LR and the range
        await pilot.press("5", "0", "enter")
        await pilot.pause(0.1)
        assert "AskLearningRate" in type(app.screen).__name__  # still asking
        assert "would reject" in screen_text(app) and host.sent == []
        await pilot.press("backspace", "backspace", "1", "e", "-", "3", "enter")
        await wait_for(pilot, lambda: host.sent, what="the accepted lr")
        assert host.sent == [SetLearningRate(value=1e-3, source="console")]
        messages = [n.message for n in app._notifications]
        assert not any("applied" in m for m in messages), messages
        # A refusal the dialog could not foresee is told, not left to the Events tab.
        host.events.append(
            CommandApplied(600, command="Freeze stage=lstm", detail="rejected: last stage")
        )
        await wait_for(
            pilot,
            lambda: any("rejected" in n.message for n in app._notifications),
            what="the rejection toast",
        )
        host.send(Stop())


# ------------------------------------------------------------------ 3. what quitting prints


def test_the_console_prints_the_end_of_run_lines_of_signconsole_run(tmp_path: Path) -> None:
    from signconsole.commands.run import Outcome, end_lines, print_run_end

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"")
    outcome = Outcome()
    for event in (
        started(run_dir=str(run_dir)),
        StateChanged(338, state="stopping", reason="console quit"),
        dev_eval(338, 0.0027, False, split="test"),
        RunFinished(338, status="stopped", best_error_rate=0.01, best_step=304,
                    best_checkpoint=str(run_dir / "checkpoints/best.pt"), epochs=9,
                    duration=60.0),
    ):  # fmt: skip
        outcome(event)
    buffer = io.StringIO()
    print_run_end(Console(file=buffer, width=200, highlight=False), outcome, "stopped")
    printed = buffer.getvalue()
    assert "test LER (best checkpoint): 0.27%" in printed
    for line in end_lines(outcome, "stopped"):  # the very lines `signconsole run` ends with
        assert line in printed
    assert "stopped (console quit) at step 338" in printed and "resume: " in printed


async def test_quitting_a_live_run_keeps_what_the_exit_prints() -> None:
    host = ScriptedHost([])
    app = SignConsole(host=host, bell=False)
    async with app.run_test(size=(80, 24)) as pilot:
        for event in (started(), StateChanged(0, state="running"), logged(10)):
            host.bus.publish(event)  # through the bus, as the engine publishes
        await wait_for(pilot, lambda: app.screen.view.state == "running")
        await pilot.press("q", "y")
        await wait_for(pilot, lambda: host.done.is_set(), what="the stop")
        host.bus.publish(RunFinished(10, status="stopped", best_error_rate=None, best_step=None,
                                     best_checkpoint="", epochs=1, duration=1.0))  # fmt: skip
        await pilot.pause(0.5)
    assert [(o.step, status) for o, status in app.trained_runs()] == [(10, "stopped")]


async def test_q_on_a_run_opened_from_the_picker_comes_back_to_it(tmp_path, monkeypatch) -> None:
    from signconsole.tui import picker as picker_module
    from signconsole.tui.picker import PickerScreen
    from signconsole.tui.run_screen import RunScreen
    from signconsole.tui.source import BusSource

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "good.toml").write_text('kind = "student"\n')
    app = SignConsole(profiles_dir=profiles, runs_dir=str(tmp_path / "runs"), bell=False)
    hosts: list[ScriptedHost] = []

    def start(choice) -> None:  # the app's start, with a recorded run instead of the engine
        hosts.append(ScriptedHost())
        app.push_screen(RunScreen(BusSource(hosts[-1])))

    app.start = start
    monkeypatch.setattr(picker_module, "PICKER_REFRESH", 0.1)
    reads: list[int] = []
    refresh = PickerScreen.refresh_runs
    monkeypatch.setattr(PickerScreen, "refresh_runs", lambda self: reads.append(1) or refresh(self))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.3)
        assert len(reads) > 1  # the picker follows the runs while it is shown
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run")
        await pilot.pause(0.5)
        covered = len(reads)
        await pilot.pause(0.6)  # six refreshes, were the picker's timer left running
        assert len(reads) == covered, "the picker re-read the runs under the run screen"
        await pilot.press("question_mark")
        await pilot.pause(0.2)
        assert app.screen.quit_text == "stop the run (asks), back to the picker"
        await pilot.press("escape", "q", "y")
        await wait_for(pilot, lambda: isinstance(app.screen, PickerScreen), what="the picker")
        assert hosts[0].done.is_set()  # stopped, not left behind


# -------------------------------------------------------------- 4. a timeline worth reading


def test_evaluations_best_checkpoints_test_and_resume_are_timeline_entries(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    events = [
        started(run_dir=str(run_dir)),
        dev_eval(76, 0.4305, True),
        CheckpointSaved(
            76, time=T0 + 76.5, path=str(run_dir / "checkpoints/best.pt"), which="best"
        ),
        CheckpointSaved(
            76, time=T0 + 76.5, path=str(run_dir / "checkpoints/last.pt"), which="last"
        ),
        dev_eval(152, 0.5, False),
        started(run_dir=str(run_dir), step=338, resumed_from=str(run_dir), time=T0 + 500),
        dataclasses.replace(dev_eval(400, 0.0027, False, split="test"), time=T0 + 600),
    ]
    expected = [
        "eval dev loss 0.5000  LER 43.05%  (S 1 D 2 I 0 / 100)  new best",
        "checkpoint best -> checkpoints/best.pt",
        "checkpoint last -> checkpoints/last.pt",
        "eval dev loss 0.5000  LER 50.00%  (S 1 D 2 I 0 / 100)",
        "resumed from step 338 (checkpoints/last.pt)",
        "eval test loss 0.5000  LER 0.27%  (S 1 D 2 I 0 / 100)  (best checkpoint)",
    ]
    assert [e.text for e in folded(events).timeline] == expected
    from signconsole.store.reader import RunReader
    from signconsole.tui.source import StoreSource

    recorded(run_dir, events)
    review = RunView()
    StoreSource(RunReader(run_dir)).read(review)
    assert [e.text for e in review.timeline] == expected  # the same in review


# ------------------------------------------------------------------------ 5. 80x24 fits


LONG_HINT = (
    "lower the learning rate 10x (- halves it live), keep grad_clip = 1.0, add warmup, and "
    "restart from a checkpoint before the climb if the loss does not come back down"
)


def test_the_banner_is_two_lines_and_says_where_the_whole_hint_is() -> None:
    entry = TimelineEntry(500, 0.0, "alarm", "error", "loss_explode: loss 2.4e4", LONG_HINT)
    lines = banner_text(entry, 77).plain.splitlines()
    assert len(lines) == 2 and all(len(line) <= 77 for line in lines)
    assert lines[1].endswith("2: whole hint") and "…" in lines[1]
    short = TimelineEntry(500, 0.0, "alarm", "warning", "grad_explode: 153", "lower the LR")
    assert banner_text(short, 77).plain.splitlines()[1].startswith("hint: lower the LR")
    assert shorten("gradient norm 153 > 100 (largest in lstm)", 20) == "gradient norm 153…"


async def test_at_80x24_the_events_tab_shows_rows_and_the_whole_hint() -> None:
    events = [
        *scripted_events(),
        AlarmRaised(600, time=T0 + 200, severity="error", kind="loss_explode",
                    message="loss 2.4e4 > 10x its best", hint=LONG_HINT),
    ]  # fmt: skip
    app = SignConsole(host=ScriptedHost(events), bell=False)
    async with app.run_test(size=(80, 24)) as pilot:
        banner = app.screen.query_one("#alarm")
        await wait_for(pilot, lambda: banner.display, what="the banner")
        await pilot.pause(0.3)
        assert banner.region.height == 2
        assert "2: whole hint" in screen_text(app)
        await pilot.press("2")
        await pilot.pause(0.3)
        shown = screen_text(app)
        rows = [line for line in shown.splitlines() if re.match(r" \d+ +[▲✖·] ", line)]
        assert len(rows) >= 3, shown
        detail = " ".join(str(app.screen.query_one("#detail").render()).split())
        assert LONG_HINT in detail  # the banner's alarm, written out whole
        app.host.send(Stop())


# ------------------------------------------------------------------- 6. help on a small screen


async def test_help_wraps_and_scrolls_at_60x20() -> None:
    from textual.containers import VerticalScroll

    app = SignConsole(host=ScriptedHost(), bell=False)
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause(0.5)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: "HelpScreen" in type(app.screen).__name__)
        await pilot.pause(0.2)
        assert "freeze / unfreeze the" in screen_text(app)  # wrapped, not cut at "the st"
        app.screen.query_one(VerticalScroll).scroll_end(animate=False)
        await pilot.pause(0.2)
        shown = " ".join(screen_text(app).replace("█", " ").split())
        assert "Commands apply at the next step." in shown
        assert "pick the stage f acts on" in shown
        app.host.send(Stop())


# ------------------------------------------------------- 7, 8, 13. only the keys that work


def footer_words(app) -> set[str]:
    from textual.widgets._footer import FooterKey

    return {key.description for key in app.screen.query(FooterKey)}


async def test_after_stop_only_the_keys_that_work_are_offered() -> None:
    host = StoppingHost()
    app = SignConsole(host=host, bell=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "pause" in footer_words(app), what="the footer")
        host.events.append(StateChanged(600, time=T0 + 300, state="paused"))
        await wait_for(pilot, lambda: "resume" in footer_words(app), what="space: resume")
        assert "pause" not in footer_words(app)
        await pilot.press("s", "y")
        await wait_for(pilot, lambda: "stop" not in footer_words(app), what="the footer")
        assert not {"pause", "resume", "freeze", "ckpt", "eval"} & footer_words(app)
        assert "f toggles" not in str(app.screen.query_one("#schedule").render())
        await pilot.press("question_mark")
        await pilot.pause(0.3)
        shown = screen_text(app)
        assert "stop the run" not in shown and "pause training" not in shown
        host.done.set()


async def test_a_review_has_no_live_only_hints(tmp_path: Path) -> None:
    run_dir = tmp_path / "20260101-000000-demo-student"
    run_dir.mkdir()
    recorded(run_dir, finished_events())
    app = SignConsole(review=run_dir, bell=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause(0.5)
        assert "frozen: fusion" in str(app.screen.query_one("#schedule").render())
        assert "f toggles" not in str(app.screen.query_one("#schedule").render())
        assert "freeze" not in footer_words(app)


# -------------------------------------------------------------------------------- 9. picker


async def test_the_picker_follows_runs_and_says_why_not(tmp_path: Path) -> None:
    from signconsole.tui.picker import PickerScreen

    runs = tmp_path / "runs"
    run_dir = runs / "20260101-000000-demo-student"
    run_dir.mkdir(parents=True)
    events = finished_events()
    recorded(run_dir, events[:-2])  # training: this process holds it (pid in run.db)
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"")
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "good.toml").write_text('kind = "student"\n')
    app = SignConsole(profiles_dir=profiles, runs_dir=str(runs), bell=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause(0.3)
        table = app.screen.query_one("#runs")
        key = str(run_dir)
        assert table.get_cell(key, "status") == "running"
        await pilot.press("tab")
        await pilot.pause(0.1)
        detail = str(app.screen.query_one("#detail").render())
        assert "being trained by" in detail  # the runs list's row, at once
        await pilot.press("enter")
        await pilot.pause(0.1)
        message = [n.message for n in app._notifications][-1]
        assert "being trained by" in message and "v follows it" in message
        recorded(run_dir, events[-2:])  # it finishes while the picker is open
        await wait_for(
            pilot, lambda: table.get_cell(key, "status") == "finished", timeout=10,
            what="the picker to notice",
        )  # fmt: skip
        await pilot.press("question_mark")
        await pilot.pause(0.2)
        assert "HelpScreen" in type(app.screen).__name__
        assert "review or follow the run" in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, PickerScreen)


async def test_a_picker_without_profiles_says_where_it_looked(tmp_path: Path) -> None:
    app = SignConsole(profiles_dir=Path("profiles"), runs_dir=str(tmp_path / "runs"))
    app.profiles_dir = tmp_path / "nothing-here"
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause(0.3)
        shown = " ".join(screen_text(app).split())
        assert "no profiles in" in shown and "pass --profiles DIR or a profile file" in shown


# -------------------------------------------------------------- 10, 13. the status line


def test_a_paused_run_shows_the_engines_step_and_no_stale_rate() -> None:
    view = folded([started(), StateChanged(0, state="running"), logged(130)])
    view.apply(StateChanged(137, state="paused", reason="paused by user"))
    line = str(status_text(view, 120))
    assert "step 137/" in line and "paused" in line and "fr/s" not in line
    view.apply(StateChanged(137, time=T0 + 900, state="running", reason="resumed by user"))
    view.apply(logged(140, fps=4100.0))  # the engine leaves the pause out of its window
    assert "4,100 fr/s" in str(status_text(view, 120))
    view.apply(logged(150, fps=4200.0))
    assert "4,200 fr/s" in str(status_text(view, 120))


def test_epochs_count_from_one_out_of_the_planned_ones() -> None:
    view = folded([started(profile_toml="[training]\nmax_epochs = 14\n")])
    view.apply(StateChanged(0, state="running"))
    view.apply(dataclasses.replace(logged(532), epoch=13))
    assert "ep 14/14 ·" in str(status_text(view, 120))


async def test_before_the_profile_loads_the_status_names_it_and_the_resume_step(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    recorded(run_dir, [e for e in scripted_events() if e.step <= 300])
    host = ScriptedHost([])
    host.resume = str(run_dir)
    app = SignConsole(host=host, bell=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause(0.5)
        line = screen_text(app).splitlines()[0]
        assert "demo-student" in line and "STARTING" in line and "step 300/" not in line
        assert "step 300" in line and "ep 0" not in line
        host.send(Stop())


# ------------------------------------------------------------------------------ 11. charts


def test_log_ticks_say_the_value_they_mark() -> None:
    line = Line("lr", [1, 50, 100], [1.5e-3, 1.5e-3, 1e-4], "green")
    rows = render_chart([line], width=30, height=6, log_y=True).plain.splitlines()
    assert rows[0][: AXIS_WIDTH - 1].strip() == "1.5e-3"


def test_charts_side_by_side_share_the_runs_step_range() -> None:
    loss = Line("loss", list(range(1, 221)), [1.0] * 220, "cyan")
    error = Line("dev", [76, 152], [0.4, 0.3], "magenta")
    shared = (1, 220)
    axes = [
        render_chart([chart], 40, 6, x_range=shared).plain.splitlines()[-1].split()
        for chart in (loss, error)
    ]
    assert axes[0] == axes[1] == ["1", "220"]
    view = folded([started(), logged(10), logged(220), dev_eval(76, 0.4, True)])
    assert view.step_range() == (10, 220)


# ----------------------------------------------------------------------------- 12. decodes


def test_decodes_say_which_decoder_is_scored_and_show_empty_hypotheses() -> None:
    samples = tuple(
        SampleDecode(f"ase-dev-{n:06d}", ("O", "P", "E", "N"), (), ("O", "P", "E"), 0.25)
        for n in (10, 20, 0)
    )
    view = folded([started(), dev_eval(76, 0.25, True, samples=samples)])
    text = DecodesPane(view).decodes_text().plain
    assert "(beam search)" in text.splitlines()[0]
    assert "ase-dev-000020  beam LER 25%" in text
    assert "greedy (empty)" in text and "-K" not in text
    ids = re.findall(r"ase-dev-\d+", text)
    assert ids == sorted(ids) == ["ase-dev-000000", "ase-dev-000010", "ase-dev-000020"]


async def test_grad_chart_names_what_it_leaves_out() -> None:
    app = SignConsole(host=ScriptedHost(), bell=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.8)
        app.screen.refresh_panes(force_charts=True)
        await pilot.pause(0.2)
        title = app.screen.query_one("#chart-grad").border_title
        assert re.search(r"\d+ more: g", title), title  # 80 columns: the short form
        assert (
            len(re.sub(r"\[[^]]*\]", "", title))
            <= app.screen.query_one("#chart-grad").size.width - 4
        )
        app.host.send(Stop())


def test_pause_is_named_resume_while_paused_in_the_palette_too() -> None:
    # The palette's single entry sends whichever applies (keys: space pause / space resume).
    from signconsole.tui.controls import BINDINGS

    spaces = [b for b in BINDINGS if b.key == "space"]
    assert [b.description for b in spaces] == ["pause", "resume"]

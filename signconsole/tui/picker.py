"""The start screen: profiles to train and recent runs to resume."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Label, Static

from signconsole.store.catalog import RunSummary, list_runs


@dataclass(frozen=True)
class ProfileRow:
    path: Path
    name: str
    kind: str
    model: str
    data: str
    problem: str  # "" when the profile validates


def scan_profiles(folder: Path) -> list[ProfileRow]:
    from signconsole.profile import ProfileError, load_profile, resolve_path

    rows = []
    for path in sorted(folder.glob("*.toml")):
        try:
            profile = load_profile(path)
            corpus = profile.data.corpus
            problem = ""
            if corpus != "fingerspell" and not resolve_path(profile, corpus).is_dir():
                problem = f"{path}: data.corpus {corpus!r} not found; edit the path in the profile"
            rows.append(
                ProfileRow(
                    path, profile.name, profile.kind, profile.model.architecture, corpus, problem
                )
            )
        except ProfileError as error:
            rows.append(ProfileRow(path, path.stem, "?", "?", "?", str(error.problems[0])))
    return rows


@dataclass(frozen=True)
class Choice:
    profile: Path
    resume: Path | None = None


def shown_folder(folder: Path) -> str:
    """A folder as a person typed it: ./profiles for a relative one, whole if absolute."""
    return str(folder) if folder.is_absolute() else f"./{folder}"


PICKER_REFRESH = 3.0  # seconds between re-reads of the runs list (a headless run moves on)


def cannot_resume(run: RunSummary) -> str:
    """Why Enter does not resume `run`, in words that say what to do instead."""
    if run.live:
        from signconsole.store.lock import read_holder

        holder = read_holder(run.path)
        who = holder.describe() if holder is not None else "another process"
        return f"{run.path.name} is being trained by {who}: v follows it (watch and control)"
    return f"{run.path.name}: cannot resume: {run.why_not_resumable}"


class PickerScreen(Screen):
    BINDINGS = [
        Binding("enter", "choose", "start / resume", id="choose", show=True),
        Binding("tab", "app.focus_next", "switch list", show=True),
        Binding("v", "review", "review run", id="review", tooltip="review or follow the run"),
        Binding("m", "mark", "mark run", id="mark", tooltip="mark the run for comparison"),
        Binding("c", "compare", "compare marked", id="compare", tooltip="compare the marked runs"),
        Binding("q", "app.quit", "quit", id="quit", tooltip="quit the console"),
        Binding("question_mark", "help", "help", id="help", tooltip="this help"),
    ]

    def __init__(
        self, profiles_dir: Path, runs_dir: Path, open_run: Callable[[Choice], None]
    ) -> None:
        """`open_run`: starts the chosen profile or resumes the chosen run on a screen pushed
        over this one, so leaving that run comes back here."""
        super().__init__()
        self.profiles_dir, self.runs_dir, self.open_run = profiles_dir, runs_dir, open_run
        self.profiles: dict[str, ProfileRow] = {}
        self.runs: dict[str, RunSummary] = {}
        self.marked: list[str] = []  # run paths marked for comparison, in marking order
        self._refresher: Timer | None = None  # re-reads the runs while the picker is shown

    def compose(self) -> ComposeResult:
        yield Static(
            Text(" signconsole ", style="bold reverse")
            + Text(
                f"  pick a profile to train, or a run to resume   profiles: {self.profiles_dir}",
                style="dim",
            ),
            id="status",
        )
        yield Label("Profiles", classes="section")
        yield DataTable(id="profiles", cursor_type="row")
        no_profiles = Static(id="no-profiles")
        no_profiles.display = False
        yield no_profiles
        yield Label(f"Recent runs in {self.runs_dir}", classes="section")
        yield DataTable(id="runs", cursor_type="row")
        yield Static(id="detail", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#profiles", DataTable)
        table.add_columns("", "profile", "kind", "model", "data")
        for row in scan_profiles(self.profiles_dir):
            mark = Text("✓", style="green") if not row.problem else Text("✗", style="bold red")
            table.add_row(mark, row.name, row.kind, row.model, row.data, key=str(row.path))
            self.profiles[str(row.path)] = row
        if not self.profiles:  # an empty table says nothing: say where it looked
            table.display = False
            message = self.query_one("#no-profiles", Static)
            message.display = True
            message.update(
                Text(
                    f"no profiles in {shown_folder(self.profiles_dir)}; pass --profiles DIR "
                    "or a profile file",
                    style="yellow",
                )
            )
        runs = self.query_one("#runs", DataTable)
        runs.add_column("", key="mark")
        for column in ("run", "kind", "status", "best", "steps", "started"):
            runs.add_column(column, key=column)
        self.refresh_runs()
        (table if self.profiles else runs).focus()
        self._show_detail()
        self._refresher = self.set_interval(PICKER_REFRESH, self.refresh_runs)

    def on_screen_suspend(self) -> None:
        # Under a run screen the picker is not seen: re-reading every run's store there would
        # take the UI thread (and the GIL) from the training every few seconds.
        if self._refresher is not None:
            self._refresher.pause()

    def on_screen_resume(self) -> None:
        if self._refresher is None:  # the first showing: on_mount reads the runs
            return
        self.refresh_runs()  # back from a run or a review: it may have ended since
        self._refresher.resume()

    # -------------------------------------------------------------------------- runs list
    def refresh_runs(self) -> None:
        """Re-read the runs: a headless run's status, best and steps move on while the picker
        is open. Cells are updated in place (the cursor stays); new runs rebuild the list."""
        table = self.query_one("#runs", DataTable)
        runs = list_runs(self.runs_dir)[:30]
        keys = [str(run.path) for run in runs]
        if keys != list(self.runs):
            selected = self._selected()
            table.clear()
            for run in runs:
                table.add_row(*self._run_cells(run), key=str(run.path))
            if selected and selected[0] == "runs" and selected[1] in keys:
                table.move_cursor(row=keys.index(selected[1]), animate=False)
        else:
            for run in runs:
                if run != self.runs[str(run.path)]:
                    for column, value in zip(table.columns, self._run_cells(run), strict=True):
                        table.update_cell(str(run.path), column, value, update_width=True)
        self.runs = dict(zip(keys, runs, strict=True))
        self._show_detail()

    def _run_cells(self, run: RunSummary) -> list:
        best = "-" if run.best_error_rate is None else f"{run.best_error_rate:.1%}"
        started = time.strftime("%m-%d %H:%M", time.localtime(run.started)) if run.started else ""
        mark = Text("●", style="bold cyan") if str(run.path) in self.marked else ""
        return [mark, run.path.name, run.kind, run.status, best, str(run.steps), started]

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self._show_detail()

    def on_descendant_focus(self) -> None:
        self._show_detail()  # tab to the other list: its row, not the previous list's

    def _selected(self) -> tuple[str, str] | None:
        table = self.focused if isinstance(self.focused, DataTable) else None
        if table is None or not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return (table.id or "", str(key))

    def _show_detail(self) -> None:
        selected = self._selected()
        detail = self.query_one("#detail", Static)
        if selected is None:
            detail.update("")
            return
        table, key = selected
        if table == "profiles":
            row = self.profiles[key]
            detail.update(
                Text(row.problem, style="red")
                if row.problem
                else Text(f"{row.path}: enter starts a {row.kind} run", style="dim")
            )
            return
        run = self.runs.get(key)
        if run is None:
            detail.update("")
            return
        how = "enter resumes it from its last checkpoint" if run.resumable else cannot_resume(run)
        detail.update(
            Text(
                f"{run.path} ({run.status}): {how}; v reviews it, m marks it, c compares "
                f"the marked runs ({len(self.marked)} marked)",
                style="dim",
            )
        )

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_choose()

    def action_choose(self) -> None:
        selected = self._selected()
        if selected is None:
            return
        table, key = selected
        if table == "profiles":
            row = self.profiles[key]
            if row.problem:
                self.notify(row.problem, title="profile has problems", severity="error", timeout=10)
                return
            self.open_run(Choice(row.path))
            return
        run = self.runs[key]
        if not run.resumable:
            self.notify(cannot_resume(run), severity="warning", timeout=8)
            return
        self.open_run(Choice(run.path / "profile.toml", resume=run.path))

    def action_help(self) -> None:
        from signconsole.tui.dialogs import HelpScreen

        notes = [
            "A run started or resumed here, or reviewed with v: q on it comes back here.",
            "The runs list is re-read every few seconds.",
        ]
        self.app.push_screen(HelpScreen(self.BINDINGS, "quit the console", notes=notes))

    # ------------------------------------------------------------------ review and compare
    def _highlighted_run(self) -> RunSummary | None:
        selected = self._selected()
        if selected is None or selected[0] != "runs":
            self.notify(
                "pick a run in the runs list first (tab switches lists)", severity="warning"
            )
            return None
        return self.runs[selected[1]]

    def action_review(self) -> None:
        run = self._highlighted_run()
        if run is None:
            return
        from signconsole.tui.app import review_screen

        self.app.push_screen(review_screen(run.path))

    def action_mark(self) -> None:
        run = self._highlighted_run()
        if run is None:
            return
        key = str(run.path)
        if key in self.marked:
            self.marked.remove(key)
        else:
            self.marked.append(key)
        table = self.query_one("#runs", DataTable)
        table.update_cell(key, "mark", Text("●", style="bold cyan") if key in self.marked else "")
        self._show_detail()

    def action_compare(self) -> None:
        if len(self.marked) < 2:
            self.notify("mark two or more runs with m, then c compares them", severity="warning")
            return
        from signconsole.tui.compare_screen import CompareScreen

        self.app.push_screen(CompareScreen([Path(p) for p in self.marked]))

"""The start screen: profiles to train and recent runs to resume."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
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


class PickerScreen(Screen[Choice]):
    BINDINGS = [
        Binding("enter", "choose", "start / resume", id="choose", show=True),
        Binding("tab", "app.focus_next", "switch list", show=True),
        Binding("v", "review", "review run", id="review"),
        Binding("m", "mark", "mark run", id="mark"),
        Binding("c", "compare", "compare marked", id="compare"),
        Binding("q", "app.quit", "quit", id="quit"),
    ]

    def __init__(self, profiles_dir: Path, runs_dir: Path) -> None:
        super().__init__()
        self.profiles_dir, self.runs_dir = profiles_dir, runs_dir
        self.profiles: dict[str, ProfileRow] = {}
        self.runs: dict[str, RunSummary] = {}
        self.marked: list[str] = []  # run paths marked for comparison, in marking order

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
        runs = self.query_one("#runs", DataTable)
        runs.add_column("", key="mark")
        runs.add_columns("run", "kind", "status", "best", "steps", "started")
        for run in list_runs(self.runs_dir)[:30]:
            best = "-" if run.best_error_rate is None else f"{run.best_error_rate:.1%}"
            started = (
                time.strftime("%m-%d %H:%M", time.localtime(run.started)) if run.started else ""
            )
            runs.add_row(
                "",
                run.path.name,
                run.kind,
                run.status,
                best,
                str(run.steps),
                started,
                key=str(run.path),
            )
            self.runs[str(run.path)] = run
        table.focus()
        self._show_detail()

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self._show_detail()

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
        else:
            run = self.runs[key]
            how = (
                "enter resumes it from its last checkpoint"
                if run.resumable
                else (
                    "still running elsewhere"
                    if run.status == "running"
                    else "no checkpoint to resume"
                )
            )
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
            self.dismiss(Choice(row.path))
            return
        run = self.runs[key]
        if not run.resumable:
            self.notify(
                f"{run.path.name}: cannot resume ({run.status}, no last checkpoint)",
                severity="warning",
            )
            return
        self.dismiss(Choice(run.path / "profile.toml", resume=run.path))

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

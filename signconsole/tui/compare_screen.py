"""Runs side by side in the console: what `signconsole compare` prints, scrollable."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from signconsole.tui.comparison import comparison_renderables


class CompareScreen(Screen):
    BINDINGS = [Binding("escape,q", "app.pop_screen", "back", id="back")]

    def __init__(self, runs: list[Path]) -> None:
        super().__init__()
        self.runs = runs

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="comparison"):
            yield Static(id="comparison-body")
        yield Footer()

    def on_mount(self) -> None:
        from rich.console import Group

        width = max(40, self.size.width - 6)
        body = Group(*comparison_renderables(self.runs, width))
        self.query_one("#comparison-body", Static).update(body)
        self.query_one("#comparison", VerticalScroll).focus()

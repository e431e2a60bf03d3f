"""Small modal dialogs: yes/no confirmation and a learning-rate input."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label


class Confirm(ModalScreen[bool]):
    BINDINGS = [("y", "answer(True)", "yes"), ("n,escape", "answer(False)", "no")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question)
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class AskLearningRate(ModalScreen[float | None]):
    BINDINGS = [("escape", "cancel", "cancel")]

    def __init__(self, current: float | None) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            now = f" (now {self.current:.3g})" if self.current else ""
            yield Label(f"Learning rate for the next step{now}:")
            yield Input(placeholder="e.g. 3e-4", id="lr")
            yield Label("", id="lr-error", classes="error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            value = float(event.value)
        except ValueError:
            value = -1.0
        if not value > 0 or value != value or value == float("inf"):
            self.query_one("#lr-error", Label).update(f"not a positive number: {event.value!r}")
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


KEY_NAMES = {
    "space": "space",
    "minus": "-",
    "plus": "+",
    "equals_sign": "=",
    "question_mark": "?",
    "left_square_bracket": "[",
    "right_square_bracket": "]",
    "less_than_sign": "<",
    "greater_than_sign": ">",
    "comma": ",",
    "full_stop": ".",
}


class HelpScreen(ModalScreen[None]):
    """Every key of the run screen, whether or not the footer had room for it."""

    BINDINGS = [("escape,question_mark,q", "close", "close")]

    def __init__(self, bindings: list, owns_run: bool, controls_hidden: bool = False) -> None:
        """`controls_hidden`: the run cannot be controlled now (finished, or not started), so
        its training keys are left out rather than listed as if they worked."""
        super().__init__()
        self.bindings, self.owns_run, self.controls_hidden = bindings, owns_run, controls_hidden

    def compose(self) -> ComposeResult:
        rows = []
        for binding in self.bindings:
            keys = " ".join(KEY_NAMES.get(k, k) for k in binding.key.split(","))
            description = binding.tooltip or binding.description
            if binding.action == "quit_run" and not self.owns_run:
                description = "leave (the run goes on)"
            rows.append(f"{keys:>5} {description}"[:36])
        half = -(-len(rows) // 2)  # two columns: every key fits on an 80x24 terminal
        left, right = rows[:half], rows[half:]
        lines = [f"{a:<37}{b}".rstrip() for a, b in zip(left, [*right, ""], strict=False)]
        with Vertical(classes="dialog help"):
            yield Label("keys (escape closes)", classes="section")
            yield Label("\n".join(lines), markup=False)
            yield Label(
                "training keys (pause, freeze, LR, stop...) work while a run is live"
                if self.controls_hidden
                else "ctrl+p: the command palette. Commands apply at the next step.",
                classes="hint",
            )

    def action_close(self) -> None:
        self.dismiss(None)

"""Small modal dialogs: yes/no confirmation, a learning-rate input and the help."""

from __future__ import annotations

import math

from rich.table import Table
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


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


# The engine's own limits (signconsole/engine/inbox.py: MAX_LEARNING_RATE, MAX_LR_FACTOR and
# check_command), mirrored here because that module imports torch and the console's UI must
# not: a value the engine would reject is refused in the dialog, before it is sent.
# tests/test_console_fixes.py checks that the two stay equal.
MAX_LEARNING_RATE = 10.0
MAX_LR_FACTOR = 1000.0


def learning_rate_problem(value: float) -> str:
    """Why the engine would reject `value` as an exact learning rate ("" when it would not)."""
    if not (math.isfinite(value) and 0 < value <= MAX_LEARNING_RATE):
        return f"{value:g} is outside (0, {MAX_LEARNING_RATE:g}]: the engine would reject it"
    return ""


def lr_factor_problem(current: float | None, factor: float) -> str:
    """Why the engine would reject multiplying `current` by `factor` ("" when it would not)."""
    if not (math.isfinite(factor) and 0 < factor <= MAX_LR_FACTOR):
        return f"factor {factor:g} is outside (0, {MAX_LR_FACTOR:g}]"
    if current is not None and current * factor > MAX_LEARNING_RATE:
        return (
            f"lr {current:.3g} x{factor:g} = {current * factor:.3g} is above "
            f"{MAX_LEARNING_RATE:g}, the most the engine accepts"
        )
    return ""


class AskLearningRate(ModalScreen[float | None]):
    BINDINGS = [("escape", "cancel", "cancel")]

    def __init__(self, current: float | None) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            now = f"now {self.current:.3g}" if self.current else "not known yet"
            yield Label(f"Learning rate for the next step ({now}):")
            yield Label(f"a number in (0, {MAX_LEARNING_RATE:g}], e.g. 3e-4", classes="hint")
            yield Input(placeholder="e.g. 3e-4", id="lr")
            yield Label("", id="lr-error", classes="error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            value = float(event.value)
        except ValueError:
            self.query_one("#lr-error", Label).update(f"not a number: {event.value!r}")
            return
        problem = learning_rate_problem(value)
        if problem:
            self.query_one("#lr-error", Label).update(problem)
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
    """Every key that works on the run screen now, whether or not the footer had room for it.
    Two columns; descriptions wrap at their column's width and the whole scrolls, so a small
    terminal cuts nothing (at 80x24 it all fits without scrolling)."""

    BINDINGS = [("escape,question_mark,q", "close", "close")]

    def __init__(self, bindings: list, quit_text: str, notes: list[str] = ()) -> None:
        """`bindings`: the keys that work now (a run's training keys are left out while it
        cannot be controlled, rather than listed as if they worked). `quit_text`: what q does
        on this screen. `notes`: lines under the keys."""
        super().__init__()
        self.bindings, self.quit_text, self.notes = bindings, quit_text, list(notes)

    def key_table(self) -> Table:
        rows = []
        for binding in self.bindings:
            keys = " ".join(KEY_NAMES.get(k, k) for k in binding.key.split(","))
            description = binding.tooltip or binding.description
            if binding.action == "quit_run":
                description = self.quit_text
            rows.append((keys, description))
        half = -(-len(rows) // 2)
        table = Table.grid(padding=(0, 1), expand=True)
        for _ in range(2):
            table.add_column(justify="right", style="bold", no_wrap=True)
            table.add_column(ratio=1, overflow="fold")
        for left, right in zip(rows[:half], [*rows[half:], ("", "")], strict=False):
            table.add_row(*left, *right)
        return table

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Label("keys (escape closes; arrows scroll)", classes="section")
            yield Static(self.key_table())
            yield Static("\n".join(self.notes), classes="help-notes")

    def action_close(self) -> None:
        self.dismiss(None)

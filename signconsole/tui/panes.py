"""The run screen's panes. Each reads the RunView and redraws only when its change counter moved."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import DataTable, Static

from signconsole.ctc.wer import align
from signconsole.metrics import format_duration
from signconsole.tui.state import RunView, TimelineEntry

STATE_STYLES = {
    "starting": "bold cyan",
    "running": "bold green",
    "paused": "bold yellow",
    "stopping": "bold yellow",
    "finished": "bold blue",
    "failed": "bold red",
}
SPARK = "▁▂▃▄▅▆▇█"


def status_text(view: RunView, width: int = 120) -> Text:
    """Profile, kind, device, state, progress, speed, ETA, best error and lr, dropping the least
    important parts first when the terminal is narrow."""
    total = f"/{view.total_steps}" if view.total_steps else ""
    eta = view.eta_seconds()
    parts: list[tuple[int, str, str]] = [  # (priority: lower survives longer, text, style)
        (0, f" {view.name or '...'} ", "bold reverse"),
        (3, f" {view.kind} · {view.device} ", "dim"),
        (0, f" {view.state.upper()} ", STATE_STYLES.get(view.state, "bold")),
        (2, f" ep {view.epoch} ·", ""),
        (0, f" step {view.step}{total}", ""),
    ]
    if view.frames_per_second:
        parts.append((2, f" · {view.frames_per_second:,.0f} fr/s", ""))
    if view.teacher_ms:
        parts.append((3, f" · teacher {view.teacher_ms:.0f} ms/batch", "dim"))
    if eta is not None:
        parts.append((1, f" · ETA {format_duration(eta)}", ""))
    if view.best_error_rate is not None:
        parts.append((0, f" · best {view.rate_name} {view.best_error_rate:.1%}", "bold"))
        parts.append((2, f"@{view.best_step}", "dim"))
    if view.lr is not None:
        parts.append((1, f" · lr {view.lr:.1e}", "dim"))
    if view.pending:
        parts.append((0, f" · {view.pending}", "italic yellow"))
    if view.alarm is not None:  # until acknowledged (a): the one thing that must not be missed
        icon, style = SEVERITY.get(view.alarm.severity, ("▲", "yellow"))
        kind = view.alarm.text.split(":", 1)[0]
        parts.insert(3, (0, f" {icon} {kind} (a) ", f"reverse {style}"))
    for dropped in (4, 3, 2, 1):
        kept = [p for p in parts if p[0] < dropped]
        if sum(len(t) for _, t, _ in kept) <= width:
            break
    text = Text(no_wrap=True, overflow="ellipsis")
    for _, part, style in kept:
        text.append(part, style=style)
    return text


def sparkline(values, width: int = 16) -> str:
    import math

    points = [v for v in list(values)[-width:] if v and math.isfinite(v) and v > 0]
    if not points:
        return ""
    logs = [math.log10(v) for v in points]
    low, high = min(logs), max(logs)
    span = high - low or 1.0
    return "".join(SPARK[min(7, int((v - low) / span * 7.999))] for v in logs)


class StagesPane(DataTable):
    """Each stage: trainable, parameters, grad-norm sparkline. Rows are updated in place, never
    rebuilt, so the highlighted row is always the stage `f` acts on."""

    COLUMNS = ("stage", "trainable", "params", "grad norm", "last")

    def __init__(self, view: RunView, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.view = view
        self._drawn_version = -1
        self._stages: tuple[str, ...] = ()
        self._pretrained = False

    def on_mount(self) -> None:
        for column in self.COLUMNS:
            self.add_column(column, key=column)

    def selected_stage(self) -> str | None:
        """The stage under the cursor: exactly the highlighted row."""
        if not self.row_count:
            return None
        row = min(self.cursor_row, self.row_count - 1)
        return self._stages[row] if row < len(self._stages) else None

    def _cells(self, name: str) -> list:
        stage = self.view.stages[name]
        trainable = (
            Text("yes", style="green") if stage.trainable else Text("frozen", style="bold blue")
        )
        last = f"{stage.grad_norms[-1]:.2e}" if stage.grad_norms else ""
        cells = [
            name,
            trainable,
            f"{stage.parameters:,}",
            Text(sparkline(stage.grad_norms), style="yellow"),
            last,
        ]
        if self._pretrained:
            cells.append(stage.pretrained or "-")
        return cells

    def update_if_changed(self) -> None:
        if self.view.stages_version == self._drawn_version:
            return
        self._drawn_version = self.view.stages_version
        names = tuple(self.view.stages)
        pretrained = any(stage.pretrained for stage in self.view.stages.values())
        if names != self._stages or pretrained != self._pretrained:
            # A new set of stages (the run started): build the rows once, keep the cursor's stage.
            selected = self.selected_stage()
            self.clear()
            if pretrained and "pretrained" not in self.columns:
                self.add_column("pretrained", key="pretrained")
            self._stages, self._pretrained = names, pretrained
            for name in names:
                self.add_row(*self._cells(name), key=name)
            if selected in names:
                self.move_cursor(row=names.index(selected), animate=False)
            return
        keys = [*self.COLUMNS, *(("pretrained",) if pretrained else ())]
        for name in names:
            for key, value in zip(keys, self._cells(name), strict=True):
                self.update_cell(name, key, value)


SEVERITY = {"error": ("✖", "bold red"), "warning": ("▲", "yellow"), "info": ("·", "dim")}


class TimelinePane(DataTable):
    """Alarms and everything that happened (commands, stage and state changes), newest first.
    The highlighted row's whole text and hint are written out below the table (`#detail`)."""

    def __init__(self, view: RunView, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self.view = view
        self._drawn_version = -1
        self.shown: list[TimelineEntry] = []

    def on_mount(self) -> None:
        self.add_columns("step", "", "what", "where", "hint")

    def highlighted(self) -> TimelineEntry | None:
        if not self.shown:
            return None
        return self.shown[min(self.cursor_row, len(self.shown) - 1)]

    def update_if_changed(self) -> None:
        if self.view.timeline_version == self._drawn_version:
            return
        self._drawn_version = self.view.timeline_version
        self.clear()
        self.shown = list(reversed(self.view.timeline[-200:]))
        for entry in self.shown:
            icon, style = SEVERITY.get(entry.severity, ("·", ""))
            self.add_row(
                str(entry.step),
                Text(icon, style=style),
                Text(entry.text, style=style if entry.kind == "alarm" else ""),
                entry.where,
                Text(entry.hint, style="dim"),
            )


def entry_text(entry: TimelineEntry | None) -> Text:
    """An event written out in full, wrapped: nothing cut at the table's column width."""
    if entry is None:
        return Text("")
    icon, style = SEVERITY.get(entry.severity, ("·", ""))
    text = Text(f"{icon} step {entry.step}: ", style=style)
    text.append(entry.text, style="bold" if entry.kind == "alarm" else "")
    if entry.where:
        text.append(f"  [{entry.where}]", style="dim")
    if entry.hint:
        text.append("\nhint: ", style="bold")
        text.append(entry.hint)
    return text


def decode_line(reference: tuple[str, ...], hypothesis: tuple[str, ...]) -> Text:
    """The hypothesis with errors marked: substitution yellow, insertion green +X, deletion red -X."""
    text = Text()
    for token in align(list(reference), list(hypothesis)):
        if text:
            text.append(" ")
        if token.kind == "equal":
            text.append(token.hypothesis or "")
        elif token.kind == "substitute":
            text.append(token.hypothesis or "", style="bold yellow")
        elif token.kind == "insert":
            text.append(f"+{token.hypothesis}", style="bold green")
        else:
            text.append(f"-{token.reference}", style="red strike")
    return text


class DecodesPane(Static):
    def __init__(self, view: RunView, **kwargs) -> None:
        super().__init__("no evaluation yet", **kwargs)
        self.view = view
        self._drawn_version = -1

    def update_if_changed(self) -> None:
        if self.view.decodes_version == self._drawn_version:
            return
        self._drawn_version = self.view.decodes_version
        self.update(self.decodes_text())

    def decodes_text(self) -> Text:
        view, evaluation = self.view, self.view.latest_eval
        if evaluation is None:
            return Text("no evaluation yet: sample decodes appear after the first one", style="dim")
        text = Text()
        if view.comparison:
            text.append("teacher vs student\n", style="bold")
            text.append("\n".join(view.comparison) + "\n\n")
        text.append(
            f"step {evaluation.step} dev {view.rate_name} {evaluation.error_rate:.1%} ",
            style="bold",
        )
        text.append(
            f"(S {evaluation.substitutions} D {evaluation.deletions} "
            f"I {evaluation.insertions} / {evaluation.reference_words})",
            style="dim",
        )
        text.append("   marks: ", style="dim")
        text.append("sub", style="bold yellow")
        text.append(" +ins", style="bold green")
        text.append(" -del", style="red strike")
        if view.test_eval is not None:
            text.append(f"   test {view.rate_name} {view.test_eval.error_rate:.1%}", style="bold")
        if view.eval_position is not None:
            index, count = view.eval_position
            text.append(f"\nevaluation {index + 1} of {count}   , older  . newer", style="dim")
        for sample in evaluation.samples:
            text.append(f"\n{sample.id}  {sample.error_rate:.0%}", style="dim")
            text.append("\n  ref    ")
            text.append(" ".join(sample.reference) or "(empty)", style="bold")
            text.append("\n  greedy ")
            text.append_text(
                decode_line(sample.reference, sample.greedy) or Text("(empty)", style="red")
            )
            text.append("\n  beam   ")
            text.append_text(
                decode_line(sample.reference, sample.beam) or Text("(empty)", style="red")
            )
        return text


def clock() -> str:
    return time.strftime("%H:%M:%S")

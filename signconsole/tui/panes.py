"""The run screen's panes. Each reads the RunView and redraws only when its change counter moved."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widget import Widget
from textual.widgets import DataTable, Static

from signconsole.ctc.wer import align
from signconsole.tui.chart import Line, render_chart
from signconsole.tui.state import RunView, format_duration

STATE_STYLES = {
    "starting": "bold cyan",
    "running": "bold green",
    "paused": "bold yellow",
    "stopping": "bold yellow",
    "finished": "bold blue",
    "failed": "bold red",
}
STAGE_COLOURS = ("cyan", "magenta", "yellow", "green", "blue", "red", "white", "bright_cyan")
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
        (0, f" ep {view.epoch} · step {view.step}{total}", ""),
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
    for dropped in (4, 3, 2, 1):
        kept = [p for p in parts if p[0] < dropped]
        if sum(len(t) for _, t, _ in kept) <= width:
            break
    text = Text(no_wrap=True, overflow="ellipsis")
    for _, part, style in kept:
        text.append(part, style=style)
    return text


class ChartPane(Widget):
    """One chart; `kind` picks the series: loss, error, grad, lr."""

    DEFAULT_CSS = "ChartPane { height: 1fr; width: 1fr; border: round $panel; }"

    def __init__(self, kind: str, view: RunView, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kind, self.view = kind, view
        self._drawn_version = -1

    def on_mount(self) -> None:
        self._set_title()

    def _set_title(self) -> None:
        view = self.view
        titles = {
            "loss": "loss  [cyan]train[/] [magenta]dev[/]",
            "error": f"dev {view.rate_name}",
            "grad": "grad norm (log)  [bold]total[/] "
            + " ".join(
                f"[{STAGE_COLOURS[i % len(STAGE_COLOURS)]}]{stage}[/]"
                for i, stage in enumerate(view.stages)
            ),
            "lr": "learning rate (log)",
        }
        self.border_title = titles[self.kind]
        if self.kind == "loss" and "train/kd" in view.series:
            self.border_title = "loss  [cyan]train[/] [green]ctc[/] [red]kd[/] [magenta]dev[/]"

    def update_if_changed(self) -> None:
        if self.view.charts_version != self._drawn_version:
            self._drawn_version = self.view.charts_version
            self._set_title()
            self.refresh()

    def lines(self) -> tuple[list[Line], dict]:
        series = self.view.series

        def line(name: str, style: str) -> list[Line]:
            s = series.get(name)
            return [Line(name, s.steps, s.values, style)] if s and s.values else []

        if self.kind == "loss":
            # dev first: the dense train line is drawn last and stays readable on top
            lines = line("dev/loss", "magenta") + line("train/ctc", "green")
            return lines + line("train/kd", "red") + line("train/loss", "cyan"), {}
        if self.kind == "error":
            return line("dev/error_rate", "magenta"), {"percent": True, "y_min": 0.0}
        if self.kind == "grad":
            stages = [
                line(f"grad_norm/{stage}", STAGE_COLOURS[i % len(STAGE_COLOURS)])
                for i, stage in enumerate(self.view.stages)
            ]
            return [*sum(stages, []), *line("grad_norm/total", "bold white")], {"log_y": True}
        return line("lr", "green"), {"log_y": True}

    def render(self) -> Text:
        lines, options = self.lines()
        markers = [step for step, _ in self.view.markers]
        return render_chart(
            lines, self.content_size.width, self.content_size.height, markers=markers, **options
        )


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
    """Each stage: trainable, parameters, grad-norm sparkline; the schedule below in the title."""

    def __init__(self, view: RunView, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.view = view
        self._drawn_version = -1

    def on_mount(self) -> None:
        self.add_columns("stage", "trainable", "params", "grad norm", "last")

    def selected_stage(self) -> str | None:
        if not self.row_count:
            return None
        return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)

    def update_if_changed(self) -> None:
        if self.view.stages_version == self._drawn_version:
            return
        self._drawn_version = self.view.stages_version
        cursor = self.cursor_row
        self.clear()
        pretrained = any(stage.pretrained for stage in self.view.stages.values())
        if pretrained and "pretrained" not in self.columns:
            self.add_column("pretrained", key="pretrained")
        for stage in self.view.stages.values():
            trainable = (
                Text("yes", style="green") if stage.trainable else Text("frozen", style="bold blue")
            )
            last = f"{stage.grad_norms[-1]:.2e}" if stage.grad_norms else ""
            cells = [
                stage.name,
                trainable,
                f"{stage.parameters:,}",
                Text(sparkline(stage.grad_norms), style="yellow"),
                last,
            ]
            if pretrained:
                cells.append(stage.pretrained or "-")
            self.add_row(*cells, key=stage.name)
        if self.row_count:
            self.move_cursor(row=min(cursor, self.row_count - 1))


SEVERITY = {"error": ("✖", "bold red"), "warning": ("▲", "yellow"), "info": ("·", "dim")}


class TimelinePane(DataTable):
    """Alarms and everything that happened (commands, stage and state changes), newest first."""

    def __init__(self, view: RunView, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self.view = view
        self._drawn_version = -1

    def on_mount(self) -> None:
        self.add_columns("step", "", "what", "where", "hint")

    def update_if_changed(self) -> None:
        if self.view.timeline_version == self._drawn_version:
            return
        self._drawn_version = self.view.timeline_version
        self.clear()
        for entry in reversed(self.view.timeline[-200:]):
            icon, style = SEVERITY.get(entry.severity, ("·", ""))
            self.add_row(
                str(entry.step),
                Text(icon, style=style),
                Text(entry.text, style=style if entry.kind == "alarm" else ""),
                entry.where,
                Text(entry.hint, style="dim"),
            )


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

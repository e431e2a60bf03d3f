"""The run screen's four charts: loss, dev error rate, gradient norm, learning rate."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from signconsole import metrics as m
from signconsole.tui.chart import Line, render_chart
from signconsole.tui.state import RunView

GRAD_TITLE = "grad norm (log)"
STAGE_COLOURS = ("cyan", "magenta", "yellow", "green", "blue", "red", "white", "bright_cyan")


class ChartPane(Widget):
    """One chart; `kind` picks the series: loss, error, grad, lr."""

    DEFAULT_CSS = "ChartPane { height: 1fr; width: 1fr; border: round $panel; }"

    def __init__(self, kind: str, view: RunView, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kind, self.view = kind, view
        self._drawn_version = -1

    def on_mount(self) -> None:
        self.border_title = self.title()

    def on_resize(self) -> None:
        self.border_title = self.title()  # the grad legend names as many stages as fit

    def title(self) -> str:
        view = self.view
        if self.kind == "loss":
            parts = "[green]ctc[/] [red]kd[/] " if m.train_part("kd") in view.series else ""
            scale = "log" if view.loss_log else "linear"
            return f"loss ({scale}, y)  [cyan]train[/] {parts}[magenta]dev[/]"
        if self.kind == "error":
            return f"dev {view.rate_name}"
        if self.kind == "grad":
            names = " ".join(
                f"[{colour}]{stage}[/]" for stage, colour in self.stage_colours().items()
            )
            hidden = len(view.stages) - len(self.stage_colours())
            title = f"{self.grad_title()} [bold]total[/]" + (f" {names}" if names else "")
            if not hidden:
                return title
            more = f" {hidden} more stage{'s' if hidden > 1 else ''}: g"
            plain = len(self.grad_title()) + 7 + sum(len(s) + 1 for s in self.stage_colours())
            if plain + len(more) > self.size.width - 4:  # the border's corners and spaces
                more = f" {hidden} more: g"
            return title + more
        return "learning rate (log)"

    def grad_title(self) -> str:
        # Room for a stage's name and "N more: g" (the axis's ticks show the log scale too).
        width = self.size.width
        return GRAD_TITLE if width >= 56 else "grad (log)" if width >= 44 else "grad"

    def stage_colours(self) -> dict[str, str]:
        """The stages drawn: the largest few by their newest norm, or all of them (`g`).
        Colours follow the stage's place in the model, so a stage keeps its colour."""
        stages = list(self.view.stages)
        if self.view.grad_all_stages:
            shown = stages
        else:  # as many of the top stages as the title has room to name
            room = self.size.width - 4 - len(self.grad_title()) - 17  # " total", " N more: g"
            shown = []
            for stage in self.view.top_stages():
                room -= len(stage) + 1
                if room < 0 and shown:  # the largest is always drawn, named or not
                    break
                shown.append(stage)
        return {
            stage: STAGE_COLOURS[stages.index(stage) % len(STAGE_COLOURS)]
            for stage in stages
            if stage in shown
        }

    def update_if_changed(self) -> None:
        if self.view.charts_version != self._drawn_version:
            self._drawn_version = self.view.charts_version
            self.border_title = self.title()
            self.refresh()

    def lines(self) -> tuple[list[Line], dict]:
        series = self.view.series

        def line(name: str, style: str) -> list[Line]:
            s = series.get(name)
            return [Line(name, s.steps, s.values, style)] if s and s.values else []

        if self.kind == "loss":
            # dev first: the dense train line is drawn last and stays readable on top
            lines = line(m.DEV_LOSS, "magenta") + line(m.train_part("ctc"), "green")
            lines += line(m.train_part("kd"), "red") + line(m.TRAIN_LOSS, "cyan")
            return lines, {"log_y": self.view.loss_log}
        if self.kind == "error":
            return line(m.DEV_ERROR, "magenta"), {"percent": True, "y_min": 0.0}
        if self.kind == "grad":
            stages = [
                line(m.stage_grad(stage), colour) for stage, colour in self.stage_colours().items()
            ]
            return [*sum(stages, []), *line(m.GRAD_TOTAL, "bold white")], {"log_y": True}
        return line(m.LR, "green"), {"log_y": True}

    def render(self) -> Text:
        lines, options = self.lines()
        zoom = self.view.zoom
        if zoom is not None:
            lines = [_within(line, *zoom) for line in lines]
        markers = [step for step, _ in self.view.markers]
        return render_chart(
            lines,
            self.content_size.width,
            self.content_size.height,
            markers=markers,
            x_range=zoom or self.view.step_range(),
            **options,
        )


def _within(line: Line, start: int, end: int) -> Line:
    pairs = [(s, v) for s, v in zip(line.steps, line.values, strict=False) if start <= s <= end]
    return Line(line.label, [s for s, _ in pairs], [v for _, v in pairs], line.style)

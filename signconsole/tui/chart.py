"""A small braille line chart for the terminal.

Written by hand rather than taken from plotext/textual-plotext: the design probe measured ~48 ms
of UI-thread time (GIL held) per redraw of two plotext charts, which is training time lost when
the engine shares the process. This renders a few series into Rich Text in about a millisecond,
downsampling each series to the chart's pixel columns (max per column keeps spikes visible, for
loss spikes and NaN hunts). Log scale for gradient norms and learning rates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text

# Braille dot bits for (column 0..1, row 0..3) inside one character cell.
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
AXIS_WIDTH = 7


@dataclass(frozen=True)
class Line:
    label: str
    steps: Sequence[int]
    values: Sequence[float]
    style: str


def _format_tick(value: float, log: bool, digits: int = 0) -> str:
    """`digits`: extra significant digits, for an axis whose ticks would otherwise read alike."""
    if log:
        return f"{10**value:.{digits}e}".replace("e-0", "e-").replace("e+0", "e")
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if magnitude >= 1000 or magnitude < 0.01:
        return f"{value:.{digits}e}".replace("e-0", "e-").replace("e+0", "e")
    if magnitude >= 10:
        return f"{value:.{digits}f}"
    return f"{value:.{2 + digits}f}" if magnitude < 1 else f"{value:.{1 + digits}f}"


def _tick_labels(values: dict[int, float], log: bool, span: float) -> dict[int, str]:
    """The fewest digits that tell the ticks apart (a learning rate decaying from 50 to 47
    was labelled 5e1 three times) and that say each tick's value (a top at 1.5e-3 read 1e-3),
    within the axis's width. `span`: the axis's linear range, to judge a linear tick's error."""
    labels = {row: _format_tick(value, log) for row, value in values.items()}
    for digits in (1, 2):
        distinct = len(set(labels.values())) == len(labels) or len(set(values.values())) < len(
            values
        )
        if distinct and all(_says(labels[row], value, log, span) for row, value in values.items()):
            break
        wider = {row: _format_tick(value, log, digits) for row, value in values.items()}
        if any(len(label) >= AXIS_WIDTH for label in wider.values()):
            break
        labels = wider
    return labels


def _says(label: str, value: float, log: bool, span: float) -> bool:
    """Whether `label` reads as the tick's value: within 5% on a log axis, within 2% of the
    axis's range on a linear one."""
    try:
        shown = float(label)
    except ValueError:
        return True
    if log:
        target = 10**value
        return abs(shown - target) <= 0.05 * abs(target)
    return abs(shown - value) <= 0.02 * span


def render_chart(
    lines: Sequence[Line],
    width: int,
    height: int,
    log_y: bool = False,
    y_min: float | None = None,
    y_max: float | None = None,
    percent: bool = False,
    markers: Sequence[int] = (),
    x_range: tuple[int, int] | None = None,
) -> Text:
    """Render to `height` rows of `width` characters (axis labels included).

    `markers` are steps where the run changed course (a stage unfrozen, the LR set): each is a
    dotted vertical rule behind the data, so a curve's bend lines up with its cause.
    `x_range`: the steps the x axis spans (default: the data's); charts side by side share
    one, so a step is the same column in each and the rules line up."""
    plot_width = max(4, width - AXIS_WIDTH)
    plot_height = max(1, height - 1)
    points: list[tuple[Line, list[tuple[int, float]]]] = []
    for line in lines:
        pairs = [
            (s, v)
            for s, v in zip(line.steps, line.values, strict=False)
            if v is not None and math.isfinite(v) and (not log_y or v > 0)
        ]
        if log_y:
            pairs = [(s, math.log10(v)) for s, v in pairs]
        points.append((line, pairs))
    everything = [p for _, pairs in points for p in pairs]
    if not everything:
        text = Text(
            " " * AXIS_WIDTH + "waiting for data".center(plot_width)[:plot_width], style="dim"
        )
        for _ in range(plot_height):
            text.append("\n" + " " * width)
        return text
    x_low = min(s for s, _ in everything)
    x_high = max(s for s, _ in everything)
    if x_range is not None:
        x_low, x_high = min(x_low, x_range[0]), max(x_high, x_range[1])
    low = min(v for _, v in everything) if y_min is None else y_min
    high = max(v for _, v in everything) if y_max is None else y_max
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    pixel_columns, pixel_rows = plot_width * 2, plot_height * 4
    cells = [[0] * plot_width for _ in range(plot_height)]
    styles: list[list[str | None]] = [[None] * plot_width for _ in range(plot_height)]
    for line, pairs in points:
        previous: tuple[int, int] | None = None
        for column, value in _per_column(pairs, x_low, x_high, pixel_columns):
            row = round((value - low) / (high - low) * (pixel_rows - 1))
            row = pixel_rows - 1 - min(pixel_rows - 1, max(0, row))
            for c, r in _segment(previous, (column, row)):
                cell_row, cell_column = r // 4, c // 2
                cells[cell_row][cell_column] |= _DOTS[c % 2][r % 4]
                styles[cell_row][cell_column] = line.style
            previous = (column, row)
    span = max(1, x_high - x_low)
    marker_columns = {
        int((step - x_low) / span * (pixel_columns - 1)) // 2
        for step in markers
        if x_low <= step <= x_high
    }
    text = Text()
    labels = {0: high, plot_height - 1: low}
    if plot_height >= 5:
        labels[(plot_height - 1) // 2] = (high + low) / 2
    if percent and not log_y:
        tick_text = {row: f"{value * 100:.0f}%" for row, value in labels.items()}
    else:
        tick_text = _tick_labels(labels, log_y, high - low)
    for row in range(plot_height):
        label = tick_text.get(row, "")
        text.append(f"{label:>{AXIS_WIDTH - 1}}┤"[-AXIS_WIDTH:], style="dim")
        for column in range(plot_width):
            bits = cells[row][column]
            if bits:
                text.append(chr(0x2800 + bits), style=styles[row][column] or "")
            elif column in marker_columns:
                text.append("┊", style="blue")
            else:
                text.append(" ")
        text.append("\n")
    left, right = str(x_low), str(x_high)
    text.append(" " * AXIS_WIDTH + left + right.rjust(max(0, plot_width - len(left))), style="dim")
    return text


def _per_column(pairs: list[tuple[int, float]], x_low: int, x_high: int, columns: int):
    """Downsample to one value per pixel column (the max, so spikes stay visible)."""
    span = max(1, x_high - x_low)
    best: dict[int, float] = {}
    for step, value in pairs:
        column = min(columns - 1, int((step - x_low) / span * (columns - 1)))
        if column not in best or value > best[column]:
            best[column] = value
    return sorted(best.items())


def _segment(start: tuple[int, int] | None, end: tuple[int, int]):
    """Pixels from start to end (inclusive), so sparse series draw as connected lines."""
    if start is None:
        return [end]
    (x0, y0), (x1, y1) = start, end
    count = max(abs(x1 - x0), abs(y1 - y0), 1)
    return [
        (round(x0 + (x1 - x0) * i / count), round(y0 + (y1 - y0) * i / count))
        for i in range(1, count + 1)
    ]

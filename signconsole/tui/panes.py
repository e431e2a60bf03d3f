"""The run screen's panes. Each reads the RunView and redraws only when its change counter moved."""

from __future__ import annotations

import time

from rich.cells import cell_len
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
SPARK_WIDTH = 16  # grad-norm sparkline: the newest this many logged steps


def format_norm(value: float | None) -> str:
    """A gradient norm as the Stages tab shows it, live and in review: always with its
    exponent (0.096 and 0.728 must not both read as a mantissa). NORM_WIDTH fits every finite
    value and inf/nan."""
    if value is None:
        return ""
    return f"{value:.2e}"


NORM_WIDTH = len(format_norm(1.23e-100))  # the widest a (non-negative) norm can be written


def status_text(view: RunView, width: int = 120) -> Text:
    """Profile, kind, device, state, progress, speed, ETA, best error and lr, dropping the least
    important parts first when the terminal is narrow."""
    total = f"/{view.total_steps}" if view.total_steps else ""
    eta = view.eta_seconds()
    parts: list[tuple[int, str, str]] = [  # (priority: lower survives longer, text, style)
        (0, f" {view.name or '...'} ", "bold reverse"),
        (3, f" {view.kind} · {view.device} " if view.kind else "", "dim"),
        (0, f" {view.state.upper()} ", STATE_STYLES.get(view.state, "bold")),
    ]
    if view.state != "starting":  # no epoch before the engine says which
        parts.append((2, f" {view.epoch_text()} ·", ""))
    parts.append((0, f" step {view.step}{total}", ""))
    if view.state == "paused":  # no rate is measured while paused: not a stale one either
        parts.append((2, " · paused", "dim"))
    elif view.frames_per_second and view.state in ("running", "stopping"):
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


def sparkline(values, width: int = SPARK_WIDTH) -> str:
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
    # Columns whose text grows after the rows are built: fixed widths, never sized from the
    # first (often empty) values, so a later value is never cut.
    FIXED_WIDTHS = {"trainable": len("trainable"), "grad norm": SPARK_WIDTH, "last": NORM_WIDTH}

    def __init__(self, view: RunView, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.view = view
        self._drawn_version = -1
        self._stages: tuple[str, ...] = ()
        self._pretrained = False

    def on_mount(self) -> None:
        for column in self.COLUMNS:
            self.add_column(column, key=column, width=self.FIXED_WIDTHS.get(column))

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
        last = format_norm(stage.grad_norms[-1] if stage.grad_norms else None)
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
                self.update_cell(name, key, value, update_width=key not in self.FIXED_WIDTHS)


SEVERITY = {"error": ("✖", "bold red"), "warning": ("▲", "yellow"), "info": ("·", "dim")}


class TimelinePane(DataTable):
    """Alarms and everything that happened (commands, stage and state changes, evaluations,
    checkpoints), newest first. Each row's text is cut at a word to the pane's width (never
    mid-word at the terminal's edge); the highlighted row's whole text, place and hint are
    written out below the table (`#detail`)."""

    WHERE_WIDTH = 30  # the place an alarm names, in the table (the detail has all of it)

    def __init__(self, view: RunView, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self.view = view
        self._drawn_version = -1
        self._drawn_width = 0
        self.shown: list[TimelineEntry] = []

    def on_mount(self) -> None:
        self._set_columns(self.size.width or 80)

    def _set_columns(self, width: int) -> None:
        """Where and hint get columns only when there is room for them: on a narrow terminal
        they would only scroll off its edge (the detail below shows them)."""
        wide = self._hint_width(width) >= 25
        if self.columns and (len(self.columns) == 5) == wide:
            return
        self.clear(columns=True)
        self.add_columns("step", "", "what", *(("where", "hint") if wide else ()))

    def _hint_width(self, width: int) -> int:
        """What is left for the hint beside step, icon, text (70) and where, cell padding and
        the scrollbar included."""
        return width - 6 - 1 - 70 - self.WHERE_WIDTH - 5 * 2 - 2

    def on_resize(self) -> None:
        if self.size.width != self._drawn_width:
            self._drawn_version = -1  # cut the rows to the new width
            self.update_if_changed()

    def highlighted(self) -> TimelineEntry | None:
        if not self.shown:
            return None
        return self.shown[min(self.cursor_row, len(self.shown) - 1)]

    def select(self, entry: TimelineEntry) -> None:
        """Put the cursor on `entry` (the alarm in the banner), so the detail shows it."""
        if entry in self.shown:
            self.move_cursor(row=self.shown.index(entry), animate=False)

    def update_if_changed(self) -> None:
        if self.view.timeline_version == self._drawn_version:
            return
        self._drawn_version = self.view.timeline_version
        self._drawn_width = width = self.size.width or 80
        step_width = len(str(max((e.step for e in self.view.timeline[-200:]), default=0)))
        # step, icon and their cell padding (1 each side): what is left for the text
        what_width = max(20, width - max(4, step_width) - 1 - 3 * 2 - 1)
        if self._hint_width(width) >= 25:  # room for where and hint as well
            what_width = min(what_width, 70)
        selected = self.highlighted()
        self.clear()
        self._set_columns(width)
        wide = len(self.columns) == 5
        self.shown = list(reversed(self.view.timeline[-200:]))
        for entry in self.shown:
            icon, style = SEVERITY.get(entry.severity, ("·", ""))
            cells = [
                str(entry.step),
                Text(icon, style=style),
                Text(
                    shorten(entry.text, what_width),
                    style=style if entry.kind == "alarm" else "",
                ),
            ]
            if wide:
                hint = shorten(entry.hint, self._hint_width(width))
                cells += [shorten(entry.where, self.WHERE_WIDTH), Text(hint, style="dim")]
            self.add_row(*cells)
        if selected is not None and selected in self.shown and self.cursor_row:
            self.select(selected)  # a new row on top does not move the reader's row


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


BANNER_KEYS = "   a: acknowledge · 2: all events"
BANNER_KEYS_SHORT = " · a: ack · 2: events"
BANNER_KEYS_CUT = " · a: ack · 2: whole hint"


def shorten(text: str, width: int) -> str:
    """`text` in at most `width` cells, cut at a word with "…" rather than mid-word."""
    if cell_len(text) <= width:
        return text
    cut = text[: max(0, width - 1)]
    if " " in cut[width // 2 :]:  # a word boundary in the second half: end there
        cut = cut[: cut.rindex(" ")].rstrip(" ,;:")
    return cut + "…"


def banner_text(entry: TimelineEntry, width: int) -> Text:
    """The alarm banner: two lines at any width, the alarm and then its hint. A hint longer
    than the line ends with "…" and says where the whole of it is (the Events tab's detail,
    which `2` opens on the alarm)."""
    icon, style = SEVERITY.get(entry.severity, ("·", ""))
    head = f"{icon} step {entry.step}: "
    rest = entry.text + (f"  [{entry.where}]" if entry.where else "")
    text = Text(head, style=style)
    text.append(shorten(rest, max(8, width - cell_len(head))), style="bold")
    text.append("\n")
    hint = f"hint: {entry.hint}" if entry.hint else ""
    if cell_len(hint + BANNER_KEYS) <= width:
        text.append(hint)
        text.append(BANNER_KEYS.lstrip() if not hint else BANNER_KEYS, style="dim")
    elif cell_len(hint + BANNER_KEYS_SHORT) <= width:
        text.append(hint)
        text.append(BANNER_KEYS_SHORT, style="dim")
    else:
        text.append(shorten(hint, max(8, width - cell_len(BANNER_KEYS_CUT))))
        text.append(BANNER_KEYS_CUT, style="dim")
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
            f"step {evaluation.step} dev {view.rate_name} {evaluation.error_rate:.1%} "
            "(beam search) ",
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
        # By id, so a sample keeps its place from one evaluation to the next (ids are
        # zero-padded: text order is number order).
        for sample in sorted(evaluation.samples, key=lambda sample: sample.id):
            text.append(
                f"\n{sample.id}  beam {view.rate_name} {sample.error_rate:.0%}", style="dim"
            )
            text.append("\n  ref    ")
            text.append(" ".join(sample.reference) or "(empty)", style="bold")
            text.append("\n  greedy ")
            text.append_text(hypothesis_line(sample.reference, sample.greedy))
            text.append("\n  beam   ")
            text.append_text(hypothesis_line(sample.reference, sample.beam))
        return text


def hypothesis_line(reference: tuple[str, ...], hypothesis: tuple[str, ...]) -> Text:
    """A decode with its errors marked; an empty one says so (as the headless log does)
    instead of listing every reference token as deleted."""
    if not hypothesis:
        return Text("(empty)", style="red")
    return decode_line(reference, hypothesis)


def clock() -> str:
    return time.strftime("%H:%M:%S")

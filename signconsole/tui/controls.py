"""The run screen's keys and what they do: the same keys for a live, attached or reviewed run.

Commands go through the screen's run source (the bus of the engine in this process, or the run
store's commands table for a headless run); the source says whether they can reach an engine
now, and the footer hides the ones that cannot. The footer shows the most used keys first (at
80x24 all of them fit); `?` lists every key.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.screen import Screen

from signconsole.errors import UserError
from signconsole.events import (
    CheckpointNow,
    Command,
    EvaluateNow,
    Freeze,
    Pause,
    Resume,
    SetLearningRate,
    Stop,
    Unfreeze,
)
from signconsole.tui.dialogs import AskLearningRate, Confirm, HelpScreen

# Footer order is priority order: what is shown first survives a narrow terminal.
BINDINGS = [
    Binding("space", "toggle_pause", "pause", id="pause", tooltip="pause / resume training"),
    Binding("f", "toggle_stage", "freeze", id="freeze", tooltip="freeze / unfreeze the stage"),
    Binding("c", "checkpoint", "ckpt", id="checkpoint", tooltip="checkpoint now"),
    Binding("e", "evaluate", "eval", id="evaluate", tooltip="evaluate on dev now"),
    Binding("s", "stop", "stop", id="stop", tooltip="stop (asks; checkpoints)"),
    Binding("a", "acknowledge", "ack", id="acknowledge", tooltip="acknowledge the alarm"),
    Binding("q", "quit_run", "quit", id="quit", tooltip="quit (asks; stops the run)"),
    Binding("question_mark", "help", "help", id="help", tooltip="this help"),
    Binding("minus", "lr_factor(0.5)", "lr ÷2", id="lr_down", show=False),
    Binding("plus,equals_sign", "lr_factor(2.0)", "lr ×2", id="lr_up", show=False),
    Binding("l", "set_lr", "type a learning rate", id="set_lr", show=False),
    Binding("1", "show_tab('stages')", "Stages tab", show=False),
    Binding("2", "show_tab('events')", "Events tab", show=False),
    Binding("3", "show_tab('decodes')", "Decodes tab", show=False),
    Binding("y", "toggle_loss_log", "loss chart: log / linear", show=False),
    Binding("g", "toggle_grad_stages", "grad chart: all / top stages", show=False),
    Binding("left_square_bracket", "zoom(0.5)", "zoom in", id="zoom_in", show=False),
    Binding("right_square_bracket", "zoom(2.0)", "zoom out", id="zoom_out", show=False),
    Binding("less_than_sign", "pan(-1)", "pan ←", show=False),
    Binding("greater_than_sign", "pan(1)", "pan →", show=False),
    Binding("0", "zoom_reset", "whole run", show=False),
    Binding("comma", "step_eval(-1)", "older evaluation", show=False),
    Binding("full_stop", "step_eval(1)", "newer evaluation", show=False),
]
# Keys that drive training: offered only while an engine takes commands.
CONTROL_ACTIONS = {
    "toggle_pause",
    "toggle_stage",
    "lr_factor",
    "set_lr",
    "checkpoint",
    "evaluate",
    "stop",
}


class RunControls(Screen):
    """The run screen's actions; RunScreen (run_screen.py) adds the panes, the view and the
    source they act on."""

    BINDINGS = BINDINGS

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Hidden, not greyed out, when they cannot act: the footer keeps room for what works.
        if action == "acknowledge":
            return self.view.alarm is not None
        return action not in CONTROL_ACTIONS or self.source.can_control(self.view)

    @property
    def live(self) -> bool:
        return self.source.can_control(self.view)

    # ----------------------------------------------------------------------- training
    def _send(self, command: Command, note: str) -> None:
        view = self.view
        if not self.source.can_control(view):
            self.notify(f"the run is {view.state}: nothing to control", severity="warning")
            return
        try:
            self.source.send(command)
        except UserError as error:  # e.g. another user's run: readable, not writable
            self.notify(str(error), severity="error", timeout=10)
            return
        if view.state == "starting":  # the engine applies it at its first step: say so
            view.pending = f"{note}: queued until training starts"
        else:
            view.pending = f"{note}: sent"
        view.status_version += 1
        self.refresh_status()
        self.notify(f"{note}: applied at the next step", timeout=2)

    def action_toggle_pause(self) -> None:
        paused = self.view.state == "paused"
        self._send(
            Resume(source="console") if paused else Pause(source="console"),
            "resume" if paused else "pause",
        )

    def action_toggle_stage(self) -> None:
        from signconsole.tui.panes import StagesPane

        stage = self.query_one(StagesPane).selected_stage()
        if stage is None:
            self.notify("no stage yet: the run has not started", severity="warning")
            return
        trainable = self.view.stages[stage].trainable
        command = (
            Freeze(stage, source="console") if trainable else Unfreeze(stage, source="console")
        )
        self._send(command, f"{'freeze' if trainable else 'unfreeze'} {stage}")

    def action_lr_factor(self, factor: float) -> None:
        self._send(SetLearningRate(factor=factor, source="console"), f"lr ×{factor:g}")

    def action_set_lr(self) -> None:
        def chosen(value: float | None) -> None:
            if value is not None:
                self._send(SetLearningRate(value=value, source="console"), f"lr = {value:.3g}")

        self.app.push_screen(AskLearningRate(self.view.lr), chosen)

    def action_checkpoint(self) -> None:
        self._send(CheckpointNow(source="console"), "checkpoint")

    def action_evaluate(self) -> None:
        self._send(EvaluateNow(source="console"), "evaluation")

    def action_stop(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._send(Stop(reason="stopped from the console", source="console"), "stop")

        if self.source.can_control(self.view):
            self.app.push_screen(Confirm("Stop training? A checkpoint is written first."), answered)

    def action_quit_run(self) -> None:
        if not self.source.owns_run:
            # Leaving a review or an attached run never touches it: back to the picker, or out.
            if len(self.app.screen_stack) > 2:
                self.app.pop_screen()
            else:
                self.app.exit()
            return
        if not self.source.can_control(self.view):
            self.app.exit()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.source.send(Stop(reason="console quit", source="console"))
                self.notify("stopping: writing a checkpoint, then quitting", timeout=10)
                self.set_interval(0.2, self._exit_when_done)

        self.app.push_screen(Confirm("Quit? The run stops cleanly with a checkpoint."), answered)

    def _exit_when_done(self) -> None:
        if self.source.run_ended():
            self.drain()
            self.app.exit()

    # ------------------------------------------------------------------------- viewing
    def action_acknowledge(self) -> None:
        self.view.acknowledge()
        self.refresh_panes()
        self.refresh_bindings()

    def action_help(self) -> None:
        live = self.source.can_control(self.view)
        shown = [b for b in BINDINGS if live or b.action.split("(")[0] not in CONTROL_ACTIONS]
        self.app.push_screen(HelpScreen(shown, self.source.owns_run, controls_hidden=not live))

    def action_show_tab(self, tab: str) -> None:
        from textual.widgets import TabbedContent

        self.query_one(TabbedContent).active = tab

    def action_toggle_loss_log(self) -> None:
        self.view.loss_log = not self.view.loss_log
        self._redraw_charts()

    def action_toggle_grad_stages(self) -> None:
        self.view.grad_all_stages = not self.view.grad_all_stages
        self._redraw_charts()

    def _redraw_charts(self) -> None:
        self.view.charts_version += 1
        self.refresh_panes(force_charts=True)

    def _span(self) -> tuple[int, int]:
        last = max(1, self.view.step)
        zoom = self.view.zoom
        return zoom if zoom else (0, last)

    def _set_zoom(self, zoom: tuple[int, int] | None) -> None:
        self.view.zoom = zoom
        self.source.load_range(self.view)
        self._redraw_charts()
        text = "whole run" if zoom is None else f"steps {zoom[0]}-{zoom[1]}"
        self.notify(f"{text}  ([ ] zoom, < > pan, 0 whole run)", timeout=1.5)

    def action_zoom(self, factor: float) -> None:
        start, end = self._span()
        last = max(1, self.view.step)
        width = max(4, int((end - start) * factor))
        if width >= last:
            self._set_zoom(None)
        else:
            end = end if self.view.zoom is not None else last
            self._set_zoom((max(0, end - width), end))

    def action_pan(self, direction: int) -> None:
        if self.view.zoom is None:
            return
        start, end = self._span()
        last = max(1, self.view.step)
        shift = direction * max(1, (end - start) // 2)
        shift = max(-start, min(shift, last - end))
        self._set_zoom((start + shift, end + shift))

    def action_zoom_reset(self) -> None:
        self._set_zoom(None)

    def action_step_eval(self, direction: int) -> None:
        view = self.view
        position = view.eval_position
        if position is None:
            return
        index = max(0, min(position[1] - 1, position[0] + direction))
        view.evals[index] = self.source.with_samples(view.evals[index])
        view.show_eval(None if index == position[1] - 1 else index)
        self.refresh_panes()
        self.action_show_tab("decodes")

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
from signconsole.tui.dialogs import AskLearningRate, Confirm, HelpScreen, lr_factor_problem

# Footer order is priority order: what is shown first survives a narrow terminal.
BINDINGS = [
    # One key, two bindings: the footer names what space does now (check_action hides the other).
    Binding("space", "pause", "pause", id="pause", tooltip="pause training"),
    Binding("space", "resume", "resume", id="resume", tooltip="resume training"),
    Binding("f", "toggle_stage", "freeze", id="freeze", tooltip="freeze / unfreeze the stage"),
    Binding("c", "checkpoint", "ckpt", id="checkpoint", tooltip="checkpoint now"),
    Binding("e", "evaluate", "eval", id="evaluate", tooltip="evaluate on dev now"),
    Binding("s", "stop", "stop", id="stop", tooltip="stop (asks; checkpoints)"),
    Binding("a", "acknowledge", "ack", id="acknowledge", tooltip="acknowledge the alarm"),
    Binding("q", "quit_run", "quit", id="quit", tooltip="quit"),  # help: what q does here
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
    "pause",
    "resume",
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

    stop_sent = False  # a stop (or quit) went to the engine: nothing else will be applied

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Hidden, not greyed out, when they cannot act: the footer keeps room for what works.
        if action == "acknowledge":
            return self.view.alarm is not None
        if action not in CONTROL_ACTIONS:
            return True
        if not self.live:
            return False
        paused = self.view.state == "paused"
        return not (action == "pause" and paused or action == "resume" and not paused)

    @property
    def live(self) -> bool:
        """Commands reach an engine that will apply them: not once the run is stopping (it
        refuses them then) or a stop is on its way to it."""
        return (
            self.source.can_control(self.view)
            and not self.stop_sent
            and self.view.state not in ("stopping", "stopped")
        )

    def offered(self) -> list[Binding]:
        """The keys that work now, in footer order: what the help lists."""
        return [b for b in BINDINGS if self.check_action(b.action.split("(")[0], ()) is not False]

    def quit_text(self) -> str:
        """What q does here, as the help says it."""
        where = "back to the picker" if self.from_picker else "exit"
        if not self.source.owns_run:
            return f"leave (the run goes on), {where}"
        if self.live:
            return f"stop the run (asks), {where}"
        return f"leave, {where}"

    @property
    def from_picker(self) -> bool:
        """Opened over the picker: q goes back to it instead of leaving the console."""
        from signconsole.tui.picker import PickerScreen

        stack = self.app.screen_stack
        return self in stack and any(isinstance(s, PickerScreen) for s in stack)

    # ----------------------------------------------------------------------- training
    def _send(self, command: Command, note: str) -> None:
        view = self.view
        if not self.live:
            state = "stopping" if self.stop_sent else view.state
            self.notify(f"the run is {state}: nothing to control", severity="warning")
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
        # "sent", not "applied": the engine may still refuse it (it says so in a toast and the
        # Events tab, see RunScreen._tell_rejections).
        if isinstance(command, Stop):
            self.stop_sent = True
            self._refresh_footer()  # the footer and the f hint drop the training keys now
        self.notify(f"{note}: sent, for the next step", timeout=2)

    def action_toggle_pause(self) -> None:
        """The command palette's entry: whichever of pause and resume applies now."""
        if self.view.state == "paused":
            self.action_resume()
        else:
            self.action_pause()

    def action_pause(self) -> None:
        self._send(Pause(source="console"), "pause")

    def action_resume(self) -> None:
        self._send(Resume(source="console"), "resume")

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
        problem = lr_factor_problem(self.view.lr, factor)
        if problem:  # the engine would reject it: say so now, send nothing
            self.notify(f"not sent: {problem}", severity="warning", timeout=6)
            return
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

        if self.live:
            self.app.push_screen(Confirm("Stop training? A checkpoint is written first."), answered)

    def action_quit_run(self) -> None:
        """Leave this run: back to the picker when it opened the run, else out of the console.
        A run this console trains is stopped first (asked, checkpointed, scored on test); the
        console prints how it ended when it exits (cli.py). A review or an attached run is
        left as it is."""
        if not self.source.owns_run or self.source.run_ended():
            self._leave()
            return
        if not self.live:  # stopping already: wait for the engine to finish its checkpoint
            self._wait_then_leave()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.source.send(Stop(reason="console quit", source="console"))
                self.stop_sent = True
                self._refresh_footer()
                self._wait_then_leave()

        self.app.push_screen(Confirm("Quit? The run stops cleanly with a checkpoint."), answered)

    def _wait_then_leave(self) -> None:
        if getattr(self, "_leaving", False):
            return
        self._leaving = True
        self.notify("stopping: writing a checkpoint, then leaving", timeout=10)
        self.set_interval(0.2, self._leave_when_done)

    def _leave_when_done(self) -> None:
        if self.source.run_ended():
            self.drain()
            self._leave()

    def _leave(self) -> None:
        if self.from_picker:
            self.dismiss()
        else:
            self.app.exit()

    # ------------------------------------------------------------------------- viewing
    def action_acknowledge(self) -> None:
        self.view.acknowledge()
        self.refresh_panes()
        self.refresh_bindings()

    def action_help(self) -> None:
        notes = ["Arrows in the Stages tab (1) pick the stage f acts on."]
        if self.live:
            notes.append("ctrl+p: the command palette. Commands apply at the next step.")
        else:
            notes.append(
                "Training keys (pause, freeze, LR, stop...) work while a run is live"
                + (f"; this one is {self.view.state}." if self.source.owns_run else ".")
            )
        self.app.push_screen(HelpScreen(self.offered(), self.quit_text(), notes))

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

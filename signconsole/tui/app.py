"""The console application: a picker, then a live run screen driving the in-process engine."""

from __future__ import annotations

import os
from pathlib import Path

from textual.app import App, SystemCommand
from textual.screen import Screen

from signconsole.commands.run import Outcome
from signconsole.tui.host import EngineHost
from signconsole.tui.picker import Choice, PickerScreen
from signconsole.tui.run_screen import RunScreen
from signconsole.tui.source import BusSource, JobSource, StoreSource


def review_screen(run_dir: Path, zoom: tuple[int, int] | None = None) -> RunScreen:
    """The run screen on a run's store: review, or attach when the run is still training."""
    from signconsole.store.reader import RunReader

    return RunScreen(StoreSource(RunReader(run_dir)), zoom)


class SignConsole(App):
    CSS_PATH = Path(__file__).parent / "app.tcss"  # absolute: subclasses (tests) live elsewhere
    TITLE = "signconsole"
    ENABLE_COMMAND_PALETTE = True

    def __init__(
        self,
        profile: Path | None = None,
        profiles_dir: Path | None = None,
        runs_dir: str | None = None,
        overrides: tuple[str, ...] = (),
        resume: Path | None = None,
        host: EngineHost | None = None,
        review: Path | None = None,
        zoom: tuple[int, int] | None = None,
        bell: bool | None = None,
    ) -> None:
        """`host`: run a prepared EngineHost (tests feed a recorded run through one).
        `bell`: ring the terminal bell on an alarm (default: on; SIGNCONSOLE_BELL=0 turns it off)."""
        super().__init__()
        self.bell_on_alarm = (
            os.environ.get("SIGNCONSOLE_BELL", "1") != "0" if bell is None else bell
        )
        self.profile, self.overrides, self.resume = profile, overrides, resume
        self.profiles_dir = profiles_dir or Path("profiles")
        self.runs_dir = runs_dir
        self.host: EngineHost | None = host  # the run being trained now
        self.hosts: list[EngineHost] = [host] if host is not None else []  # every one trained
        self.job: JobSource | None = None  # a multi-process run this console started
        self.review, self.zoom = review, zoom  # `signconsole show RUN`

    def on_mount(self) -> None:
        if self.review is not None:
            self.push_screen(review_screen(self.review, self.zoom))
        elif self.host is not None:
            self.push_screen(RunScreen(BusSource(self.host)))
        elif self.profile is not None:
            self.start(Choice(self.profile, self.resume))
        else:
            # The picker stays under the runs it opens: q on a run comes back to it.
            self.push_screen(
                PickerScreen(self.profiles_dir, Path(self.runs_dir or "runs"), self.start)
            )

    def start(self, choice: Choice | None) -> None:
        if choice is None:
            return
        nproc = self._processes(choice.profile)
        if nproc > 1:  # a torchrun job in child processes, followed through its store
            from signconsole.launch import Job

            job = Job.start(choice.profile, nproc, self.runs_dir, self.overrides, choice.resume)
            self.job = JobSource(job)
            self.push_screen(RunScreen(self.job))
            return
        self.host = EngineHost(
            choice.profile,
            self.runs_dir,
            self.overrides,
            str(choice.resume) if choice.resume else None,
        )
        self.hosts.append(self.host)
        self.push_screen(RunScreen(BusSource(self.host)))

    def trained_runs(self) -> list[tuple[Outcome, str]]:
        """Each run this console trained in its process, with how it ended: what the console
        prints when it exits (cli.py), as `signconsole run` does at the end of a run."""
        ended = []
        for host in self.hosts:
            outcome = host.outcome
            if outcome.run_dir:
                ended.append((outcome, outcome.status or ("failed" if host.error else "stopped")))
        return ended

    def _processes(self, profile: Path) -> int:
        """The profile's training.nproc; 1 when it cannot be read (the in-process engine then
        shows what is wrong with it, as for any profile)."""
        from signconsole.errors import UserError
        from signconsole.profile import load_profile

        try:
            return load_profile(profile, list(self.overrides)).training.nproc
        except (UserError, OSError, ValueError):
            return 1

    def get_system_commands(self, screen: Screen):
        yield from super().get_system_commands(screen)
        if isinstance(screen, RunScreen):
            for title, help_text, action in (
                ("Pause / resume", "pause or resume training at the next step", "toggle_pause"),
                (
                    "Freeze / unfreeze stage",
                    "toggle the stage selected in the Stages tab",
                    "toggle_stage",
                ),
                ("Lower learning rate ÷2", "multiply the learning rate by 0.5", "lr_factor(0.5)"),
                ("Raise learning rate ×2", "multiply the learning rate by 2", "lr_factor(2.0)"),
                ("Set learning rate…", "type an exact learning rate", "set_lr"),
                ("Checkpoint now", "write checkpoints/last.pt", "checkpoint"),
                ("Evaluate now", "run a dev evaluation", "evaluate"),
                ("Stop training", "stop after a checkpoint (asks first)", "stop"),
            ):
                yield SystemCommand(title, help_text, lambda a=action: screen.run_action(a))

    def on_unmount(self) -> None:
        # Never leave a training thread behind: stop it cleanly (it checkpoints) and wait.
        from signconsole.events import Stop

        for host in self.hosts:
            if not host.done.is_set():
                host.send(Stop(reason="console closed", source="console"))
                host.done.wait(timeout=120)
        if self.job is not None and not self.job.run_ended():
            self.job.send(Stop(reason="console closed", source="console"))
            self.job.job.wait()
            self.job.job.finish()

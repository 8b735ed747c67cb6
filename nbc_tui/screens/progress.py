"""The progress screen: runs the real engine in a thread and shows its steps, its bytes and its log.

The review screen has already obtained the deliberate confirmation, so the engine's own question is
answered yes here. Events reach the screen as ``ProgressScreen.Engine`` messages; a queued byte count is
replaced by a newer one, every other event is kept. Ctrl-C asks first, then sets the run's cancel flag:
the engine stops at its next check, unwinds its cleanup stack (mounts, loop devices, locks) and the
screen returns a cancelled outcome. The question (widgets/cancel_install.py) and the TPM2 recovery key
(widgets/recovery_key.py) are modal screens of their own.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from pydantic import SecretStr
from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.renderables.bar import Bar as BarRenderable
from textual.screen import Screen
from textual.widgets import Footer, ProgressBar, Static
from textual.worker import Worker, WorkerState

from ..backend.errors import Cancelled, NbcError
from ..backend.events import (
    CompleteEvent,
    ErrorEvent,
    Event,
    MessageEvent,
    ProgressEvent,
    StepEvent,
    WarningEvent,
)
from ..backend.logfile import RunLog, log_file_path
from ..backend.operations.install import run_install, step_titles
from ..backend.plan import InstallPlan
from ..backend.runner import RunContext
from ..backend.sizes import human
from ..look import console_look
from ..widgets.cancel_install import CancelInstallScreen
from ..widgets.log_view import LineKind, LogView
from ..widgets.recovery_key import RecoveryKeyScreen
from ..widgets.status_line import StatusLine
from ..widgets.step_list import StepList

log = logging.getLogger("nbc_tui")


@dataclass
class InstallOutcome:
    """How the install ended, for the done screen."""

    ok: bool
    message: str
    log_path: str
    error: str | None = None
    hint: str | None = None
    cancelled: bool = False


def time_left(seconds: float) -> str:
    """A calm estimate: "about 5 s left", "about 2 min 5 s left", "about 25 min left"."""
    if seconds < 60:
        return f"about {max(1, round(seconds))} s left"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 10:
        return f"about {minutes} min {secs} s left"
    return f"about {round(seconds / 60)} min left"


def describe_bytes(event: ProgressEvent) -> str:
    """"Extracting: 120.0 MB of 400.0 MB, 85.0 MB/s, about 3 s left" from a progress event's details."""
    d = event.details or {}
    done, total, rate = d.get("bytes_done", 0), d.get("bytes_total", 0), d.get("bytes_per_second", 0)
    parts = [f"{human(done)} of {human(total)}" if total else human(done)]
    if rate:
        parts.append(f"{human(rate)}/s")
        if total > done:
            parts.append(time_left((total - done) / rate))
    return f"{event.message or 'Working'}: " + ", ".join(parts)


class AsciiBar(BarRenderable):
    """The bar for console fonts: "#" done, "-" to go, readable without colour (NO_COLOR) too."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = self.width or options.max_width
        start, end = self.highlight_range
        done = max(0, min(width, round(end))) if start <= 0 else 0
        yield Text("#" * done, style=console.get_style(self.highlight_style), end="")
        yield Text("-" * (width - done), style=console.get_style(self.background_style), end="")


class ProgressScreen(Screen[InstallOutcome]):
    """Runs the plan with the real engine and shows it; dismisses with an :class:`InstallOutcome`."""

    HELP = ("Progress: the steps of the install on the left, what the tools say on the right, and below them "
            "the bytes written so far with the time left. Ctrl+C asks, then cancels cleanly: everything "
            "mounted or attached is released and you can start again without rebooting. The full log is "
            "written to the log file named on the next screen.")

    BINDINGS = [
        # Priority: no focused widget may take Ctrl-C (copy) away from the question.
        Binding("ctrl+c", "request_cancel", "Cancel install", priority=True),
        # Nothing to go back to while the disk is being written.
        Binding("escape", "nothing", show=False),
    ]

    class Engine(Message):
        """One engine event, posted from the install thread."""

        bubble = False

        def __init__(self, event: Event) -> None:
            super().__init__()
            self.event = event

        def can_replace(self, message: Message) -> bool:
            # Only adjacent queued byte counts merge: a newer count makes the older one stale.
            other = getattr(message, "event", None)
            return isinstance(self.event, ProgressEvent) and isinstance(other, ProgressEvent)

    class ToolOutput(Message):
        """One line a tool printed (already redacted by the runner)."""

        bubble = False

        def __init__(self, line: str) -> None:
            super().__init__()
            self.line = line

    class RecoveryKey(Message):
        """The engine made a TPM2 recovery key; ``noted`` is set once the user has seen it."""

        bubble = False

        def __init__(self, key: SecretStr, noted: threading.Event) -> None:
            super().__init__()
            self.key = key
            self.noted = noted

    class Finished(Message):
        """The engine returned; posted after its last event, so the screen has shown everything."""

        bubble = False

        def __init__(self, outcome: InstallOutcome) -> None:
            super().__init__()
            self.outcome = outcome

    def __init__(self, plan: InstallPlan, *, dry_run: bool = False) -> None:
        super().__init__()
        self.plan = plan
        self.dry_run = dry_run
        self.ctx = RunContext(dry_run=dry_run)
        """The run's context: its cancel flag and its redactor."""
        self.log_path = str(log_file_path())
        self.last_progress: ProgressEvent | None = None
        """The newest byte count shown (None until the first)."""
        self.outcome: InstallOutcome | None = None
        """Set when the engine has returned."""
        self.cancelling = False
        """Cancel was confirmed and the engine is unwinding."""

    # -- layout ------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        ascii_only = console_look(self.app)
        yield Static("Dry run: nothing will be written" if self.dry_run else "Installing", classes="title",
                     id="progress-title")
        yield Static(f"{self.plan.image.ref} onto {self.plan.target.path}", id="progress-what")
        with Horizontal(id="progress-main"):
            with VerticalScroll(id="progress-steps") as steps:
                steps.border_title = "Steps"
                steps.can_focus = False
                yield StepList(step_titles(self.plan), ascii_only=ascii_only,
                               id="step-list")
            log_view = LogView(id="progress-log")
            log_view.border_title = "Log"
            yield log_view
        yield StatusLine("Starting", id="progress-status")
        yield ProgressBar(total=len(step_titles(self.plan)), show_eta=False, id="progress-bar")
        yield Footer()

    def on_mount(self) -> None:
        if console_look(self.app):
            self.query_one("#progress-bar #bar").bar_renderable = AsciiBar  # type: ignore[attr-defined]
        self.ctx.on_output = lambda line: self.post_message(self.ToolOutput(line))
        self._run_engine()

    def on_unmount(self) -> None:
        # Leaving the screen (the app quitting) must never leave the engine writing on its own.
        self.ctx.cancel.set()

    # -- the engine thread ---------------------------------------------------------------------------
    @work(thread=True, exit_on_error=False, exclusive=True, group="install")
    def _run_engine(self) -> InstallOutcome:
        outcome = self._install()
        self.post_message(self.Finished(outcome))
        return outcome

    def _install(self) -> InstallOutcome:
        with RunLog(self.ctx.redactor) as run_log:
            self.log_path = path = str(run_log.path)
            try:
                run_install(self.plan, emit=lambda event: self.post_message(self.Engine(event)), ctx=self.ctx,
                            confirm=lambda _what: True, log_snapshot=run_log.this_run,
                            on_recovery_key=self._recovery_key)
            except Cancelled as exc:
                return InstallOutcome(ok=False, message="The install was cancelled", log_path=path,
                                      error=exc.message, hint=exc.hint, cancelled=True)
            except NbcError as exc:
                return InstallOutcome(ok=False, message="Installation failed", log_path=path, error=exc.message,
                                      hint=exc.hint)
            except Exception as exc:
                # A bug, not a user's problem: still a clean failure screen, with the traceback in the log.
                log.exception("unexpected error in the install")
                self.post_message(self.Engine(ErrorEvent(message="Installation failed",
                                                         details={"error": f"unexpected error: {exc}"})))
                return InstallOutcome(ok=False, message="Installation failed", log_path=path,
                                      error=self.ctx.redactor(f"unexpected error: {exc}"),
                                      hint="this is a bug in nbc-tui; the log file has the details")
        if self.dry_run:
            return InstallOutcome(ok=True, message="Dry run complete: nothing was written", log_path=path)
        return InstallOutcome(ok=True, message="Installation complete! You can now boot from this disk.",
                              log_path=path)

    def _recovery_key(self, key: SecretStr) -> None:
        """In the engine thread: show the key and wait until it is noted (or the install is cancelled)."""
        self.ctx.redactor.add(key)  # from now on no log line or tool output can carry it
        noted = threading.Event()
        self.post_message(self.RecoveryKey(key, noted))
        while not noted.wait(0.2):
            if self.ctx.cancel.is_set():
                return

    @on(RecoveryKey)
    def _show_recovery_key(self, message: RecoveryKey) -> None:
        self.query_one(LogView).add("A recovery key was created and is shown now (it is not logged)", LineKind.STEP)
        self.app.push_screen(RecoveryKeyScreen(message.key), lambda _: message.noted.set())

    # -- events --------------------------------------------------------------------------------------
    @on(Engine)
    def _show_event(self, message: Engine) -> None:
        event = message.event
        steps = self.query_one(StepList)
        log_view = self.query_one(LogView)
        bar = self.query_one(ProgressBar)
        status = self.query_one("#progress-status", StatusLine)
        text = self.ctx.redactor(event.message or "")
        if isinstance(event, StepEvent):
            steps.start(event.step, event.total_steps, event.step_name)
            log_view.add(f"Step {event.step}/{event.total_steps}: {event.step_name}", LineKind.STEP)
            if not self.cancelling:
                status.say(f"Step {event.step} of {event.total_steps}: {event.step_name}")
            bar.update(total=event.total_steps, progress=event.step - 1)
        elif isinstance(event, ProgressEvent):
            self.last_progress = event
            d = event.details or {}
            if not self.cancelling:
                status.say(self.ctx.redactor(describe_bytes(event)))
            bar.update(total=max(d.get("bytes_total", 0), 1), progress=d.get("bytes_done", 0))
        elif isinstance(event, WarningEvent):
            log_view.add(text, LineKind.WARNING)
        elif isinstance(event, ErrorEvent):
            steps.finish(ok=False)
            d = event.details or {}
            error = self.ctx.redactor(str(d.get("error") or text))
            log_view.add(error, LineKind.ERROR)
            if d.get("hint"):
                log_view.add(self.ctx.redactor(str(d["hint"])), LineKind.MESSAGE)
            status.say(f"{text}: {error}", "error")
        elif isinstance(event, CompleteEvent):
            steps.finish(ok=True)
            log_view.add(text, LineKind.STEP)
            status.say(text, "good")
            bar.update(total=1, progress=1)
        elif isinstance(event, MessageEvent):
            verbose = bool((event.details or {}).get("verbose"))
            log_view.add(text, LineKind.DETAIL if verbose else LineKind.MESSAGE)

    @on(ToolOutput)
    def _show_tool_output(self, message: ToolOutput) -> None:
        self.query_one(LogView).add(self.ctx.redactor(message.line), LineKind.TOOL)

    @on(Finished)
    def _finish(self, message: Finished) -> None:
        self._end(message.outcome)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Only a crash of the thread itself lands here (the install's own errors become outcomes).
        if event.state is WorkerState.ERROR and self.outcome is None:
            error = self.ctx.redactor(str(event.worker.error))
            self.query_one(LogView).add(error, LineKind.ERROR)
            self._end(InstallOutcome(ok=False, message="Installation failed", log_path=self.log_path,
                                     error=f"unexpected error: {error}",
                                     hint="this is a bug in nbc-tui; the log file has the details"))

    def _end(self, outcome: InstallOutcome) -> None:
        if self.outcome is not None:
            return
        self.outcome = outcome
        if self.app.screen is not self:
            self.pop_until_active()  # a cancel question still open has nothing left to ask
        self.dismiss(outcome)

    # -- actions -------------------------------------------------------------------------------------
    def action_request_cancel(self) -> None:
        if self.outcome is not None or self.cancelling:
            return
        self.app.push_screen(CancelInstallScreen(), self._cancel_answered)

    def _cancel_answered(self, cancel: bool | None) -> None:
        if not cancel or self.outcome is not None:
            return
        self.cancelling = True
        self.ctx.cancel.set()
        self.query_one("#progress-status", StatusLine).say("Cancelling: releasing mounts and loop devices...",
                                                           "warning")
        self.query_one(LogView).add("Cancel requested: stopping and cleaning up", LineKind.WARNING)

    def action_nothing(self) -> None:
        self.notify("The install is running; Ctrl-C cancels it.", timeout=3)

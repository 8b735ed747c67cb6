"""DoneScreen: the end of an install. On success: reboot, power off or stay; on failure: the error in
words, where the log is, and a retry from the start without rebooting.

Saving the answers of this install (issue 5) is not offered yet.
"""

from __future__ import annotations

from typing import Literal, Protocol

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Button, Footer, Static

from ..draft import PlanDraft

Choice = Literal["reboot", "poweroff", "stay", "retry"]


class Outcome(Protocol):
    """What DoneScreen reads of the progress screen's InstallOutcome (screens/progress.py)."""

    ok: bool
    message: str
    log_path: str


class DoneScreen(Screen[str]):
    """Dismisses "reboot", "poweroff", "stay" (leave the installer) or "retry" (start again)."""

    HELP = ("Done: after a successful install to a disk, reboot into the new system or power off. "
            "After a failure, Retry starts from the first screen again with your answers kept.")
    BINDINGS = [Binding("escape", "choose('stay')", "Leave", show=False)]

    def __init__(self, outcome: Outcome, draft: PlanDraft, *, dry_run: bool | None = None) -> None:
        super().__init__()
        self.outcome = outcome
        self.draft = draft
        self._dry_run = dry_run

    @property
    def dry_run(self) -> bool:
        return self._dry_run if self._dry_run is not None else bool(getattr(self.app, "dry_run", False))

    @property
    def can_restart_machine(self) -> bool:
        """Rebooting only makes sense after a real install onto a disk of this machine."""
        return self.outcome.ok and self.draft.device is not None and not self.dry_run

    def compose(self) -> ComposeResult:
        ok = self.outcome.ok
        yield Static("Finished" if ok else "The install failed", classes="title")
        with VerticalScroll(classes="body"):
            yield Static(Content(self._words()), id="done-text", classes="lead " + ("ok" if ok else "problem"))
            log_path = getattr(self.outcome, "log_path", "")
            if log_path:
                yield Static(Content(f"The log of this run: {log_path}"), id="log-path", classes="lead")
        with Horizontal(classes="buttons"):
            if self.can_restart_machine:
                yield Button("Stay", id="stay")
                yield Button("Power off", id="poweroff")
                yield Button("Reboot", id="reboot", variant="primary")
            elif ok:
                yield Button("Install again", id="retry")
                yield Button("Leave", id="stay", variant="primary")
            else:
                yield Button("Leave", id="stay")
                yield Button("Retry from the start", id="retry", variant="primary")
        yield Footer()

    def _words(self) -> str:
        outcome = self.outcome
        if outcome.ok:
            lines = [outcome.message or "The installation is complete."]
            if self.dry_run:
                lines.append("This was a dry run: nothing was written.")
            elif self.draft.image_file is not None:
                lines.append(f"The disk-image file is {self.draft.image_file}; boot it with UEFI firmware "
                             "(for example QEMU with OVMF).")
            else:
                lines.append("Remove the installation medium, then reboot into the new system.")
            return "\n".join(lines)
        error = getattr(outcome, "error", None) or outcome.message or "The install stopped."
        hint = getattr(outcome, "hint", None)
        lines = [str(error)]
        if hint:
            lines.append(f"What to do: {hint}")
        lines.append("Nothing is left mounted; you can retry without rebooting.")
        return "\n".join(lines)

    def on_mount(self) -> None:
        self.query(Button).last().focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_choose(event.button.id or "stay")

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)

"""DoneScreen: the end of an install. On success: reboot, power off or stay, and "save these answers"
(the answer file of this install, secrets left out, for ``nbc-tui --headless``); on failure: the error in
words, where the log is, and a retry from the start without rebooting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal, Protocol

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.widgets import Button, Input, Label, Static

from ..backend.answers import save_answers
from ..backend.errors import NbcError
from ..backend.plan import InstallPlan
from ..draft import PlanDraft
from .wizard import WizardScreen

ANSWERS_PATHS = (Path("/root/nbc-tui-answers.toml"), Path("/var/log/nbc-tui/answers.toml"))
"""Where the answers are offered to go: root's home, else beside the logs (a live system's /root may be
read-only)."""


def default_answers_path(candidates: tuple[Path, ...] = ANSWERS_PATHS) -> Path:
    """The first candidate whose folder this process can write to (the first one when none can)."""
    for path in candidates:
        if path.parent.is_dir() and os.access(path.parent, os.W_OK):
            return path
    return candidates[0]


Choice = Literal["reboot", "poweroff", "stay", "retry"]


class Outcome(Protocol):
    """What DoneScreen reads of the progress screen's InstallOutcome (screens/progress.py)."""

    ok: bool
    message: str
    log_path: str


class DoneScreen(WizardScreen[str]):
    """Dismisses "reboot", "poweroff", "stay" (leave the installer) or "retry" (start again): each button
    ends the screen with its id, so there is no Continue."""

    HELP = ("Done: after a successful install to a disk, reboot into the new system or power off. "
            "After a failure, Retry starts from the first screen again with your answers kept.")
    GOES_ON = False
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "choose('stay')", "Leave", show=False)]

    def __init__(self, outcome: Outcome, draft: PlanDraft, *, dry_run: bool | None = None,
                 plan: InstallPlan | None = None, answers_path: Path | None = None) -> None:
        super().__init__()
        self.outcome = outcome
        self.draft = draft
        self._dry_run = dry_run
        self.plan = plan
        """The plan that ran: offered as an answer file after a success (None: nothing to save)."""
        self.answers_path = answers_path
        """The path offered for the answer file (None: :func:`default_answers_path`)."""
        self.saved: Path | None = None
        """Where the answers were last saved."""

    @property
    def heading(self) -> str:
        return "Finished" if self.outcome.ok else "The install failed"

    @property
    def dry_run(self) -> bool:
        return self._dry_run if self._dry_run is not None else bool(getattr(self.app, "dry_run", False))

    @property
    def can_restart_machine(self) -> bool:
        """Rebooting only makes sense after a real install onto a disk of this machine."""
        return self.outcome.ok and self.draft.device is not None and not self.dry_run

    def compose_body(self) -> ComposeResult:
        ok = self.outcome.ok
        with VerticalScroll(classes="body"):
            yield Static(Content(self._words()), id="done-text", classes="lead " + ("ok" if ok else "problem"))
            log_path = getattr(self.outcome, "log_path", "")
            if log_path:
                yield Static(Content(f"The log of this run: {log_path}"), id="log-path", classes="lead")
            if self.can_save:
                with Horizontal(id="save-row"):
                    yield Label("Save these answers to:")
                    yield Input(str(self.answers_path or default_answers_path()), id="answers-path",
                                select_on_focus=False)
                    yield Button("Save answers", id="save-answers")

    def compose_buttons(self) -> ComposeResult:
        if self.can_restart_machine:
            yield Button("Stay", id="stay")
            yield Button("Power off", id="poweroff")
            yield Button("Reboot", id="reboot", variant="primary")
        elif self.outcome.ok:
            yield Button("Install again", id="retry")
            yield Button("Leave", id="stay", variant="primary")
        else:
            yield Button("Leave", id="stay")
            yield Button("Retry from the start", id="retry", variant="primary")

    @property
    def can_save(self) -> bool:
        return self.outcome.ok and self.plan is not None

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
        self.query("#buttons Button").last().focus()

    @on(Button.Pressed, "#stay, #poweroff, #reboot, #retry")
    def _chosen(self, event: Button.Pressed) -> None:
        self.action_choose(event.button.id or "stay")

    @on(Button.Pressed, "#save-answers")
    def _save_pressed(self) -> None:
        self.write_answers()

    @on(Input.Submitted, "#answers-path")
    def _path_submitted(self, event: Input.Submitted) -> None:
        event.prevent_default()  # Enter here saves (not WizardScreen's next field)
        self.write_answers()

    def write_answers(self) -> Path | None:
        """Write the answer file to the typed path; says where, or why not, in words."""
        assert self.plan is not None
        text = self.query_one("#answers-path", Input).value.strip()
        if not text:
            self.say("Type the path of the answer file first.", "error")
            return None
        path = Path(text).expanduser().absolute()
        try:
            self.saved = save_answers(self.plan, path)
        except NbcError as exc:  # the folder is missing or not one, the file cannot be written: it says which
            self.say(f"{exc.message}. Choose another place.", "error")
            return None
        system = self.plan.system
        secrets = [w for w, given in (("the root password", system.root_password),
                                      ("the passphrase", self.plan.encryption and self.plan.encryption.passphrase),
                                      *((f"the password of {u.name}", u.password) for u in system.users))
                   if given is not None]
        listed = " and ".join([", ".join(secrets[:-1]), secrets[-1]] if len(secrets) > 1 else secrets)
        left_out = f" ({listed} left out: the file says how to give them)" if secrets else ""
        self.say(f"Saved to {path}{left_out}. Replay with: nbc-tui --headless --answers {path}", "good")
        return self.saved

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)

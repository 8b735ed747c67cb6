"""WelcomeScreen: what this machine offers for an install (the engine's survey), each problem in words with
what to do."""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Button, Static

from ..backend.machine import Check, Severity, survey_machine
from .wizard import WizardScreen

# How each state is marked: plain ASCII so the Linux console shows it too.
MARK = {"ok": "[ ok ]", "notice": "[note]", "problem": "[ !! ]"}


class WelcomeScreen(WizardScreen[bool]):
    """The first screen. ``checks`` replaces the survey of this machine (tests, snapshots). Back is Quit."""

    HEADING = "nbc-tui: install a bootable container image"
    HELP = ("Welcome: this screen lists what this machine offers for an install. Problems marked [ !! ] "
            "stop a real install; notes are for your information. Continue with Enter.")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.request_quit", "Quit", show=False)]

    def __init__(self, *, checks: list[Check] | None = None) -> None:
        super().__init__()
        self.checks = checks

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(classes="body"):
            yield Static(Content(
                "This installer puts a bootable OCI container image onto a disk, with two root slots "
                "(A and B) so that updates can be rolled back. Nothing is written until you confirm "
                "on the review screen."), classes="lead")
            if getattr(self.app, "dry_run", False):
                yield Static("Dry run: the whole flow is shown, nothing is written.", classes="notice lead")
            yield Vertical(id="checks")

    def compose_buttons(self) -> ComposeResult:
        yield Button("Quit", id="quit")
        yield Button("Continue", id="continue", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#continue", Button).focus()
        if self.checks is not None:
            self.show_checks(self.checks)
        else:
            self.say("Checking this machine...")
            self.survey()

    @work(thread=True, exit_on_error=False, group="survey")
    def survey(self) -> None:
        checks = survey_machine()
        self.app.call_from_thread(self.show_checks, checks)

    def show_checks(self, checks: list[Check]) -> None:
        self.checks = checks
        self.say("")
        box = self.query_one("#checks", Vertical)
        box.remove_children()
        box.mount_all(Static(Content(f"{MARK[c.severity]} {c.text}"), classes=f"check {c.severity}",
                             id=f"check-{c.key}") for c in checks)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks or () if c.severity is Severity.PROBLEM]

    def save(self) -> bool:
        return True

    @on(Button.Pressed, "#quit")
    def action_back(self) -> None:
        self.app.action_request_quit()  # type: ignore[attr-defined]

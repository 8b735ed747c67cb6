"""WelcomeScreen: what this machine offers for an install (the engine's survey), each problem in words with
what to do; and the keyboard the user types on, switched here (F3) before any passphrase is typed."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Button, Static

from ..backend.console_keymap import console_keymaps, serial_console, switch_console_keymap
from ..backend.live_defaults import LiveDefaults, live_defaults
from ..backend.machine import Check, Severity, survey_machine
from ..draft import PlanDraft
from ..widgets.keymap_dialog import KeymapDialog
from .wizard import WizardScreen

# How each state is marked: plain ASCII so the Linux console shows it too.
MARK = {"ok": "[ ok ]", "notice": "[note]", "problem": "[ !! ]"}
KERNEL_DEFAULT = "us (the kernel's default)"
"""The keyboard named when the live system says none: the kernel's built-in keymap is a US layout."""


class WelcomeScreen(WizardScreen[bool]):
    """The first screen. Back is Quit. Stand-ins for tests and snapshots: ``checks`` for the survey of this
    machine, ``keymaps`` and ``switch`` for its console keymaps and loading one, ``defaults`` for the live
    system's settings, ``tty`` for the name of the terminal the TUI runs on."""

    HEADING = "nbc-tui: install a bootable container image"
    HELP = ("Welcome: what this machine offers for an install. Problems marked [ !! ] stop a real install; "
            "notes are for your information. F3 switches this machine's keyboard to your layout before you type "
            "a passphrase (try it in the dialog); the system screen offers the same keymap for the installed "
            "system. Continue with Enter.")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.request_quit", "Quit", show=False),
        Binding("f3", "keyboard", "Keyboard"),
    ]

    def __init__(self, draft: PlanDraft, *, checks: list[Check] | None = None, keymaps: list[str] | None = None,
                 switch: Callable[[str], None] | None = None, defaults: LiveDefaults | None = None,
                 tty: str | None = None) -> None:
        super().__init__()
        self.draft = draft
        self.checks = checks
        self.keymaps = keymaps
        self.switch = switch or switch_console_keymap
        self.serial = serial_console(tty)
        live = (live_defaults() if defaults is None else defaults).keymap
        self.keyboard = draft.console_keymap or live or ""
        """The keymap of this machine's consoles as far as known ("": the kernel's own)."""

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(classes="body"):
            yield Static(Content(
                "This installer puts a bootable OCI container image onto a disk, with two root slots "
                "(A and B) so that updates can be rolled back. Nothing is written until you confirm "
                "on the review screen."), classes="lead")
            if getattr(self.app, "dry_run", False):
                yield Static("Dry run: the whole flow is shown, nothing is written.", classes="notice lead")
            yield Vertical(id="checks")
            yield Static(id="keyboard-line", classes="lead")
            if self.serial:
                yield Static(Content(f"This is a serial console ({self.serial}): your keys come from your own "
                                     "terminal's layout, and F3 switches the keyboard of this machine's own "
                                     "screen."), id="keyboard-serial", classes="notice")

    def compose_buttons(self) -> ComposeResult:
        yield Button("Quit", id="quit")
        yield Button("Keyboard", id="keyboard")
        yield Button("Continue", id="continue", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#continue", Button).focus()
        self.show_keyboard()
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

    # -- the keyboard -----------------------------------------------------------------------------

    def show_keyboard(self) -> None:
        self.query_one("#keyboard-line", Static).update(Content(
            f"Keyboard: {self.keyboard or KERNEL_DEFAULT}. Check it before you type a passphrase: one typed "
            "on the wrong layout will not unlock the disk. F3 switches it."))

    @on(Button.Pressed, "#keyboard")
    def action_keyboard(self) -> None:
        keymaps = console_keymaps() if self.keymaps is None else self.keymaps
        self.app.push_screen(KeymapDialog(keymaps, switch=self.switch, current=self.keyboard or "us",
                                          serial=self.serial), callback=self._switched)

    def _switched(self, name: str | None) -> None:
        """The dialog closed: a keymap loaded there is what this machine types now, and what the system screen
        offers the installed system first."""
        if name:
            self.keyboard = self.draft.console_keymap = name
            self.show_keyboard()

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks or () if c.severity is Severity.PROBLEM]

    def save(self) -> bool:
        return True

    @on(Button.Pressed, "#quit")
    def action_back(self) -> None:
        self.app.action_request_quit()  # type: ignore[attr-defined]

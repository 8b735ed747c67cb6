"""OptionsScreen: filesystem, kernel arguments, root password (typed twice), bootloader."""

from __future__ import annotations

from pydantic import SecretStr
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, RadioButton, RadioSet, Static

from ..draft import PlanDraft
from ..widgets.secret_input import SecretInput

FILESYSTEMS = (("btrfs", "btrfs"), ("ext4", "ext4"))
BOOTLOADERS = (("auto", "Automatic"), ("grub", "GRUB"), ("systemd-boot", "systemd-boot"))


class ChoiceButton(RadioButton):
    """A radio button that draws ``(*)`` and ``( )`` on the console look: console fonts lack the
    default's half-block and bullet glyphs."""

    @property
    def _ascii(self) -> bool:
        return bool(getattr(self.app, "console_look", False))

    @property  # type: ignore[override]
    def BUTTON_LEFT(self) -> str:
        return "(" if self._ascii else RadioButton.BUTTON_LEFT

    @property  # type: ignore[override]
    def BUTTON_INNER(self) -> str:
        if self._ascii:
            return "*" if self.value else " "
        return RadioButton.BUTTON_INNER

    @property  # type: ignore[override]
    def BUTTON_RIGHT(self) -> str:
        return ")" if self._ascii else RadioButton.BUTTON_RIGHT


def _choices(set_id: str, choices: tuple[tuple[str, str], ...], current: str) -> RadioSet:
    return RadioSet(*(ChoiceButton(label, value=value == current, name=value, id=f"{set_id}-{value}")
                      for value, label in choices), id=set_id)


def _chosen(radio_set: RadioSet, default: str) -> str:
    button = radio_set.pressed_button
    return button.name if button is not None and button.name else default


class OptionsScreen(Screen[bool]):
    """Fills the draft's filesystem, bootloader, kernel arguments and root password; dismisses True, or
    None for back. Two different passwords are refused in words and the screen stays."""

    HELP = ("Options: the filesystem of the root slots and /var, the bootloader (Automatic uses "
            "systemd-boot when the image carries it, else GRUB), extra kernel arguments separated by "
            "spaces, and the root password typed twice (leave both empty to set none).")

    def __init__(self, draft: PlanDraft) -> None:
        super().__init__()
        self.draft = draft

    def compose(self) -> ComposeResult:
        yield Static("Options", classes="title")
        with VerticalScroll(classes="body"):
            with Horizontal(classes="row"):
                yield Static("Filesystem", classes="row-label")
                yield _choices("filesystem", FILESYSTEMS, self.draft.filesystem)
            with Horizontal(classes="row"):
                yield Static("Bootloader", classes="row-label")
                yield _choices("bootloader", BOOTLOADERS, self.draft.bootloader)
            with Horizontal(classes="row"):
                yield Static("Kernel arguments", classes="row-label")
                yield Input(" ".join(self.draft.kernel_args), placeholder="e.g. console=ttyS0 quiet",
                            id="kernel-args", select_on_focus=False)
            with Horizontal(classes="row"):
                yield Static("Root password", classes="row-label")
                yield SecretInput(placeholder="empty: no root password", id="password")
            with Horizontal(classes="row"):
                yield Static("Again", classes="row-label")
                yield SecretInput(placeholder="the same password again", id="password-again")
            yield Static("", id="options-message", classes="message")
        with Horizontal(classes="buttons"):
            yield Button("Back", id="back")
            yield Button("Continue", id="continue", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        if self.draft.root_password is not None:
            secret = self.draft.root_password.get_secret_value()
            self.query_one("#password", Input).value = secret
            self.query_one("#password-again", Input).value = secret
        self.query_one("#filesystem", RadioSet).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        # Enter in a field moves on to the next one; only the Continue button leaves the screen.
        event.stop()
        self.focus_next()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "back":
            self.dismiss(None)
        elif event.button.id == "continue" and self.save():
            self.dismiss(True)

    def save(self) -> bool:
        """Copy the fields into the draft; False (and a message in words) when the passwords differ."""
        password = self.query_one("#password", Input).value
        again = self.query_one("#password-again", Input).value
        message = self.query_one("#options-message", Static)
        if password != again:
            message.update(Content("The two passwords differ: type the same password in both fields."))
            message.set_classes("message -error")
            self.query_one("#password-again", Input).value = ""
            self.query_one("#password", Input).focus()
            return False
        self.draft.filesystem = _chosen(self.query_one("#filesystem", RadioSet), "btrfs")
        self.draft.bootloader = _chosen(self.query_one("#bootloader", RadioSet), "auto")
        self.draft.kernel_args = self.query_one("#kernel-args", Input).value.split()
        self.draft.root_password = SecretStr(password) if password else None
        message.update("")
        return True

"""OptionsScreen: filesystem, kernel arguments, root password (typed twice), bootloader."""

from __future__ import annotations

from pydantic import SecretStr
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Static

from ..draft import PlanDraft
from ..widgets.choice_set import ChoiceSet
from ..widgets.secret_input import SecretInput
from .wizard import WizardScreen

FILESYSTEMS = (("btrfs", "btrfs"), ("ext4", "ext4"))
BOOTLOADERS = (("auto", "Automatic"), ("grub", "GRUB"), ("systemd-boot", "systemd-boot"))


class OptionsScreen(WizardScreen[bool]):
    """Fills the draft's filesystem, bootloader, kernel arguments and root password; dismisses True, or
    None for back. Two different passwords are refused in words and the screen stays."""

    HEADING = "Options"
    HELP = ("Options: the filesystem of the root slots and /var, the bootloader (Automatic uses "
            "systemd-boot when the image carries it, else GRUB), extra kernel arguments separated by "
            "spaces, and the root password typed twice (leave both empty to set none).")

    def __init__(self, draft: PlanDraft) -> None:
        super().__init__()
        self.draft = draft

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(classes="body"):
            with Horizontal(classes="row"):
                yield Static("Filesystem", classes="row-label")
                yield ChoiceSet(FILESYSTEMS, picked=self.draft.filesystem, id="filesystem")
            with Horizontal(classes="row"):
                yield Static("Bootloader", classes="row-label")
                yield ChoiceSet(BOOTLOADERS, picked=self.draft.bootloader, id="bootloader")
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

    def on_mount(self) -> None:
        if self.draft.root_password is not None:
            secret = self.draft.root_password.get_secret_value()
            self.query_one("#password", Input).value = secret
            self.query_one("#password-again", Input).value = secret
        self.query_one("#filesystem", ChoiceSet).focus()

    def save(self) -> bool | None:
        """Copy the fields into the draft; None (and a message in words) when the passwords differ."""
        password = self.query_one("#password", Input).value
        again = self.query_one("#password-again", Input)
        if password != again.value:
            self.say("The two passwords differ: type the same password in both fields.", "error")
            again.value = ""
            self.query_one("#password", Input).focus()
            return None
        self.draft.filesystem = self.query_one("#filesystem", ChoiceSet).picked or "btrfs"
        self.draft.bootloader = self.query_one("#bootloader", ChoiceSet).picked or "auto"
        self.draft.kernel_args = self.query_one("#kernel-args", Input).value.split()
        self.draft.root_password = SecretStr(password) if password else None
        self.say("")
        return True

"""CancelInstallScreen: "Cancel the install?" asked on Ctrl+C during an install. Keeping on is the default;
cancelling takes a second, deliberate key."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class CancelInstallScreen(ModalScreen[bool]):
    """Dismisses True to cancel the install, False to keep installing."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "keep", "Keep installing", show=False),
        Binding("y", "cancel_install", "Cancel the install", show=False),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="cancel-install-dialog"):
            yield Static("Cancel the install?", id="cancel-question")
            yield Static("The install stops at its next check and releases everything it mounted or "
                         "attached. The target keeps what was written so far and will not boot; you can "
                         "start again without rebooting.", id="cancel-explanation", classes="lead")
            yield Static("Y cancels; Enter or Esc keeps installing.", classes="lead")
            with Horizontal(classes="buttons"):
                yield Button("Keep installing", id="keep")
                yield Button("Cancel the install", id="cancel-install", variant="error")

    def on_mount(self) -> None:
        self.query_one("#keep", Button).focus()

    @on(Button.Pressed, "#keep")
    def action_keep(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#cancel-install")
    def action_cancel_install(self) -> None:
        self.dismiss(True)

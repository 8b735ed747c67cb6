"""ConfirmQuit: the question before the installer quits ("Stay" is the default answer; Esc means stay)."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmQuit(ModalScreen[bool]):
    """Dismisses True to quit, False to stay."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "stay", "Stay", show=False),
        Binding("y", "quit", "Quit", show=False),
    ]

    def __init__(self, question: str = "Quit the installer?",
                 detail: str = "Nothing has been written to any disk.") -> None:
        super().__init__()
        self.question = question
        self.detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="confirm-quit"):
            yield Static(Content(self.question), classes="lead")
            yield Static(Content(self.detail))
            with Horizontal(classes="buttons"):
                yield Button("Stay", id="stay")
                yield Button("Quit", id="quit", variant="error")

    def on_mount(self) -> None:
        self.query_one("#stay", Button).focus()

    @on(Button.Pressed, "#stay")
    def action_stay(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#quit")
    def action_quit(self) -> None:
        self.dismiss(True)

"""HelpDialog (F1): what the current screen is for (its ``HELP``), then the keys that work everywhere."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static

GENERAL_KEYS = (
    "Tab, Shift+Tab  move between fields and buttons\n"
    "Enter           press the focused button; in a field, go\n"
    "                to the next one (from the last, go on)\n"
    "Space           pick the focused choice; Enter picks it\n"
    "                too, and on the picked choice goes on\n"
    "Ctrl+N          Continue, on the screens that have it\n"
    "Esc             go back one screen (nothing is lost)\n"
    "F1              this help\n"
    "Ctrl+C          quit (you are asked first)"
)


class HelpDialog(ModalScreen[None]):
    """Esc, F1, q or Enter (on Close) closes it."""

    DEFAULT_CSS = """
    HelpDialog #help-text {
        height: auto;
        max-height: 16;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,f1,q", "close", "Close", show=False)]

    def __init__(self, topic: str | None = None) -> None:
        super().__init__()
        self.topic = topic

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="help"):
            with VerticalScroll(id="help-text"):
                if self.topic:
                    yield Static(Content(self.topic.strip()), classes="help-topic")
                yield Static(Content(GENERAL_KEYS), classes="lead")
            with Horizontal(classes="buttons"):
                yield Button("Close", id="close")

    def on_mount(self) -> None:
        self.query_one("#close", Button).focus()

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)

"""Small modal dialogs: the question before quitting, and the help box (F1)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static

GENERAL_KEYS = (
    "Tab, Shift+Tab  move between fields and buttons\n"
    "Enter           press the focused button\n"
    "Space           pick the focused choice\n"
    "Esc             go back one screen (nothing is lost)\n"
    "F1              this help\n"
    "Ctrl+C          quit (you are asked first)"
)


class ConfirmQuit(ModalScreen[bool]):
    """Asks before the installer quits; "Stay" is the default answer, Esc means stay."""

    BINDINGS = [
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

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "quit")

    def action_stay(self) -> None:
        self.dismiss(False)

    def action_quit(self) -> None:
        self.dismiss(True)


class HelpDialog(ModalScreen[None]):
    """The keys that work everywhere and what the current screen is for. Esc, F1 or Enter closes it."""

    BINDINGS = [Binding("escape,f1,q", "close", "Close", show=False)]

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

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)

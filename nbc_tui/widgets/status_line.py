"""StatusLine: what a screen is doing, or why it stays, in words: a reactive message drawn in the colour of
its kind. Every wizard screen has one above its buttons (screens/wizard.py); the progress screen shows the
install's state in one."""

from __future__ import annotations

from typing import Literal, get_args

from textual.reactive import reactive
from textual.widgets import Static

Kind = Literal["info", "warning", "error", "good"]
KINDS: tuple[Kind, ...] = get_args(Kind)


class StatusLine(Static):
    """One message at a time; setting :attr:`message` or :attr:`kind` redraws it. Never markup: a message
    may quote a path, a reference or a tool's words."""

    DEFAULT_CSS = """
    StatusLine {
        height: auto;
        min-height: 1;
        &.-warning { color: $warning; }
        &.-error { color: $error; }
        &.-good { color: $success; }
    }
    """

    message: reactive[str] = reactive("")
    """What the line says ("" leaves it blank)."""
    kind: reactive[Kind] = reactive[Kind]("info")
    """How it is drawn: info in the text colour, the others in the theme's warning, error and success colours."""

    def __init__(self, message: str = "", *, kind: Kind = "info", id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(markup=False, id=id, classes=classes)
        self.set_reactive(StatusLine.message, message)
        self.set_reactive(StatusLine.kind, kind)

    def watch_message(self, message: str) -> None:
        self.update(message)

    def watch_kind(self, kind: Kind) -> None:
        for each in KINDS:
            self.set_class(each == kind, f"-{each}")

    def say(self, message: str, kind: Kind = "info") -> None:
        """Show ``message`` as ``kind``."""
        self.kind = kind
        self.message = message

    def clear(self) -> None:
        self.say("")

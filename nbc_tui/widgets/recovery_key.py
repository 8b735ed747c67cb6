"""RecoveryKeyScreen: the TPM2 recovery key, shown once, large enough to copy by hand; the install waits until
the user says it is written down."""

from __future__ import annotations

from typing import ClassVar

from pydantic import SecretStr
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


def key_lines(key: str, width: int = 40) -> str:
    """A recovery key broken between its dash-separated groups (never inside one) to fit ``width``."""
    groups, lines, line = key.split("-"), [], ""
    for group in groups:
        piece = group if not line else f"-{group}"
        if line and len(line) + len(piece) > width:
            lines.append(line + "-")
            line = group
        else:
            line += piece
    return "\n".join([*lines, line])


class RecoveryKeyScreen(ModalScreen[None]):
    """Dismissed only by "I have written it down": Esc must not hide the key before that."""

    DEFAULT_CSS = """
    RecoveryKeyScreen #recovery-key {
        margin: 1 0 0 0;
        padding: 0 1;
        text-style: bold;
        background: $boost;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "nothing", show=False)]

    def __init__(self, key: SecretStr) -> None:
        super().__init__()
        self.key = key

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="recovery-key-dialog"):
            yield Static("Write down this recovery key", classes="lead")
            yield Static(key_lines(self.key.get_secret_value()), id="recovery-key")
            yield Static("It unlocks the disk when the TPM will not (after a firmware, Secure Boot or "
                         "motherboard change). It is shown only this once and is not in any log. Keep it "
                         "apart from this machine.", classes="lead")
            with Horizontal(classes="buttons"):
                yield Button("I have written it down", id="recovery-key-noted", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#recovery-key-noted", Button).focus()

    @on(Button.Pressed, "#recovery-key-noted")
    def _noted(self) -> None:
        self.dismiss(None)

    def action_nothing(self) -> None:
        pass  # Esc must not hide the key before the user has confirmed it is written down

"""SecretInput: a masked Input that masks with "*" on the console look (console fonts may lack "•").

Like every Input of the installer it does not select its text on focus: Textual selects on the Focus
event, and keys typed right after Tab on a loaded machine (or a serial line) would replace the text
already typed."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Input

from ..look import console_look


class SecretInput(Input):
    """An Input for a passphrase or password: always masked; the mask is ASCII on the console look."""

    def __init__(self, value: str | None = None, *, placeholder: str = "", id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(value, placeholder=placeholder, password=True, id=id, classes=classes,
                         select_on_focus=False)

    @property
    def _value(self) -> Text:
        if console_look(self.app):
            return Text("*" * len(self.value), no_wrap=True, overflow="ignore", end="")
        return super()._value

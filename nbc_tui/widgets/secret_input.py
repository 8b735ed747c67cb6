"""SecretInput: a masked Input that masks with "*" on the console look (console fonts may lack "•")."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Input


class SecretInput(Input):
    """An Input for a passphrase or password: always masked; the mask is ASCII on the console look."""

    def __init__(self, value: str | None = None, *, placeholder: str = "", id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(value, placeholder=placeholder, password=True, id=id, classes=classes)

    @property
    def _value(self) -> Text:
        if bool(getattr(self.app, "console_look", False)):
            return Text("*" * len(self.value), no_wrap=True, overflow="ignore", end="")
        return super()._value

"""ChoiceButton: a radio button that draws ``(*)`` and ``( )`` on the console look, whose fonts lack the
default's half-block and bullet glyphs."""

from __future__ import annotations

from textual.widgets import RadioButton

from ..look import console_look


class ChoiceButton(RadioButton):
    """A RadioButton; ASCII on the console look."""

    @property  # type: ignore[override]
    def BUTTON_LEFT(self) -> str:
        return "(" if console_look(self.app) else RadioButton.BUTTON_LEFT

    @property  # type: ignore[override]
    def BUTTON_INNER(self) -> str:
        if console_look(self.app):
            return "*" if self.value else " "
        return RadioButton.BUTTON_INNER

    @property  # type: ignore[override]
    def BUTTON_RIGHT(self) -> str:
        return ")" if console_look(self.app) else RadioButton.BUTTON_RIGHT

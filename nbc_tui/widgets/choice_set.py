"""ChoiceSet: one choice of a wizard form (a filesystem, a bootloader, how to unlock) as a RadioSet of
ChoiceButtons. Enter picks the highlighted choice; on the choice already picked it goes on (the screen's
Enter), as Enter on a chosen disk does on the disk screen. Space picks, as in any RadioSet."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from textual.actions import SkipAction
from textual.binding import Binding, BindingType
from textual.widgets import RadioSet

from .choice_button import ChoiceButton


class ChoiceSet(RadioSet):
    """``choices`` are (value, label) pairs; each button is named by its value and has the id
    ``{id}-{value}``. The highlight starts on the picked choice."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "pick_or_go_on", "Pick", show=False),
    ]

    def __init__(self, choices: Iterable[tuple[str, str]], *, picked: str, id: str) -> None:
        super().__init__(*(ChoiceButton(label, value=value == picked, name=value, id=f"{id}-{value}")
                           for value, label in choices), id=id)

    @property
    def picked(self) -> str | None:
        """The value of the picked choice."""
        button = self.pressed_button
        return button.name if button is not None else None

    def on_mount(self) -> None:
        # RadioSet's own mount handler runs after this one and highlights the first choice.
        self.call_later(self._highlight_picked)

    def _highlight_picked(self) -> None:
        if self.pressed_index >= 0:
            self._selected = self.pressed_index

    def action_pick_or_go_on(self) -> None:
        if self._selected is None or self._selected == self.pressed_index:
            raise SkipAction  # already picked: the key goes on to the screen
        self.action_toggle_button()

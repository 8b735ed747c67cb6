"""WizardScreen: what every step of the wizard shares, so that a step only composes its body and says
whether it may go on.

It owns the title line, the status line (a :class:`~nbc_tui.widgets.status_line.StatusLine` above the
buttons), the button row (Back and Continue unless a screen gives its own), the screen's ``HELP`` (shown by
F1), and going on and back:

- Continue, Ctrl+N (in the footer) and Enter go on: :meth:`WizardScreen.save` copies the fields into the
  draft and returns what the screen ends with, or None to stay (after saying why in the status line).
  Enter goes on wherever the focused widget has no use of its own for it: a button presses itself, a
  field moves to the next field (from the last one it goes on), a choice picks the highlighted option
  first (widgets/choice_set.py), the disk table chooses a disk. A screen that gives Enter in a field a
  meaning of its own (looking an image up) handles ``Input.Submitted`` for it and calls
  ``prevent_default()``, which keeps this class's handler out.
- Back and Esc end the screen with None: the wizard controller in app.py goes back one.
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Static

from ..widgets.status_line import Kind, StatusLine

ResultT = TypeVar("ResultT")


class WizardScreen(Screen[ResultT]):
    """One step: title, body (:meth:`compose_body`), status line, buttons (:meth:`compose_buttons`), footer."""

    HEADING: ClassVar[str] = ""
    """The title line (:attr:`heading` may compute it instead)."""
    HELP: ClassVar[str] = ""
    """What this screen is for, shown above the general keys by F1."""
    GOES_ON: ClassVar[bool] = True
    """False for a screen whose own buttons each end it (the done screen): Ctrl+N and Enter then do nothing."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+n", "go_on", "Continue"),
        Binding("enter", "go_on", "Continue", show=False),
    ]

    @property
    def heading(self) -> str:
        return self.HEADING

    # -- composing --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(self.heading, id="title", classes="title", markup=False)
        yield from self.compose_body()
        yield StatusLine(id="status")
        with Horizontal(id="buttons", classes="buttons"):
            yield from self.compose_buttons()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        """The screen's own widgets, between the title line and the status line."""
        yield from ()

    def compose_buttons(self) -> ComposeResult:
        """The button row; Back and Continue unless the screen says otherwise."""
        yield Button("Back", id="back")
        yield Button("Continue", id="continue", variant="primary")

    # -- the status line --------------------------------------------------------------------------

    @property
    def status(self) -> StatusLine:
        return self.query_one("#status", StatusLine)

    def say(self, message: str, kind: Kind = "info") -> None:
        """Show ``message`` in the status line ("" clears it)."""
        self.status.say(message, kind)

    # -- going on and back ------------------------------------------------------------------------

    def save(self) -> ResultT | None:
        """Copy the fields into the draft and return what the screen ends with; None stays (say why first)."""
        raise NotImplementedError

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.GOES_ON if action == "go_on" else True

    def action_go_on(self) -> None:
        result = self.save()
        if result is not None:
            self.dismiss(result)

    def action_back(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#continue")
    def _continue_pressed(self) -> None:
        self.action_go_on()

    @on(Button.Pressed, "#back")
    def _back_pressed(self) -> None:
        self.action_back()

    @on(Input.Submitted)
    def _next_field(self, event: Input.Submitted) -> None:
        """Enter in a field moves to the next field; from the last field (a button comes next) it goes on."""
        event.stop()
        chain = self.focus_chain
        following = chain[chain.index(event.input) + 1:] if event.input in chain else []
        if following and not isinstance(following[0], Button):
            following[0].focus()
        else:
            self.action_go_on()

"""KeymapDialog: switching this machine's console keyboard (F3 on the welcome screen), so that passphrases are
typed on the layout the user expects. Typing filters the keymaps, Up and Down move, Enter or Apply switches
(in a thread: ``loadkeys`` is a process), and a field below lets the user try the keys before closing. Its
styles are in assets/screens/keymap_dialog.tcss (after app.tcss, whose dialog padding it trims to fit 80x24)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from ..backend.errors import NbcError
from .name_filter import filter_names
from .status_line import Kind, StatusLine

SERIAL_NOTE = ("A serial console: your keys come from your own terminal's layout; this switches the keyboard "
               "of the machine's own screen.")


class KeymapDialog(ModalScreen[str | None]):
    """Dismisses with the keymap switched to (the last one when several were tried), or None when none was
    (Cancel, Esc). ``switch`` loads a keymap and raises an NbcError in words when it cannot; ``serial`` names the
    serial console the TUI runs on (None: not one)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", show=False),
        Binding("down", "move(1)", "Next keymap", show=False),
        Binding("up", "move(-1)", "Previous keymap", show=False),
    ]

    def __init__(self, keymaps: Sequence[str], *, switch: Callable[[str], None], current: str | None = None,
                 serial: str | None = None) -> None:
        super().__init__()
        self.keymaps = list(keymaps)
        self.switch = switch
        self.current = current
        self.serial = serial
        self.switched: str | None = None
        """The keymap loaded by this dialog (None: none yet)."""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="keymap-dialog"):
            yield Static(Content("The keyboard of this machine's consoles"), id="keymap-title")
            if self.serial:
                yield Static(Content(SERIAL_NOTE), classes="dialog-note", id="keymap-serial")
            yield Input(placeholder="type to filter, e.g. de; Up, Down, Enter", id="keymap-filter",
                        select_on_focus=False)
            options = OptionList(id="keymap-list", compact=True)
            options.can_focus = False  # keys go to the filter above; a click still picks
            yield options
            yield Input(placeholder="then try some keys here (not your passphrase)", id="keymap-try",
                        select_on_focus=False)
            yield StatusLine(id="keymap-status")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="keymap-close")
                yield Button("Apply", id="keymap-apply", variant="primary")

    def on_mount(self) -> None:
        self._filter("")
        if not self.keymaps:
            self.say("This system has no console keymaps (install console-data).", "error")
            self.query_one("#keymap-apply", Button).disabled = True
        self.query_one("#keymap-filter", Input).focus()

    def say(self, message: str, kind: Kind = "info") -> None:
        self.query_one("#keymap-status", StatusLine).say(message, kind)

    # -- the list ---------------------------------------------------------------------------------

    @on(Input.Changed, "#keymap-filter")
    def _typed(self, event: Input.Changed) -> None:
        self._filter(event.value)

    def _filter(self, text: str) -> None:
        shown = filter_names(self.keymaps, text)
        options = self.query_one("#keymap-list", OptionList)
        options.clear_options()
        options.add_options(Option(Content(name), id=name) for name in shown)
        if text.strip():
            options.highlighted = 0 if shown else None
        else:  # nothing typed: the keymap in use, when it is one of the list
            options.highlighted = shown.index(self.current) if self.current in shown else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "move":  # Up and Down move in the list only while the filter has the focus
            return self.focused is not None and self.focused.id == "keymap-filter"
        return True

    def action_move(self, delta: int) -> None:
        options = self.query_one("#keymap-list", OptionList)
        if not options.option_count:
            return
        start = -1 if options.highlighted is None and delta > 0 else options.highlighted or 0
        options.highlighted = max(0, min(options.option_count - 1, start + delta))

    def chosen(self) -> str | None:
        """The highlighted keymap, else the one typed in full."""
        option = self.query_one("#keymap-list", OptionList).highlighted_option
        if option is not None and option.id:
            return option.id
        typed = self.query_one("#keymap-filter", Input).value.strip()
        return typed if typed in self.keymaps else None

    # -- switching --------------------------------------------------------------------------------

    @on(Input.Submitted, "#keymap-filter")
    @on(Button.Pressed, "#keymap-apply")
    def action_apply(self) -> None:
        name = self.chosen()
        if name is None:
            self.say("Pick a keymap from the list: type part of its name, then Up and Down.", "error")
            return
        self.query_one("#keymap-apply", Button).disabled = True
        self.say(f"Switching the keyboard to {name}...")
        self._switch(name)

    @on(OptionList.OptionSelected, "#keymap-list")
    def _clicked(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#keymap-list", OptionList).highlighted = event.option_index
        self.action_apply()

    @on(Input.Submitted, "#keymap-try")
    def _tried(self, event: Input.Submitted) -> None:
        event.stop()  # Enter while trying keys changes nothing

    @work(thread=True, exclusive=True, exit_on_error=False, group="keymap")
    def _switch(self, name: str) -> str:
        self.switch(name)
        return name

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "keymap" or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR):
            return
        self.query_one("#keymap-apply", Button).disabled = False
        if event.state is WorkerState.SUCCESS:
            self.switched = self.current = event.worker.result
            self.say(f"The keyboard is now {self.switched}: try it above, then Close.", "good")
            self.query_one("#keymap-close", Button).label = "Close"
            self.query_one("#keymap-try", Input).focus()
            return
        error = event.worker.error
        words = str(error) if isinstance(error, NbcError) else f"{type(error).__name__}: {error}"
        self.say(f"The keyboard was not switched: {words}", "error")

    @on(Button.Pressed, "#keymap-close")
    def action_close(self) -> None:
        self.dismiss(self.switched)

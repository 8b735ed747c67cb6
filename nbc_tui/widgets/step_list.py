"""The install's steps, each with its state (pending, running, done, failed, skipped), fed by StepEvents."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from rich.table import Table
from rich.text import Text
from textual.widgets import Static


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    """Not run at all: a dry run stops after the checks, a cancelled or failed run stops early."""


# Console fonts (TERM=linux, serial terminals) lack check marks and arrows: plain ASCII there.
GLYPHS: dict[bool, dict[StepState, str]] = {
    False: {StepState.PENDING: "·", StepState.RUNNING: "▸", StepState.DONE: "✓", StepState.FAILED: "✗",
            StepState.SKIPPED: "-"},
    True: {StepState.PENDING: "[ ]", StepState.RUNNING: "[>]", StepState.DONE: "[x]", StepState.FAILED: "[!]",
           StepState.SKIPPED: "[-]"},
}
STYLES: dict[StepState, str] = {
    StepState.PENDING: "dim",
    StepState.RUNNING: "bold",
    StepState.DONE: "green",
    StepState.FAILED: "bold red",
    StepState.SKIPPED: "dim",
}


class StepList(Static):
    """Every step of the install by title, one per row; long titles wrap under themselves."""

    DEFAULT_CSS = """
    StepList {
        height: auto;
    }
    """

    def __init__(self, titles: Sequence[str] = (), *, ascii_only: bool = False, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.titles: list[str] = list(titles)
        """The step titles, in order (step numbers start at 1)."""
        self.states: list[StepState] = [StepState.PENDING] * len(self.titles)
        """The state of each step, parallel to ``titles``."""
        self.ascii_only = ascii_only
        """Draw the states with ASCII only (console fonts)."""

    def on_mount(self) -> None:
        self._redraw()

    # -- what the screen calls -------------------------------------------------------------------------
    def start(self, step: int, total: int, name: str) -> None:
        """Step ``step`` (1-based) of ``total`` begins: the steps before it are done."""
        self._fit(total)
        self.titles[step - 1] = name
        for i in range(step - 1):
            if self.states[i] in (StepState.PENDING, StepState.RUNNING):
                self.states[i] = StepState.DONE
        self.states[step - 1] = StepState.RUNNING
        self._redraw()

    def finish(self, *, ok: bool) -> None:
        """The run ended: the running step is done (or failed); steps never reached are skipped."""
        for i, state in enumerate(self.states):
            if state is StepState.RUNNING:
                self.states[i] = StepState.DONE if ok else StepState.FAILED
            elif state is StepState.PENDING:
                self.states[i] = StepState.SKIPPED
        self._redraw()

    @property
    def running(self) -> int | None:
        """The 1-based number of the running step, if any."""
        for i, state in enumerate(self.states):
            if state is StepState.RUNNING:
                return i + 1
        return None

    # -- drawing -------------------------------------------------------------------------------------
    def _fit(self, total: int) -> None:
        # The engine's own count wins over the titles the screen guessed at.
        while len(self.titles) < total:
            self.titles.append(f"Step {len(self.titles) + 1}")
            self.states.append(StepState.PENDING)
        del self.titles[total:], self.states[total:]

    def _redraw(self) -> None:
        glyphs = GLYPHS[self.ascii_only]
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(ratio=1)
        for title, state in zip(self.titles, self.states, strict=True):
            grid.add_row(Text(glyphs[state], style=STYLES[state]), Text(title, style=STYLES[state]))
        self.update(grid)

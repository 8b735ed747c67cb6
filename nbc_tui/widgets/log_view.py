"""The install's log pane: the engine's messages, warnings and errors, and the tools' own output."""

from __future__ import annotations

from enum import StrEnum

from rich.text import Text
from textual.widgets import RichLog

# A long install writes thousands of tool lines; the full log stays in the log file.
MAX_LINES = 5000


class LineKind(StrEnum):
    STEP = "step"
    MESSAGE = "message"
    DETAIL = "detail"
    """A verbose engine message."""
    TOOL = "tool"
    """A line a tool printed (already redacted by the runner)."""
    WARNING = "warning"
    ERROR = "error"


STYLES: dict[LineKind, str] = {
    LineKind.STEP: "bold",
    LineKind.MESSAGE: "",
    LineKind.DETAIL: "dim",
    LineKind.TOOL: "dim",
    LineKind.WARNING: "yellow",
    LineKind.ERROR: "bold red",
}
PREFIXES: dict[LineKind, str] = {
    LineKind.STEP: "",
    LineKind.MESSAGE: "  ",
    LineKind.DETAIL: "  ",
    LineKind.TOOL: "  | ",
    LineKind.WARNING: "Warning: ",
    LineKind.ERROR: "Error: ",
}


class LogView(RichLog):
    """A scrolling log. Lines are plain text (never markup: tool output may hold brackets)."""

    DEFAULT_CSS = """
    LogView {
        height: 1fr;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(max_lines=MAX_LINES, min_width=20, wrap=True, markup=False, highlight=False, id=id,
                         classes=classes)
        self.plain_lines: list[str] = []
        """Every line written, as plain text (what the pane shows, before wrapping)."""

    def add(self, text: str, kind: LineKind = LineKind.MESSAGE) -> None:
        """Append one line (or several, split on newlines) of the given kind."""
        for line in text.splitlines() or [""]:
            shown = PREFIXES[kind] + line
            self.plain_lines.append(shown)
            del self.plain_lines[:-MAX_LINES]
            self.write(Text(shown, style=STYLES[kind]))

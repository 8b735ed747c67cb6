"""Which look the TUI takes on this terminal: the default one, or the console look (ASCII borders and
glyphs, the 16 ANSI colours, no animations, no mouse) for the Linux console, old VT terminals, serial
consoles and NO_COLOR.

A pure function of the environment and the tty (name and size), so it is tested without a terminal;
``app.py`` applies the decision and ``cli.py`` puts :meth:`Look.environment` into ``os.environ`` before
Textual is imported (Textual reads its settings at import time); :func:`console_look` tells a widget or a
screen which look its app draws.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from .backend.console_keymap import is_serial_tty

# Terminals whose fonts lack the block and eighth-block glyphs Textual draws by default (textual #5011).
CONSOLE_TERMS = frozenset({"linux", "vt52", "vt100", "vt102", "vt220", "vt320", "vt420", "ansi"})
FALLBACK_SIZE = (80, 24)
SERIAL_FPS = "20"


@dataclass(frozen=True)
class Look:
    """The decision, with the reason in words (logged, and shown by ``--help`` one day)."""

    console: bool
    """ASCII borders and glyphs, the ANSI theme (16 colours), animations off, mouse off."""
    reason: str
    """Why this look was chosen, e.g. "TERM=linux" or "serial console ttyS0"."""
    env: dict[str, str] = field(default_factory=dict)
    """Variables to set before Textual starts: TEXTUAL_ANIMATIONS, TEXTUAL_FPS on slow links, and
    COLUMNS/LINES for a serial tty that reports its size as 0x0."""

    @property
    def mouse(self) -> bool:
        return not self.console

    @property
    def theme(self) -> str:
        return "ansi-dark" if self.console else "textual-dark"

    def environment(self) -> dict[str, str]:
        return dict(self.env)


def choose_look(env: Mapping[str, str], tty_name: str | None = None,
                tty_size: tuple[int, int] | None = None) -> Look:
    """Decide the look from the environment, the tty's kernel name (``ttyS0``, ``pts/3``) and the size the
    tty reports (``None`` when unknown)."""
    term = env.get("TERM", "")
    base = term.split("-")[0]
    serial = bool(tty_name) and is_serial_tty(tty_name or "")
    reasons = []
    if base in CONSOLE_TERMS:
        reasons.append(f"TERM={term}")
    if serial:
        reasons.append(f"serial console {os.path.basename(tty_name or '')}")
    if "NO_COLOR" in env:
        reasons.append("NO_COLOR is set")
    out: dict[str, str] = {}
    if not reasons:
        return Look(console=False, reason="default", env=out)
    out["TEXTUAL_ANIMATIONS"] = "none"
    if serial:
        out["TEXTUAL_FPS"] = SERIAL_FPS  # fewer redraws over a 115200-baud line
    # A serial tty knows no size (stty says 0 0): assume 80x24 unless COLUMNS/LINES say otherwise.
    unknown = tty_size is None or tty_size[0] <= 0 or tty_size[1] <= 0
    if unknown:
        out.setdefault("COLUMNS", env.get("COLUMNS") or str(FALLBACK_SIZE[0]))
        out.setdefault("LINES", env.get("LINES") or str(FALLBACK_SIZE[1]))
    return Look(console=True, reason=", ".join(reasons), env=out)


def current_tty() -> tuple[str | None, tuple[int, int] | None]:
    """The kernel name and reported size of the terminal on stdout (``None`` where there is none)."""
    try:
        fd = sys.stdout.fileno()
        name = os.ttyname(fd)
    except (OSError, ValueError, AttributeError):
        return None, None
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return name.removeprefix("/dev/"), None
    return name.removeprefix("/dev/"), (size.columns, size.lines)


def detect_look() -> Look:
    """The look for the terminal this process runs on."""
    return choose_look(os.environ, *current_tty())


def console_look(app: object) -> bool:
    """Whether ``app`` draws the console look (NbcTuiApp.console_look); any other app (a test's) draws the
    default one. For widgets and screens that draw glyphs of their own."""
    return bool(getattr(app, "console_look", False))

"""nbc-tui's own modules compiled to bytecode before anything is timed.

A user's machine has them after nbc-tui's first run, and the live ISO gets them from pip when it installs
the wheel. A shell with PYTHONDONTWRITEBYTECODE set (some CI and sandbox shells) never writes them, so every
command a bench times would otherwise pay for compiling its imports (about 0.06 s a command here).
"""

from __future__ import annotations

import compileall
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "nbc_tui"


def compile_nbc_tui() -> None:
    """Write the missing ``__pycache__`` files of the checkout's package (quietly; idempotent)."""
    if not compileall.compile_dir(PACKAGE, quiet=1):
        raise SystemExit(f"compiling {PACKAGE} to bytecode failed")

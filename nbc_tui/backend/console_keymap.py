"""The live machine's own console keyboard: which keymaps it can load, switching to one (``loadkeys``), and
whether the TUI runs on a serial console, where the keys come from the user's own terminal instead.

The installer's welcome screen switches it so that a passphrase is typed on the layout the user expects (a
passphrase typed on the wrong layout is a disk that will not unlock). The kernel has one keymap for all
virtual consoles, and ``loadkeys`` finds a console to load it through by itself (/dev/tty0 and the like), so
switching works from a serial console too; it changes the machine's own screen-and-keyboard consoles.

The keymaps are found where the image scan looks for an image's keymaps (system/identity.py) and named the
same way, so the name switched to here is one the system screen can offer for the installed system.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import CommandFailed, InputError, NbcError
from .runner import RunContext, run, which
from .system.identity import KEYMAP_DIRS, KEYMAP_GLOBS, keymap_names

LOADKEYS = "loadkeys"
SERIAL_TTY = re.compile(r"^(ttyS|ttyUSB|ttyAMA|ttyACM|hvc)\d+$")
"""Kernel names of serial terminals: PC UARTs, USB adapters, ARM PL011s, USB CDC ACM, hypervisor consoles."""


def console_keymaps(root: Path = Path("/")) -> list[str]:
    """The names of the keymaps the system at ``root`` can load (``de``, ``fr-latin1``), sorted; tests point
    ``root`` at a folder."""
    found = (path.relative_to(root).as_posix() for pattern in KEYMAP_GLOBS for path in root.glob(pattern)
             if path.is_file())
    return sorted(keymap_names(found))


def switch_console_keymap(name: str, *, ctx: RunContext | None = None, root: Path = Path("/")) -> None:
    """Load the keymap ``name`` into the kernel: the keyboard of every virtual console of this machine.
    Refuses a name this system has no keymap of, and a system without ``loadkeys`` (InputError); a failing
    ``loadkeys`` raises NbcError with its own words."""
    if which(LOADKEYS) is None:
        raise InputError("loadkeys is not installed: the console keyboard cannot be switched",
                         hint="install the kbd package (and console-data for its keymaps)")
    names = console_keymaps(root)
    if name not in names:
        where = ", ".join("/" + d for d in KEYMAP_DIRS)
        hint = (f"pick one of the {len(names)} keymaps found under {where}" if names else
                f"no keymap was found under {where}: install the console-data package")
        raise InputError(f"This system has no console keymap {name!r}", hint=hint)
    try:
        run([LOADKEYS, name], ctx=ctx or RunContext(), timeout=30, what=LOADKEYS)
    except CommandFailed as exc:
        words = exc.details.get("stderr") or exc.message
        raise NbcError(f"loadkeys could not load the keymap {name}: {words}",
                       hint="switching the console keyboard needs root on the live system",
                       details=exc.details) from exc


def is_serial_tty(tty: str) -> bool:
    """Whether ``tty`` (``ttyS0``, ``/dev/hvc0``, ``pts/3``) names a serial terminal."""
    return bool(SERIAL_TTY.match(os.path.basename(tty)))


def serial_console(tty: str | None = None) -> str | None:
    """The serial terminal the TUI runs on (``ttyS0``), or None (a virtual console, a terminal emulator, no
    terminal). ``tty`` replaces the name of the terminal on stdin (tests)."""
    if tty is None:
        try:
            tty = os.ttyname(0)
        except OSError:
            return None
    name = tty.removeprefix("/dev/")
    return name if is_serial_tty(name) else None

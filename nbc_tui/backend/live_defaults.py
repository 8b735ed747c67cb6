"""What the running (live) system is set to, offered as the installed system's defaults: its time zone and its
console keymap. Read from its files only (no tool runs); anything missing or unreadable is simply not offered."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TIMEZONE_FILE = "etc/timezone"
"""Debian's name of the zone (``Europe/Berlin``), read first."""
LOCALTIME = "etc/localtime"
"""Else the zone is where this symlink leads (``../usr/share/zoneinfo/Europe/Berlin``)."""
VCONSOLE = "etc/vconsole.conf"
"""systemd's console settings: ``KEYMAP=de``."""
DEBIAN_KEYBOARD = "etc/default/keyboard"
"""Debian's keyboard settings: ``XKBLAYOUT="de"``, its first layout used when vconsole.conf has no keymap."""
_ZONEINFO = "zoneinfo/"


@dataclass(frozen=True)
class LiveDefaults:
    """The live system's settings (None: not set, or not readable)."""

    timezone: str | None = None
    keymap: str | None = None


def live_defaults(root: Path = Path("/")) -> LiveDefaults:
    """The time zone and keymap of the system at ``root`` (tests point it at a folder)."""
    return LiveDefaults(timezone=_timezone(root), keymap=_keymap(root))


def _timezone(root: Path) -> str | None:
    named = _first_line(root / TIMEZONE_FILE)
    if named:
        return named
    try:
        target = (root / LOCALTIME).readlink().as_posix()
    except OSError:
        return None
    if _ZONEINFO not in target:
        return None
    zone = target.rsplit(_ZONEINFO, 1)[1].removeprefix("posix/").removeprefix("right/")
    return zone or None


def _keymap(root: Path) -> str | None:
    keymap = _assignments(root / VCONSOLE).get("KEYMAP")
    if keymap:
        return keymap
    layout = _assignments(root / DEBIAN_KEYBOARD).get("XKBLAYOUT", "").split(",")[0].strip()
    return layout or None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _first_line(path: Path) -> str | None:
    lines = [line.strip() for line in _read(path).splitlines() if line.strip() and not line.startswith("#")]
    return lines[0] if lines else None


def _assignments(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a shell-style settings file, quotes removed."""
    found = {}
    for line in _read(path).splitlines():
        key, eq, value = line.strip().partition("=")
        if eq and not key.startswith("#"):
            found[key.strip()] = value.strip().strip("\"'")
    return found

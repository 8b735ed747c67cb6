"""os-release files (``KEY=value`` lines, values quoted the shell way), read from an image or a root."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from .inroot import resolve_in_target

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
OS_RELEASE_PATHS = ("etc/os-release", "usr/lib/os-release")
"""Where a root keeps its os-release, in the order os-release(5) reads them."""


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value lines; values may be quoted the shell way; comments and junk lines are skipped."""
    result: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        if not _KEY.fullmatch(key):
            continue
        try:
            result[key] = " ".join(shlex.split(value))
        except ValueError:
            result[key] = value.strip().strip("\"'")
    return result


def os_name(fields: dict[str, str]) -> str:
    """What to call the system: PRETTY_NAME, else NAME, else ID, else "Linux" (nbc's order)."""
    for key in ("PRETTY_NAME", "NAME", "ID"):
        if fields.get(key, "").strip():
            return fields[key].strip()
    return "Linux"


def read_os_release(target_root: Path) -> dict[str, str] | None:
    """The os-release of a mounted root (its first file of OS_RELEASE_PATHS, links followed inside the root
    only); None when it has none."""
    for rel in OS_RELEASE_PATHS:
        path = resolve_in_target(target_root, rel)
        if path is not None and path.is_file():
            return parse_os_release(path.read_text(errors="replace"))
    return None

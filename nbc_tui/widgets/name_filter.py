"""Typing to filter a list of names (time zones, keymaps): the one ranking the system screen's pickers and the
keyboard dialog share."""

from __future__ import annotations

import re
from collections.abc import Iterable


def filter_names(names: Iterable[str], text: str) -> list[str]:
    """The names containing ``text`` (any case): the name itself first, then those with a part starting with
    it (``Ber``: ``Europe/Berlin``), then the rest, each group in order."""
    typed = text.strip().lower()
    if not typed:
        return list(names)

    def rank(name: str) -> tuple[bool, bool, str]:
        low = name.lower()
        return low != typed, not any(p.startswith(typed) for p in re.split(r"[/_-]", low)), name

    return sorted((n for n in names if typed in n.lower()), key=rank)

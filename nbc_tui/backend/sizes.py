"""Byte sizes as people write them ("2G", "512MiB", "35") and as nbc prints them ("465.8 GB")."""

from __future__ import annotations

import re

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
_UNITS = {"": 1, "B": 1, "K": KiB, "M": MiB, "G": GiB, "T": TiB}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str | int, *, default_unit: str = "") -> int:
    """Parse "2G", "2GiB", "2gb" (all binary), "512M" or a bare number (in ``default_unit``) into bytes."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a size; write it like 512M, 2G or 2GiB")
    number, unit = m.groups()
    unit = (unit or default_unit).upper()
    value = float(number) * _UNITS[unit]
    if value != int(value):
        raise ValueError(f"{text!r} is not a whole number of bytes")
    return int(value)


def gib_up(n: int) -> int:
    """The whole GiB ``n`` bytes take, rounded up: the smallest disk-image file (in GiB) that holds them."""
    return -(-n // GiB)


def short_size(n: int) -> str:
    """A size as an answer file and the layout dialog write it: the largest binary unit that is exact
    (``2G``, ``512M``, ``1536M``), else bytes."""
    for suffix, unit in (("T", TiB), ("G", GiB), ("M", MiB), ("K", KiB)):
        if n and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def human(n: int) -> str:
    """nbc's FormatSize: 1024-based, one decimal, suffixes B KB MB GB TB (reference §2.1)."""
    value = float(n)
    for suffix in ("B", "KB", "MB", "GB", "TB", "PB"):
        if value < 1024 or suffix == "PB":
            return f"{int(value)} B" if suffix == "B" else f"{value:.1f} {suffix}"
        value /= 1024
    raise AssertionError("unreachable")

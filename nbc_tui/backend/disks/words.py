"""A disk in words: one wording for the disk screen, the review screen, the wipe confirmation, disk rules,
``answers validate`` and headless installs alike. Plain sentences, no markup."""

from __future__ import annotations

from ..sizes import human
from .model import Disk, Partition


def disk_words(disk: Disk) -> str:
    """What tells this disk apart from others: ``Samsung SSD 870, serial S5Y1N, 465.8 GB, sata``."""
    words = [disk.model or "unknown model", f"serial {disk.serial}" if disk.serial else "no serial",
             human(disk.size)]
    if disk.transport:
        words.append(disk.transport)
    if disk.removable:
        words.append("removable")
    if disk.backing_file:
        words.append(f"file {disk.backing_file}")
    return ", ".join(words)


def disk_line(disk: Disk) -> str:
    """``/dev/sdb (Samsung SSD 870, serial S5Y1N, 465.8 GB, sata)``."""
    return f"{disk.device} ({disk_words(disk)})"


def partition_words(part: Partition) -> str:
    """``sdb1 512.0 MB vfat "EFI" boot``: name, size, filesystem, label, GPT name (what it has of them)."""
    words = [part.device.removeprefix("/dev/"), human(part.size)]
    if part.fstype:
        words.append(part.fstype)
    if part.label:
        words.append(f'"{part.label}"')
    if part.partlabel and part.partlabel != part.label:
        words.append(part.partlabel)
    return " ".join(words)


def disk_contents(disk: Disk) -> list[str]:
    """What is on the disk now, one item per line: the system it seems to hold, a filesystem on the whole
    disk, each partition. [] when nothing was found."""
    items = []
    if disk.os_hint:
        items.append(disk.os_hint)
    if disk.fstype:
        items.append(f"a {disk.fstype} filesystem" + (f' "{disk.label}"' if disk.label else "")
                     + " on the whole disk")
    items += [partition_words(p) for p in disk.partitions]
    return items


def disk_summary(disk: Disk) -> str:
    """What is on the disk in a few words (a table column): the system, the partitions, or nothing found."""
    if disk.os_hint:
        return disk.os_hint
    if disk.partitions:
        n = len(disk.partitions)
        return f"{n} partition{'s' if n > 1 else ''}" + (f" ({disk.pttype})" if disk.pttype else "")
    if disk.fstype:
        return disk.fstype
    if disk.pttype:
        return f"empty {disk.pttype} table"
    return "none found"


def destruction_warning(disk: Disk) -> str:
    """The question before a wipe: which disk, and everything on it that will be lost."""
    lines = [f"ALL DATA on {disk_line(disk)} will be erased."]
    contents = disk_contents(disk)
    lines += [f"  On it: {item}" for item in contents] or ["  Nothing was found on it."]
    return "\n".join(lines)

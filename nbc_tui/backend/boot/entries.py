"""A boot menu entry as nbc-tui writes and reads it, whatever the loader: a title, the kernel and initramfs on
the ESP, the command line, and which slot it boots."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal

from ..system.slots import Slot

BootloaderKind = Literal["grub2", "systemd-boot"]
"""The values nbc stores as config.bootloader_type (reference §8.1)."""
PREVIOUS_SUFFIX = " (Previous)"
"""nbc's title suffix for the entry of the slot that booted before an update (reference §13.4)."""


class EntryState(StrEnum):
    """Where an entry stands in boot assessment."""

    GOOD = "good"
    """Booted to boot-complete.target once (or never on trial: installed, rolled back to)."""
    TRIAL = "trial"
    """Written by an update and not yet booted to boot-complete.target; the loader counts its tries."""
    BAD = "bad"
    """Out of tries: the loader boots the previous entry instead."""


@dataclass(frozen=True)
class BootEntry:
    title: str
    linux: str
    """ESP path of the kernel, no leading slash (``B/vmlinuz-6.1.0-18-amd64``; nbc's own layout keeps
    kernels at the ESP root)."""
    initrd: str
    options: tuple[str, ...]
    """The command line exactly as the loader passes it (GRUB's variant for GRUB entries)."""
    slot: Slot | None = None
    """The slot it boots, when known (by its kernel's ESP folder, else by its root= token)."""

    def as_previous(self) -> BootEntry:
        """The same entry titled as the one to go back to."""
        title = self.title.removesuffix(PREVIOUS_SUFFIX)
        return replace(self, title=title + PREVIOUS_SUFFIX)

    def titled(self, title: str) -> BootEntry:
        return replace(self, title=title)


def slot_by_paths(entry: BootEntry, root_slots: dict[str, Slot]) -> Slot | None:
    """Which slot ``entry`` boots: its kernel's ESP folder (``A/``, ``B/``), else its ``root=`` token: a
    mapper name, or a filesystem UUID that ``root_slots`` maps (``root=UUID=...``)."""
    folder = entry.linux.lstrip("/").partition("/")[0]
    for slot in Slot:
        if folder == slot.esp_dir and "/" in entry.linux.lstrip("/"):
            return slot
    root = next((o.removeprefix("root=") for o in entry.options if o.startswith("root=")), "")
    for slot in Slot:
        if root == f"/dev/mapper/{slot.mapper}":
            return slot
    return root_slots.get(root.removeprefix("UUID=")) if root.startswith("UUID=") else None

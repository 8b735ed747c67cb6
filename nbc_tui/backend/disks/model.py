"""Disks as data: a whole disk and its partitions as the kernel shows them now, and why one cannot be used.

Refusals are data: :func:`~.eligibility.refusals` computes every reason a disk cannot be installed to, once;
the TUI greys the row and shows ``message``, the CLI prints it and exits 2, JSON carries ``reason``.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from ..sizes import human


class Ineligible(StrEnum):
    """Why a disk cannot be installed to (the ``reason`` of a :class:`Refusal`)."""

    TOO_SMALL = "too-small"
    MOUNTED = "mounted"
    HOLDERS = "holders"
    SWAP = "swap"
    RUNNING_SYSTEM = "running-system"
    LIVE_MEDIUM = "live-medium"
    READ_ONLY = "read-only"
    NOT_A_DISK = "not-a-disk"
    IN_USE = "in-use"


class Refusal(BaseModel):
    """One reason a disk is not eligible. ``message`` is a complete sentence, shown as is."""

    model_config = ConfigDict(frozen=True)

    reason: Ineligible
    message: str


class Partition(BaseModel):
    """A partition the kernel knows about (a partition node under the disk in sysfs)."""

    model_config = ConfigDict(frozen=True)

    device: str
    number: int
    size: int
    dev: str = ""
    """Kernel device number, "major:minor"."""
    fstype: str | None = None
    label: str | None = None
    partlabel: str | None = None
    uuid: str | None = None
    mountpoints: list[str] = []
    """Where it is mounted, directly or through a device stacked on it (dm-crypt, LVM, md)."""
    holders: list[str] = []
    """Kernel names of the devices stacked directly on it (dm-0, md127)."""


class Disk(BaseModel):
    """A whole disk as the kernel sees it now: identity, partitions, and what uses it."""

    model_config = ConfigDict(frozen=True)

    device: str
    """/dev/<name>."""
    name: str
    """Kernel name: sda, nvme0n1, vda, loop3."""
    size: int
    """Bytes."""
    dev: str = ""
    """Kernel device number, "major:minor"."""
    model: str | None = None
    serial: str | None = None
    wwid: str | None = None
    transport: str | None = None
    """sata, nvme, usb, virtio, scsi, mmc, xen, loop, or None when unknown."""
    removable: bool = False
    read_only: bool = False
    rotational: bool | None = None
    by_id: list[str] = []
    """/dev/disk/by-id links to it (only where udev runs)."""
    partitions: list[Partition] = []
    mountpoints: list[str] = []
    """Where the whole disk is mounted (an ISO written to a stick), directly or through holders."""
    holders: list[str] = []
    backing_file: str | None = None
    """The file behind a loop device."""
    fstype: str | None = None
    """A filesystem on the whole disk (iso9660 of a live stick), from blkid."""
    label: str | None = None
    pttype: str | None = None
    """Partition table type (gpt, dos) from blkid."""
    os_hint: str | None = None
    """What seems to be on it: an os-release PRETTY_NAME of a mounted root, or filesystem labels."""

    @property
    def size_human(self) -> str:
        return human(self.size)

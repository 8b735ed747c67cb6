"""The disks the running system and the live medium it started from live on (never install targets), and
the root slot the running system booted from."""

from __future__ import annotations

import contextlib
import os
import re

from ..runner import RunContext
from ..system.slots import Slot
from .blockdevices import SYSTEM, Machine, SystemView, read_value, stdev

# Where live systems mount the medium they booted from (or the partition holding the ISO file):
# live-boot (Debian), dracut dmsquash-live (Fedora), casper (Ubuntu), archiso.
LIVE_MEDIUM_MOUNTS = (
    "/run/live/medium",
    "/run/live/findiso",
    "/lib/live/mount/medium",
    "/lib/live/mount/findiso",
    "/run/initramfs/live",
    "/run/initramfs/isoscan",
    "/cdrom",
    "/run/archiso/bootmnt",
    "/run/archiso/img_dev",
)

# Mount points that make a disk part of the running system (when they are separate mounts).
RUNNING_SYSTEM_MOUNTS = ("/", "/boot", "/boot/efi", "/efi", "/usr", "/var", "/sysroot")


def running_system_mounts(m: Machine) -> dict[str, list[str]]:
    """Disk device -> the running system's mount points on it."""
    found: dict[str, list[str]] = {}

    def add(name: str, where: str) -> None:
        for disk in m.disks_under(name):
            places = found.setdefault(f"/dev/{disk}", [])
            if where not in places:
                places.append(where)

    if m.view.probe:
        with contextlib.suppress(OSError):
            node = m.by_dev.get(stdev(os.stat("/")))
            if node:
                add(node.name, "/")
    for mountpoint in RUNNING_SYSTEM_MOUNTS:
        for name in m.devices_mounted_at(mountpoint):
            add(name, mountpoint)
    return found


def running_system_disks(*, view: SystemView = SYSTEM, ctx: RunContext | None = None) -> set[str]:
    """Devices (/dev/vda) of the disks holding the running system: /, /boot, /boot/efi, /efi, /usr, /var.

    / is found by the device number of "/" (stat) and by /proc/self/mountinfo (by number and by
    source, which covers btrfs); dm/md devices are followed through their slaves to the disks, and a
    root on a loop device to the disk holding its file.
    """
    return set(running_system_mounts(Machine.read(view, ctx)))


_LIVE_CMDLINE = re.compile(r"^(?:root=live:|archisolabel=|archisodevice=|live-media=|cdlabel=)(.+)$")


def live_medium_reasons(m: Machine) -> dict[str, str]:
    """Disk device -> how it was recognised as the live medium."""
    found: dict[str, str] = {}

    def add(name: str, why: str) -> None:
        loop = m.loop_info(name)
        for disk in m.disks_under(name):
            # A loop device's file (an ISO on a stick): say so rather than call the stick mounted.
            held = f"it holds {loop.backing_file}, " if loop and disk != name else ""
            found.setdefault(f"/dev/{disk}", held + why)

    for mountpoint in LIVE_MEDIUM_MOUNTS:
        for name in m.devices_mounted_at(mountpoint):
            add(name, f"mounted at {mountpoint}")
    cmdline = (read_value(m.view.proc / "cmdline") or "").split()
    if not any(t in ("boot=live", "boot=casper") or t.startswith(("root=live:", "archisolabel="))
               for t in cmdline):
        return found
    for token in cmdline:
        match = _LIVE_CMDLINE.match(token)
        if not match:
            continue
        value = re.sub(r"\\x([0-9a-fA-F]{2})", lambda x: chr(int(x.group(1), 16)), match.group(1))
        name = None
        if token.startswith("archisolabel=") or token.startswith("cdlabel="):
            name = m.by_label("LABEL", value)
        elif value.startswith(("CDLABEL=", "LABEL=")):
            name = m.by_label("LABEL", value.partition("=")[2])
        elif value.startswith("UUID="):
            name = m.by_label("UUID", value.partition("=")[2])
        elif value.startswith("/dev/"):
            dev = m.dev_of_path(value)
            name = m.by_dev[dev].name if dev in m.by_dev else None
        if name:
            add(name, f"named on the kernel command line ({token})")
    return found


def live_medium_disks(*, view: SystemView = SYSTEM, ctx: RunContext | None = None) -> set[str]:
    """Devices of the disks the live system was started from.

    A disk is the live medium when something on it is mounted at one of LIVE_MEDIUM_MOUNTS (live-boot,
    dracut dmsquash-live and its iso-scan, casper, archiso; when that device is a loop device the disk
    holding the ISO file counts too), or, when the kernel command line says boot=live / boot=casper /
    root=live: / archisolabel=, when it carries the filesystem LABEL, UUID or device named there
    (root=live:CDLABEL=X, root=live:UUID=X, archisolabel=X, live-media=/dev/X), looked up through
    /dev/disk/by-label|by-uuid or a read-only blkid.
    """
    return set(live_medium_reasons(Machine.read(view, ctx)))


def booted_slot(*, view: SystemView = SYSTEM, ctx: RunContext | None = None) -> Slot | None:
    """The slot the running system's ``/`` is on, or None when ``/`` is not an nbc root slot (a live ISO).

    Found by the device of ``/`` (its mount, so that btrfs's anonymous device numbers do not matter): an
    opened LUKS root by its mapper name (``root1``, ``root2``), a plain one by its partition number.
    """
    m = Machine.read(view, ctx)
    for name in m.devices_mounted_at("/"):
        node = m.nodes[name]
        mapper = read_value(node.path / "dm" / "name")
        if mapper is not None:
            if mapper in (Slot.A.mapper, Slot.B.mapper):
                return Slot.of_role(mapper)
            continue
        if node.parent is not None:
            for slot in Slot:
                if node.number == slot.partition:
                    return slot
    return None


"""Whether a disk can be installed to: every reason it cannot, as typed :class:`~.model.Refusal` values.

Judges what a :class:`~.model.Disk` records (mounts, holders) together with what is read now: swaps, the
running system and the live medium it started from, loop devices sharing a file, and whether the kernel
reports the device busy.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..runner import RunContext
from ..sizes import human
from .blockdevices import LOOP_NAME, SYSTEM, Machine, SystemView, read_value
from .discovery import is_candidate, not_a_disk_kind
from .model import Disk, Ineligible, Refusal
from .system_disks import live_medium_reasons, running_system_mounts


def _holder_text(m: Machine, holder: str) -> tuple[str, str]:
    """(what the holder is, what to do about it)."""
    node = m.nodes.get(holder)
    dm_name = read_value(node.path / "dm" / "name") if node else None
    dm_uuid = (read_value(node.path / "dm" / "uuid") if node else None) or ""
    if dm_name and dm_uuid.startswith("CRYPT-"):
        return f"{holder} (the open LUKS mapping {dm_name})", f"close it with `cryptsetup close {dm_name}`"
    if dm_name and dm_uuid.startswith("LVM-"):
        return f"{holder} (the LVM volume {dm_name})", "deactivate its volume group with `vgchange -an`"
    if dm_name:
        return f"{holder} (the device-mapper device {dm_name})", f"remove it with `dmsetup remove {dm_name}`"
    if holder.startswith("md"):
        return f"{holder} (a software RAID array)", f"stop it with `mdadm --stop /dev/{holder}`"
    return holder, "stop what uses it"


def _busy(device: Path) -> bool:
    """The kernel refuses an exclusive open: something (a mount, RAID, a running tool) claims it."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_EXCL | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return exc.errno == errno.EBUSY
    os.close(fd)
    return False


def _places(mountpoints: list[str]) -> str:
    # The running system's disk can carry dozens of bind mounts: name a few, count the rest.
    shown = ", ".join(mountpoints[:3])
    return shown if len(mountpoints) <= 3 else f"{shown} and {len(mountpoints) - 3} more"


def _usage_refusals(m: Machine, disk: Disk) -> list[Refusal]:
    """MOUNTED, SWAP and HOLDERS for the disk itself and for each partition."""
    out: list[Refusal] = []
    things = [(disk.device, disk.name, disk.mountpoints, disk.holders)]
    things += [(f"partition {p.device}", Path(p.device).name, p.mountpoints, p.holders) for p in disk.partitions]
    for what, name, mountpoints, holders in things:
        if mountpoints:
            via = f" (through {', '.join(holders)})" if holders else ""
            out.append(Refusal(reason=Ineligible.MOUNTED, message=(
                f"{what}{via} is mounted at {_places(mountpoints)}: unmount it or choose another disk")))
        swap = m.swap_of(name)
        if swap:
            out.append(Refusal(reason=Ineligible.SWAP, message=(
                f"{what} is in use as swap ({swap}): turn it off with `swapoff {swap}` "
                "or choose another disk")))
        for holder in holders:
            desc, todo = _holder_text(m, holder)
            out.append(Refusal(reason=Ineligible.HOLDERS, message=(
                f"{what} is in use by {desc}: {todo}, or choose another disk")))
    return out


def _loop_refusals(m: Machine, disk: Disk) -> list[Refusal]:
    """A loop device whose file is also attached elsewhere (the engine's per-partition loop devices)."""
    siblings = m.loop_siblings(disk.name)
    if not siblings:
        return []
    names = [f"/dev/{other}" for other, _ in siblings]
    attached = ", ".join(f"/dev/{other}" + (f" (offset {human(info.offset)})" if info.offset else "")
                         for other, info in siblings)
    out = [Refusal(reason=Ineligible.IN_USE, message=(
        f"the file behind {disk.device} ({disk.backing_file}) is also attached as {attached}: "
        f"detach {'it' if len(names) == 1 else 'them'} with `losetup -d {' '.join(names)}` "
        "or choose another disk"))]
    for other, info in siblings:
        where = f" at offset {human(info.offset)}" if info.offset else ""
        mounts = m.mounts_of(other)
        if mounts:
            out.append(Refusal(reason=Ineligible.MOUNTED, message=(
                f"/dev/{other}, attached to the same file{where}, is mounted at {_places(mounts)}: "
                "unmount it or choose another disk")))
        swap = m.swap_of(other)
        if swap:
            out.append(Refusal(reason=Ineligible.SWAP, message=(
                f"/dev/{other}, attached to the same file{where}, is in use as swap: "
                f"turn it off with `swapoff {swap}` or choose another disk")))
    return out


def refusals(disk: Disk, *, min_size: int, view: SystemView = SYSTEM,
             ctx: RunContext | None = None) -> list[Refusal]:
    """Every reason ``disk`` cannot be installed to; [] means eligible.

    Judges the mounts and holders recorded in ``disk`` (read it again with :func:`resolve_disk` for a
    fresh verdict) together with what is read now: swaps, the running system, the live medium, loop
    devices sharing a file, and whether the kernel reports the device busy.
    """
    m = Machine.read(view, ctx)
    out: list[Refusal] = []
    loop = LOOP_NAME.match(disk.name)
    if not is_candidate(disk.name):
        out.append(Refusal(reason=Ineligible.NOT_A_DISK, message=(
            f"{disk.device} is {not_a_disk_kind(disk.name)}, not a disk: choose a disk")))
    elif loop and m.loop_info(disk.name) is None and not disk.backing_file:
        out.append(Refusal(reason=Ineligible.NOT_A_DISK, message=(
            f"{disk.device} is a loop device with no file attached: attach a disk image to it "
            "(losetup) or choose a disk")))
    running = running_system_mounts(m).get(disk.device)
    if running:
        out.append(Refusal(reason=Ineligible.RUNNING_SYSTEM, message=(
            f"{disk.device} holds the running system ({_places(running)}): choose another disk")))
    live = live_medium_reasons(m).get(disk.device)
    if live:
        out.append(Refusal(reason=Ineligible.LIVE_MEDIUM, message=(
            f"{disk.device} is the live medium this system started from ({live}): choose another disk")))
    if disk.read_only:
        todo = ("attach it again without --read-only" if loop
                else "check its write-protect switch")
        out.append(Refusal(reason=Ineligible.READ_ONLY, message=(
            f"{disk.device} is read-only: {todo}, or choose another disk")))
    if disk.size == 0 and not loop:
        out.append(Refusal(reason=Ineligible.TOO_SMALL, message=(
            f"{disk.device} has no medium (size 0): insert one or choose another disk")))
    elif disk.size < min_size:
        out.append(Refusal(reason=Ineligible.TOO_SMALL, message=(
            f"{disk.device} is too small: needs {human(min_size)}, has {human(disk.size)}")))
    usage = _usage_refusals(m, disk)
    out += usage
    if loop:
        out += _loop_refusals(m, disk)
    if not usage and view.probe and is_candidate(disk.name):
        # Nothing we know of uses it, yet the kernel may still see it claimed (a tool writing it, a
        # holder sysfs does not show): ask for an exclusive open, read-only, closed at once.
        for device in [disk.device, *(p.device for p in disk.partitions)]:
            if _busy(view.dev / Path(device).name):
                out.append(Refusal(reason=Ineligible.IN_USE, message=(
                    f"{device} is busy: the kernel reports it claimed (mounted in another mount "
                    "namespace such as a container, or opened exclusively by a program): release it "
                    "or choose another disk")))
                break
    return out

"""Disks: the models, discovery, identity, and eligibility with typed reasons.

The machine is read by :mod:`.blockdevices` (sysfs, mounts, swaps, udev, blkid); the running system
and the live medium are found by :mod:`.system_disks`. This module turns that reading into
:class:`Disk` objects and judges them; every public name callers need is importable from here.

Refusals are data: :func:`refusals` computes every reason a disk cannot be installed to, once; the TUI
greys the row and shows ``message``, the CLI prints it and exits 2, JSON carries ``reason``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from .blockdevices import (
    LOOP_NAME,
    SYSTEM,
    BlockNode,
    Machine,
    SystemView,
    natural_key,
    rdev,
    read_int,
    read_value,
)
from .errors import InputError
from .inroot import resolve_in_target
from .osrelease import OS_RELEASE_PATHS, parse_os_release
from .runner import RunContext
from .sizes import human
from .slots import VAR, Slot
from .system_disks import (
    LIVE_MEDIUM_MOUNTS,
    RUNNING_SYSTEM_MOUNTS,
    live_medium_disks,
    live_medium_reasons,
    running_system_disks,
    running_system_mounts,
)

# The public API: everything callers import from here, also what lives in blockdevices and system_disks.
__all__ = [
    "LIVE_MEDIUM_MOUNTS",
    "RUNNING_SYSTEM_MOUNTS",
    "SYSTEM",
    "Disk",
    "Ineligible",
    "Partition",
    "Refusal",
    "SystemView",
    "disk_id",
    "identity_changed",
    "list_disks",
    "live_medium_disks",
    "partition_name",
    "refusals",
    "resolve_disk",
    "running_system_disks",
    "split_partition_name",
]

# Whole disks nbc-tui installs to: SCSI/SATA/USB, NVMe namespaces, virtio, Xen, MMC/SD (not the eMMC
# boot0/boot1/rpmb areas), old IDE. NVMe multipath paths (nvme0c0n1) are hidden controllers, not disks.
_DISK_NAME = re.compile(r"^(sd[a-z]+|vd[a-z]+|xvd[a-z]+|hd[a-z]+|nvme\d+n\d+|mmcblk\d+)$")

# What the other block devices are, for the not-a-disk message.
_NOT_DISK_KINDS = (
    ("dm-", "a device-mapper device"),
    ("md", "a software RAID array"),
    ("zram", "a compressed RAM device"),
    ("ram", "a RAM disk"),
    ("sr", "an optical drive"),
    ("nbd", "a network block device"),
    ("mtdblock", "a flash memory partition"),
)

# nbc's filesystem labels (reference §3.2): a disk carrying them holds an nbc A/B system.
_NBC_LABELS = frozenset({Slot.A.role, Slot.B.role, VAR})


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



# ---------------------------------------------------------------------------------------------------
# Names


def partition_name(disk_name: str, number: int) -> str:
    """The kernel's name for partition ``number`` of a disk: sdb1, nvme0n1p1, mmcblk0p2, loop0p3."""
    return f"{disk_name}p{number}" if disk_name[-1:].isdigit() else f"{disk_name}{number}"


def split_partition_name(name: str) -> tuple[str, int] | None:
    """(disk name, number) for a partition name ("nvme0n1p2" -> ("nvme0n1", 2)); None for a disk name.

    Pure string parsing, for names only (sysfs is what :func:`resolve_disk` trusts): a name ending in
    digits is a partition when the rest ends in a digit followed by "p" (nvme0n1p2, mmcblk0p1,
    loop0p1, md127p1), or is a letters-only disk name of the sd/vd/xvd/hd families (sda1).
    """
    m = re.fullmatch(r"(.*\d)p(\d+)", name)
    if m and int(m.group(2)) > 0:
        return m.group(1), int(m.group(2))
    m = re.fullmatch(r"((?:sd|vd|xvd|hd)[a-z]+)(\d+)", name)
    if m and int(m.group(2)) > 0:
        return m.group(1), int(m.group(2))
    return None


def _is_candidate(name: str) -> bool:
    return bool(_DISK_NAME.match(name) or LOOP_NAME.match(name))


def _not_a_disk_kind(name: str) -> str:
    for prefix, kind in _NOT_DISK_KINDS:
        if name.startswith(prefix):
            return kind
    return "not a kind of disk nbc-tui installs to"


# ---------------------------------------------------------------------------------------------------
# Building Disk objects


def _transport(m: Machine, node: BlockNode, udev_bus: str | None) -> str | None:
    if LOOP_NAME.match(node.name):
        return "loop"
    try:
        where = "/" + str(node.path.relative_to(m.view.sys.resolve()))
    except ValueError:
        where = str(node.path)
    # Order matters: a USB stick also sits below a SCSI host; an NVMe disk below PCI.
    if udev_bus == "usb" or "/usb" in where:
        return "usb"
    if node.name.startswith("nvme") or "/nvme" in where:
        return "nvme"
    if udev_bus == "ata" or "/ata" in where:
        return "sata"
    if node.name.startswith("mmcblk") or "/mmc" in where:
        return "mmc"
    if node.name.startswith("xvd") or "/xen" in where or "/vbd-" in where:
        return "xen"
    if "/host" in where and "/target" in where:
        return "scsi"
    if node.name.startswith("vd") or "/virtio" in where:
        return "virtio"
    return udev_bus or None


def _serial_from_vpd(path: Path) -> str | None:
    # SCSI VPD page 0x80 (unit serial number): a 4-byte header, then the serial in ASCII.
    try:
        data = path.read_bytes()
    except OSError:
        return None
    text = data[4:].decode("ascii", errors="ignore").strip("\x00 \t\n")
    return text or None


def _first(*values: str | None) -> str | None:
    for value in values:
        if value:
            return value
    return None


def _pretty_name(root: Path) -> str | None:
    """PRETTY_NAME from the os-release of a mounted root, without following links out of it."""
    for rel in OS_RELEASE_PATHS:
        path = resolve_in_target(root, rel)
        if path is None:
            continue
        with contextlib.suppress(OSError):
            name = parse_os_release(path.read_text(errors="replace")).get("PRETTY_NAME")
            if name:
                return name
    return None


def _os_hint(m: Machine, mountpoints: Iterable[str], whole: dict[str, str],
             parts: list[Partition]) -> str | None:
    if m.view.probe:
        for mp in mountpoints:
            name = _pretty_name(Path(mp))
            if name:
                return name
    labels = [p.label for p in parts if p.label]
    if set(labels) >= _NBC_LABELS:
        return "an nbc A/B system (root1, root2, var)"
    if whole.get("TYPE") and whole.get("LABEL"):
        return f"{whole['LABEL']} ({whole['TYPE']})"
    if labels:
        return "labels: " + ", ".join(labels)
    types = [p.fstype for p in parts if p.fstype]
    if types:
        return "filesystems: " + ", ".join(types)
    return None


def _partition(m: Machine, node: BlockNode) -> Partition:
    probe = m.blkid(node.name)
    props, _ = m.udev(node.dev)
    return Partition(
        device=f"/dev/{node.name}",
        number=node.number or 0,
        size=(read_int(node.path / "size") or 0) * 512,
        dev=node.dev,
        fstype=_first(probe.get("TYPE"), props.get("ID_FS_TYPE")),
        label=_first(probe.get("LABEL"), props.get("ID_FS_LABEL")),
        partlabel=_first(probe.get("PART_ENTRY_NAME"), props.get("ID_PART_ENTRY_NAME")),
        uuid=_first(probe.get("UUID"), props.get("ID_FS_UUID")),
        mountpoints=m.mounts_of(node.name),
        holders=m.holders(node.name),
    )


def _by_id(m: Machine, node: BlockNode, udev_links: list[str]) -> list[str]:
    links = {link for link in udev_links if link.startswith("/dev/disk/by-id/")}
    base = m.view.dev / "disk" / "by-id"
    with contextlib.suppress(OSError):
        for entry in base.iterdir():
            if Path(os.path.realpath(entry)).name == node.name:
                links.add("/dev/disk/by-id/" + entry.name)
    return sorted(links)


def _build_disk(m: Machine, node: BlockNode) -> Disk:
    p = node.path
    props, links = m.udev(node.dev)
    device_dir = p / "device"
    candidate = _is_candidate(node.name)
    parts = [_partition(m, child) for child in m.children(node.name)]
    whole = m.blkid(node.name) if candidate else {}
    mountpoints = m.mounts_of(node.name)
    loop = m.loop_info(node.name)
    model = _first(read_value(device_dir / "model"), read_value(device_dir / "name"),  # name: MMC/SD cards
                   props.get("ID_MODEL", "").replace("_", " ") or None)
    serial = _first(read_value(device_dir / "serial"), read_value(p / "serial"), props.get("ID_SERIAL_SHORT"),
                    _serial_from_vpd(device_dir / "vpd_pg80"))
    rotational = read_value(p / "queue" / "rotational")
    return Disk(
        device=f"/dev/{node.name}",
        name=node.name,
        size=(read_int(p / "size") or 0) * 512,
        dev=node.dev,
        model=model,
        serial=serial,
        wwid=_first(read_value(p / "wwid"), read_value(device_dir / "wwid"), props.get("ID_WWN")),
        transport=_transport(m, node, props.get("ID_BUS")),
        removable=read_value(p / "removable") == "1",
        read_only=read_value(p / "ro") == "1",
        rotational=None if rotational is None else rotational == "1",
        by_id=_by_id(m, node, links),
        partitions=parts,
        mountpoints=mountpoints,
        holders=m.holders(node.name),
        backing_file=loop.backing_file if loop else None,
        fstype=whole.get("TYPE"),
        label=whole.get("LABEL"),
        pttype=whole.get("PTTYPE"),
        os_hint=_os_hint(m, [*mountpoints, *(mp for part in parts for mp in part.mountpoints)], whole, parts),
    )


# ---------------------------------------------------------------------------------------------------
# Public API: discovery and identity


def list_disks(*, include_loop: bool = False, view: SystemView = SYSTEM,
               ctx: RunContext | None = None) -> list[Disk]:
    """The machine's whole disks, in natural name order (sda, sdb, ..., nvme0n1, vda).

    Disks without a medium (size 0: an empty card reader) are left out. Loop devices only with
    ``include_loop`` and only when attached to a file. Unlike nbc, the running system's disk and the
    live medium are listed too: :func:`refusals` says why they cannot be chosen.
    """
    m = Machine.read(view, ctx)
    disks = []
    for name in sorted(m.nodes, key=natural_key):
        node = m.nodes[name]
        if node.parent or not _is_candidate(name):
            continue
        if read_value(node.path / "hidden") == "1":
            continue
        if LOOP_NAME.match(name) and (not include_loop or m.loop_info(name) is None):
            continue
        if not read_int(node.path / "size"):
            continue
        disks.append(_build_disk(m, node))
    return disks


def resolve_disk(path: str | Path, *, view: SystemView = SYSTEM, ctx: RunContext | None = None) -> Disk:
    """The whole disk at ``path`` (/dev/sdb, /dev/disk/by-id/..., any symlink to a disk's node).

    Raises InputError (exit 2) when the path does not exist, is not a block device, or is a partition
    (the message names the disk it belongs to). Any whole block device is returned, also one that is
    not a disk (dm-0, zram0): :func:`refusals` then says NOT_A_DISK.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path} does not exist",
                         hint="run `nbc-tui list` to see the disks of this machine") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise InputError(f"{path} is not a block device",
                         hint="give a whole disk such as /dev/sdb; `nbc-tui list` shows them")
    m = Machine.read(view, ctx)
    node = m.by_dev.get(rdev(st))
    if node is None:
        raise InputError(f"{path} is a block device the kernel does not list (device {rdev(st)})",
                         hint="the device may have been unplugged; run `nbc-tui list`")
    if node.parent:
        raise InputError(
            f"{path} is partition {node.number} of /dev/{node.parent}, not a whole disk",
            hint=f"give the whole disk, /dev/{node.parent} (everything on it will be erased)",
        )
    return _build_disk(m, node)


def disk_id(disk: Disk) -> str | None:
    """The stable id nbc stores as ``disk_id`` (reference §2.5): a bare /dev/disk/by-id name.

    nvme- first, then ata-, then scsi- (each without the eui. variants), else the first name.
    """
    names = sorted(Path(link).name for link in disk.by_id if "-part" not in Path(link).name)
    for prefix in ("nvme-", "ata-", "scsi-"):
        for name in names:
            if name.startswith(prefix) and not name.startswith(prefix + "eui."):
                return name
    return names[0] if names else None


def identity_changed(chosen: Disk, now: Disk) -> str | None:
    """Why ``now`` is no longer the disk that was chosen (None when it still is).

    Call it right before the wipe with a fresh :func:`resolve_disk` of the same path: a stick swapped
    for another under the same /dev name must not be erased.
    """
    checks = (
        ("size", human(chosen.size), human(now.size), chosen.size == now.size),
        ("model", chosen.model, now.model, chosen.model == now.model),
        ("serial number", chosen.serial, now.serial, chosen.serial == now.serial),
        ("WWID", chosen.wwid, now.wwid, chosen.wwid == now.wwid),
        ("backing file", chosen.backing_file, now.backing_file, chosen.backing_file == now.backing_file),
    )
    for what, before, after, same in checks:
        if not same:
            return (f"{chosen.device} is not the disk that was chosen: its {what} was {before or 'unknown'}"
                    f" and is now {after or 'unknown'}")
    return None


# ---------------------------------------------------------------------------------------------------
# Public API: eligibility


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
    if not _is_candidate(disk.name):
        out.append(Refusal(reason=Ineligible.NOT_A_DISK, message=(
            f"{disk.device} is {_not_a_disk_kind(disk.name)}, not a disk: choose a disk")))
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
    if not usage and view.probe and _is_candidate(disk.name):
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

"""Finding the machine's disks: :class:`~.model.Disk` objects built from one reading of the kernel
(:mod:`.blockdevices`: sysfs, mounts, swaps, udev, blkid), a path resolved to its whole disk, and a disk's
stable identity (nbc's ``disk_id``, and whether it is still the disk that was chosen)."""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError
from ..inroot import resolve_in_target
from ..osrelease import OS_RELEASE_PATHS, parse_os_release
from ..runner import RunContext
from ..sizes import human
from ..system.slots import VAR, Slot
from .blockdevices import LOOP_NAME, SYSTEM, BlockNode, Machine, SystemView, natural_key, rdev, read_int, read_value
from .model import Disk, Partition

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


def is_candidate(name: str) -> bool:
    return bool(_DISK_NAME.match(name) or LOOP_NAME.match(name))


def not_a_disk_kind(name: str) -> str:
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
    candidate = is_candidate(node.name)
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
        if node.parent or not is_candidate(name):
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
    m = Machine.read(view, ctx)
    # A fake machine (a test's view) may name a disk that has no node here: found by name in its own trees.
    dev = m.dev_of_path(str(path)) if not view.probe and not path.exists() else _device_number(path)
    if dev is None:
        raise InputError(f"{path} does not exist", hint="run `nbc-tui list` to see the disks of this machine")
    node = m.by_dev.get(dev)
    if node is None:
        raise InputError(f"{path} is a block device the kernel does not list (device {dev})",
                         hint="the device may have been unplugged; run `nbc-tui list`")
    if node.parent:
        raise InputError(
            f"{path} is partition {node.number} of /dev/{node.parent}, not a whole disk",
            hint=f"give the whole disk, /dev/{node.parent} (everything on it will be erased)",
        )
    return _build_disk(m, node)


def _device_number(path: Path) -> str:
    """The "major:minor" of the block device node ``path`` names (InputError when it is none)."""
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
    return rdev(st)


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
    # A card reader names itself, not the card: two cards of one size look the same above. What is on them
    # does not (nothing wrote to the disk since it was checked).
    if _contents(chosen) != _contents(now):
        return (f"{chosen.device} is not the disk that was chosen: what is on it changed (it held "
                f"{_described(chosen)}, it now holds {_described(now)})")
    return None


def _contents(disk: Disk) -> tuple[object, ...]:
    """What is on a disk, as far as its partition table and filesystems tell (not their files)."""
    return (disk.pttype, disk.fstype, disk.label,
            tuple((p.number, p.size, p.fstype, p.uuid, p.label) for p in disk.partitions))


def _described(disk: Disk) -> str:
    parts = [f"{p.fstype or 'unknown'}{f' {p.label!r}' if p.label else ''}" for p in disk.partitions]
    if parts:
        return f"{len(parts)} partition(s): {', '.join(parts)}"
    return disk.fstype or "no partitions"



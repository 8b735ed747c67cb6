"""Disks: discovery from sysfs, identity, and eligibility with typed reasons.

Everything is read from the kernel (sysfs, /proc/self/mountinfo, /proc/swaps) and, for filesystem
labels, from ``blkid -p`` (a read-only probe). udev is optional: its database adds serials and
/dev/disk/by-id names where udevd runs (a live ISO), and nothing breaks where it does not (the build
machines). Devices are matched by device number (major:minor), never by path strings, so a disk mounted
through /dev/mapper, /dev/disk/by-* or /dev/root is still seen as mounted.

Refusals are data: :func:`refusals` computes every reason a disk cannot be installed to, once; the TUI
greys the row and shows ``message``, the CLI prints it and exits 2, JSON carries ``reason``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from .errors import InputError, NbcError
from .runner import RunContext, run
from .sizes import human

log = logging.getLogger("nbc_tui")

# Whole disks nbc-tui installs to: SCSI/SATA/USB, NVMe namespaces, virtio, Xen, MMC/SD (not the eMMC
# boot0/boot1/rpmb areas), old IDE. NVMe multipath paths (nvme0c0n1) are hidden controllers, not disks.
_DISK_NAME = re.compile(r"^(sd[a-z]+|vd[a-z]+|xvd[a-z]+|hd[a-z]+|nvme\d+n\d+|mmcblk\d+)$")
_LOOP_NAME = re.compile(r"^loop\d+$")

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

# nbc's filesystem labels (reference §3.2): a disk carrying them holds an nbc A/B system.
_NBC_LABELS = frozenset({"root1", "root2", "var"})


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


@dataclass(frozen=True)
class SystemView:
    """Where the machine is read from. The real machine by default; unit tests point it at a fake tree.

    ``probe`` allows touching the real machine beyond these trees: blkid on device nodes, stat() of
    files and of /, reading os-release from mounted filesystems, and an O_EXCL open to detect a busy
    device. Fake views set it to False.
    """

    sys: Path = Path("/sys")
    proc: Path = Path("/proc")
    dev: Path = Path("/dev")
    run: Path = Path("/run")
    probe: bool = True


SYSTEM = SystemView()


# ---------------------------------------------------------------------------------------------------
# Reading the machine


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _unescape_mount(text: str) -> str:
    # /proc/self/mountinfo and /proc/swaps write space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _udev_encode(value: str) -> str:
    # udev writes unsafe characters of labels in /dev/disk/by-label names as \xHH ("NBC\x20LIVE").
    safe = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789#+-.:=@_")
    return "".join(c if c in safe else "".join(f"\\x{b:02x}" for b in c.encode()) for c in value)


def _rdev(st: os.stat_result) -> str:
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def _stdev(st: os.stat_result) -> str:
    return f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"


def _natural_key(name: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


@dataclass
class _Node:
    name: str
    dev: str
    path: Path
    """The device's directory in sysfs, symlinks resolved."""
    parent: str | None = None
    """The whole disk's kernel name, for a partition."""
    number: int | None = None


@dataclass
class _Mount:
    mountpoint: str
    devs: set[str]
    source: str
    fstype: str


@dataclass
class _LoopInfo:
    backing_file: str
    offset: int
    sizelimit: int
    key: object = None
    """Identity of the backing file: (st_dev, st_ino) where it can be stat'ed, else its path."""


@dataclass
class _Machine:
    """One consistent reading of the kernel's block devices, mounts and swaps."""

    view: SystemView
    ctx: RunContext
    nodes: dict[str, _Node] = field(default_factory=dict)
    by_dev: dict[str, _Node] = field(default_factory=dict)
    mounts: list[_Mount] = field(default_factory=list)
    swaps: dict[str, str] = field(default_factory=dict)
    """Active swap devices: device number -> the name /proc/swaps gives."""

    @classmethod
    def read(cls, view: SystemView, ctx: RunContext | None = None) -> _Machine:
        m = cls(view, ctx or RunContext())
        m._scan_block()
        m._read_mounts()
        m._read_swaps()
        return m

    def _scan_block(self) -> None:
        base = self.view.sys / "class" / "block"
        try:
            entries = sorted(base.iterdir())
        except OSError:
            entries = []
        for entry in entries:
            try:
                path = entry.resolve()
            except OSError:
                continue
            dev = _read(path / "dev")
            if not dev:
                continue
            node = _Node(entry.name, dev, path)
            if (path / "partition").exists():
                node.parent = path.parent.name
                node.number = _read_int(path / "partition")
            self.nodes[node.name] = node
            self.by_dev[dev] = node

    def _read_mounts(self) -> None:
        info = _read(self.view.proc / "self" / "mountinfo")
        if info is not None:
            for line in info.splitlines():
                fields = line.split()
                if "-" not in fields:
                    continue
                sep = fields.index("-")
                if sep < 5 or len(fields) < sep + 3:
                    continue
                source = _unescape_mount(fields[sep + 2])
                devs = {fields[2]}
                source_dev = self.dev_of_path(source)
                if source_dev:
                    devs.add(source_dev)
                self.mounts.append(_Mount(_unescape_mount(fields[4]), devs, source, fields[sep + 1]))
            return
        # No mountinfo (a very old or odd /proc): /proc/mounts names only the source.
        for line in (_read(self.view.proc / "mounts") or "").splitlines():
            fields = line.split()
            if len(fields) < 3:
                continue
            source = _unescape_mount(fields[0])
            source_dev = self.dev_of_path(source)
            self.mounts.append(_Mount(_unescape_mount(fields[1]), {source_dev} if source_dev else set(),
                                      source, fields[2]))

    def _read_swaps(self) -> None:
        for line in (_read(self.view.proc / "swaps") or "").splitlines()[1:]:
            fields = line.split()
            if len(fields) < 2 or fields[1] != "partition":
                continue  # a swap file lives on a mounted filesystem: that mount is what counts
            name = _unescape_mount(fields[0])
            dev = self.dev_of_path(name)
            if dev:
                self.swaps[dev] = name

    # --- device numbers ------------------------------------------------------------------------------

    def dev_of_path(self, path: str) -> str | None:
        """Device number of a block device path ("/dev/sdb1", "/dev/mapper/x", "/dev/root")."""
        if not path.startswith("/dev/"):
            return None
        local = self.view.dev / path.removeprefix("/dev/")
        if self.view.probe:
            with contextlib.suppress(OSError):
                st = os.stat(local)
                if stat.S_ISBLK(st.st_mode):
                    return _rdev(st)
        # No node to stat (a fake tree, a vanished node): go by the kernel name it points at.
        name = Path(os.path.realpath(local)).name if local.is_symlink() else local.name
        node = self.nodes.get(name)
        return node.dev if node else None

    def node_of_file(self, path: str) -> _Node | None:
        """The block device holding the filesystem a file lives on (for loop backing files)."""
        if self.view.probe:
            with contextlib.suppress(OSError):
                node = self.by_dev.get(_stdev(os.stat(path)))
                if node:
                    return node
        # btrfs gives files an anonymous st_dev: use the mount with the longest matching prefix.
        best: _Mount | None = None
        for mount in self.mounts:
            mp = mount.mountpoint.rstrip("/") + "/"
            if (path + "/").startswith(mp) and (best is None or len(mp) > len(best.mountpoint.rstrip("/") + "/")):
                best = mount
        if best:
            for dev in best.devs:
                if dev in self.by_dev:
                    return self.by_dev[dev]
        return None

    # --- relations -----------------------------------------------------------------------------------

    def children(self, name: str) -> list[_Node]:
        parts = [n for n in self.nodes.values() if n.parent == name]
        return sorted(parts, key=lambda n: (n.number or 0, _natural_key(n.name)))

    def holders(self, name: str) -> list[str]:
        node = self.nodes.get(name)
        return self._listdir(node.path / "holders") if node else []

    def slaves(self, name: str) -> list[str]:
        node = self.nodes.get(name)
        return self._listdir(node.path / "slaves") if node else []

    @staticmethod
    def _listdir(path: Path) -> list[str]:
        try:
            return sorted((p.name for p in path.iterdir()), key=_natural_key)
        except OSError:
            return []

    def stacked_on(self, name: str) -> list[str]:
        """Every device stacked on ``name``, directly or not (a LUKS mapping on md on a partition)."""
        found: list[str] = []
        todo = self.holders(name)
        while todo:
            holder = todo.pop(0)
            if holder not in found and holder != name:
                found.append(holder)
                todo.extend(self.holders(holder))
        return found

    def mounts_of(self, name: str) -> list[str]:
        """Mount points of ``name`` and of everything stacked on it, in mount order, without repeats."""
        devs = {self.nodes[n].dev for n in [name, *self.stacked_on(name)] if n in self.nodes}
        seen: list[str] = []
        for mount in self.mounts:
            if mount.devs & devs and mount.mountpoint not in seen:
                seen.append(mount.mountpoint)
        return seen

    def swap_of(self, name: str) -> str | None:
        """The swap device on ``name`` or stacked on it, as /proc/swaps names it."""
        for n in [name, *self.stacked_on(name)]:
            node = self.nodes.get(n)
            if node and node.dev in self.swaps:
                return self.swaps[node.dev]
        return None

    def loop_info(self, name: str) -> _LoopInfo | None:
        node = self.nodes.get(name)
        if node is None or not _LOOP_NAME.match(name):
            return None
        backing = _read(node.path / "loop" / "backing_file")
        if not backing:
            return None  # not attached
        info = _LoopInfo(backing, _read_int(node.path / "loop" / "offset") or 0,
                         _read_int(node.path / "loop" / "sizelimit") or 0)
        path = backing.removesuffix(" (deleted)")
        info.key = path
        if self.view.probe:
            with contextlib.suppress(OSError):
                st = os.stat(path)
                info.key = (st.st_dev, st.st_ino)
        return info

    def loop_siblings(self, name: str) -> list[tuple[str, _LoopInfo]]:
        """Other loop devices attached to the same backing file as loop device ``name``."""
        mine = self.loop_info(name)
        if mine is None:
            return []
        siblings = []
        for other in sorted(self.nodes, key=_natural_key):
            if other != name and _LOOP_NAME.match(other):
                info = self.loop_info(other)
                if info is not None and info.key == mine.key:
                    siblings.append((other, info))
        return siblings

    def disks_under(self, name: str, seen: set[str] | None = None) -> set[str]:
        """The whole disks that ``name`` is made of: through dm/md slaves, partitions, loop files."""
        seen = set() if seen is None else seen
        node = self.nodes.get(name)
        if node is None or name in seen:
            return set()
        seen.add(name)
        if node.parent:
            return self.disks_under(node.parent, seen)
        slaves = self.slaves(name)
        if slaves:
            found: set[str] = set()
            for slave in slaves:
                found |= self.disks_under(slave, seen)
            return found
        found = {name}
        loop = self.loop_info(name)
        if loop:
            holder = self.node_of_file(loop.backing_file.removesuffix(" (deleted)"))
            if holder:
                found |= self.disks_under(holder.name, seen)
        return found

    def devices_mounted_at(self, mountpoint: str) -> list[str]:
        names = []
        for mount in self.mounts:
            if mount.mountpoint == mountpoint:
                names += [self.by_dev[d].name for d in sorted(mount.devs) if d in self.by_dev]
        return names

    # --- udev and blkid --------------------------------------------------------------------------------

    def udev(self, dev: str) -> tuple[dict[str, str], list[str]]:
        """udev's properties and /dev symlinks for a device (empty where udevd does not run)."""
        text = _read(self.view.run / "udev" / "data" / f"b{dev}")
        props: dict[str, str] = {}
        links: list[str] = []
        for line in (text or "").splitlines():
            if line.startswith("E:") and "=" in line:
                key, _, value = line[2:].partition("=")
                props[key] = value
            elif line.startswith("S:"):
                links.append("/dev/" + line[2:])
        return props, links

    def blkid(self, name: str) -> dict[str, str]:
        """blkid's low-level probe of /dev/<name> (read-only; empty when nothing is found or allowed)."""
        node = self.view.dev / name
        if not self.view.probe or not node.exists():
            return {}
        try:
            out = run(["blkid", "-p", "-o", "export", node], ctx=self.ctx, ok=(0, 2),
                      changes_system=False, timeout=30, what="blkid").out
        except NbcError as exc:
            log.debug("blkid %s: %s", node, exc)
            return {}
        values = {}
        for line in out.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key] = re.sub(r"\\(.)", r"\1", value)
        return values

    def by_label(self, kind: str, value: str) -> str | None:
        """Kernel name of the device with a filesystem LABEL or UUID (for live media named on the cmdline)."""
        for encoded in (_udev_encode(value), value):
            link = self.view.dev / "disk" / f"by-{kind.lower()}" / encoded
            if link.is_symlink():
                return Path(os.path.realpath(link)).name
        if not self.view.probe:
            return None
        try:
            out = run(["blkid", "-c", "/dev/null", "-o", "device", "-t", f"{kind.upper()}={value}"],
                      ctx=self.ctx, ok=(0, 2), changes_system=False, timeout=30, what="blkid").out
        except NbcError:
            return None
        first = out.split()
        return Path(os.path.realpath(first[0])).name if first else None


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
    return bool(_DISK_NAME.match(name) or _LOOP_NAME.match(name))


def _not_a_disk_kind(name: str) -> str:
    for prefix, kind in _NOT_DISK_KINDS:
        if name.startswith(prefix):
            return kind
    return "not a kind of disk nbc-tui installs to"


# ---------------------------------------------------------------------------------------------------
# Building Disk objects


def _transport(m: _Machine, node: _Node, udev_bus: str | None) -> str | None:
    if _LOOP_NAME.match(node.name):
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
    for rel in ("etc/os-release", "usr/lib/os-release"):
        path = root / rel
        with contextlib.suppress(OSError):
            if path.is_symlink():
                target = os.readlink(path)
                path = root / target.lstrip("/") if target.startswith("/") else path.parent / target
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("PRETTY_NAME="):
                    return line.partition("=")[2].strip().strip("\"'") or None
    return None


def _os_hint(m: _Machine, mountpoints: Iterable[str], whole: dict[str, str],
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


def _partition(m: _Machine, node: _Node) -> Partition:
    probe = m.blkid(node.name)
    props, _ = m.udev(node.dev)
    return Partition(
        device=f"/dev/{node.name}",
        number=node.number or 0,
        size=(_read_int(node.path / "size") or 0) * 512,
        dev=node.dev,
        fstype=_first(probe.get("TYPE"), props.get("ID_FS_TYPE")),
        label=_first(probe.get("LABEL"), props.get("ID_FS_LABEL")),
        partlabel=_first(probe.get("PART_ENTRY_NAME"), props.get("ID_PART_ENTRY_NAME")),
        uuid=_first(probe.get("UUID"), props.get("ID_FS_UUID")),
        mountpoints=m.mounts_of(node.name),
        holders=m.holders(node.name),
    )


def _by_id(m: _Machine, node: _Node, udev_links: list[str]) -> list[str]:
    links = {link for link in udev_links if link.startswith("/dev/disk/by-id/")}
    base = m.view.dev / "disk" / "by-id"
    with contextlib.suppress(OSError):
        for entry in base.iterdir():
            if Path(os.path.realpath(entry)).name == node.name:
                links.add("/dev/disk/by-id/" + entry.name)
    return sorted(links)


def _build_disk(m: _Machine, node: _Node) -> Disk:
    p = node.path
    props, links = m.udev(node.dev)
    device_dir = p / "device"
    candidate = _is_candidate(node.name)
    parts = [_partition(m, child) for child in m.children(node.name)]
    whole = m.blkid(node.name) if candidate else {}
    mountpoints = m.mounts_of(node.name)
    loop = m.loop_info(node.name)
    model = _first(_read(device_dir / "model"), _read(device_dir / "name"),  # name: MMC/SD cards
                   props.get("ID_MODEL", "").replace("_", " ") or None)
    serial = _first(_read(device_dir / "serial"), _read(p / "serial"), props.get("ID_SERIAL_SHORT"),
                    _serial_from_vpd(device_dir / "vpd_pg80"))
    rotational = _read(p / "queue" / "rotational")
    return Disk(
        device=f"/dev/{node.name}",
        name=node.name,
        size=(_read_int(p / "size") or 0) * 512,
        dev=node.dev,
        model=model,
        serial=serial,
        wwid=_first(_read(p / "wwid"), _read(device_dir / "wwid"), props.get("ID_WWN")),
        transport=_transport(m, node, props.get("ID_BUS")),
        removable=_read(p / "removable") == "1",
        read_only=_read(p / "ro") == "1",
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
    m = _Machine.read(view, ctx)
    disks = []
    for name in sorted(m.nodes, key=_natural_key):
        node = m.nodes[name]
        if node.parent or not _is_candidate(name):
            continue
        if _read(node.path / "hidden") == "1":
            continue
        if _LOOP_NAME.match(name) and (not include_loop or m.loop_info(name) is None):
            continue
        if not _read_int(node.path / "size"):
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
    m = _Machine.read(view, ctx)
    node = m.by_dev.get(_rdev(st))
    if node is None:
        raise InputError(f"{path} is a block device the kernel does not list (device {_rdev(st)})",
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
# Public API: the running system and the live medium


def _running_system(m: _Machine) -> dict[str, list[str]]:
    """Disk device -> the running system's mount points on it."""
    found: dict[str, list[str]] = {}

    def add(name: str, where: str) -> None:
        for disk in m.disks_under(name):
            places = found.setdefault(f"/dev/{disk}", [])
            if where not in places:
                places.append(where)

    if m.view.probe:
        with contextlib.suppress(OSError):
            node = m.by_dev.get(_stdev(os.stat("/")))
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
    return set(_running_system(_Machine.read(view, ctx)))


_LIVE_CMDLINE = re.compile(r"^(?:root=live:|archisolabel=|archisodevice=|live-media=|cdlabel=)(.+)$")


def _live_medium(m: _Machine) -> dict[str, str]:
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
    cmdline = (_read(m.view.proc / "cmdline") or "").split()
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
    return set(_live_medium(_Machine.read(view, ctx)))


# ---------------------------------------------------------------------------------------------------
# Public API: eligibility


def _holder_text(m: _Machine, holder: str) -> tuple[str, str]:
    """(what the holder is, what to do about it)."""
    node = m.nodes.get(holder)
    dm_name = _read(node.path / "dm" / "name") if node else None
    dm_uuid = (_read(node.path / "dm" / "uuid") if node else None) or ""
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


def _usage_refusals(m: _Machine, disk: Disk) -> list[Refusal]:
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


def _loop_refusals(m: _Machine, disk: Disk) -> list[Refusal]:
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
    m = _Machine.read(view, ctx)
    out: list[Refusal] = []
    loop = _LOOP_NAME.match(disk.name)
    if not _is_candidate(disk.name):
        out.append(Refusal(reason=Ineligible.NOT_A_DISK, message=(
            f"{disk.device} is {_not_a_disk_kind(disk.name)}, not a disk: choose a disk")))
    elif loop and m.loop_info(disk.name) is None and not disk.backing_file:
        out.append(Refusal(reason=Ineligible.NOT_A_DISK, message=(
            f"{disk.device} is a loop device with no file attached: attach a disk image to it "
            "(losetup) or choose a disk")))
    running = _running_system(m).get(disk.device)
    if running:
        out.append(Refusal(reason=Ineligible.RUNNING_SYSTEM, message=(
            f"{disk.device} holds the running system ({_places(running)}): choose another disk")))
    live = _live_medium(m).get(disk.device)
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

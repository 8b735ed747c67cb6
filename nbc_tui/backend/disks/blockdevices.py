"""Block devices as the kernel shows them: one snapshot of sysfs, mounts, swaps, udev and blkid.

Everything is read from the kernel (sysfs, /proc/self/mountinfo, /proc/swaps) and, for filesystem
labels, from ``blkid -p`` (a read-only probe). udev is optional: its database adds serials and
/dev/disk/by-id names where udevd runs (a live ISO), and nothing breaks where it does not (the build
machines). Devices are matched by device number (major:minor), never by path strings, so a disk mounted
through /dev/mapper, /dev/disk/by-* or /dev/root is still seen as mounted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NbcError
from ..mounts import unescape_mountinfo
from ..runner import RunContext, run

log = logging.getLogger("nbc_tui")

# Loop devices (loop0, not their partitions): their backing file links disks to the disks holding it.
LOOP_NAME = re.compile(r"^loop\d+$")


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
# Reading files


def read_value(path: Path) -> str | None:
    """A sysfs or /proc file's text, stripped; None when it cannot be read."""
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def read_int(path: Path) -> int | None:
    """A file holding one integer (sysfs size, partition); None when absent or not a number."""
    text = read_value(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _udev_encode(value: str) -> str:
    # udev writes unsafe characters of labels in /dev/disk/by-label names as \xHH ("NBC\x20LIVE").
    safe = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789#+-.:=@_")
    return "".join(c if c in safe else "".join(f"\\x{b:02x}" for b in c.encode()) for c in value)


def rdev(st: os.stat_result) -> str:
    """The "major:minor" of the device a device node stands for."""
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def stdev(st: os.stat_result) -> str:
    """The "major:minor" of the device holding the filesystem a file lives on."""
    return f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"


def natural_key(name: str) -> list[int | str]:
    """Sort key putting sda2 before sda10 and loop9 before loop10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


# ---------------------------------------------------------------------------------------------------
# The snapshot


@dataclass
class BlockNode:
    """A block device in /sys/class/block: a whole device or a partition."""

    name: str
    dev: str
    path: Path
    """The device's directory in sysfs, symlinks resolved."""
    parent: str | None = None
    """The whole disk's kernel name, for a partition."""
    number: int | None = None


@dataclass
class Mount:
    """A line of mountinfo: where, the device numbers it is known by, its source and type."""

    mountpoint: str
    devs: set[str]
    source: str
    fstype: str


@dataclass
class LoopInfo:
    """What a loop device is attached to."""

    backing_file: str
    offset: int
    sizelimit: int
    key: object = None
    """Identity of the backing file: (st_dev, st_ino) where it can be stat'ed, else its path."""


@dataclass
class Machine:
    """One consistent reading of the kernel's block devices, mounts and swaps."""

    view: SystemView
    ctx: RunContext
    nodes: dict[str, BlockNode] = field(default_factory=dict)
    by_dev: dict[str, BlockNode] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    swaps: dict[str, str] = field(default_factory=dict)
    """Active swap devices: device number -> the name /proc/swaps gives."""

    @classmethod
    def read(cls, view: SystemView, ctx: RunContext | None = None) -> Machine:
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
            dev = read_value(path / "dev")
            if not dev:
                continue
            node = BlockNode(entry.name, dev, path)
            if (path / "partition").exists():
                node.parent = path.parent.name
                node.number = read_int(path / "partition")
            self.nodes[node.name] = node
            self.by_dev[dev] = node

    def _read_mounts(self) -> None:
        info = read_value(self.view.proc / "self" / "mountinfo")
        if info is not None:
            for line in info.splitlines():
                fields = line.split()
                if "-" not in fields:
                    continue
                sep = fields.index("-")
                if sep < 5 or len(fields) < sep + 3:
                    continue
                source = unescape_mountinfo(fields[sep + 2])
                devs = {fields[2]}
                source_dev = self.dev_of_path(source)
                if source_dev:
                    devs.add(source_dev)
                self.mounts.append(Mount(unescape_mountinfo(fields[4]), devs, source, fields[sep + 1]))
            return
        # No mountinfo (a very old or odd /proc): /proc/mounts names only the source.
        for line in (read_value(self.view.proc / "mounts") or "").splitlines():
            fields = line.split()
            if len(fields) < 3:
                continue
            source = unescape_mountinfo(fields[0])
            source_dev = self.dev_of_path(source)
            self.mounts.append(Mount(unescape_mountinfo(fields[1]), {source_dev} if source_dev else set(),
                                      source, fields[2]))

    def _read_swaps(self) -> None:
        for line in (read_value(self.view.proc / "swaps") or "").splitlines()[1:]:
            fields = line.split()
            if len(fields) < 2 or fields[1] != "partition":
                continue  # a swap file lives on a mounted filesystem: that mount is what counts
            name = unescape_mountinfo(fields[0])
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
                    return rdev(st)
        # No node to stat (a fake tree, a vanished node): go by the kernel name it points at.
        name = Path(os.path.realpath(local)).name if local.is_symlink() else local.name
        node = self.nodes.get(name)
        return node.dev if node else None

    def node_of_file(self, path: str) -> BlockNode | None:
        """The block device holding the filesystem a file lives on (for loop backing files)."""
        if self.view.probe:
            with contextlib.suppress(OSError):
                node = self.by_dev.get(stdev(os.stat(path)))
                if node:
                    return node
        # btrfs gives files an anonymous st_dev: use the mount with the longest matching prefix.
        best: Mount | None = None
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

    def children(self, name: str) -> list[BlockNode]:
        parts = [n for n in self.nodes.values() if n.parent == name]
        return sorted(parts, key=lambda n: (n.number or 0, natural_key(n.name)))

    def holders(self, name: str) -> list[str]:
        node = self.nodes.get(name)
        return self._listdir(node.path / "holders") if node else []

    def slaves(self, name: str) -> list[str]:
        node = self.nodes.get(name)
        return self._listdir(node.path / "slaves") if node else []

    @staticmethod
    def _listdir(path: Path) -> list[str]:
        try:
            return sorted((p.name for p in path.iterdir()), key=natural_key)
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

    def loop_info(self, name: str) -> LoopInfo | None:
        node = self.nodes.get(name)
        if node is None or not LOOP_NAME.match(name):
            return None
        backing = read_value(node.path / "loop" / "backing_file")
        if not backing:
            return None  # not attached
        info = LoopInfo(backing, read_int(node.path / "loop" / "offset") or 0,
                         read_int(node.path / "loop" / "sizelimit") or 0)
        path = backing.removesuffix(" (deleted)")
        info.key = path
        if self.view.probe:
            with contextlib.suppress(OSError):
                st = os.stat(path)
                info.key = (st.st_dev, st.st_ino)
        return info

    def loop_siblings(self, name: str) -> list[tuple[str, LoopInfo]]:
        """Other loop devices attached to the same backing file as loop device ``name``."""
        mine = self.loop_info(name)
        if mine is None:
            return []
        siblings = []
        for other in sorted(self.nodes, key=natural_key):
            if other != name and LOOP_NAME.match(other):
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
        text = read_value(self.view.run / "udev" / "data" / f"b{dev}")
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

"""A fake machine for disk discovery: the few sysfs, /proc, /dev and /run/udev files that
:mod:`nbc_tui.backend.disks.blockdevices` reads, written under a temporary folder, and the
:class:`~nbc_tui.backend.disks.SystemView` that reads them (``probe=False``: nothing of the real machine is
touched). The unit tests of disks and disk rules and the disk screen's tests build their machines with it."""

from __future__ import annotations

import os
from pathlib import Path

from nbc_tui.backend.disks import SystemView, partition_name
from nbc_tui.backend.sizes import GiB

# Device paths under /sys of the buses the fake disks hang on (the transport is read from them).
ATA = "devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0"
ATA2 = "devices/pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0"
USB = "devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0"
NVME = "devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0"
VIRTUAL = "devices/virtual"


class FakeMachine:
    """Writes the few sysfs, /proc, /dev and /run/udev files that blockdevices.py reads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sys, self.proc, self.dev, self.run = (root / d for d in ("sys", "proc", "dev", "run"))
        for d in (self.sys / "class" / "block", self.sys / "block", self.sys / "dev" / "block",
                  self.proc / "self", self.dev, self.run):
            d.mkdir(parents=True, exist_ok=True)
        self._mountinfo: list[str] = []
        self._swaps: list[str] = []
        self.cmdline("BOOT_IMAGE=/vmlinuz root=UUID=1234 ro")
        self._flush()

    @property
    def view(self) -> SystemView:
        return SystemView(sys=self.sys, proc=self.proc, dev=self.dev, run=self.run, probe=False)

    def _node(self, where: Path, name: str, dev: str, size: int, *, ro: bool = False) -> Path:
        where.mkdir(parents=True)
        (where / "dev").write_text(dev + "\n")
        (where / "size").write_text(f"{size // 512}\n")
        (where / "ro").write_text("1\n" if ro else "0\n")
        (where / "holders").mkdir()
        (where / "slaves").mkdir()
        (self.sys / "class" / "block" / name).symlink_to(where)
        (self.sys / "dev" / "block" / dev).symlink_to(where)
        return where

    def disk(self, name: str, dev: str, size: int, *, devpath: str = ATA, ro: bool = False,
             removable: bool = False, model: str | None = None, serial: str | None = None,
             rotational: bool = False) -> Path:
        node = self._node(self.sys / devpath / "block" / name, name, dev, size, ro=ro)
        (node / "removable").write_text("1\n" if removable else "0\n")
        (node / "queue").mkdir()
        (node / "queue" / "rotational").write_text("1\n" if rotational else "0\n")
        device = self.sys / devpath
        if model:
            (device / "model").write_text(model + "   \n")
        if serial:
            (device / "serial").write_text(f"  {serial}\n")
        (node / "device").symlink_to(device)
        (self.sys / "block" / name).symlink_to(node)
        return node

    def partition(self, disk: str, number: int, dev: str, size: int) -> str:
        name = partition_name(disk, number)
        node = self._node((self.sys / "block" / disk).resolve() / name, name, dev, size)
        (node / "partition").write_text(f"{number}\n")
        return name

    def loop(self, n: int, size: int, backing: str | None, *, offset: int = 0, sizelimit: int = 0,
             ro: bool = False) -> str:
        name = f"loop{n}"
        node = self.disk(name, f"7:{n}", size if backing else 0, devpath=VIRTUAL, ro=ro, rotational=True)
        if backing:
            (node / "loop").mkdir()
            (node / "loop" / "backing_file").write_text(backing + "\n")
            (node / "loop" / "offset").write_text(f"{offset}\n")
            (node / "loop" / "sizelimit").write_text(f"{sizelimit}\n")
        return name

    def stack(self, name: str, dev: str, on: list[str], *, size: int = GiB, dm_name: str | None = None,
              dm_uuid: str = "") -> str:
        """A dm or md device made of ``on`` (sysfs holders/slaves links both ways)."""
        node = self._node(self.sys / VIRTUAL / "block" / name, name, dev, size)
        if dm_name:
            (node / "dm").mkdir()
            (node / "dm" / "name").write_text(dm_name + "\n")
            (node / "dm" / "uuid").write_text(dm_uuid + "\n")
        for lower in on:
            lower_node = (self.sys / "class" / "block" / lower).resolve()
            (lower_node / "holders" / name).symlink_to(node)
            (node / "slaves" / lower).symlink_to(lower_node)
        (self.sys / "block" / name).symlink_to(node)
        return name

    def mount(self, majmin: str, mountpoint: str, source: str, fstype: str = "ext4") -> None:
        n = len(self._mountinfo) + 20
        esc = mountpoint.replace(" ", "\\040")
        self._mountinfo.append(f"{n} 1 {majmin} / {esc} rw,relatime shared:{n} - {fstype} {source} rw")
        self._flush()

    def swap(self, path: str) -> None:
        self._swaps.append(f"{path}\t\t\t\tpartition\t1048572\t\t0\t\t-2")
        self._flush()

    def cmdline(self, text: str) -> None:
        (self.proc / "cmdline").write_text(text + "\n")

    def dev_link(self, rel: str, target: str) -> None:
        link = self.dev / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(self.dev / target, link.parent))

    def udev(self, majmin: str, lines: list[str]) -> None:
        data = self.run / "udev" / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / f"b{majmin}").write_text("\n".join(lines) + "\n")

    def _flush(self) -> None:
        (self.proc / "self" / "mountinfo").write_text("".join(line + "\n" for line in self._mountinfo))
        header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
        (self.proc / "swaps").write_text(header + "".join(line + "\n" for line in self._swaps))

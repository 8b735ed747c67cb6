"""nbc's GPT layout (reference §3), the wipe, and the block devices of the new partitions.

Partitions are found by number, as nbc does: p1 ESP, p2 root1, p3 root2, p4 var. Their devices are the
kernel's partition nodes where the kernel creates them; otherwise (an image file, or a loop device without
partition scanning, as on this project's build machines) one loop device per partition with an offset.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import NbcError
from ..plan import Layout
from ..runner import RunContext, retry, run
from ..system.slots import ESP_PARTITION, VAR, VAR_PARTITION, Slot

log = logging.getLogger("nbc_tui")

ESP_TYPE_GUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_DATA_TYPE_GUID = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
ESP = "esp"
"""The engine's name for the ESP's role."""
ESP_NAME = "boot"
"""nbc's GPT name of the ESP (its filesystem label is UEFI)."""


@dataclass(frozen=True)
class PartitionSpec:
    number: int
    name: str
    """GPT partition name (PARTLABEL), nbc's: boot, root1, root2, var."""
    typecode: str
    """sgdisk type code: EF00 for the ESP, 8300 for the rest."""
    size: int | None
    """Bytes; None takes the rest of the disk."""
    role: str
    """What the engine calls it: esp, root1, root2, var (also the filesystem label of the last three)."""


def nbc_layout(layout: Layout) -> list[PartitionSpec]:
    return [
        PartitionSpec(ESP_PARTITION, ESP_NAME, "EF00", layout.esp_size, ESP),
        *(PartitionSpec(slot.partition, slot.role, "8300", layout.root_size, slot.role) for slot in Slot),
        PartitionSpec(VAR_PARTITION, VAR, "8300", None, VAR),
    ]


@dataclass(frozen=True)
class TablePartition:
    number: int
    start: int
    """Bytes from the start of the disk."""
    size: int
    """Bytes."""
    name: str
    type_guid: str
    uuid: str


def wipe_disk(disk: Path, *, ctx: RunContext, partition_nodes: Sequence[Path] = ()) -> None:
    """Erase old signatures: those inside the old partitions first (nbc skips these), then the disk's."""
    for node in partition_nodes:
        run(["wipefs", "--all", "--quiet", node], ctx=ctx)
    run(["wipefs", "--all", "--quiet", disk], ctx=ctx)
    run(["sgdisk", "--zap-all", disk], ctx=ctx, ok=(0, 2))  # 2: "no GPT found", nothing to zap


def create_partitions(disk: Path, specs: list[PartitionSpec], *, ctx: RunContext) -> None:
    """nbc's partitions (reference §3.2) in one sgdisk call: the same options nbc passes in five calls,
    applied in the same order, but sgdisk syncs and sleeps a second after each call."""
    argv: list[str | Path] = ["sgdisk", "--clear"]
    for p in specs:
        end = f"+{p.size // 1024}K" if p.size is not None else "0"
        argv += [f"--new={p.number}:0:{end}", f"--typecode={p.number}:{p.typecode}",
                 f"--change-name={p.number}:{p.name}"]
    run([*argv, disk], ctx=ctx, what="sgdisk")


def read_partition_table(disk: Path, *, ctx: RunContext) -> list[TablePartition]:
    """Read the GPT back with sfdisk (works on image files and block devices alike)."""
    out = run(["sfdisk", "--json", disk], ctx=ctx, changes_system=False).out
    table = json.loads(out)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    parts = []
    for entry in table.get("partitions", []):
        # sfdisk names a node by appending the number (and a "p" after a digit) to the disk path.
        number = int(re.search(r"(\d+)$", entry["node"]).group(1))  # type: ignore[union-attr]
        parts.append(TablePartition(
            number=number, start=int(entry["start"]) * sector, size=int(entry["size"]) * sector,
            name=entry.get("name", ""), type_guid=entry["type"].upper(), uuid=entry.get("uuid", "").lower(),
        ))
    return sorted(parts, key=lambda p: p.number)


def _sysfs_name(disk: Path) -> str | None:
    try:
        real = disk.resolve()
    except OSError:
        return None
    return real.name if Path("/sys/block", real.name).exists() else None


def _kernel_partition_nodes(disk: Path, table: list[TablePartition], *, ctx: RunContext,
                            wait: float) -> dict[int, Path] | None:
    """The kernel's partition nodes, when it made them and their offsets match the table."""
    name = _sysfs_name(disk)
    if name is None:
        return None
    scan_flag = Path("/sys/block", name, "loop", "partscan")
    if scan_flag.exists() and scan_flag.read_text().strip() != "1":
        return None  # a loop device attached without partition scanning: no nodes will ever come
    run(["partx", "-u", disk], ctx=ctx, ok=range(256))
    if Path("/run/udev/control").exists():
        run(["udevadm", "settle", "--timeout=10"], ctx=ctx, ok=range(256))
    deadline = time.monotonic() + wait
    while True:
        nodes: dict[int, Path] = {}
        for p in table:
            for sysdir in Path("/sys/block", name).glob(f"{name}*{p.number}"):
                part_file, start_file = sysdir / "partition", sysdir / "start"
                if (part_file.exists() and int(part_file.read_text()) == p.number
                        and int(start_file.read_text()) * 512 == p.start
                        and Path("/dev", sysdir.name).exists()):
                    nodes[p.number] = Path("/dev", sysdir.name)
        if len(nodes) == len(table):
            return nodes
        if time.monotonic() > deadline:
            return None
        time.sleep(0.25)


@contextlib.contextmanager
def partition_devices(disk: Path, table: list[TablePartition], *, ctx: RunContext,
                      wait: float = 10.0, read_only: bool = False) -> Iterator[dict[int, Path]]:
    """Yield {partition number: block device}; loop devices attached here (read-only ones with ``read_only``)
    are detached on exit."""
    nodes = None if disk.is_file() else _kernel_partition_nodes(disk, table, ctx=ctx, wait=wait)
    if nodes is not None:
        yield nodes
        return
    attached: dict[int, Path] = {}
    with contextlib.ExitStack() as loops:
        for p in table:
            dev = attach_loop(disk, offset=p.start, size=p.size, ctx=ctx, read_only=read_only)
            loops.callback(detach_loop, dev, ctx=ctx)
            attached[p.number] = dev
        yield attached


def attach_loop(backing: Path, *, ctx: RunContext, offset: int = 0, size: int | None = None,
                read_only: bool = False) -> Path:
    argv: list[str | Path] = ["losetup", "--find", "--show", "--offset", str(offset)]
    if size is not None:
        argv += ["--sizelimit", str(size)]
    if read_only:
        argv.append("--read-only")
    out = run([*argv, backing], ctx=ctx, what="losetup").out.strip()
    if not out.startswith("/dev/loop"):
        raise NbcError(f"losetup gave no loop device for {backing}", details={"output": out})
    return Path(out)


def detach_loop(device: Path, *, ctx: RunContext) -> None:
    # A filesystem that was just unmounted can keep the device busy for a moment (btrfs): retry briefly.
    retry(lambda: run(["losetup", "--detach", device], ctx=ctx, timeout=30), attempts=10, delay=0.3)


def existing_partition_nodes(disk: Path) -> list[Path]:
    """Kernel nodes of the partitions a disk has now (for wiping their signatures before the zap)."""
    name = _sysfs_name(disk)
    if name is None:
        return []
    return sorted(Path("/dev", d.name) for d in Path("/sys/block", name).glob(f"{name}*")
                  if (d / "partition").exists() and Path("/dev", d.name).exists())

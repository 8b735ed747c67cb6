"""Disk discovery and refusals on real loop devices (sparse files in tmp_path, always detached).

The ``loops`` fixture is shared with test_list_validate.py, which runs the same situations through the
`nbc-tui validate` command.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbc_tui.backend.disks import (
    Ineligible,
    list_disks,
    live_medium_disks,
    refusals,
    resolve_disk,
    running_system_disks,
)
from nbc_tui.backend.errors import InputError
from nbc_tui.backend.plan import Layout
from nbc_tui.backend.sizes import GiB, MiB

pytestmark = pytest.mark.root

MIN = Layout().min_disk_size
BIG = MIN + GiB  # big enough to be eligible; sparse, so it costs nothing
LIVE_MEDIUM = Path("/run/live/medium")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def sh(*argv: str | Path) -> str:
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, text=True).stdout.strip()


class Loops:
    """Attaches loop devices, mounts and swaps them, and undoes all of it in reverse order."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self._undo: list[tuple[str, ...]] = []
        self._dirs: list[Path] = []

    def file(self, name: str, size: int, *, mkfs: str | None = None) -> Path:
        path = self.tmp / name
        with path.open("wb") as f:
            f.truncate(size)
        if mkfs == "ext4":
            sh("mkfs.ext4", "-q", "-F", "-L", name[:16], path)
        return path

    def attach(self, backing: Path, *extra: str) -> str:
        dev = sh("losetup", "--find", "--show", *extra, backing)
        self._undo.append(("losetup", "-d", dev))
        return dev

    def mount(self, dev: str, where: Path) -> Path:
        missing = [d for d in [where, *where.parents] if not d.exists()]
        for d in reversed(missing):  # /run/live, then /run/live/medium: removed again in reverse
            d.mkdir()
            self._dirs.append(d)
        sh("mount", dev, where)
        self._undo.append(("umount", str(where)))
        return where

    def swapon(self, dev: str) -> None:
        sh("mkswap", "-q", dev)
        sh("swapon", dev)
        self._undo.append(("swapoff", dev))

    def close(self) -> None:
        for argv in reversed(self._undo):
            subprocess.run(argv, check=False, capture_output=True)
        for d in reversed(self._dirs):
            with contextlib.suppress(OSError):
                d.rmdir()


@pytest.fixture
def loops(tmp_path: Path) -> Iterator[Loops]:
    helper = Loops(tmp_path)
    try:
        yield helper
    finally:
        helper.close()


def reasons_of(dev: str) -> list[Ineligible]:
    return [r.reason for r in refusals(resolve_disk(dev), min_size=MIN)]


def test_list_sees_an_attached_loop_device(loops: Loops) -> None:
    dev = loops.attach(loops.file("disk.img", 96 * MiB + 512))
    name = Path(dev).name
    found = {d.name: d for d in list_disks(include_loop=True)}
    assert name in found
    disk = found[name]
    assert (disk.device, disk.size, disk.transport) == (dev, 96 * MiB + 512, "loop")
    assert disk.backing_file == str(loops.tmp / "disk.img")
    assert disk.dev == sh("cat", f"/sys/block/{name}/dev")
    assert name not in [d.name for d in list_disks()]


def test_resolve_loop_device_and_a_symlink_to_it(loops: Loops) -> None:
    dev = loops.attach(loops.file("disk.img", 64 * MiB, mkfs="ext4"))
    disk = resolve_disk(dev)
    assert (disk.device, disk.size, disk.fstype, disk.label) == (dev, 64 * MiB, "ext4", "disk.img")
    link = loops.tmp / "my-disk"
    link.symlink_to(dev)
    assert resolve_disk(link).device == dev


def test_resolve_refuses_a_character_device() -> None:
    with pytest.raises(InputError, match="/dev/null is not a block device"):
        resolve_disk("/dev/null")


def test_big_unused_loop_device_is_eligible(loops: Loops) -> None:
    dev = loops.attach(loops.file("big.img", BIG))
    assert refusals(resolve_disk(dev), min_size=MIN) == []


def test_mounted(loops: Loops) -> None:
    dev = loops.attach(loops.file("disk.img", BIG, mkfs="ext4"))
    mnt = loops.mount(dev, loops.tmp / "mnt")
    disk = resolve_disk(dev)
    assert disk.mountpoints == [str(mnt)]
    assert reasons_of(dev) == [Ineligible.MOUNTED]


def test_active_swap(loops: Loops) -> None:
    dev = loops.attach(loops.file("swap.img", BIG))
    loops.swapon(dev)
    found = refusals(resolve_disk(dev), min_size=MIN)
    assert [r.reason for r in found] == [Ineligible.SWAP]
    assert f"swapoff {dev}" in found[0].message


def test_running_system_disk_read_only_checks() -> None:
    root = Path("/sys/dev/block", sh("stat", "-c", "%Hd:%Ld", "/")).resolve()
    disk_name = root.parent.name if (root / "partition").exists() else root.name
    assert f"/dev/{disk_name}" in running_system_disks()
    found = refusals(resolve_disk(f"/dev/{disk_name}"), min_size=MIN)
    assert found[0].reason == Ineligible.RUNNING_SYSTEM
    assert Ineligible.MOUNTED in [r.reason for r in found]


def test_live_medium(loops: Loops) -> None:
    if LIVE_MEDIUM.exists():
        pytest.skip(f"{LIVE_MEDIUM} exists on this machine")
    dev = loops.attach(loops.file("live.img", BIG, mkfs="ext4"))
    loops.mount(dev, LIVE_MEDIUM)
    assert dev in live_medium_disks()
    found = refusals(resolve_disk(dev), min_size=MIN)
    assert [r.reason for r in found] == [Ineligible.LIVE_MEDIUM, Ineligible.MOUNTED]
    assert found[0].message == (
        f"{dev} is the live medium this system started from (mounted at {LIVE_MEDIUM}): choose another disk")


def test_too_small(loops: Loops) -> None:
    dev = loops.attach(loops.file("small.img", 16 * MiB))
    found = refusals(resolve_disk(dev), min_size=MIN)
    assert [(r.reason, r.message) for r in found] == [
        (Ineligible.TOO_SMALL, f"{dev} is too small: needs 30.0 GB, has 16.0 MB")]


def test_read_only_attachment(loops: Loops) -> None:
    dev = loops.attach(loops.file("ro.img", BIG), "--read-only")
    disk = resolve_disk(dev)
    assert disk.read_only
    assert reasons_of(dev) == [Ineligible.READ_ONLY]


def test_partition_loop_on_the_same_file(loops: Loops) -> None:
    backing = loops.file("disk.img", BIG)
    whole = loops.attach(backing)
    part = loops.attach(backing, "--offset", str(MiB), "--sizelimit", str(64 * MiB))
    assert reasons_of(whole) == [Ineligible.IN_USE]
    assert reasons_of(part) == [Ineligible.TOO_SMALL, Ineligible.IN_USE]
    # Once the partition's filesystem is mounted, the whole disk counts as mounted too.
    sh("mkfs.ext4", "-q", part)
    loops.mount(part, loops.tmp / "p1")
    assert reasons_of(whole) == [Ineligible.IN_USE, Ineligible.MOUNTED]


def test_claimed_by_another_program(loops: Loops) -> None:
    # An exclusive open that no mount table shows (like a mount inside a container's namespace).
    dev = loops.attach(loops.file("disk.img", BIG))
    fd = os.open(dev, os.O_RDONLY | os.O_EXCL)
    try:
        found = refusals(resolve_disk(dev), min_size=MIN)
    finally:
        os.close(fd)
    assert [r.reason for r in found] == [Ineligible.IN_USE]
    assert found[0].message.startswith(f"{dev} is busy: the kernel reports it claimed")
    assert refusals(resolve_disk(dev), min_size=MIN) == []

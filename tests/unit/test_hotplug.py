"""BlockWatcher on the kernel's uevents with a real loop device (attached and detached here)."""

from __future__ import annotations

import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbc_tui.backend.disks import hotplug
from nbc_tui.backend.disks.hotplug import BlockEvent, BlockWatcher


def events_for(watcher: BlockWatcher, name: str, *, within: float = 1.0) -> list[BlockEvent]:
    """Every event about ``name`` seen until ``within`` seconds pass with at least one of them in hand."""
    deadline = time.monotonic() + within
    seen: list[BlockEvent] = []
    while time.monotonic() < deadline:
        select.select([watcher.fileno()], [], [], max(deadline - time.monotonic(), 0))
        seen += [e for e in watcher.drain() if e.name == name]
        if seen:
            time.sleep(0.05)  # let the rest of the burst arrive
            seen += [e for e in watcher.drain() if e.name == name]
            return seen
    return seen


@pytest.fixture
def sparse_file(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    with path.open("wb") as f:
        f.truncate(256 << 20)
    return path


@pytest.fixture
def watcher() -> Iterator[BlockWatcher]:
    with BlockWatcher(source="kernel") as w:
        yield w


def test_default_source_follows_udevd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    control = tmp_path / "control"
    monkeypatch.setattr(hotplug, "UDEVD_CONTROL", control)
    assert hotplug.default_source() == "kernel"
    control.touch()
    assert hotplug.default_source() == "udev"


@pytest.mark.root
def test_drain_never_waits(watcher: BlockWatcher) -> None:
    start = time.monotonic()
    watcher.drain()  # whatever other processes do to block devices meanwhile
    assert time.monotonic() - start < 0.5


@pytest.mark.root
def test_attach_and_detach_are_seen(watcher: BlockWatcher, sparse_file: Path) -> None:
    dev = subprocess.run(["losetup", "--find", "--show", str(sparse_file)],
                         capture_output=True, text=True, check=True).stdout.strip()
    name = Path(dev).name
    try:
        attached = events_for(watcher, name)
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)
    # A loop node that already existed reports "change"; a new node "add" first.
    assert attached, f"no event for {name} within a second of attaching it"
    assert {e.action for e in attached} <= {"add", "change"}
    assert all(e.device_type == "disk" for e in attached)

    # Detaching keeps the node (loop devices persist), so the kernel says "change", not "remove".
    detached = events_for(watcher, name)
    assert detached, f"no event for {name} within a second of detaching it"
    assert {e.action for e in detached} <= {"change", "remove"}

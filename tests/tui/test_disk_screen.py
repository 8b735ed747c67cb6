"""The disk screen over real loop devices: listing, live hot-plug, refusals, vanishing, the image file.

Each test opens :class:`DiskScreen` in a small App at 80x24; loop devices are sparse files in
tmp_path, attached, formatted and mounted here and always detached again (the ``loops`` fixture).
Other processes may attach loop devices meanwhile: tests only look at the ones they made.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from textual.app import App
from textual.pilot import Pilot

from nbc_tui.backend.disks import Disk, Ineligible, Partition, Refusal
from nbc_tui.backend.disks import disk_summary as contents
from nbc_tui.backend.sizes import GiB
from nbc_tui.draft import PlanDraft
from nbc_tui.screens.disk import DiskScreen, check_image_file
from nbc_tui.widgets.disk_table import DiskEntry, describe, fit

MIN = GiB  # a small layout, so small sparse files are eligible
PENDING = object()


class Harness(App[None]):
    """Shows one DiskScreen and keeps what it was dismissed with."""

    def __init__(self, screen: DiskScreen) -> None:
        super().__init__()
        self.disk_screen = screen
        self.result: object = PENDING

    def on_mount(self) -> None:
        self.push_screen(self.disk_screen, callback=self._done)

    def _done(self, value: bool | None) -> None:
        self.result = value


def sh(*argv: str | Path) -> str:
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, text=True).stdout.strip()


class Loops:
    """Loop devices on sparse files, mounts on them; undone in reverse order."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.undo: list[tuple[str, ...]] = []
        self.count = 0

    def attach(self, size: int = 2 * GiB, *, mkfs: bool = False) -> str:
        self.count += 1
        path = self.tmp / f"disk{self.count}.img"
        with path.open("wb") as f:
            f.truncate(size)
        if mkfs:
            sh("mkfs.ext4", "-q", "-F", "-L", f"nbctest{self.count}", path)
        dev = sh("losetup", "--find", "--show", path)
        self.undo.append(("losetup", "-d", dev))
        return dev

    def detach(self, dev: str) -> None:
        sh("losetup", "-d", dev)
        self.undo.remove(("losetup", "-d", dev))

    def mount(self, dev: str) -> Path:
        where = self.tmp / f"mnt-{Path(dev).name}"
        where.mkdir()
        sh("mount", dev, where)
        self.undo.append(("umount", str(where)))
        return where

    def cleanup(self) -> None:
        for argv in reversed(self.undo):
            subprocess.run(argv, check=False, capture_output=True)
        self.undo.clear()


@pytest.fixture
def loops(tmp_path: Path) -> Iterator[Loops]:
    made = Loops(tmp_path)
    try:
        yield made
    finally:
        made.cleanup()


async def wait_until(pilot: Pilot, cond: Callable[[], bool], *, within: float = 1.5, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await pilot.pause(0.05)


def name(dev: str) -> str:
    return Path(dev).name


async def opened(pilot: Pilot, screen: DiskScreen) -> None:
    await wait_until(pilot, lambda: screen.reads > 0, within=5, what="the first reading of the disks")


# ---------------------------------------------------------------------------------------------------
# Pure checks of the disk-image file


def test_image_file_checks(tmp_path: Path) -> None:
    ok = check_image_file(str(tmp_path / "new.img"), "3", min_size=2 * GiB)
    assert (ok.path, ok.size_gib, ok.error, ok.warning) == (tmp_path / "new.img", 3, None, None)
    assert "too small" in (check_image_file(str(tmp_path / "a.img"), "1", min_size=2 * GiB).error or "")
    assert "whole number" in (check_image_file(str(tmp_path / "a.img"), "x", min_size=GiB).error or "")
    assert "does not exist" in (check_image_file(str(tmp_path / "no" / "a.img"), "4", min_size=GiB).error or "")
    assert "Type the path" in (check_image_file("  ", "4", min_size=GiB).error or "")
    assert "not a regular file" in (check_image_file(str(tmp_path), "4", min_size=GiB).error or "")
    (tmp_path / "old.img").write_bytes(b"x")
    assert "will be overwritten" in (check_image_file(str(tmp_path / "old.img"), "4", min_size=GiB).warning or "")


def test_table_words() -> None:
    part = Partition(device="/dev/sdb1", number=1, size=GiB, fstype="ext4", label="data")
    disk = Disk(device="/dev/sdb", name="sdb", size=64 * GiB, model="Stick", transport="usb", removable=True,
                partitions=[part], pttype="gpt")
    assert contents(disk) == "1 partition (gpt)"
    assert contents(disk.model_copy(update={"os_hint": "Debian GNU/Linux 12"})) == "Debian GNU/Linux 12"
    assert contents(Disk(device="/dev/sdc", name="sdc", size=GiB)) == "none found"
    assert fit("Samsung SSD 870", 8) == "Samsung~" and fit("short", 8) == "short"
    refused = DiskEntry(disk, [Refusal(reason=Ineligible.TOO_SMALL, message="/dev/sdb is too small")])
    text = describe(refused)
    assert "/dev/sdb (Stick, no serial, 64.0 GB, usb, removable)" in text
    assert 'sdb1 1.0 GB ext4 "data"' in text and "Cannot be chosen: /dev/sdb is too small" in text
    assert "Enter chooses" in describe(DiskEntry(disk))


# ---------------------------------------------------------------------------------------------------
# The screen


async def test_escape_goes_back() -> None:
    draft = PlanDraft()
    app = Harness(DiskScreen(draft, min_size=MIN, watch=False))
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(pilot, app.disk_screen)
        await pilot.press("escape")
        await pilot.pause()
        assert app.result is None
    assert draft.device is None and draft.image_file is None


async def test_image_file_sets_the_draft_after_confirming_an_overwrite(tmp_path: Path) -> None:
    draft = PlanDraft()
    target = tmp_path / "disk.img"
    target.write_bytes(b"old")
    app = Harness(DiskScreen(draft, min_size=MIN, watch=False))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.disk_screen
        await opened(pilot, screen)
        await pilot.press("tab")  # keyboard only: from the table to the path
        assert screen.focused is not None and screen.focused.id == "image-path"
        await pilot.press(*str(target), "tab", "end", "backspace", "backspace", "backspace", "4")
        await pilot.press("enter")
        assert "will be overwritten" in screen.notice
        assert app.result is PENDING  # a warning needs a second press
        await pilot.press("enter")
        await pilot.pause()
        assert app.result is True
    assert (draft.image_file, draft.image_size_gib, draft.device) == (target, 4, None)


async def test_image_file_too_small_is_refused(tmp_path: Path) -> None:
    draft = PlanDraft()
    app = Harness(DiskScreen(draft, min_size=3 * GiB, watch=False))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.disk_screen
        await opened(pilot, screen)
        screen.query_one("#image-path").value = str(tmp_path / "x.img")  # type: ignore[attr-defined]
        screen.query_one("#image-size").value = "2"  # type: ignore[attr-defined]
        await pilot.click("#use-image")
        assert "too small" in screen.notice and app.result is PENDING
    assert draft.image_file is None


@pytest.mark.root
async def test_table_lists_an_attached_loop_device(loops: Loops) -> None:
    dev = loops.attach()
    app = Harness(DiskScreen(PlanDraft(), min_size=MIN, watch=False, include_loop=True))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.disk_screen
        await opened(pilot, screen)
        entry = screen.table.entries[name(dev)]
        assert entry.eligible and entry.disk.transport == "loop"
        screen.table.focus_disk(name(dev))
        await pilot.pause()
        assert dev in str(screen.query_one("#disk-detail").content)  # type: ignore[attr-defined]


async def test_loop_devices_hidden_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NBC_TUI_SHOW_LOOP", raising=False)
    assert DiskScreen(PlanDraft(), min_size=MIN).include_loop is False
    monkeypatch.setenv("NBC_TUI_SHOW_LOOP", "1")
    assert DiskScreen(PlanDraft(), min_size=MIN).include_loop is True


@pytest.mark.root
async def test_hot_plugged_loop_device_comes_and_goes(loops: Loops) -> None:
    app = Harness(DiskScreen(PlanDraft(), min_size=MIN, include_loop=True))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.disk_screen
        await opened(pilot, screen)
        assert screen.watcher is not None
        dev = loops.attach()
        await wait_until(pilot, lambda: name(dev) in screen.table.entries, what=f"{dev} in the table")
        loops.detach(dev)
        await wait_until(pilot, lambda: name(dev) not in screen.table.entries, what=f"{dev} gone")


@pytest.mark.root
async def test_mounted_loop_device_is_refused(loops: Loops) -> None:
    dev = loops.attach(mkfs=True)
    where = loops.mount(dev)
    draft = PlanDraft()
    app = Harness(DiskScreen(draft, min_size=MIN, watch=False, include_loop=True))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.disk_screen
        await opened(pilot, screen)
        screen.table.focus_disk(name(dev))
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is screen and app.result is PENDING  # we did not move on
        assert Ineligible.MOUNTED in [r.reason for r in screen.refusals]
        assert "cannot be chosen" in screen.notice
        assert f"mounted at {where}" in str(screen.query_one("#disk-detail").content)  # type: ignore[attr-defined]
        assert draft.device is None and screen.chosen is None


@pytest.mark.root
async def test_choosing_then_enter_again_goes_on(loops: Loops) -> None:
    dev = loops.attach()
    draft = PlanDraft()
    app = Harness(DiskScreen(draft, min_size=MIN, watch=False, include_loop=True))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.disk_screen
        await opened(pilot, screen)
        screen.table.focus_disk(name(dev))
        await pilot.press("enter")
        assert draft.device == dev and "Chosen" in screen.notice and app.result is PENDING
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.result is not PENDING, what="the screen to end")
        assert app.result is True
    assert draft.device == dev and draft.image_file is None


@pytest.mark.root
async def test_chosen_disk_that_vanishes_is_reported(loops: Loops) -> None:
    dev = loops.attach()
    draft = PlanDraft()
    app = Harness(DiskScreen(draft, min_size=MIN, include_loop=True))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.disk_screen
        await opened(pilot, screen)
        screen.table.focus_disk(name(dev))
        await pilot.press("enter")
        assert draft.device == dev
        loops.detach(dev)
        await wait_until(pilot, lambda: screen.chosen is None, what="the vanished disk reported")
        assert f"The disk you chose, {dev}" in screen.notice and "Choose again" in screen.notice
        assert draft.device is None
        await pilot.press("ctrl+n")  # Continue with nothing chosen goes nowhere
        await pilot.pause()
        assert app.result is PENDING


@pytest.mark.root
async def test_continue_rechecks_the_disk_without_a_watcher(loops: Loops) -> None:
    dev = loops.attach()
    draft = PlanDraft()
    app = Harness(DiskScreen(draft, min_size=MIN, watch=False, include_loop=True))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.disk_screen
        await opened(pilot, screen)
        screen.table.focus_disk(name(dev))
        await pilot.press("enter")
        loops.detach(dev)  # no watcher: only Continue's fresh look can notice
        await pilot.press("ctrl+n")
        await wait_until(pilot, lambda: screen.chosen is None, what="the vanished disk reported")
        assert "Choose again" in screen.notice and app.result is PENDING
        assert draft.device is None


@pytest.mark.root
async def test_small_and_resized_terminals_do_not_crash(loops: Loops) -> None:
    dev = loops.attach()
    app = Harness(DiskScreen(PlanDraft(), min_size=MIN, include_loop=True))
    async with app.run_test(size=(40, 10)) as pilot:
        screen = app.disk_screen
        await opened(pilot, screen)
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        assert name(dev) in screen.table.entries
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert screen.table.columns["Contents"].width >= 8

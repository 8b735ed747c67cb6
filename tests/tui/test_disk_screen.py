"""The disk screen: listing, refusals, choosing, the disk-image file, over a fake machine (a fake /sys, /proc
and /dev tree read through a SystemView, no root needed); then live hot-plug and disks vanishing over real
loop devices.

Each test opens :class:`DiskScreen` in the App at 80x24. Loop devices are sparse files in tmp_path,
attached, formatted and mounted here and always detached again (the ``loops`` fixture). Other processes
may attach loop devices meanwhile: tests only look at the ones they made. Disks that come, go or vanish
between choosing and going on need the real kernel: those tests use loop devices.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from nbc_tui.app import NbcTuiApp
from nbc_tui.backend.disks import Disk, Ineligible, Partition, Refusal
from nbc_tui.backend.disks import disk_summary as contents
from nbc_tui.backend.sizes import GiB
from nbc_tui.draft import PlanDraft
from nbc_tui.screens.disk import DiskScreen, check_image_file
from nbc_tui.widgets.disk_table import DiskEntry, describe, fit
from nbc_tui.widgets.layout_dialog import LayoutDialog
from tests.support.fake_machine import ATA, USB, FakeMachine
from tests.tui.harness import SIZE, Shown, show, until_screen, wait_for

MIN = GiB  # a small layout, so small sparse files are eligible


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


@pytest.fixture
def machine(tmp_path: Path) -> FakeMachine:
    """A machine with one disk free to install to (sdb) and the disk it runs from (sda, mounted at /)."""
    m = FakeMachine(tmp_path / "machine")
    m.disk("sda", "8:0", 64 * GiB, model="System SSD", serial="SYS-1")
    m.partition("sda", 1, "8:1", 63 * GiB)
    m.mount("8:1", "/", "/dev/sda1")
    m.disk("sdb", "8:16", 8 * GiB, devpath=USB, removable=True, model="Stick", serial="STICK-2")
    return m


@pytest.fixture
def empty_machine(tmp_path: Path) -> FakeMachine:
    """A machine with no disks at all."""
    return FakeMachine(tmp_path / "empty")


def name(dev: str) -> str:
    return Path(dev).name


async def open_disk_screen(pilot: Pilot[Any], screen: DiskScreen) -> Shown:
    """Show the screen and wait for its first reading of the disks."""
    shown = await show(pilot, screen)
    await wait_for(pilot, lambda: screen.reads > 0, timeout=5, what="the first reading of the disks")
    return shown


def status(screen: DiskScreen) -> str:
    return screen.status.message


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
    # The reason before what is on the disk: the detail shows five lines at 80x24, a long "On it" comes last.
    assert text.splitlines()[1] == "Cannot be chosen: /dev/sdb is too small"
    assert "Enter chooses" in describe(DiskEntry(disk))


# ---------------------------------------------------------------------------------------------------
# The screen over a fake machine


async def test_escape_goes_back(empty_machine: FakeMachine) -> None:
    draft = PlanDraft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await open_disk_screen(pilot, DiskScreen(draft, min_size=MIN, watch=False, view=empty_machine.view))
        await pilot.press("escape")
        await pilot.pause()
        assert shown.results == [None]
    assert draft.device is None and draft.image_file is None


async def test_table_lists_the_machines_disks_with_their_refusals(machine: FakeMachine) -> None:
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        screen = DiskScreen(PlanDraft(), min_size=MIN, watch=False, view=machine.view)
        await open_disk_screen(pilot, screen)
        assert list(screen.table.entries) == ["sda", "sdb"]
        stick = screen.table.entries["sdb"]
        assert stick.eligible and stick.disk.transport == "usb" and stick.disk.serial == "STICK-2"
        assert Ineligible.RUNNING_SYSTEM in [r.reason for r in screen.table.entries["sda"].refusals]
        screen.table.focus_disk("sdb")
        await pilot.pause()
        assert "/dev/sdb (Stick, serial STICK-2, 8.0 GB, usb, removable)" in str(
            screen.query_one("#disk-detail").render())


async def test_mounted_disk_is_refused(tmp_path: Path) -> None:
    m = FakeMachine(tmp_path / "machine")
    m.disk("sdc", "8:32", 16 * GiB, devpath=ATA, model="Data", serial="DATA-3")
    m.partition("sdc", 1, "8:33", 15 * GiB)
    m.mount("8:33", "/srv/data", "/dev/sdc1")
    draft = PlanDraft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        screen = DiskScreen(draft, min_size=MIN, watch=False, view=m.view)
        shown = await open_disk_screen(pilot, screen)
        await pilot.press("enter")
        await pilot.pause()
        assert pilot.app.screen is screen and not shown.results  # we did not move on
        assert [r.reason for r in screen.refusals] == [Ineligible.MOUNTED]
        assert "cannot be chosen" in status(screen) and screen.status.kind == "error"
        assert "mounted at /srv/data" in str(screen.query_one("#disk-detail").render())
        assert draft.device is None and screen.chosen is None


async def test_choosing_a_disk_pins_it_and_says_how_to_go_on(machine: FakeMachine) -> None:
    draft = PlanDraft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        screen = DiskScreen(draft, min_size=MIN, watch=False, view=machine.view)
        shown = await open_disk_screen(pilot, screen)
        screen.table.focus_disk("sdb")
        await pilot.press("enter")
        assert (draft.device, draft.serial) == ("/dev/sdb", "STICK-2")
        assert "Chosen" in status(screen) and "Enter again or Continue goes on" in status(screen)
        assert screen.table.chosen == "sdb" and not shown.results


async def test_choosing_then_enter_again_goes_on(machine: FakeMachine) -> None:
    """Continue reads the chosen disk once more (resolve_disk, here through the fake machine's trees)."""
    draft = PlanDraft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        screen = DiskScreen(draft, min_size=MIN, watch=False, view=machine.view)
        shown = await open_disk_screen(pilot, screen)
        screen.table.focus_disk("sdb")
        await pilot.press("enter")
        assert draft.device == "/dev/sdb" and "Chosen" in status(screen) and not shown.results
        await pilot.press("enter")
        await wait_for(pilot, lambda: shown.results, timeout=1.5, what="the screen to end")
        assert shown.results == [True]
    assert (draft.device, draft.serial, draft.image_file) == ("/dev/sdb", "STICK-2", None)


async def test_a_smaller_layout_lets_a_small_disk_be_chosen_and_a_larger_one_forgets_it(
        machine: FakeMachine) -> None:
    """The 8 GiB stick is too small for the default layout (30 GB); the advanced layout (F6) with small sizes
    makes it eligible, the dialog says what /var gets on it; a layout it no longer fits on forgets the
    choice, with the reason. The draft carries the sizes into the plan."""
    draft = PlanDraft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        screen = DiskScreen(draft, watch=False, view=machine.view)
        await open_disk_screen(pilot, screen)
        assert Ineligible.TOO_SMALL in [r.reason for r in screen.table.entries["sdb"].refusals]
        assert "at least 30.0 GB" in str(screen.query_one("#title").render())
        screen.table.focus_disk("sdb")
        await pilot.press("f6")
        dialog = await until_screen(pilot, LayoutDialog)
        fit = dialog.query_one("#layout-fit")
        assert "Does not fit on /dev/sdb (8.0 GB): 22.0 GB short" in str(fit.render())
        await pilot.press("ctrl+u", *"300M", "tab", "ctrl+u", *"2G", "tab", "ctrl+u", *"1")
        assert "/var at least: give a unit" in str(fit.render())
        await pilot.press(*"G")
        assert "Needs 5.3 GB" in str(fit.render()) and "On /dev/sdb (8.0 GB): /var gets 3.7 GB" in str(fit.render())
        reads = screen.reads
        await pilot.press("enter")  # from the last field: Apply
        await wait_for(pilot, lambda: screen.reads > reads, timeout=5, what="the disks read again")
        assert screen.table.entries["sdb"].eligible
        assert "at least 5.3 GB" in str(screen.query_one("#title").render())
        screen.table.focus_disk("sdb")
        await pilot.press("enter")
        assert draft.device == "/dev/sdb"

        await pilot.press("f6")  # roots of 4G each no longer fit on the stick: the choice is forgotten
        dialog = await until_screen(pilot, LayoutDialog)
        assert "On the chosen disk /dev/sdb (8.0 GB)" in str(dialog.query_one("#layout-fit").render())
        await pilot.press("tab", "ctrl+u", *"4G")
        assert "Does not fit on the chosen disk /dev/sdb" in str(dialog.query_one("#layout-fit").render())
        reads = screen.reads
        await pilot.press("tab", "enter")
        await wait_for(pilot, lambda: screen.reads > reads, timeout=5, what="the disks read again")
        assert screen.chosen is None and draft.device is None
        assert "/dev/sdb can no longer be chosen" in status(screen) and "too small" in status(screen)
    assert draft.layout_sizes() == {"esp_size": "300M", "root_size": "4G", "var_min_size": "1G"}


async def test_the_layout_dialog_refuses_a_size_below_its_floor_and_cancel_keeps_the_layout(
        machine: FakeMachine) -> None:
    draft = PlanDraft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        screen = DiskScreen(draft, watch=False, view=machine.view)
        await open_disk_screen(pilot, screen)
        await pilot.press("f6")
        dialog = await until_screen(pilot, LayoutDialog)
        await pilot.press("ctrl+u", *"10M", "enter", "enter", "enter")  # Apply refused: the ESP is too small
        assert pilot.app.screen is dialog
        assert "ESP: must be at least 64.0 MB (64M)" in str(dialog.query_one("#layout-fit").render())
        await pilot.press("escape")
        await until_screen(pilot, DiskScreen)
    assert draft.layout_sizes() == {"esp_size": "2G", "root_size": "12G", "var_min_size": "4G"}


async def test_small_and_resized_terminals_do_not_crash(machine: FakeMachine) -> None:
    async with NbcTuiApp(start_wizard=False).run_test(size=(40, 10)) as pilot:
        screen = DiskScreen(PlanDraft(), min_size=MIN, watch=False, view=machine.view)
        await open_disk_screen(pilot, screen)
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        assert "sdb" in screen.table.entries
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert screen.table.columns["Contents"].width >= 8


async def test_loop_devices_hidden_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NBC_TUI_SHOW_LOOP", raising=False)
    assert DiskScreen(PlanDraft(), min_size=MIN).include_loop is False
    monkeypatch.setenv("NBC_TUI_SHOW_LOOP", "1")
    assert DiskScreen(PlanDraft(), min_size=MIN).include_loop is True


# -- the disk-image file ----------------------------------------------------------------------------


async def test_image_file_sets_the_draft_after_confirming_an_overwrite(tmp_path: Path,
                                                                       machine: FakeMachine) -> None:
    draft = PlanDraft()
    target = tmp_path / "disk.img"
    target.write_bytes(b"old")
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        screen = DiskScreen(draft, min_size=MIN, watch=False, view=machine.view)
        shown = await open_disk_screen(pilot, screen)
        await pilot.press("tab")  # keyboard only: from the table to the path
        assert screen.focused is not None and screen.focused.id == "image-path"
        await pilot.press(*str(target), "tab", "end", "backspace", "backspace", "backspace", "4")
        await pilot.press("enter")
        assert "will be overwritten" in status(screen) and screen.status.kind == "warning"
        assert not shown.results  # a warning needs a second press
        await pilot.press("enter")
        await pilot.pause()
        assert shown.results == [True]
    assert (draft.image_file, draft.image_size_gib, draft.device) == (target, 4, None)


async def test_image_file_too_small_is_refused(tmp_path: Path, empty_machine: FakeMachine) -> None:
    draft = PlanDraft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        screen = DiskScreen(draft, min_size=3 * GiB, watch=False, view=empty_machine.view)
        shown = await open_disk_screen(pilot, screen)
        screen.query_one("#image-path", Input).value = str(tmp_path / "x.img")
        screen.query_one("#image-size", Input).value = "2"
        await pilot.click("#use-image")
        assert "too small" in status(screen) and not shown.results
    assert draft.image_file is None


async def test_a_prefilled_image_file_goes_on_with_enter_alone(tmp_path: Path, machine: FakeMachine) -> None:
    draft = PlanDraft(image_file=tmp_path / "demo.img")  # as an answer file or an earlier visit leaves it
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        screen = DiskScreen(draft, min_size=MIN, watch=False, view=machine.view)
        shown = await open_disk_screen(pilot, screen)
        assert screen.focused is screen.query_one("#image-path")
        await pilot.press("enter")
        await pilot.pause()
        assert shown.results == [True]
    assert draft.image_file == tmp_path / "demo.img" and draft.device is None


async def test_continue_with_no_disk_chosen_uses_the_typed_file(tmp_path: Path, machine: FakeMachine) -> None:
    draft = PlanDraft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        screen = DiskScreen(draft, min_size=MIN, watch=False, view=machine.view)
        shown = await open_disk_screen(pilot, screen)
        await pilot.press("ctrl+n")  # nothing chosen, nothing typed: the screen says what to do
        assert "Choose a disk" in status(screen) and not shown.results
        screen.query_one("#image-path", Input).value = str(tmp_path / "disk.img")
        assert screen.focused is screen.table
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert shown.results == [True]
    assert draft.image_file == tmp_path / "disk.img"


async def test_enter_on_an_empty_table_uses_the_typed_file(tmp_path: Path, empty_machine: FakeMachine) -> None:
    draft = PlanDraft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        screen = DiskScreen(draft, min_size=MIN, watch=False, view=empty_machine.view)
        shown = await open_disk_screen(pilot, screen)
        assert "No disks found" in str(screen.query_one("#disk-detail").render())
        screen.query_one("#image-path", Input).value = str(tmp_path / "disk.img")
        screen.table.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert shown.results == [True]
    assert draft.image_file == tmp_path / "disk.img"


# ---------------------------------------------------------------------------------------------------
# Real loop devices: hot-plug, and a chosen disk read again before going on


@pytest.mark.root
async def test_hot_plugged_loop_device_comes_and_goes(loops: Loops) -> None:
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        screen = DiskScreen(PlanDraft(), min_size=MIN, include_loop=True)
        await open_disk_screen(pilot, screen)
        assert screen.watcher is not None
        dev = loops.attach()
        await wait_for(pilot, lambda: name(dev) in screen.table.entries, timeout=1.5, what=f"{dev} in the table")
        loops.detach(dev)
        await wait_for(pilot, lambda: name(dev) not in screen.table.entries, timeout=1.5, what=f"{dev} gone")


@pytest.mark.root
async def test_chosen_disk_that_vanishes_is_reported(loops: Loops) -> None:
    dev = loops.attach()
    draft = PlanDraft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        screen = DiskScreen(draft, min_size=MIN, include_loop=True)
        shown = await open_disk_screen(pilot, screen)
        screen.table.focus_disk(name(dev))
        await pilot.press("enter")
        assert draft.device == dev
        loops.detach(dev)
        await wait_for(pilot, lambda: screen.chosen is None, timeout=1.5, what="the vanished disk reported")
        assert f"The disk you chose, {dev}" in status(screen) and "Choose again" in status(screen)
        assert draft.device is None
        await pilot.press("ctrl+n")  # Continue with nothing chosen goes nowhere
        await pilot.pause()
        assert not shown.results


@pytest.mark.root
async def test_continue_rechecks_the_disk_without_a_watcher(loops: Loops) -> None:
    dev = loops.attach()
    draft = PlanDraft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        screen = DiskScreen(draft, min_size=MIN, watch=False, include_loop=True)
        shown = await open_disk_screen(pilot, screen)
        screen.table.focus_disk(name(dev))
        await pilot.press("enter")
        loops.detach(dev)  # no watcher: only Continue's fresh look can notice
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: screen.chosen is None, timeout=1.5, what="the vanished disk reported")
        assert "Choose again" in status(screen) and not shown.results
        assert draft.device is None

"""The TUI tests' harness: showing one screen in the real App, waiting for a condition or a screen, reading
what the screen draws, and the stand-ins several test files share (a fixed survey, a wizard that uses it,
drafts, a disk screen over fixed disks, a progress screen with no engine behind it).

Every test drives :class:`~nbc_tui.app.NbcTuiApp` at 80x24: with ``start_wizard=False`` and :func:`show` for
one screen, or the whole wizard (:class:`FlowApp`) with :func:`until_screen`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import SecretStr
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widget import Widget

from nbc_tui.app import NbcTuiApp
from nbc_tui.backend.disks import Disk, Ineligible, Partition, Refusal
from nbc_tui.backend.errors import NbcError
from nbc_tui.backend.events import MessageEvent, StepEvent, WarningEvent, progress_event
from nbc_tui.backend.live_defaults import LiveDefaults
from nbc_tui.backend.machine import Check, Severity
from nbc_tui.backend.plan import InstallPlan
from nbc_tui.backend.sizes import GiB
from nbc_tui.draft import PlanDraft
from nbc_tui.look import Look
from nbc_tui.screens.disk import DiskScreen
from nbc_tui.screens.progress import ProgressScreen
from nbc_tui.screens.system import SystemScreen
from nbc_tui.screens.welcome import WelcomeScreen
from nbc_tui.widgets.disk_table import DiskEntry
from nbc_tui.widgets.step_list import StepList

SIZE = (80, 24)
CONSOLE = Look(console=True, reason="TERM=linux", env={"TEXTUAL_ANIMATIONS": "none"})

ScreenT = TypeVar("ScreenT", bound=Screen[Any])


# -- driving ------------------------------------------------------------------------------------------

class Shown:
    """One screen pushed onto a wizard-less App; ``results`` collects what it was dismissed with."""

    def __init__(self, app: NbcTuiApp, pilot: Pilot[Any], screen: Screen[Any]) -> None:
        self.app, self.pilot, self.screen = app, pilot, screen
        self.results: list[Any] = []

    @property
    def dismissed(self) -> bool:
        return bool(self.results) or self.app.screen is not self.screen

    def text(self, selector: str) -> str:
        """What the widget at ``selector`` draws, as plain text."""
        return str(self.screen.query_one(selector, Widget).render())


async def show(pilot: Pilot[Any], screen: Screen[Any], *, settle: bool = True) -> Shown:
    """Push ``screen`` onto the pilot's App, mount it and (``settle``) let its first messages run. Without
    ``settle`` it returns as soon as the screen is mounted, before a screen that may end at once (a fast
    dry run) has done so: query its widgets then."""
    app: NbcTuiApp = pilot.app  # type: ignore[assignment]
    shown = Shown(app, pilot, screen)
    await app.push_screen(screen, callback=shown.results.append)
    if settle:
        await pilot.pause()
    return shown


def rendered_text(app: NbcTuiApp) -> str:
    """The whole active screen as text, one line per row."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def wait_for(pilot: Pilot[Any], condition: Callable[[], object], *, timeout: float = 30, what: str = "",
                   ended: Callable[[], object] | None = None, tail: Callable[[], str] | None = None) -> None:
    """Let the App run until ``condition()``. Fails after ``timeout`` seconds, or at once when ``ended()``
    says the screen ended first; ``tail()`` adds what the screen showed to the failure."""
    deadline = time.monotonic() + timeout
    while not condition():
        if ended is not None and (why := ended()):
            raise AssertionError(f"ended before {what or 'the condition'}: {why}")
        if time.monotonic() > deadline:
            shown = f"; the screen ends with:\n{tail()}" if tail else ""
            raise AssertionError(f"not within {timeout} s: {what or 'the condition'}{shown}")
        await pilot.pause(0.05)


async def until_screen(pilot: Pilot[Any], kind: type[ScreenT], timeout: float = 60) -> ScreenT:
    """Wait until the active screen is a ``kind`` and return it."""
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, kind), timeout=timeout,
                   what=f"{kind.__name__} (on {pilot.app.screen!r})")
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, kind)
    return screen


# -- the wizard with this machine's survey fixed --------------------------------------------------------

CHECKS = [
    Check("root", Severity.OK, "Running as root."),
    Check("uefi", Severity.NOTICE, "This machine did not start with UEFI firmware."),
    Check("tools", Severity.PROBLEM, "Missing tools: mkfs.btrfs. Install the package that provides them."),
]
"""Fixed facts, so that the welcome screen does not depend on this machine."""


CONSOLE_KEYMAPS = ("de", "de-latin1", "de-latin1-nodeadkeys", "dvorak", "fr", "fr-latin1", "mac-de-latin1", "uk",
                   "us")
"""The console keymaps of a fake live machine."""


class FakeKeyboard:
    """This machine's console keyboard, faked: its keymaps, and the ones switched to; ``fails`` is what a
    failing switch says (None: it works)."""

    def __init__(self, keymaps: tuple[str, ...] = CONSOLE_KEYMAPS, *, fails: str | None = None) -> None:
        self.keymaps = list(keymaps)
        self.fails = fails
        self.switched: list[str] = []

    def switch(self, name: str) -> None:
        if self.fails is not None:
            raise NbcError(self.fails, hint="the keyboard is as it was")
        self.switched.append(name)


def welcome(draft: PlanDraft | None = None, *, checks: list[Check] | None = None,
            keyboard: FakeKeyboard | None = None, tty: str = "pts/0") -> WelcomeScreen:
    """The welcome screen with nothing of this machine: a fixed survey, no live keymap, a fake keyboard, a
    terminal emulator (``tty``)."""
    keyboard = keyboard or FakeKeyboard()
    return WelcomeScreen(draft or PlanDraft(), checks=checks or [Check("root", Severity.OK, "Running as root.")],
                         keymaps=keyboard.keymaps, switch=keyboard.switch, defaults=LiveDefaults(), tty=tty)


LIVE = LiveDefaults(timezone="Europe/Paris", keymap="de")
"""A live system's settings, fixed: what the system screen offers when the image ships them."""
ZONES = ("America/New_York", "Atlantic/Bermuda", "Etc/UTC", "Europe/Berlin", "Europe/Paris", "UTC")
KEYMAPS = ("de", "de-latin1", "fr", "us")
"""What an image ships, as the image screen's look-up finds it (the identity image of conftest.py ships these)."""


class FlowApp(NbcTuiApp):
    """The real wizard; only the welcome's survey of this machine and the live system's time zone and keymap
    are fixed (both are tested on their own)."""

    def welcome_screen(self) -> Screen[Any]:
        return welcome(self.draft)

    def system_screen(self) -> Screen[Any]:
        return SystemScreen(self.draft, defaults=LIVE)


# -- drafts -------------------------------------------------------------------------------------------

SNAPSHOT_FILE = Path("/var/tmp/nbc-tui-snapshot/disk.img")  # never created: the review only names it


def image_file_draft(path: Path = SNAPSHOT_FILE, **changes: Any) -> PlanDraft:
    draft = PlanDraft(image_ref="oci:/srv/images/synthetic:latest", image_file=path, image_size_gib=35,
                      image_summary="Synthetic Linux 1 (test), version 1\nArchitecture amd64, 1.0 MB of files")
    for key, value in changes.items():
        setattr(draft, key, value)
    return draft


def system_draft(**changes: Any) -> PlanDraft:
    """A draft whose image ships :data:`ZONES` and :data:`KEYMAPS`, onto a disk-image file."""
    return image_file_draft(**{"image_time_zones": ZONES, "image_keymaps": KEYMAPS, **changes})


# -- the disk screen over fixed disks -------------------------------------------------------------------

FAKE_DISKS = [
    DiskEntry(Disk(device="/dev/nvme0n1", name="nvme0n1", size=512 * GiB, model="Samsung SSD 980 PRO",
                   serial="S69ENF0R812345", transport="nvme", pttype="gpt", os_hint="Fedora Linux 41",
                   partitions=[Partition(device="/dev/nvme0n1p1", number=1, size=GiB, fstype="vfat",
                                         label="EFI"),
                               Partition(device="/dev/nvme0n1p2", number=2, size=511 * GiB, fstype="btrfs",
                                         label="fedora")])),
    DiskEntry(Disk(device="/dev/sda", name="sda", size=64 * GiB, model="Ultra Fit", serial="4C530001",
                   transport="usb", removable=True, fstype="iso9660", label="NBC_LIVE",
                   mountpoints=["/run/live/medium"]),
              [Refusal(reason=Ineligible.LIVE_MEDIUM, message="/dev/sda is the live medium this system "
                       "started from")]),
    DiskEntry(Disk(device="/dev/sdb", name="sdb", size=16 * GiB, model="SanDisk Cruzer", serial=None,
                   transport="usb", removable=True),
              [Refusal(reason=Ineligible.TOO_SMALL, message="/dev/sdb is too small: needs 30.0 GB, has 17.2 GB")]),
    DiskEntry(Disk(device="/dev/vdb", name="vdb", size=40 * GiB, model=None, serial="nbc-target-1",
                   transport="virtio")),
]
"""Disks with refusals this machine cannot make (a live medium, an NVMe disk with Fedora on it)."""


class FakeDiskScreen(DiskScreen):
    """The real disk screen shown a fixed list of disks, refusals included (no hot-plug, no reading)."""

    def __init__(self, draft: PlanDraft, entries: list[DiskEntry]) -> None:
        super().__init__(draft, min_size=30 * GiB, watch=False)
        self.fake_entries = entries

    def load_disks(self) -> None:  # type: ignore[override]
        self.post_message(self.Listed(list(self.fake_entries)))


# -- the progress screen with no engine ------------------------------------------------------------------

class FrozenProgress(ProgressScreen):
    """The real progress screen with no engine behind it: the test feeds it events."""

    def _run_engine(self) -> None:  # type: ignore[override]
        return None


PASSPHRASE = "Snap-Luks-pass-77d1"
"""A secret the snapshots and the console-look tests check is never drawn."""
# Fixed titles: the engine's step list grows (encryption, TPM), the snapshot should not follow it.
STEP_TITLES = ["Checking the machine, the disk and the image", "Wiping the disk", "Creating partitions",
               "Formatting partitions", "Mounting partitions", "Extracting container filesystem",
               "Configuring system", "Building the initramfs", "Installing bootloader",
               "Verifying the installation", "Finishing"]
TOOL_LINES = ["Creating new GPT entries in memory.", "The operation has completed successfully.",
              "mke2fs 1.47.0 (5-Feb-2023)", "Creating filesystem with 262144 4k blocks and 65536 inodes",
              "Writing superblocks and filesystem accounting information: done"]


def progress_plan() -> InstallPlan:
    return PlanDraft(image_ref="quay.io/example/os:stable", image_file=SNAPSHOT_FILE,
                     root_password=SecretStr(PASSPHRASE)).to_plan()


async def feed_mid_install(pilot: Pilot[Any], screen: ProgressScreen) -> None:
    """Six steps in, a warning and tool lines in the log, the bytes of an extraction with a fixed rate."""
    screen.query_one(StepList).titles = list(STEP_TITLES)
    events: list[Any] = []
    for number, title in enumerate(STEP_TITLES[:6], start=1):
        events.append(StepEvent(step=number, total_steps=len(STEP_TITLES), step_name=title))
        if number == 3:
            events += [MessageEvent(message="GPT: p1 boot, p2 root1, p3 root2, p4 var")]
        if number == 4:
            events += [WarningEvent(message="mkfs.btrfs: discard is not supported here")]
    for event in events:
        screen.post_message(ProgressScreen.Engine(event))
    for line in TOOL_LINES:
        screen.post_message(ProgressScreen.ToolOutput(line))
    # A fixed byte count and rate: the time left is computed, not measured.
    screen.post_message(ProgressScreen.Engine(progress_event("Extracting", 310 << 20, 820 << 20, 92 << 20)))
    await pilot.pause()
    await pilot.pause()

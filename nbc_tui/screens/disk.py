"""The disk screen: choose the disk to install to (live with hot-plug), or a disk-image file.

Every fact shown comes from the backend: :func:`~nbc_tui.backend.disks.list_disks` and
:func:`~nbc_tui.backend.disks.refusals` in a thread worker, re-run whenever a block device comes, goes
or changes (:class:`~nbc_tui.backend.disks.hotplug.BlockWatcher`, debounced) and on F5, over the
:class:`~nbc_tui.backend.disks.SystemView` given (the machine itself unless a test fakes one). Choosing is
two steps, Enter on a disk then Continue (or Enter again): a disk that vanishes, changes identity or
becomes ineligible in between is reported and must be chosen again; Continue reads it once more
(:func:`~nbc_tui.backend.disks.resolve_disk`, :func:`~nbc_tui.backend.disks.identity_changed`)
before the screen ends. With no disk chosen, Continue uses the disk-image file typed below the table
(the field has the focus when the draft already names one, so Enter alone goes on).

The disks are measured against the draft's layout. Layout (F6) opens the advanced layout
(:class:`~nbc_tui.widgets.layout_dialog.LayoutDialog`): new sizes re-read the disks against them, so that a
smaller disk or disk-image file can be chosen.

Loop devices are hidden unless ``include_loop`` is True, or, when it is left None, unless
:func:`~nbc_tui.backend.disks.loops_wanted` says so (for demos and tests that attach loop devices).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Button, DataTable, Input, Label, Static
from textual.worker import Worker, WorkerState, get_current_worker

from ..backend.disks import (
    SYSTEM,
    Disk,
    Refusal,
    SystemView,
    check_image_file_path,
    disk_line,
    existing_file_words,
    identity_changed,
    list_disks,
    loops_wanted,
    refusals,
    resolve_disk,
)
from ..backend.disks.hotplug import BlockEvent, BlockWatcher
from ..backend.errors import InputError, NbcError
from ..backend.sizes import GiB, gib_up, human
from ..draft import PlanDraft
from ..widgets.disk_table import DiskEntry, DiskTable, describe
from ..widgets.layout_dialog import FitTarget, LayoutDialog
from .wizard import WizardScreen

log = logging.getLogger("nbc_tui")

DEBOUNCE = 0.2
"""Seconds to wait after a block event before reading the disks again (one read per burst)."""


# ---------------------------------------------------------------------------------------------------
# The disk-image file target: checked here, pure path logic, no disk touched


@dataclass(frozen=True)
class ImageFileCheck:
    """The verdict on a typed disk-image file: an error stops, a warning needs a second press."""

    path: Path | None = None
    size_gib: int | None = None
    error: str | None = None
    warning: str | None = None


def check_image_file(path_text: str, size_text: str, *, min_size: int) -> ImageFileCheck:
    """Whether ``path_text`` with ``size_text`` GiB can be the target of an install of ``min_size`` bytes (the
    path is judged by the engine's own check, in its words)."""
    min_gib = gib_up(min_size)
    text = path_text.strip()
    if not text:
        return ImageFileCheck(error="Type the path of the disk-image file to create, e.g. /var/tmp/nbc-disk.img")
    path = Path(text).expanduser().absolute()
    try:
        size_gib = int(size_text.strip())
    except ValueError:
        return ImageFileCheck(path=path, error=f"The size is a whole number of GiB, at least {min_gib}")
    if size_gib << 30 < min_size:
        return ImageFileCheck(path=path, size_gib=size_gib, error=(
            f"{size_gib} GiB is too small: the layout needs {human(min_size)}; give at least {min_gib}"))
    try:
        check_image_file_path(path, overwrite=True)
    except InputError as exc:
        return ImageFileCheck(path=path, size_gib=size_gib, error=sentence(exc))
    return ImageFileCheck(path=path, size_gib=size_gib, warning=existing_file_words(path))


def sentence(exc: InputError) -> str:
    """An engine refusal as a sentence on its own: capitalised, the hint after a colon."""
    text = f"{exc.message}: {exc.hint}" if exc.hint else exc.message
    return text[:1].upper() + text[1:]


# ---------------------------------------------------------------------------------------------------


class DiskScreen(WizardScreen[bool]):
    """Choose the target: a disk from the live table, or a disk-image file. None = back."""

    HELP = ("The disk: Enter on a disk chooses it (everything on it will be erased once you confirm on the "
            "review screen); Enter again or Continue goes on. Greyed disks cannot be chosen: the lines under "
            "the table say why. Or type the path of a disk-image file to create, with its size in GiB: with no "
            "disk chosen, Continue uses the file. F5 reads the disks again. Layout (F6) sets the sizes of the ESP, "
            "of each root slot and the least /var may get; it says what they need and what /var gets on the "
            "chosen disk or file, and smaller sizes let a smaller disk or file be chosen.")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("f5", "refresh", "Re-read disks"),
                                             Binding("f6", "layout", "Layout")]

    class Listed(Message):
        """A fresh reading of the disks (from the worker)."""

        def __init__(self, entries: list[DiskEntry]) -> None:
            super().__init__()
            self.entries = entries

    class Verified(Message):
        """The chosen disk read again right before moving on: ``problem`` None means go on."""

        def __init__(self, disk: Disk, problem: str | None) -> None:
            super().__init__()
            self.disk = disk
            self.problem = problem

    def __init__(self, draft: PlanDraft, *, min_size: int | None = None, watch: bool = True,
                 include_loop: bool | None = None, view: SystemView = SYSTEM) -> None:
        super().__init__()
        self.draft = draft
        self._min_size = min_size
        """A fixed smallest disk (tests); None, or once the layout is changed here: what the draft's layout needs."""
        self.watch = watch
        self.include_loop = loops_wanted() if include_loop is None else include_loop
        self.view = view
        """Where the disks are read from (a fake tree in tests)."""
        self.chosen: Disk | None = None
        """The disk chosen with Enter, not yet confirmed by Continue."""
        self.refusals: list[Refusal] = []
        """Why the disk the user last tried to choose cannot be ([] when it could)."""
        self.reads = 0
        """How many times the disks were read (tests wait for a fresh reading)."""
        self.watcher: BlockWatcher | None = None
        self.block_events: list[BlockEvent] = []
        """Every block event seen (for the log and for tests)."""
        self._refresh_timer: Timer | None = None
        self._overwrite_ok: Path | None = None
        """The existing file the user confirmed to overwrite (a second press on Use file)."""

    @property
    def min_size(self) -> int:
        return self._min_size if self._min_size is not None else self.draft.layout().min_disk_size

    @property
    def heading(self) -> str:
        return f"Choose a disk (at least {human(self.min_size)}). Everything on it will be erased."

    def layout_words(self) -> str:
        layout = self.draft.layout()
        return (f"Layout (F6): ESP {human(layout.esp_size)}, root slots {human(layout.root_size)} each, /var at "
                f"least {human(layout.var_min_size)}")

    def compose_body(self) -> ComposeResult:
        min_gib = gib_up(self.min_size)
        yield DiskTable(id="disk-table")
        yield Static("Reading the disks...", id="disk-detail")
        yield Static(self.layout_words(), id="layout-line", markup=False)
        with Horizontal(id="image-file-row"):
            yield Label("Or a disk-image file:")
            yield Input(str(self.draft.image_file or ""), placeholder="/var/tmp/nbc-disk.img", id="image-path",
                        select_on_focus=False)
            yield Input(str(max(self.draft.image_size_gib, min_gib)), type="integer", id="image-size",
                        tooltip="size in GiB", select_on_focus=False)
            yield Button("Use file", id="use-image")

    def compose_buttons(self) -> ComposeResult:
        yield Button("Layout", id="layout")
        yield from super().compose_buttons()

    @property
    def table(self) -> DiskTable:
        return self.query_one(DiskTable)

    # -- lifecycle --------------------------------------------------------------------------------

    def on_mount(self) -> None:
        if self.watch:
            self._start_watching()
        if self.draft.image_file is not None:
            self.query_one("#image-path", Input).focus()  # Enter alone uses the file named already
        else:
            self.table.focus()
        self.load_disks()

    def on_unmount(self) -> None:
        self._stop_watching()

    def _start_watching(self) -> None:
        try:
            self.watcher = BlockWatcher()
        except OSError as exc:
            log.warning("no live disk updates: %s", exc)
            self.say(f"Live disk updates are off ({exc.strerror or exc}): F5 reads the disks again.", "warning")
            return
        asyncio.get_running_loop().add_reader(self.watcher.fileno(), self._on_block_events)

    def _stop_watching(self) -> None:
        if self.watcher is not None:
            asyncio.get_running_loop().remove_reader(self.watcher.fileno())
            self.watcher.close()
            self.watcher = None
        if self._refresh_timer is not None:
            self._refresh_timer.stop()
            self._refresh_timer = None

    def _on_block_events(self) -> None:
        if self.watcher is None:
            return
        events = self.watcher.drain()
        if not events:
            return
        self.block_events += events
        log.debug("block events: %s", ", ".join(f"{e.action} {e.name}" for e in events))
        if self._refresh_timer is None:  # one read per burst: later events ride along
            self._refresh_timer = self.set_timer(DEBOUNCE, self._refresh_after_events)

    def _refresh_after_events(self) -> None:
        self._refresh_timer = None
        self.load_disks()

    # -- reading the disks (threads) --------------------------------------------------------------

    @work(thread=True, exclusive=True, group="disks", exit_on_error=False)
    def load_disks(self) -> None:
        disks = list_disks(include_loop=self.include_loop, view=self.view)
        entries = [DiskEntry(d, refusals(d, min_size=self.min_size, view=self.view)) for d in disks]
        if not get_current_worker().is_cancelled:  # a newer reading has started: this one is stale
            self.post_message(self.Listed(entries))

    @work(thread=True, exclusive=True, group="verify", exit_on_error=False)
    def verify_chosen(self, disk: Disk) -> None:
        try:
            now = resolve_disk(disk.device, view=self.view)
        except NbcError as exc:
            self.post_message(self.Verified(disk, f"{disk.device} is gone ({exc.message})"))
            return
        problem = identity_changed(disk, now)
        if problem is None:
            found = refusals(now, min_size=self.min_size, view=self.view)
            problem = f"{disk.device} can no longer be chosen: {found[0].message}" if found else None
        self.post_message(self.Verified(now, problem))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            words = error.message if isinstance(error, NbcError) else str(error)
            log.error("disk screen worker %s failed: %s", event.worker.name, words)
            self.say(f"Could not read the disks: {words}. F5 tries again.", "error")

    # -- showing ----------------------------------------------------------------------------------

    def _show_detail(self) -> None:
        entry = self.table.current
        detail = self.query_one("#disk-detail", Static)
        if entry is None:
            detail.update("No disks found. Plug one in (the table follows), or use a disk-image file below."
                          if self.reads else "Reading the disks...")
        else:
            chosen = self.chosen is not None and self.chosen.name == entry.disk.name
            detail.update(describe(entry, chosen=chosen))

    def _forget_choice(self, why: str) -> None:
        self.chosen = None
        self._target(None)
        self.table.chosen = None
        self.say(f"{why}. Choose again.", "error")

    def on_disk_screen_listed(self, message: Listed) -> None:
        self.reads += 1
        if self.chosen is not None:
            now = next((e for e in message.entries if e.disk.name == self.chosen.name), None)
            if now is None:
                self._forget_choice(f"The disk you chose, {disk_line(self.chosen)}, is gone")
            elif why := identity_changed(self.chosen, now.disk):
                self._forget_choice(why)
            elif now.refusals:
                self._forget_choice(f"{self.chosen.device} can no longer be chosen: {now.refusals[0].message}")
            else:
                self.chosen = now.disk
        self.table.show(message.entries, chosen=self.chosen.name if self.chosen else None)
        self._show_detail()

    def _target(self, disk: Disk | None) -> None:
        """The draft's target becomes this disk, pinned by its serial (None: no disk)."""
        self.draft.device = disk.device if disk else None
        self.draft.serial = disk.serial if disk else None
        if disk is not None:
            self.draft.image_file = None

    # -- choosing ---------------------------------------------------------------------------------

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def on_disk_table_chosen(self, message: DiskTable.Chosen) -> None:
        self.refusals = []
        if self.chosen is not None and self.chosen.name == message.disk.name:
            self.action_go_on()  # Enter twice on the same disk goes on
            return
        self.chosen = message.disk
        self._target(message.disk)
        self.table.show(list(self.table.entries.values()), chosen=message.disk.name)
        self._show_detail()
        self.say(f"Chosen: {disk_line(message.disk)}. Enter again or Continue goes on.")

    def on_disk_table_refused(self, message: DiskTable.Refused) -> None:
        self.refusals = message.refusals
        self.table.focus_disk(message.disk.name)  # the detail lines show its reasons
        self._show_detail()
        self.say(f"{message.disk.device} cannot be chosen (the reason is above): "
                 "choose another disk or a disk-image file.", "error")

    def save(self) -> bool | None:
        """The chosen disk is read once more (its answer ends the screen); with none chosen, the typed
        disk-image file is used."""
        if self.chosen is not None:
            self.verify_chosen(self.chosen)
            return None
        if self.query_one("#image-path", Input).value.strip():
            return True if self._take_image_file() else None
        self.say("Choose a disk (Enter on its row) or a disk-image file first.", "error")
        return None

    def on_disk_screen_verified(self, message: Verified) -> None:
        if self.chosen is None or self.chosen.name != message.disk.name:
            return  # chosen again meanwhile
        if message.problem:
            self._forget_choice(message.problem)
            self.load_disks()
            return
        self._target(message.disk)
        self.dismiss(True)

    # -- the disk-image file ------------------------------------------------------------------------

    @on(Button.Pressed, "#use-image")
    def use_image_file(self) -> None:
        """Use file (its button, Enter in its fields): the typed file becomes the target, whatever was chosen."""
        if self._take_image_file():
            self.dismiss(True)

    def _take_image_file(self) -> bool:
        check = check_image_file(self.query_one("#image-path", Input).value,
                                 self.query_one("#image-size", Input).value, min_size=self.min_size)
        if check.error:
            self.say(check.error, "error")
            return False
        if check.warning and self._overwrite_ok != check.path:
            self._overwrite_ok = check.path
            self.say(f"{check.warning}: Enter or Use file again confirms.", "warning")
            return False
        assert check.path is not None and check.size_gib is not None
        self.chosen = None
        self._target(None)
        self.draft.image_file = check.path
        self.draft.image_size_gib = check.size_gib
        return True

    @on(Input.Submitted, "#image-path, #image-size")
    def _file_submitted(self, event: Input.Submitted) -> None:
        event.prevent_default()  # Enter here uses the file (not WizardScreen's next field)
        self.use_image_file()

    @on(Input.Changed, "#image-path, #image-size")
    def _file_changed(self) -> None:
        self._overwrite_ok = None  # a confirmation holds for the path it was given for only

    # -- the advanced layout ------------------------------------------------------------------------

    @on(Button.Pressed, "#layout")
    def action_layout(self) -> None:
        self.app.push_screen(LayoutDialog(self.draft.layout_sizes(), self.fit_target()), callback=self.take_layout)

    def fit_target(self) -> FitTarget | None:
        """What the layout dialog measures against: the chosen disk, else a typed disk-image file, else the
        highlighted disk."""
        if self.chosen is not None:
            return FitTarget(f"the chosen disk {self.chosen.device} ({human(self.chosen.size)})", self.chosen.size)
        size_text = self.query_one("#image-size", Input).value.strip()
        if self.query_one("#image-path", Input).value.strip() and size_text.isdigit():
            return FitTarget(f"a disk-image file of {size_text} GiB", int(size_text) * GiB)
        entry = self.table.current
        if entry is not None:
            return FitTarget(f"{entry.disk.device} ({human(entry.disk.size)})", entry.disk.size)
        return None

    def take_layout(self, sizes: dict[str, str] | None) -> None:
        """New sizes from the dialog: the draft takes them, and the disks are measured against them again (a
        chosen disk they no longer fit on is forgotten, with the reason)."""
        if sizes is None:
            return
        self.draft.esp_size, self.draft.root_size, self.draft.var_min_size = (
            sizes["esp_size"], sizes["root_size"], sizes["var_min_size"])
        self._min_size = None
        self.query_one("#title", Static).update(self.heading)
        self.query_one("#layout-line", Static).update(self.layout_words())
        size_field = self.query_one("#image-size", Input)
        min_gib = gib_up(self.min_size)
        if not size_field.value.strip().isdigit() or int(size_field.value) < min_gib:
            size_field.value = str(min_gib)  # the smallest file the layout fits in
        self.say(f"The layout needs {human(self.min_size)} now: the disks are measured against it.")
        self.load_disks()

    # -- actions ------------------------------------------------------------------------------------

    def action_refresh(self) -> None:
        self.load_disks()

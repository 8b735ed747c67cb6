"""DiskTable: the machine's disks, one row each, eligible or not, with why not.

The table only shows what the backend found (:func:`nbc_tui.backend.disks.list_disks` and
:func:`~nbc_tui.backend.disks.refusals`, computed by its screen); it judges nothing itself. Enter on an
eligible row posts :class:`DiskTable.Chosen`; on an ineligible one :class:`DiskTable.Refused`, so the
screen can show the reason and stay where it is. On an empty table Enter is left to the screen (which then
goes on with a disk-image file).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from textual import events
from textual.actions import SkipAction
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from ..backend.disks import Disk, Ineligible, Refusal, disk_contents, disk_line, disk_summary
from ..backend.sizes import human

# A word or two per reason for the Status column; the full sentence is in the detail line.
SHORT_REASON: dict[Ineligible, str] = {
    Ineligible.TOO_SMALL: "too small",
    Ineligible.MOUNTED: "mounted",
    Ineligible.HOLDERS: "in use",
    Ineligible.SWAP: "swap",
    Ineligible.RUNNING_SYSTEM: "system",
    Ineligible.LIVE_MEDIUM: "live",
    Ineligible.READ_ONLY: "read-only",
    Ineligible.NOT_A_DISK: "not disk",
    Ineligible.IN_USE: "in use",
}

# Columns that keep their width; Model, Serial and Contents share what is left of the table's width.
_FIXED = (("Disk", 7), ("Size", 8), ("Bus", 6), ("Rem", 3), ("Status", 9))
_FLEX = (("Model", 4), ("Serial", 3), ("Contents", 4))  # (name, share)
_ORDER = ("Disk", "Size", "Model", "Serial", "Bus", "Rem", "Contents", "Status")
_CUT = "~"  # a cut-off value ends with this (console fonts have no ellipsis glyph)


@dataclass(frozen=True)
class DiskEntry:
    """A disk and every reason it cannot be chosen ([] = eligible)."""

    disk: Disk
    refusals: list[Refusal] = field(default_factory=list)

    @property
    def eligible(self) -> bool:
        return not self.refusals


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells, marking the cut."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + _CUT


def describe(entry: DiskEntry, *, chosen: bool = False) -> str:
    """Everything about one disk, for the detail lines under the table. Why it cannot be chosen comes before
    what is on it: the lines are few at 80x24, and a long "On it" would push the reason out of sight."""
    disk = entry.disk
    lines = [disk_line(disk), *(f"Cannot be chosen: {r.message}" for r in entry.refusals),
             "On it: " + ("; ".join(disk_contents(disk)) or "none found")]
    if chosen and not entry.refusals:
        lines.append("Chosen: everything on it will be erased once you confirm on the review screen.")
    elif not entry.refusals:
        lines.append("Enter chooses this disk (everything on it will be erased).")
    return "\n".join(lines)


class DiskTable(DataTable[Text]):
    """The disks of the machine: ineligible ones greyed with a short reason, the chosen one marked."""

    DEFAULT_CSS = """
    DiskTable {
        height: 1fr;
        min-height: 4;
    }
    """

    class Chosen(Message):
        """Enter on an eligible disk."""

        def __init__(self, disk: Disk) -> None:
            super().__init__()
            self.disk = disk

    class Refused(Message):
        """Enter on a disk that cannot be chosen; ``refusals`` says why."""

        def __init__(self, disk: Disk, refusals: list[Refusal]) -> None:
            super().__init__()
            self.disk = disk
            self.refusals = refusals

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False)
        self.entries: dict[str, DiskEntry] = {}
        """The rows shown, by kernel name, in order."""
        self.chosen: str | None = None
        """Kernel name of the chosen disk (marked in the Status column)."""
        self._widths: dict[str, int] = {}

    # -- public verbs -----------------------------------------------------------------------------

    def show(self, entries: list[DiskEntry], *, chosen: str | None = None) -> None:
        """Replace the rows, keeping the cursor on the same disk when it is still there."""
        current = self.current
        self.entries = {e.disk.name: e for e in entries}
        self.chosen = chosen
        self._rebuild(keep=current.disk.name if current else None)

    @property
    def current(self) -> DiskEntry | None:
        """The entry under the cursor."""
        if not self.entries or self.row_count == 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except CellDoesNotExist:  # no valid cursor yet
            return None
        return self.entries.get(key or "")

    def focus_disk(self, name: str) -> None:
        """Move the cursor to a disk's row."""
        if name in self.entries:
            self.move_cursor(row=self.get_row_index(name))

    # -- building rows ----------------------------------------------------------------------------

    def _column_widths(self) -> dict[str, int]:
        # Two cells of padding per column and room for a vertical scrollbar.
        usable = max(self.size.width or 80, 60) - 2 - 2 * len(_ORDER) * self.cell_padding
        flex = max(usable - sum(w for _, w in _FIXED), 3 * 6)
        total = sum(share for _, share in _FLEX)
        widths = dict(_FIXED)
        for name, share in _FLEX:
            widths[name] = flex * share // total
        return widths

    def _cells(self, entry: DiskEntry) -> list[Text]:
        disk, w = entry.disk, self._widths
        if disk.name == self.chosen:
            status, style = "chosen", "bold"
        elif entry.refusals:
            status, style = SHORT_REASON.get(entry.refusals[0].reason, "no"), "dim"
        else:
            status, style = "ok", ""
        values = {
            "Disk": disk.name, "Size": human(disk.size), "Model": disk.model or "-",
            "Serial": disk.serial or "-", "Bus": disk.transport or "-", "Rem": "yes" if disk.removable else "",
            "Contents": disk_summary(disk), "Status": status,
        }
        cells = []
        for name in _ORDER:
            justify = "right" if name == "Size" else "left"
            cells.append(Text(fit(values[name], w[name]), style=style, justify=justify))
        return cells

    def _rebuild(self, *, keep: str | None = None) -> None:
        self._widths = self._column_widths()
        self.clear(columns=True)
        for name in _ORDER:
            self.add_column(name, width=self._widths[name], key=name)
        for name, entry in self.entries.items():
            self.add_row(*self._cells(entry), key=name)
        target = keep if keep in self.entries else self.chosen
        if target in self.entries:
            self.move_cursor(row=self.get_row_index(target))

    # -- handlers ---------------------------------------------------------------------------------

    def action_select_cursor(self) -> None:
        if not self.entries:
            raise SkipAction  # no disk to choose: Enter goes on to the screen
        super().action_select_cursor()

    def on_resize(self, event: events.Resize) -> None:
        if self.entries and self._column_widths() != self._widths:
            current = self.current
            self._rebuild(keep=current.disk.name if current else None)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        entry = self.entries.get(event.row_key.value or "")
        if entry is None:
            return
        if entry.refusals:
            self.post_message(self.Refused(entry.disk, entry.refusals))
        else:
            self.post_message(self.Chosen(entry.disk))

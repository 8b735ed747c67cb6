"""Block-device hot-plug: a non-blocking watcher of the kernel's (or udevd's) block uevents.

The watcher only says *that* something changed (and what, for logs and tests); callers read the
machine again with :func:`nbc_tui.backend.disks.list_disks`. It has no event loop of its own: a UI
registers :meth:`BlockWatcher.fileno` with its loop (``loop.add_reader``) and calls
:meth:`BlockWatcher.drain` when the descriptor is readable.

udevd's source is preferred where udevd runs (a live ISO): its events come after the udev database
is updated, so serials and by-id links are already there when the disks are read again. Without udevd
(containers, build machines) its source is silent and the kernel's source is used instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

import pyudev

log = logging.getLogger("nbc_tui")

UDEVD_CONTROL = Path("/run/udev/control")
"""udevd's control socket: present exactly when udevd runs."""

Source = Literal["udev", "kernel"]


@dataclass(frozen=True)
class BlockEvent:
    """One uevent of a block device."""

    action: str
    """add, remove, change, move, online, offline, bind, unbind."""
    name: str
    """Kernel name: sdb, sdb1, loop3."""
    device_type: str | None = None
    """"disk" or "partition" (None when the event does not say)."""


def default_source() -> Source:
    """udev where udevd runs, else the kernel's own uevents."""
    return "udev" if UDEVD_CONTROL.exists() else "kernel"


class BlockWatcher:
    """Watches block devices being added, removed and changed, without ever blocking.

    Opening the netlink socket can fail (no permission, a kernel without uevents): the OSError
    reaches the caller, which then offers a manual refresh instead of live updates.
    """

    def __init__(self, *, source: Source | None = None) -> None:
        self.source: Source = source or default_source()
        self._monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source=self.source)
        self._monitor.filter_by("block")
        self._monitor.start()
        log.debug("watching block devices through the %s source", self.source)

    def fileno(self) -> int:
        """The descriptor that becomes readable when events are waiting."""
        return self._monitor.fileno()

    def drain(self) -> list[BlockEvent]:
        """Every event waiting now, oldest first; [] when none (never waits)."""
        events: list[BlockEvent] = []
        while True:
            try:
                device = self._monitor.poll(timeout=0)
            except OSError as exc:  # a receive buffer overrun loses events, not the watcher
                log.warning("block device events lost: %s", exc)
                events.append(BlockEvent(action="overrun", name=""))
                return events  # the descriptor stays readable: the caller is called again
            if device is None:
                return events
            # The kernel source does not apply the subsystem filter on every libudev: check again.
            if device.subsystem != "block":
                continue
            events.append(BlockEvent(action=device.action or "", name=device.sys_name,
                                     device_type=device.device_type))

    def close(self) -> None:
        """Stop listening; the descriptor is closed."""
        # pyudev closes the socket when the monitor is freed; drop our reference and let it go.
        self._monitor = None

    def __enter__(self) -> BlockWatcher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

"""One install on the host at a time, across the VM tier's test processes.

The VM tier runs two scenarios at a time (``pytest -m vm -n 2``, tools/test.sh): a QEMU under TCG keeps about
one of the two cores busy. Some scenarios first install onto a disk-image file on the host, and an install holds
nbc-tui's system lock (nbc's /var/lock/nbc-system.lock, one install or update per machine), which a second
install waits for only 10 s before it fails. Each host install of the tier therefore runs inside
:func:`one_host_install_at_a_time`, which waits as long as it takes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.vm import image_builder as ib

HOST_INSTALL_LOCK = Path("/var/lock/nbc-tui-tests-host-install.lock")


@contextlib.contextmanager
def one_host_install_at_a_time() -> Iterator[None]:
    """Hold the tier's host-install lock (waiting without a bound: pytest-timeout bounds the test)."""
    HOST_INSTALL_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with ib.locked(HOST_INSTALL_LOCK):
        yield

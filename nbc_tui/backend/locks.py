"""flock(2) locks under /var/lock shared with nbc's conventions, with a bounded wait."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import NbcError

LOCK_DIR = Path("/var/lock")
SYSTEM_LOCK = "nbc-system.lock"


@contextlib.contextmanager
def locked(name: str, *, wait: float = 10.0, shared: bool = False, what: str = "a system operation",
           lock_dir: Path = LOCK_DIR) -> Iterator[None]:
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / name, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        op = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        while True:
            try:
                fcntl.flock(fd, op)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise NbcError(f"another nbc process is currently performing {what}",
                                   hint=f"wait for it to finish (lock {lock_dir / name})") from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)

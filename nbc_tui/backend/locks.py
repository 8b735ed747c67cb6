"""flock(2) locks under /var/lock shared with nbc's conventions, with a bounded wait.

nbc fails at once on a busy lock (reference §7.6); we retry for a bounded time, then fail with nbc's words.
A lock is released when its file descriptor closes, so a crashed process never leaves one held. nbc's code
locks under /var/run/nbc (its planning notes said /var/lock): each lock is taken in both places, ours first,
so that nbc and nbc-tui exclude each other whichever one runs.

``NBC_TUI_LOCK_DIR`` moves the cache lock elsewhere (tests use a temp dir; nbc's is then not taken); the
system lock stays put.
"""

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
CACHE_LOCK = "nbc-cache.lock"
NBC_LOCK_DIR = Path("/var/run/nbc")
"""Where nbc's own code locks (reference §7.6): ``system.lock`` and ``cache.lock``."""
ENV_LOCK_DIR = "NBC_TUI_LOCK_DIR"
CACHE_LOCK_WAIT = 5.0
"""Seconds a cache command waits for a busy cache lock before it gives up."""
_POLL = 0.1

# nbc's messages when the cache lock is busy (reference §7.6).
CACHE_BUSY_EXCLUSIVE = "another nbc process is currently operating on the cache"
CACHE_BUSY_SHARED = "another nbc process is currently modifying the cache"


@contextlib.contextmanager
def locked(name: str, *, wait: float = 10.0, shared: bool = False, what: str = "a system operation",
           lock_dir: Path = LOCK_DIR, busy_message: str | None = None) -> Iterator[None]:
    """Hold the flock on ``lock_dir/name`` (exclusive unless ``shared``), waiting up to ``wait`` seconds.

    On timeout: NbcError "another nbc process is currently performing <what>", or ``busy_message``.
    """
    path = lock_dir / name
    fd = _open_lock(path, shared=shared)
    try:
        deadline = time.monotonic() + wait
        op = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        while True:
            try:
                fcntl.flock(fd, op)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise NbcError(busy_message or f"another nbc process is currently performing {what}",
                                   hint=f"wait for it to finish and try again (lock {path}, "
                                        f"waited {wait:g} s)",
                                   details={"lock": str(path)}) from None
                time.sleep(_POLL)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def system_locked(*, what: str, wait: float = 10.0) -> Iterator[None]:
    """One install or update at a time on this machine: nbc-tui's system lock, then nbc's."""
    with locked(SYSTEM_LOCK, what=what, wait=wait), locked("system.lock", what=what, wait=wait,
                                                           lock_dir=NBC_LOCK_DIR):
        yield


def cache_lock_dir() -> Path:
    return Path(os.environ.get(ENV_LOCK_DIR) or LOCK_DIR)


@contextlib.contextmanager
def cache_locked(*, shared: bool, wait: float = CACHE_LOCK_WAIT) -> Iterator[None]:
    """The one lock over both staged caches: exclusive to change them, shared to read them (and nbc's, unless
    the lock directory was moved)."""
    busy = CACHE_BUSY_SHARED if shared else CACHE_BUSY_EXCLUSIVE
    with contextlib.ExitStack() as held:
        held.enter_context(locked(CACHE_LOCK, wait=wait, shared=shared, lock_dir=cache_lock_dir(),
                                  busy_message=busy))
        if not os.environ.get(ENV_LOCK_DIR):
            held.enter_context(locked("cache.lock", wait=wait, shared=shared, lock_dir=NBC_LOCK_DIR,
                                      busy_message=busy))
        yield


def _open_lock(path: Path, *, shared: bool) -> int:
    """The lock file, made when missing. A shared lock (a reader's) needs no write access: a user who may not
    write root's lock file still reads the cache."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        if shared and path.exists():
            with contextlib.suppress(OSError):
                return os.open(path, os.O_RDONLY)
        raise NbcError(f"Cannot take the lock {path}: permission denied", hint="run it as root") from None
    except OSError as exc:
        raise NbcError(f"Cannot take the lock {path}: {exc.strerror or exc}") from None

"""Test helper: a sparse file of a given size attached as a loop device, always detached afterwards."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def attached_loop(backing: Path, *, size: int | None = None, read_only: bool = False) -> Iterator[Path]:
    """Create ``backing`` sparse when ``size`` is given, attach it, yield the loop device, detach it."""
    if size is not None:
        with backing.open("wb") as f:
            f.truncate(size)
    argv = ["losetup", "--find", "--show", *(["--read-only"] if read_only else []), str(backing)]
    dev = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    try:
        yield Path(dev)
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)

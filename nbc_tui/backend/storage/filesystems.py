"""mkfs for the root slots and var (nbc's labels, UUIDs chosen up front), and reading them back."""

from __future__ import annotations

import logging
from pathlib import Path

from ..plan import Filesystem
from ..runner import RunContext, run

log = logging.getLogger("nbc_tui")


def make_filesystem(device: Path, fs: Filesystem, label: str, uuid: str, *, ctx: RunContext) -> None:
    """Create ext4 or btrfs with nbc's label (root1, root2, var) and a UUID chosen up front."""
    if fs == "ext4":
        run(["mkfs.ext4", "-q", "-F", "-L", label, "-U", uuid, device], ctx=ctx)
    else:
        run(["mkfs.btrfs", "-q", "-f", "-L", label, "-U", uuid, device], ctx=ctx)


def read_fs_uuid(device: Path, *, ctx: RunContext) -> str:
    """The filesystem UUID as blkid reports it (the vfat serial XXXX-XXXX for the ESP)."""
    out = run(["blkid", "-p", "-s", "UUID", "-o", "value", device], ctx=ctx, changes_system=False).out
    return out.strip()


def read_fs_label(device: Path, *, ctx: RunContext) -> str:
    out = run(["blkid", "-p", "-s", "LABEL", "-o", "value", device], ctx=ctx, changes_system=False).out
    return out.strip()

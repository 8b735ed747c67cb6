"""What of /etc carries over into a newly written slot, and what conflicts.

/etc on an nbc system is an overlay: the slot's own copy of its image's /etc (``/.etc.lower``) below, the
shared upper layer on var above. A new slot brings the new image's /etc as its lower layer; the upper layer
stays, so every file the system changed keeps its changed version. Three things need more than that:

- files made at runtime that must not change with the image (machine-id, SSH host keys): they are made sure
  to live in the upper layer (nbc does the same);
- the account files, merged entry by entry (:mod:`.accounts`) into the new slot's /etc and, when the upper
  layer holds them, there too;
- conflicts: a file changed here that the new image changes too keeps this system's version; each is named.

:class:`EtcLayers` is the current slot's /etc: on the running system, writes go through the mounted overlay
(never behind its back); on a disk that is not running, into the upper directory itself.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_atomically
from .accounts import ACCOUNT_FILES, merge_accounts
from .rootfs import OVERLAY_BASE

OVERLAY_UPPER = OVERLAY_BASE / "upper"
RUNTIME_FILES = ("machine-id", *(f"ssh/ssh_host_{kind}_key{suffix}" for kind in ("ecdsa", "ed25519", "rsa")
                                 for suffix in ("", ".pub")))
"""Made on the installed system at runtime; the new image's /etc must not replace them."""
_MACHINE_ID = re.compile(rb"^[0-9a-f]{32}\n?$")


@dataclass(frozen=True)
class EtcLayers:
    """The current slot's /etc, layer by layer."""

    lower: Path
    """The current slot's ``.etc.lower``."""
    upper: Path
    """The overlay's upper directory on var."""
    live: Path | None = None
    """The mounted overlay (``/etc``) on the running system; None for a disk that is not running."""

    def in_upper(self, rel: str) -> bool:
        path = self.upper / rel
        return path.is_symlink() or (path.exists() and not _is_whiteout(path))

    def current(self, rel: str) -> Path | None:
        """The file as the system sees it, or None when there is none (or the upper layer removed it)."""
        if self.live is not None:
            path = self.live / rel
            return path if path.exists() else None
        upper = self.upper / rel
        if upper.is_symlink() or upper.exists():
            return None if _is_whiteout(upper) else upper
        lower = self.lower / rel
        return lower if lower.exists() else None

    def write(self, rel: str, data: bytes, like: os.stat_result) -> None:
        """Put ``data`` in the upper layer as ``rel``, with the mode and owner of ``like``."""
        where = (self.live if self.live is not None else self.upper) / rel
        write_atomically(where, data, mode=stat.S_IMODE(like.st_mode), owner=(like.st_uid, like.st_gid))


def _is_whiteout(path: Path) -> bool:
    """overlayfs marks a file removed in the upper layer with a 0/0 character device."""
    st = path.lstat()
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def carry_runtime_files(layers: EtcLayers) -> list[str]:
    """Machine-id and SSH host keys into the upper layer when only the lower one has them; returns those
    copied."""
    copied = []
    for rel in RUNTIME_FILES:
        source = layers.current(rel)
        if layers.in_upper(rel) or source is None or source.is_symlink() or not source.is_file():
            continue
        if layers.live is not None and os.path.ismount(source):
            continue  # a transient one systemd mounted over /etc (it commits it to the upper layer itself)
        data = source.read_bytes()
        if rel == "machine-id" and not _MACHINE_ID.match(data):
            continue  # not set yet ("uninitialized" or empty): the first boot makes one
        layers.write(rel, data, source.stat())
        copied.append(rel)
    return copied


def merge_account_files(layers: EtcLayers, new_etc: Path) -> list[str]:
    """passwd, group, shadow and gshadow merged into the new slot's /etc (``new_etc``, before it is sealed) and
    into the upper layer when it holds them; returns notes for people."""
    notes: list[str] = []
    for name in ACCOUNT_FILES:
        mine, theirs = layers.current(name), new_etc / name
        if mine is None:
            continue  # nothing local: the image's file stands
        image_text = theirs.read_text(errors="replace") if theirs.is_file() else ""
        before = layers.lower / name
        running_text = before.read_text(errors="replace") if before.is_file() else None
        like = theirs.stat() if theirs.is_file() else mine.stat()
        merged = merge_accounts(name, mine.read_text(errors="replace"), image_text, running_text)
        data = merged.text.encode()
        write_atomically(theirs, data, mode=stat.S_IMODE(like.st_mode), owner=(like.st_uid, like.st_gid))
        if layers.in_upper(name):
            layers.write(name, data, mine.stat())
        notes += merged.notes
    return notes


def etc_conflicts(layers: EtcLayers, new_etc: Path) -> list[str]:
    """Files the system changed (in the upper layer) that the new image also changed (its file differs from the
    current slot's lower one, or is new): this system's version wins, people should look. Account files are
    merged, not conflicts."""
    found = []
    for rel in _upper_files(layers.upper):
        if rel in ACCOUNT_FILES or rel in RUNTIME_FILES:
            continue
        new = new_etc / rel
        if not new.is_file() or new.is_symlink():
            continue
        old = layers.lower / rel
        image_changed = not old.is_file() or _digest(old) != _digest(new)
        if image_changed and _digest(layers.upper / rel) != _digest(new):
            found.append(rel)
    return sorted(found)


def _upper_files(upper: Path) -> Iterator[str]:
    for folder, _dirs, files in os.walk(upper):
        for name in files:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink():
                yield str(path.relative_to(upper))


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

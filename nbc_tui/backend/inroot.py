"""Paths inside another system's root (an extracted image, a mounted disk), resolved as that system sees them.

Symlinks in an image are relative to the image's root: an absolute link such as ``/boot/vmlinuz-6.1`` must
lead to the image's /boot, never to the installer's own, and ``..`` stops at the root. This is the one
resolver for every lookup in a target root; the scan's virtual tree has its own rules (image/resolve.py),
which refuse what extraction must not write through.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

MAX_SYMLINKS = 40
"""As the kernel's limit on symlinks followed in one lookup."""


def resolve_in_target(target_root: Path, relpath: str) -> Path | None:
    """The host path that ``relpath`` (absolute or not) names inside the target, every symlink followed the
    way the target itself would (chroot semantics); None when it does not exist or the links loop."""
    return _walk(target_root, relpath, missing_ok=False)


def path_in_target(target_root: Path, relpath: str) -> Path:
    """Like :func:`resolve_in_target`, for a path that may not exist yet (a file or folder about to be
    made): the part that exists is resolved, the rest appended as it is. Raises OSError(ELOOP) on a loop."""
    found = _walk(target_root, relpath, missing_ok=True)
    if found is None:
        raise OSError(40, f"too many symlinks at {relpath} in {target_root}")
    return found


def _parts(path: str) -> list[str]:
    return [p for p in PurePosixPath(path).parts if p not in ("/", "", ".")]


def _walk(target_root: Path, relpath: str, *, missing_ok: bool) -> Path | None:
    root = target_root.resolve()
    pending = _parts(relpath)
    current = root
    links = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink():
            links += 1
            if links > MAX_SYMLINKS:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = root
            pending = _parts(target) + pending
            continue
        if not candidate.exists():
            if not missing_ok:
                return None
            return candidate.joinpath(*pending)
        current = candidate
    return current

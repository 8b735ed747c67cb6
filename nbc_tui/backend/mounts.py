"""Mounts that always come undone: a mount point is only ever rmdir'ed, never deleted recursively.

``RUN_DIR`` (/run/nbc-tui) is where nbc-tui mounts what it works on (the new root, the answers' partition)
and keeps its short-lived key files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from .runner import RunContext, run

log = logging.getLogger("nbc_tui")

RUN_DIR = Path("/run/nbc-tui")


MOUNTINFO = Path("/proc/self/mountinfo")


def unescape_mountinfo(text: str) -> str:
    """/proc/self/mountinfo and /proc/swaps write space, tab, newline and backslash as \\ooo."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _mounts(mountinfo: Path) -> list[tuple[str, str, str]]:
    """Each mount's device number (``major:minor``), point and filesystem type, in mount order (empty when
    /proc cannot tell)."""
    found = []
    with contextlib.suppress(OSError):
        for line in mountinfo.read_text().splitlines():
            left, _, right = line.partition(" - ")
            fields, kind = left.split(), right.split()
            if len(fields) > 4 and kind:
                found.append((fields[2], unescape_mountinfo(fields[4]), kind[0]))
    return found


def mount_points() -> list[tuple[str, str]]:
    """Each mount's point and filesystem type, in mount order (empty when /proc cannot tell)."""
    return [(point, kind) for _number, point, kind in _mounts(MOUNTINFO)]


def mounted_device_numbers(mountinfo: Path = MOUNTINFO) -> set[str]:
    """The ``major:minor`` of every device something is mounted from."""
    return {number for number, _point, _kind in _mounts(mountinfo)}


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding ``path``, from /proc/self/mountinfo ("" if unknown)."""
    target = os.path.realpath(path)
    best, fstype = "", ""
    for mount_point, kind in mount_points():
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, fstype = mount_point, kind
    return fstype


def is_mountpoint(path: Path) -> bool:
    """Whether something is mounted at ``path``; a bind of a directory of the same filesystem too, which the
    device-number test of ``os.path.ismount`` cannot see."""
    with contextlib.suppress(OSError):
        if os.path.ismount(path):
            return True
    target = os.path.realpath(path)
    return any(point == target for point, _kind in mount_points())


@contextlib.contextmanager
def mounted(
    source: str | Path, where: Path, *, ctx: RunContext, options: list[str] | None = None,
    fstype: str | None = None,
) -> Iterator[Path]:
    """Mount ``source`` at ``where`` (created if missing) for the duration of the block.

    On exit it unmounts, then removes the mount point with rmdir only if this call created it and the
    unmount succeeded: never a recursive delete that could reach into a still-mounted filesystem.
    """
    created = not where.exists()
    where.mkdir(parents=True, exist_ok=True)
    argv: list[str | Path] = ["mount"]
    if fstype:
        argv += ["-t", fstype]
    if options:
        argv += ["-o", ",".join(options)]
    try:
        run([*argv, source, where], ctx=ctx)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                where.rmdir()
        raise
    try:
        yield where
    finally:
        unmount(where, ctx=ctx)
        if created and not is_mountpoint(where):
            with contextlib.suppress(OSError):
                where.rmdir()


@contextlib.contextmanager
def bind_mounted(source: Path, where: Path, *, ctx: RunContext) -> Iterator[Path]:
    """Bind-mount a host directory (/dev, /proc, /sys) into a chroot, non-recursively."""
    with mounted(source, where, ctx=ctx, options=["bind"]) as p:
        yield p


@contextlib.contextmanager
def bound_alone(source: Path, where: Path, *, ctx: RunContext) -> Iterator[Path]:
    """The filesystem at ``source`` by itself, read-only: what lies in its directories even where something is
    mounted over them (a non-recursive bind carries no submount)."""
    with mounted(source, where, ctx=ctx, options=["bind", "ro"]) as p:
        yield p


CHROOT_BINDS = ("dev", "proc", "sys")
"""What a tool run in the target's chroot sees of the host (dracut, useradd, systemd-firstboot)."""


@contextlib.contextmanager
def chroot_binds(root: Path, *, ctx: RunContext) -> Iterator[Path]:
    """/dev, /proc and /sys of the host bound into ``root`` for a chroot, unmounted afterwards."""
    with contextlib.ExitStack() as stack:
        for name in CHROOT_BINDS:
            stack.enter_context(bind_mounted(Path("/", name), root / name, ctx=ctx))
        yield root


def unmount(where: Path, *, ctx: RunContext) -> None:
    """Unmount, retrying lazily only if the filesystem is busy; a failure is logged and re-raised."""
    if not is_mountpoint(where):
        return
    try:
        run(["umount", where], ctx=ctx, timeout=120)
    except Exception:
        log.warning("umount %s failed; retrying after sync", where)
        run(["sync"], ctx=ctx)
        run(["umount", where], ctx=ctx, timeout=120)

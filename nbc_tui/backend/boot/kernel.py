"""Which kernel and initramfs of the image boot, and where a slot's copies live on the ESP.

One rule everywhere (nbc had three, reference §19.13): among ``usr/lib/modules/<kver>/`` directories that
hold ``vmlinuz`` or ``vmlinuz-<kver>``, the highest version by a version sort wins.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import InputError

MODULES_DIR = "usr/lib/modules"
INITRAMFS_NAMES = ("initramfs.img", "initrd.img", "initramfs-{kver}.img", "initrd.img-{kver}")
KERNEL_NAMES = ("vmlinuz", "vmlinuz-{kver}")

# Slot letters on the ESP and the root partitions they boot (A = root1 = p2, B = root2 = p3).
SLOT_ROOTS = {"A": "root1", "B": "root2"}

_MAX_SYMLINKS = 40


@dataclass(frozen=True)
class SlotKernel:
    version: str
    vmlinuz: Path
    """Absolute path of the kernel inside the mounted target."""
    initramfs: Path
    """Absolute path of the initramfs inside the mounted target. When the image ships none this is
    ``usr/lib/modules/<kver>/initramfs.img``, the file initramfs regeneration writes."""


def version_key(version: str) -> tuple[str | int, ...]:
    """Sort key comparing digit runs as numbers: 6.10 > 6.9, 6.1.0-18 > 6.1.0-9."""
    # re.split with a group alternates text and digits, so every key has text at even positions and
    # numbers at odd ones and any two keys compare element by element without type errors.
    parts = re.split(r"(\d+)", version)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def find_kernel(target_root: Path) -> SlotKernel:
    """The kernel to boot from an extracted image; InputError when the image has none."""
    modules = resolve_in_target(target_root, MODULES_DIR)
    candidates: list[tuple[str, Path]] = []
    if modules is not None and modules.is_dir():
        for entry in modules.iterdir():
            if not entry.is_dir() or entry.is_symlink():
                continue
            kver = entry.name
            vmlinuz = _first_file(target_root, kver, KERNEL_NAMES)
            if vmlinuz is not None:
                candidates.append((kver, vmlinuz))
    if not candidates:
        raise InputError(
            f"the image has no kernel: no {MODULES_DIR}/<version>/vmlinuz",
            hint="use a bootable container image (bootc-style, with the kernel under /usr/lib/modules)",
        )
    kver, vmlinuz = max(candidates, key=lambda c: version_key(c[0]))
    initramfs = _first_file(target_root, kver, INITRAMFS_NAMES)
    if initramfs is None:
        initramfs = target_root / MODULES_DIR / kver / "initramfs.img"
    return SlotKernel(version=kver, vmlinuz=vmlinuz, initramfs=initramfs)


def esp_kernel_paths(slot: str, version: str) -> tuple[str, str]:
    """ESP paths (no leading slash) of a slot's kernel and initramfs: ``A/vmlinuz-<kver>``, ...

    Each slot has its own directory so that A and B never share a boot file.
    """
    if slot not in SLOT_ROOTS:
        raise ValueError(f"slot must be one of {sorted(SLOT_ROOTS)}, not {slot!r}")
    if not version or "/" in version:
        raise ValueError(f"bad kernel version {version!r}")
    return f"{slot}/vmlinuz-{version}", f"{slot}/initramfs-{version}.img"


def _first_file(target_root: Path, kver: str, names: tuple[str, ...]) -> Path | None:
    for name in names:
        found = resolve_in_target(target_root, f"{MODULES_DIR}/{kver}/{name.format(kver=kver)}")
        if found is not None and found.is_file():
            return found
    return None


def resolve_in_target(target_root: Path, relpath: str) -> Path | None:
    """Resolve ``relpath`` inside the target the way the target itself would (chroot semantics).

    Symlinks in an image are relative to the image's root: an absolute link such as
    ``/boot/vmlinuz-6.1`` must not reach the installer's own /boot. Returns the host path of the
    result, or None when it does not exist or loops.
    """
    root = target_root.resolve()
    pending = [p for p in PurePosixPath(relpath).parts if p not in ("/", "", ".")]
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
            if links > _MAX_SYMLINKS:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = root
            pending = [p for p in PurePosixPath(target).parts if p not in ("/", "", ".")] + pending
            continue
        if not candidate.exists():
            return None
        current = candidate
    return current

"""Which kernel and initramfs of the image boot.

One rule everywhere (nbc had three, reference §19.13): among ``usr/lib/modules/<kver>/`` directories that
hold ``vmlinuz`` or ``vmlinuz-<kver>``, the highest version by a version sort wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..inroot import resolve_in_target

MODULES_DIR = "usr/lib/modules"
INITRAMFS_NAMES = ("initramfs.img", "initrd.img", "initramfs-{kver}.img", "initrd.img-{kver}")
KERNEL_NAMES = ("vmlinuz", "vmlinuz-{kver}")


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


def _first_file(target_root: Path, kver: str, names: tuple[str, ...]) -> Path | None:
    for name in names:
        found = resolve_in_target(target_root, f"{MODULES_DIR}/{kver}/{name.format(kver=kver)}")
        if found is not None and found.is_file():
            return found
    return None



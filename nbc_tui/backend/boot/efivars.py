"""The firmware boot entry (efibootmgr), only for a real disk on an EFI machine.

The ESP's removable path EFI/BOOT/BOOTX64.EFI boots without any entry, so this is a convenience: a skip
or a failure is reported to the user, never fatal. An image-file or loop-device target never touches this
machine's NVRAM (nbc did, reference §11.7, §19.9).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CommandFailed
from ..runner import RunContext, run, which

EFIVARS_DIR = Path("/sys/firmware/efi/efivars")
# The same loader path for both bootloaders (shim or the bootloader itself sits there).
EFI_LOADER = r"\EFI\BOOT\BOOTX64.EFI"


def register_efi_boot_entry(
    disk: Path, partition: int, label: str, *, is_image_file: bool, ctx: RunContext
) -> str | None:
    """Create a firmware boot entry for the ESP (``disk`` partition ``partition``).

    Returns None when the entry was created, otherwise why it was not, worded to follow "EFI boot entry: "
    ("skipped (the target is a disk-image file, ...)"): an image-file or loop-device target, no EFI
    variables on this machine, no efibootmgr, or its failure (never raised: the removable path boots).
    """
    reason = skip_reason(disk, is_image_file=is_image_file)
    if reason is not None:
        return reason
    if ctx.dry_run:
        return "skipped (dry run)"
    tool = which("efibootmgr")
    if tool is None:
        return "skipped (efibootmgr is not installed; the disk boots by its removable path)"
    try:
        run([tool, "--create", "--disk", disk, "--part", str(partition), "--loader", EFI_LOADER,
             "--label", label or "Linux"], ctx=ctx, what="efibootmgr")
    except CommandFailed as exc:
        return f"not created (efibootmgr failed; the disk still boots by its removable path): {exc.message}"
    return None


def skip_reason(disk: Path, *, is_image_file: bool) -> str | None:
    """Why no firmware entry may be written for this target, or None when one may."""
    if is_image_file:
        return "skipped (the target is a disk-image file, not a disk of this machine)"
    if disk.name.startswith("loop") or str(disk.resolve()).startswith("/dev/loop"):
        return f"skipped ({disk} is a loop device, not a disk of this machine)"
    if not EFIVARS_DIR.is_dir():
        return "skipped (this machine did not boot with EFI)"
    return None

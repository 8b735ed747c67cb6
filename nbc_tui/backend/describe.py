"""The plan and its target in words: one wording for the review screen, the dry run, ``answers validate`` and
headless installs alike (a disk in words is :mod:`.disks.words`).

Every function returns plain sentences (no markup); the faces decide how to frame them.
"""

from __future__ import annotations

from pathlib import Path

from .disks import Disk, disk_line
from .plan import InstallPlan
from .sizes import human
from .storage.partition import nbc_layout

BOOTLOADER_WORDS = {"auto": "automatic (systemd-boot when the image carries it, else GRUB)",
                    "grub": "GRUB", "systemd-boot": "systemd-boot"}

# ---------------------------------------------------------------------------------------------------
# A target


def image_file_words(path: Path, size: int) -> list[str]:
    """A disk-image file target, and what happens to a file already there."""
    lines = [f"a new disk-image file {path.absolute()}, {human(size)} (sparse)"]
    if path.exists():
        lines.append(f"The file there now ({human(path.stat().st_size)}) will be replaced.")
    return lines


def target_line(plan: InstallPlan, disk: Disk | None) -> str:
    """The target in one line: ``the disk-image file X`` or the disk's line."""
    if disk is None:
        return f"the disk-image file {plan.target.image_file}"
    return disk_line(disk)


# ---------------------------------------------------------------------------------------------------
# The plan


def encryption_lines(plan: InstallPlan) -> list[str]:
    """What is encrypted and how it unlocks, in a line or two."""
    enc = plan.encryption
    if enc is None:
        return ["Encryption: none (anyone holding the disk can read it)"]
    if not enc.tpm2:
        unlock = "the passphrase, at every boot"
    elif enc.tpm2_pcrs:
        unlock = f"the TPM2 while PCR {'+'.join(str(p) for p in enc.tpm2_pcrs)} is unchanged, else the passphrase"
    else:
        unlock = "the TPM2 on any boot of this machine, else the passphrase"
    lines = ["Encryption: LUKS2 on root1, root2 and var (not the ESP)", f"Unlocking: {unlock}"]
    if enc.tpm2:
        where = f"written to {enc.recovery_key_file}" if enc.recovery_key_file else "shown once during the install"
        lines.append(f"Recovery key: {where}")
    return lines


def creation_lines(plan: InstallPlan) -> list[str]:
    """What the install creates on the target, in words (the review screen and the dry run)."""
    parts = ", ".join(f"p{p.number} {p.name} {human(p.size) if p.size else '(the rest)'}"
                      for p in nbc_layout(plan.layout))
    kargs = " ".join(plan.boot.kernel_args) or "none"
    password = "set" if plan.system.sets_password else "not set"
    return [
        f"GPT: {parts}",
        f"{plan.layout.filesystem} on root1, root2 and var; the system goes into root1 (slot A)",
        *encryption_lines(plan),
        f"Bootloader: {BOOTLOADER_WORDS.get(plan.boot.bootloader, plan.boot.bootloader)}",
        f"Kernel arguments: {kargs}. Root password: {password}.",
    ]

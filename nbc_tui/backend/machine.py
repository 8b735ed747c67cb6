"""What this machine offers for an install, and what it is asked to do afterwards.

The survey the welcome screen shows (root, UEFI, tools, TPM, staged images), the tools an install needs, whether
this is the nbc-tui live system, and the reboot or power-off after an install (headless ``after`` and the
done screen alike). Reads only, apart from :func:`power`.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

from .boot.secure_boot import machine_secure_boot
from .errors import InputError, NbcError
from .image.cache import CacheKind, list_cached
from .plan import InstallPlan
from .runner import RunContext, run, which
from .storage.tpm import TPM_DEVICES, tpm_present

log = logging.getLogger("nbc_tui")

EFI_DIR = Path("/sys/firmware/efi")
# Tools every install runs; more are added by the plan (mkfs of its filesystem, openssl for a password).
BASE_TOOLS = ("sgdisk", "sfdisk", "wipefs", "losetup", "blkid", "mount", "umount", "cp", "chroot",
              "mkfs.vfat", "mmd", "mcopy", "mdir", "mtype")
MKFS_TOOLS = {"btrfs": "mkfs.btrfs", "ext4": "mkfs.ext4"}

LIVE_SYSTEM_MARKER = Path("/etc/nbc-tui-live")
"""iso/build.sh writes this file (NBC_TUI_LIVE_BUILD=... lines) into the live root; only its existence counts."""
ENV_LIVE_MARKER = "NBC_TUI_LIVE_MARKER"
"""Names another path for the live system's marker (tests)."""

PowerAction = Literal["reboot", "poweroff"]
POWER_DRY_RUN_ENV = "NBC_TUI_AFTER_DRY_RUN"
"""Tests: ``1`` announces and logs the reboot or power-off as a dry run instead of doing it."""


# ---------------------------------------------------------------------------------------------------
# Tools


def needed_tools(plan: InstallPlan | None = None) -> list[str]:
    """The tools an install of ``plan`` runs (every filesystem's mkfs when no plan is given yet)."""
    if plan is None:
        return [*BASE_TOOLS, *MKFS_TOOLS.values()]
    tools = [*BASE_TOOLS, MKFS_TOOLS[plan.layout.filesystem]]
    if plan.encryption is not None:
        tools.append("cryptsetup")
        if plan.encryption.tpm2:
            tools.append("systemd-cryptenroll")
    if plan.system.root_password_file or plan.system.root_password:
        tools.append("openssl")
    return tools


def missing_tools(plan: InstallPlan | None = None) -> list[str]:
    return [t for t in needed_tools(plan) if which(t) is None]


def check_tools(plan: InstallPlan) -> None:
    """Refuse (exit 2, nothing written) when a tool the install runs is not installed."""
    require_tools(needed_tools(plan))


def update_tools(filesystem: str, *, encrypted: bool, esp_through_mtools: bool) -> list[str]:
    """The tools an update runs: no partitioning; mtools only for an ESP that is not mounted (another disk)."""
    tools = ["sfdisk", "losetup", "blkid", "mount", "umount", "cp", "chroot", MKFS_TOOLS[filesystem]]
    if esp_through_mtools:
        tools += ["mmd", "mcopy", "mdir", "mtype", "mdel", "mren"]
    if encrypted:
        tools.append("cryptsetup")
    return tools


def require_tools(tools: list[str]) -> None:
    """Refuse (exit 2, nothing written) when one of ``tools`` is not installed."""
    missing = [t for t in tools if which(t) is None]
    if missing:
        raise InputError(f"missing tools: {', '.join(missing)}",
                         hint="install them (on Debian: tools/install-deps.sh lists the packages)")


# ---------------------------------------------------------------------------------------------------
# The live system


def live_system_marker() -> Path:
    return Path(os.environ.get(ENV_LIVE_MARKER) or LIVE_SYSTEM_MARKER)


def on_live_system() -> bool:
    """True on the nbc-tui live ISO, whose staged images are part of the read-only medium. (Which disk a live
    system started from is :mod:`.disks`' business: any live system, found by its mounts and command line.)"""
    return live_system_marker().exists()


# ---------------------------------------------------------------------------------------------------
# The survey


class Severity(StrEnum):
    OK = "ok"
    NOTICE = "notice"
    PROBLEM = "problem"


@dataclass(frozen=True)
class Check:
    """One fact about the machine: what was found, and when it is a problem, what to do."""

    key: str
    severity: Severity
    text: str


def survey_machine(*, efi_dir: Path = EFI_DIR, tpm_device: Path | None = None) -> list[Check]:
    """Look at the machine (no changes): root, UEFI, tools, TPM, staged images. Blocking (the cache lock)."""
    checks = [
        Check("root", Severity.OK, "Running as root.") if os.geteuid() == 0 else
        Check("root", Severity.PROBLEM, "Not running as root: disks cannot be written. "
              "Quit and start it again with sudo (a dry run works without root)."),
        Check("uefi", Severity.OK, "This machine started with UEFI firmware.") if efi_dir.is_dir() else
        Check("uefi", Severity.NOTICE, "This machine did not start with UEFI firmware; the installed system "
              "boots only with UEFI. Installing for another machine or into a disk-image file still works."),
    ]
    if efi_dir.is_dir():
        checks.append(_secure_boot_check(machine_secure_boot(None if efi_dir == EFI_DIR else efi_dir / "efivars")))
    missing = missing_tools()
    checks.append(
        Check("tools", Severity.OK, "Every tool the install needs is present.") if not missing else
        Check("tools", Severity.PROBLEM, f"Missing tools: {', '.join(missing)}. Install the packages that "
              "provide them (on Debian, tools/install-deps.sh lists them), then start again."))
    checks.append(
        Check("tpm", Severity.OK, "A TPM 2.0 is present: an encrypted disk could unlock itself at boot.")
        if tpm_present((tpm_device,) if tpm_device is not None else TPM_DEVICES) else
        Check("tpm", Severity.NOTICE, "No TPM 2.0 found: an encrypted disk would ask for its passphrase "
              "at every boot."))
    checks.append(_staged_check())
    return checks


def _secure_boot_check(state: bool | None) -> Check:
    if state is None:
        return Check("secure-boot", Severity.NOTICE, "Whether Secure Boot is on could not be read.")
    if state:
        return Check("secure-boot", Severity.NOTICE, "Secure Boot is on: the installed system starts only "
                     "from an image that ships a signed boot chain (shim, a signed GRUB, a signed kernel); the "
                     "image is checked for it before anything is written.")
    return Check("secure-boot", Severity.OK, "Secure Boot is off: any image boots here.")


def _staged_check() -> Check:
    try:
        staged = list_cached(CacheKind.INSTALL)
    except NbcError as exc:
        return Check("staged", Severity.NOTICE, f"The staged image cache could not be read: {exc}.")
    if not staged:
        return Check("staged", Severity.NOTICE, "No staged images: the image will be fetched during the install "
                     "(the network must work), or stage one first with `nbc-tui download`.")
    names = ", ".join(e.os_release_pretty_name or e.image_ref for e in staged[:3])
    more = f" and {len(staged) - 3} more" if len(staged) > 3 else ""
    return Check("staged", Severity.OK, f"{len(staged)} staged image(s) for an offline install: {names}{more}.")


# ---------------------------------------------------------------------------------------------------
# After an install


def power_argv(action: PowerAction) -> list[str]:
    return ["systemctl", action]


def power(action: PowerAction, *, dry_run: bool = False, announce: Callable[[str], None] = log.info) -> None:
    """Reboot or power off this machine (systemctl, through the runner), saying so first with ``announce``. In a
    dry run (or with ``NBC_TUI_AFTER_DRY_RUN=1``) it is announced and logged, not done. Raises NbcError when
    systemctl fails."""
    argv = power_argv(action)
    if dry_run or os.environ.get(POWER_DRY_RUN_ENV) == "1":
        announce(f"Would run now: {shlex.join(argv)} (dry run)")
        run(argv, ctx=RunContext(dry_run=True))  # logged as not run
        return
    announce(f"{'Rebooting' if action == 'reboot' else 'Powering off'} now")
    try:
        run(argv, ctx=RunContext(), timeout=60, what=action)
    except NbcError as exc:
        raise NbcError(f"`{shlex.join(argv)}` failed: {exc.message}", hint=f"{action} the machine yourself") from exc

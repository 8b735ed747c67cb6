"""Secure Boot: whether this machine enforces it, and what an image lacks to boot with it on.

Under Secure Boot the firmware starts only a signed shim, shim only a second stage signed by the
distribution (its signed GRUB, or a signed systemd-boot), and that loader only a signed kernel (reference:
``secure-boot.md``). nbc-tui never signs anything: an image boots this way exactly when it ships that chain.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..plan import Bootloader, SecureBootMode
from .efivars import EFIVARS_DIR

SECURE_BOOT_MODES: tuple[SecureBootMode, ...] = ("auto", "require", "off")

# The global-variable GUID of the UEFI specification: SecureBoot is 1 when the firmware enforces signatures.
SECURE_BOOT_VARIABLE = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
ENV_EFIVARS = "NBC_TUI_EFIVARS_DIR"
"""Names another efivarfs directory to read (tests: a machine with Secure Boot on)."""


def machine_secure_boot(efivars: Path | None = None) -> bool | None:
    """Whether this machine booted with Secure Boot enforced; None when it did not boot through UEFI or the
    variable cannot be read (a firmware without Secure Boot has no such variable: that is off)."""
    efivars = efivars or Path(os.environ.get(ENV_EFIVARS) or EFIVARS_DIR)
    if not efivars.is_dir():
        return None
    try:
        data = (efivars / SECURE_BOOT_VARIABLE).read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        return None
    # efivarfs: four bytes of attributes, then the value (one byte, 1 = enforced).
    return len(data) >= 5 and data[4] == 1


@dataclass(frozen=True)
class SignedChain:
    """What of the signed boot chain an image ships."""

    shim: bool
    signed_grub: bool
    signed_systemd_boot: bool
    kernel_version: str | None
    kernel_signed: bool | None
    """Whether the boot kernel has an Authenticode signature; None when it is not an EFI image at all."""


class ChainFacts(Protocol):
    """What a tree ships of the chain, as the scan's inventory (or lint's real tree) knows it; part of
    steps.image.ImageFacts."""

    @property
    def kernels(self) -> Sequence[KernelVersion]: ...

    @property
    def has_shim(self) -> bool: ...

    @property
    def has_signed_grub(self) -> bool: ...

    @property
    def has_signed_systemd_boot(self) -> bool: ...

    @property
    def kernel_signed(self) -> Mapping[str, bool | None]:
        """Per kernel version: whether its vmlinuz has an Authenticode signature (None: not an EFI image)."""
        ...


class KernelVersion(Protocol):
    @property
    def version(self) -> str: ...


def signed_chain(facts: ChainFacts) -> SignedChain:
    """What of the chain the tree ships, its boot kernel (the first, the newest) included."""
    kver = facts.kernels[0].version if facts.kernels else None
    return SignedChain(shim=facts.has_shim, signed_grub=facts.has_signed_grub,
                       signed_systemd_boot=facts.has_signed_systemd_boot, kernel_version=kver,
                       kernel_signed=facts.kernel_signed.get(kver) if kver else None)


def secure_boot_gaps(chain: SignedChain, bootloader: Bootloader | None) -> list[str]:
    """What the image lacks to boot with Secure Boot on (empty: nothing), in words for a message. Without a
    ``bootloader`` (an update, which keeps the installed one) only the kernel is asked about."""
    gaps = []
    if bootloader is not None:
        if not chain.shim:
            gaps.append("no shim (Debian: shim-signed)")
        if bootloader == "systemd-boot" and not chain.signed_systemd_boot:
            gaps.append("no signed systemd-boot (Debian 12 has none: choose GRUB, with grub-efi-amd64-signed)")
        elif bootloader == "grub" and not chain.signed_grub:
            gaps.append("no signed GRUB (Debian: grub-efi-amd64-signed)")
        elif bootloader == "auto" and not (chain.signed_grub or chain.signed_systemd_boot):
            gaps.append("no signed GRUB or systemd-boot (Debian: grub-efi-amd64-signed)")
    if chain.kernel_version is not None and not chain.kernel_signed:
        what = "is not an EFI image" if chain.kernel_signed is None else "has no Authenticode signature"
        gaps.append(f"its kernel {chain.kernel_version} {what} (Debian: linux-image-<flavour>, not -unsigned)")
    return gaps


def prefers_signed_grub(mode: SecureBootMode, machine_on: bool | None) -> bool:
    """Whether ``--bootloader auto`` should take the image's signed GRUB over an unsigned systemd-boot: when
    the disk is meant to boot with Secure Boot on."""
    return mode == "require" or (mode == "auto" and machine_on is True)

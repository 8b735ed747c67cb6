"""Choosing and installing the bootloader, a slot's kernel files on the ESP, and the menu entry that boots it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from ..errors import InputError
from ..osrelease import os_name, read_os_release
from ..runner import RunContext
from ..storage.esp import EspFiles, remove_tree
from ..system.slots import Slot
from .cmdline import grub_cmdline
from .entries import BootEntry, BootloaderKind
from .grub import grub_available, install_grub
from .kernel import SlotKernel
from .shim import find_signed_grub, find_signed_systemd_boot, shim_chain
from .systemd_boot import find_systemd_boot, install_systemd_boot


def resolve_bootloader(choice: Literal["auto", "grub", "systemd-boot"], target_root: Path, *,
                       prefer_signed: bool = False) -> BootloaderKind:
    """auto: systemd-boot when the image has its EFI binary (not bootctl: Debian ships them apart),
    else GRUB; with ``prefer_signed`` (the disk is to boot with Secure Boot on) GRUB when only it is signed
    and behind shim. An explicit choice the image or host cannot satisfy is an InputError."""
    signed_grub_only = prefer_signed and find_signed_systemd_boot(target_root) is None and shim_chain(
        target_root, find_signed_grub(target_root)) is not None
    if choice == "systemd-boot" or (choice == "auto" and not signed_grub_only):
        if find_systemd_boot(target_root) is not None:
            return "systemd-boot"
        if choice == "systemd-boot":
            raise InputError(
                "systemd-boot EFI binary not found in container image",
                hint="install systemd-boot (Debian: systemd-boot-efi) in the image, or choose GRUB",
            )
    if not grub_available(target_root):
        raise InputError(
            "no bootloader available: the image has no systemd-boot EFI binary and neither the image "
            "nor this machine has x86_64-efi GRUB modules with grub-mkimage",
            hint="install grub-efi-amd64-bin on this machine, or add systemd-boot to the image",
        )
    return "grub2"


def install_loader(kind: BootloaderKind, *, target_root: Path, esp: EspFiles, esp_uuid: str, ctx: RunContext,
                   warn: Callable[[str], None]) -> None:
    """The loader's own files on the ESP (an install): GRUB or systemd-boot, behind shim when the image has
    a signed chain. The menu is written by boot/menu.py."""
    if kind == "systemd-boot":
        install_systemd_boot(target_root=target_root, esp=esp, warn=warn)
    elif kind == "grub2":
        install_grub(target_root=target_root, esp=esp, esp_uuid=esp_uuid, ctx=ctx, warn=warn)
    else:
        raise ValueError(f"unknown bootloader {kind!r}")


def put_kernel_files(esp: EspFiles, slot: Slot, kernel: SlotKernel, *, dry_run: bool) -> tuple[str, str]:
    """The slot's kernel and initramfs in its own ESP folder (``/B/``), whatever was there before removed
    first; returns their ESP paths. Never touches the other slot's folder."""
    if not dry_run and not kernel.initramfs.is_file():
        raise InputError(
            f"no initramfs for kernel {kernel.version} in the image ({kernel.initramfs})",
            hint="install dracut in the image so that an initramfs can be built",
        )
    linux, initrd = slot.kernel_paths(kernel.version)
    remove_tree(esp, slot.esp_dir)
    esp.mkdir(slot.esp_dir)
    esp.put_file(kernel.vmlinuz, linux)
    esp.put_file(kernel.initramfs, initrd)
    return linux, initrd


def slot_entry(kind: BootloaderKind, slot: Slot, kernel: SlotKernel, *, cmdline: list[str], title: str) -> BootEntry:
    """The menu entry that boots ``slot``: its kernel files and ``cmdline`` (the base command line, which
    systemd-boot passes as it is; GRUB's variant is derived here)."""
    linux, initrd = slot.kernel_paths(kernel.version)
    options = grub_cmdline(cmdline) if kind == "grub2" else cmdline
    return BootEntry(title=title, linux=linux, initrd=initrd, options=tuple(options), slot=slot)


def os_title(target_root: Path) -> str:
    """The menu title: PRETTY_NAME, else NAME, else ID from the image's os-release, else "Linux"."""
    fields = read_os_release(target_root)
    return "Linux" if fields is None else os_name(fields)



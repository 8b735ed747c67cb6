"""Choosing and installing the bootloader: the slot's kernel files first, then GRUB or systemd-boot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from ..errors import InputError
from ..inroot import resolve_in_target
from ..osrelease import OS_RELEASE_PATHS, os_name, parse_os_release
from ..runner import RunContext
from ..storage.esp import Esp
from ..system.slots import Slot
from .grub import grub_available, install_grub
from .kernel import SlotKernel
from .systemd_boot import find_systemd_boot, install_systemd_boot

# The values nbc stores as config.bootloader_type (reference §8.1).
BootloaderKind = Literal["grub2", "systemd-boot"]



def resolve_bootloader(choice: Literal["auto", "grub", "systemd-boot"], target_root: Path) -> BootloaderKind:
    """auto: systemd-boot when the image has its EFI binary (not bootctl: Debian ships them apart),
    else GRUB. An explicit choice the image or host cannot satisfy is an InputError."""
    if choice in ("auto", "systemd-boot"):
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


def install_bootloader(
    kind: BootloaderKind,
    *,
    target_root: Path,
    esp: Esp,
    esp_uuid: str,
    slot: Slot,
    kernel: SlotKernel,
    options: list[str],
    title: str,
    ctx: RunContext,
    warn: Callable[[str], None],
) -> None:
    """Copy the kernel and initramfs to ``/<slot>/`` on the ESP, then install ``kind``.

    ``options`` is the base command line (cmdline.kernel_cmdline): systemd-boot uses it as is, GRUB
    derives its variant from it.
    """
    if not ctx.dry_run and not kernel.initramfs.is_file():
        raise InputError(
            f"no initramfs for kernel {kernel.version} in the image ({kernel.initramfs})",
            hint="install dracut in the image so that an initramfs can be built",
        )
    linux, initrd = slot.kernel_paths(kernel.version)
    esp.mkdir(slot.esp_dir)
    esp.put_file(kernel.vmlinuz, linux)
    esp.put_file(kernel.initramfs, initrd)
    if kind == "systemd-boot":
        install_systemd_boot(target_root=target_root, esp=esp, slot=slot, kernel_version=kernel.version,
                             options=options, title=title, warn=warn)
    elif kind == "grub2":
        install_grub(target_root=target_root, esp=esp, esp_uuid=esp_uuid, slot=slot,
                     kernel_version=kernel.version, options=options, title=title, ctx=ctx, warn=warn)
    else:
        raise ValueError(f"unknown bootloader {kind!r}")


def os_title(target_root: Path) -> str:
    """The menu title: PRETTY_NAME, else NAME, else ID from the image's os-release, else "Linux"."""
    for rel in OS_RELEASE_PATHS:
        path = resolve_in_target(target_root, rel)
        if path is None or not path.is_file():
            continue
        return os_name(parse_os_release(path.read_text(errors="replace")))
    return "Linux"



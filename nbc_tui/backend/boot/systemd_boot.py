"""systemd-boot from the image's own EFI binary (reference §11.4); bootctl is never run.

The entry file keeps nbc's name and spacing (``loader/entries/bootc.conf``) so that nbc can later update
the disk; it points at the slot's own kernel directory (``/A/...``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import InputError
from ..inroot import resolve_in_target
from ..storage.esp import Esp
from ..system.slots import Slot
from .shim import ShimChain, find_shim, find_signed_systemd_boot, install_shim_chain, shim_chain

EFI_BINARY_CANDIDATES = (
    "usr/lib/systemd/boot/efi/systemd-bootx64.efi.signed",
    "usr/lib/systemd/boot/efi/systemd-bootx64.efi",
    "usr/lib64/systemd/boot/efi/systemd-bootx64.efi.signed",
    "usr/lib64/systemd/boot/efi/systemd-bootx64.efi",
)
SYSTEMD_BOOT_DEST = "EFI/systemd/systemd-bootx64.efi"
REMOVABLE_DEST = "EFI/BOOT/BOOTX64.EFI"
LOADER_CONF = "loader/loader.conf"
ENTRIES_DIR = "loader/entries"
ENTRY_NAME = "bootc.conf"
PREVIOUS_ENTRY_NAME = "bootc-previous.conf"

# systemd-boot matches `default` as a glob against the entry id, which is the file name *with* .conf
# (src/boot/efi/boot.c: entry->id = the file name). nbc's `default bootc` therefore matches nothing and
# the default falls to sort order once nbc's update adds bootc-previous.conf; `bootc.conf` always
# selects the current entry.
LOADER_DEFAULT = ENTRY_NAME
LOADER_TIMEOUT = 5
# `keep` leaves the firmware's text mode alone: that mode is what a serial console (OVMF mirrors the
# console to the serial port) and unusual GOPs are known to handle; `max` can switch to a mode that a
# serial terminal or a broken GOP renders badly.
LOADER_CONSOLE_MODE = "keep"


def find_systemd_boot(target_root: Path) -> Path | None:
    """The image's systemd-boot EFI binary (Debian ships it in systemd-boot-efi, without bootctl)."""
    for rel in EFI_BINARY_CANDIDATES:
        found = resolve_in_target(target_root, rel)
        if found is not None and found.is_file():
            return found
    return None


def render_loader_conf() -> str:
    """loader.conf; ``editor no`` because the entry's command line is trusted (TPM unlock, reference §19.10)."""
    return (
        f"default {LOADER_DEFAULT}\n"
        f"timeout {LOADER_TIMEOUT}\n"
        f"console-mode {LOADER_CONSOLE_MODE}\n"
        "editor no\n"
    )


def render_entry(*, title: str, linux: str, initrd: str, options: Sequence[str]) -> str:
    """A Boot Loader Specification entry in nbc's exact spacing (reference §11.4)."""
    return (
        f"title   {_one_line(title)}\n"
        f"linux   /{linux.lstrip('/')}\n"
        f"initrd  /{initrd.lstrip('/')}\n"
        f"options {' '.join(options)}\n"
    )


def install_systemd_boot(
    *,
    target_root: Path,
    esp: Esp,
    slot: Slot,
    kernel_version: str,
    options: Sequence[str],
    title: str,
    warn: Callable[[str], None],
) -> None:
    """EFI binaries, loader.conf and the single entry ``bootc.conf`` for ``slot``.

    The slot's kernel and initramfs must already be on the ESP (bootloader.install_bootloader copies them).
    """
    binary = find_systemd_boot(target_root)
    if binary is None:
        raise InputError(
            "systemd-boot EFI binary not found in container image",
            hint="install systemd-boot (Debian: systemd-boot-efi) in the image, or choose GRUB",
        )
    esp.mkdir("EFI/systemd")
    esp.mkdir("EFI/BOOT")
    chain = _chain(target_root, warn)
    if chain is not None:
        install_shim_chain(esp, chain)
        # Whatever shim starts is also what the firmware's own entry for systemd-boot starts.
        esp.put_file(chain.second_stage, SYSTEMD_BOOT_DEST)
    else:
        esp.put_file(binary, SYSTEMD_BOOT_DEST)
        esp.put_file(binary, REMOVABLE_DEST)
    esp.put_text(render_loader_conf(), LOADER_CONF)
    linux, initrd = slot.kernel_paths(kernel_version)
    entry = render_entry(title=title, linux=linux, initrd=initrd, options=options)
    esp.put_text(entry, f"{ENTRIES_DIR}/{ENTRY_NAME}")
    # Only after the new entry exists: entries the image brought along would otherwise show up too.
    for path in esp.files():
        folder, _, name = path.rpartition("/")
        if folder.casefold() == ENTRIES_DIR and name.endswith(".conf") and name.casefold() != ENTRY_NAME:
            esp.remove(path)


def _chain(target_root: Path, warn: Callable[[str], None]) -> ShimChain | None:
    signed = find_signed_systemd_boot(target_root)
    chain = shim_chain(target_root, signed)
    if chain is None and find_shim(target_root) is not None:
        warn("The image has shim but no signed systemd-boot: booting systemd-boot directly "
             "(Secure Boot must be off)")
    return chain


def _one_line(text: str) -> str:
    return " ".join(text.split())

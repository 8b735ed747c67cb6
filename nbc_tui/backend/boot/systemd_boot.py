"""systemd-boot from the image's own EFI binary (reference §11.4); bootctl is never run; and its entries.

Entry files keep nbc's names and spacing (``loader/entries/bootc.conf``, ``bootc-previous.conf``) so that nbc
can still update the disk; they point at the slot's own kernel directory (``/A/...``). A slot on trial after
an update has a counted name, ``bootc+3.conf``: systemd-boot itself renames it before each try
(``bootc+2-1.conf``, ... ``bootc+0-3.conf``), sorts an entry with no tries left last, and so boots the previous
entry once the tries are spent (the Boot Loader Specification's boot counting). Reaching boot-complete.target
renames it to ``bootc.conf`` (system/boot_assessment.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..inroot import resolve_in_target
from ..storage.esp import EspFiles
from .entries import BootEntry
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
ENTRY_BASE = "bootc"
ENTRY_NAME = "bootc.conf"
PREVIOUS_ENTRY_NAME = "bootc-previous.conf"
_COUNTED = re.compile(r"^(?P<base>.+?)\+(?P<left>\d+)(?:-(?P<done>\d+))?\.conf$")

# loader.conf names no `default`: the entries' sort order decides, as on disks nbc writes (its `default
# bootc` matches no entry id). systemd-boot puts entries with no tries left last, then orders by id, newest
# first: `bootc.conf` and a trial's `bootc+N.conf` come before `bootc-previous.conf` (a `-` sorts older).
# A `default bootc.conf` would be wrong from systemd 258 on: there a trial entry's id drops its counter
# (`bootc+0-3.conf` is `bootc.conf`, systemd PR #38897) and the default would pick it with no tries left,
# so the update that does not boot would never fall back.
STALE_LOADER_DEFAULT = "default bootc.conf"
"""What loader.conf said before; an update removes it (see above)."""
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
    """loader.conf; ``editor no`` because the entry's command line is trusted (TPM unlock, reference §19.10);
    no ``default`` (see STALE_LOADER_DEFAULT)."""
    return (
        f"timeout {LOADER_TIMEOUT}\n"
        f"console-mode {LOADER_CONSOLE_MODE}\n"
        "editor no\n"
    )


def render_entry(entry: BootEntry) -> str:
    """A Boot Loader Specification entry in nbc's exact spacing (reference §11.4)."""
    return (
        f"title   {_one_line(entry.title)}\n"
        f"linux   /{entry.linux.lstrip('/')}\n"
        f"initrd  /{entry.initrd.lstrip('/')}\n"
        f"options {' '.join(entry.options)}\n"
    )


def parse_entry(text: str) -> BootEntry | None:
    """An entry file read back (None when it has no kernel): its title, kernel, initrd and options."""
    keys: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and not key.startswith("#") and key not in keys:
            keys[key] = value.strip()
    if "linux" not in keys:
        return None
    return BootEntry(title=keys.get("title", ""), linux=keys["linux"].lstrip("/"),
                     initrd=keys.get("initrd", "").lstrip("/"), options=tuple(keys.get("options", "").split()))


@dataclass(frozen=True)
class Counter:
    """A counted entry's name (``bootc+2-1.conf``): its tries left and tries done."""

    base: str
    left: int
    done: int


def counter(name: str) -> Counter | None:
    """The boot counter in an entry's file name, or None for an entry that is not counted."""
    m = _COUNTED.match(name)
    return Counter(m["base"], int(m["left"]), int(m["done"] or 0)) if m else None


def trial_name(tries: int) -> str:
    """The file name of a slot on trial with ``tries`` boots to go: ``bootc+3.conf``."""
    if tries < 1:
        raise ValueError("a slot on trial needs at least one try")
    return f"{ENTRY_BASE}+{tries}.conf"


def install_systemd_boot(*, target_root: Path, esp: EspFiles, warn: Callable[[str], None]) -> None:
    """The EFI binaries (behind shim when the image carries a signed chain) and loader.conf; the entries are
    written by boot/menu.py."""
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


def _chain(target_root: Path, warn: Callable[[str], None]) -> ShimChain | None:
    signed = find_signed_systemd_boot(target_root)
    chain = shim_chain(target_root, signed)
    if chain is None and find_shim(target_root) is not None:
        warn("The image has shim but no signed systemd-boot: booting systemd-boot directly "
             "(Secure Boot must be off)")
    return chain


def _one_line(text: str) -> str:
    return " ".join(text.split())


def without_stale_default(loader_conf: str) -> str | None:
    """loader.conf without the ``default bootc.conf`` older installs wrote, or None when it has none."""
    lines = loader_conf.splitlines(keepends=True)
    kept = [line for line in lines if line.strip() != STALE_LOADER_DEFAULT]
    return "".join(kept) if len(kept) != len(lines) else None

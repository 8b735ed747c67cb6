"""The Secure Boot chain (reference §11.5): shim as BOOTX64.EFI, a signed second stage as grubx64.efi.

Only files the image itself ships are used. fbx64.efi is never installed (it makes firmware show a
"Restore Boot Option" screen). When there is no signed second stage the chain is not set up at all:
shim would refuse an unsigned loader, so booting the loader directly is the only working choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..inroot import resolve_in_target
from ..storage.esp import EspFiles

# On the ESP: shim loads grubx64.efi (and mmx64.efi, the MOK manager) from its own directory.
SHIM_DEST = "EFI/BOOT/BOOTX64.EFI"
SECOND_STAGE_DEST = "EFI/BOOT/grubx64.efi"
MOK_DEST = "EFI/BOOT/mmx64.efi"

_SHIM_VENDORS = ("fedora", "centos", "redhat", "debian", "ubuntu")
_SHIM_DIRS = ("usr/lib/shim", "usr/lib64/shim", "usr/share/shim")


def _vendor_paths(name: str, vendors: tuple[str, ...] = _SHIM_VENDORS) -> list[str]:
    # An image's /boot/efi content (what it would have put on its ESP); FAT names, so case-insensitive.
    return [f"boot/efi/EFI/{v}/{name}" for v in vendors]


SHIM_CANDIDATES = (
    *_vendor_paths("shimx64.efi"),
    "usr/lib/shim/shimx64.efi.signed",
    "usr/lib64/shim/shimx64.efi.signed",
    "usr/share/shim/shimx64.efi.signed",
    "usr/lib/shim/shimx64.efi",
    "usr/lib64/shim/shimx64.efi",
)
MOK_CANDIDATES = (
    *_vendor_paths("mmx64.efi"),
    *(f"{d}/mmx64.efi.signed" for d in _SHIM_DIRS),
    "usr/lib/shim/mmx64.efi",
    "usr/lib64/shim/mmx64.efi",
)
SIGNED_GRUB_CANDIDATES = (
    *_vendor_paths("grubx64.efi", ("fedora", "centos", "redhat")),
    "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
    "usr/lib64/grub/x86_64-efi-signed/grubx64.efi.signed",
    "usr/lib/grub/x86_64-efi-signed/grubx64.efi",
    "usr/share/grub/x86_64-efi-signed/grubx64.efi",
)
SIGNED_SYSTEMD_BOOT_CANDIDATES = (
    "usr/lib/systemd/boot/efi/systemd-bootx64.efi.signed",
    "boot/efi/EFI/systemd/systemd-bootx64.efi",
    "boot/efi/EFI/debian/systemd-bootx64.efi",
    "boot/efi/EFI/ubuntu/systemd-bootx64.efi",
    "usr/lib64/systemd/boot/efi/systemd-bootx64.efi.signed",
)


@dataclass(frozen=True)
class ShimChain:
    shim: Path
    second_stage: Path
    """The signed GRUB or signed systemd-boot that shim starts (installed as grubx64.efi)."""
    mok_manager: Path | None


def find_first(target_root: Path, candidates: tuple[str, ...]) -> Path | None:
    """The first candidate that is a regular file in the target (``boot/efi`` parts match any case)."""
    for rel in candidates:
        found = _find_case_insensitive(target_root, rel) if rel.startswith("boot/efi/") else None
        if found is None:
            found = resolve_in_target(target_root, rel)
        if found is not None and found.is_file():
            return found
    return None


def find_shim(target_root: Path) -> Path | None:
    return find_first(target_root, SHIM_CANDIDATES)


def find_mok_manager(target_root: Path) -> Path | None:
    return find_first(target_root, MOK_CANDIDATES)


def find_signed_grub(target_root: Path) -> Path | None:
    return find_first(target_root, SIGNED_GRUB_CANDIDATES)


def find_signed_systemd_boot(target_root: Path) -> Path | None:
    return find_first(target_root, SIGNED_SYSTEMD_BOOT_CANDIDATES)


def shim_chain(target_root: Path, second_stage: Path | None) -> ShimChain | None:
    """The chain to install, or None without a shim or without a signed second stage."""
    shim = find_shim(target_root)
    if shim is None or second_stage is None:
        return None
    return ShimChain(shim=shim, second_stage=second_stage, mok_manager=find_mok_manager(target_root))


def install_shim_chain(esp: EspFiles, chain: ShimChain) -> None:
    """shim -> EFI/BOOT/BOOTX64.EFI, second stage -> EFI/BOOT/grubx64.efi, MOK manager if any."""
    esp.put_file(chain.shim, SHIM_DEST)
    esp.put_file(chain.second_stage, SECOND_STAGE_DEST)
    if chain.mok_manager is not None:
        esp.put_file(chain.mok_manager, MOK_DEST)


def _find_case_insensitive(target_root: Path, rel: str) -> Path | None:
    """Walk ``rel`` component by component, matching names regardless of case (no symlinks followed
    except inside the target; see resolve_in_target)."""
    current = resolve_in_target(target_root, "")
    if current is None:
        return None
    for part in rel.split("/"):
        exact = current / part
        if exact.exists() and not exact.is_symlink():
            current = exact
            continue
        if not current.is_dir():
            return None
        folded = part.casefold()
        matches = sorted(e for e in current.iterdir() if e.name.casefold() == folded and not e.is_symlink())
        if not matches:
            return None
        current = matches[0]
    return current

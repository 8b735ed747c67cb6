"""Finding shim, the MOK manager and the signed second stages in an image (reference §11.5)."""

from __future__ import annotations

from pathlib import Path

from nbc_tui.backend.boot.shim import (
    find_mok_manager,
    find_shim,
    find_signed_grub,
    find_signed_systemd_boot,
    shim_chain,
)


def touch(root: Path, rel: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"MZ" + rel.encode())
    return p


def test_nothing_found_in_an_empty_image(tmp_path: Path) -> None:
    assert find_shim(tmp_path) is None
    assert find_mok_manager(tmp_path) is None
    assert find_signed_grub(tmp_path) is None
    assert find_signed_systemd_boot(tmp_path) is None
    assert shim_chain(tmp_path, None) is None


def test_shim_search_order(tmp_path: Path) -> None:
    last = touch(tmp_path, "usr/lib64/shim/shimx64.efi")
    assert find_shim(tmp_path) == last
    unsigned = touch(tmp_path, "usr/lib/shim/shimx64.efi")
    assert find_shim(tmp_path) == unsigned
    share = touch(tmp_path, "usr/share/shim/shimx64.efi.signed")
    assert find_shim(tmp_path) == share
    signed = touch(tmp_path, "usr/lib/shim/shimx64.efi.signed")
    assert find_shim(tmp_path) == signed
    vendor = touch(tmp_path, "boot/efi/EFI/debian/shimx64.efi")
    assert find_shim(tmp_path) == vendor
    fedora = touch(tmp_path, "boot/efi/EFI/fedora/shimx64.efi")
    assert find_shim(tmp_path) == fedora


def test_vendor_paths_match_any_case(tmp_path: Path) -> None:
    shim = touch(tmp_path, "boot/efi/efi/Fedora/SHIMX64.EFI")
    assert find_shim(tmp_path) == shim


def test_mok_manager_and_signed_grub(tmp_path: Path) -> None:
    mok = touch(tmp_path, "usr/lib/shim/mmx64.efi.signed")
    touch(tmp_path, "usr/lib/shim/fbx64.efi.signed")
    assert find_mok_manager(tmp_path) == mok
    grub = touch(tmp_path, "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed")
    assert find_signed_grub(tmp_path) == grub
    fedora = touch(tmp_path, "boot/efi/EFI/fedora/grubx64.efi")
    assert find_signed_grub(tmp_path) == fedora
    touch(tmp_path, "boot/efi/EFI/debian/grubx64.efi")  # not a signed-GRUB location in nbc's list
    assert find_signed_grub(tmp_path) == fedora


def test_signed_systemd_boot_order(tmp_path: Path) -> None:
    lib64 = touch(tmp_path, "usr/lib64/systemd/boot/efi/systemd-bootx64.efi.signed")
    assert find_signed_systemd_boot(tmp_path) == lib64
    touch(tmp_path, "usr/lib/systemd/boot/efi/systemd-bootx64.efi")  # unsigned: never a second stage
    assert find_signed_systemd_boot(tmp_path) == lib64
    debian = touch(tmp_path, "boot/efi/EFI/debian/systemd-bootx64.efi")
    assert find_signed_systemd_boot(tmp_path) == debian
    signed = touch(tmp_path, "usr/lib/systemd/boot/efi/systemd-bootx64.efi.signed")
    assert find_signed_systemd_boot(tmp_path) == signed


def test_chain_needs_shim_and_a_signed_second_stage(tmp_path: Path) -> None:
    shim = touch(tmp_path, "usr/lib/shim/shimx64.efi.signed")
    assert shim_chain(tmp_path, None) is None
    grub = touch(tmp_path, "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed")
    chain = shim_chain(tmp_path, find_signed_grub(tmp_path))
    assert chain is not None
    assert (chain.shim, chain.second_stage, chain.mok_manager) == (shim, grub, None)

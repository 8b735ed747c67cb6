"""Secure Boot facts: PE signatures and GRUB prefixes read from real EFI images (grub-mkimage, sbsign, Debian's
signed GRUB), this machine's Secure Boot state from efivarfs bytes, and what an image lacks to boot with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbc_tui.backend.boot.pe import PE_HEAD_BYTES, PeError, authenticode_signed, grub_prefix, prefix_directory
from nbc_tui.backend.boot.secure_boot import (
    SECURE_BOOT_VARIABLE,
    SignedChain,
    machine_secure_boot,
    prefers_signed_grub,
    secure_boot_gaps,
)
from nbc_tui.backend.image.scan import KernelInfo
from nbc_tui.backend.steps.image import ImageCheck, SlotNeeds, secure_boot_problem
from tests.support.debs import unpacked
from tests.support.signed_chain import SIGNED_GRUB, pe_image, sign


def test_a_grub_image_says_its_prefix_and_is_unsigned_until_signed(tmp_path: Path) -> None:
    image = pe_image(tmp_path / "core.efi", prefix="/EFI/somewhere")
    data = image.read_bytes()
    assert grub_prefix(data) == "/EFI/somewhere"
    assert authenticode_signed(data[:PE_HEAD_BYTES]) is False
    signed = sign(image, tmp_path).read_bytes()
    assert authenticode_signed(signed[:PE_HEAD_BYTES]) is True
    assert grub_prefix(signed) == "/EFI/somewhere"  # signing appends; the sections stay


def test_debians_signed_grub(tmp_path: Path) -> None:
    data = (unpacked("grub-efi-amd64-signed", tmp_path) / SIGNED_GRUB).read_bytes()
    assert grub_prefix(data) == "/EFI/debian"
    assert authenticode_signed(data[:PE_HEAD_BYTES]) is True


@pytest.mark.parametrize("data", [b"", b"#!/bin/sh\n" * 100, b"MZ" + bytes(200)])
def test_not_a_pe_image(data: bytes) -> None:
    with pytest.raises(PeError):
        authenticode_signed(data)


def test_a_pe_image_without_a_mods_section_has_no_prefix(tmp_path: Path) -> None:
    data = pe_image(tmp_path / "core.efi").read_bytes()
    assert grub_prefix(data.replace(b"mods\0\0\0\0", b"other\0\0\0", 1)) is None


@pytest.mark.parametrize(("prefix", "directory"), [
    ("/EFI/debian", "EFI/debian"), ("(hd0,gpt1)/EFI/ubuntu", "EFI/ubuntu"), ("/boot/grub/", "boot/grub"),
    ("/", None), ("", None), ("/EFI/../..", None), ("(memdisk)", None),
])
def test_prefix_directory(prefix: str, directory: str | None) -> None:
    assert prefix_directory(prefix) == directory


@pytest.mark.parametrize(("value", "state"), [(b"\x06\x00\x00\x00\x01", True), (b"\x06\x00\x00\x00\x00", False),
                                              (b"\x06\x00", False)])
def test_machine_secure_boot_reads_the_variable(tmp_path: Path, value: bytes, state: bool) -> None:
    (tmp_path / SECURE_BOOT_VARIABLE).write_bytes(value)
    assert machine_secure_boot(tmp_path) is state


def test_machine_secure_boot_without_the_variable_or_uefi(tmp_path: Path) -> None:
    assert machine_secure_boot(tmp_path) is False  # UEFI without Secure Boot support
    assert machine_secure_boot(tmp_path / "no-efi") is None  # booted through BIOS


FULL = SignedChain(shim=True, signed_grub=True, signed_systemd_boot=False, kernel_version="6.1", kernel_signed=True)


def test_gaps_of_a_full_chain_depend_on_the_loader() -> None:
    assert secure_boot_gaps(FULL, "auto") == []
    assert secure_boot_gaps(FULL, "grub") == []
    assert secure_boot_gaps(FULL, None) == []
    (gap,) = secure_boot_gaps(FULL, "systemd-boot")
    assert "no signed systemd-boot" in gap and "choose GRUB" in gap


def test_gaps_of_an_image_without_the_chain() -> None:
    bare = SignedChain(shim=False, signed_grub=False, signed_systemd_boot=False, kernel_version="6.1",
                       kernel_signed=False)
    assert secure_boot_gaps(bare, "auto") == [
        "no shim (Debian: shim-signed)", "no signed GRUB or systemd-boot (Debian: grub-efi-amd64-signed)",
        "its kernel 6.1 has no Authenticode signature (Debian: linux-image-<flavour>, not -unsigned)"]
    # an update keeps the installed loader: only its new kernel counts
    assert secure_boot_gaps(bare, None) == [secure_boot_gaps(bare, "auto")[2]]
    stub = SignedChain(shim=True, signed_grub=True, signed_systemd_boot=False, kernel_version="6.1",
                       kernel_signed=None)
    assert "is not an EFI image" in secure_boot_gaps(stub, "grub")[0]


def test_prefers_signed_grub() -> None:
    assert prefers_signed_grub("require", None) and prefers_signed_grub("auto", True)
    assert not prefers_signed_grub("auto", False) and not prefers_signed_grub("auto", None)
    assert not prefers_signed_grub("off", True)


class Facts:
    """An image's facts as the scan gives them (only what the Secure Boot check reads)."""

    def __init__(self, chain: SignedChain) -> None:
        self.kernels = [KernelInfo(chain.kernel_version or "", "usr/lib/modules/6.1/vmlinuz", None)]
        self.has_shim, self.has_signed_grub = chain.shim, chain.signed_grub
        self.has_signed_systemd_boot = chain.signed_systemd_boot
        self.kernel_signed = {chain.kernel_version: chain.kernel_signed}


def needs(mode: str, machine: bool | None) -> SlotNeeds:
    return SlotNeeds(encrypted=False, tpm2=False, bootloader="auto", slot_size=1 << 30,
                     secure_boot=mode, machine_secure_boot=machine)  # type: ignore[arg-type]


def test_the_secure_boot_check_by_mode() -> None:
    unsigned = Facts(SignedChain(shim=True, signed_grub=True, signed_systemd_boot=False, kernel_version="6.1",
                                 kernel_signed=False))
    refused = secure_boot_problem(unsigned, needs("require", False), what="the image X")  # type: ignore[arg-type]
    assert refused is not None and refused.refuses and refused.check == ImageCheck.SECURE_BOOT
    assert refused.message.startswith("the image X cannot boot with Secure Boot on: its kernel 6.1")
    warned = secure_boot_problem(unsigned, needs("auto", True), what="the image X")  # type: ignore[arg-type]
    assert warned is not None and not warned.refuses
    assert warned.message.startswith("This machine boots with Secure Boot on, and the image X cannot")
    for mode, machine in (("auto", False), ("auto", None), ("off", True)):
        assert secure_boot_problem(unsigned, needs(mode, machine), what="x") is None  # type: ignore[arg-type]
    assert secure_boot_problem(Facts(FULL), needs("require", True), what="x") is None  # type: ignore[arg-type]


def test_the_image_summary_says_the_same_as_the_install() -> None:
    from nbc_tui.backend.image_facts import ImageFacts

    facts = ImageFacts(ref="r", os_name="Debian", version="12", architecture="amd64", size=1, compressed_size=0,
                       digest="sha256:x", secure_boot_gaps=("no shim (Debian: shim-signed)",), machine_secure_boot=True)
    assert facts.summary().splitlines()[-1] == (
        "Warning: this machine boots with Secure Boot on, and the image cannot: no shim (Debian: shim-signed). "
        "The installed system will not start until Secure Boot is turned off in the firmware setup.")
    quiet = ImageFacts(ref="r", os_name="Debian", version="12", architecture="amd64", size=1, compressed_size=0,
                       digest="sha256:x", secure_boot_gaps=("no shim (Debian: shim-signed)",),
                       machine_secure_boot=False)
    assert quiet.summary().splitlines()[-1] == "Secure Boot: cannot boot with it on (no shim (Debian: shim-signed))"
    fine = ImageFacts(ref="r", os_name="Debian", version="12", architecture="amd64", size=1, compressed_size=0,
                      digest="sha256:x", secure_boot_gaps=(), machine_secure_boot=True)
    assert fine.summary().splitlines()[-1].startswith("Secure Boot: can boot with it on")

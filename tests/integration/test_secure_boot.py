"""Secure Boot on the installed disk: the scan reads the signed chain (Debian's real shim and signed GRUB, a
kernel signed by sbsign), ``--secure-boot require`` installs such an image with shim in front and the early
config also in the signed GRUB's own prefix directory, and ``auto`` on a machine with Secure Boot on warns
about an image that cannot boot that way. The boots themselves are the VM tier's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbc_tui.backend.boot.grub import render_early_config
from nbc_tui.backend.image.opener import open_image
from nbc_tui.backend.image.scan import scan_image
from tests.conftest import nbc_mounts
from tests.integration.disk_image import blkid, esp_files, esp_read, partition_loop
from tests.support.oci import ImageSpec, Layer, write_layout
from tests.support.signed_chain import SignedChain, chain_layer, signed_chain
from tests.support.synthetic import KVER, base_layer, second_layer

pytestmark = pytest.mark.root

SMALL = ["--esp-size", "100M", "--root-size", "1G", "--var-min-size", "256M", "--filesystem", "ext4"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> SignedChain:
    return signed_chain(tmp_path_factory.mktemp("chain"))


@pytest.fixture(scope="module")
def chain_images(chain: SignedChain, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The synthetic image with the signed chain on top: ``signed`` and ``unsigned`` (the kernel)."""
    layout = tmp_path_factory.mktemp("chain-images")
    write_layout(layout, [ImageSpec(layers=[Layer(base_layer(), "gzip"), Layer(second_layer(), "zstd"),
                                            Layer(chain_layer(chain, kernel_signed=signed), "gzip")], tag=tag)
                          for tag, signed in (("signed", True), ("unsigned", False))])
    return {tag: f"oci:{layout}:{tag}" for tag in ("signed", "unsigned")}


@pytest.fixture
def secure_boot_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine, as the engine sees it, boots with Secure Boot enforced (efivarfs bytes: attributes, 1)."""
    efivars = tmp_path / "efivars"
    efivars.mkdir()
    (efivars / "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c").write_bytes(b"\x06\x00\x00\x00\x01")
    monkeypatch.setenv("NBC_TUI_EFIVARS_DIR", str(efivars))


def test_the_scan_reads_the_signed_chain(chain_images: dict[str, str]) -> None:
    with open_image(chain_images["signed"]) as source:
        inventory = scan_image(source)
    assert inventory.has_shim and inventory.has_signed_grub and not inventory.has_signed_systemd_boot
    assert inventory.kernel_signed == {KVER: True}
    with open_image(chain_images["unsigned"]) as source:
        assert scan_image(source).kernel_signed == {KVER: False}


def test_require_installs_the_chain_with_the_early_config_in_grubs_prefix(
        nbc, chain: SignedChain, chain_images: dict[str, str], tmp_path: Path) -> None:
    """The image also has systemd-boot (unsigned): with Secure Boot asked for, auto takes the signed GRUB."""
    image = tmp_path / "disk.img"
    r = nbc("install", "--image", chain_images["signed"], "--via-loopback", str(image), *SMALL,
            "--secure-boot", "require", "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    assert r.events[-1]["details"]["bootloader"] == "grub2"
    files = esp_files(image)
    assert {"EFI/BOOT/BOOTX64.EFI", "EFI/BOOT/grubx64.efi", "EFI/BOOT/grub.cfg", "EFI/debian/grub.cfg",
            "grub/grub.cfg", f"A/vmlinuz-{KVER}"} <= set(files), files
    assert not any(f.startswith("loader/") for f in files)
    assert esp_read(image, "EFI/BOOT/BOOTX64.EFI") == chain.shim
    assert esp_read(image, "EFI/BOOT/grubx64.efi") == chain.signed_grub
    assert esp_read(image, f"A/vmlinuz-{KVER}") == chain.signed_kernel
    with partition_loop(image, 1) as dev:
        early = render_early_config(blkid(dev)["UUID"])
    assert esp_read(image, "EFI/debian/grub.cfg").decode() == early
    assert esp_read(image, "EFI/BOOT/grub.cfg").decode() == early
    assert nbc_mounts() == []


def test_auto_warns_on_a_secure_boot_machine_and_installs(nbc, chain_images: dict[str, str], tmp_path: Path,
                                                          secure_boot_on: None) -> None:
    image = tmp_path / "disk.img"
    r = nbc("install", "--image", chain_images["unsigned"], "--via-loopback", str(image), *SMALL, "--dry-run",
            "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    (warning,) = [e["message"] for e in r.events if e["type"] == "warning"]
    assert "This machine boots with Secure Boot on" in warning and "has no Authenticode signature" in warning
    assert "turned off in the firmware" in warning
    r = nbc("install", "--image", chain_images["signed"], "--via-loopback", str(image), *SMALL, "--dry-run",
            "--json")
    assert r.returncode == 0 and not [e for e in r.events if e["type"] == "warning"], r.stdout


def test_off_does_not_ask(nbc, synthetic_image: str, tmp_path: Path, secure_boot_on: None) -> None:
    r = nbc("install", "--image", synthetic_image, "--via-loopback", str(tmp_path / "disk.img"), *SMALL,
            "--secure-boot", "off", "--dry-run", "--json")
    assert r.returncode == 0 and not [e for e in r.events if e["type"] == "warning"], r.stdout


def answers_file(tmp_path: Path, ref: str, boot: str = "") -> Path:
    path = tmp_path / "answers.toml"
    path.write_text(f'version = 1\n[image]\nref = "{ref}"\n[target]\nimage_file = "{tmp_path / "os.img"}"\n'
                    '[layout]\nfilesystem = "ext4"\nesp_size = "100M"\nroot_size = "1G"\nvar_min_size = "256M"\n'
                    f"[boot]\n{boot}")
    return path


def test_answers_validate_says_the_same(nbc, synthetic_image: str, tmp_path: Path, secure_boot_on: None) -> None:
    """``require`` in an answer file refuses with the key and line; ``auto`` on this machine warns."""
    r = nbc("answers", "validate", str(answers_file(tmp_path, synthetic_image, 'secure_boot = "require"\n')))
    assert r.returncode == 2, r.stdout + r.stderr
    assert ":12: boot.secure_boot: the image" in r.stderr and "cannot boot with Secure Boot on" in r.stderr
    r = nbc("answers", "validate", "--json", str(answers_file(tmp_path, synthetic_image)))
    assert r.returncode == 0, r.stdout + r.stderr
    (warning,) = json.loads(r.stdout)["warnings"]
    assert warning["key"] == "boot.secure_boot" and "This machine boots with Secure Boot on" in warning["message"]
    r = nbc("answers", "validate", str(answers_file(tmp_path, synthetic_image)))
    assert "  warning: " in r.stdout and "This machine boots with Secure Boot on" in r.stdout
    assert not (tmp_path / "os.img").exists()

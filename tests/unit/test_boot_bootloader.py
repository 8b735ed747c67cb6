"""Choosing the bootloader and GRUB's source, the menu title, and when no firmware entry is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbc_tui.backend.boot import efivars, grub
from nbc_tui.backend.boot.bootloader import os_title, resolve_bootloader
from nbc_tui.backend.errors import InputError
from nbc_tui.backend.osrelease import parse_os_release
from nbc_tui.backend.runner import RunContext


def touch(root: Path, rel: str, data: str = "x") -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(data)
    return p


def grub_modules(root: Path, rel: str = "usr/lib/grub/x86_64-efi") -> Path:
    for name in ("kernel.img", "normal.mod"):
        touch(root, f"{rel}/{name}")
    return root / rel


def test_auto_prefers_systemd_boot_when_the_image_has_its_efi_binary(tmp_path: Path) -> None:
    touch(tmp_path, "usr/lib/systemd/boot/efi/systemd-bootx64.efi")
    assert resolve_bootloader("auto", tmp_path) == "systemd-boot"
    assert resolve_bootloader("systemd-boot", tmp_path) == "systemd-boot"


def test_bootctl_alone_is_not_systemd_boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(tmp_path, "usr/bin/bootctl")
    monkeypatch.setattr(grub, "find_grub_source", lambda root: grub.GrubSource("host", "x", root))
    assert resolve_bootloader("auto", tmp_path) == "grub2"
    with pytest.raises(InputError, match="systemd-boot EFI binary not found"):
        resolve_bootloader("systemd-boot", tmp_path)


def test_grub_needs_modules_somewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grub, "HOST_MODULE_DIR", tmp_path / "nothing")
    with pytest.raises(InputError, match="no bootloader available"):
        resolve_bootloader("grub", tmp_path)


def test_grub_source_prefers_the_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grub, "_host_mkimage", lambda: "/usr/bin/grub-mkimage")
    host = grub_modules(tmp_path / "host")
    target = tmp_path / "target"
    target.mkdir()
    assert grub.find_grub_source(target, host_module_dir=host) == grub.GrubSource(
        "host", "/usr/bin/grub-mkimage", host)
    image_mods = grub_modules(target)
    assert grub.find_grub_source(target, host_module_dir=host) == grub.GrubSource(
        "image-modules", "/usr/bin/grub-mkimage", image_mods)
    touch(target, "usr/bin/grub2-mkimage")
    assert grub.find_grub_source(target, host_module_dir=host) == grub.GrubSource(
        "image-chroot", "/usr/bin/grub2-mkimage", image_mods)


def test_grub_source_without_any_mkimage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grub, "_host_mkimage", lambda: None)
    grub_modules(tmp_path)
    assert grub.find_grub_source(tmp_path, host_module_dir=grub_modules(tmp_path / "host")) is None


@pytest.mark.parametrize(("text", "title"), [
    ('NAME="Fedora Linux"\nPRETTY_NAME="Fedora Linux 40 (Workstation Edition)"\nID=fedora\n',
     "Fedora Linux 40 (Workstation Edition)"),
    ("NAME='Snow'\nID=snow\n", "Snow"),
    ("ID=arch\n", "arch"),
    ("# nothing\nVERSION=1\n", "Linux"),
    ('PRETTY_NAME="Say \\"hi\\""\n', 'Say "hi"'),
])
def test_os_title(tmp_path: Path, text: str, title: str) -> None:
    touch(tmp_path, "usr/lib/os-release", text)
    assert os_title(tmp_path) == title


def test_os_title_prefers_etc_and_follows_absolute_links(tmp_path: Path) -> None:
    assert os_title(tmp_path) == "Linux"
    touch(tmp_path, "usr/lib/os-release", 'PRETTY_NAME="From usr"\n')
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").symlink_to("/usr/lib/os-release")
    assert os_title(tmp_path) == "From usr"
    (tmp_path / "etc/os-release").unlink()
    touch(tmp_path, "etc/os-release", 'PRETTY_NAME="From etc"\n')
    assert os_title(tmp_path) == "From etc"


def test_parse_os_release_ignores_junk() -> None:
    assert parse_os_release("garbage\n\n#c=1\nA=b\n") == {"A": "b"}


def test_no_firmware_entry_for_image_files_or_loop_devices(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    ctx = RunContext()
    monkeypatch.setattr(efivars, "EFIVARS_DIR", tmp_path)  # pretend this machine booted with EFI
    reason = efivars.register_efi_boot_entry(Path("/tmp/disk.img"), 1, "OS", is_image_file=True, ctx=ctx)
    assert reason is not None and "disk-image file" in reason
    reason = efivars.register_efi_boot_entry(Path("/dev/loop7"), 1, "OS", is_image_file=False, ctx=ctx)
    assert reason is not None and "loop device" in reason
    reason = efivars.register_efi_boot_entry(Path("/dev/sda"), 1, "OS", is_image_file=False,
                                             ctx=RunContext(dry_run=True))
    assert reason == "skipped (dry run)"


def test_no_firmware_entry_without_efi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(efivars, "EFIVARS_DIR", tmp_path / "absent")
    reason = efivars.register_efi_boot_entry(Path("/dev/sda"), 1, "OS", is_image_file=False,
                                             ctx=RunContext())
    assert reason is not None and "did not boot with EFI" in reason
    assert efivars.skip_reason(Path("/dev/sda"), is_image_file=False) == reason

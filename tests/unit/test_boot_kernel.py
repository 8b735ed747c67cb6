"""Kernel selection: one rule, a real version sort, both kernel names, symlinks resolved inside the image."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nbc_tui.backend.boot.kernel import find_kernel, version_key
from nbc_tui.backend.errors import InputError
from nbc_tui.backend.system.slots import Slot


def kernel_dir(root: Path, kver: str, *files: str) -> Path:
    d = root / "usr/lib/modules" / kver
    d.mkdir(parents=True)
    for name in files:
        (d / name).write_text(name)
    return d


def test_version_sort_is_numeric() -> None:
    versions = ["6.1.0-9-amd64", "6.10.1", "6.1.0-18-amd64", "6.9.12", "5.15.0"]
    assert sorted(versions, key=version_key) == [
        "5.15.0", "6.1.0-9-amd64", "6.1.0-18-amd64", "6.9.12", "6.10.1"]


def test_highest_version_wins_not_the_lexical_one(tmp_path: Path) -> None:
    kernel_dir(tmp_path, "6.1.0-9-amd64", "vmlinuz", "initramfs.img")
    kernel_dir(tmp_path, "6.1.0-18-amd64", "vmlinuz", "initramfs.img")
    kernel_dir(tmp_path, "6.10.0", "config")  # no kernel file: not a candidate
    k = find_kernel(tmp_path)
    assert k.version == "6.1.0-18-amd64"
    assert k.vmlinuz == tmp_path / "usr/lib/modules/6.1.0-18-amd64/vmlinuz"
    assert k.initramfs == tmp_path / "usr/lib/modules/6.1.0-18-amd64/initramfs.img"


def test_vmlinuz_with_version_suffix_counts(tmp_path: Path) -> None:
    kernel_dir(tmp_path, "6.8.5-301.fc40.x86_64", "vmlinuz-6.8.5-301.fc40.x86_64",
               "initramfs-6.8.5-301.fc40.x86_64.img")
    k = find_kernel(tmp_path)
    assert k.vmlinuz.name == "vmlinuz-6.8.5-301.fc40.x86_64"
    assert k.initramfs.name == "initramfs-6.8.5-301.fc40.x86_64.img"


@pytest.mark.parametrize(("present", "chosen"), [
    (["initrd.img-6.1", "initramfs-6.1.img", "initrd.img", "initramfs.img"], "initramfs.img"),
    (["initrd.img-6.1", "initramfs-6.1.img", "initrd.img"], "initrd.img"),
    (["initrd.img-6.1", "initramfs-6.1.img"], "initramfs-6.1.img"),
    (["initrd.img-6.1"], "initrd.img-6.1"),
])
def test_initramfs_candidate_order(tmp_path: Path, present: list[str], chosen: str) -> None:
    kernel_dir(tmp_path, "6.1", "vmlinuz", *present)
    assert find_kernel(tmp_path).initramfs.name == chosen


def test_missing_initramfs_points_at_what_dracut_will_write(tmp_path: Path) -> None:
    kernel_dir(tmp_path, "6.1", "vmlinuz")
    assert find_kernel(tmp_path).initramfs == tmp_path / "usr/lib/modules/6.1/initramfs.img"


def test_no_kernel_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no kernel"):
        find_kernel(tmp_path)
    kernel_dir(tmp_path, "6.1", "modules.dep")
    with pytest.raises(InputError):
        find_kernel(tmp_path)


def test_absolute_symlinks_resolve_inside_the_image(tmp_path: Path) -> None:
    d = kernel_dir(tmp_path, "6.1", "initramfs.img")
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot/vmlinuz-6.1").write_text("kernel")
    os.symlink("/boot/vmlinuz-6.1", d / "vmlinuz")  # absolute: means the image's /boot, not ours
    k = find_kernel(tmp_path)
    assert k.vmlinuz == tmp_path / "boot/vmlinuz-6.1"


def test_esp_paths_per_slot() -> None:
    assert Slot.A.kernel_paths("6.1") == ("A/vmlinuz-6.1", "A/initramfs-6.1.img")
    assert Slot.B.kernel_paths("6.1") == ("B/vmlinuz-6.1", "B/initramfs-6.1.img")
    with pytest.raises(ValueError, match="bad kernel version"):
        Slot.A.kernel_paths("../6.1")

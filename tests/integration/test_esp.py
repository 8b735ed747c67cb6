"""A real FAT32 ESP on a file-backed loop device, written and read back with mtools only."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbc_tui.backend.runner import RunContext
from nbc_tui.backend.storage.esp import Esp, esp_uuid, new_volume_id
from tests.support.loopdev import attached_loop

pytestmark = pytest.mark.root


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Path]:
    with attached_loop(tmp_path / "esp.img", size=64 * 1024 * 1024) as dev:
        yield dev


def blkid(dev: Path) -> dict[str, str]:
    out = subprocess.run(["blkid", "-p", "-o", "export", str(dev)], capture_output=True, text=True,
                         check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_volume_ids() -> None:
    vid = new_volume_id()
    assert len(vid) == 8 and int(vid, 16) >= 0 and vid == vid.upper()
    assert esp_uuid("1a2b3c4d") == "1A2B-3C4D"
    with pytest.raises(ValueError):
        esp_uuid("xyz")


def test_format_write_list_read_back(loop_device: Path, tmp_path: Path) -> None:
    esp = Esp(loop_device, ctx=RunContext())
    esp.format("1a2b3c4d")
    info = blkid(loop_device)
    assert (info["TYPE"], info["LABEL"], info["UUID"], info["VERSION"]) == ("vfat", "UEFI", "1A2B-3C4D",
                                                                          "FAT32")
    assert esp.files() == []

    esp.mkdir("EFI/BOOT")
    esp.mkdir("EFI/BOOT")  # idempotent
    esp.mkdir("efi/boot/Deeper")  # FAT ignores case: no second EFI directory appears
    assert esp.directories() == ["EFI", "EFI/BOOT", "EFI/BOOT/Deeper"]

    blob = bytes(range(256)) * 4000
    src = tmp_path / "blob"
    src.write_bytes(blob)
    esp.put_file(src, "EFI/BOOT/BOOTX64.EFI")
    esp.put_file(src, "A/vmlinuz-6.1.0-18-amd64")  # parents created on the way
    esp.put_text("default bootc.conf\r\nnot converted\n", "loader/loader.conf")
    esp.put_text("title   A long name\n", "loader/entries/bootc.conf")

    assert esp.files() == [
        "A/vmlinuz-6.1.0-18-amd64",
        "EFI/BOOT/BOOTX64.EFI",
        "loader/entries/bootc.conf",
        "loader/loader.conf",
    ]
    assert esp.read("EFI/BOOT/BOOTX64.EFI") == blob
    assert esp.read("loader/loader.conf") == b"default bootc.conf\r\nnot converted\n"
    assert esp.exists("efi/boot/bootx64.efi")
    assert not esp.exists("EFI/BOOT/grubx64.efi")

    esp.put_text("replaced\n", "loader/loader.conf")  # an existing file is overwritten
    assert esp.read("loader/loader.conf") == b"replaced\n"
    esp.remove("loader/entries/bootc.conf")
    assert "loader/entries/bootc.conf" not in esp.files()


def test_put_tree(loop_device: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "EFI/debian").mkdir(parents=True)
    (tree / "EFI/debian/grub.cfg").write_text("cfg\n")
    (tree / "top.txt").write_text("top\n")
    esp = Esp(loop_device, ctx=RunContext())
    esp.format(new_volume_id())
    esp.put_tree(tree)
    assert esp.files() == ["EFI/debian/grub.cfg", "top.txt"]
    assert esp.read("EFI/debian/grub.cfg") == b"cfg\n"


def test_dry_run_writes_nothing(loop_device: Path) -> None:
    Esp(loop_device, ctx=RunContext()).format("00000001")
    dry = Esp(loop_device, ctx=RunContext(dry_run=True))
    dry.format("00000002")
    dry.mkdir("EFI/BOOT")
    dry.put_text("x", "EFI/BOOT/x")
    assert blkid(loop_device)["UUID"] == "0000-0001"
    assert Esp(loop_device, ctx=RunContext()).files() == []

"""The initramfs reader on archives built here: cpio newc, an early uncompressed part, compression."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import shutil
import subprocess
from pathlib import Path

import pytest
import zstandard

from nbc_tui.backend.system.initramfs import InitramfsError, initramfs_contains, initramfs_names
from tests.support.oci import newc_cpio as newc

EARLY = newc({"kernel": b"", "kernel/x86": b"", "kernel/x86/microcode": b"",
              "kernel/x86/microcode/GenuineIntel.bin": b"\x01" * 3000})
MAIN = {
    ".": b"",
    "usr/bin/mount": b"\x7fELF" + b"m" * 70000,
    "var/lib/dracut/hooks/pre-pivot/50etc-overlay-mount.sh": b"#!/bin/sh\n",
    "init": b"#!/bin/sh\n",
}
COMPRESSORS = {
    "gzip": lambda d: gzip.compress(d, 6),
    "zstd": lambda d: zstandard.ZstdCompressor(level=3).compress(d),
    "xz": lambda d: lzma.compress(d, format=lzma.FORMAT_XZ),
    "lzma": lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE),
    "bzip2": bz2.compress,
}


def test_plain_archive_names() -> None:
    assert list(initramfs_names(io.BytesIO(newc(MAIN)))) == list(MAIN)


@pytest.mark.parametrize("how", list(COMPRESSORS))
def test_early_cpio_then_compressed_main(how: str) -> None:
    image = EARLY + COMPRESSORS[how](newc(MAIN))
    names = list(initramfs_names(io.BytesIO(image)))
    assert names == ["kernel", "kernel/x86", "kernel/x86/microcode", "kernel/x86/microcode/GenuineIntel.bin",
                     *MAIN]
    assert initramfs_contains(io.BytesIO(image), "etc-overlay-mount.sh")
    assert not initramfs_contains(io.BytesIO(image), "overlay-mount.sh")  # a whole name, not a suffix
    assert not initramfs_contains(io.BytesIO(image), "95etc-overlay")


def test_several_archives_inside_the_compressed_part() -> None:
    image = gzip.compress(newc({"a": b"1"}) + newc({"b": b"22"}))
    assert list(initramfs_names(io.BytesIO(image))) == ["a", "b"]


def test_without_the_hook(tmp_path: Path) -> None:
    path = tmp_path / "initramfs.img"
    path.write_bytes(EARLY + gzip.compress(newc({"init": b"x", "usr/bin/sh": b"y"})))
    assert not initramfs_contains(path, "etc-overlay-mount.sh")
    assert initramfs_contains(str(path), "sh")


@pytest.mark.skipif(not shutil.which("cpio"), reason="needs the cpio tool")
def test_an_archive_written_by_the_cpio_tool(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "usr/lib/dracut/hooks/pre-pivot").mkdir(parents=True)
    (tree / "usr/lib/dracut/hooks/pre-pivot/50etc-overlay-mount.sh").write_text("#!/bin/sh\n")
    (tree / "big").write_bytes(b"z" * 200_001)
    names = "\n".join(p.relative_to(tree).as_posix() for p in sorted(tree.rglob("*"))) + "\n"
    archive = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], input=names.encode(), cwd=tree,
                             capture_output=True, check=True).stdout
    image = EARLY + zstandard.ZstdCompressor().compress(archive)
    assert set(initramfs_names(io.BytesIO(image))) >= {"big", "usr/lib/dracut/hooks/pre-pivot"}
    assert initramfs_contains(io.BytesIO(image), "etc-overlay-mount.sh")


def test_unknown_compression_and_damage_are_initramfs_errors() -> None:
    with pytest.raises(InitramfsError, match="Unknown initramfs compression"):
        list(initramfs_names(io.BytesIO(b"\x02\x21\x4c\x18" + b"lz4 legacy")))
    broken = bytearray(gzip.compress(newc(MAIN)))
    broken[40] ^= 0xFF
    with pytest.raises(InitramfsError):
        list(initramfs_names(io.BytesIO(bytes(broken))))
    with pytest.raises(InitramfsError, match="middle"):
        list(initramfs_names(io.BytesIO(newc(MAIN)[:200])))

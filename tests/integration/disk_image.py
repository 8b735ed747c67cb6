"""Read back an installed disk-image file with real tools: GPT, filesystems, the ESP (mtools) and trees."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path


def sh(*argv: str, **kw) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, **kw).stdout


def gpt(image: Path) -> dict:
    return json.loads(sh("sfdisk", "--json", str(image)))["partitiontable"]


@contextlib.contextmanager
def partition_loop(image: Path, number: int, *, writable: bool = False) -> Iterator[str]:
    table = gpt(image)
    part = table["partitions"][number - 1]
    sector = table.get("sectorsize", 512)
    dev = sh("losetup", "--find", "--show", *([] if writable else ["--read-only"]), "--offset",
             str(part["start"] * sector), "--sizelimit", str(part["size"] * sector), str(image)).strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


@contextlib.contextmanager
def mounted_partition(image: Path, number: int, where: Path, *, writable: bool = False) -> Iterator[Path]:
    """A partition of the image mounted (read-only unless ``writable``, for tests that play the system)."""
    with partition_loop(image, number, writable=writable) as dev:
        where.mkdir(parents=True, exist_ok=True)
        sh("mount", "-o", "rw" if writable else "ro", dev, str(where))
        try:
            yield where
        finally:
            subprocess.run(["umount", str(where)], check=True)
            where.rmdir()


def blkid(dev: str) -> dict[str, str]:
    out = sh("blkid", "-p", "-o", "export", dev)
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def esp_offset(image: Path) -> int:
    table = gpt(image)
    return table["partitions"][0]["start"] * table.get("sectorsize", 512)


def esp_files(image: Path) -> list[str]:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    out = sh("mdir", "-/", "-b", "-i", f"{image}@@{esp_offset(image)}", "::/", env=env)
    return sorted(line.strip().removeprefix("::/") for line in out.splitlines()
                  if line.strip() and not line.strip().endswith("/"))


def esp_read(image: Path, path: str) -> bytes:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    return subprocess.run(["mtype", "-i", f"{image}@@{esp_offset(image)}", f"::/{path}"], env=env,
                          capture_output=True, check=True).stdout


def digest_of(path: Path, start: int = 0, length: int | None = None) -> str:
    """sha256 of a (sparse) disk image's bytes, or of ``length`` bytes from ``start`` (a partition), fast: the
    size plus every non-zero 64 KiB block with its offset.

    Only the data extents are read (holes are zeros); all-zero blocks are skipped too, because whether the
    kernel reports an unwritten extent as data depends on its page cache, not on the bytes."""
    block = 1 << 16
    zero = bytes(block)
    h = hashlib.sha256()
    with path.open("rb") as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size if length is None else start + length
        offset = start
        h.update(str(size - start).encode())
        while offset < size:
            try:
                data = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            end = min(os.lseek(fd, data, os.SEEK_HOLE), size)
            pos = max(data - (data - start) % block, start)
            f.seek(pos)
            while pos < end:
                chunk = f.read(min(block, size - pos))
                if not chunk:
                    break
                if chunk != zero[: len(chunk)]:
                    h.update(f"@{pos - start}".encode())
                    h.update(chunk)
                pos += len(chunk)
            offset = max(end, pos)
    return h.hexdigest()


def partition_digest(image: Path, number: int) -> str:
    """:func:`digest_of` one partition of a disk-image file."""
    table = gpt(image)
    part = table["partitions"][number - 1]
    sector = table.get("sectorsize", 512)
    return digest_of(image, part["start"] * sector, part["size"] * sector)

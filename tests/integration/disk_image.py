"""Read back an installed disk-image file with real tools: GPT, filesystems, the ESP (mtools) and trees."""

from __future__ import annotations

import contextlib
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
def partition_loop(image: Path, number: int) -> Iterator[str]:
    table = gpt(image)
    part = table["partitions"][number - 1]
    sector = table.get("sectorsize", 512)
    dev = sh("losetup", "--find", "--show", "--read-only", "--offset", str(part["start"] * sector),
             "--sizelimit", str(part["size"] * sector), str(image)).strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


@contextlib.contextmanager
def mounted_partition(image: Path, number: int, where: Path) -> Iterator[Path]:
    with partition_loop(image, number) as dev:
        where.mkdir(parents=True, exist_ok=True)
        sh("mount", "-o", "ro", dev, str(where))
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

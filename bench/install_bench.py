"""Benchmark (run on purpose, not a test): wall time of each install step for the Debian test image, and
extraction throughput beside GNU tar on the same layers, same machine, same run.

    sudo .venv/bin/python bench/install_bench.py [--runs 3]

Prints a table. Throughput is uncompressed bytes / wall seconds, each tool extracting the same layer blobs
(decompressing them too) into a fresh ext4 filesystem on a loop device.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nbc_tui.backend.image.extract import extract_image  # noqa: E402
from nbc_tui.backend.image.opener import open_image  # noqa: E402
from nbc_tui.backend.runner import RunContext  # noqa: E402
from tests.vm.image_builder import build_debian_image  # noqa: E402


def sh(*argv: str, **kw) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw).stdout


class FreshFs:
    """A fresh ext4 filesystem on a loop device, mounted for one extraction."""

    def __init__(self, work: Path, size_gib: int = 8) -> None:
        self.work = work
        self.size = size_gib

    def __enter__(self) -> Path:
        self.backing = Path(tempfile.mkstemp(dir=self.work, suffix=".ext4")[1])
        os.truncate(self.backing, self.size << 30)
        sh("mkfs.ext4", "-q", "-F", str(self.backing))
        self.dev = sh("losetup", "--find", "--show", str(self.backing)).strip()
        self.mnt = Path(tempfile.mkdtemp(dir=self.work))
        sh("mount", self.dev, str(self.mnt))
        return self.mnt

    def __exit__(self, *exc: object) -> None:
        sh("umount", str(self.mnt))
        self.mnt.rmdir()
        sh("losetup", "-d", self.dev)
        self.backing.unlink()


def tar_flag(media_type: str) -> str:
    return "--zstd" if "zstd" in media_type else ("--gzip" if "gzip" in media_type else "")


def measure_extraction(ref: str, layout: Path, work: Path, runs: int) -> None:
    source = open_image(ref)
    blobs = [layout / "blobs" / d.digest.replace(":", "/") for d in source.layers]
    results: dict[str, list[float]] = {"nbc-tui extract_image": [], "GNU tar -x": []}
    out_bytes = 0
    for _ in range(runs):
        with FreshFs(work) as root:
            t = time.monotonic()
            stats = extract_image(open_image(ref), root, ctx=RunContext())
            results["nbc-tui extract_image"].append(time.monotonic() - t)
            out_bytes = stats.bytes_out
        with FreshFs(work) as root:
            t = time.monotonic()
            for blob, desc in zip(blobs, source.layers, strict=True):
                flag = tar_flag(desc.media_type)
                sh("tar", "-x", *([flag] if flag else []), "--xattrs", "--xattrs-include=*",
                   "--numeric-owner", "-p", "-f", str(blob), "-C", str(root))
            results["GNU tar -x"].append(time.monotonic() - t)
    print(f"\nExtraction of {ref} ({out_bytes / 1e6:.0f} MB uncompressed, {len(blobs)} layer(s)), "
          f"median of {runs} run(s) into fresh ext4:")
    medians = {k: statistics.median(v) for k, v in results.items()}
    for name, secs in medians.items():
        print(f"  {name:24s} {secs:6.2f} s  {out_bytes / 1e6 / secs:7.1f} MB/s")
    print(f"  ratio nbc-tui / tar: {medians['GNU tar -x'] / medians['nbc-tui extract_image']:.2f}x the speed")


def measure_install(ref: str, work: Path) -> None:
    image = work / "bench-disk.img"
    r = subprocess.run([str(REPO / ".venv/bin/nbc-tui"), "install", "--image", ref, "--via-loopback",
                        str(image), "--image-size", "8", "--esp-size", "512M", "--root-size", "3G",
                        "--var-min-size", "1G",
                        "--filesystem", "btrfs", "--karg", "console=ttyS0", "--yes", "--json"],
                       capture_output=True, text=True, check=False,
                       env={**os.environ, "NBC_TUI_LOG_FILE": str(work / "log")})
    if r.returncode:
        sys.exit(f"install failed: {r.stderr}")
    complete = json.loads(r.stdout.splitlines()[-1])
    steps = complete["details"]["step_seconds"]
    print("\nInstall of the Debian test image into an image file (btrfs, GRUB/systemd-boot auto):")
    for name, secs in steps.items():
        print(f"  {name:12s} {secs:7.2f} s")
    print(f"  {'total':12s} {sum(steps.values()):7.2f} s")
    image.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    layout = build_debian_image()
    ref = f"oci:{layout}:latest"
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="nbc-bench-") as d:
        work = Path(d)
        measure_install(ref, work)
        measure_extraction(ref, layout, work, args.runs)


if __name__ == "__main__":
    main()

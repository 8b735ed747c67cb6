"""Benchmark (run on purpose, not a test): pull a >= 1 GB image from a local docker-registry into an OCI
layout with nbc-tui (`nbc-tui download`, the staged cache) and with `skopeo copy`, in the same run, and print
wall time and peak memory of each, and their ratios.

    sudo .venv/bin/python bench/registry_bench.py [--size-mb 1100] [--runs 3]

The image has 4 zstd layers of incompressible data (so the pull moves the full size over the socket).
Both tools write to the same disk-backed directory under /var/tmp; each run starts from an empty target.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bytecode import compile_nbc_tui  # noqa: E402
from tests.integration.registry_fixtures import RegistryServer, free_port  # noqa: E402
from tests.support.oci import ImageSpec, Layer, TarBuilder, write_layout  # noqa: E402
from tests.support.synthetic import base_layer  # noqa: E402


def make_big_layout(dest: Path, size_mb: int) -> str:
    layers = [Layer(base_layer(), "gzip")]
    per_layer = size_mb // 4
    for i in range(4):
        t = TarBuilder().dir("usr").dir("usr/share").dir(f"usr/share/blob{i}")
        for j in range(per_layer // 16):  # 16 MB files of random bytes
            t.file(f"usr/share/blob{i}/part{j}.bin", os.urandom(16 << 20))
        layers.append(Layer(t.bytes(), "zstd"))
    write_layout(dest, [ImageSpec(layers=layers, tag="big")])
    return f"oci:{dest}:big"


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one command, measured by GNU time (a small parent, so the peak is
    the command's own and not inherited from this process)."""
    started = time.monotonic()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, check=False)
    wall = time.monotonic() - started
    if r.returncode != 0:
        sys.exit(f"{argv[0]} failed: {r.stderr}")
    return wall, int(r.stderr.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--build-only", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    compile_nbc_tui()
    if args.build_only:
        make_big_layout(args.build_only, args.size_mb)
        return
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="nbc-regbench-") as d:
        work = Path(d)
        print(f"Building a {args.size_mb} MB image...", flush=True)
        # In a child, so that this process stays small: a forked child starts with its parent's peak RSS.
        subprocess.run([sys.executable, __file__, "--build-only", str(work / "layout"), "--size-mb",
                        str(args.size_mb)], check=True)
        ref = f"oci:{work / 'layout'}:big"
        server = RegistryServer(work, work / "storage", free_port())
        server.start()
        try:
            remote = server.push(ref, "bench/big:1")
            size = sum(p.stat().st_size for p in (work / "layout/blobs/sha256").iterdir())
            env = {**os.environ, "NBC_TUI_CACHE_ROOT": str(work / "cache"), "NBC_TUI_LOCK_DIR": str(work / "locks"),
                   "NBC_TUI_LOG_FILE": str(work / "nbc.log")}
            results: dict[str, list[tuple[float, int]]] = {"nbc-tui download": [], "skopeo copy": []}
            for _ in range(args.runs):
                shutil.rmtree(work / "cache", ignore_errors=True)
                results["nbc-tui download"].append(timed(
                    [str(REPO / ".venv/bin/nbc-tui"), "download", "--image", remote, "--for-install", "--json"], env))
                shutil.rmtree(work / "skopeo", ignore_errors=True)
                results["skopeo copy"].append(timed(
                    ["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{remote}",
                     f"oci:{work / 'skopeo'}:big"], env))
        finally:
            server.stop()
    print(f"\nPulling {remote} ({size / 1e6:.0f} MB of blobs) from a local docker-registry into an OCI layout,"
          f" median of {args.runs}:")
    med = {k: (statistics.median(w for w, _ in v), max(m for _, m in v)) for k, v in results.items()}
    for name, (wall, rss) in med.items():
        print(f"  {name:18s} {wall:6.2f} s  {size / 1e6 / wall:7.1f} MB/s  peak RSS {rss / 1024:6.1f} MiB")
    (nw, nm), (sw, sm) = med["nbc-tui download"], med["skopeo copy"]
    print(f"  ratio nbc-tui / skopeo: wall {nw / sw:.2f}x, peak memory {nm / sm:.2f}x")


if __name__ == "__main__":
    main()

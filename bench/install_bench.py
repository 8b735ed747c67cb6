"""Benchmark (run on purpose, not a test): how fast an install is beside its peers, same machine, same run.

    sudo .venv/bin/python bench/install_bench.py [--runs 3] [--files 200000] [--big-gb 4]
                                                 [--skip-scale | --scale-only]

The Debian test image (tests/vm/image_builder.py) is pushed to a local docker-registry on 127.0.0.1. Each
figure is the median of ``--runs`` runs, every extraction into a fresh ext4 filesystem on a loop device:

1. bytes the registry serves for one ``nbc-tui install`` (its access log), against the image's blob bytes;
2. check + extraction from the registry (the install's scan, spool and extraction, in process) against
   ``skopeo copy`` + ``umoci raw unpack``, and our extraction of the same layers against GNU ``tar -x``: the
   gzip layers the registry serves (``tar -xz``, the issue's own peer) and the zstd layers of the local build;
3. the whole ``nbc-tui install`` from the registry (disk-image file, ext4) against that peer pipeline;
4. the initramfs step when only the etc-overlay hook is missing (``latest``: the hook is appended) and when a
   rebuild is needed (``needs-rebuild``: dracut);
5. scale: an image of ``--files`` small files and one of ``--big-gb`` GB, each as zstd and as gzip layers,
   our extraction against ``tar -x``, with peak RSS (GNU time's maximum resident set size, extraction child
   included);
6. ``nbc-tui download`` against ``skopeo copy`` from the same registry.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from isal import igzip_threaded  # noqa: E402

from bench.bytecode import compile_nbc_tui  # noqa: E402
from nbc_tui.backend.image.extract import extract_image  # noqa: E402
from nbc_tui.backend.image.opener import open_image  # noqa: E402
from nbc_tui.backend.image.scan import scan_image  # noqa: E402
from nbc_tui.backend.image.spool import SpooledSource, make_spool  # noqa: E402
from nbc_tui.backend.runner import RunContext  # noqa: E402
from tests.integration.registry_fixtures import RegistryServer, free_port  # noqa: E402
from tests.support.oci import ImageSpec, Layer, write_layout  # noqa: E402
from tests.vm.image_builder import build_debian_image  # noqa: E402
from tests.vm.image_variants import image_variants  # noqa: E402

NBC_TUI = str(REPO / ".venv/bin/nbc-tui")
INSTALL_SIZES = ["--image-size", "8", "--esp-size", "512M", "--root-size", "3G", "--var-min-size", "1G"]
FIGURES: list[tuple[str, str, str]] = []
"""(what, figure, goal) rows of the summary table."""


def sh(*argv: str) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return r.stdout


@contextmanager
def fresh_ext4(work: Path, size_gib: int = 8) -> Iterator[Path]:
    """A fresh ext4 filesystem on a loop device, mounted for one extraction."""
    fd, name = tempfile.mkstemp(dir=work, suffix=".ext4")
    os.close(fd)  # an fd left open kept each deleted filesystem's blocks until the bench ended (ENOSPC at 4 GB)
    backing = Path(name)
    os.truncate(backing, size_gib << 30)
    sh("mkfs.ext4", "-q", "-F", str(backing))
    dev = sh("losetup", "--find", "--show", str(backing)).strip()
    mnt = Path(tempfile.mkdtemp(dir=work))
    sh("mount", dev, str(mnt))
    os.sync()  # what earlier steps left to write back is not charged to this one
    try:
        yield mnt
    finally:
        sh("umount", str(mnt))
        mnt.rmdir()
        sh("losetup", "-d", dev)
        backing.unlink()


def median_of(runs: int, once: Callable[[], float]) -> float:
    return statistics.median(once() for _ in range(runs))


@dataclass(frozen=True)
class Timed:
    """One timed command: wall seconds, peak RSS (KiB) and CPU seconds (user + system)."""

    wall: float
    peak_rss: int
    cpu: float


def timed(argv: list[str], env: dict[str, str] | None = None, *, reported: bool = False) -> Timed:
    """Wall seconds, peak RSS (KiB) and CPU seconds of ``argv``, GNU time's (the command and its waited-for
    children: the largest RSS, the sum of CPU). ``reported``: the wall and CPU seconds are the last line the
    command prints instead ("wall cpu"), so that Python's start is not counted."""
    started = time.monotonic()
    r = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", *argv], env=env, capture_output=True, text=True,
                       check=False)
    wall = time.monotonic() - started
    if r.returncode != 0:
        sys.exit(f"{argv[0]} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    rss, user, system = r.stderr.strip().splitlines()[-1].split()
    cpu = float(user) + float(system)
    if reported:
        wall, cpu = (float(x) for x in r.stdout.strip().splitlines()[-1].split())
    return Timed(wall, int(rss), cpu)


def pushed_bytes(remote: str) -> int:
    """Config + layer bytes of ``remote`` (what a registry serves for one pull)."""
    manifest = json.loads(sh("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{remote}"))
    return manifest["config"]["size"] + sum(d["size"] for d in manifest["layers"])


def layer_blobs(layout: Path, tag: str = "latest") -> list[tuple[Path, str]]:
    source = open_image(f"oci:{layout}:{tag}")
    return [(layout / "blobs" / d.digest.replace(":", "/"), d.media_type) for d in source.layers]


def tar_x(blobs: list[tuple[Path, str]], root: Path) -> list[str]:
    """One shell command: GNU tar extracting each blob in order (decompressing it)."""
    parts = []
    for blob, media_type in blobs:
        flag = "--zstd" if "zstd" in media_type else ("--gzip" if "gzip" in media_type else "")
        parts.append(f"tar -x {flag} --xattrs --xattrs-include='*' --numeric-owner -p -f {blob} -C {root}")
    return ["sh", "-c", " && ".join(parts)]


def our_extract(ref: str, root: Path) -> list[str]:
    """A child Python running the engine's extraction of ``ref`` into ``root`` (for its peak RSS); it prints
    the wall and CPU seconds extract_image took (its extraction child's included), which is what is compared
    (Python's start and imports are not)."""
    code = ("import os, sys, time; from pathlib import Path; from nbc_tui.backend.image.opener import open_image; "
            "from nbc_tui.backend.image.extract import extract_image; from nbc_tui.backend.runner import RunContext; "
            "cpu = lambda t: t.user + t.system + t.children_user + t.children_system; "
            "t, c = time.monotonic(), cpu(os.times()); "
            "extract_image(open_image(sys.argv[1]), Path(sys.argv[2]), ctx=RunContext()); "
            "print(time.monotonic() - t, cpu(os.times()) - c)")
    return [sys.executable, "-c", code, ref, str(root)]


def install(ref: str, work: Path, env: dict[str, str], *, extra: Sequence[str] = ()) -> tuple[float, dict[str, float]]:
    """``nbc-tui install`` of ``ref`` into a disk-image file (ext4): its wall time and step seconds."""
    disk = work / "disk.img"
    started = time.monotonic()
    r = subprocess.run([NBC_TUI, "install", "--image", ref, "--via-loopback", str(disk), *INSTALL_SIZES,
                        "--filesystem", "ext4", "--yes", "--json", *extra], capture_output=True, text=True, env=env,
                       check=False)
    wall = time.monotonic() - started
    if r.returncode:
        sys.exit(f"install failed: {r.stderr[-3000:]}")
    disk.unlink()
    return wall, json.loads(r.stdout.splitlines()[-1])["details"]["step_seconds"]


# -- the figures ------------------------------------------------------------------------------------------

def install_from_registry(remote: str, work: Path, env: dict[str, str], server: RegistryServer,
                          runs: int, image_bytes: int) -> float:
    """Figure 1 and the install's wall; also the hook-only initramfs step (figure 4)."""
    walls, served, initramfs = [], [], []
    for _ in range(runs):
        before = sum(server.served_blob_bytes().values())
        wall, steps = install(remote, work, env)
        walls.append(wall)
        served.append(sum(server.served_blob_bytes().values()) - before)
        initramfs.append(steps["initramfs"])
    ratio = statistics.median(served) / image_bytes
    FIGURES.append(("bytes served by the registry per install", f"{statistics.median(served) / 1e6:.1f} MB = "
                    f"{ratio:.2f}x the image's {image_bytes / 1e6:.1f} MB", "1.0x"))
    FIGURES.append(("initramfs step, only the hook missing (appended)", f"{statistics.median(initramfs):.2f} s",
                    "<= 3 s"))
    return statistics.median(walls)


def rebuild_initramfs_step(ref: str, work: Path, env: dict[str, str], runs: int) -> None:
    """Figure 4, the other half: an image whose initramfs dracut must rebuild."""
    seconds = [install(ref, work, env)[1]["initramfs"] for _ in range(runs)]
    FIGURES.append(("initramfs step, rebuild needed (dracut)", f"{statistics.median(seconds):.2f} s", "(cheaper)"))


def peer_pipeline(remote: str, work: Path, runs: int) -> float:
    """skopeo copy + umoci raw unpack into a fresh ext4."""
    def once() -> float:
        layout = work / "skopeo"
        shutil.rmtree(layout, ignore_errors=True)
        with fresh_ext4(work) as root:
            started = time.monotonic()
            sh("skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{remote}", f"oci:{layout}:bench")
            sh("umoci", "raw", "unpack", "--image", f"{layout}:bench", str(root / "rootfs"))
            return time.monotonic() - started
    return median_of(runs, once)


def check_and_extract(remote: str, work: Path, runs: int) -> float:
    """The install's own image work from the registry: scan (every blob verified, kept in a spool), then
    extraction from the spool, in this process."""
    def once() -> float:
        with fresh_ext4(work) as root:
            started = time.monotonic()
            source = SpooledSource(open_image(remote), make_spool(work))
            try:
                scan_image(source)
                extract_image(source, root, ctx=RunContext())
            finally:
                source.close()
            return time.monotonic() - started
    return median_of(runs, once)


@dataclass(frozen=True)
class Extraction:
    """Medians of one extraction_vs_tar case (ours, then tar's: wall and CPU seconds) and our peak RSS (KiB)."""

    ours: float
    tar: float
    ours_cpu: float
    tar_cpu: float
    peak_rss: int


def extraction_vs_tar(ref: str, blobs: list[tuple[Path, str]], work: Path, runs: int, what: str,
                      goal: str = ">= 1.0x") -> Extraction:
    """Our extraction of local layers against GNU tar, wall and peak RSS (the blobs read once before, so
    both find them in the page cache)."""
    for blob, _ in blobs:
        with blob.open("rb") as f:
            while f.read(1 << 20):
                pass
    ours: list[Timed] = []
    theirs: list[Timed] = []
    for run in range(runs):
        order = [(ours, lambda root: timed(our_extract(ref, root), reported=True)),
                 (theirs, lambda root: timed(tar_x(blobs, root)))]
        for results, once in order if run % 2 == 0 else reversed(order):  # who goes first alternates
            with fresh_ext4(work, 12) as root:
                results.append(once(root))
    print(f"{what}: nbc-tui {' '.join(f'{t.wall:.2f}' for t in ours)} s, "
          f"tar {' '.join(f'{t.wall:.2f}' for t in theirs)} s", flush=True)
    o_wall, t_wall = statistics.median(t.wall for t in ours), statistics.median(t.wall for t in theirs)
    o_rss, t_rss = max(t.peak_rss for t in ours), max(t.peak_rss for t in theirs)
    FIGURES.append((f"extraction vs GNU tar -x: {what}",
                    f"nbc-tui {o_wall:.2f} s / tar {t_wall:.2f} s = {t_wall / o_wall:.2f}x tar's speed; "
                    f"peak RSS {o_rss / 1024:.0f} MiB / {t_rss / 1024:.0f} MiB", goal))
    return Extraction(o_wall, t_wall, statistics.median(t.cpu for t in ours),
                      statistics.median(t.cpu for t in theirs), o_rss)


def download_vs_skopeo(remote: str, work: Path, env: dict[str, str], runs: int) -> None:
    ours, theirs = [], []
    for _ in range(runs):
        shutil.rmtree(work / "cache", ignore_errors=True)
        ours.append(timed([NBC_TUI, "download", "--image", remote, "--for-install", "--json"], env).wall)
        shutil.rmtree(work / "skopeo-dl", ignore_errors=True)
        theirs.append(timed(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{remote}",
                             f"oci:{work / 'skopeo-dl'}:bench"]).wall)
    o, t = statistics.median(ours), statistics.median(theirs)
    FIGURES.append(("nbc-tui download vs skopeo copy", f"{o:.2f} s / {t:.2f} s = {o / t:.2f}x", "<= 1.0x"))


# -- synthetic images for scale ---------------------------------------------------------------------------

COMPRESSIONS = ("zstd", "gzip")


def images_from_tar(tar: Path, layout: Path) -> dict[str, Path]:
    """One-layer images of ``tar`` at ``layout``-zstd (zstd -3 on all cores) and ``layout``-gzip (isal, two
    threads), by compression; ``tar`` is removed."""
    digest = hashlib.sha256()
    with tar.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    layouts = {}
    for compression in COMPRESSIONS:
        blob = tar.with_suffix(f".{compression}")
        if compression == "zstd":
            sh("zstd", "-q", "-3", "-T0", "-f", str(tar), "-o", str(blob))
        else:
            with tar.open("rb") as src, igzip_threaded.open(blob, "wb", compresslevel=1, threads=2) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        layouts[compression] = layout.with_name(f"{layout.name}-{compression}")
        write_layout(layouts[compression], [ImageSpec(layers=[Layer(tar=blob, compression=compression,
                                                                    diff_id=f"sha256:{digest.hexdigest()}")])])
        blob.unlink()
    tar.unlink()
    return layouts


def many_files_tar(tar: Path, count: int) -> None:
    """``count`` small files (100 B to 4 KiB) in 1000-file directories, as a real OS image has."""
    with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as out:
        _dirs(out, "usr", "usr/share")
        for i in range(count):
            if i % 1000 == 0:
                info = tarfile.TarInfo(f"usr/share/d{i // 1000:04d}")
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                out.addfile(info)
            data = hashlib.sha256(str(i).encode()).digest() * (3 + i % 125)
            info = tarfile.TarInfo(f"usr/share/d{i // 1000:04d}/f{i:06d}")
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            out.addfile(info, _Bytes(data))


def big_files_tar(tar: Path, gigabytes: float) -> None:
    """``gigabytes`` GB in 64 MiB files of half random, half repeated bytes (compresses about 2:1)."""
    chunk = 64 << 20
    with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as out:
        _dirs(out, "usr", "usr/lib", "usr/lib/big")
        for i in range(int(gigabytes * (1 << 30)) // chunk):
            half = os.urandom(chunk // 2)
            data = half + half[: 1 << 20] * (chunk // 2 // (1 << 20))
            info = tarfile.TarInfo(f"usr/lib/big/part{i:04d}.bin")
            info.size, info.mode = len(data), 0o644
            out.addfile(info, _Bytes(data))


def _dirs(out: tarfile.TarFile, *names: str) -> None:
    for name in names:
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        out.addfile(info)


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        out, self.pos = self.data[self.pos:end], min(end, len(self.data))
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--files", type=int, default=200_000)
    ap.add_argument("--big-gb", type=int, default=4)
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--skip-scale", action="store_true", help="only the Debian test image's figures")
    which.add_argument("--scale-only", action="store_true", help="only the small-files and big-image figures")
    args = ap.parse_args()
    compile_nbc_tui()
    if not args.scale_only:
        debian_image_figures(args.runs)
    if not args.skip_scale:
        scale_figures(args.runs, args.files, args.big_gb)
    print(f"\nMedians of {args.runs} runs (seconds, same machine, same run):")
    width = max(len(w) for w, _, _ in FIGURES)
    for what, figure, goal in FIGURES:
        print(f"  {what:{width}s}  {figure}   [goal {goal}]")


def debian_image_figures(runs: int) -> None:
    layout = build_debian_image()
    variants = image_variants(layout)
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="nbc-bench-") as d:
        work = Path(d)
        server = RegistryServer(work, work / "storage", free_port())
        server.start()
        try:
            # gzip layers, as most registries serve them (and the only kind umoci 0.4 unpacks).
            remote = f"{server.host}/bench/debian:12"
            sh("skopeo", "copy", "--quiet", "--dest-compress-format=gzip", "--dest-tls-verify=false",
               f"oci:{layout}:latest", f"docker://{remote}")
            image_bytes = pushed_bytes(remote)
            env = {**os.environ, "NBC_TUI_CACHE_ROOT": str(work / "cache"), "NBC_TUI_LOCK_DIR": str(work / "locks"),
                   "NBC_TUI_LOG_FILE": str(work / "nbc.log")}
            print(f"Debian test image: {image_bytes / 1e6:.1f} MB of gzip blobs, pushed as {remote}", flush=True)
            install_wall = install_from_registry(remote, work, env, server, runs, image_bytes)
            peer = peer_pipeline(remote, work, runs)
            ours = check_and_extract(remote, work, runs)
            FIGURES.append(("check + extraction from the registry vs skopeo copy + umoci raw unpack",
                            f"{ours:.2f} s / {peer:.2f} s = {ours / peer:.2f}x", "<= 0.5x"))
            FIGURES.append(("whole nbc-tui install from the registry vs that peer pipeline",
                            f"{install_wall:.2f} s / {peer:.2f} s = {install_wall / peer:.2f}x", "<= 2x"))
            # The same image's layers as the registry serves them (gzip: the peer was tar -xz)
            # and as built locally (zstd), extracted from local OCI layouts by both.
            served = work / "served"
            sh("skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{remote}", f"oci:{served}:latest")
            extraction_vs_tar(f"oci:{served}:latest", layer_blobs(served), work, runs,
                              "the Debian test image, gzip layers (as served)")
            extraction_vs_tar(f"oci:{layout}:latest", layer_blobs(layout), work, runs,
                              "the Debian test image, zstd layers (local build)")
            rebuild_initramfs_step(variants.rebuild_ref, work, env, runs)
            download_vs_skopeo(remote, work, env, runs)
        finally:
            server.stop()


def scale_figures(runs: int, files: int, big_gb: int) -> None:
    """The small-files and big images, each at a quarter of its size and at its size: our extraction against
    tar's at each, then how the cost and the peak memory grew from one to the other (the issue asks for linear
    and flat). Each image has a work directory of its own (a 4 GB image, its two layouts and the filesystems
    extracted into take room)."""
    quarter_files, quarter_gb = max(files // 4, 1), max(big_gb / 4, 0.25)
    print(f"Building the scale images ({quarter_files} and {files} files; {quarter_gb:g} and {big_gb} GB)...",
          flush=True)
    cases = (("many", many_files_tar, (quarter_files, files), "{:,} small files"),
             ("big", big_files_tar, (quarter_gb, big_gb), "a {:g} GB image"))
    for name, make, sizes, label in cases:
        measured: dict[str, list[Extraction]] = {c: [] for c in COMPRESSIONS}
        for size in sizes:
            with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="nbc-bench-") as d:
                work = Path(d)
                make(work / f"{name}.tar", size)
                for compression, scale in images_from_tar(work / f"{name}.tar", work / name).items():
                    measured[compression].append(extraction_vs_tar(
                        f"oci:{scale}:latest", layer_blobs(scale), work, runs, f"{label.format(size)}, {compression}"))
                    shutil.rmtree(scale)
        for compression, (small, big) in measured.items():
            grew = sizes[1] / sizes[0]
            # CPU is the cost that grows with the work; wall also meets the page cache's write-back once the
            # data passes its threshold (a few GB here, which the quarter size may stay under).
            FIGURES.append((f"growth from {label.format(sizes[0])} to {label.format(sizes[1])}, {compression}",
                            f"{grew:g}x the size: CPU nbc-tui {_times(big.ours_cpu, small.ours_cpu)}, tar "
                            f"{_times(big.tar_cpu, small.tar_cpu)}; wall {_times(big.ours, small.ours)}, "
                            f"{_times(big.tar, small.tar)}; peak RSS {small.peak_rss / 1024:.0f} -> "
                            f"{big.peak_rss / 1024:.0f} MiB", f"CPU about {grew:g}x, RSS flat"))


def _times(big: float, small: float) -> str:
    """``big`` as a multiple of ``small`` ("n/a" when ``small`` is under GNU time's 10 ms, as tar's CPU for a
    few files)."""
    return f"{big / small:.2f}x" if small > 0 else "n/a"


if __name__ == "__main__":
    main()

"""Build (or reuse) a bootc-style Debian 12 OCI image for the VM test tier.

The image is a debootstrap of bookworm with a kernel, systemd, dracut, GRUB's x86_64-efi modules and the
systemd-boot EFI binary, laid out the bootc way (kernel and initramfs under ``/usr/lib/modules/<kver>/``,
``/boot`` empty), packed as one zstd layer in an OCI image layout. A unit in it prints an ``NBC-REPORT``
line on ttyS0 (see ``image/nbc-test-report``) that the VM tests read with :func:`read_report`.

The finished layout is cached under ``cache_root/debian-12-<key>/layout``, where ``key`` hashes this file
and everything under ``image/``: a rebuild happens only when they change. A build runs in a temp dir on the
same filesystem and is renamed into place at the end, so an interrupted build leaves no half entry (its
temp dir is removed by the next build). Builds are serialised by a flock on ``cache_root/.lock``; images
of other builder versions are removed once unused for a day. Downloaded .debs stay in
``cache_root/apt-archives``. Building needs root; reusing a cached image does not.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

import zstandard

from tests.support.oci import ImageSpec, Layer, write_layout

if TYPE_CHECKING:
    from tests.vm.qemu import Vm

log = logging.getLogger(__name__)

DEFAULT_CACHE_ROOT = Path("/var/cache/nbc-tui-tests")
MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
TEST_ROOT_PASSWORD = "nbc-test"
"""Root's password in the test image (serial console login; tests never need it)."""
HOSTNAME = "nbc-test"

IMAGE_DIR = Path(__file__).parent / "image"
ENTRY_PREFIX = "debian-12-"
ENTRY_MAX_IDLE = 24 * 3600
"""Seconds after which an image of another builder version is removed from the cache."""

# Kernel module trees no test VM needs (no GPU, sound, radio, network): they only slow every install.
PRUNED_MODULE_DIRS = (
    "drivers/gpu", "drivers/media", "drivers/net/wireless", "drivers/net/ethernet", "drivers/infiniband",
    "drivers/staging", "drivers/bluetooth", "drivers/iio", "drivers/isdn", "drivers/net/can",
    "drivers/comedi", "drivers/hwmon", "drivers/platform", "sound", "net/wireless", "net/mac80211",
    "net/bluetooth",
)
CHROOT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "DEBIAN_FRONTEND": "noninteractive",
    # Debian's kernel hooks skip building an initramfs into /boot: we build the bootc one ourselves.
    "INITRD": "No",
}


class ImageBuildError(RuntimeError):
    """A build step failed; the message ends with the tail of the build log."""


def source_files() -> list[Path]:
    """The files whose content decides the image (this builder and its config under ``image/``)."""
    return [Path(__file__), *sorted(p for p in IMAGE_DIR.rglob("*") if p.is_file())]


def source_key(files: Sequence[Path]) -> str:
    """A short hash of the files' names and contents: the cache key."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def build_debian_image(cache_root: Path = DEFAULT_CACHE_ROOT) -> Path:
    """Return the OCI layout dir (reference ``oci:<dir>:latest``) of the test image, building it if needed."""
    cache_root = cache_root.resolve()
    entry = cache_root / f"{ENTRY_PREFIX}{source_key(source_files())}"
    layout = entry / "layout"
    if _finished(entry):
        return layout
    if os.geteuid() != 0:
        raise ImageBuildError("building the Debian test image needs root (debootstrap, chroot, mount)")
    cache_root.mkdir(parents=True, exist_ok=True)
    with locked(cache_root / ".lock"):
        if _finished(entry):  # another process built it while we waited
            return layout
        _remove_stale_builds(cache_root)
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_root))
        try:
            started = time.monotonic()
            _build_into(work, cache_root)
            info_path = work / "entry" / "info.json"
            info = _read_json(info_path) | {"seconds": round(time.monotonic() - started, 1)}
            info_path.write_text(json.dumps(info, indent=2) + "\n")
            os.rename(work / "entry", entry)
            log.info("image ready in %.0f s: %s", info["seconds"], layout)
        finally:
            _remove_tree(work)
        _remove_unused_entries(cache_root, keep=entry)
    return layout


def image_reference(layout: Path) -> str:
    """The ``oci:`` reference nbc-tui takes for a layout written by :func:`build_debian_image`."""
    return f"oci:{layout}:latest"


def image_info(layout: Path) -> dict[str, object]:
    """What the build recorded beside the layout: ``kver``, ``seconds``, ``layer`` (blob path)."""
    return _read_json(layout.parent / "info.json")


# --- reading the report the image prints ----------------------------------------------------------------

REPORT_RE = re.compile(r"NBC-REPORT (root=.*?)\r?\n")


def parse_report(line: str) -> dict[str, str]:
    """Split ``root=ro etc=overlay ... cmdline=<rest>`` into a dict (cmdline keeps its spaces)."""
    head, sep, cmdline = line.partition(" cmdline=")
    fields = dict(token.split("=", 1) for token in head.split() if "=" in token)
    if sep:
        fields["cmdline"] = cmdline.strip()
    return fields


def read_report(vm: Vm, timeout: float) -> dict[str, str]:
    """Wait for the image's NBC-REPORT line on the VM's console and return its fields."""
    match = vm.wait_for(REPORT_RE, timeout)
    return parse_report(match.group(1))


# --- the build ------------------------------------------------------------------------------------------

def _build_into(work: Path, cache_root: Path) -> None:
    rootfs = work / "rootfs"
    entry = work / "entry"
    entry.mkdir()
    apt_cache = cache_root / "apt-archives"
    (apt_cache / "partial").mkdir(parents=True, exist_ok=True)
    build_log = cache_root / "last-build.log"
    with build_log.open("w") as out:
        log.info("debootstrap %s (minbase) into %s; log: %s", SUITE, rootfs, build_log)
        _run(["debootstrap", "--variant=minbase", "--arch=amd64", f"--cache-dir={apt_cache}",
              SUITE, str(rootfs), MIRROR], out)
        _prepare_dpkg(rootfs)
        with _chroot_mounts(rootfs, apt_cache):
            log.info("installing packages")
            _chroot(rootfs, ["apt-get", "update"], out)
            _chroot(rootfs, ["apt-get", "install", "-y", "--no-install-recommends", *_packages()], out)
            _configure(rootfs, out)
            kver = _bootc_kernel(rootfs, out)
        _clean(rootfs)
        log.info("packing the layer")
        layer = work / "layer.tar.zst"
        diff_id = _pack_layer(rootfs, layer)
        layout = entry / "layout"
        write_layout(layout, [ImageSpec(
            layers=[Layer(tar=layer, compression="zstd", diff_id=diff_id)],
            labels={"containers.bootc": "1",
                    "org.opencontainers.image.title": "nbc-tui test image (Debian 12)"},
        )])
        blob = layout / "blobs" / "sha256" / _sha256_file(layer)
        (entry / "info.json").write_text(json.dumps({"kver": kver, "layer": str(blob.relative_to(entry))}))


def _packages() -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in (IMAGE_DIR / "packages").read_text().splitlines())
    return [line for line in lines if line]


def _prepare_dpkg(root: Path) -> None:
    """Build-time only: no docs/man/locales, no fsync, no service starts (removed again by _clean)."""
    cfg = root / "etc/dpkg/dpkg.cfg.d/zz-nbc-test-build"
    cfg.write_text("force-unsafe-io\npath-exclude=/usr/share/doc/*\npath-exclude=/usr/share/man/*\n"
                   "path-exclude=/usr/share/locale/*\npath-exclude=/usr/share/info/*\n")
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)


def _configure(root: Path, out: IO[str]) -> None:
    log.info("configuring the system")
    (root / "etc/hostname").write_text(HOSTNAME + "\n")
    (root / "etc/hostname").chmod(0o644)  # debootstrap copies the host's file, mode and all
    (root / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n")
    _chroot(root, ["chpasswd"], out, stdin=f"root:{TEST_ROOT_PASSWORD}\n".encode())
    # The report unit lives in /usr like everything of a bootc image; enabled by a plain symlink.
    tool = root / "usr/lib/nbc-test/nbc-test-report"
    tool.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(IMAGE_DIR / "nbc-test-report", tool)
    tool.chmod(0o755)
    unit = "nbc-test-report.service"
    shutil.copyfile(IMAGE_DIR / unit, root / "usr/lib/systemd/system" / unit)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / unit).symlink_to(f"/usr/lib/systemd/system/{unit}")
    dracut_conf = root / "etc/dracut.conf.d/50-tpm2.conf"
    dracut_conf.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(IMAGE_DIR / "dracut-tpm2.conf", dracut_conf)


def _bootc_kernel(root: Path, out: IO[str]) -> str:
    """Move the kernel to /usr/lib/modules/<kver>/vmlinuz and build a generic initramfs.img beside it."""
    kvers = sorted(p.name for p in (root / "usr/lib/modules").iterdir() if p.is_dir())
    if len(kvers) != 1:
        raise ImageBuildError(f"expected one kernel in the image, found {kvers}")
    kver = kvers[0]
    moddir = root / "usr/lib/modules" / kver
    for rel in PRUNED_MODULE_DIRS:
        shutil.rmtree(moddir / "kernel" / rel, ignore_errors=True)
    _chroot(root, ["depmod", "-a", kver], out)
    shutil.copy2(root / "boot" / f"vmlinuz-{kver}", moddir / "vmlinuz")
    log.info("dracut --no-hostonly for %s", kver)
    # No etc-overlay module here on purpose: the installer must regenerate the initramfs with it.
    _chroot(root, ["dracut", "--force", "--no-hostonly", "--kver", kver,
                   f"/usr/lib/modules/{kver}/initramfs.img"], out)
    return kver


def _clean(root: Path) -> None:
    """Leave what a bootc image ships: empty /boot, /dev, /tmp; no machine id, host keys, apt lists."""
    for path in ("etc/dpkg/dpkg.cfg.d/zz-nbc-test-build", "usr/sbin/policy-rc.d", "var/lib/dbus/machine-id",
                 "vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"):
        p = root / path
        if p.is_symlink() or p.exists():
            p.unlink()
    for directory in ("boot", "dev", "tmp", "var/tmp", "run", "var/lib/apt/lists", "var/cache/apt",
                      "var/log", "usr/share/doc", "usr/share/man", "usr/share/locale",
                      "usr/share/info"):
        _empty_dir(root / directory)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "var/tmp").chmod(0o1777)
    (root / "etc/machine-id").write_text("")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()


def _pack_layer(root: Path, dest: Path) -> str:
    """Tar ``root`` (numeric owners, xattrs, sorted) into a zstd blob; returns the tar's diff_id."""
    names = sorted(p.name for p in root.iterdir())
    argv = ["tar", "--create", "--format=posix", "--xattrs", "--xattrs-include=*", "--numeric-owner",
            "--sort=name", "--pax-option=delete=atime,delete=ctime", "-C", str(root), "--", *names]
    digest = hashlib.sha256()
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as tar, dest.open("wb") as f, \
            zstandard.ZstdCompressor(level=3, threads=-1).stream_writer(f) as writer:
        assert tar.stdout is not None
        while chunk := tar.stdout.read(1 << 20):
            digest.update(chunk)
            writer.write(chunk)
    if tar.returncode != 0:
        raise ImageBuildError(f"tar of the rootfs failed with exit code {tar.returncode}")
    return f"sha256:{digest.hexdigest()}"


# --- processes, mounts, files ---------------------------------------------------------------------------

def _run(argv: list[str], out: IO[str], *, stdin: bytes | None = None, env: dict[str, str] | None = None,
         timeout: float = 1800) -> None:
    out.write(f"\n$ {' '.join(argv)}\n")
    out.flush()
    result = subprocess.run(argv, input=stdin, stdout=out, stderr=subprocess.STDOUT, env=env,
                            timeout=timeout, check=False)
    if result.returncode != 0:
        out.flush()
        tail = "\n".join(Path(out.name).read_text(errors="replace").splitlines()[-40:])
        raise ImageBuildError(f"{argv[0]} failed with exit code {result.returncode}:\n{tail}")


def _chroot(root: Path, argv: list[str], out: IO[str], *, stdin: bytes | None = None) -> None:
    _run(["chroot", str(root), *argv], out, stdin=stdin, env=CHROOT_ENV)


@contextlib.contextmanager
def _chroot_mounts(root: Path, apt_cache: Path) -> Iterator[None]:
    """/proc, /sys, /dev for apt and dracut in the chroot, and the shared .deb cache; always unmounted."""
    mounts = [
        (["mount", "-t", "proc", "proc"], root / "proc"),
        (["mount", "-t", "sysfs", "sysfs"], root / "sys"),
        (["mount", "--bind", "/dev"], root / "dev"),
        (["mount", "--bind", str(apt_cache)], root / "var/cache/apt/archives"),
    ]
    done: list[Path] = []
    try:
        for argv, target in mounts:
            target.mkdir(parents=True, exist_ok=True)
            subprocess.run([*argv, str(target)], check=True, capture_output=True)
            done.append(target)
        yield
    finally:
        for target in reversed(done):
            subprocess.run(["umount", "-l", str(target)], check=False, capture_output=True)


def _mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path`` (deepest first), from /proc/self/mountinfo."""
    found = []
    prefix = str(path).rstrip("/") + "/"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if point == str(path) or point.startswith(prefix):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _remove_tree(path: Path) -> None:
    """rm -rf that first detaches anything mounted inside (a killed build may leave /proc, /dev bound)."""
    if not path.exists():
        return
    for point in _mounts_under(path):
        subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)
    if _mounts_under(path):
        raise ImageBuildError(f"cannot remove {path}: something is still mounted below it")
    shutil.rmtree(path)


def _finished(entry: Path) -> bool:
    """An entry exists only once complete (renamed into place); using it marks it as recently used."""
    info = entry / "info.json"
    if not (entry / "layout" / "index.json").exists() or not info.exists():
        return False
    with contextlib.suppress(OSError):  # a read-only cache still works, it just is not pruned by age
        os.utime(info)
    return True


def _remove_unused_entries(cache_root: Path, keep: Path) -> None:
    """Drop images of other builder versions unused for a day (another checkout may still be using one)."""
    for old in cache_root.glob(f"{ENTRY_PREFIX}*"):
        info = old / "info.json"
        unused_for = time.time() - (info.stat().st_mtime if info.exists() else 0)
        if old != keep and old.is_dir() and unused_for > ENTRY_MAX_IDLE:
            log.info("removing an image unused for %.0f h: %s", unused_for / 3600, old)
            _remove_tree(old)


def _remove_stale_builds(cache_root: Path) -> None:
    """Temp dirs of builds that were killed: only ever called while holding the cache lock."""
    for stale in cache_root.glob(".build-*"):
        log.info("removing an interrupted build: %s", stale)
        _remove_tree(stale)


def _empty_dir(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing), waiting without a bound: the caches' lock, and
    the VM tier's host-install lock (host_lock.py)."""
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _read_json(path: Path) -> dict[str, object]:
    return json.loads(path.read_text()) if path.exists() else {}

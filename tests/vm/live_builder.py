"""A "live" VM for installing inside a real kernel (device-mapper, partition nodes, vfat), built from the
Debian 12 test image.

The live root is the test image's own tree plus what nbc-tui needs to run (Debian's python3, cryptsetup,
gdisk, fdisk, dosfstools, mtools), the site-packages of the venv running the tests (so no index is needed
inside the VM: the wheels are CPython 3.11 manylinux, as Debian 12's python3.11), the test image's OCI
layout under ``/srv/image`` and a unit that runs ``/payload/run.sh`` from a second disk labelled
``nbc-payload``, printing its output on the serial console, then powers off. The per-test part (the
nbc-tui source tree, a run script, secrets) lives on that small payload disk, made with ``mke2fs -d`` for
each test: the cached root never changes and is attached with ``snapshot=on``.

The layout under ``/srv/image`` has two tags. ``latest`` is the test image as built (its initramfs lacks
the etc-overlay module, so nbc-tui regenerates it with dracut: about ten minutes under TCG). ``preloaded``
is the same image plus one small layer: nbc-tui's 95etc-overlay module and an initramfs regenerated with it
on the host (``dracut --no-hostonly --add etc-overlay``, which also carries dracut's crypt support and,
through the image's dracut.conf.d, tpm2-tss). For that image the engine finds everything it needs in the
shipped initramfs and skips the regeneration, as it does for any image that ships such an initramfs.
``no-unlock`` is an image that cannot boot an encrypted disk (no systemd-cryptsetup, no 90crypt, an
initramfs without an unlocker): the engine refuses it once it sees the extracted tree, which proves that a
failed encrypted install closes its mappers and unmounts everything.

The root is booted directly (``-kernel``/``-initrd`` from the image, ``root=/dev/vda``): no bootloader.
The cache entry ``live-<key>/`` holds ``root.img`` (ext4), ``vmlinuz`` and ``initrd``; ``key`` hashes
this file, the base image entry and the venv's installed distributions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.support.oci import ImageSpec, Layer, TarBuilder, write_layout
from tests.support.synthetic import cpio_gz
from tests.vm import image_builder as ib

log = logging.getLogger(__name__)

LIVE_PREFIX = "live-"
LIVE_PACKAGES = ("python3", "cryptsetup-bin", "gdisk", "fdisk", "dosfstools", "mtools")
SITE_DIR = "opt/nbc-tui/site-packages"
IMAGE_DIR = "srv/image"
PRELOADED_TAG = "preloaded"
NO_UNLOCK_TAG = "no-unlock"
PAYLOAD_LABEL = "nbc-payload"
ROOT_IMAGE_SLACK = 768 << 20
"""Free space in the live root for logs and the overlay of a snapshot run."""
SKIPPED_DISTS = ("pip", "setuptools", "wheel", "_distutils_hack", "nbc_tui", "__editable__")

RUNNER_UNIT = """\
[Unit]
Description=Run the nbc-tui VM test payload
After=local-fs.target systemd-udev-settle.service
Wants=systemd-udev-settle.service
ConditionKernelCommandLine=nbc.live=1

[Service]
Type=oneshot
ExecStart=/usr/lib/nbc-test/nbc-live-run
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0

[Install]
WantedBy=multi-user.target
"""

RUNNER_SCRIPT = f"""\
#!/bin/sh
# Mounts the payload disk (label {PAYLOAD_LABEL}), runs its run.sh with nbc-tui importable, then powers off.
set -u
mkdir -p /payload
i=0
while [ ! -e /dev/disk/by-label/{PAYLOAD_LABEL} ] && [ "$i" -lt 60 ]; do sleep 1; i=$((i + 1)); done
if ! mount -o ro /dev/disk/by-label/{PAYLOAD_LABEL} /payload; then
    echo "NBC-LIVE-ERROR no payload disk"
    systemctl poweroff
    exit 1
fi
export PYTHONPATH=/payload/src:/{SITE_DIR}
export PATH=/payload/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
sh /payload/run.sh
echo "NBC-LIVE-DONE rc=$?"
sync
systemctl poweroff
"""

NBC_TUI_WRAPPER = """\
#!/bin/sh
exec python3 -c 'import sys; from nbc_tui.cli import main; sys.exit(main())' "$@"
"""


@dataclass(frozen=True)
class LiveSystem:
    """What a live VM boots: ``root`` (attach read-only or as a snapshot), its kernel and initrd."""

    root: Path
    kernel: Path
    initrd: Path
    image_ref: str
    """The test image as nbc-tui inside the VM sees it (``oci:/srv/image:latest``)."""
    preloaded_ref: str
    """The same image with the etc-overlay module in its shipped initramfs (``oci:/srv/image:preloaded``)."""
    no_unlock_ref: str
    """An image that cannot unlock LUKS at boot (``oci:/srv/image:no-unlock``)."""


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def _dists_key() -> str:
    names = sorted(p.name for p in site_packages().glob("*.dist-info"))
    return hashlib.sha256("\n".join([sys.version, *names]).encode()).hexdigest()[:16]


def live_key(base_layout: Path) -> str:
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(base_layout.parent.name.encode())
    h.update(_dists_key().encode())
    for f in sorted(_module_source().iterdir()):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def build_live_system(base_layout: Path, cache_root: Path = ib.DEFAULT_CACHE_ROOT) -> LiveSystem:
    """Return the cached live system for the test image at ``base_layout``, building it if needed."""
    cache_root = cache_root.resolve()
    entry = cache_root / f"{LIVE_PREFIX}{live_key(base_layout)}"
    if not (entry / "info.json").exists():
        with ib._locked(cache_root / ".lock"):
            if not (entry / "info.json").exists():
                _build(base_layout, entry, cache_root)
        with ib._locked(cache_root / ".lock"):
            _remove_other_entries(cache_root, keep=entry)
    else:
        os.utime(entry / "info.json")
    return LiveSystem(entry / "root.img", entry / "vmlinuz", entry / "initrd", f"oci:/{IMAGE_DIR}:latest",
                      f"oci:/{IMAGE_DIR}:{PRELOADED_TAG}", f"oci:/{IMAGE_DIR}:{NO_UNLOCK_TAG}")


def _build(base_layout: Path, entry: Path, cache_root: Path) -> None:
    started = time.monotonic()
    info = ib.image_info(base_layout)
    work = Path(tempfile.mkdtemp(prefix=".live-build-", dir=cache_root))
    try:
        rootfs = work / "rootfs"
        rootfs.mkdir()
        blob = base_layout.parent / str(info["layer"])
        log.info("unpacking the test image into the live root")
        _unpack(blob, rootfs)
        apt_cache = cache_root / "apt-archives"
        (apt_cache / "partial").mkdir(parents=True, exist_ok=True)
        ib._prepare_dpkg(rootfs)
        build_log = cache_root / "last-live-build.log"
        (rootfs / "etc/resolv.conf").unlink(missing_ok=True)
        shutil.copyfile("/etc/resolv.conf", rootfs / "etc/resolv.conf")
        kver = str(info["kver"])
        with build_log.open("w") as out, ib._chroot_mounts(rootfs, apt_cache):
            preload = _preloaded_layer(rootfs, kver, out)
            ib._chroot(rootfs, ["apt-get", "update"], out)
            ib._chroot(rootfs, ["apt-get", "install", "-y", "--no-install-recommends", *LIVE_PACKAGES], out)
        ib._clean(rootfs)
        _add_runner(rootfs)
        log.info("copying site-packages and the test image")
        shutil.copytree(site_packages(), rootfs / SITE_DIR, symlinks=True, ignore=_skip_tooling)
        _write_layouts(base_layout, preload, _no_unlock_layer(kver), rootfs / IMAGE_DIR)
        out_dir = work / "entry"
        out_dir.mkdir()
        moddir = rootfs / "usr/lib/modules" / kver
        shutil.copyfile(moddir / "vmlinuz", out_dir / "vmlinuz")
        shutil.copyfile(moddir / "initramfs.img", out_dir / "initrd")
        size = _tree_bytes(rootfs) + ROOT_IMAGE_SLACK
        root_img = out_dir / "root.img"
        with root_img.open("wb") as f:
            f.truncate(size)
        subprocess.run(["mke2fs", "-q", "-t", "ext4", "-L", "nbc-live", "-d", str(rootfs), str(root_img)],
                       check=True)
        (out_dir / "info.json").write_text(json.dumps(
            {"kver": kver, "seconds": round(time.monotonic() - started, 1), "base": base_layout.parent.name}))
        os.rename(out_dir, entry)
        log.info("live system ready in %.0f s: %s", time.monotonic() - started, entry)
    finally:
        ib._remove_tree(work)


def _module_source() -> Path:
    return Path(__file__).resolve().parents[2] / "nbc_tui" / "dracut" / "95etc-overlay"


def _preloaded_layer(rootfs: Path, kver: str, out: IO[str]) -> bytes:
    """A layer tar: nbc-tui's etc-overlay module and an initramfs regenerated with it (in the pristine image
    tree, before anything is added for the live system; both are removed from the live root again)."""
    module_dir = rootfs / "usr/lib/dracut/modules.d/95etc-overlay"
    module_dir.mkdir(mode=0o755)
    for f in _module_source().iterdir():
        shutil.copyfile(f, module_dir / f.name)
        (module_dir / f.name).chmod(0o755)
    output = "/var/tmp/initramfs-preloaded.img"
    log.info("dracut --add etc-overlay for the preloaded image")
    ib._chroot(rootfs, ["dracut", "--force", "--no-hostonly", "--add", "etc-overlay", "--kver", kver, output], out)
    tar = TarBuilder()
    for d in ("usr", "usr/lib", "usr/lib/modules", f"usr/lib/modules/{kver}", "usr/lib/dracut",
              "usr/lib/dracut/modules.d", "usr/lib/dracut/modules.d/95etc-overlay"):
        tar.dir(d)
    for f in sorted(module_dir.iterdir()):
        tar.file(f"usr/lib/dracut/modules.d/95etc-overlay/{f.name}", f.read_bytes(), mode=0o755)
    initramfs = rootfs / output.lstrip("/")
    tar.file(f"usr/lib/modules/{kver}/initramfs.img", initramfs.read_bytes(), mode=0o600)
    initramfs.unlink()
    shutil.rmtree(module_dir)
    return tar.bytes()


def _no_unlock_layer(kver: str) -> bytes:
    """Whiteouts for everything that unlocks LUKS, and an initramfs with the etc-overlay hook but no unlocker."""
    initramfs = cpio_gz({"init": b"#!/bin/sh\n", "usr/lib/dracut/hooks/pre-pivot/50-etc-overlay-mount.sh": b"#\n"})
    tar = TarBuilder()
    tar.whiteout("usr/lib/systemd/systemd-cryptsetup")
    tar.whiteout("usr/lib/systemd/system-generators/systemd-cryptsetup-generator")
    tar.whiteout("usr/lib/dracut/modules.d/90crypt")
    tar.file(f"usr/lib/modules/{kver}/initramfs.img", initramfs, mode=0o600)
    return tar.bytes()


def _write_layouts(base_layout: Path, preload: bytes, no_unlock: bytes, dest: Path) -> None:
    """The base image as ``latest``, base + ``preload`` as ``preloaded`` and base + ``no_unlock`` as
    ``no-unlock``, in one layout at ``dest``."""
    index = json.loads((base_layout / "index.json").read_text())
    manifest = json.loads(_blob(base_layout, index["manifests"][0]["digest"]))
    config = json.loads(_blob(base_layout, manifest["config"]["digest"]))
    base = [Layer(tar=base_layout / "blobs/sha256" / layer["digest"].split(":", 1)[1], compression="zstd",
                  diff_id=diff_id) for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"],
                                                             strict=True)]
    labels = config.get("config", {}).get("Labels") or {}
    write_layout(dest, [ImageSpec(layers=base, labels=labels),
                        ImageSpec(layers=[*base, Layer(tar=preload, compression="zstd")], tag=PRELOADED_TAG,
                                  labels=labels),
                        ImageSpec(layers=[*base, Layer(tar=no_unlock, compression="gzip")], tag=NO_UNLOCK_TAG,
                                  labels=labels)])


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs/sha256" / digest.split(":", 1)[1]).read_bytes()


def _unpack(blob: Path, rootfs: Path) -> None:
    with subprocess.Popen(["zstd", "-dc", str(blob)], stdout=subprocess.PIPE) as unzstd:
        subprocess.run(["tar", "-x", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", str(rootfs)],
                       stdin=unzstd.stdout, check=True)
    if unzstd.returncode != 0:
        raise ib.ImageBuildError(f"zstd -dc {blob} failed")


def _skip_tooling(directory: str, names: list[str]) -> set[str]:
    """Leave out pip and friends (top level only) and bytecode caches."""
    top = Path(directory) == site_packages()
    return {n for n in names if n == "__pycache__" or (top and n.startswith(SKIPPED_DISTS))}


def _add_runner(rootfs: Path) -> None:
    tool = rootfs / "usr/lib/nbc-test/nbc-live-run"
    tool.parent.mkdir(parents=True, exist_ok=True)
    tool.write_text(RUNNER_SCRIPT)
    tool.chmod(0o755)
    unit = rootfs / "usr/lib/systemd/system/nbc-live-run.service"
    unit.write_text(RUNNER_UNIT)
    wants = rootfs / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / unit.name).symlink_to(f"/usr/lib/systemd/system/{unit.name}")
    # The installed-system report unit would print its line in the live VM too: not wanted here. A getty
    # on ttyS0 would hang up the runner's output (vhangup) when it starts: the console is the runner's.
    (wants / "nbc-test-report.service").unlink(missing_ok=True)
    (rootfs / "etc/systemd/system/serial-getty@ttyS0.service").symlink_to("/dev/null")
    # The live VM is not an nbc system: / is the plain ext4 root, writable.
    (rootfs / "etc/fstab").write_text("/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
    (rootfs / "etc/machine-id").write_text("")


def _tree_bytes(root: Path) -> int:
    out = subprocess.run(["du", "-sb", str(root)], check=True, capture_output=True, text=True).stdout
    return int(out.split()[0]) * 11 // 10


def _remove_other_entries(cache_root: Path, keep: Path) -> None:
    for old in cache_root.glob(f"{LIVE_PREFIX}*"):
        info = old / "info.json"
        idle = time.time() - (info.stat().st_mtime if info.exists() else 0)
        if old != keep and idle > ib.ENTRY_MAX_IDLE:
            ib._remove_tree(old)


def make_payload(dest: Path, run_sh: str, files: dict[str, bytes] | None = None) -> Path:
    """A small ext4 disk labelled ``nbc-payload`` holding this checkout's nbc_tui package, ``bin/nbc-tui``,
    ``run.sh`` and ``files`` (name -> content, mode 0600)."""
    tree = dest.with_suffix(".d")
    if tree.exists():
        shutil.rmtree(tree)
    src = Path(__file__).resolve().parents[2] / "nbc_tui"
    shutil.copytree(src, tree / "src" / "nbc_tui", ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "bin").mkdir()
    wrapper = tree / "bin" / "nbc-tui"
    wrapper.write_text(NBC_TUI_WRAPPER)
    wrapper.chmod(0o755)
    (tree / "run.sh").write_text(run_sh)
    for name, data in (files or {}).items():
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o600)
    with dest.open("wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-L", PAYLOAD_LABEL, "-d", str(tree), str(dest)], check=True)
    shutil.rmtree(tree)
    return dest

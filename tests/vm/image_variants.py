"""The Debian test image in three variants, for the scenarios that install from the live ISO and for each way
the engine gets an initramfs that boots the disk.

``latest`` is the test image as built: its initramfs is a generic dracut one that lacks only the etc-overlay
hook, so nbc-tui appends the hook to it (system/initramfs_hook.py). ``needs-rebuild`` is the image plus an
initramfs made by the same dracut without the overlay kernel module (``--omit-drivers overlay``): the hook
cannot run in it, so nbc-tui rebuilds it with the image's dracut. ``preloaded`` is the same image plus one small layer:
nbc-tui's 95etc-overlay module and an initramfs regenerated with it on the host (``dracut --no-hostonly
--add etc-overlay``, which also carries dracut's crypt support and, through the image's dracut.conf.d,
tpm2-tss). For ``preloaded`` the engine finds everything the disk needs in the shipped initramfs and keeps
it, as it does for any image that ships such an initramfs: a VM install takes minutes, not a quarter hour.

All tags live in one OCI layout (they share the base layer), cached under
``<cache>/variants-<key>/layout``; ``key`` hashes this file, the base image's cache entry and the module.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.support.oci import ImageSpec, Layer, TarBuilder, write_layout
from tests.vm import image_builder as ib

log = logging.getLogger(__name__)

ENTRY_PREFIX = "variants-"
PRELOADED_TAG = "preloaded"
REBUILD_TAG = "needs-rebuild"
MODULE_SOURCE = Path(__file__).resolve().parents[2] / "nbc_tui" / "dracut" / "95etc-overlay"
MODULE_DIR = "usr/lib/dracut/modules.d/95etc-overlay"


@dataclass(frozen=True)
class ImageVariants:
    """The layout and the ``oci:`` reference and manifest digest of each variant."""

    layout: Path
    latest_ref: str
    preloaded_ref: str
    rebuild_ref: str
    digests: dict[str, str]
    """Tag -> manifest digest (what a staged image is keyed by)."""


def variants_key(base_layout: Path) -> str:
    return ib.source_key([Path(__file__), *sorted(MODULE_SOURCE.iterdir())]) + "-" + base_layout.parent.name[-8:]


def image_variants(base_layout: Path, cache_root: Path = ib.DEFAULT_CACHE_ROOT) -> ImageVariants:
    """Return the cached variants of the test image at ``base_layout``, building them if needed (root)."""
    cache_root = cache_root.resolve()
    entry = cache_root / f"{ENTRY_PREFIX}{variants_key(base_layout)}"
    if not ib._finished(entry):
        with ib.locked(cache_root / ".lock"):
            if not ib._finished(entry):
                _build(base_layout, entry, cache_root)
            _remove_other_entries(cache_root, keep=entry)
    layout = entry / "layout"
    digests = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
               for m in json.loads((layout / "index.json").read_text())["manifests"]}
    return ImageVariants(layout, f"oci:{layout}:latest", f"oci:{layout}:{PRELOADED_TAG}",
                         f"oci:{layout}:{REBUILD_TAG}", digests)


def _build(base_layout: Path, entry: Path, cache_root: Path) -> None:
    started = time.monotonic()
    info = ib.image_info(base_layout)
    work = Path(tempfile.mkdtemp(prefix=".variants-build-", dir=cache_root))
    try:
        rootfs = work / "rootfs"
        rootfs.mkdir()
        log.info("unpacking the test image to regenerate its initramfs")
        _unpack(base_layout.parent / str(info["layer"]), rootfs)
        apt_cache = cache_root / "apt-archives"
        (apt_cache / "partial").mkdir(parents=True, exist_ok=True)
        with (cache_root / "last-variants-build.log").open("w") as out, ib._chroot_mounts(rootfs, apt_cache):
            rebuild = _rebuild_layer(rootfs, str(info["kver"]), out)
            preload = _preloaded_layer(rootfs, str(info["kver"]), out)
        out_dir = work / "entry"
        _write_layout(base_layout, preload, rebuild, out_dir / "layout")
        (out_dir / "info.json").write_text(json.dumps(
            {"seconds": round(time.monotonic() - started, 1), "base": base_layout.parent.name}))
        os.rename(out_dir, entry)
        log.info("image variants ready in %.0f s: %s", time.monotonic() - started, entry)
    finally:
        ib._remove_tree(work)


def _unpack(blob: Path, rootfs: Path) -> None:
    with subprocess.Popen(["zstd", "-dc", str(blob)], stdout=subprocess.PIPE) as unzstd:
        subprocess.run(["tar", "-x", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", str(rootfs)],
                       stdin=unzstd.stdout, check=True)
    if unzstd.returncode != 0:
        raise ib.ImageBuildError(f"zstd -dc {blob} failed")


def _preloaded_layer(rootfs: Path, kver: str, out: IO[str]) -> bytes:
    """A layer tar: nbc-tui's etc-overlay module and an initramfs regenerated with it."""
    module_dir = rootfs / MODULE_DIR
    module_dir.mkdir(mode=0o755)
    for f in MODULE_SOURCE.iterdir():
        shutil.copyfile(f, module_dir / f.name)
        (module_dir / f.name).chmod(0o755)
    output = "/var/tmp/initramfs-preloaded.img"
    log.info("dracut --add etc-overlay for the preloaded image")
    ib._chroot(rootfs, ["dracut", "--force", "--no-hostonly", "--add", "etc-overlay", "--kver", kver, output], out)
    tar = TarBuilder()
    for d in ("usr", "usr/lib", "usr/lib/modules", f"usr/lib/modules/{kver}", "usr/lib/dracut",
              "usr/lib/dracut/modules.d", MODULE_DIR):
        tar.dir(d)
    for f in sorted(module_dir.iterdir()):
        tar.file(f"{MODULE_DIR}/{f.name}", f.read_bytes(), mode=0o755)
    tar.file(f"usr/lib/modules/{kver}/initramfs.img", (rootfs / output.lstrip("/")).read_bytes(), mode=0o600)
    return tar.bytes()


def _rebuild_layer(rootfs: Path, kver: str, out: IO[str]) -> bytes:
    """A layer tar: an initramfs without the overlay kernel module (and dracut's overlayfs module, which
    would bring it back), so the etc-overlay hook cannot be appended to it."""
    output = "/var/tmp/initramfs-no-overlay.img"
    log.info("dracut --omit-drivers overlay for the needs-rebuild image")
    ib._chroot(rootfs, ["dracut", "--force", "--no-hostonly", "--omit", "overlayfs", "--omit-drivers", "overlay",
                        "--kver", kver, output], out)
    tar = TarBuilder()
    for d in ("usr", "usr/lib", "usr/lib/modules", f"usr/lib/modules/{kver}"):
        tar.dir(d)
    tar.file(f"usr/lib/modules/{kver}/initramfs.img", (rootfs / output.lstrip("/")).read_bytes(), mode=0o600)
    return tar.bytes()


def _write_layout(base_layout: Path, preload: bytes, rebuild: bytes, dest: Path) -> None:
    """The base image as ``latest``, base + ``preload`` as ``preloaded`` and base + ``rebuild`` as
    ``needs-rebuild``, in one layout at ``dest``."""
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
                        ImageSpec(layers=[*base, Layer(tar=rebuild, compression="zstd")], tag=REBUILD_TAG,
                                  labels=labels)])


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs/sha256" / digest.split(":", 1)[1]).read_bytes()


def _remove_other_entries(cache_root: Path, keep: Path) -> None:
    for old in cache_root.glob(f"{ENTRY_PREFIX}*"):
        info = old / "info.json"
        idle = time.time() - (info.stat().st_mtime if info.exists() else 0)
        if old != keep and idle > ib.ENTRY_MAX_IDLE:
            ib._remove_tree(old)

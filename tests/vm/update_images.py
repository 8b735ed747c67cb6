"""The images the update scenarios install, update to and fall back from, and a disk that carries them.

Four tags in one OCI layout, each one layer on top of the test image's ``preloaded`` variant (its base layer,
then nbc-tui's etc-overlay module with an initramfs regenerated with it, see :mod:`tests.vm.image_variants`):

``v1``
    preloaded + nbc-tui shipped the way docs/images.md tells image authors: a venv at ``/usr/lib/nbc-tui``
    made by the image's own ``/usr/bin/python3`` (Debian's python3 and python3-venv come with the base
    image's package list) holding nbc-tui from this checkout and its dependencies (wheels built on the host
    at the versions of the repository's ``.venv``, installed inside a chroot of the image with ``pip
    --no-index``: no network), ``/usr/bin/nbc-tui`` -> ``../lib/nbc-tui/bin/nbc-tui`` and ``/usr/bin/nbc``
    -> ``nbc-tui`` (scripts written for nbc keep working), ``/usr/share/nbc-test/version`` = ``1``, and an
    empty ``/mnt/images`` to mount the images disk on (the installed root is read-only).
    Why ``/usr/lib``: everything an image owns lives under ``/usr``, read-only and replaced whole with the
    slot by an update; ``/opt`` is ``/var/opt`` on ostree/bootc systems, i.e. state that no update replaces.
``v2``
    v1 + one layer: the system user and group ``nbc-v2`` (``useradd --system`` run in a chroot of v1: the
    layer holds ``/etc/passwd``, ``group``, ``shadow`` and ``gshadow``, each v1's file plus that one entry)
    and ``version`` = ``2``. Nothing that needs a new initramfs: the preloaded one is kept.
``v3-health``
    v1 + a health check that always fails: ``nbc-test-health-fail.service`` is required by
    ``boot-complete.target`` (and wanted by ``multi-user.target``, so it runs even when nothing else pulls
    that target in), exits 1, and has ``FailureAction=reboot``. Links in ``/usr/lib/systemd/system``, so
    the user's ``/etc`` overlay upper cannot hide them. On the console the system boots to userspace: the
    ``NBC-REPORT ... version=3-health`` line (the check is ordered after the report), ``NBC-HEALTH-FAIL ...``
    from the check, ``[FAILED] Failed to start nbc-test-h… - ... a health check that always fails`` (systemd
    shortens the unit name), ``[DEPEND] Dependency failed for boot…arget - Boot Completion Check`` when
    something pulls boot-complete.target in (nbc-tui's nbc-bless-boot.service does), then a clean shutdown
    ending in "reboot: Restarting system", about 30 s after the kernel started under TCG.
``v3-noinit``
    v1 + an init that cannot start the system: ``/usr/lib/systemd/systemd`` (which ``/sbin/init``,
    ``/usr/sbin/init`` and ``/lib/systemd/systemd`` all resolve to on Debian's merged /usr) is replaced by a
    script that prints ``NBC-NOINIT`` and exits 1. The kernel, the preloaded initramfs and everything an
    installer checks are still there (``install --dry-run`` and ``lint`` accept it). On the console: the
    initramfs (systemd in dracut's) runs up to "Starting initrd-switch-root.service - Switch Root...", the
    new root's "init" prints ``NBC-NOINIT ...`` and exits, and the kernel panics ("Kernel panic - not
    syncing: Attempted to kill init! exitcode=0x00000100"), about 14 s after it started under TCG; with
    ``panic=N`` on the command line the machine resets N seconds later ("Rebooting in N seconds.."),
    without it the machine hangs there. Other broken inits end differently (seen under QEMU with this
    initramfs and ``panic=5``): a missing one (``/usr/lib/systemd/systemd`` and ``/sbin/init`` removed) makes
    systemd print "No /sbin/init, trying fallback" and run ``/bin/sh`` as PID 1, which waits at a ``#``
    prompt forever; one that cannot be executed ("Exec format error") makes it print "Freezing execution."
    and hang, or with ``systemd.crash_reboot=1`` "Rebooting in 10s..." and reset. ``panic=`` helps in
    neither case, so this image does not use them.

The images disk (:class:`ImagesDisk`): a raw ext4 file system image (``mke2fs -d``, no journal, label
``nbc-images``) holding the same layout under ``/layout``, to be given to a VM as a second virtio disk and
mounted read-only there: ``nbc-tui update --image oci:/mnt/images/layout:v2`` then needs no network.

Everything is cached under ``<cache>/update-images-<key>/`` (``layout/``, ``images.img``, ``info.json``);
``key`` hashes this file, nbc-tui's source (``nbc_tui/``, pyproject.toml, README.md: the wheel's inputs), the
wheel set and the variants' cache entry, so editing nbc_tui/ rebuilds only this entry (15-25 s), not
the debootstrap base. The dependency wheels are cached apart in ``<cache>/wheels-<key>/`` (keyed by the
``.venv``'s ``pip freeze`` and pyproject's requirements; building them is the only step that reaches PyPI).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.vm import image_builder as ib
from tests.vm.image_variants import PRELOADED_TAG, ImageVariants

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv"
ENTRY_PREFIX = "update-images-"
WHEELS_PREFIX = "wheels-"
KEEP_RECENT = 3
RECENT_IDLE = 2 * 3600
"""Entries of other nbc_tui/ versions: the KEEP_RECENT newest are kept a day, the others RECENT_IDLE seconds."""

V1, V2, V3_HEALTH, V3_NOINIT = "v1", "v2", "v3-health", "v3-noinit"
TAGS = (V1, V2, V3_HEALTH, V3_NOINIT)
VERSIONS = {V1: "1", V2: "2", V3_HEALTH: "3-health", V3_NOINIT: "3-noinit"}
"""Tag -> content of /usr/share/nbc-test/version (the ``version=`` field of the NBC-REPORT line)."""
VERSION_FILE = "/usr/share/nbc-test/version"
NBC_TUI_VENV = "/usr/lib/nbc-tui"
V2_USER = "nbc-v2"
"""A system user (and its group) that only v2 has."""
HEALTH_UNIT = "nbc-test-health-fail.service"
HEALTH_FAIL_MARKER = "NBC-HEALTH-FAIL"
"""v3-health's check prints this line on ttyS0 just before it fails."""
NOINIT_MARKER = "NBC-NOINIT"
"""v3-noinit's stand-in init prints this line on the console just before it exits."""

IMAGES_LABEL = "nbc-images"
IMAGES_MOUNTPOINT = "/mnt/images"
IMAGES_DEVICE = "/dev/vdb"
"""The images disk in a VM booted with one disk before it (booted(disk, readonly_disks=[images.disk.path]))."""

HEALTH_UNIT_TEXT = """\
[Unit]
Description=nbc-tui test image v3-health: a health check that always fails
# A check the boot must pass before it counts as good (systemd.special(7), boot-complete.target).
Before=boot-complete.target
After=nbc-test-report.service
FailureAction=reboot

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/lib/nbc-test/nbc-test-health-fail

[Install]
RequiredBy=boot-complete.target
WantedBy=multi-user.target
"""
HEALTH_SCRIPT = f"""\
#!/bin/sh
# v3-health: report, then fail; the unit's FailureAction=reboot restarts the machine.
line="{HEALTH_FAIL_MARKER} {HEALTH_UNIT} fails on purpose: this boot must never count as good"
echo "$line"
[ -c /dev/ttyS0 ] && printf '\\r\\n%s\\r\\n' "$line" >/dev/ttyS0
exit 1
"""
NOINIT_SCRIPT = f"""\
#!/bin/sh
# v3-noinit: stands in for systemd, so the switch to this root ends at once: PID 1 exits, the kernel panics.
echo "{NOINIT_MARKER} this image (nbc-tui test v3-noinit) has no init: exiting" >/dev/console 2>/dev/null
exit 1
"""


@dataclass(frozen=True)
class ImagesDisk:
    """The raw ext4 image holding the update images' layout, as a VM sees it.

    In the VM (``booted(disk, readonly_disks=[images.disk.path])``): run :attr:`mount_command` (``/mnt/images``
    exists in every tag, so it works on the read-only root), then ``nbc-tui update --image
    images.disk.refs["v2"]``. QEMU attaches it read-only: the file is shared by every test, and by two QEMUs
    at once when the tier runs two scenarios at a time (it has no journal, so a read-only mount writes nothing;
    the fixture rebuilds it if its mtime ever changes)."""

    path: Path
    """The file to attach (raw format)."""
    refs: dict[str, str]
    """Tag -> the reference inside the VM once mounted: ``oci:/mnt/images/layout:<tag>``."""
    label: str = IMAGES_LABEL
    device: str = IMAGES_DEVICE
    mountpoint: str = IMAGES_MOUNTPOINT
    layout: str = f"{IMAGES_MOUNTPOINT}/layout"

    @property
    def mount_command(self) -> str:
        """A shell line for the VM's console: mount the disk read-only at :attr:`mountpoint`."""
        return f"mkdir -p {self.mountpoint} && mount -o ro LABEL={self.label} {self.mountpoint}"


@dataclass(frozen=True)
class UpdateImages:
    """The update images on the host (one OCI layout) and on the images disk."""

    layout: Path
    """Host OCI layout with the tags v1, v2, v3-health, v3-noinit."""
    refs: dict[str, str]
    """Tag -> host reference ``oci:<layout>:<tag>`` (install v1 with it)."""
    digests: dict[str, str]
    """Tag -> manifest digest (the same on the disk: what status and config.json name)."""
    kver: str
    """The kernel of every tag (one kernel, the preloaded initramfs)."""
    disk: ImagesDisk
    versions: dict[str, str] = field(default_factory=lambda: dict(VERSIONS))
    """Tag -> the ``version=`` field its NBC-REPORT line prints (v3-noinit never gets that far)."""


def build_update_images(variants: ImageVariants, cache_root: Path = ib.DEFAULT_CACHE_ROOT) -> UpdateImages:
    """Return the cached update images built on ``variants``, building them if needed (root; PyPI the first
    time, for the dependency wheels)."""
    cache_root = cache_root.resolve()
    wheels = _wheels_path(cache_root)
    entry = cache_root / f"{ENTRY_PREFIX}{update_images_key(variants.layout, wheels)}"
    if not _entry_ok(entry):
        if os.geteuid() != 0:
            raise ib.ImageBuildError("building the update test images needs root (chroot, mke2fs)")
        with ib.locked(cache_root / ".lock"):
            if not ib._finished(entry):
                _ensure_wheels(wheels, cache_root)
                _build(variants, wheels, entry, cache_root)
            elif not _entry_ok(entry):
                log.warning("the images disk of %s changed since it was built: writing it again", entry)
                _write_disk(entry)
            _remove_unused(cache_root, ENTRY_PREFIX, keep=entry)
            _remove_unused(cache_root, WHEELS_PREFIX, keep=wheels)
    return _describe(entry)


def update_images_key(variants_layout: Path, wheels: Path) -> str:
    """This file, nbc-tui's source, the wheel set and the variants entry: any change makes a new entry."""
    h = hashlib.sha256()
    for f in [Path(__file__), *app_source_files()]:
        h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    h.update(wheels.name.encode() + b"\0" + variants_layout.parent.name.encode())
    return f"{h.hexdigest()[:16]}-{variants_layout.parent.name[-8:]}"


def app_source_files() -> list[Path]:
    """What nbc-tui's wheel is built from: nbc_tui/ (no bytecode), pyproject.toml, README.md."""
    package = sorted(p for p in (REPO / "nbc_tui").rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    return [*package, REPO / "pyproject.toml", REPO / "README.md"]


def layer_blobs(layout: Path, tag: str) -> list[Path]:
    """The compressed layer blobs of ``tag`` in ``layout``, bottom first."""
    return [blob for blob, _media, _diff in _manifest_layers(layout, tag)]


def unpack_tag(images: UpdateImages, tag: str, dest: Path) -> Path:
    """Extract every layer of ``tag`` into ``dest`` with GNU tar (owners, modes, xattrs kept; none of these
    layers has a whiteout) and return ``dest``: for chroot checks and direct-kernel boots."""
    dest.mkdir(parents=True, exist_ok=True)
    for blob in layer_blobs(images.layout, tag):
        _unpack(blob, dest)
    return dest


def _describe(entry: Path) -> UpdateImages:
    layout = entry / "layout"
    info = ib._read_json(entry / "info.json")
    digests = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
               for m in json.loads((layout / "index.json").read_text())["manifests"]}
    disk = ImagesDisk(entry / "images.img", {tag: f"oci:{IMAGES_MOUNTPOINT}/layout:{tag}" for tag in digests})
    return UpdateImages(layout, {tag: f"oci:{layout}:{tag}" for tag in digests}, digests, str(info["kver"]), disk)


def _entry_ok(entry: Path) -> bool:
    """Finished, and the images disk is still the file that was built (no VM ever wrote to it)."""
    if not ib._finished(entry):
        return False
    disk = entry / "images.img"
    recorded = ib._read_json(entry / "info.json").get("disk_mtime_ns")
    return disk.exists() and disk.stat().st_mtime_ns == recorded


# --- the build ------------------------------------------------------------------------------------------

def _build(variants: ImageVariants, wheels: Path, entry: Path, cache_root: Path) -> None:
    started = time.monotonic()
    base_info = ib.image_info(_base_layout(variants))
    kver = str(base_info["kver"])
    work = Path(tempfile.mkdtemp(prefix=".update-images-build-", dir=cache_root))
    try:
        out_dir = work / "entry"
        out_dir.mkdir()
        apt_cache = cache_root / "apt-archives"
        (apt_cache / "partial").mkdir(parents=True, exist_ok=True)
        with (cache_root / "last-update-images-build.log").open("w") as out:
            app_wheel = _app_wheel(wheels, work, out)
            preloaded = _manifest_layers(variants.layout, PRELOADED_TAG)
            rootfs = work / "rootfs"
            rootfs.mkdir()
            log.info("unpacking the preloaded test image")
            for blob, _media, _diff in preloaded:
                _unpack(blob, rootfs)
            layers: dict[str, tuple[Path, str, str]] = {}
            with ib._chroot_mounts(rootfs, apt_cache):
                layers[V1] = _v1_layer(rootfs, wheels, app_wheel, work, out)
                layers[V3_HEALTH] = _pack(_v3_health_stage(work / "stage-v3-health"), work, "v3-health")
                layers[V3_NOINIT] = _pack(_v3_noinit_stage(work / "stage-v3-noinit"), work, "v3-noinit")
                layers[V2] = _v2_layer(rootfs, work, out)  # last: it changes /etc in the tree
        labels = _config_labels(variants.layout, PRELOADED_TAG)
        images = {V1: [*preloaded, layers[V1]]}
        images |= {tag: [*images[V1], layers[tag]] for tag in (V2, V3_HEALTH, V3_NOINIT)}
        _write_layout(out_dir / "layout", {tag: images[tag] for tag in TAGS}, labels)
        shutil.rmtree(rootfs)  # before mke2fs: the disk needs the space more than the tree
        info = {"kver": kver, "variants": variants.layout.parent.name, "wheels": wheels.name,
                "layer_bytes": {tag: layers[tag][0].stat().st_size for tag in TAGS}}
        (out_dir / "info.json").write_text(json.dumps(info, indent=2) + "\n")
        _write_disk(out_dir)
        info = ib._read_json(out_dir / "info.json") | {"seconds": round(time.monotonic() - started, 1)}
        (out_dir / "info.json").write_text(json.dumps(info, indent=2) + "\n")
        os.rename(out_dir, entry)
        log.info("update images ready in %.0f s: %s", info["seconds"], entry)
    finally:
        ib._remove_tree(work)


def _base_layout(variants: ImageVariants) -> Path:
    base = ib._read_json(variants.layout.parent / "info.json")["base"]
    return variants.layout.parent.parent / str(base) / "layout"


def _v1_layer(rootfs: Path, wheels: Path, app_wheel: Path, work: Path, out: IO[str]) -> tuple[Path, str, str]:
    """nbc-tui into a venv of the image's own python, offline; then the links, the version, /mnt/images."""
    log.info("nbc-tui into %s inside the image (pip --no-index)", NBC_TUI_VENV)
    inbox = rootfs / "tmp/nbc-wheels"
    shutil.copytree(wheels, inbox, ignore=shutil.ignore_patterns("build", "info.json"))
    shutil.copy2(app_wheel, inbox)
    venv_bin = f"{NBC_TUI_VENV}/bin"
    _chroot(rootfs, ["/usr/bin/python3", "-m", "venv", NBC_TUI_VENV], out)
    _chroot(rootfs, [f"{venv_bin}/pip", "install", "--no-index", "--no-cache-dir", "--find-links",
                     "/tmp/nbc-wheels", f"/tmp/nbc-wheels/{app_wheel.name}"], out)
    # Nothing installs into a read-only /usr later: the venv needs neither pip nor setuptools at run time.
    _chroot(rootfs, [f"{venv_bin}/pip", "uninstall", "--yes", "setuptools", "pip"], out)
    # Bytecode checked by the source's hash, not its mtime: valid whatever mtimes the extraction leaves.
    _chroot(rootfs, [f"{venv_bin}/python", "-m", "compileall", "-q", "-f", "--invalidation-mode",
                     "checked-hash", f"{NBC_TUI_VENV}/lib"], out)
    shutil.rmtree(inbox)
    (rootfs / "usr/bin/nbc-tui").symlink_to("../lib/nbc-tui/bin/nbc-tui")
    (rootfs / "usr/bin/nbc").symlink_to("nbc-tui")
    _write_version(rootfs, V1)
    (rootfs / IMAGES_MOUNTPOINT.lstrip("/")).mkdir(mode=0o755)
    for argv in (["nbc-tui", "--version"], ["nbc", "--help"]):
        _chroot(rootfs, argv, out)
    stage = work / "stage-v1"
    stage.mkdir()
    _copy_parents(rootfs, stage, [NBC_TUI_VENV, "/usr/bin/nbc-tui", "/usr/bin/nbc", VERSION_FILE,
                                  IMAGES_MOUNTPOINT])
    return _pack(stage, work, "v1")


def _v2_layer(rootfs: Path, work: Path, out: IO[str]) -> tuple[Path, str, str]:
    """useradd --system in the v1 tree; the layer takes the four account files and the version."""
    log.info("v2: useradd --system %s", V2_USER)
    _chroot(rootfs, ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                     "--shell", "/usr/sbin/nologin", "--comment", "nbc-tui test user, only in v2", V2_USER], out)
    _write_version(rootfs, V2)
    stage = work / "stage-v2"
    stage.mkdir()
    _copy_parents(rootfs, stage, ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", VERSION_FILE])
    return _pack(stage, work, "v2")


def _v3_health_stage(stage: Path) -> Path:
    units = stage / "usr/lib/systemd/system"
    _write(units / HEALTH_UNIT, HEALTH_UNIT_TEXT, 0o644)
    _write(stage / "usr/lib/nbc-test/nbc-test-health-fail", HEALTH_SCRIPT, 0o755)
    for target in ("boot-complete.target.requires", "multi-user.target.wants"):
        (units / target).mkdir(mode=0o755)
        (units / target / HEALTH_UNIT).symlink_to(f"../{HEALTH_UNIT}")
    _write(stage / VERSION_FILE.lstrip("/"), VERSIONS[V3_HEALTH] + "\n", 0o644)
    return stage


def _v3_noinit_stage(stage: Path) -> Path:
    _write(stage / "usr/lib/systemd/systemd", NOINIT_SCRIPT, 0o755)
    _write(stage / VERSION_FILE.lstrip("/"), VERSIONS[V3_NOINIT] + "\n", 0o644)
    return stage


def _write(path: Path, text: str, mode: int) -> None:
    for parent in reversed(path.parents):
        if not parent.exists():
            parent.mkdir(mode=0o755)
            parent.chmod(0o755)  # whatever the umask
    path.write_text(text)
    path.chmod(mode)


def _write_version(rootfs: Path, tag: str) -> None:
    path = rootfs / VERSION_FILE.lstrip("/")
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    path.write_text(VERSIONS[tag] + "\n")
    path.chmod(0o644)


def _copy_parents(root: Path, stage: Path, paths: list[str]) -> None:
    """cp -a --parents: each path with its parent directories, owners, modes and links as in ``root``."""
    subprocess.run(["cp", "-a", "--parents", *(p.lstrip("/") for p in paths), str(stage)], cwd=root, check=True)


def _pack(stage: Path, work: Path, name: str) -> tuple[Path, str, str]:
    """Tar + zstd a staged layer tree; returns (blob, media type, diff_id)."""
    blob = work / f"{name}.tar.zst"
    diff_id = ib._pack_layer(stage, blob)
    return blob, "application/vnd.oci.image.layer.v1.tar+zstd", diff_id


def _unpack(blob: Path, rootfs: Path) -> None:
    """One layer onto the tree with GNU tar (the preloaded image's layers have no whiteouts)."""
    subprocess.run(["tar", "--zstd", "-x", "--xattrs", "--xattrs-include=*", "--numeric-owner",
                    "--same-permissions", "-f", str(blob), "-C", str(rootfs)], check=True)


def _chroot(root: Path, argv: list[str], out: IO[str]) -> None:
    env = ib.CHROOT_ENV | {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    ib._run(["chroot", str(root), *argv], out, env=env)


# --- the wheels -----------------------------------------------------------------------------------------

def _wheels_path(cache_root: Path) -> Path:
    """Where the dependency wheels at the .venv's versions are cached (keyed by its pins and pyproject)."""
    project = _pyproject()
    key_text = "\n".join(["wheels 1", _constraints(), *project["project"]["dependencies"],
                          *project["build-system"]["requires"]])
    return cache_root / f"{WHEELS_PREFIX}{hashlib.sha256(key_text.encode()).hexdigest()[:16]}"


def _ensure_wheels(wheels: Path, cache_root: Path) -> None:
    """Download (or build) the dependency wheels with the host's pip at the .venv's versions, and the build
    backend's wheels under build/ so that nbc-tui's own wheel builds offline. Called holding the lock."""
    if (wheels / "info.json").exists():
        os.utime(wheels / "info.json")  # in use: not pruned
        return
    work = Path(tempfile.mkdtemp(prefix=".wheels-build-", dir=cache_root))
    try:
        started = time.monotonic()
        dest = work / "wheels"
        (work / "constraints.txt").write_text(_constraints())
        log.info("downloading nbc-tui's dependencies as wheels (pinned to %s's versions)", VENV)
        pip = [str(VENV / "bin/pip"), "--disable-pip-version-check"]
        with (cache_root / "last-wheels-build.log").open("w") as out:
            ib._run([*pip, "wheel", "--wheel-dir", str(dest), "--constraint", str(work / "constraints.txt"),
                     str(_app_source(work))], out)
            ib._run([*pip, "download", "--only-binary", ":all:", "--dest", str(dest / "build"),
                     *_pyproject()["build-system"]["requires"], "wheel"], out)
        for own in dest.glob("nbc_tui-*.whl"):
            own.unlink()
        (dest / "info.json").write_text(json.dumps({
            "seconds": round(time.monotonic() - started, 1),
            "wheels": sorted(p.name for p in dest.glob("*.whl"))}, indent=2) + "\n")
        os.rename(dest, wheels)
    finally:
        ib._remove_tree(work)


def _app_wheel(wheels: Path, work: Path, out: IO[str]) -> Path:
    """nbc-tui's wheel from a clean copy of this checkout, built offline (the backend from wheels/build)."""
    dest = work / "app-wheel"
    ib._run([str(VENV / "bin/pip"), "wheel", "--disable-pip-version-check", "--no-deps", "--no-index",
             "--find-links", str(wheels / "build"), "--wheel-dir", str(dest), str(_app_source(work))], out)
    [wheel] = dest.glob("nbc_tui-*.whl")
    return wheel


def _app_source(work: Path) -> Path:
    src = work / "src"
    if not src.exists():
        for f in app_source_files():
            target = src / f.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
    return src


def _constraints() -> str:
    if not (VENV / "bin/pip").exists():
        raise ib.ImageBuildError(f"{VENV} is missing: run tools/install-deps.sh (the wheels follow its pins)")
    freeze = subprocess.run([str(VENV / "bin/pip"), "freeze", "--all", "--exclude-editable",
                             "--disable-pip-version-check"], capture_output=True, text=True, check=True).stdout
    lines = [line for line in freeze.splitlines()
             if line and not line.startswith(("#", "-e", "nbc-tui", "nbc_tui"))]
    return "\n".join(sorted(lines, key=str.lower)) + "\n"


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())


# --- the layout and the disk ----------------------------------------------------------------------------

def _manifest_layers(layout: Path, tag: str) -> list[tuple[Path, str, str]]:
    """(blob path, media type, diff_id) of each layer of ``tag`` in ``layout``."""
    manifest = _manifest(layout, tag)
    config = json.loads(_blob(layout, manifest["config"]["digest"]).read_text())
    return [(_blob(layout, layer["digest"]), layer["mediaType"], diff_id)
            for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True)]


def _config_labels(layout: Path, tag: str) -> dict[str, str]:
    config = json.loads(_blob(layout, _manifest(layout, tag)["config"]["digest"]).read_text())
    return dict(config.get("config", {}).get("Labels") or {})


def _manifest(layout: Path, tag: str) -> dict:
    index = json.loads((layout / "index.json").read_text())
    [desc] = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag]
    return json.loads(_blob(layout, desc["digest"]).read_text())


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs/sha256" / digest.split(":", 1)[1]


def _write_layout(dest: Path, images: dict[str, list[tuple[Path, str, str]]], labels: dict[str, str]) -> None:
    """One OCI layout with a manifest per tag; layer blobs are hard links to the given files (one copy of
    each shared layer), named by their sha256."""
    blobs = dest / "blobs/sha256"
    blobs.mkdir(parents=True)
    (dest / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))

    def put_file(src: Path) -> tuple[str, int]:
        digest = _sha256(src)
        if not (blobs / digest).exists():
            try:
                os.link(src, blobs / digest)
            except OSError:
                shutil.copyfile(src, blobs / digest)
        return f"sha256:{digest}", src.stat().st_size

    def put_json(obj: object) -> tuple[str, int]:
        data = json.dumps(obj, sort_keys=True).encode()
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}", len(data)

    manifests = []
    for tag, layers in images.items():
        descs = []
        for blob, media, _diff in layers:
            digest, size = put_file(blob)
            descs.append({"mediaType": media, "digest": digest, "size": size})
        config = {"architecture": "amd64", "os": "linux",
                  "config": {"Labels": labels | {"org.opencontainers.image.version": tag,
                                                 "org.opencontainers.image.title":
                                                     f"nbc-tui update test image {tag} (Debian 12)"}},
                  "rootfs": {"type": "layers", "diff_ids": [diff for _b, _m, diff in layers]}}
        cdigest, csize = put_json(config)
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest,
                               "size": csize},
                    "layers": descs}
        mdigest, msize = put_json(manifest)
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest,
                          "size": msize, "annotations": {"org.opencontainers.image.ref.name": tag},
                          "platform": {"architecture": "amd64", "os": "linux"}})
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2,
                                                 "mediaType": "application/vnd.oci.image.index.v1+json",
                                                 "manifests": manifests}, indent=1))


def _write_disk(entry: Path) -> None:
    """images.img: an ext4 image (mke2fs -d, no mount) of a tree holding the layout, as small as it goes."""
    layout = entry / "layout"
    tree = entry / ".disk-tree"
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(layout, tree / "layout", copy_function=os.link)
    files = [p for p in (tree / "layout").rglob("*") if p.is_file()]
    data = sum(-(-p.stat().st_size // 4096) * 4096 for p in files)
    # Metadata: block bitmaps, group descriptors, a few inodes, extent blocks: 3 % and 8 MiB cover it.
    size_mib = -(-(data * 103 // 100 + (8 << 20)) // (1 << 20))
    disk = entry / "images.img"
    disk.unlink(missing_ok=True)
    log.info("images disk: %d MiB for %d MiB of blobs", size_mib, data >> 20)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-m", "0", "-N", "128",
                    "-L", IMAGES_LABEL, "-E", "root_owner=0:0", "-d", str(tree), str(disk), f"{size_mib}M"],
                   check=True, capture_output=True)
    shutil.rmtree(tree)
    info_path = entry / "info.json"
    info = ib._read_json(info_path) | {"disk_mib": size_mib, "disk_mtime_ns": disk.stat().st_mtime_ns}
    info_path.write_text(json.dumps(info, indent=2) + "\n")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _remove_unused(cache_root: Path, prefix: str, keep: Path) -> None:
    """Entries of other versions unused for a day (another checkout may still be using one), and beyond the
    KEEP_RECENT most recently used, those unused for RECENT_IDLE: every edit of nbc_tui/ makes a new entry of
    about 250 MB, and a long test session keeps using the entry it started with."""
    entries = []
    for old in cache_root.glob(f"{prefix}*"):
        info = old / "info.json"
        with contextlib.suppress(OSError):
            entries.append((info.stat().st_mtime if info.exists() else 0.0, old))
    for rank, (used, old) in enumerate(sorted(entries, reverse=True)):
        idle = time.time() - used
        if old != keep and old.is_dir() and (idle > ib.ENTRY_MAX_IDLE or (rank >= KEEP_RECENT and idle > RECENT_IDLE)):
            log.info("removing an unused cache entry: %s", old)
            ib._remove_tree(old)

"""The update test images (tests/vm/update_images.py), proven without an update: what each tag holds, that
nbc-tui runs inside v1 with the image's own Python, that the images disk carries a layout nbc-tui reads, and
that each broken v3 fails the way its docstring says when booted."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.vm.image_builder import TEST_ROOT_PASSWORD, build_debian_image, read_report
from tests.vm.image_variants import PRELOADED_TAG, ImageVariants
from tests.vm.image_variants import image_variants as build_variants
from tests.vm.qemu import Vm, booted
from tests.vm.update_images import (
    ENTRY_PREFIX,
    HEALTH_FAIL_MARKER,
    HEALTH_UNIT,
    IMAGES_LABEL,
    NBC_TUI_VENV,
    NOINIT_MARKER,
    REPO,
    V1,
    V2,
    V2_USER,
    V3_HEALTH,
    V3_NOINIT,
    VERSION_FILE,
    ImagesDisk,
    UpdateImages,
    app_source_files,
    build_update_images,
    layer_blobs,
    unpack_tag,
    update_images_key,
)

BOOT_TIMEOUT = 300
ACCOUNT_FILES = ("etc/passwd", "etc/group", "etc/shadow", "etc/gshadow")


# --- pure logic -----------------------------------------------------------------------------------------

def test_the_wheel_inputs_are_the_package_and_its_metadata() -> None:
    files = app_source_files()
    assert REPO / "nbc_tui/cli.py" in files
    assert REPO / "nbc_tui/dracut/95etc-overlay/module-setup.sh" in files
    assert files[-2:] == [REPO / "pyproject.toml", REPO / "README.md"]
    assert not [f for f in files if "__pycache__" in f.parts or f.suffix == ".pyc"]


def test_the_images_disk_mounts_read_only_by_label() -> None:
    disk = ImagesDisk(Path("/x/images.img"), {V2: "oci:/mnt/images/layout:v2"})
    assert disk.mount_command == f"mkdir -p /mnt/images && mount -o ro LABEL={IMAGES_LABEL} /mnt/images"
    assert disk.refs[V2] == f"oci:{disk.layout}:v2"


# --- the cached images ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def v1_tree(update_images: UpdateImages, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unpack_tag(update_images, V1, tmp_path_factory.mktemp("v1"))


@pytest.mark.vm
@pytest.mark.root
def test_cached_update_images_are_reused(update_images: UpdateImages) -> None:
    if not _built_from_this_checkout(update_images):
        pytest.skip("nbc_tui/ changed since the session built the images: a rebuild is right")
    started = time.monotonic()
    again = build_update_images(_variants_of(update_images), update_images.layout.parent.parent)
    assert again == update_images
    assert time.monotonic() - started < 5, "cached update images must not be rebuilt"


@pytest.mark.vm
@pytest.mark.root
def test_each_tag_is_one_layer_on_the_one_before(update_images: UpdateImages, image_variants: ImageVariants) -> None:
    assert sorted(update_images.digests) == sorted([V1, V2, V3_HEALTH, V3_NOINIT])
    preloaded = [_digest(b) for b in layer_blobs(image_variants.layout, PRELOADED_TAG)]
    v1 = [b.name for b in layer_blobs(update_images.layout, V1)]
    assert v1[:-1] == preloaded  # the same blobs: the preloaded initramfs is v1's
    for tag in (V2, V3_HEALTH, V3_NOINIT):
        layers = layer_blobs(update_images.layout, tag)
        assert [b.name for b in layers[:-1]] == v1, tag
        assert layers[-1].stat().st_size < 16 << 10, f"{tag}: one small layer"
        names = _members(layers[-1])
        assert not [n for n in names if n.startswith("usr/lib/modules")], f"{tag} keeps kernel and initramfs"
        assert VERSION_FILE.lstrip("/") in names
    v1_names = [n.rstrip("/").split("/") for n in _members(layer_blobs(update_images.layout, V1)[-1])]
    v1_top = {"/".join(parts[:2]) for parts in v1_names if len(parts) >= 2}
    assert v1_top == {"usr/lib", "usr/bin", "usr/share", "mnt/images"}, v1_top


@pytest.mark.vm
@pytest.mark.root
def test_v2_adds_one_system_user_and_nothing_else(update_images: UpdateImages, v1_tree: Path,
                                                   tmp_path: Path) -> None:
    v2_layer = layer_blobs(update_images.layout, V2)[-1]
    assert sorted(n for n in _members(v2_layer) if not n.endswith("/")) == sorted(
        [*ACCOUNT_FILES, VERSION_FILE.lstrip("/")])
    subprocess.run(["tar", "--zstd", "-x", "--numeric-owner", "-f", str(v2_layer), "-C", str(tmp_path)],
                   check=True)
    for name in ACCOUNT_FILES:
        old = (v1_tree / name).read_text().splitlines()
        new = (tmp_path / name).read_text().splitlines()
        assert new[:-1] == old and new[-1].startswith(f"{V2_USER}:"), name
        assert (tmp_path / name).stat().st_mode == (v1_tree / name).stat().st_mode, name
        assert (tmp_path / name).stat().st_gid == (v1_tree / name).stat().st_gid, name
    user = (tmp_path / "etc/passwd").read_text().splitlines()[-1].split(":")
    assert int(user[2]) < 1000 and user[6] == "/usr/sbin/nologin"  # a system user, as useradd --system makes
    group = (tmp_path / "etc/group").read_text().splitlines()[-1].split(":")
    assert group[:1] == [V2_USER] and group[2] == user[3]
    assert (tmp_path / VERSION_FILE.lstrip("/")).read_text() == "2\n"
    assert (v1_tree / VERSION_FILE.lstrip("/")).read_text() == "1\n"


@pytest.mark.vm
@pytest.mark.root
def test_nbc_tui_runs_inside_v1_with_the_images_python(update_images: UpdateImages, v1_tree: Path) -> None:
    """A chroot of v1: the links, the venv made by the image's /usr/bin/python3, the checkout's code."""
    assert os.readlink(v1_tree / "usr/bin/nbc-tui") == "../lib/nbc-tui/bin/nbc-tui"
    assert os.readlink(v1_tree / "usr/bin/nbc") == "nbc-tui"
    venv = v1_tree / NBC_TUI_VENV.lstrip("/")
    assert "home = /usr/bin" in (venv / "pyvenv.cfg").read_text()
    assert not list(venv.glob("lib/python3*/site-packages/pip")), "no pip in a read-only /usr"
    assert (v1_tree / "mnt/images").is_dir()
    version = _chroot(v1_tree, "nbc-tui", "--version")
    assert version.stdout.strip() == "nbc-tui 0.1.0"
    help_text = _chroot(v1_tree, "nbc", "--help")
    assert help_text.stdout.startswith("usage: ") and "install" in help_text.stdout
    where = _chroot(v1_tree, f"{NBC_TUI_VENV}/bin/python", "-c",
                    "import sys, nbc_tui; print(sys.base_prefix, sys.executable, nbc_tui.__file__)")
    base_prefix, executable, package_file = where.stdout.split()
    assert (base_prefix, executable) == ("/usr", f"{NBC_TUI_VENV}/bin/python")
    package = v1_tree / Path(package_file).parent.relative_to("/")
    assert package.parent.parent.parent == v1_tree / NBC_TUI_VENV.lstrip("/") / "lib"
    if _built_from_this_checkout(update_images):  # else another session edited nbc_tui/ since the build
        sources = [f for f in app_source_files() if f.suffix == ".py"]
        assert sources
        for f in sources:
            installed = package / f.relative_to(REPO / "nbc_tui")
            assert installed.read_bytes() == f.read_bytes(), f


@pytest.mark.vm
@pytest.mark.root
def test_v3_trees_keep_kernel_and_initramfs_and_break_as_described(update_images: UpdateImages,
                                                                  v1_tree: Path, tmp_path: Path) -> None:
    moddir = f"usr/lib/modules/{update_images.kver}"
    health = unpack_tag(update_images, V3_HEALTH, tmp_path / "health")
    noinit = unpack_tag(update_images, V3_NOINIT, tmp_path / "noinit")
    for tree in (health, noinit):
        for name in ("vmlinuz", "initramfs.img"):
            assert _digest(tree / moddir / name) == _digest(v1_tree / moddir / name)
    units = health / "usr/lib/systemd/system"
    for wants in ("boot-complete.target.requires", "multi-user.target.wants"):
        assert (units / wants / HEALTH_UNIT).resolve() == (units / HEALTH_UNIT).resolve()
    unit = (units / HEALTH_UNIT).read_text()
    assert "FailureAction=reboot" in unit and "RequiredBy=boot-complete.target" in unit
    assert subprocess.run(["chroot", str(health), "/usr/lib/nbc-test/nbc-test-health-fail"],
                          capture_output=True, check=False).returncode == 1
    stub = noinit / "usr/lib/systemd/systemd"
    assert NOINIT_MARKER in stub.read_text()
    for init in ("sbin/init", "usr/sbin/init", "lib/systemd/systemd"):
        target = _resolve_in(noinit, init)
        assert target == stub, f"/{init} resolves to {target}"
    assert (v1_tree / "usr/lib/systemd/systemd").read_bytes().startswith(b"\x7fELF")


@pytest.mark.vm
@pytest.mark.root
@pytest.mark.parametrize("tag", [V3_HEALTH, V3_NOINIT])
def test_an_installer_accepts_the_broken_updates(update_images: UpdateImages, tag: str, tmp_path: Path) -> None:
    """Each broken v3 passes the whole pre-install check (digests, kernel, initramfs, etc-overlay): it fails
    only when it boots."""
    disk = tmp_path / "disk.img"
    env = {**os.environ, "NBC_TUI_LOG_FILE": str(tmp_path / "nbc-tui.log")}
    run = subprocess.run([str(REPO / ".venv/bin/nbc-tui"), "install", "--image", update_images.refs[tag],
                          "--via-loopback", str(disk), "--dry-run", "--yes"], capture_output=True, text=True,
                         env=env, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"kernel {update_images.kver}" in run.stdout
    assert not disk.exists()


@pytest.mark.vm
@pytest.mark.root
def test_images_disk_holds_every_tag_and_nbc_tui_reads_it(update_images: UpdateImages, images_disk: ImagesDisk,
                                                          tmp_path: Path) -> None:
    before = images_disk.path.stat().st_mtime_ns
    label = subprocess.run(["blkid", "-o", "value", "-s", "LABEL", str(images_disk.path)], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert label == images_disk.label
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-o", "ro,loop", str(images_disk.path), str(mnt)], check=True)
    try:
        layout = mnt / "layout"
        assert json.loads((layout / "index.json").read_text()) == json.loads(
            (update_images.layout / "index.json").read_text())
        blobs = sorted((layout / "blobs/sha256").iterdir())
        assert [b.name for b in blobs] == sorted(p.name for p in (update_images.layout / "blobs/sha256").iterdir())
        for blob in blobs:
            assert _digest(blob) == blob.name
        for tag, ref in images_disk.refs.items():
            assert ref == f"oci:{images_disk.layout}:{tag}"
        env = {**os.environ, "NBC_TUI_CACHE_ROOT": str(tmp_path / "cache"), "NBC_TUI_LOCK_DIR": str(tmp_path / "locks")}
        staged = subprocess.run([str(REPO / ".venv/bin/nbc-tui"), "download", "--image", f"oci:{layout}:{V2}",
                                 "--for-install", "--json"], capture_output=True, text=True, env=env, timeout=300,
                                check=False)
        assert staged.returncode == 0, staged.stderr[-2000:]
        assert json.loads(staged.stdout)["image_digest"] == update_images.digests[V2]
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert images_disk.path.stat().st_mtime_ns == before
    total = images_disk.path.stat().st_size
    blobs_size = sum(p.stat().st_size for p in (update_images.layout / "blobs/sha256").iterdir())
    assert total < blobs_size * 1.1 + (16 << 20), f"the disk ({total >> 20} MiB) is about its blobs' size"


# --- booted ---------------------------------------------------------------------------------------------

@pytest.mark.vm
@pytest.mark.root
def test_v1_boots_runs_nbc_and_reads_the_images_disk(update_images: UpdateImages, images_disk: ImagesDisk,
                                                     v1_tree: Path, tmp_path: Path) -> None:
    """Direct-kernel boot of v1 with the images disk as /dev/vdb: nbc and nbc-tui run on the booted system,
    the disk mounts read-only by its label, and nbc-tui stages v2 from it (every blob verified), offline."""
    root = _root_disk(v1_tree, tmp_path / "root.img")
    moddir = v1_tree / "usr/lib/modules" / update_images.kver
    log = tmp_path / "console.log"
    before = images_disk.path.stat().st_mtime_ns
    with booted(root, log=log, timeout=BOOT_TIMEOUT, kernel=moddir / "vmlinuz", initrd=moddir / "initramfs.img",
                append="root=/dev/vda console=ttyS0 rw", readonly_disks=[images_disk.path], interactive=True) as vm:
        report = read_report(vm, BOOT_TIMEOUT)
        _login(vm)
        vm.send("nbc --version; nbc-tui --help >/dev/null && echo HELP-OK-$((40 + 2))\r")
        vm.wait_for(r"HELP-OK-42", 120)
        vm.send(f"{images_disk.mount_command} && findmnt -n -o OPTIONS {images_disk.mountpoint} | cut -c1-2 "
                f"| sed s/^/MNT-/\r")
        mounted = vm.wait_for(r"MNT-(r[ow])", 60)
        vm.send(f"nbc-tui download --image {images_disk.refs[V2]} --for-install --json; echo DL-RC=$?\r")
        rc = vm.wait_for(r"DL-RC=(\d+)", 600)
        print(f"v1 direct-kernel boot: staged v2 from the images disk after {vm.elapsed:.0f} s (console: {log})")
        console = _plain(vm.console())
    assert report["version"] == "1", report
    assert re.search(r"^nbc-tui 0\.1\.0$", console, re.MULTILINE), console[-2000:]
    assert mounted.group(1) == "ro"
    assert rc.group(1) == "0", console[-3000:]
    assert update_images.digests[V2] in console
    assert images_disk.path.stat().st_mtime_ns == before, "a read-only mount leaves the shared disk untouched"


@pytest.mark.vm
@pytest.mark.root
def test_v3_health_reaches_userspace_then_reboots(update_images: UpdateImages, tmp_path: Path) -> None:
    tree = unpack_tag(update_images, V3_HEALTH, tmp_path / "tree")
    root = _root_disk(tree, tmp_path / "root.img")
    moddir = tree / "usr/lib/modules" / update_images.kver
    log = tmp_path / "console.log"
    # systemd.wants= pulls boot-complete.target in, as whatever marks a boot good does on an installed system.
    with booted(root, log=log, timeout=BOOT_TIMEOUT, kernel=moddir / "vmlinuz", initrd=moddir / "initramfs.img",
                append="root=/dev/vda console=ttyS0 rw systemd.wants=boot-complete.target") as vm:
        report = read_report(vm, BOOT_TIMEOUT)
        vm.wait_for(HEALTH_FAIL_MARKER, BOOT_TIMEOUT)
        vm.process.wait(BOOT_TIMEOUT)  # -no-reboot: the guest's reboot ends QEMU
        print(f"v3-health: failed and rebooted {vm.elapsed:.0f} s after start (console: {log})")
        console = _plain(vm.console())
    assert report["version"] == "3-health", report
    # systemd shortens unit names to the console's width: match the descriptions.
    assert re.search(r"\[FAILED\] Failed to start .*a health check that always fails", console), console[-3000:]
    assert re.search(r"Dependency failed for .*Boot Completion Check", console), console[-3000:]
    assert not re.search(r"Reached target .*Boot Completion Check", console), console[-3000:]
    assert "reboot: Restarting system" in console, console[-3000:]


@pytest.mark.vm
@pytest.mark.root
def test_v3_noinit_panics_right_after_the_switch_root(update_images: UpdateImages, tmp_path: Path) -> None:
    tree = unpack_tag(update_images, V3_NOINIT, tmp_path / "tree")
    root = _root_disk(tree, tmp_path / "root.img")
    moddir = tree / "usr/lib/modules" / update_images.kver
    log = tmp_path / "console.log"
    with booted(root, log=log, timeout=BOOT_TIMEOUT, kernel=moddir / "vmlinuz", initrd=moddir / "initramfs.img",
                append="root=/dev/vda console=ttyS0 rw panic=5") as vm:
        vm.wait_for(NOINIT_MARKER, BOOT_TIMEOUT)
        vm.process.wait(120)  # panic=5, -no-reboot: the reset ends QEMU
        print(f"v3-noinit: panicked and reset {vm.elapsed:.0f} s after start (console: {log})")
        console = _plain(vm.console())
    assert "Kernel panic - not syncing: Attempted to kill init!" in console, console[-3000:]
    assert "NBC-REPORT" not in console and "login:" not in console


# --- helpers --------------------------------------------------------------------------------------------

def _variants_of(images: UpdateImages) -> ImageVariants:
    cache = images.layout.parent.parent
    return build_variants(build_debian_image(cache), cache)


def _built_from_this_checkout(images: UpdateImages) -> bool:
    """The entry's key is still the one this checkout's files give (nobody edited nbc_tui/ since)."""
    entry = images.layout.parent
    info = json.loads((entry / "info.json").read_text())
    key = update_images_key(entry.parent / info["variants"] / "layout", entry.parent / info["wheels"])
    return entry.name == f"{ENTRY_PREFIX}{key}"


def _plain(console: str) -> str:
    """The console without colour and cursor escapes."""
    return re.sub(r"\x1b\[[0-9;=?]*[A-Za-z]", "", console)


def _members(blob: Path) -> list[str]:
    return subprocess.run(["tar", "--zstd", "-tf", str(blob)], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _chroot(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root", "COLUMNS": "100"}
    result = subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True, env=env, timeout=120,
                            check=False)
    assert result.returncode == 0, f"{argv}: {result.stderr[-2000:]}"
    return result


def _resolve_in(root: Path, path: str) -> Path:
    """Resolve ``path`` inside ``root`` the way the booted system would (absolute links stay inside)."""
    current = root
    parts = list(Path(path).parts)
    for _ in range(40):
        if not parts:
            return current
        part = parts.pop(0)
        candidate = current / part
        if candidate.is_symlink():
            target = os.readlink(candidate)
            parts = list(Path(target).parts) + parts
            if target.startswith("/"):
                current, parts = root, parts[1:]
        else:
            current = candidate
    raise AssertionError(f"symlink loop at {path}")


def _root_disk(tree: Path, disk: Path) -> Path:
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-L", "root", "-d", str(tree), str(disk), "4G"], check=True)
    return disk


def _login(vm: Vm) -> None:
    vm.wait_for(r"login:", BOOT_TIMEOUT)
    vm.send("root\r")
    vm.wait_for(r"Password:", 60)
    vm.send(TEST_ROOT_PASSWORD + "\r")
    vm.wait_for(r"root@\S+:~# ", 60)


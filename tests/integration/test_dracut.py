"""The 95etc-overlay dracut module: installing it, its module-setup.sh, and its hook run for real.

The hook is sourced the way dracut sources it, by bash and by dash, against a fake sysroot in a temp
dir, with dracut-lib's getarg/getargbool/info/warn replaced by small shell functions that read a
command line given by the test. The root tests really mount /var (a loop device) and the overlay.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbc_tui.backend.system import dracut

MODULE = dracut.module_source()
HOOK = MODULE / "etc-overlay-mount.sh"

# Stand-ins for dracut-lib.sh, enough for the hook: the command line comes from $CMDLINE.
DRACUT_LIB_STUBS = r"""
getcmdline() { echo "$CMDLINE"; }
getarg() {
    _want="${1%=}"
    for _a in $CMDLINE; do
        case "$_a" in
            "$_want="*) echo "${_a#*=}"; return 0 ;;
            "$_want") return 0 ;;
        esac
    done
    return 1
}
getargbool() {
    _v=$(getarg "$2") || { [ "$1" = 1 ]; return; }
    case "$_v" in 0|no|off|false) return 1 ;; esac
    return 0
}
info() { echo "I: $*"; }
warn() { echo "W: $*"; }
"""


def run_hook(sysroot: Path, cmdline: str, *, shell: str = "bash", path_dir: Path | None = None,
             ) -> subprocess.CompletedProcess[str]:
    env = {"PATH": (f"{path_dir}:" if path_dir else "") + "/usr/sbin:/usr/bin:/sbin:/bin",
           "NEWROOT": str(sysroot), "CMDLINE": cmdline}
    script = DRACUT_LIB_STUBS + f'. "{HOOK}"\necho "hook-returned $?"\n'
    return subprocess.run([shell, "-c", script], env=env, capture_output=True, text=True, timeout=120)


def sh(*argv: str | Path) -> str:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=True).stdout


def run_module_function(function: str, *, sysroot: Path | None = None, extra: str = "") -> str:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "moddir": str(MODULE)}
    if sysroot is not None:
        env["dracutsysrootdir"] = str(sysroot)
    script = (
        'inst_hook() { echo "inst_hook $*"; }\n'
        'inst_multiple() { echo "inst_multiple $*"; }\n'
        'instmods() { echo "instmods $*"; }\n'
        f'{extra}\n. "{MODULE}/module-setup.sh"\n{function}\necho "rc=$?"\n'
    )
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                          check=True).stdout


# -- installing the module --------------------------------------------------------------------------


def test_install_etc_overlay_module(tmp_path: Path) -> None:
    dracut.install_etc_overlay_module(tmp_path)
    dest = tmp_path / dracut.MODULE_DIR
    assert dracut.MODULE_DIR == "usr/lib/dracut/modules.d/95etc-overlay"
    assert sorted(p.name for p in dest.iterdir()) == ["etc-overlay-mount.sh", "module-setup.sh"]
    for name in dracut.MODULE_FILES:
        assert stat.S_IMODE((dest / name).stat().st_mode) == 0o755
        assert (dest / name).read_bytes() == (MODULE / name).read_bytes()
    # Again, over the image's own copy: replaced, not appended to.
    (dest / "module-setup.sh").write_text("old")
    dracut.install_etc_overlay_module(tmp_path)
    assert (dest / "module-setup.sh").read_bytes() == (MODULE / "module-setup.sh").read_bytes()


def test_scripts_parse_in_bash_and_dash() -> None:
    for shell in ("bash", "sh"):
        for script in (HOOK, MODULE / "module-setup.sh"):
            subprocess.run([shell, "-n", str(script)], check=True)


# -- module-setup.sh ---------------------------------------------------------------------------------


def test_depends_on_crypt_only_when_its_tools_are_there(tmp_path: Path) -> None:
    assert run_module_function("depends", sysroot=tmp_path) == "rootfs-block\nrc=0\n"
    tool = tmp_path / "usr/sbin/cryptsetup"
    tool.parent.mkdir(parents=True)
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert run_module_function("depends", sysroot=tmp_path) == "crypt rootfs-block\nrc=0\n"


def test_depends_on_crypt_with_systemd_cryptsetup(tmp_path: Path) -> None:
    tool = tmp_path / "usr/lib/systemd/systemd-cryptsetup"
    tool.parent.mkdir(parents=True)
    tool.write_text("")
    tool.chmod(0o755)
    out = run_module_function("depends", sysroot=tmp_path, extra="systemdutildir=/usr/lib/systemd")
    assert out == "crypt rootfs-block\nrc=0\n"


def test_check_install_and_installkernel() -> None:
    assert run_module_function("check") == "rc=0\n"
    assert run_module_function("installkernel") == "instmods overlay\nrc=0\n"
    out = run_module_function("install").splitlines()
    assert out[0] == f"inst_hook pre-pivot 50 {MODULE}/etc-overlay-mount.sh"
    assert out[1] == "inst_multiple mount umount mkdir grep"
    assert out[-1] == "rc=0"


# -- the hook, without mounting anything ---------------------------------------------------------------


@pytest.fixture
def fake_sysroot(tmp_path: Path) -> Path:
    root = tmp_path / "sysroot"
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text('NAME="Test"\n')
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "var").mkdir()
    return root


@pytest.fixture
def quiet_path(tmp_path: Path) -> Path:
    """sleep and udevadm that return at once, so a missing device does not stall the test."""
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("sleep", "udevadm"):
        (d / name).write_text("#!/bin/sh\nexit 0\n")
        (d / name).chmod(0o755)
    return d


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_hook_does_nothing_without_rd_etc_overlay(fake_sysroot: Path, shell: str) -> None:
    before = sorted(p.name for p in fake_sysroot.iterdir())
    done = run_hook(fake_sysroot, "root=UUID=x ro rd.etc.overlay=0", shell=shell)
    assert "hook-returned 0" in done.stdout
    assert "rd.etc.overlay is not set" in done.stdout
    assert sorted(p.name for p in fake_sysroot.iterdir()) == before


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_hook_without_var_leaves_etc_alone(fake_sysroot: Path, quiet_path: Path, shell: str) -> None:
    done = run_hook(fake_sysroot, "rd.etc.overlay=1 rd.etc.overlay.var=UUID=0000-missing", shell=shell,
                    path_dir=quiet_path)
    assert done.stdout.splitlines()[-1] == "hook-returned 0"
    assert "W: etc-overlay: /var device 'UUID=0000-missing' not found" in done.stdout
    assert sorted(p.name for p in (fake_sysroot / "etc").iterdir()) == ["os-release", "passwd"]
    assert not (fake_sysroot / ".etc.lower").exists()
    assert not (fake_sysroot / "var/lib").exists()


# -- the hook for real: a var filesystem on a loop device, overlayfs, a read-only root ------------------


def mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1] == prefix or line.split()[1].startswith(prefix + "/")]


def mount_options(where: Path) -> tuple[str, list[str]]:
    """(fstype, options) of the last mount at ``where``."""
    found = ("", [""])
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if fields[1] == str(where):
            found = (fields[2], fields[3].split(","))
    return found


@pytest.fixture
def real_sysroot(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs sysroot holding an image's /etc, cleaned up (every mount under it, then itself)."""
    root = tmp_path / "sysroot"
    root.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", root)
    try:
        (root / "etc").mkdir()
        (root / "etc/os-release").write_text('NAME="Test"\n')
        (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
        (root / "var").mkdir()
        yield root
    finally:
        for where in reversed(mounts_under(root)):
            subprocess.run(["umount", where], check=False)


@pytest.fixture
def var_device(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(loop device, filesystem UUID) of a fresh var filesystem; the type comes from the test's param."""
    fstype = getattr(request, "param", "ext4")
    backing = tmp_path / "var.img"
    with backing.open("wb") as f:
        f.truncate(160 * 1024 * 1024)
    sh(f"mkfs.{fstype}", *(["-q", "-F"] if fstype == "ext4" else ["-q", "-f"]), "-L", "var", backing)
    uuid = sh("blkid", "-p", "-s", "UUID", "-o", "value", backing).strip()
    dev = sh("losetup", "--find", "--show", backing).strip()
    try:
        yield dev, uuid
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def overlay_state(root: Path) -> dict[str, object]:
    fstype, options = mount_options(root / "etc")
    return {
        "etc": fstype,
        "lowerdir": next((o.split("=", 1)[1] for o in options if o.startswith("lowerdir=")), None),
        "lower_hidden": mount_options(root / ".etc.lower")[0] == "tmpfs",
        "var": mount_options(root / "var")[0],
        "upper": sorted(p.name for p in (root / "var/lib/nbc/etc-overlay/upper").iterdir()),
    }


@pytest.mark.root
@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_hook_uses_a_populated_lower_as_is(real_sysroot: Path, var_device: tuple[str, str],
                                           shell: str) -> None:
    _dev, uuid = var_device
    root = real_sysroot
    shutil.copytree(root / "etc", root / ".etc.lower")
    (root / ".etc.lower/installed-marker").write_text("from install\n")
    done = run_hook(root, f"root=UUID=r ro rd.etc.overlay=1 rd.etc.overlay.var=UUID={uuid}", shell=shell)
    assert done.stdout.splitlines()[-1] == "hook-returned 0", done.stdout + done.stderr
    assert overlay_state(root) == {"etc": "overlay", "lowerdir": f"{root}/.etc.lower",
                                   "lower_hidden": True, "var": "ext4", "upper": []}
    # /etc shows the lower layer (not the root's own /etc), and changes land in upper only.
    assert (root / "etc/installed-marker").read_text() == "from install\n"
    (root / "etc/hostname").write_text("box\n")
    assert (root / "var/lib/nbc/etc-overlay/upper/hostname").read_text() == "box\n"


@pytest.mark.root
@pytest.mark.parametrize("var_device", ["btrfs"], indirect=True)
def test_hook_seeds_an_empty_lower_from_etc_on_a_read_only_root(real_sysroot: Path,
                                                                var_device: tuple[str, str]) -> None:
    dev, _ = var_device
    root = real_sysroot
    (root / ".etc.lower").mkdir()
    sh("mount", "-o", "remount,ro", root)
    done = run_hook(root, f"root=UUID=r ro rd.etc.overlay=1 rd.etc.overlay.var={dev}")
    assert done.stdout.splitlines()[-1] == "hook-returned 0", done.stdout + done.stderr
    assert overlay_state(root) == {"etc": "overlay", "lowerdir": f"{root}/.etc.lower",
                                   "lower_hidden": True, "var": "btrfs", "upper": []}
    assert "ro" in mount_options(root)[1]  # the root is read-only again
    assert sorted(p.name for p in (root / "etc").iterdir()) == ["os-release", "passwd"]
    # Under the tmpfs that hides it, the lower layer now holds what /etc held.
    sh("umount", root / "etc")
    sh("umount", root / ".etc.lower")
    assert sorted(p.name for p in (root / ".etc.lower").iterdir()) == ["os-release", "passwd"]


@pytest.mark.root
def test_hook_keeps_an_already_mounted_var(real_sysroot: Path, var_device: tuple[str, str]) -> None:
    dev, _ = var_device
    root = real_sysroot
    sh("mount", dev, root / "var")
    (root / ".etc.lower").mkdir()
    shutil.copy(root / "etc/passwd", root / ".etc.lower/passwd")
    done = run_hook(root, "rd.etc.overlay=1")  # no rd.etc.overlay.var: /var is already there
    assert done.stdout.splitlines()[-1] == "hook-returned 0", done.stdout + done.stderr
    assert overlay_state(root)["etc"] == "overlay"
    assert mounts_under(root).count(str(root / "var")) == 1


# -- looking into an initramfs -----------------------------------------------------------------------


def make_cpio(tmp_path: Path, names: list[str]) -> bytes:
    tree = tmp_path / "tree"
    for name in names:
        p = tree / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(name)
    listing = "\n".join(
        str(p.relative_to(tree)) for p in sorted(tree.rglob("*"))) + "\n"
    return subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], input=listing.encode(), cwd=tree,
                          capture_output=True, check=True).stdout


@pytest.mark.parametrize("hook", [
    "usr/lib/dracut/hooks/pre-pivot/50-etc-overlay-mount.sh",  # dracut 059 (Debian 12)
    "var/lib/dracut/hooks/pre-pivot/50etc-overlay-mount.sh",  # older dracut
])
def test_initramfs_has_etc_overlay(tmp_path: Path, hook: str) -> None:
    with_hook = make_cpio(tmp_path / "a", ["usr/bin/mount", hook])
    without = make_cpio(tmp_path / "b", ["usr/bin/mount", "usr/lib/dracut/hooks/pre-pivot/.keep",
                                         "usr/lib/dracut/modules.d/95etc-overlay/module-setup.sh"])
    img = tmp_path / "initramfs.img"
    img.write_bytes(with_hook)
    assert dracut.initramfs_has_etc_overlay(img)
    img.write_bytes(gzip.compress(with_hook))
    assert dracut.initramfs_has_etc_overlay(img)
    img.write_bytes(gzip.compress(without))
    assert not dracut.initramfs_has_etc_overlay(img)
    assert not dracut.initramfs_has_etc_overlay(tmp_path / "missing.img")
    img.write_bytes(b"not an initramfs at all")
    assert not dracut.initramfs_has_etc_overlay(img)


# -- regeneration: what can be checked without a full image --------------------------------------------


def test_regenerate_needs_dracut_in_the_image(tmp_path: Path) -> None:
    from nbc_tui.backend.errors import InputError
    from nbc_tui.backend.runner import RunContext

    (tmp_path / "usr/lib/modules/6.1").mkdir(parents=True)
    with pytest.raises(InputError, match="no dracut"):
        dracut.regenerate_initramfs(tmp_path, "6.1", ctx=RunContext())
    (tmp_path / "usr/bin").mkdir()
    (tmp_path / "usr/bin/dracut").write_text("#!/bin/sh\n")
    assert dracut.find_dracut(tmp_path) == "/usr/bin/dracut"
    dry = dracut.regenerate_initramfs(tmp_path, "6.1", ctx=RunContext(dry_run=True))
    assert dry == tmp_path / "usr/lib/modules/6.1/initramfs.img"
    assert not dry.exists() and not (tmp_path / "dev").exists()


@pytest.mark.root
def test_regenerate_binds_and_always_unbinds(tmp_path: Path) -> None:
    """A stand-in dracut (a static shell script run by the host's busybox-free sh) that fails: the bind
    mounts must still come undone."""
    from nbc_tui.backend.errors import CommandFailed
    from nbc_tui.backend.runner import RunContext

    root = tmp_path / "target"
    (root / "usr/lib/modules/6.1").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    # No shell in this chroot: chroot fails to run dracut (exit 127), after the binds were made.
    (root / "usr/bin/dracut").write_text("#!/bin/sh\nexit 1\n")
    os.chmod(root / "usr/bin/dracut", 0o755)
    with pytest.raises(CommandFailed) as info:
        dracut.regenerate_initramfs(root, "6.1", ctx=RunContext(), modules=["etc-overlay", "crypt", "tpm2-tss"])
    assert "--add etc-overlay --add crypt --add tpm2-tss --kver 6.1" in info.value.message
    assert mounts_under(root) == []
    assert (root / "var/tmp").is_dir()


def test_a_rebuild_compresses_fast_unless_the_image_says_how(tmp_path: Path) -> None:
    root = tmp_path / "target"
    (root / "usr/bin").mkdir(parents=True)
    assert dracut.compress_choice(root) is None  # no gzip in the image: dracut picks
    (root / "usr/bin/gzip").write_bytes(b"\x7fELF")
    assert dracut.compress_choice(root) == "gzip -1 -n"
    (root / "usr/bin/pigz").write_bytes(b"\x7fELF")
    assert dracut.compress_choice(root) == "pigz -1 -n"
    (root / "etc/dracut.conf.d").mkdir(parents=True)
    (root / "etc/dracut.conf.d/10-debian.conf").write_text('# compress="xz"\nhostonly="no"\n')
    assert dracut.compress_choice(root) == "pigz -1 -n"  # a comment is not a setting
    (root / "etc/dracut.conf.d/90-mine.conf").write_text('compress="zstd"\n')
    assert dracut.compress_choice(root) is None
    # lz4 and lzo archives cannot be listed back, so the rebuild's check would fail after the wipe: overridden
    for unlistable in ('compress="lz4"', "compress=lzo", 'compress="/usr/bin/lz4 -l -9"'):
        (root / "etc/dracut.conf.d/90-mine.conf").write_text(f"{unlistable}\n")
        assert dracut.configured_compressor(root) in dracut.UNLISTABLE_COMPRESSORS
        assert dracut.compress_choice(root) == "pigz -1 -n"
    for fast in ("usr/bin/pigz", "usr/bin/gzip"):
        (root / fast).unlink()
    assert dracut.compress_choice(root) is None  # nothing else to pick: dracut fails its own way
    (root / "usr/bin/zstd").write_bytes(b"\x7fELF")
    assert dracut.compress_choice(root) == "zstd"

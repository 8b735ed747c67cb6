"""The etc-overlay hook appended to an image's dracut initramfs: when it can be, the archive it adds (read by
GNU cpio and by our own reader), and the appended file (compressed archive, zero padding, the hook archive).
The kernel unpacking it and booting with the overlay is proven in the VM tier (tests/vm/test_boot.py)."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

from nbc_tui.backend.system.dracut import HOOK_SCRIPT, module_source
from nbc_tui.backend.system.initramfs import initramfs_contains
from nbc_tui.backend.system.initramfs_hook import (
    append_archive,
    append_blocker,
    hook_archive,
    hook_member,
    newc_archive,
)
from nbc_tui.backend.system.initramfs_needs import ETC_OVERLAY_GAP, initramfs_gaps, initramfs_member_names

KVER = "6.1.0-50-amd64"
DRACUT_059 = frozenset({
    ".", "usr", "usr/bin", "usr/bin/mount", "usr/bin/umount", "usr/bin/mkdir", "usr/lib", "usr/lib/dracut-lib.sh",
    "usr/lib/dracut/hooks", "usr/lib/dracut/hooks/pre-pivot", "usr/lib/dracut/hooks/pre-pivot/10-overlay-mount.sh",
    "usr/lib/dracut/hooks/cmdline/30-parse-crypt.sh",
    f"usr/lib/modules/{KVER}/kernel/fs/overlayfs/overlay.ko",
})
OLD_DRACUT = frozenset({
    "bin/mount", "bin/umount", "bin/mkdir", "lib/dracut-lib.sh", "var/lib/dracut/hooks/pre-pivot",
    "var/lib/dracut/hooks/cmdline/30parse-crypt.sh", f"lib/modules/{KVER}/kernel/fs/overlayfs/overlay.ko.xz",
})


def test_a_dracut_initramfs_with_what_the_hook_runs_takes_it() -> None:
    assert append_blocker(DRACUT_059, KVER) is None
    assert hook_member(DRACUT_059) == f"usr/lib/dracut/hooks/pre-pivot/50-{HOOK_SCRIPT}"
    # Before dracut 057 hooks had no dash, under var/lib; a compressed module counts.
    assert append_blocker(OLD_DRACUT, KVER) is None
    assert hook_member(OLD_DRACUT) == f"var/lib/dracut/hooks/pre-pivot/50{HOOK_SCRIPT}"


@pytest.mark.parametrize(("removed", "why"), [
    ("usr/lib/dracut/hooks/pre-pivot", "not a dracut initramfs"),
    ("usr/lib/dracut-lib.sh", "no dracut-lib.sh"),
    ("usr/bin/umount", "lacks umount"),
    (f"usr/lib/modules/{KVER}/kernel/fs/overlayfs/overlay.ko", f"lacks the overlay kernel module of {KVER}"),
])
def test_what_sends_an_initramfs_to_the_full_rebuild(removed: str, why: str) -> None:
    members = {name for name in DRACUT_059 if name != removed and not name.startswith(f"{removed}/")}
    blocker = append_blocker(members, KVER)
    assert blocker is not None and why in blocker
    assert "overlay kernel module" in (append_blocker(DRACUT_059, "6.2.0-1-amd64") or "")


@pytest.mark.skipif(shutil.which("cpio") is None, reason="needs GNU cpio")
def test_the_archive_is_newc_that_gnu_cpio_reads_back(tmp_path: Path) -> None:
    archive = newc_archive([("usr/lib/a.sh", 0o755, b"echo a\n"), ("usr/lib/bee", 0o644, b"12345")])
    assert len(archive) % 4 == 0
    listing = subprocess.run(["cpio", "-t", "-v", "--quiet"], input=archive, capture_output=True, check=True)
    lines = listing.stdout.decode().splitlines()
    assert [line.split()[-1] for line in lines] == ["usr/lib/a.sh", "usr/lib/bee"]
    assert lines[0].startswith("-rwxr-xr-x") and " root " in lines[0] and lines[1].startswith("-rw-r--r--")
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["cpio", "-i", "-d", "--quiet"], input=archive, cwd=out, check=True)
    assert (out / "usr/lib/a.sh").read_bytes() == b"echo a\n" and (out / "usr/lib/bee").read_bytes() == b"12345"


@pytest.mark.skipif(shutil.which("cpio") is None, reason="needs GNU cpio")
def test_appended_to_a_compressed_initramfs_the_hook_follows_it(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for member in sorted(DRACUT_059 - {"."}):
        path = tree / member
        if "." in path.name or path.name in ("mount", "umount", "mkdir"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(member)
        else:
            path.mkdir(parents=True, exist_ok=True)
    names = subprocess.run(["find", ".", "-mindepth", "1"], cwd=tree, capture_output=True, check=True).stdout
    main = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], input=names, cwd=tree, capture_output=True,
                          check=True).stdout
    initramfs = tmp_path / "initramfs.img"
    initramfs.write_bytes(gzip.compress(main) + b"\0\0\0")  # an odd length: the hook must start 4-aligned
    initramfs.chmod(0o600)
    members = initramfs_member_names(initramfs)
    assert initramfs_gaps(members, encrypted=False, tpm2=False) == [ETC_OVERLAY_GAP]
    before = initramfs.read_bytes()

    append_archive(initramfs, hook_archive(members))

    after = initramfs.read_bytes()
    assert after.startswith(before) and initramfs.stat().st_mode & 0o777 == 0o600
    start = len(before) + (-len(before) % 4)
    assert after[len(before):start] == b"\0" * (start - len(before)) and after[start:start + 6] == b"070701"
    assert initramfs_contains(initramfs, HOOK_SCRIPT)
    assert initramfs_gaps(initramfs_member_names(initramfs), encrypted=False, tpm2=False) == []
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["cpio", "-i", "-d", "--quiet"], input=after[start:], cwd=out, check=True)
    hook = out / hook_member(members)
    assert hook.read_bytes() == (module_source() / HOOK_SCRIPT).read_bytes()
    assert not list(tmp_path.glob(".initramfs.img.*")), "the temporary copy is gone"

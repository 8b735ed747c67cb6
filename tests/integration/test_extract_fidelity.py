"""Extraction fidelity on real ext4 filesystems: every entry compared with the expected tree.

The target is a loop-mounted ext4 root with a second ext4 mounted at its var (as on an installed disk).
Three layers (gzip, zstd, plain) cover files, directories, symlinks, hard links, devices, FIFOs, owners,
setuid/setgid/sticky, mtimes (files, symlinks, directories), xattrs (security.capability, user.*, binary
values, LIBARCHIVE-style), whiteouts, opaque whiteouts with same-layer entries before the marker, and
replacements of each kind by another.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nbc_tui.backend.engine import StepContext
from nbc_tui.backend.events import Event
from nbc_tui.backend.image.extract import extract_image
from nbc_tui.backend.image.opener import open_image
from nbc_tui.backend.image.scan import scan_image
from nbc_tui.backend.runner import RunContext
from nbc_tui.backend.steps.slot import SlotTarget, extract
from nbc_tui.backend.storage.esp import MountedEsp
from nbc_tui.backend.system.slots import Slot
from tests.support.oci import ImageSpec, Layer, TarBuilder, write_layout

pytestmark = pytest.mark.root

M = 1_600_000_000 * 10**9  # TarBuilder's default mtime, in ns
CAP = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_raw+ep
BIG = hashlib.shake_256(b"libx").digest(3 * (1 << 20) + 12345)  # spans several pipe frames


def sh(*argv: str | Path) -> None:
    subprocess.run([str(a) for a in argv], check=True, capture_output=True)


@dataclass
class Target:
    root: Path
    var: Path
    sentinel: Path


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    """A loop-mounted ext4 root with another ext4 at root/var, and a sentinel directory beside the root."""
    root, mounted = tmp_path / "root", []
    try:
        for name, where in (("root.img", root), ("var.img", root / "var")):
            img = tmp_path / name
            with img.open("wb") as f:
                f.truncate(256 << 20)
            sh("mkfs.ext4", "-q", "-F", "-I", "256", img)
            where.mkdir()
            sh("mount", "-o", "loop", img, where)  # autoclear: the loop device goes with the umount
            mounted.append(where)
        sentinel = tmp_path / "sentinel"
        (sentinel / "etc").mkdir(parents=True)
        (sentinel / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
        (sentinel / "outside").mkdir()
        yield Target(root, root / "var", sentinel)
    finally:
        for where in reversed(mounted):
            subprocess.run(["umount", str(where)], check=False)


def tree_state(top: Path) -> dict[str, Any]:
    """Everything observable about a tree, per path (names, contents, metadata)."""
    return {str(p.relative_to(top)): (p.lstat().st_mode, p.lstat().st_mtime_ns,
                                       p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(top.rglob("*"))} | {".": top.lstat().st_mtime_ns}


def snapshot(root: Path) -> tuple[dict[str, dict[str, Any]], list[list[str]]]:
    """Every entry below root (the lost+found of each filesystem excepted) and the hard-link groups."""
    entries: dict[str, dict[str, Any]] = {}
    inodes: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir in (".", "var"):
            with contextlib.suppress(ValueError):
                dirnames.remove("lost+found")
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(path)
            info: dict[str, Any] = {"mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
                                    "mtime": st.st_mtime_ns}
            xattrs = {n: os.getxattr(path, n, follow_symlinks=False)
                      for n in os.listxattr(path, follow_symlinks=False)}
            if xattrs:
                info["xattrs"] = xattrs
            if stat.S_ISDIR(st.st_mode):
                info["type"] = "dir"
            elif stat.S_ISLNK(st.st_mode):
                info |= {"type": "symlink", "target": os.readlink(path)}
                del info["mode"]  # always 0777 on Linux
            elif stat.S_ISREG(st.st_mode):
                data = Path(path).read_bytes()
                info |= {"type": "file", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                if st.st_nlink > 1:
                    inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info |= {"type": "chr" if stat.S_ISCHR(st.st_mode) else "blk",
                         "dev": (os.major(st.st_rdev), os.minor(st.st_rdev))}
            elif stat.S_ISFIFO(st.st_mode):
                info["type"] = "fifo"
            entries[rel] = info
    return entries, sorted(sorted(g) for g in inodes.values())


def D(mode: int = 0o755, uid: int = 0, gid: int = 0, mtime: int = M, xattrs: dict | None = None) -> dict:
    return {"type": "dir", "mode": mode, "uid": uid, "gid": gid, "mtime": mtime} | (
        {"xattrs": xattrs} if xattrs else {})


def F(data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0, mtime: int = M,
      xattrs: dict | None = None) -> dict:
    return {"type": "file", "mode": mode, "uid": uid, "gid": gid, "mtime": mtime, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest()} | ({"xattrs": xattrs} if xattrs else {})


def L(target: str, uid: int = 0, gid: int = 0, mtime: int = M) -> dict:
    return {"type": "symlink", "target": target, "uid": uid, "gid": gid, "mtime": mtime}


def DEV(kind: str, major: int, minor: int, mode: int) -> dict:
    return {"type": kind, "dev": (major, minor), "mode": mode, "uid": 0, "gid": 0, "mtime": M}


def libarchive_file(builder: TarBuilder, name: str, data: bytes, xattrs: dict[str, bytes]) -> TarBuilder:
    """An entry whose xattrs are written the way bsdtar does: LIBARCHIVE.xattr.<name>=<base64>."""
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = len(data), M // 10**9, 0o644
    ti.pax_headers = {f"LIBARCHIVE.xattr.{k}": base64.b64encode(v).decode() for k, v in xattrs.items()}
    builder.tar.addfile(ti, io.BytesIO(data))
    return builder


def layers() -> list[Layer]:
    one = (TarBuilder()
           .dir("etc").dir("usr").dir("usr/bin").dir("usr/lib").dir("usr/share").dir("dev").dir("run")
           .dir("tmp", mode=0o1777).dir("srv", mode=0o2775, gid=50).dir("opt").dir("opt/app")
           .dir("opt/app/sub").dir("var").dir("var/lib").dir("var/cache").dir("replace").dir("replace/d2f")
           .dir("replace/d2l").dir("wh").dir("wh/gonedir").dir("keepmeta", mode=0o700, uid=3, gid=3)
           .dir("usr/share/xdir", xattrs={"user.dir": b"1"})
           .file("etc/hostname", b"base\n")
           .file("etc/frac", b"f", mtime=1_600_000_000.5)  # type: ignore[arg-type]  # PAX mtime=...5
           .file("usr/bin/ping", b"\x7fELF ping", mode=0o4755,
                 xattrs={"security.capability": CAP, "user.note": b"\x00\xffbin"})
           .file("usr/bin/tool", b"tool", mode=0o2755, uid=1000, gid=1001)
           .file("usr/lib/libx.so.1", BIG, mode=0o755, mtime=1_500_000_000)
           .symlink("usr/lib/libx.so", "libx.so.1", uid=5, gid=6, mtime=1_400_000_000)
           .hardlink("usr/bin/ping-hl", "usr/bin/ping").hardlink("usr/bin/ping-hl2", "usr/bin/ping")
           .device("dev/null", "char", 1, 3, mode=0o666).device("dev/loop9", "block", 7, 9, mode=0o660)
           .fifo("run/initctl", mode=0o600)
           .file("opt/app/old1", b"old1").file("opt/app/sub/old2", b"old2")
           .file("var/lib/data", b"lower var").file("var/cache/old", b"c")
           .file("replace/d2f/x", b"x").file("replace/f2d", b"f").file("replace/f2l", b"f")
           .symlink("replace/l2d", "elsewhere")
           .file("wh/gone", b"g").file("wh/gonedir/x", b"x").file("wh/keep", b"k")
           .file("keepmeta/inner", b"inner")
           .symlink("lib", "usr/lib")
           .symlink("etc/tool", "/usr/bin/tool")  # an absolute link as an entry is fine (not gone through)
           .bytes())
    two = (TarBuilder()
           .file("opt/app/new1", b"n1").file("opt/app/sub/new2", b"n2")
           .opaque("opt/app")  # after new1 and sub/new2 of this layer: they survive
           .file("opt/app/new3", b"n3")
           .file("replace/d2f", b"now a file").dir("replace/f2d").file("replace/f2d/inner", b"i")
           .symlink("replace/d2l", "d2f").dir("replace/l2d")
           .whiteout("wh/gone").whiteout("wh/gonedir")
           .dir("keepmeta", mode=0o750, uid=4, gid=4, mtime=1_650_000_000)
           .file("lib/libz.so.2", b"z")                  # through the symlink lib -> usr/lib
           .file("usr/bin/ping-hl", b"replaced")        # unlinked first: ping keeps its content
           .hardlink("usr/bin/tool-hl", "usr/bin/tool")  # to a lower layer's file
           .whiteout("var/lib/data").file("var/lib/new", b"upper var")
           .file("etc/hostname", b"upper\n", mtime=1_700_000_000)
           .bytes())
    three = libarchive_file(
        TarBuilder().symlink("replace/f2l", "../etc/hostname").opaque("var/cache").file("var/cache/new", b"n"),
        "etc/motd", b"hi\n", {"user.lib": b"\x01\x02\xff"}).bytes()
    return [Layer(one, "gzip"), Layer(two, "zstd"), Layer(three, "tar")]


EXPECTED = {
    "etc": D(), "usr": D(), "usr/bin": D(), "usr/lib": D(), "usr/share": D(), "dev": D(), "run": D(),
    "tmp": D(0o1777), "srv": D(0o2775, gid=50), "opt": D(), "opt/app": D(), "opt/app/sub": D(),
    "var": D(), "var/lib": D(), "var/cache": D(), "replace": D(), "wh": D(),
    "keepmeta": D(0o750, uid=4, gid=4, mtime=1_650_000_000 * 10**9),
    "usr/share/xdir": D(xattrs={"user.dir": b"1"}),
    "etc/hostname": F(b"upper\n", mtime=1_700_000_000 * 10**9),
    "etc/frac": F(b"f", mtime=M + 500_000_000),
    "etc/motd": F(b"hi\n", xattrs={"user.lib": b"\x01\x02\xff"}),
    "usr/bin/ping": F(b"\x7fELF ping", 0o4755, xattrs={"security.capability": CAP, "user.note": b"\x00\xffbin"}),
    "usr/bin/ping-hl2": F(b"\x7fELF ping", 0o4755,
                          xattrs={"security.capability": CAP, "user.note": b"\x00\xffbin"}),
    "usr/bin/ping-hl": F(b"replaced"),
    "usr/bin/tool": F(b"tool", 0o2755, uid=1000, gid=1001),
    "usr/bin/tool-hl": F(b"tool", 0o2755, uid=1000, gid=1001),
    "usr/lib/libx.so.1": F(BIG, 0o755, mtime=1_500_000_000 * 10**9),
    "usr/lib/libx.so": L("libx.so.1", uid=5, gid=6, mtime=1_400_000_000 * 10**9),
    "usr/lib/libz.so.2": F(b"z"),
    "lib": L("usr/lib"), "etc/tool": L("/usr/bin/tool"),
    "dev/null": DEV("chr", 1, 3, 0o666), "dev/loop9": DEV("blk", 7, 9, 0o660),
    "run/initctl": {"type": "fifo", "mode": 0o600, "uid": 0, "gid": 0, "mtime": M},
    "opt/app/new1": F(b"n1"), "opt/app/sub/new2": F(b"n2"), "opt/app/new3": F(b"n3"),
    "var/lib/new": F(b"upper var"), "var/cache/new": F(b"n"),
    "replace/d2f": F(b"now a file"), "replace/f2d": D(), "replace/f2d/inner": F(b"i"),
    "replace/d2l": L("d2f"), "replace/l2d": D(), "replace/f2l": L("../etc/hostname"),
    "wh/keep": F(b"k"), "keepmeta/inner": F(b"inner"),
}


def test_extraction_is_faithful_entry_by_entry(target: Target, tmp_path: Path) -> None:
    write_layout(tmp_path / "layout", [ImageSpec(layers())])
    source = open_image(f"oci:{tmp_path / 'layout'}")
    inventory = scan_image(source)
    progress: list[tuple[int, int]] = []
    stats = extract_image(source, target.root, ctx=RunContext(),
                          on_progress=lambda d, t: progress.append((d, t)))
    entries, links = snapshot(target.root)
    assert entries == EXPECTED
    assert links == [["usr/bin/ping", "usr/bin/ping-hl2"], ["usr/bin/tool", "usr/bin/tool-hl"]]
    assert inventory.entries == len(EXPECTED)
    assert stats.bytes_in == sum(d.size for d in source.layers)
    assert progress[-1] == (stats.bytes_in, stats.bytes_in)
    assert stats.warnings == []


def test_a_second_image_over_the_first_replaces_and_keeps_var_mount(target: Target, tmp_path: Path) -> None:
    """The var mount point survives a whiteout of /var: emptied, kept, and reported (the install's extraction
    step says it as a warning)."""
    first = TarBuilder().dir("var").file("var/a", b"a").dir("etc").bytes()
    second = TarBuilder().whiteout("var").dir("var", mode=0o700).file("var/b", b"b").bytes()
    write_layout(tmp_path / "layout", [ImageSpec([Layer(first, "gzip"), Layer(second, "gzip")])])
    events: list[Event] = []
    slot = SlotTarget(Slot.A, target.root, target.root, MountedEsp(tmp_path), "", "", "", "ext4", ())
    with contextlib.ExitStack() as stack:
        extract(slot, open_image(f"oci:{tmp_path / 'layout'}"), StepContext(RunContext(), events.append, stack))
    assert os.path.ismount(target.var)
    assert sorted(p.name for p in target.var.iterdir()) == ["b"]
    assert stat.S_IMODE(target.var.stat().st_mode) == 0o700
    assert any(e.type == "warning" and "mount point" in (e.message or "") for e in events)


def test_a_read_only_target_fails_naming_the_entry(target: Target, tmp_path: Path) -> None:
    from nbc_tui.backend.errors import InputError, NbcError

    write_layout(tmp_path / "layout", [ImageSpec([Layer(TarBuilder().dir("etc").file("etc/x", b"x").bytes())])])
    sh("mount", "-o", "remount,ro", target.root)
    try:
        with pytest.raises(NbcError) as info:
            extract_image(open_image(f"oci:{tmp_path / 'layout'}"), target.root, ctx=RunContext())
    finally:
        sh("mount", "-o", "remount,rw", target.root)
    assert not isinstance(info.value, InputError)
    assert "Read-only file system" in info.value.message
    assert "'etc/'" in info.value.message  # the first entry it could not write


def test_extraction_from_a_worker_thread(target: Target, tmp_path: Path) -> None:
    """The TUI runs the engine in a thread: the fork, the chroot and the child's signal setup still work."""
    import threading

    write_layout(tmp_path / "layout", [ImageSpec([Layer(TarBuilder().dir("etc").file("etc/a", b"a").bytes())])])
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["stats"] = extract_image(open_image(f"oci:{tmp_path / 'layout'}"), target.root,
                                            ctx=RunContext())
        except BaseException as exc:  # handed to the test thread
            result["error"] = exc

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(60)
    assert "error" not in result, result.get("error")
    assert result["stats"].entries == 2
    assert (target.root / "etc" / "a").read_bytes() == b"a"


# system.posix_acl_default = u::rwx,g::---,o::--- (version 2, then tag, permissions and id of each entry)
_ACL = b"".join([(2).to_bytes(4, "little"),
                 *(tag.to_bytes(2, "little") + perm.to_bytes(2, "little") + (0xFFFFFFFF).to_bytes(4, "little")
                   for tag, perm in ((0x01, 7), (0x04, 0), (0x20, 0)))])


@pytest.mark.parametrize("parent", [{}, {"mode": 0o2775, "gid": 50}, {"xattrs": {"system.posix_acl_default": _ACL}}],
                         ids=["plain", "setgid", "default-acl"])
def test_what_a_directory_passes_on_does_not_change_what_the_image_gives(target: Target, tmp_path: Path,
                                                                        parent: dict[str, Any]) -> None:
    """Root's files are created with their final owner and mode (no chown, no chmod; a setuid file and its
    capability survive the write), but a setgid directory gives its group to what is created in it and a
    default ACL shapes the mode: below those, files still get exactly the owner and mode the layer gives."""
    layer = (TarBuilder().dir("shared", **parent).file("shared/open", b"o", mode=0o644)
             .file("shared/run", b"r" * 70_000, mode=0o4755, xattrs={"security.capability": CAP})
             .symlink("shared/link", "open").bytes())
    write_layout(tmp_path / "layout", [ImageSpec([Layer(layer, "gzip")])])
    extract_image(open_image(f"oci:{tmp_path / 'layout'}"), target.root, ctx=RunContext())
    for name, mode in (("open", 0o644), ("run", 0o4755)):
        st = (target.root / "shared" / name).stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, mode)
    link = (target.root / "shared" / "link").lstat()
    assert (link.st_uid, link.st_gid) == (0, 0)  # root's symlink, not the setgid directory's group
    assert os.getxattr(target.root / "shared/run", "security.capability") == CAP


def test_files_sent_together_meet_the_rules_in_tar_order(target: Target, tmp_path: Path) -> None:
    """Files of one directory travel to the child together and most are created without weighing a rule;
    those among them that need the rules (an opaque marker, a whiteout, a file in the way) still see every
    file of the same layer before them: the marker keeps new1, the file over old2 replaces it."""
    lower = TarBuilder().dir("d").file("d/old1", b"o1").file("d/old2", b"o2").file("d/gone", b"g").bytes()
    upper = (TarBuilder().file("d/new1", b"n1").opaque("d").file("d/old2", b"upper").file("d/new2", b"n2")
             .file("d/.wh.new2", b"").file("d/new3", b"n3", mode=0o4755).bytes())
    write_layout(tmp_path / "layout", [ImageSpec([Layer(lower, "gzip"), Layer(upper, "zstd")])])
    stats = extract_image(open_image(f"oci:{tmp_path / 'layout'}"), target.root, ctx=RunContext())
    d = target.root / "d"
    assert sorted(p.name for p in d.iterdir()) == ["new1", "new2", "new3", "old2"]
    assert [(d / n).read_bytes() for n in ("new1", "new2", "new3", "old2")] == [b"n1", b"n2", b"n3", b"upper"]
    assert stat.S_IMODE((d / "new3").stat().st_mode) == 0o4755
    assert stats.entries == 4 + 4  # markers and whiteouts are not entries of the tree


def test_a_file_over_a_mount_point_is_refused(target: Target, tmp_path: Path) -> None:
    from nbc_tui.backend.errors import InputError

    layer = TarBuilder().whiteout("var").file("var", b"not a directory").bytes()
    write_layout(tmp_path / "layout", [ImageSpec([Layer(TarBuilder().dir("var").bytes()), Layer(layer)])])
    with pytest.raises(InputError, match="cannot replace /var"):
        extract_image(open_image(f"oci:{tmp_path / 'layout'}"), target.root, ctx=RunContext())
    assert os.path.ismount(target.var)


@pytest.mark.skipif(not shutil.which("umoci"), reason="needs umoci")
def test_agrees_with_umoci_raw_unpack(target: Target, tmp_path: Path) -> None:
    """An independent implementation (umoci, which also keeps same-layer entries under an opaque marker)
    unpacks the same image (gzip only: this umoci has no zstd) to the same tree, but for two known gaps."""
    write_layout(tmp_path / "layout", [ImageSpec([Layer(layer.tar, "gzip") for layer in layers()])])
    subprocess.run(["umoci", "raw", "unpack", "--image", f"{tmp_path / 'layout'}:latest",
                    str(tmp_path / "umoci")], check=True, capture_output=True)
    extract_image(open_image(f"oci:{tmp_path / 'layout'}"), target.root, ctx=RunContext())
    ours, our_links = snapshot(target.root)
    theirs, their_links = snapshot(tmp_path / "umoci")
    # umoci reads no LIBARCHIVE.xattr.* headers (Go's archive/tar knows only SCHILY.xattr.*)
    assert ours.pop("etc/motd")["xattrs"] == {"user.lib": b"\x01\x02\xff"}
    assert "xattrs" not in theirs.pop("etc/motd")
    # opt/app/sub has no entry in the opaque layer (only a child): umoci makes it anew, we keep the lower
    # directory's metadata; both have the same content
    del ours["opt/app/sub"]["mtime"], theirs["opt/app/sub"]["mtime"]
    assert ours == theirs
    assert our_links == their_links


def test_a_directory_a_later_layer_turns_into_a_link_is_no_failure_at_the_end(target: Target,
                                                                               tmp_path: Path) -> None:
    """Directory mtimes are set last: one whose parent a later layer made a symlink to a file is skipped, as the
    scan's tree already knows it is gone (it failed with ENOTDIR after the whole image was written)."""
    first = TarBuilder().dir("usr").dir("usr/lib").dir("usr/lib/foo").dir("usr/lib/foo/sub").bytes()
    second = TarBuilder().file("usr/lib/foo.so.1", b"x").symlink("usr/lib/foo", "foo.so.1").bytes()
    write_layout(tmp_path / "layout", [ImageSpec([Layer(first, "gzip"), Layer(second, "gzip")])])
    scan_image(open_image(f"oci:{tmp_path / 'layout'}"))
    extract_image(open_image(f"oci:{tmp_path / 'layout'}"), target.root, ctx=RunContext())
    assert os.readlink(target.root / "usr/lib/foo") == "foo.so.1"


def test_a_hard_link_between_var_and_the_root_becomes_a_faithful_copy(target: Target, tmp_path: Path) -> None:
    """At install /var is another filesystem mounted in the root: link(2) says EXDEV, which failed the install
    after the wipe. The copy keeps content, owner, mode, capability and mtime, and a warning says so."""
    layer = (TarBuilder().dir("usr").file("usr/ping", b"p" * 5000, mode=0o4750, uid=0, gid=7,
                                          xattrs={"security.capability": CAP})
             .dir("var").hardlink("var/ping", "usr/ping").bytes())
    write_layout(tmp_path / "layout", [ImageSpec([Layer(layer, "gzip")])])
    stats = extract_image(open_image(f"oci:{tmp_path / 'layout'}"), target.root, ctx=RunContext())
    original, copy = (target.root / "usr/ping").lstat(), (target.var / "ping").lstat()
    assert (target.var / "ping").read_bytes() == b"p" * 5000
    assert [(s.st_uid, s.st_gid, stat.S_IMODE(s.st_mode), s.st_mtime_ns) for s in (copy, original)] == [
        (0, 7, 0o4750, M)] * 2
    assert os.getxattr(target.var / "ping", "security.capability") == CAP
    assert any("/var/ping is a copy of /usr/ping" in w for w in stats.warnings)

"""Hostile and broken images on a real target: refused by name, and nothing written outside the root.

Each hostile layer comes after a benign one. The extraction child runs chrooted, so even a bug in the
rules could not write outside; the rules refuse anyway, with the same error the scan gives before the
disk is wiped. A sentinel directory beside the root must stay byte-for-byte and mtime-for-mtime the same.
Writing through an absolute symlink is refused even where it would land inside the root in a chroot: it
is how such a layer escapes any extractor that is not chrooted.
"""

from __future__ import annotations

import io
import os
import tarfile
import threading
from pathlib import Path

import pytest

from nbc_tui.backend.errors import Cancelled, InputError, NbcError
from nbc_tui.backend.image.extract import extract_image
from nbc_tui.backend.image.opener import open_image
from nbc_tui.backend.image.scan import scan_image
from nbc_tui.backend.runner import RunContext
from tests.integration.test_extract_fidelity import Target, tree_state
from tests.integration.test_extract_fidelity import target as target  # the fixture  # noqa: PLC0414
from tests.support.oci import ImageSpec, Layer, TarBuilder, flip_byte, write_layout

pytestmark = pytest.mark.root


def _base() -> bytes:
    return TarBuilder().dir("etc").file("etc/passwd", b"root:x:0:0\n").dir("usr").bytes()


def hostile_cases(sentinel: Path, root: Path) -> dict[str, tuple[TarBuilder, str, str]]:
    up = os.path.relpath(sentinel, root)  # "../sentinel": from the root's directory to the sentinel
    deep = "../" * 12 + str(sentinel).lstrip("/")  # enough '..' to reach / from anywhere, then the sentinel
    return {
        "absolute name": (TarBuilder().file(f"{sentinel}/outside/evil", b"x"), f"{sentinel}/outside/evil",
                          "has an absolute path"),
        "dot-dot": (TarBuilder().file(f"{up}/outside/evil", b"x"), f"{up}/outside/evil", "with '..'"),
        "inner dot-dot": (TarBuilder().file(f"usr/../{up}/outside/evil", b"x"),
                          f"usr/../{up}/outside/evil", "with '..'"),
        "relative symlink, then a file through it": (
            TarBuilder().symlink("esc", f"{up}/outside").file("esc/pwned", b"x"), "esc/pwned",
            f"through the symlink /esc -> {up}/outside"),
        "relative symlink deep down": (
            TarBuilder().dir("usr/lib").symlink("usr/lib/esc", deep).file("usr/lib/esc/outside/pwned", b"x"),
            "usr/lib/esc/outside/pwned", "outside the image root"),
        "absolute symlink to the sentinel, then a file through it": (
            TarBuilder().symlink("esc", str(sentinel / "outside")).file("esc/pwned", b"x"), "esc/pwned",
            f"through the absolute symlink /esc -> {sentinel}/outside"),
        "absolute symlink to /tmp": (TarBuilder().symlink("escape", "/tmp").file("escape/owned", b"x"),
                                     "escape/owned", "through the absolute symlink /escape -> /tmp"),
        "absolute symlink climbing above /": (
            TarBuilder().symlink("esc", f"/../{up}/outside").file("esc/pwned", b"x"), "esc/pwned",
            "through the absolute symlink /esc -> /../"),
        "hard link to outside": (TarBuilder().hardlink("hl", f"{up}/etc/passwd"), "hl", "climbs out"),
        "hard link through a symlink to outside": (
            TarBuilder().symlink("esc", up).hardlink("hl", "esc/etc/passwd"), "hl", "outside the image root"),
        "hard link through an absolute symlink": (
            TarBuilder().symlink("esc", str(sentinel)).hardlink("hl", "esc/etc/passwd"), "hl",
            "absolute symlink"),
        "hard link to a missing file": (TarBuilder().hardlink("hl", "etc/shadow"), "hl", "does not exist"),
        # A plain file in a directory already there: the child's short way must still check the name.
        "NUL byte in a name": (_pax_named("etc/ev\0il", b"x"), "etc/ev\0il", "has a NUL byte in its name"),
        "hard link over its own parent": (TarBuilder().dir("d").file("d/f", b"f").hardlink("d", "d/f"), "d",
                                          "inside what it would replace"),
        "a name nested too deep": (_pax_named("a/" * 1100 + "f", b"x"), "a/" * 1100 + "f",
                                   "is nested more than 256 directories deep"),
    }


def _pax_named(name: str, data: bytes) -> TarBuilder:
    """A layer with one root-owned file whose name (a PAX path record) the ustar header cannot hold."""
    builder = TarBuilder()
    info = tarfile.TarInfo("placeholder")
    info.size, info.mode, info.pax_headers = len(data), 0o644, {"path": name}
    builder.tar.addfile(info, io.BytesIO(data))
    return builder


CASES = list(hostile_cases(Path("/s"), Path("/r")))


@pytest.mark.parametrize("case", CASES)
def test_hostile_entries_are_refused_and_nothing_leaves_the_root(target: Target, tmp_path: Path,
                                                                 case: str) -> None:
    builder, entry, why = hostile_cases(target.sentinel, target.root)[case]
    write_layout(tmp_path / "layout", [ImageSpec([Layer(_base()), Layer(builder.bytes(), "zstd")])])
    source = open_image(f"oci:{tmp_path / 'layout'}")
    before = tree_state(target.sentinel)
    outside_before = sorted(p.name for p in tmp_path.iterdir())

    with pytest.raises(InputError) as scanned:
        scan_image(source)
    with pytest.raises(InputError) as extracted:
        extract_image(source, target.root, ctx=RunContext())

    for info in (scanned, extracted):
        assert f"entry {entry!r}" in info.value.message
        assert why in info.value.message
        assert source.layers[1].digest[:19] in info.value.message
    assert extracted.value.message == scanned.value.message  # one rule book, one refusal
    assert tree_state(target.sentinel) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == outside_before
    assert (target.root / "etc" / "passwd").read_bytes() == b"root:x:0:0\n"  # the benign layer went in


def test_a_corrupt_blob_is_refused_before_anything_is_extracted(target: Target, tmp_path: Path) -> None:
    big = TarBuilder().dir("usr").file("usr/data", os.urandom(2 << 20)).bytes()
    write_layout(tmp_path / "layout", [ImageSpec([Layer(_base()), Layer(big)])])
    source = open_image(f"oci:{tmp_path / 'layout'}")
    flip_byte(tmp_path / "layout", source.layers[1].digest, 1000)
    empty = sorted(p.name for p in target.root.iterdir())

    with pytest.raises(NbcError) as info:
        scan_image(source)  # the install driver stops here: the disk is never touched
    assert source.layers[1].digest in info.value.message
    assert info.value.exit_code == 1  # a damaged image, not a bad request
    assert sorted(p.name for p in target.root.iterdir()) == empty

    with pytest.raises(NbcError) as info:  # and extraction on its own also refuses the blob
        extract_image(source, target.root, ctx=RunContext())
    assert source.layers[1].digest in info.value.message


def _children() -> str:
    pid = os.getpid()
    return Path(f"/proc/{pid}/task/{threading.get_native_id()}/children").read_text().strip()


def test_cancel_kills_and_reaps_the_child(target: Target, tmp_path: Path) -> None:
    layer = TarBuilder().dir("data")
    for i in range(40):
        layer.file(f"data/{i}", os.urandom(1 << 20))
    write_layout(tmp_path / "layout", [ImageSpec([Layer(layer.bytes(), "tar")])])
    ctx = RunContext()
    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if len(seen) == 3:
            ctx.cancel.set()

    with pytest.raises(Cancelled):
        extract_image(open_image(f"oci:{tmp_path / 'layout'}"), target.root, ctx=ctx, on_progress=progress)
    assert _children() == ""
    assert seen[-1] < 40 << 20  # stopped early


def test_dry_run_writes_nothing(target: Target, tmp_path: Path) -> None:
    write_layout(tmp_path / "layout", [ImageSpec([Layer(_base())])])
    empty = sorted(p.name for p in target.root.iterdir())
    stats = extract_image(open_image(f"oci:{tmp_path / 'layout'}"), target.root, ctx=RunContext(dry_run=True))
    assert stats.entries == 0
    assert sorted(p.name for p in target.root.iterdir()) == empty

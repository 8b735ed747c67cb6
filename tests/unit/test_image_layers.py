"""Layer streams: decompression by magic bytes, and the tar reader against tarfile's writers."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import tarfile

import pytest
import zstandard

from nbc_tui.backend.errors import InputError, NbcError
from nbc_tui.backend.image.layers import (
    DIR,
    LNK,
    REG,
    SYM,
    TarError,
    TarReader,
    decompressed,
)
from nbc_tui.backend.image.source import Descriptor, verified_stream
from tests.support.oci import MT_LAYER, TarBuilder, compress

PAYLOAD = TarBuilder().dir("etc").file("etc/big", os.urandom(3 << 20)).file("etc/small", b"x").bytes()


def _blob(data: bytes) -> io.BufferedReader:
    desc = Descriptor("x", "sha256:" + hashlib.sha256(data).hexdigest(), len(data))
    return verified_stream(io.BytesIO(data), desc)


@pytest.mark.parametrize("how", ["gzip", "zstd", "tar"])
@pytest.mark.parametrize("label", ["gzip", "zstd", "tar"])
def test_layers_decompress_by_magic_whatever_the_label(how: str, label: str) -> None:
    stream = decompressed(_blob(compress(PAYLOAD, how)), MT_LAYER[label])
    assert stream.read(-1) == PAYLOAD[: 1 << 20]  # at most one chunk per read
    rest = b""
    while chunk := stream.read(1 << 20):
        rest += chunk
    assert PAYLOAD[: 1 << 20] + rest == PAYLOAD


def test_multi_member_gzip_and_multi_frame_zstd() -> None:
    half = len(PAYLOAD) // 2
    for data in (gzip.compress(PAYLOAD[:half]) + gzip.compress(PAYLOAD[half:]),
                 zstandard.ZstdCompressor().compress(PAYLOAD[:half])
                 + zstandard.ZstdCompressor().compress(PAYLOAD[half:])):
        stream = decompressed(_blob(data), "application/vnd.oci.image.layer.v1.tar")
        out = b""
        while chunk := stream.read(1 << 16):
            out += chunk
        assert out == PAYLOAD


def test_the_end_of_the_tar_stream_drains_the_blob_so_its_digest_is_checked() -> None:
    data = compress(PAYLOAD, "gzip")
    desc = Descriptor("x", "sha256:" + hashlib.sha256(data + b"junk").hexdigest(), len(data))
    reader = TarReader(decompressed(verified_stream(io.BytesIO(data), desc), MT_LAYER["gzip"]).read)
    with pytest.raises(NbcError, match=r"descriptor says|does not match") as info:
        for _ in reader:
            pass
    assert info.value.exit_code == 1  # a damaged image, not a bad request


def test_a_corrupt_gzip_stream_is_a_damaged_image() -> None:
    data = bytearray(compress(PAYLOAD, "gzip"))
    data[len(data) // 2] ^= 0xFF
    stream = decompressed(_blob(bytes(data)), MT_LAYER["gzip"])
    with pytest.raises(NbcError, match="cannot be decompressed") as info:
        while stream.read(1 << 20):
            pass
    assert not isinstance(info.value, InputError)


def _entries(data: bytes) -> list[tuple]:
    reader = TarReader(io.BytesIO(data).read)
    out = []
    for e in reader:
        content = b"".join(bytes(c) for c in reader.chunks()) if e.kind == REG else b""
        out.append((e.name, e.kind, e.mode, e.uid, e.gid, e.mtime_ns, e.linkname, e.xattrs,
                    hashlib.sha256(content).hexdigest() if content else ""))
    return out


def test_entries_match_what_tarfile_wrote() -> None:
    cap = bytes.fromhex("0100000200200000000000000000000000000000")
    data = (TarBuilder().dir("usr", mode=0o755).file("usr/a", b"hello", mode=0o4755, uid=1000, gid=7,
                                                      xattrs={"security.capability": cap,
                                                              "user.bin": b"\x00\xff\xfe"})
            .symlink("usr/b", "a").hardlink("usr/c", "usr/a").bytes())
    assert _entries(data) == [
        ("usr/", DIR, 0o755, 0, 0, 1_600_000_000 * 10**9, "", None, ""),  # tarfile adds the slash
        ("usr/a", REG, 0o4755, 1000, 7, 1_600_000_000 * 10**9, "",
         {"security.capability": cap, "user.bin": b"\x00\xff\xfe"}, hashlib.sha256(b"hello").hexdigest()),
        ("usr/b", SYM, 0o777, 0, 0, 1_600_000_000 * 10**9, "a", None, ""),
        ("usr/c", LNK, 0o644, 0, 0, 1_600_000_000 * 10**9, "usr/a", None, ""),
    ]


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_long_names_in_every_format(fmt: int) -> None:
    long_dir = "/".join(["d" * 60] * 3)  # 182 chars: ustar prefix, GNU ././@LongLink or PAX path
    name = f"{long_dir}/file"
    target = "t" * 150 if fmt != tarfile.USTAR_FORMAT else "short"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        ti = tarfile.TarInfo(name)
        ti.size = 3
        tar.addfile(ti, io.BytesIO(b"abc"))
        link = tarfile.TarInfo(f"{long_dir}/link")
        link.type, link.linkname = tarfile.SYMTYPE, target
        tar.addfile(link)
    entries = _entries(buf.getvalue())
    assert [(e[0], e[1], e[6]) for e in entries] == [(name, REG, ""), (f"{long_dir}/link", SYM, target)]


def test_big_numbers_in_base_256_and_fractional_pax_mtime() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        ti = tarfile.TarInfo("f")
        ti.uid, ti.gid = 10**10, 4_000_000_000  # beyond 8 octal digits: GNU writes base-256
        tar.addfile(ti, io.BytesIO(b""))
    buf2 = io.BytesIO()
    with tarfile.open(fileobj=buf2, mode="w", format=tarfile.PAX_FORMAT) as tar:
        ti = tarfile.TarInfo("g")
        ti.mtime = 1_600_000_000.25
        tar.addfile(ti, io.BytesIO(b""))
    (e,) = list(TarReader(io.BytesIO(buf.getvalue()).read))
    assert (e.uid, e.gid) == (10**10, 4_000_000_000)
    (g,) = list(TarReader(io.BytesIO(buf2.getvalue()).read))
    assert g.mtime_ns == 1_600_000_000_250_000_000


def test_libarchive_xattrs_are_base64_with_an_escaped_name() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        ti = tarfile.TarInfo("f")
        value = b"\x00\x01binary=\n"
        ti.pax_headers = {"LIBARCHIVE.xattr.user.a%3Db": base64.b64encode(value).decode().rstrip("=")}
        tar.addfile(ti, io.BytesIO(b""))
    (e,) = list(TarReader(io.BytesIO(buf.getvalue()).read))
    assert e.xattrs == {"user.a=b": value}


def test_devices_fifos_and_a_trailing_slash_directory() -> None:
    data = TarBuilder().device("dev/sda", "block", 8, 0).device("dev/null", "char", 1, 3).fifo("p").bytes()
    entries = list(TarReader(io.BytesIO(data).read))
    assert [(e.kind, e.devmajor, e.devminor) for e in entries] == [("4", 8, 0), ("3", 1, 3), ("6", 0, 0)]
    old = bytearray(TarBuilder().file("olddir/").bytes())
    old[156] = 0  # pre-POSIX: type NUL plus a trailing slash means a directory
    old[148:156] = b"%06o\0 " % (sum(old[:148]) + 8 * 32 + sum(old[156:512]))
    (e,) = list(TarReader(io.BytesIO(bytes(old)).read))
    assert e.kind == DIR


def test_content_is_read_in_pieces_and_unread_content_is_skipped() -> None:
    data = TarBuilder().file("a", b"A" * 5000).file("b", b"B" * 3).bytes()
    reader = TarReader(io.BytesIO(data).read)
    it = iter(reader)
    next(it)
    assert reader.read(10) == b"A" * 10  # then the rest of a is skipped
    b = next(it)
    assert b.name == "b"
    assert reader.stream().read() == b"BBB"


def test_sparse_files_are_refused_by_name() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        ti = tarfile.TarInfo("holes")
        ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}
        tar.addfile(ti, io.BytesIO(b""))
    with pytest.raises(TarError, match=r"'holes'.*sparse"):
        list(TarReader(io.BytesIO(buf.getvalue()).read))


def test_garbage_and_truncation_are_tar_errors() -> None:
    with pytest.raises(TarError, match="not a tar archive"):
        list(TarReader(io.BytesIO(b"x" * 1024).read))
    data = TarBuilder().file("a", b"A" * 5000).bytes()
    reader = TarReader(io.BytesIO(data[:2048]).read)
    with pytest.raises(TarError, match="ends in the middle"):
        for _ in reader:
            b"".join(reader.chunks())


def test_a_tar_without_end_marker_is_accepted() -> None:
    data = TarBuilder().file("a", b"A").bytes()
    assert [e.name for e in TarReader(io.BytesIO(data[:1024]).read)] == ["a"]


def test_any_binary_stream_will_do() -> None:
    stream = decompressed(io.BytesIO(compress(PAYLOAD, "zstd")), MT_LAYER["zstd"])  # no peek() on BytesIO
    assert [e.name for e in TarReader(stream.read)] == ["etc/", "etc/big", "etc/small"]


def test_an_extended_header_that_claims_gigabytes_is_refused_before_it_is_read() -> None:
    """A PAX header is held in memory whole: 4 GiB claimed by a few bytes of layer would exhaust a live ISO."""
    header = bytearray(tarfile.TarInfo("././@PaxHeader").tobuf(format=tarfile.USTAR_FORMAT))
    header[124:136] = b"%011o\0" % (4 << 30)  # its size field
    header[156:157] = b"x"
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)  # the checksum over the header with blanks in its field
    with pytest.raises(TarError, match="extended header of 4294967296 bytes"):
        list(TarReader(io.BytesIO(bytes(header) + b"\0" * 1024).read))

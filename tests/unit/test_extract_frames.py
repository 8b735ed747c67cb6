"""The extraction child's end of the data pipe (extract_child): entry headers and a file's content across
data frames, moved into a file through the buffer, by splice, or by read and write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nbc_tui.backend.image.extract_child import (
    DATA,
    END,
    ENTRY,
    FRAME,
    LAYER,
    FramedContent,
    Frames,
    decode_entry,
    decode_files,
    encode_entry,
    file_head,
    files_head,
    is_plain,
)
from nbc_tui.backend.image.layers import REG, TarEntry

ENTRY_A = TarEntry("usr/lib/\udcffodd", REG, mode=0o4755, uid=0, gid=42, size=4010, mtime_ns=-5,
                   xattrs={"security.capability": b"\x01\x00\xff"})


def _pipe(data: bytes) -> int:
    r, w = os.pipe()
    assert len(data) < 60_000  # fits the pipe without a reader
    os.write(w, data)
    os.close(w)
    return r


def _frame(kind: bytes, payload: bytes = b"") -> bytes:
    return FRAME.pack(kind, len(payload)) + payload


def test_an_entry_comes_back_as_it_was_sent() -> None:
    back, inline = decode_entry(encode_entry(ENTRY_A))
    assert [getattr(back, k) for k in TarEntry.__slots__] == [getattr(ENTRY_A, k) for k in TarEntry.__slots__]
    assert inline is None
    assert decode_entry(encode_entry(ENTRY_A, b"\0small"))[1] == b"\0small"


@pytest.mark.parametrize("can_splice", [True, False])
def test_content_across_frames_lands_in_the_file(tmp_path: Path, can_splice: bool) -> None:
    content = os.urandom(4010)
    stream = (_frame(LAYER, b"sha256:abc") + _frame(ENTRY, encode_entry(ENTRY_A)) + _frame(DATA, content[:10])
              + _frame(DATA, content[10:3000]) + _frame(DATA, content[3000:]) + _frame(END))
    r = _pipe(stream)
    frames = Frames(r)
    frames.can_splice = can_splice
    kind, length = frames.header()
    assert (kind, frames.exact(length)) == (LAYER, b"sha256:abc")
    kind, length = frames.header()
    entry, _ = decode_entry(frames.exact(length))
    target = tmp_path / "file"
    with target.open("wb") as f:
        FramedContent(frames, entry.size).copy_to(f.fileno())
    assert target.read_bytes() == content
    assert frames.header() == (END, 0)
    os.close(r)


def test_content_not_written_is_skipped_and_a_short_stream_is_an_error(tmp_path: Path) -> None:
    r = _pipe(_frame(DATA, b"x" * 100) + _frame(END))
    frames = Frames(r)
    FramedContent(frames, 100).skip_rest()
    assert frames.header() == (END, 0)
    os.close(r)
    r = _pipe(_frame(DATA, b"x" * 100))
    with pytest.raises(EOFError), (tmp_path / "f").open("wb") as f:
        FramedContent(Frames(r), 200).copy_to(f.fileno())
    os.close(r)
    r = _pipe(_frame(END))
    with pytest.raises(EOFError, match="inside a file's content"):
        FramedContent(Frames(r), 5).skip_rest()
    os.close(r)


@pytest.mark.parametrize("directory", ["usr/lib/\udcffodd", "", "./etc//x/"])
def test_plain_files_come_back_as_they_were_sent(directory: str) -> None:
    files = [("f\udcff", 0o4755, -5, b"\0small"), ("empty", 0o644, (1 << 63) - 1, b""), ("", 0o600, 0, b"x" * 70_000)]
    payload = files_head(directory) + b"".join(file_head(base, mode, mtime_ns, len(data)) + data
                                               for base, mode, mtime_ns, data in files)
    got_dir, got = decode_files(payload)
    assert got_dir == directory
    assert [(base, mode, mtime_ns, bytes(data)) for base, mode, mtime_ns, data in got] == files
    assert list(decode_files(files_head(directory))[1]) == []


def test_a_plain_files_frame_cut_short_is_an_error() -> None:
    payload = files_head("etc") + file_head("motd", 0o644, 0, 10) + b"short"
    with pytest.raises(EOFError, match="ends inside a file"):
        list(decode_files(payload)[1])


@pytest.mark.parametrize("changes", [{"uid": 1}, {"gid": 5}, {"xattrs": {"user.a": b"1"}}, {"mtime_ns": 1 << 63}])
def test_what_is_not_plain_travels_as_a_whole_entry(changes: dict[str, object]) -> None:
    fields = {"mode": 0o644, "uid": 0, "gid": 0, "size": 1, "mtime_ns": 0} | changes
    assert not is_plain(TarEntry("etc/x", REG, **fields))  # type: ignore[arg-type]

"""The extraction child's end of the data pipe: tar bytes across data frames, read or spliced into a file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nbc_tui.backend.image.extract import _DATA, _END, _FRAME, _LAYER, _Frames


def _frames_pipe(*pieces: bytes) -> int:
    """A pipe holding one layer made of ``pieces`` (one data frame each); returns its read end."""
    r, w = os.pipe()
    out = _FRAME.pack(_LAYER, 3) + b"abc"
    for piece in pieces:
        out += _FRAME.pack(_DATA, len(piece)) + piece
    out += _FRAME.pack(_END, 0)
    assert len(out) < 60_000  # fits the pipe without a reader
    os.write(w, out)
    os.close(w)
    return r


@pytest.mark.parametrize("can_splice", [True, False])
def test_splice_moves_exactly_what_is_asked_across_frames(tmp_path: Path, can_splice: bool) -> None:
    r = _frames_pipe(b"1" * 1000, b"2" * 3000, b"3" * 10)
    frames = _Frames(r)
    frames.can_splice = can_splice
    kind, length = frames.header()
    assert (kind, frames.begin_layer(length)) == (_LAYER, "abc")
    target = tmp_path / "file"
    with target.open("wb") as f:
        moved = 0
        while moved < 2500:
            moved += frames.splice(f.fileno(), 2500 - moved)
    assert target.read_bytes() == b"1" * 1000 + b"2" * 1500
    rest = b""
    while data := frames.read(1 << 20):
        rest += data
    assert rest == b"2" * 1500 + b"3" * 10
    with target.open("ab") as f:
        assert frames.splice(f.fileno(), 10) == 0  # the layer's end
    os.close(r)

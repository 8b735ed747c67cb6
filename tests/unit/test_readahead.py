"""ReadAhead: a blob read ahead in a thread gives the same bytes, raises the reader's error where it happened,
and never outlives its stream."""

from __future__ import annotations

import hashlib
import io
import os
import threading

import pytest

from nbc_tui.backend.errors import NbcError
from nbc_tui.backend.image.readahead import HandOff, ReadAhead
from nbc_tui.backend.image.source import Descriptor, verified_stream


def _blob(data: bytes, digest: str | None = None) -> io.BufferedReader:
    desc = Descriptor("x", digest or "sha256:" + hashlib.sha256(data).hexdigest(), len(data))
    return verified_stream(io.BytesIO(data), desc)


@pytest.mark.parametrize("size", [0, 1, 1000, (1 << 20) + 1])
def test_the_same_bytes_by_read_and_by_readinto(size: int) -> None:
    data = os.urandom((3 << 20) + 17)
    ahead = ReadAhead(_blob(data), chunk=1 << 20, depth=2)
    got = bytearray()
    while True:
        if size:
            buf = bytearray(size)
            n = ahead.readinto(buf)
            got += buf[:n]
        else:
            n = len(piece := ahead.read(1 << 20))
            got += piece
        if not n:
            break
    ahead.close()
    assert bytes(got) == data


def test_a_damaged_blob_fails_at_its_end_and_keeps_failing() -> None:
    data = b"x" * 5000
    ahead = ReadAhead(_blob(data, "sha256:" + "0" * 64), chunk=1000)
    read = b""
    with pytest.raises(NbcError, match="does not match its digest"):
        while piece := ahead.read(700):
            read += piece
    assert read == data  # every byte came first; the verdict at the end
    with pytest.raises(NbcError):
        ahead.read(1)
    ahead.close()


def test_closing_early_stops_the_thread() -> None:
    ahead = ReadAhead(io.BytesIO(b"y" * (64 << 20)), chunk=1 << 16, depth=2)
    assert ahead.read(10) == b"y" * 10
    before = {t.name for t in threading.enumerate()}
    assert "blob-read-ahead" in before
    ahead.close()
    assert "blob-read-ahead" not in {t.name for t in threading.enumerate()}


def test_a_hand_off_consumes_in_its_thread_and_returns_its_result() -> None:
    seen: list[str] = []

    def consume(stream) -> int:
        seen.append(threading.current_thread().name)
        return len(stream.read())

    handoff = HandOff(consume, depth=2, name="counting")
    for _ in range(50):  # more than the queue holds: the writer waits for the reader
        handoff.write(memoryview(b"z" * 1000))
    assert handoff.result() == 50_000 and seen == ["counting"]


def test_a_hand_off_raises_what_its_consumer_raised_and_drops_later_writes() -> None:
    def consume(stream) -> None:
        stream.read(10)
        raise ValueError("not an initramfs")

    handoff = HandOff(consume, depth=1)
    for _ in range(100):  # the consumer is gone after the first: nothing blocks
        handoff.write(b"q" * 4096)
    with pytest.raises(ValueError, match="not an initramfs"):
        handoff.result()


def test_a_stopped_hand_off_ends_its_thread() -> None:
    handoff = HandOff(lambda stream: stream.read(), name="abandoned")
    handoff.write(b"partial")
    handoff.stop()
    assert "abandoned" not in {t.name for t in threading.enumerate()}

"""Listing an initramfs without unpacking it: a streaming reader of newc cpio archives.

An initramfs is one or more cpio archives back to back: typically an uncompressed early archive
(CPU microcode) padded with zeros, then the main archive compressed with gzip, zstd, xz, lzma or bzip2.
Only the names are read; file contents are skipped as they stream by.
"""

from __future__ import annotations

import bz2
import lzma
import re
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import zstandard
from isal import isal_zlib

from ..bytestreams import Reader
from ..errors import NbcError

_CHUNK = 1 << 20
_CPIO_MAGICS = (b"070701", b"070702")  # newc, and newc with checksums
_TRAILER = "TRAILER!!!"
_NEWC_HEADER = 110
_DECODE_ERRORS = (OSError, EOFError, ValueError, lzma.LZMAError, zstandard.ZstdError, zlib.error,
                  isal_zlib.error)


class InitramfsError(NbcError):
    """The file is not an initramfs this reader understands (or it is damaged)."""


class _Buffered:
    """Read-ahead over a stream: exact reads, skips, and a peek used to tell segments apart."""

    def __init__(self, stream: Reader) -> None:
        self._stream = stream
        self._buf = b""
        self._pos = 0

    def peek(self, n: int) -> bytes:
        while len(self._buf) - self._pos < n:
            data = self._stream.read(_CHUNK)
            if not data:
                break
            self._buf = self._buf[self._pos:] + data
            self._pos = 0
        return self._buf[self._pos: self._pos + n]

    def read(self, n: int = -1) -> bytes:
        """Up to n bytes (the decompressors read through this too)."""
        if n is None or n < 0:
            n = _CHUNK
        if self._pos >= len(self._buf):
            return self._stream.read(n)
        data = self._buf[self._pos: self._pos + n]
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def exact(self, n: int) -> bytes:
        data = self.peek(n)
        if len(data) < n:
            raise InitramfsError("The initramfs ends in the middle of a cpio entry")
        self._pos += n
        return data

    def skip(self, n: int) -> None:
        while n:
            avail = len(self._buf) - self._pos
            if not avail:
                if not self.peek(min(n, _CHUNK)):
                    raise InitramfsError("The initramfs ends in the middle of a cpio entry")
                continue
            step = min(avail, n)
            self._pos += step
            n -= step

    def unread(self, data: bytes) -> None:
        """Put ``data`` back in front of what is still to be read."""
        if data:
            self._buf = data + self._buf[self._pos:]
            self._pos = 0

    def skip_zeros(self) -> None:
        """Skip the zero padding between concatenated archives."""
        while True:
            if self._pos >= len(self._buf) and not self.peek(1):
                return
            rest = self._buf[self._pos:]
            stripped = rest.lstrip(b"\0")
            self._pos += len(rest) - len(stripped)
            if stripped:
                return


class _Segment:
    """One compressed archive of the initramfs, decompressed as it is read. It stops where its compressed
    stream ends and hands what follows back to ``outer``: the kernel goes on from there (more archives,
    compressed or not, may follow), and so does :func:`initramfs_names`."""

    def __init__(self, decompressor: Any, outer: _Buffered) -> None:
        self._decompressor = decompressor
        self._outer = outer
        self._pending = b""

    def read(self, n: int = -1) -> bytes:
        while not self._pending and not self._decompressor.eof:
            data = self._outer.read(_CHUNK)
            if not data:
                raise InitramfsError("The initramfs ends in the middle of a compressed archive")
            self._pending = self._decompressor.decompress(data)
            if self._decompressor.eof:
                self._outer.unread(self._decompressor.unused_data)
        size = _CHUNK if n is None or n < 0 else n
        data, self._pending = self._pending[:size], self._pending[size:]
        return data


def _decompressor(magic: bytes) -> Any:
    """A decompressor object (decompress(), eof, unused_data) for the archive starting with ``magic``."""
    if magic.startswith(b"\x1f\x8b"):
        return isal_zlib.decompressobj(wbits=31)  # one gzip member
    if magic.startswith(b"\x28\xb5\x2f\xfd"):
        return zstandard.ZstdDecompressor().decompressobj()  # one zstd frame
    if magic.startswith(b"\xfd7zXZ\x00") or magic.startswith(b"\x5d\x00\x00"):
        return lzma.LZMADecompressor()
    if magic.startswith(b"BZh"):
        return bz2.BZ2Decompressor()
    return None


def _cpio_names(source: _Buffered) -> Iterator[str]:
    """The names of one newc archive, up to and including its trailer."""
    while True:
        header = source.exact(_NEWC_HEADER)
        if header[:6] not in _CPIO_MAGICS:
            raise InitramfsError(f"Not a newc cpio header: {header[:6]!r}")
        try:
            filesize = int(header[54:62], 16)
            namesize = int(header[94:102], 16)
        except ValueError:
            raise InitramfsError("A cpio header has a malformed size field") from None
        name = source.exact(namesize).rstrip(b"\0").decode("utf-8", "surrogateescape")
        source.skip(-(_NEWC_HEADER + namesize) % 4)
        if name == _TRAILER:
            return
        source.skip(filesize + (-filesize % 4))
        yield name


def initramfs_names(stream: Reader) -> Iterator[str]:
    """Every member name of an initramfs, in archive order (e.g. "usr/bin/mount", ".")."""
    source = _Buffered(stream)
    while True:
        source.skip_zeros()
        magic = source.peek(6)
        if not magic:
            return
        if magic in _CPIO_MAGICS:
            yield from _cpio_names(source)
            continue
        decompressor = _decompressor(magic)
        if decompressor is None:
            raise InitramfsError(f"Unknown initramfs compression (starts with {magic.hex()})")
        try:
            inner = _Buffered(_Segment(decompressor, source))
            while True:
                inner.skip_zeros()
                if not inner.peek(6):
                    break
                yield from _cpio_names(inner)
        except _DECODE_ERRORS as exc:
            raise InitramfsError(f"The compressed part of the initramfs cannot be read: {exc}") from exc
        # The kernel goes on after a compressed archive: so do we (e.g. an appended archive with a hook).


def initramfs_contains(path_or_stream: str | Path | Reader, basename: str) -> bool:
    """Whether a member's file name is ``basename``, also with dracut's hook priority in front
    ("50etc-overlay-mount.sh" counts for "etc-overlay-mount.sh"). Stops reading at the first match."""
    if isinstance(path_or_stream, (str, Path)):
        with Path(path_or_stream).open("rb") as f:
            return names_contain(initramfs_names(f), basename)
    return names_contain(initramfs_names(path_or_stream), basename)


def names_contain(names: Iterable[str], basename: str) -> bool:
    """:func:`initramfs_contains` over member names already read."""
    pattern = re.compile(r"\d*-?" + re.escape(basename))
    return any(pattern.fullmatch(name.rpartition("/")[2]) for name in names)

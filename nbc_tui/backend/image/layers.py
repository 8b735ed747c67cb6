"""Reading a layer: its decompressed tar stream, and that stream's entries one at a time.

The tar reader is our own (not ``tarfile``) so that both the scan and the extraction child see the exact
bytes of names, link targets and xattr values (PAX ``SCHILY.xattr.*`` and ``LIBARCHIVE.xattr.*``), read in
large chunks, and never hold more than one chunk of a layer in memory.
"""

from __future__ import annotations

import base64
import contextlib
import io
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

import zstandard
from isal import igzip, isal_zlib

from ..bytestreams import RawReader, Reader
from ..errors import NbcError
from .readahead import ReadAhead

CHUNK = 1 << 20
BLOCK = 512
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# What a corrupt compressed stream raises (BadGzipFile is an OSError); a bad digest is an NbcError.
_DECODE_ERRORS = (OSError, EOFError, zstandard.ZstdError, isal_zlib.error)


class _Drained(io.RawIOBase):
    """The decompressed stream; at its end it reads the raw blob to its end, so the digest is checked."""

    def __init__(self, inner: Reader, raw: Reader) -> None:
        super().__init__()
        self._inner, self._raw = inner, raw

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._inner.read(CHUNK if size is None or size < 0 else size)
        except _DECODE_ERRORS as exc:
            raise NbcError(f"A layer cannot be decompressed: {exc}",
                           hint="The image is corrupt; download it again") from exc
        if not data:
            while self._raw.read(CHUNK):
                pass
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def decompressed(stored: RawReader, media_type: str) -> io.RawIOBase:
    """The tar stream of a layer (``stored``: its blob as stored): gzip (isal), zstd or plain, chosen by the
    magic bytes (so a mislabeled layer still works) and otherwise by the media type. Reading it to the end also
    drains ``stored``."""
    # Any stream with read and readinto buffers fine (io.BytesIO too), whatever typeshed's stricter protocol says.
    raw = stored if isinstance(stored, io.BufferedReader) else io.BufferedReader(stored, CHUNK)  # type: ignore[type-var]
    head = _peek(raw, 4)
    inner: Reader
    if head.startswith(GZIP_MAGIC):
        inner = igzip.IGzipFile(fileobj=raw, mode="rb")
    elif head.startswith(ZSTD_MAGIC):
        inner = zstandard.ZstdDecompressor().stream_reader(raw, read_size=CHUNK, read_across_frames=True,
                                                           closefd=False)
    elif media_type.endswith(("+gzip", ".gzip", "+zstd")) and len(head) >= 4 and head != b"\0\0\0\0":
        # A compressed media type whose bytes are not compressed and do not look like a tar either: say
        # so here rather than as a puzzling tar header error.
        if not _looks_like_tar(raw):
            raise NbcError(f"A layer of type {media_type} is neither compressed nor a tar archive",
                           hint="The image is corrupt; download it again")
        inner = raw
    else:
        inner = raw
    return _Drained(inner, raw)


@contextlib.contextmanager
def decompressed_ahead(stored: RawReader, media_type: str) -> Iterator[ReadAhead]:
    """:func:`decompressed`, with the work spread over two threads ahead of the reader: one reads the blob and
    hashes it (its digest checked as it goes), one decompresses it. The reader (walking the tar entries, or
    feeding them to the extraction) gets the tar stream as fast as the slowest of the three."""
    with contextlib.closing(ReadAhead(stored)) as raw, \
            contextlib.closing(ReadAhead(decompressed(raw, media_type))) as tar:
        yield tar


def _peek(raw: io.BufferedReader[Any], n: int) -> bytes:
    return bytes(raw.peek(n)[:n])


def _looks_like_tar(raw: io.BufferedReader[Any]) -> bool:
    head = _peek(raw, BLOCK)
    return len(head) == BLOCK and (head[257:262] == b"ustar" or _checksum_ok(head))


# -- tar entries --------------------------------------------------------------------------------------

REG, LNK, SYM, CHR, BLK, DIR, FIFO = "0", "1", "2", "3", "4", "5", "6"
_ZERO_BLOCK = bytes(BLOCK)
_ADLER_OK = frozenset(k * 65521 for k in range(-4, 5))
# PAX keys that change nothing we apply (GNU tar writes atime and ctime for every entry).
_PAX_IGNORED = frozenset({"atime", "ctime", "uname", "gname", "comment", "hdrcharset", "charset"})
_KNOWN_TYPES = {REG, LNK, SYM, CHR, BLK, DIR, FIFO}
_UNSUPPORTED = {"S": "a GNU sparse file", "M": "a multi-volume continuation", "N": "an old GNU long name"}


class TarError(NbcError):
    """The layer is not a tar archive we can read, or it is cut short (a damaged image: exit 1)."""


class TarEntry:
    """One member of a layer: kind is one of REG LNK SYM CHR BLK DIR FIFO; names are str (surrogateescape
    keeps undecodable bytes), xattr values are the exact bytes."""

    __slots__ = ("devmajor", "devminor", "gid", "kind", "linkname", "mode", "mtime_ns", "name", "size",
                 "uid", "xattrs")

    def __init__(self, name: str, kind: str, *, mode: int, uid: int, gid: int, size: int, mtime_ns: int,
                 linkname: str = "", devmajor: int = 0, devminor: int = 0,
                 xattrs: dict[str, bytes] | None = None) -> None:
        self.name, self.kind, self.mode, self.uid, self.gid = name, kind, mode, uid, gid
        self.size, self.mtime_ns, self.linkname = size, mtime_ns, linkname
        self.devmajor, self.devminor, self.xattrs = devmajor, devminor, xattrs

    @classmethod
    def from_fields(cls, fields: Sequence[Any]) -> TarEntry:
        """An entry from its fields in :meth:`fields` order (the extraction child builds one per entry from a
        tuple; this is three times cheaper than the keyword constructor)."""
        entry = object.__new__(cls)
        (entry.name, entry.kind, entry.mode, entry.uid, entry.gid, entry.size, entry.mtime_ns, entry.linkname,
         entry.devmajor, entry.devminor, entry.xattrs) = fields
        return entry

    def fields(self) -> tuple[Any, ...]:
        """The fields :meth:`from_fields` takes, in its order."""
        return (self.name, self.kind, self.mode, self.uid, self.gid, self.size, self.mtime_ns, self.linkname,
                self.devmajor, self.devminor, self.xattrs)

    def __repr__(self) -> str:
        return f"TarEntry({self.name!r}, kind={self.kind!r}, size={self.size})"


def _checksum_ok(hdr: bytes) -> bool:
    try:
        stored = _num(hdr[148:156])
    except TarError:
        return False
    # The checksum is the byte sum with the checksum field counted as spaces. adler32's low half is that
    # sum (plus one) modulo 65521, computed in C: a cheap first test; the exact sums decide otherwise.
    if (zlib.adler32(hdr) & 0xFFFF) - 1 - sum(hdr[148:156]) + 8 * 32 - stored in _ADLER_OK:
        return True
    unsigned = sum(hdr) - sum(hdr[148:156]) + 8 * 32
    if stored == unsigned:
        return True
    signed = sum(b - 256 if b > 127 else b for b in hdr) - sum(
        b - 256 if b > 127 else b for b in hdr[148:156]) + 8 * 32
    return stored == signed


def _num(field: bytes) -> int:
    """A numeric header field: octal text, or GNU base-256 when the top bit of the first byte is set."""
    if field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        if field[0] == 0xFF:  # negative base-256 (e.g. an mtime before 1970)
            value -= 1 << (8 * (len(field) - 1))
        return value
    text = field.strip(b" \0")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        text = field.split(b"\0", 1)[0].strip(b" ")  # digits, a NUL, then leftovers
        try:
            return int(text, 8) if text else 0
        except ValueError:
            raise TarError(f"A tar header has a malformed number {field!r}") from None


def _cstr(field: bytes) -> bytes:
    return field.split(b"\0", 1)[0]


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


MAX_EXTENDED_HEADER = 8 << 20
"""The largest PAX or GNU long-name header read (names, link targets, xattrs such as ACLs and SELinux labels
take a few KiB)."""


def _pax_records(data: bytes) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # NUL padding after the last record
            break
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarError("A PAX extended header is malformed") from None
        if space < 0 or length <= 0 or pos + length > len(data):
            raise TarError("A PAX extended header is malformed")
        record = data[space + 1: pos + length]
        key, eq, value = record.partition(b"=")
        if not eq or not record.endswith(b"\n"):
            raise TarError("A PAX extended header is malformed")
        records[_text(key)] = value[:-1]
        pos += length
    return records


def _pax_time_ns(value: bytes) -> int:
    text = value.decode("ascii", "replace").strip()
    negative = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    ns = int(whole or "0") * 1_000_000_000 + int((frac + "000000000")[:9] or "0")
    return -ns if negative else ns


class TarReader:
    """Stream the entries of a tar archive from ``read(n)`` (which may return any amount, b"" at the end).

    Iterating yields :class:`TarEntry` objects; the content of the current regular-file entry can be read
    with :meth:`chunks`, :meth:`read` or :meth:`stream` before moving on (unread content is skipped). After
    the end-of-archive marker the input is read to its end (a blob's digest is checked there).
    """

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self._buf = b""
        self._pos = 0
        self._left = 0   # unread content bytes of the current entry
        self._pad = 0    # padding after that content
        self.offset = 0  # bytes consumed, for messages
        self._global: dict[str, bytes] = {}

    # -- buffer ---------------------------------------------------------------------------------------

    def _fill(self, n: int) -> bool:
        """Make at least n bytes available in the buffer; False at the end of input."""
        while len(self._buf) - self._pos < n:
            data = self._read(CHUNK)
            if not data:
                return False
            self._buf = self._buf[self._pos:] + data if self._pos < len(self._buf) else data
            self._pos = 0
        return True

    def _take(self, n: int) -> bytes:
        if not self._fill(n):
            raise TarError(f"The layer's tar stream ends in the middle of an entry (at byte {self.offset})")
        data = self._buf[self._pos: self._pos + n]
        self._pos += n
        self.offset += n
        return data

    def _skip(self, n: int) -> None:
        while n:
            avail = len(self._buf) - self._pos
            if not avail:
                if not self._fill(1):
                    raise TarError(
                        f"The layer's tar stream ends in the middle of an entry (at byte {self.offset})")
                continue
            step = min(avail, n)
            self._pos += step
            self.offset += step
            n -= step

    def _drain(self) -> None:
        self._buf, self._pos = b"", 0
        while self._read(CHUNK):
            pass

    # -- content of the current entry -----------------------------------------------------------------

    def chunks(self) -> Iterator[memoryview | bytes]:
        """The remaining content of the current entry, in large pieces (views valid until the next one)."""
        while self._left:
            avail = len(self._buf) - self._pos
            if avail:
                step = min(avail, self._left)
                piece = memoryview(self._buf)[self._pos: self._pos + step]
                self._pos += step
            else:
                data = self._read(CHUNK)
                if not data:
                    raise TarError(
                        f"The layer's tar stream ends in the middle of an entry (at byte {self.offset})")
                step = min(len(data), self._left)
                if step < len(data):
                    self._buf, self._pos = data, step
                    piece = memoryview(data)[:step]
                else:
                    self._buf, self._pos = b"", 0
                    piece = data
            self._left -= step
            self.offset += step
            yield piece

    def read(self, n: int = -1) -> bytes:
        """Up to n bytes (all when n < 0) of the current entry's remaining content."""
        if n < 0 or n > self._left:
            n = self._left
        if not n:
            return b""
        if not self._fill(n) and not self._fill(1):
            raise TarError(f"The layer's tar stream ends in the middle of an entry (at byte {self.offset})")
        n = min(n, len(self._buf) - self._pos)
        data = self._buf[self._pos: self._pos + n]
        self._pos += n
        self._left -= n
        self.offset += n
        return data

    def read_exactly(self, n: int) -> bytes:
        """The next n bytes of the current entry's content (n at most what is left of it)."""
        data = self.read(n)
        while len(data) < n:  # the buffer held part of it
            more = self.read(n - len(data))
            if not more:
                raise TarError(f"The layer's tar stream ends in the middle of an entry (at byte {self.offset})")
            data += more
        return data

    def stream(self) -> io.RawIOBase:
        """The current entry's content as a read-only file object."""
        return _EntryStream(self)

    # -- headers --------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[TarEntry]:
        pax: dict[str, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        while True:
            self._skip(self._left + self._pad)
            self._left = self._pad = 0
            if not self._fill(BLOCK):
                if len(self._buf) - self._pos:
                    raise TarError(f"The layer's tar stream ends in a partial header (at byte {self.offset})")
                return  # no end-of-archive marker: accepted, as GNU tar does
            start = self.offset
            hdr = self._take(BLOCK)
            if hdr == _ZERO_BLOCK:
                self._drain()
                return
            if not _checksum_ok(hdr):
                raise TarError(f"The layer is not a tar archive or is corrupt (bad header at byte {start})")
            typeflag = chr(hdr[156]) if hdr[156] else "\0"
            size = _num(hdr[124:136])
            if typeflag in "xXgLK":
                if size > MAX_EXTENDED_HEADER:  # held in memory whole: a hostile size would exhaust RAM
                    raise TarError(f"The layer has an extended header of {size} bytes at byte {start} (more than "
                                   f"{MAX_EXTENDED_HEADER}): not an image's")
                data = self._take(size)
                self._skip(-size % BLOCK)
                if typeflag in "xX":
                    pax.update(_pax_records(data))
                elif typeflag == "g":
                    self._global.update(_pax_records(data))
                elif typeflag == "L":
                    long_name = _cstr(data)
                else:
                    long_link = _cstr(data)
                continue
            if self._global:
                pax = {**self._global, **pax}
            entry = self._entry(hdr, typeflag, size, pax, (long_name, long_link))
            pax, long_name, long_link = {}, None, None
            has_data = entry.kind == REG
            self._left = entry.size if has_data else 0
            self._pad = -self._left % BLOCK
            if typeflag == "V":  # a volume label carries no file
                self._skip(self._left + self._pad)
                self._left = self._pad = 0
                continue
            yield entry

    def _entry(self, hdr: bytes, typeflag: str, size: int, pax: dict[str, bytes],
               long_names: tuple[bytes | None, bytes | None]) -> TarEntry:
        long_name, long_link = long_names
        if long_name is not None:
            name = _text(long_name)
        else:
            name_b = _cstr(hdr[0:100])
            if hdr[257:263] == b"ustar\x00" and hdr[345]:  # POSIX ustar: a prefix holds leading dirs
                name_b = _cstr(hdr[345:500]) + b"/" + name_b
            name = _text(name_b)
        link_b = long_link if long_link is not None else _cstr(hdr[157:257])
        linkname = _text(link_b) if link_b else ""
        mode, uid, gid = _num(hdr[100:108]), _num(hdr[108:116]), _num(hdr[116:124])
        mtime_ns = _num(hdr[136:148]) * 1_000_000_000
        if typeflag in _UNSUPPORTED:
            raise TarError(f"Entry {name!r} is {_UNSUPPORTED[typeflag]}, which nbc-tui cannot extract")
        if typeflag in _KNOWN_TYPES:
            kind = typeflag
        elif typeflag == "\0" and name.endswith("/"):
            kind = DIR  # pre-POSIX tars mark directories by a trailing slash only
        else:
            kind = REG  # "\0", "7" (contiguous) and unknown types are regular files (POSIX)
        devmajor = devminor = 0
        if kind in (CHR, BLK):
            devmajor, devminor = _num(hdr[329:337]), _num(hdr[337:345])
        xattrs: dict[str, bytes] | None = None
        for key, value in pax.items():
            if key in _PAX_IGNORED:
                continue
            if key == "path":
                name = _text(value)
            elif key == "mtime":
                mtime_ns = _pax_time_ns(value)
            elif key == "linkpath":
                linkname = _text(value)
            elif key == "size":
                size = int(value)
            elif key == "uid":
                uid = int(value)
            elif key == "gid":
                gid = int(value)
            elif key.startswith("SCHILY.xattr."):
                xattrs = xattrs or {}
                xattrs[key[13:]] = value
            elif key.startswith("LIBARCHIVE.xattr."):
                xattrs = xattrs or {}
                xattrs[_text(unquote_to_bytes(key[17:]))] = base64.b64decode(value + b"==")
            elif key == "SCHILY.devmajor":
                devmajor = int(value)
            elif key == "SCHILY.devminor":
                devminor = int(value)
            elif key.startswith("GNU.sparse."):
                raise TarError(f"Entry {name!r} is a GNU sparse file, which nbc-tui cannot extract")
        if size < 0:
            raise TarError(f"Entry {name!r} has a negative size")
        return TarEntry(name, kind, mode=mode & 0o7777, uid=uid, gid=gid, size=size, mtime_ns=mtime_ns,
                        linkname=linkname, devmajor=devmajor, devminor=devminor, xattrs=xattrs)


class _EntryStream(io.RawIOBase):
    def __init__(self, reader: TarReader) -> None:
        super().__init__()
        self._reader = reader

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._reader.read(size if size is not None else -1)

    def readinto(self, buffer: Any) -> int:
        data = self._reader.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

"""What the engine's byte streams promise their readers, as structural types: a blob being verified, a layer
being decompressed, a tar member, an initramfs. Files, ``io`` streams and the decompressors all fit them, so no
stream has to pretend to be a ``typing.BinaryIO``."""

from __future__ import annotations

from typing import Any, Protocol


class Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class RawReader(Reader, Protocol):
    """A stream that also fills a buffer in place (what ``io.BufferedReader`` and the hashing wrappers read)."""

    def readinto(self, buffer: Any, /) -> int | None: ...

    def close(self) -> None: ...

"""What every image source yields to the engine: a manifest, a config and layer blobs verified while read.

Sources differ in where blobs come from (an OCI layout or archive, a Podman or Docker daemon, a registry;
:mod:`.opener` picks one for a reference); they all hand out layers through :meth:`ImageSource.open_blob`,
whose stream checks the digest and the size as the bytes go by and fails at the end of the blob, so nothing
downstream has to trust a blob.
"""

from __future__ import annotations

import hashlib
import io
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..bytestreams import RawReader
from ..errors import InputError, NbcError

if TYPE_CHECKING:
    pass

BLOB_BUFFER = 1 << 20
_DIGEST = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and its size in bytes."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, *, what: str) -> Descriptor:
        """Read a descriptor from manifest or index JSON, refusing a malformed digest (it names a file)."""
        if not isinstance(data, dict):
            raise InputError(f"The {what} descriptor is not a JSON object")
        digest, size = data.get("digest"), data.get("size")
        check_digest(digest, what=what)
        if not isinstance(size, int) or size < 0:
            raise InputError(f"The {what} descriptor {digest} has no valid size")
        annotations = data.get("annotations") or {}
        return cls(str(data.get("mediaType") or ""), digest, size,
                   {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict) else {})

    @property
    def short(self) -> str:
        """The digest shortened for messages, e.g. ``sha256:0123456789ab``."""
        return self.digest[:19]


def check_digest(digest: object, *, what: str) -> str:
    # The digest becomes a file name under blobs/: only the exact hex forms are accepted.
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise InputError(f"The {what} has an invalid digest {digest!r}")
    return digest


class _VerifyingRaw(io.RawIOBase):
    """Counts and hashes a blob while it is read; at the end compares size and digest with the descriptor.

    A failure is sticky (every later read raises again), so a consumer that swallows one error cannot
    read on into a silent end of file. A damaged blob is an NbcError (exit 1): the request was fine, the
    image is not.
    """

    def __init__(self, inner: RawReader, desc: Descriptor, label: str) -> None:
        super().__init__()
        self._inner = inner
        self._desc = desc
        self._label = label
        algorithm = desc.digest.partition(":")[0]
        self._hash = hashlib.new(algorithm)
        self.count = 0
        self._failure: NbcError | None = None
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._failure:
            raise self._failure
        if self._done:
            return 0
        n = self._inner.readinto(buffer) or 0
        if n:
            self.count += n
            self._hash.update(memoryview(buffer)[:n])
            if self.count > self._desc.size:
                self._fail(f"is larger than the {self._desc.size} bytes its descriptor says")
            return n
        self._done = True
        if self.count != self._desc.size:
            self._fail(f"has {self.count} bytes, its descriptor says {self._desc.size}")
        algorithm = self._desc.digest.partition(":")[0]
        actual = f"{algorithm}:{self._hash.hexdigest()}"
        if actual != self._desc.digest:
            self._fail(f"does not match its digest (content hashes to {actual[:19]}…)")
        return 0

    def _fail(self, why: str) -> None:
        self._failure = NbcError(
            f"{self._label} {self._desc.digest} {why}",
            hint="The image is corrupt or was tampered with; download it again",
            details={"digest": self._desc.digest},
        )
        raise self._failure

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            super().close()


class _CountingRaw(io.RawIOBase):
    """Counts a blob's bytes as they are read (a copy verified already: see :func:`reread_stream`)."""

    def __init__(self, inner: RawReader) -> None:
        super().__init__()
        self._inner = inner
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._inner.readinto(buffer) or 0
        self.count += n
        return n

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            super().close()


class BlobStream(io.BufferedReader):
    """A blob's bytes as stored (compressed), verified while read; ``bytes_read`` feeds progress."""

    raw: _VerifyingRaw | _CountingRaw

    @property
    def bytes_read(self) -> int:
        return self.raw.count


def verified_stream(inner: RawReader, desc: Descriptor, *, label: str = "Blob") -> BlobStream:
    """Wrap ``inner`` so that reading it to the end proves it is the blob ``desc`` describes."""
    return BlobStream(_VerifyingRaw(inner, desc, label), buffer_size=BLOB_BUFFER)


def reread_stream(inner: RawReader) -> BlobStream:
    """A blob this process wrote moments ago, only once its digest matched, read back without hashing it again:
    for a download's own cache entry, which every later use reads through :func:`verified_stream` anyway."""
    return BlobStream(_CountingRaw(inner), buffer_size=BLOB_BUFFER)


def verify_bytes(data: bytes, desc: Descriptor, *, label: str) -> bytes:
    """Check a small blob (manifest, index, config) read whole."""
    algorithm = desc.digest.partition(":")[0]
    actual = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
    if len(data) != desc.size or actual != desc.digest:
        raise NbcError(
            f"{label} {desc.digest} does not match its descriptor "
            f"({len(data)} bytes hashing to {actual[:19]}…, expected {desc.size} bytes)",
            hint="The image is corrupt or was tampered with; download it again",
            details={"digest": desc.digest},
        )
    return data


class ImageSource(ABC):
    """One resolved image: the platform manifest chosen, its config parsed, its layers in order."""

    ref: str
    manifest_digest: str
    index_digest: str | None
    config: dict[str, Any]
    layers: list[Descriptor]
    remote = False
    """Whether blobs come over the network (a registry): then an install keeps them in a spool after the
    check, so that the extraction does not download them again (spool.py)."""

    @abstractmethod
    def open_blob(self, desc: Descriptor) -> BlobStream:
        """The raw (compressed) bytes of a blob. Digest and size are verified while streaming: reading to
        the end raises NbcError naming the blob on any mismatch (never a silent pass)."""

    def close(self) -> None:  # noqa: B027 (most sources hold nothing)
        """Release what the source holds (a daemon's export spooled to disk). Safe to call twice."""

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def compressed_size(self) -> int:
        return sum(d.size for d in self.layers)



"""An OCI archive (``oci-archive:FILE[:TAG]``): a tar of an OCI image layout, read in place.

``podman save --format oci-archive`` and ``skopeo copy ... oci-archive:FILE`` write one. The tar is indexed
once (member name -> data offset and size); blobs are then read straight from the file at their offsets, so
nothing is unpacked to /tmp and several blobs can be open at once. Choosing the manifest by tag and
platform, and every digest check, are the layout source's (:class:`OciLayoutSource`).
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, NbcError
from .layout import OciLayoutSource, parse_top_index
from .source import BlobStream, Descriptor, verified_stream

if TYPE_CHECKING:
    from .reference import OciArchiveRef

ARCHIVE_PREFIX = "oci-archive:"
_MAX_LINK_HOPS = 8
_MAX_INDEX = 8 << 20


@dataclass(frozen=True)
class _Member:
    offset: int
    size: int


class TarMembers:
    """The regular files of an uncompressed tar on disk, indexed once, each readable in place.

    Links (symbolic or hard, as older ``docker save`` writes for repeated layers) resolve to their target.
    ``what`` names the file in messages ("OCI archive", "image archive").
    """

    def __init__(self, path: Path, *, what: str) -> None:
        self.path = path
        self.what = what
        self._members: dict[str, _Member] = {}
        links: dict[str, str] = {}
        if not path.is_file():
            raise InputError(f"The {what} {path} does not exist or is not a file")
        try:
            with tarfile.open(path, mode="r:") as tar:
                for info in tar:
                    name = _clean(info.name)
                    if info.isreg() and not info.issparse():
                        self._members[name] = _Member(info.offset_data, info.size)
                    elif info.issym():
                        links[name] = _clean(os.path.normpath(os.path.join(os.path.dirname(name),
                                                                           info.linkname)))
                    elif info.islnk():
                        links[name] = _clean(info.linkname)
        except tarfile.TarError as exc:
            raise InputError(
                f"The {what} {path} is not a readable (uncompressed) tar archive: {exc}",
                hint="Write it again, e.g. with `podman save --format oci-archive -o FILE IMAGE`",
            ) from None
        except OSError as exc:
            raise NbcError(f"Cannot read the {what} {path}: {exc.strerror or exc}") from None
        for name in links:
            target = name
            for _ in range(_MAX_LINK_HOPS):
                target = links.get(target, target)
                if target in self._members:
                    self._members[name] = self._members[target]
                    break

    def __contains__(self, name: str) -> bool:
        return _clean(name) in self._members

    def size(self, name: str) -> int:
        return self._members[_clean(name)].size

    def read_bytes(self, name: str, *, limit: int) -> bytes:
        """A whole small member (JSON); refuses one larger than ``limit``."""
        member = self._members[_clean(name)]
        if member.size > limit:
            raise InputError(f"{name} in the {self.what} {self.path} is implausibly large ({member.size} bytes)")
        with self.open(name) as f:
            data = f.read()
        if len(data) != member.size:
            raise NbcError(f"The {self.what} {self.path} is truncated (in {name})",
                           hint="Write or copy the archive again")
        return data

    def open(self, name: str) -> io.RawIOBase:
        """A raw reader of one member's bytes (its own file handle, so readers do not disturb each other)."""
        member = self._members[_clean(name)]
        f = self.path.open("rb", buffering=0)
        f.seek(member.offset)
        return _Slice(f, member.size)


class _Slice(io.RawIOBase):
    """``size`` bytes of an open file from its current position; closes the file with itself."""

    def __init__(self, f: io.FileIO, size: int) -> None:
        super().__init__()
        self._f = f
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: self._left]
        n = self._f.readinto(view)
        self._left -= n or 0
        return n or 0

    def close(self) -> None:
        try:
            self._f.close()
        finally:
            super().close()


def _clean(name: str) -> str:
    while name.startswith(("./", "/")):
        name = name[2:] if name.startswith("./") else name[1:]
    return name


class OciArchiveSource(OciLayoutSource):
    """An image read from an OCI archive file, selected by tag (``ref.name``) and platform like a layout.

    Holds no open file between calls; :meth:`close` exists so every source can be closed alike.
    """

    kind = "OCI archive"

    def __init__(self, ref: OciArchiveRef, *, host: tuple[str, str] | None = None) -> None:
        self.archive_ref = ref
        self.root = Path(ref.path)
        self.ref = f"{ARCHIVE_PREFIX}{self.root}" + (f":{ref.tag}" if ref.tag else "")
        self._members = TarMembers(self.root, what=self.kind)
        self._load(ref.tag, host)

    def _blob_name(self, digest: str) -> str:
        algorithm, _, hexpart = digest.partition(":")
        return f"blobs/{algorithm}/{hexpart}"

    def _read_top_index(self) -> dict[str, Any]:
        if "index.json" not in self._members or "oci-layout" not in self._members:
            raise InputError(
                f"{self.root} is not an OCI archive (no oci-layout or index.json inside the tar)",
                hint="Create one with `podman save --format oci-archive -o FILE IMAGE` or "
                     "`skopeo copy ... oci-archive:FILE:TAG`; a `docker save` archive is not one",
            )
        data = self._members.read_bytes("index.json", limit=_MAX_INDEX)
        return parse_top_index(data, f"index.json in {self.root}")

    def _blob_bytes(self, desc: Descriptor) -> bytes:
        name = self._blob_name(desc.digest)
        if name not in self._members:
            raise self._missing(desc)
        return self._members.read_bytes(name, limit=_MAX_INDEX)

    def open_blob(self, desc: Descriptor) -> BlobStream:
        name = self._blob_name(desc.digest)
        if name not in self._members:
            raise self._missing(desc)
        return verified_stream(self._members.open(name), desc, label="Layer blob")

    def close(self) -> None:
        """Nothing to release (no file stays open); present so callers can close any source."""

    def __enter__(self) -> OciArchiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Each blob of a remote image fetched once: kept in a spool while the pre-install scan reads it, read back
from there by the extraction.

The scan must see every byte before the disk is touched, and the extraction comes after it: without a place
in between, a registry serves the image twice. While the scan reads one layer, the next ones are already
being fetched into the spool (never into memory). The spool is a private directory under /var/tmp (on disk on
an installed system; RAM on the live ISO). A blob is written there as it streams through the scan and kept
only once its digest was verified (the source's stream verifies before it reports the end); it is read back
verified again, so nothing downstream trusts the spool either. When the spool has no room (checked before,
and a full filesystem met while writing), the blobs it could not keep are fetched again for the extraction,
as before: an install never fails for lack of spool space where a second download would have worked.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..sizes import human
from .source import BlobStream, Descriptor, ImageSource, reread_stream, verified_stream

log = logging.getLogger("nbc_tui")

SPOOL_PARENT = Path("/var/tmp")
SPOOL_PREFIX = "nbc-tui-spool-"
PREFETCH = 3
"""Layers fetched into the spool at the same time, ahead of the scan."""
CHUNK = 1 << 20
RESERVE = 1 << 30
"""Room left over after the spool is full: what else the run (and the live system) needs meanwhile."""
TMPFS_MAGIC = 0x01021994


def spool_problem(total: int, parent: Path = SPOOL_PARENT) -> str | None:
    """Why ``total`` bytes of blobs should not be spooled under ``parent``, or None when they fit with the
    reserve to spare. On a tmpfs the bytes take RAM, so the memory available counts too."""
    try:
        stat = os.statvfs(parent)
    except OSError as exc:
        return f"{parent} cannot be used ({exc.strerror})"
    free = stat.f_bavail * stat.f_frsize
    if free < total + RESERVE:
        return f"{parent} has {human(free)} free, the image's layers need {human(total)} and {human(RESERVE)} spare"
    if _is_tmpfs(parent):
        available = _memory_available()
        if available is not None and available < total + RESERVE:
            return (f"{parent} is in RAM with {human(available)} available, the image's layers need {human(total)} "
                    f"and {human(RESERVE)} spare")
    return None


def _is_tmpfs(path: Path) -> bool:
    """Whether ``path`` lives on a tmpfs (the mount whose point is its longest prefix)."""
    best, fstype = "", ""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return False
    resolved = str(path.resolve())
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (resolved == point or resolved.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, fstype = point, fields[2]
    return fstype == "tmpfs"


def _memory_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class SpooledSource(ImageSource):
    """``inner`` (a remote source) whose layer blobs are kept in ``directory`` the first time they are read
    whole; later reads come from there. When the first layer is opened, the layers after it are fetched into
    the spool in the background (``prefetch`` at a time), so the network works while the scan reads.

    ``layout``: the blobs are named as in an OCI layout's ``blobs/sha256/`` and each is synced to disk before
    it is kept (the download writes its cache entry this way, each blob's sync overlapping the next one's
    fetch); read back, a kept blob is not hashed a second time (the entry is verified wherever it is used).
    Otherwise blobs are named ``sha256-<hex>`` and verified again when read back (the extraction trusts
    nothing it did not check itself). :meth:`stop` ends the prefetching; :meth:`close` also closes
    ``inner`` and removes the directory (a spool owned by an install or update)."""

    def __init__(self, inner: ImageSource, directory: Path, *, prefetch: int = PREFETCH,
                 layout: bool = False) -> None:
        self._inner = inner
        self.directory = directory
        self._prefetch = max(1, prefetch)
        self._layout = layout
        self.ref = inner.ref
        self.manifest_digest = inner.manifest_digest
        self.index_digest = inner.index_digest
        self.config = inner.config
        self.layers = inner.layers
        self.lost: list[str] = []
        """Digests the spool could not keep (no room while writing): read from the source again."""
        self._stop = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._fetching: dict[str, Future[None]] = {}

    def _path(self, desc: Descriptor) -> Path:
        return self.directory / (desc.digest.partition(":")[2] if self._layout else desc.digest.replace(":", "-"))

    def spooled(self, desc: Descriptor) -> bool:
        return self._path(desc).is_file()

    def open_blob(self, desc: Descriptor) -> BlobStream:
        if self._pool is None and desc in self.layers:
            self._prefetch_after(desc)
        fetching = self._fetching.get(desc.digest)
        if fetching is not None:
            with contextlib.suppress(Exception):  # a failed prefetch: the direct read below says why
                fetching.result()
        kept = self._path(desc)
        if kept.is_file():
            if self._layout:  # a download's entry: verified as it was kept, and wherever it is used later
                return reread_stream(io.FileIO(kept, "r"))
            return verified_stream(io.FileIO(kept, "r"), desc, label="Layer blob (spooled)")
        stream = self._inner.open_blob(desc)
        if desc.digest in self.lost:
            return stream
        return BlobStream(_Tee(stream, kept, on_lost=lambda: self.lost.append(desc.digest), durable=self._layout),
                          buffer_size=CHUNK)

    def _prefetch_after(self, first: Descriptor) -> None:
        later = self.layers[self.layers.index(first) + 1:]
        self._pool = ThreadPoolExecutor(max_workers=self._prefetch, thread_name_prefix="nbc-prefetch")
        for desc in later:
            if desc.digest not in self._fetching:
                self._fetching[desc.digest] = self._pool.submit(self._fetch, desc)

    def _fetch(self, desc: Descriptor) -> None:
        """Read ``desc`` whole from the source into the spool (kept only once verified)."""
        if self._stop.is_set() or self._path(desc).is_file():
            return
        with _Tee(self._inner.open_blob(desc), self._path(desc), on_lost=lambda: self.lost.append(desc.digest),
                  durable=self._layout) as tee:
            buffer = bytearray(CHUNK)
            while not self._stop.is_set() and tee.readinto(buffer):
                pass

    def stop(self) -> None:
        """End the prefetching: blobs being fetched stop between two chunks (and are not kept)."""
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        try:
            self.stop()
            self._inner.close()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


class _Tee(io.RawIOBase):
    """The bytes of ``inner`` (a verified stream) as they are read, copied into ``<kept>.partial``, which
    becomes ``kept`` at the end: ``inner`` reports the end only after the digest matched. A write error
    (a full spool) drops the copy and the reading goes on."""

    def __init__(self, inner: BlobStream, kept: Path, *, on_lost: Callable[[], None], durable: bool = False) -> None:
        super().__init__()
        self._durable = durable
        self._inner = inner
        self._kept = kept
        self._partial = kept.with_name(kept.name + ".partial")
        self._out: io.FileIO | None = io.FileIO(self._partial, "w")
        self._on_lost = on_lost

    @property
    def count(self) -> int:
        return self._inner.bytes_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._inner.readinto(buffer)
        if self._out is None:
            return n
        try:
            if n:
                view = memoryview(buffer)[:n]
                while view:
                    view = view[self._out.write(view):]
            else:
                if self._durable:
                    os.fsync(self._out.fileno())
                self._out.close()
                self._out = None
                os.rename(self._partial, self._kept)
        except OSError as exc:
            log.info("the spool cannot keep a blob (%s): it will be downloaded again for the extraction", exc)
            self._drop()
            self._on_lost()
        return n

    def _drop(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        self._partial.unlink(missing_ok=True)

    def close(self) -> None:
        try:
            self._drop()  # not read to its end: nothing is kept
            self._inner.close()
        finally:
            super().close()


def make_spool(parent: Path = SPOOL_PARENT) -> Path:
    """A private (0700) spool directory under ``parent``."""
    return Path(tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=parent))

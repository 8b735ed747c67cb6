"""Faithful, streaming extraction of an image's layers into a mounted target root.

Two processes share the work. The parent reads each blob (verifying its digest and size as it goes),
decompresses it (isal, zstandard; both in threads of their own, :func:`.layers.decompressed_ahead`), walks
its tar entries and sends each one, with a regular file's content, down a pipe. A forked child
(:mod:`.extract_child`) chroots into the target, so no path it touches (absolute symlinks included) can
resolve outside it, and applies the entries with the OCI rules of :mod:`.layer_rules` (the same the scan
used): regular files, directories, symlinks, hard links, device nodes, FIFOs, numeric owners, modes with
setuid/setgid/sticky, xattrs (``security.capability`` included), mtimes, whiteouts and opaque directories.
Reading, decompressing, walking and writing overlap; no layer is ever held whole in memory or spooled to
disk, and a file's content goes from the pipe to the file by splice(2), never through the child's Python.

The child answers once, on a second pipe, with one JSON object: its statistics, or the error that stopped
it; the parent turns that into the same InputError the scan would have raised, or an NbcError.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Cancelled, NbcError
from ..runner import RunContext
from .extract_child import (
    CHUNK,
    DATA,
    END,
    ENTRY,
    FILES,
    FINISH,
    FRAME,
    INLINE_MAX,
    LAYER,
    child_main,
    encode_entry,
    file_head,
    files_head,
    is_plain,
)
from .layers import REG, TarEntry, TarError, TarReader, decompressed_ahead
from .resolve import Refused
from .scan import refusal_error
from .source import ImageSource

log = logging.getLogger("nbc_tui")

_F_SETPIPE_SZ = 1031  # fcntl command (Linux); a 1 MiB pipe lets the parent run ahead of the child
_POLL_MS = 200
_BATCH = 256 << 10
"""Frames are gathered up to this size before a write: one system call for many small files."""
_PROGRESS_STEP = 1 << 20


@dataclass
class ExtractStats:
    """What an extraction did: compressed bytes read, tar bytes applied, entries, wall time."""

    bytes_in: int
    bytes_out: int
    entries: int
    seconds: float
    files_bytes: int = 0
    """Bytes of regular-file content written."""
    warnings: list[str] = field(default_factory=list)
    """Things applied partly (an xattr the filesystem refused on a symlink, a busy mount point kept)."""

    @property
    def mb_per_s(self) -> float:
        return self.bytes_out / self.seconds / 1e6 if self.seconds else 0.0


def extract_image(
    source: ImageSource,
    root: Path,
    *,
    ctx: RunContext,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExtractStats:
    """Apply every layer of ``source``, in order, to the mounted filesystem at ``root``.

    Raises InputError (naming layer and entry) for an entry that would land outside the root, as the
    scan does; NbcError for a damaged blob or tar stream, or when writing fails; Cancelled when
    ``ctx.cancel`` is set (the child is killed promptly). Under dry-run nothing is read or written.
    """
    if ctx.dry_run:
        log.info("dry-run, not extracting %s into %s", source.ref, root)
        return ExtractStats(0, 0, 0, 0.0)
    ctx.check_cancelled()
    target = Path(os.path.realpath(root))
    if not target.is_dir():
        raise NbcError(f"Cannot extract into {root}: not a directory")
    total = source.compressed_size
    started = time.monotonic()
    bytes_in = bytes_out = 0
    log.info("extracting %s (%d layers, %d bytes) into %s", source.ref, len(source.layers), total, target)
    with _ApplyingChild(target, ctx.cancel) as child:
        for desc in source.layers:
            child.begin_layer(desc.digest)
            with source.open_blob(desc) as blob, decompressed_ahead(blob, desc.media_type) as stream:
                reader = TarReader(stream.read)
                reported = 0
                try:
                    for entry in reader:
                        if entry.kind == REG and entry.size <= INLINE_MAX:
                            content = reader.read_exactly(entry.size)
                            if is_plain(entry):
                                child.plain_file(entry, content)
                            else:
                                child.entry(entry, content)
                            continue
                        child.entry(entry)
                        if entry.kind == REG:
                            for piece in reader.chunks():
                                child.send(piece)
                        if on_progress is not None and blob.bytes_read - reported >= _PROGRESS_STEP:
                            reported = blob.bytes_read
                            on_progress(bytes_in + reported, total)
                except TarError as exc:  # the scan read the same verified bytes: a damaged image after all
                    child.stop()
                    raise NbcError(f"Layer {desc.digest[:19]}: {exc.message}",
                                   hint="The image is corrupt; download it again",
                                   details={"layer": desc.digest}) from None
                bytes_out += reader.offset
                bytes_in += blob.bytes_read
            child.end_layer()
            if on_progress is not None:
                on_progress(bytes_in, total)
        report = child.finish()
    stats = ExtractStats(bytes_in, bytes_out, int(report["entries"]), time.monotonic() - started,
                         int(report["files_bytes"]), list(report["warnings"]))
    log.info("extracted %d entries, %d MB of tar in %.1f s (%.0f MB/s)", stats.entries,
             stats.bytes_out // 1_000_000, stats.seconds, stats.mb_per_s)
    return stats


# -- the parent's side ----------------------------------------------------------------------------------

class _ApplyingChild:
    """The forked, chrooted child and the two pipes to it. Leaving the block always reaps it."""

    def __init__(self, root: Path, cancel: threading.Event) -> None:
        self._root = root
        self._cancel = cancel
        self._layer = ""
        self.pid = 0
        self._out = bytearray()  # frames not written yet (see _flush)
        self._files_at = -1  # where in _out the open F frame starts (-1: none open)
        self._files_dir = ""

    def __enter__(self) -> _ApplyingChild:
        data_r, data_w = os.pipe2(os.O_CLOEXEC)
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(data_w, _F_SETPIPE_SZ, CHUNK)
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                os.close(data_w)
                os.close(report_r)
                code = child_main(str(self._root), data_r, report_w)
            finally:
                os._exit(code)
        self.pid = pid
        os.close(data_r)
        os.close(report_w)
        self._data, self._report = data_w, report_r
        os.set_blocking(data_w, False)
        self._poll = select.poll()
        self._poll.register(data_w, select.POLLOUT)
        self._poll.register(report_r, select.POLLIN)
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in (self._data, self._report):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._data = self._report = -1
        self._reap(kill=True)

    def _reap(self, *, kill: bool) -> int | None:
        if not self.pid:
            return None
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        return status

    def begin_layer(self, digest: str) -> None:
        self._layer = digest
        self._frame(LAYER, digest.encode())

    def entry(self, entry: TarEntry, inline: bytes | None = None) -> None:
        """An entry's header (with ``inline``, the whole content of a small file)."""
        if self._cancel.is_set():
            self._cancelled()
        self._frame(ENTRY, encode_entry(entry, inline))

    def plain_file(self, entry: TarEntry, content: bytes) -> None:
        """A small regular file of root's without xattrs (extract_child.is_plain), with its content. It joins
        the ``F`` frame of the files just before it in the same directory, or opens a new one."""
        directory, _, base = entry.name.rpartition("/")
        out = self._out
        if self._files_at < 0 or directory != self._files_dir:
            self._end_files()
            if self._cancel.is_set():
                self._cancelled()
            self._files_at, self._files_dir = len(out), directory
            out += FRAME.pack(FILES, 0)  # its length is known when the frame ends
            out += files_head(directory)
        out += file_head(base, entry.mode, entry.mtime_ns, len(content))
        out += content
        if len(out) >= _BATCH:
            self._end_files()
            self._flush()

    def _end_files(self) -> None:
        """Close the open ``F`` frame, if any: its length goes into its header."""
        if self._files_at >= 0:
            FRAME.pack_into(self._out, self._files_at, FILES, len(self._out) - self._files_at - FRAME.size)
            self._files_at = -1

    def send(self, data: bytes | memoryview) -> None:
        """Content of the regular file just announced."""
        if self._cancel.is_set():
            self._cancelled()
        self._frame(DATA, data)

    def end_layer(self) -> None:
        self._frame(END, b"")

    def finish(self) -> dict[str, Any]:
        self._frame(FINISH, b"")
        self._flush()
        os.close(self._data)
        self._data = -1
        report = self._read_report(wait=True)
        if report.get("status") != "ok":
            raise self._error(report)
        return report

    def stop(self) -> None:
        """Give up on the child (the parent met an error of its own)."""
        self._reap(kill=True)

    def _frame(self, kind: bytes, payload: bytes | memoryview) -> None:
        self._end_files()
        out = self._out
        out += FRAME.pack(kind, len(payload))
        if len(payload) >= _BATCH:  # a big piece of content: written from where it is
            self._flush()
            self._write(payload)
            return
        out += payload
        if len(out) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._out:
            self._write(self._out)
            self._out = bytearray()

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._data, view)
            except BlockingIOError:
                n = 0
            except BrokenPipeError:
                raise self._error(self._read_report(wait=True)) from None
            if n:
                view = view[n:]
                continue
            for fd, _ in self._poll.poll(_POLL_MS):
                if fd == self._report:  # the child only speaks early when it stopped
                    raise self._error(self._read_report(wait=True))
            if self._cancel.is_set():
                self._cancelled()

    def _cancelled(self) -> None:
        self._reap(kill=True)
        raise Cancelled("Interrupted while extracting the image",
                        hint="The target is half written; run the install again")

    def _read_report(self, *, wait: bool) -> dict[str, Any]:
        chunks = []
        while True:
            if self._cancel.is_set() and self.pid:
                self._cancelled()
            ready = select.select([self._report], [], [], _POLL_MS / 1000)[0]
            if not ready:
                continue
            data = os.read(self._report, 1 << 16)
            if not data:
                break
            chunks.append(data)
        status = self._reap(kill=False) if wait else None
        try:
            report = json.loads(b"".join(chunks)) if chunks else {}
        except ValueError:
            report = {}
        if not report:
            how = (f"was killed by signal {os.WTERMSIG(status)}" if status is not None and
                   os.WIFSIGNALED(status) else "stopped without a word")
            report = {"status": "failed", "layer": self._layer, "entry": None,
                      "message": f"the extraction process {how}"}
        return report

    def _error(self, report: dict[str, Any]) -> NbcError:
        layer = str(report.get("layer") or self._layer)
        status = report.get("status")
        if status == "refused":
            return refusal_error(layer, Refused(str(report["entry"]), str(report["reason"])))
        if status == "invalid":
            return NbcError(f"Layer {layer[:19]}: {report['message']}",
                            hint="The image is corrupt; download it again", details={"layer": layer})
        entry = report.get("entry")
        where = f" at entry {entry!r}" if entry else ""
        return NbcError(f"Extracting layer {layer[:19]} failed{where}: {report.get('message')}",
                        hint="Check that the target filesystem has space and supports xattrs",
                        details={"layer": layer, "entry": entry})



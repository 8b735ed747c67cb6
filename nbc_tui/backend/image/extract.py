"""Faithful, streaming extraction of an image's layers into a mounted target root.

Two processes share the work. The parent reads each blob (verifying its digest and size as it goes),
decompresses it (isal, zstandard) and writes the tar stream into a pipe. A forked child chroots into the
target, so no path it touches (absolute symlinks included) can resolve outside it, reads the tar stream
from the pipe and applies it with the OCI rules of :mod:`.layer_rules` (the same the scan used): regular
files, directories, symlinks, hard links, device nodes, FIFOs, numeric owners, modes with
setuid/setgid/sticky, xattrs (``security.capability`` included), mtimes, whiteouts and opaque directories.
Decompression and writing overlap; no layer is ever held whole in memory or spooled to disk, and the content
of a file bigger than what the child has buffered goes from the pipe to the file by splice(2), never
through Python.

The pipe carries frames: ``L`` + layer digest, ``D`` + tar bytes, ``E`` (end of layer), ``Z`` (finish).
The child answers once, on a second pipe, with one JSON object: its statistics, or the error that
stopped it; the parent turns that into the same InputError the scan would have raised, or an NbcError.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import select
import signal
import stat
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Cancelled, NbcError
from ..runner import RunContext
from .layer_rules import LayerApplier
from .layers import BLK, CHR, DIR, FIFO, REG, SYM, TarEntry, TarError, TarReader, decompressed
from .readahead import ReadAhead
from .resolve import DIR as K_DIR
from .resolve import LINK as K_LINK
from .resolve import MISSING as K_MISSING
from .resolve import OTHER as K_OTHER
from .resolve import Refused
from .scan import refusal_error
from .source import ImageSource

log = logging.getLogger("nbc_tui")

CHUNK = 1 << 20
_FRAME = struct.Struct("!cQ")
_LAYER, _DATA, _END, _FINISH = b"L", b"D", b"E", b"Z"
_F_SETPIPE_SZ = 1031  # fcntl command (Linux); a 1 MiB pipe lets decompression run ahead of writing
_POLL_MS = 200
_MAX_WARNINGS = 20
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


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
            # Read, verified and decompressed in a thread while this one feeds the child.
            with source.open_blob(desc) as blob, \
                    contextlib.closing(ReadAhead(decompressed(blob, desc.media_type))) as stream:
                while chunk := stream.read(CHUNK):
                    child.send(chunk)
                    bytes_out += len(chunk)
                    if on_progress is not None:
                        on_progress(bytes_in + blob.bytes_read, total)
                bytes_in += blob.bytes_read
            child.end_layer()
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
                code = _child_main(str(self._root), data_r, report_w)
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
        self._frame(_LAYER, digest.encode())

    def send(self, data: bytes) -> None:
        if self._cancel.is_set():
            self._cancelled()
        self._frame(_DATA, data)

    def end_layer(self) -> None:
        self._frame(_END, b"")

    def finish(self) -> dict[str, Any]:
        self._frame(_FINISH, b"")
        os.close(self._data)
        self._data = -1
        report = self._read_report(wait=True)
        if report.get("status") != "ok":
            raise self._error(report)
        return report

    def _frame(self, kind: bytes, payload: bytes) -> None:
        self._write(_FRAME.pack(kind, len(payload)))
        if payload:
            self._write(payload)

    def _write(self, data: bytes) -> None:
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


# -- the child's side -----------------------------------------------------------------------------------

class _Frames:
    """The child's end of the data pipe: frame headers, and each layer's tar bytes as a read function."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._left = 0          # bytes of the current data frame not read yet
        self._in_layer = False
        self.can_splice = hasattr(os, "splice")

    def _exact(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            data = os.read(self.fd, n - got)
            if not data:
                raise EOFError("the data pipe closed early")
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def header(self) -> tuple[bytes, int]:
        kind, length = _FRAME.unpack(self._exact(_FRAME.size))
        return kind, length

    def begin_layer(self, length: int) -> str:
        self._in_layer = True
        return self._exact(length).decode()

    def _next_data(self) -> bool:
        """Move to the next data frame when the current one is used up; False at the layer's end."""
        while not self._left:
            if not self._in_layer:
                return False
            kind, length = self.header()
            if kind == _END:
                self._in_layer = False
                return False
            if kind != _DATA:
                raise EOFError(f"unexpected frame {kind!r} inside a layer")
            self._left = length
        return True

    def read(self, n: int) -> bytes:
        """The current layer's next tar bytes (any amount); b"" at its end."""
        if not self._next_data():
            return b""
        data = os.read(self.fd, min(self._left, max(n, CHUNK)))
        if not data:
            raise EOFError("the data pipe closed early")
        self._left -= len(data)
        return data

    def splice(self, fd: int, n: int) -> int:
        """Move up to ``n`` of the layer's next tar bytes from the pipe into ``fd`` without reading them
        (a file's content goes from the pipe to the page cache); 0 at the layer's end. Falls back to a
        read and a write where the target filesystem cannot take a splice."""
        if not self._next_data():
            return 0
        want = min(self._left, n)
        if self.can_splice:
            try:
                moved = os.splice(self.fd, fd, want)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self.can_splice = False
            else:
                if not moved:
                    raise EOFError("the data pipe closed early")
                self._left -= moved
                return moved
        data = os.read(self.fd, want)
        if not data:
            raise EOFError("the data pipe closed early")
        self._left -= len(data)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        return len(data)


def _child_main(root: str, data_fd: int, report_fd: int) -> int:
    """Runs in the forked child: chroot, apply the frames, report one JSON object. Returns the exit code."""
    layer, current = "", None
    report: dict[str, Any]
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop (it kills us)
        devnull = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)  # a stray message must not reach the TUI or the JSON Lines stream
        keep = sorted({0, 1, 2, data_fd, report_fd})
        for low, high in zip(keep, [*keep[1:], os.sysconf("SC_OPEN_MAX")], strict=True):
            os.closerange(low + 1, high)  # other threads' pipes must not stay open in us
        os.chroot(root)
        os.chdir("/")
        os.umask(0)
        frames = _Frames(data_fd)
        tree = _RealTree()
        entries = 0
        while True:
            kind, length = frames.header()
            if kind == _FINISH:
                break
            if kind != _LAYER:
                raise EOFError(f"unexpected frame {kind!r}")
            layer = frames.begin_layer(length)
            reader = TarReader(frames.read, frames.splice)
            applier = LayerApplier(tree)
            for entry in reader:
                current = entry.name
                applier.apply(entry, reader)
            current = None
            entries += applier.entries
        tree.finish()
        report = {"status": "ok", "entries": entries, "files_bytes": tree.files_bytes,
                  "warnings": tree.warnings}
        code = 0
    except Refused as exc:
        report = {"status": "refused", "layer": layer, "entry": exc.name, "reason": exc.reason}
        code = 1
    except TarError as exc:
        report = {"status": "invalid", "layer": layer, "message": exc.message}
        code = 1
    except OSError as exc:
        what = f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
        report = {"status": "failed", "layer": layer, "entry": current, "message": what}
        code = 1
    except Exception as exc:
        report = {"status": "failed", "layer": layer, "entry": current, "message": f"{exc!r}"}
        code = 1
    with contextlib.suppress(OSError):
        data = json.dumps(report, default=str).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(report_fd, view):]
    return code


class _RealTree:
    """The target filesystem as layer_rules sees it (the child runs chrooted: "/" is the target root)."""

    def __init__(self) -> None:
        self.known: set[str] = {""}  # canonical paths verified to be real directories
        self.dir_times: dict[str, tuple[int, int]] = {}  # path -> (mtime ns, inode), applied at the end
        self.files_bytes = 0
        self.warnings: list[str] = []

    def lookup(self, path: str) -> tuple[int, str | None]:
        try:
            mode = os.lstat(path or "/").st_mode
        except (FileNotFoundError, NotADirectoryError):
            return K_MISSING, None
        if stat.S_ISDIR(mode):
            return K_DIR, None
        if stat.S_ISLNK(mode):
            return K_LINK, os.readlink(path)
        return K_OTHER, None

    def known_dir(self, path: str) -> bool:
        return path in self.known

    def make_dirs(self, path: str) -> None:
        if path in self.known:
            return
        parent = path.rpartition("/")[0]
        self.make_dirs(parent)
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(path).st_mode):  # resolve() checked it; cheap insurance
                raise
        self.known.add(path)

    def remove(self, path: str) -> None:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            self._remove_tree(path)
            self.known = {""}  # forget every verified directory: cheap, and removals are rare
        else:
            os.unlink(path)

    def _remove_tree(self, path: str) -> None:
        with os.scandir(path) as it:
            found = list(it)
        for e in found:
            if e.is_dir(follow_symlinks=False):
                self._remove_tree(e.path)
            else:
                os.unlink(e.path)
        try:
            os.rmdir(path)
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            self._warn(f"/{path} is a mount point: emptied instead of removed")

    def children(self, path: str) -> list[str]:
        return os.listdir(path or "/")

    def update_dir(self, path: str, entry: TarEntry) -> None:
        os.chown(path, entry.uid, entry.gid, follow_symlinks=False)
        os.chmod(path, entry.mode)
        self._xattrs(path, entry, replace=True)
        self.dir_times[path] = (entry.mtime_ns, os.lstat(path).st_ino)

    def create(self, path: str, entry: TarEntry, content: TarReader) -> bool:
        kind = entry.kind
        try:
            if kind == REG:
                fd = os.open(path, _CREATE_FLAGS, 0o600)
            elif kind == DIR:
                os.mkdir(path, 0o700)
            elif kind == SYM:
                os.symlink(entry.linkname, path)
            elif kind in (CHR, BLK):
                fmt = stat.S_IFCHR if kind == CHR else stat.S_IFBLK
                os.mknod(path, fmt | 0o600, os.makedev(entry.devmajor, entry.devminor))
            elif kind == FIFO:
                os.mkfifo(path, 0o600)
            else:  # pragma: no cover - the tar reader maps every type to one of the above
                raise Refused(entry.name, f"has an unknown type {kind!r}")
        except FileExistsError:
            return False
        if kind == REG:
            self._fill_file(fd, entry, content)
        elif kind == SYM:
            os.chown(path, entry.uid, entry.gid, follow_symlinks=False)
            self._xattrs(path, entry, symlink=True)
            os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)
        else:
            # chown before chmod: chown clears setuid/setgid; xattrs after chown, which drops capabilities
            os.chown(path, entry.uid, entry.gid, follow_symlinks=False)
            os.chmod(path, entry.mode)
            self._xattrs(path, entry)
            if kind == DIR:
                self.known.add(path)
                self.dir_times[path] = (entry.mtime_ns, os.lstat(path).st_ino)
            else:
                os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)
        return True

    def _fill_file(self, fd: int, entry: TarEntry, content: TarReader) -> None:
        try:
            content.copy_to(fd)
            # the same order as above, on the open file
            os.fchown(fd, entry.uid, entry.gid)
            os.fchmod(fd, entry.mode)
            if entry.xattrs:
                self._xattrs(fd, entry)
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
        finally:
            os.close(fd)
        self.files_bytes += entry.size

    def hardlink(self, path: str, target: str, entry: TarEntry) -> bool:
        try:
            os.link(target, path, follow_symlinks=False)  # a link to a symlink links the symlink itself
        except FileExistsError:
            return False
        return True

    def _xattrs(self, where: str | int, entry: TarEntry, *, symlink: bool = False,
                replace: bool = False) -> None:
        wanted = entry.xattrs or {}
        if replace and isinstance(where, str):
            for name in os.listxattr(where, follow_symlinks=False):
                if name not in wanted and name != "security.selinux":  # the host's label stays
                    os.removexattr(where, name, follow_symlinks=False)
        for name, value in wanted.items():
            try:
                if isinstance(where, int):
                    os.setxattr(where, name, value)
                else:
                    os.setxattr(where, name, value, follow_symlinks=False)
            except OSError as exc:
                # Linux refuses user.* xattrs on symlinks; a filesystem may lack a namespace. Anything
                # else, and file capabilities anywhere, is an error: the system would not work.
                tolerable = exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP) and (
                    symlink or name != "security.capability")
                if not tolerable:
                    raise
                self._warn(f"xattr {name} not set on {entry.name}: {exc.strerror}")

    def _warn(self, text: str) -> None:
        if len(self.warnings) < _MAX_WARNINGS:
            self.warnings.append(text)

    def finish(self) -> None:
        """Directory mtimes last, deepest first: creating entries inside a directory changes its mtime."""
        for path in sorted(self.dir_times, key=lambda p: p.count("/"), reverse=True):
            mtime, ino = self.dir_times[path]
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode) and st.st_ino == ino:  # not removed or replaced since
                os.utime(path, ns=(mtime, mtime), follow_symlinks=False)

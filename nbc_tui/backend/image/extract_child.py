"""The extraction's child: chrooted into the target, it applies the entries the parent sends (see
:mod:`.extract`) with the OCI rules of :mod:`.layer_rules`.

The parent walks the tar stream; the pipe carries frames, each a kind byte and a length:
``L`` + layer digest, ``H`` + one entry's header (:func:`encode_entry`, with the content of a small file),
``F`` + plain files that follow each other in one directory (:func:`files_head` and :func:`file_head`: small
regular files of root's without xattrs, most of a system's files, in a compact form the child applies in one
loop, without building entries), ``D`` + content bytes of the bigger regular file just announced (as many
frames as its size takes), ``E`` (end of layer), ``Z`` (finish). The child
answers once, on a second pipe, with one JSON object: its statistics, or the error that stopped it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import marshal
import os
import shutil
import signal
import stat
import struct
from collections.abc import Iterator
from typing import Any

from .layer_rules import LayerApplier, simple_name
from .layers import BLK, CHR, DIR, FIFO, REG, SYM, TarEntry
from .resolve import DIR as K_DIR
from .resolve import LINK as K_LINK
from .resolve import MISSING as K_MISSING
from .resolve import OTHER as K_OTHER
from .resolve import Refused, join

CHUNK = 1 << 20
FRAME = struct.Struct("!cQ")
_FRAME_SIZE = FRAME.size
LAYER, ENTRY, FILES, DATA, END, FINISH = b"L", b"H", b"F", b"D", b"E", b"Z"
_FILES_HEAD = struct.Struct("!I")  # length of the directory's name; then the name, then the files
_FILE_HEAD = struct.Struct("!IqII")  # mode, mtime (ns), length of the base name, of the content; then both
_FILES_HEAD_SIZE, _FILE_HEAD_SIZE = _FILES_HEAD.size, _FILE_HEAD.size
_INT64 = range(-(1 << 63), 1 << 63)
_MAX_WARNINGS = 20
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


INLINE_MAX = 64 << 10
"""A regular file up to this size travels inside its entry's frame (most files of a system are small)."""


def encode_entry(entry: TarEntry, inline: bytes | None = None) -> bytes:
    """An entry's header as the parent sends it, with the content of a small file (``inline``) or without
    (``None``: ``D`` frames follow). marshal: a tuple of plain values, read back in C."""
    return marshal.dumps((*entry.fields(), inline))


def decode_entry(data: bytes) -> tuple[TarEntry, bytes | None]:
    *fields, inline = marshal.loads(data)
    return TarEntry.from_fields(fields), inline


def is_plain(entry: TarEntry) -> bool:
    """Whether the entry (a regular file up to INLINE_MAX) can travel in a ``F`` frame: root's, no xattrs."""
    return not (entry.uid or entry.gid or entry.xattrs) and entry.mtime_ns in _INT64


def files_head(directory: str) -> bytes:
    """The start of a ``F`` payload: the directory (as the entries name it) of the files that follow."""
    name = directory.encode("utf-8", "surrogateescape")
    return _FILES_HEAD.pack(len(name)) + name


def file_head(base: str, mode: int, mtime_ns: int, size: int) -> bytes:
    """One file of a ``F`` payload, up to its ``size`` bytes of content (which the parent appends as they are,
    not copied into a new string first)."""
    name = base.encode("utf-8", "surrogateescape")
    return _FILE_HEAD.pack(mode, mtime_ns, len(name), size) + name


PlainFile = tuple[str, int, int, memoryview]
"""A file of a ``F`` frame: base name, mode, mtime (ns), content."""


def decode_files(payload: bytes | memoryview) -> tuple[str, Iterator[PlainFile]]:
    """The directory of a ``F`` payload and its files, in order."""
    view = memoryview(payload)
    (length,) = _FILES_HEAD.unpack_from(view)
    start = _FILES_HEAD_SIZE + length
    return str(view[_FILES_HEAD_SIZE:start], "utf-8", "surrogateescape"), _files(view, start)


def _files(view: memoryview, at: int) -> Iterator[PlainFile]:
    end, unpack = len(view), _FILE_HEAD.unpack_from
    while at < end:
        mode, mtime_ns, name_length, size = unpack(view, at)
        name_end = at + _FILE_HEAD_SIZE + name_length
        at = name_end + size
        if at > end:
            raise EOFError("a F frame ends inside a file")
        yield str(view[name_end - name_length: name_end], "utf-8", "surrogateescape"), mode, mtime_ns, view[name_end:at]


def plain_entry(name: str, mode: int, mtime_ns: int, size: int) -> TarEntry:
    """The entry a file of a ``F`` frame stands for, for the rules' long way."""
    return TarEntry.from_fields((name, REG, mode, 0, 0, size, mtime_ns, "", 0, 0, None))


def _by_the_rules(applier: LayerApplier, directory: str, file: PlainFile) -> None:
    """A file of a ``F`` frame the long way: as an entry, through every rule."""
    base, mode, mtime_ns, data = file
    applier.apply(plain_entry(join(directory, base), mode, mtime_ns, len(data)), InlineContent(data))


class Frames:
    """The child's end of the data pipe, read through its own buffer (one system call per megabyte, not per
    frame); a file's content is spliced from the pipe when the buffer holds none of it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = b""
        self._pos = 0
        self.can_splice = hasattr(os, "splice")

    def _fill(self) -> None:
        data = os.read(self.fd, CHUNK)
        if not data:
            raise EOFError("the data pipe closed early")
        self._buf = self._buf[self._pos:] + data if self._pos < len(self._buf) else data
        self._pos = 0

    def exact(self, n: int) -> bytes:
        while len(self._buf) - self._pos < n:
            self._fill()
        data = self._buf[self._pos: self._pos + n]
        self._pos += n
        return data

    def header(self) -> tuple[bytes, int]:
        kind, length = FRAME.unpack(self.exact(FRAME.size))
        return kind, length

    def frame(self) -> tuple[bytes, bytes | memoryview]:
        """The next frame's kind and payload (not for ``D`` frames, which FramedContent reads). A ``F`` frame's
        payload, most of the bytes of small files, is a view of the buffer when it is all there: not copied."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos >= _FRAME_SIZE:  # the usual case: the whole frame is buffered, one slice
            kind, length = FRAME.unpack_from(buf, pos)
            end = pos + _FRAME_SIZE + length
            if end <= len(buf):
                self._pos = end
                if kind == FILES:
                    return kind, memoryview(buf)[pos + _FRAME_SIZE: end]
                return kind, buf[pos + _FRAME_SIZE: end]
        kind, length = self.header()
        return kind, self.exact(length)

    def move(self, fd: int, n: int) -> int:
        """Write up to ``n`` (> 0) of the next bytes into ``fd``: what is buffered, else a splice from the pipe
        (the bytes go from the pipe to the page cache, never through Python), else a read and a write where
        the target filesystem cannot take a splice. Returns how many moved."""
        avail = len(self._buf) - self._pos
        if avail:
            step = min(avail, n)
            _write_all(fd, memoryview(self._buf)[self._pos: self._pos + step])
            self._pos += step
            return step
        if self.can_splice:
            try:
                moved = os.splice(self.fd, fd, n)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self.can_splice = False
            else:
                if not moved:
                    raise EOFError("the data pipe closed early")
                return moved
        self._fill()
        return self.move(fd, n)


class InlineContent:
    """The content of a small file, carried in its entry's frame."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes | memoryview) -> None:
        self._data = data

    def copy_to(self, fd: int) -> None:
        if self._data:
            _write_all(fd, self._data)

    def skip_rest(self) -> None:
        pass


class FramedContent:
    """The content of one regular-file entry, arriving in ``D`` frames after it."""

    __slots__ = ("_frame_left", "_frames", "_left")

    def __init__(self, frames: Frames, size: int) -> None:
        self._frames = frames
        self._left = size        # content bytes not consumed yet
        self._frame_left = 0     # of which in the current data frame

    def _next_frame(self) -> None:
        kind, length = self._frames.header()
        if kind != DATA or not 0 < length <= self._left:
            raise EOFError(f"unexpected frame {kind!r} ({length} bytes) inside a file's content")
        self._frame_left = length

    def copy_to(self, fd: int) -> None:
        while self._left:
            if not self._frame_left:
                self._next_frame()
            moved = self._frames.move(fd, self._frame_left)
            self._frame_left -= moved
            self._left -= moved

    def skip_rest(self) -> None:
        while self._left:
            if not self._frame_left:
                self._next_frame()
            self._frames.exact(self._frame_left)
            self._left -= self._frame_left
            self._frame_left = 0


def _write_all(fd: int, data: memoryview | bytes) -> None:
    written = os.write(fd, data)
    while written < len(data):  # rare: a short write (a regular file, a full pipe)
        written += os.write(fd, memoryview(data)[written:])


def child_main(root: str, data_fd: int, report_fd: int) -> int:
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
        frames = Frames(data_fd)
        tree = _RealTree()
        entries = 0
        while True:
            kind, payload = frames.frame()
            if kind == FINISH:
                break
            if kind != LAYER:
                raise EOFError(f"unexpected frame {kind!r}")
            layer = bytes(payload).decode()
            applier = LayerApplier(tree)
            while True:
                kind, payload = frames.frame()
                if kind == FILES:
                    directory, files = decode_files(payload)
                    current = directory or "."
                    tree.plain_files(applier, directory, files)
                    continue
                if kind == END:
                    break
                if kind != ENTRY:
                    raise EOFError(f"unexpected frame {kind!r} inside a layer")
                entry, inline = decode_entry(payload)
                current = entry.name
                content = (InlineContent(inline) if inline is not None
                           else FramedContent(frames, entry.size if entry.kind == REG else 0))
                applier.apply(entry, content)
                if inline is None:
                    content.skip_rest()  # a file the layer rules did not write (none today): its bytes go by
            current = None
            entries += applier.entries
        tree.finish()
        report = {"status": "ok", "entries": entries, "files_bytes": tree.files_bytes,
                  "warnings": tree.warnings}
        code = 0
    except Refused as exc:
        report = {"status": "refused", "layer": layer, "entry": exc.name, "reason": exc.reason}
        code = 1
    except OSError as exc:
        what = f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
        report = {"status": "failed", "layer": layer, "entry": current, "message": what}
        code = 1
    except Exception as exc:
        report = {"status": "failed", "layer": layer, "entry": current, "message": f"{exc!r}"}
        code = 1
    with contextlib.suppress(OSError):
        _write_all(report_fd, json.dumps(report, default=str).encode())
    return code


_DEFAULT_ACL = "system.posix_acl_default"


def _passes_on(path: str) -> bool:
    """Whether the directory ``path`` gives what is created in it a group (setgid) or a default ACL."""
    if os.stat(path).st_mode & stat.S_ISGID:
        return True
    try:
        return _DEFAULT_ACL in os.listxattr(path)
    except OSError:
        return False


class _RealTree:
    """The target filesystem as layer_rules sees it (the child runs chrooted: "/" is the target root)."""

    def __init__(self) -> None:
        self.known: set[str] = {""}  # canonical paths verified to be real directories
        self.dir_times: dict[str, tuple[int, int]] = {}  # path -> (mtime ns, inode), applied at the end
        self.files_bytes = 0
        self.warnings: list[str] = []
        # A directory can pass something on to what is created inside it: a setgid bit its group, a default
        # ACL a mode. Once the tree has one, every file gets its owner and mode explicitly (see create).
        self.inherits = _passes_on("/")

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
        missing = []  # a loop, not recursion: symlinks can make a path deeper than any one name
        while path not in self.known:
            missing.append(path)
            path = path.rpartition("/")[0]
        for folder in reversed(missing):
            try:
                os.mkdir(folder, 0o755)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(folder).st_mode):  # resolve() checked it; cheap insurance
                    raise
            self.known.add(folder)

    def remove(self, path: str) -> None:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            self._remove_tree(path)
            self.known = {""}  # forget every verified directory: cheap, and removals are rare
        else:
            os.unlink(path)

    def _remove_tree(self, top: str) -> None:
        stack = [(top, False)]  # depth first with a stack, not recursion (see make_dirs)
        while stack:
            path, emptied = stack.pop()
            if not emptied:
                stack.append((path, True))
                with os.scandir(path) as it:
                    for e in it:
                        if e.is_dir(follow_symlinks=False):
                            stack.append((e.path, False))
                        else:
                            os.unlink(e.path)
                continue
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
        self._dir_done(path, entry)

    def create(self, path: str, entry: TarEntry, content: FramedContent | InlineContent) -> bool:
        kind = entry.kind
        if kind == REG:  # most entries: the shortest way
            # Created with its final owner and mode when it is root's (see plain_files): that spares a
            # chown and a chmod for most files of a system.
            final = not (entry.uid or entry.gid or self.inherits)
            try:
                fd = os.open(path, _CREATE_FLAGS, entry.mode if final else 0o600)
            except FileExistsError:
                return False
            self._fill_file(fd, entry, content, final)
            return True
        try:
            if kind == DIR:
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
        if kind == SYM:
            # We are root: a new symlink is ours already, unless a setgid directory gave it its group.
            if entry.uid or entry.gid or self.inherits:
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
                self._dir_done(path, entry)
            else:
                os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)
        return True

    def plain_files(self, applier: LayerApplier, directory: str, files: Iterator[PlainFile]) -> None:
        """The files of a ``F`` frame, in order: regular files of root's without xattrs, in ``directory``.

        Most files of a system are in a directory the tree knows, have a simple name and nothing in their
        way. Each is created relative to its directory with its final mode and content (open, write,
        futimens, close), with no entry built and no rule weighed. Root's own writes keep setuid/setgid,
        and our umask is 0: the mode given to open(2) is the file's. Any other file takes the rules' long
        way; so does every file once a directory of the tree passes on a group or an ACL (create() then
        sets owner and mode explicitly)."""
        parent = None if self.inherits else applier.simple_dir(directory)
        if parent is None:
            for file in files:
                _by_the_rules(applier, directory, file)
            return
        made: list[str] = []  # created, not yet recorded with the applier
        size, base = 0, ""
        open_, write, utime, close = os.open, os.write, os.utime, os.close  # the loop runs per file
        dir_fd = open_(parent or "/", _DIR_FLAGS)
        try:
            for base, mode, mtime_ns, data in files:
                if simple_name(base):
                    try:
                        fd = open_(base, _CREATE_FLAGS, mode, dir_fd=dir_fd)
                    except FileExistsError:
                        fd = -1
                    if fd >= 0:
                        try:
                            if data and (written := write(fd, data)) < len(data):
                                _write_all(fd, data[written:])  # rare: a short write
                            utime(fd, ns=(mtime_ns, mtime_ns))
                        finally:
                            close(fd)
                        made.append(base)
                        size += len(data)
                        continue
                # The rules see this layer's files created so far (an opaque marker keeps them).
                applier.applied_in(parent, made)
                made = []
                _by_the_rules(applier, directory, (base, mode, mtime_ns, data))
        except OSError as exc:
            if exc.filename in (None, base):
                exc.filename = join(directory, base)
            raise
        finally:
            os.close(dir_fd)
            self.files_bytes += size
        applier.applied_in(parent, made)

    def _dir_done(self, path: str, entry: TarEntry) -> None:
        """A directory has the entry's metadata: its mtime waits for the end (finish), and whether it passes
        something on to what is created in it is noted."""
        self.dir_times[path] = (entry.mtime_ns, os.lstat(path).st_ino)
        self.inherits = self.inherits or bool(entry.mode & stat.S_ISGID) or _DEFAULT_ACL in (entry.xattrs or {})

    def _fill_file(self, fd: int, entry: TarEntry, content: FramedContent | InlineContent, final: bool) -> None:
        try:
            content.copy_to(fd)
            if not final:  # the same order as for other kinds, on the open file
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
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # At install /var is its own filesystem, mounted in the root: a copy stands in for the link.
            if os.path.lexists(path):
                return False
            _copy_entry(target, path)
            self._warn(f"/{path} is a copy of /{target}, not a hard link to it: /var is another filesystem")
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
            except (FileNotFoundError, NotADirectoryError):
                continue  # gone, or a parent became a file or a link to one in a later layer
            except OSError as exc:
                if exc.errno != errno.ELOOP:  # a parent became a link that loops
                    raise
                continue
            if stat.S_ISDIR(st.st_mode) and st.st_ino == ino:  # not removed or replaced since
                os.utime(path, ns=(mtime, mtime), follow_symlinks=False)


def _copy_entry(source: str, path: str) -> None:
    """``source`` copied to ``path`` as the file it is: content, owner, mode (set-id bits too), xattrs (file
    capabilities too), mtime; a symlink as a symlink."""
    st = os.lstat(source)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(source), path)
    elif stat.S_ISREG(st.st_mode):
        shutil.copyfile(source, path, follow_symlinks=False)
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(path, 0o600)
    else:  # a device node: made again, never read
        os.mknod(path, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev)
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)  # before chmod and xattrs: chown clears both
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    for name in os.listxattr(source, follow_symlinks=False):
        os.setxattr(path, name, os.getxattr(source, name, follow_symlinks=False), follow_symlinks=False)
    os.utime(path, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)

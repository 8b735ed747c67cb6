"""Streams that cross threads, so a two-core machine works on two things at once.

:class:`ReadAhead`: a stream read a few chunks ahead in a thread. A layer is read, hashed (its digest checked
as it goes), decompressed, and its tar entries walked; in one thread these take turns. Reading, hashing and
decompressing release the GIL, so a thread doing them ahead of the one walking the entries lets a two-core
machine do both at full speed.

:class:`HandOff`: bytes one thread has (a file inside a layer the scan reads) consumed as a stream by a
function running in another (listing an initramfs: decompressing it while the scan goes on).

At most ``depth`` chunks wait in memory in either: memory stays flat whatever the size of the stream.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ..bytestreams import Reader

CHUNK = 1 << 20
_POLL_SECONDS = 0.1


T = TypeVar("T")


class _QueuedChunks(io.RawIOBase):
    """The reading side: chunks taken from a queue (b"" ends it, an exception is raised where it stands)."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._item = b""  # the chunk being consumed, from offset _at
        self._at = 0
        self._failure: BaseException | None = None
        self._eof = False

    def _put(self, item: bytes | BaseException) -> bool:
        """Queue ``item`` unless the stream was stopped first (then False)."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def readable(self) -> bool:
        return True

    def _next(self) -> bool:
        """Make the next chunk current; False at the end of the stream."""
        if self._failure is not None:
            raise self._failure
        if self._eof:
            return False
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._failure = item
            raise item
        if not item:
            self._eof = True
            return False
        self._item, self._at = item, 0
        return True

    def _available(self) -> int:
        left = len(self._item) - self._at
        return left if left or not self._next() else len(self._item)

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._available())
        memoryview(buffer).cast("B")[:n] = memoryview(self._item)[self._at: self._at + n]
        self._at += n
        return n

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            return self.readall()
        n = min(size, self._available())
        if n == len(self._item):  # a whole chunk: handed over as it is, no copy
            self._at = n
            return self._item
        data = self._item[self._at: self._at + n]
        self._at += n
        return data


class ReadAhead(_QueuedChunks):
    """``inner``'s bytes, read in a background thread up to ``depth`` chunks ahead of the consumer.

    An error the thread meets (a digest that does not match, a closed socket) is raised to the consumer at
    the point of the stream where it happened, and again on every later read. Closing stops the thread
    (it never outlives the stream); it does not close ``inner``, which its owner closes after this.
    """

    def __init__(self, inner: Reader, *, chunk: int = CHUNK, depth: int = 4) -> None:
        super().__init__(depth)
        self._inner = inner
        self._chunk = chunk
        self._thread = threading.Thread(target=self._fill, name="blob-read-ahead", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._inner.read(self._chunk)
                self._put(data)
                if not data:
                    return
        except BaseException as exc:  # handed to the consumer, which raises it where it reads
            self._put(exc)

    def close(self) -> None:
        if not self.closed:
            self._stop.set()
            self._thread.join()
        super().close()


class HandOff(Generic[T]):
    """``consume(stream)`` running in a thread on the bytes given to :meth:`write`; :meth:`result` ends the
    stream and returns what it returned (or raises what it raised). When ``consume`` returns before the end,
    later writes are dropped; :meth:`stop` abandons it (its stream then ends early)."""

    def __init__(self, consume: Callable[[io.RawIOBase], T], *, depth: int = 8, name: str = "hand-off") -> None:
        self._stream = _QueuedChunks(depth)
        self._consume = consume
        self._outcome: tuple[T | None, BaseException | None] = (None, None)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._outcome = (self._consume(self._stream), None)
        except BaseException as exc:
            self._outcome = (None, exc)
        finally:
            self._done.set()
            self._stream._stop.set()  # a writer blocked on a full queue goes on

    def write(self, data: bytes | memoryview) -> None:
        if data and not self._done.is_set():
            self._stream._put(bytes(data))

    def result(self) -> T:
        self._stream._put(b"")
        self._thread.join()
        value, error = self._outcome
        if error is not None:
            raise error
        return value  # type: ignore[return-value]

    def stop(self) -> None:
        self._stream._put(RuntimeError("the stream was abandoned"))
        self._stream._stop.set()
        self._thread.join()

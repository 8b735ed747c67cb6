"""Robust HTTP transfer of one blob: retries with backoff for transient failures, resume with ``Range``.

The stream here only delivers bytes; the digest and size are checked above it by the one verifier in
source.py, which keeps hashing across a resume because the resumed bytes arrive in the same stream.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
import urllib3.exceptions

from ..errors import Cancelled, NbcError

log = logging.getLogger("nbc_tui")

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts per request (the first included) and an exponential backoff."""

    attempts: int = 6
    backoff: float = 0.5
    max_backoff: float = 8.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before attempt number ``attempt + 1`` (a server's Retry-After counts, capped)."""
        if retry_after and retry_after.strip().isdigit():
            return min(float(retry_after), self.max_backoff)
        return min(self.backoff * (2 ** attempt), self.max_backoff)


# What a broken connection looks like while a body streams (requests wraps some, urllib3 raises others).
STREAM_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
    ConnectionError,
    TimeoutError,
)


def sleep_or_cancel(seconds: float, cancel: threading.Event | None) -> None:
    if cancel is None:
        time.sleep(seconds)
    elif cancel.wait(seconds):
        raise Cancelled("Interrupted while downloading the image", hint="Nothing was written to the disk")


class ResumingRaw(io.RawIOBase):
    """The body of a blob GET, re-requested with ``Range: bytes=<done>-`` when the connection breaks.

    ``reopen(offset)`` returns a streaming response for the bytes from ``offset`` on (206 with a matching
    Content-Range, or 200 for the whole blob, whose first ``offset`` bytes are then skipped). At most
    ``policy.attempts`` resumes; every resume is recorded in ``resumes`` as the offset it started from.
    """

    def __init__(self, response: requests.Response, size: int, *, label: str, policy: RetryPolicy,
                 reopen: Callable[[int], requests.Response], cancel: threading.Event | None = None) -> None:
        super().__init__()
        self._response = response
        self._size = size
        self._label = label
        self._policy = policy
        self._reopen = reopen
        self._cancel = cancel
        self.done = 0
        self.resumes: list[int] = []

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            if self._cancel is not None and self._cancel.is_set():
                raise Cancelled("Interrupted while downloading the image", hint="Nothing was written to the disk")
            try:
                n = self._response.raw.readinto(buffer)
            except STREAM_ERRORS as exc:
                self._resume(exc)
                continue
            if not n and self.done < self._size:  # an early clean end of file is a broken transfer too
                self._resume(EOFError(f"connection closed after {self.done} of {self._size} bytes"))
                continue
            self.done += n
            return n

    def _resume(self, exc: BaseException) -> None:
        self._response.close()
        last: BaseException = exc
        while len(self.resumes) < self._policy.attempts:
            attempt = len(self.resumes)
            self.resumes.append(self.done)
            wait = self._policy.delay(attempt)
            log.warning("%s broke after %d of %d bytes (%s); resuming in %.1f s", self._label, self.done,
                        self._size, exc, wait)
            sleep_or_cancel(wait, self._cancel)
            try:
                self._response = self._reopen(self.done)
                return
            except NbcError as err:  # the registry answered but would not serve: keep trying within bounds
                last = err
            except STREAM_ERRORS as err:
                last = err
        raise NbcError(
            f"{self._label} could not be downloaded: the connection broke after {self.done} of "
            f"{self._size} bytes and {self._policy.attempts} attempts to resume failed ({last})",
            hint="Check the network and the registry, then run the command again",
        )

    def close(self) -> None:
        try:
            self._response.close()
        finally:
            super().close()


def skip_bytes(response: requests.Response, count: int) -> None:
    """Throw away the first ``count`` bytes of a response (a server that ignored our Range)."""
    left = count
    while left:
        chunk = response.raw.read(min(left, _READ_CHUNK))
        if not chunk:
            raise EOFError("the server ended the response before the resume offset")
        left -= len(chunk)

"""Secrets in files: read from one the user gave (trailing CR/LF dropped, nbc's rule), and handed to a tool in
a 0600 file under /run that is zeroed and removed afterwards (never on argv or in the environment)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from pydantic import SecretStr

from .errors import InputError
from .mounts import RUN_DIR


def read_secret_file(path: Path, what: str) -> SecretStr:
    """A secret from a file, trailing CR/LF dropped (nbc's rule). Refused (InputError, which never quotes the
    content): a file that cannot be read, is not UTF-8, is empty or holds more than one line (a password
    is typed on one line; a second one would be set as part of it, or be taken by a tool as a second entry)."""
    hint = f"write the {what} alone on one line of UTF-8 text, in a file readable by root"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the {what} file {path}: {exc.strerror}", hint=hint) from None
    try:
        value = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise InputError(f"the {what} file {path} is not UTF-8 text", hint=hint) from None
    if not value:
        raise InputError(f"the {what} file {path} is empty", hint=hint)
    if "\n" in value or "\r" in value:
        raise InputError(f"the {what} file {path} holds more than one line", hint=hint)
    return SecretStr(value)


@contextlib.contextmanager
def key_file(secret: SecretStr, *, name: str = "key") -> Iterator[Path]:
    """A 0600 file under /run holding ``secret`` (no newline), zeroed and removed on exit."""
    RUN_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(RUN_DIR, 0o700)
    path = RUN_DIR / f"{name}-{secrets.token_hex(8)}"
    data = secret.get_secret_value().encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        yield path
    finally:
        _shred(path, len(data))


def _shred(path: Path, size: int) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, b"\0" * max(size, 1))
            os.fsync(fd)
        finally:
            os.close(fd)
    path.unlink(missing_ok=True)

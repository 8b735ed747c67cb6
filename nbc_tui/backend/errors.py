"""Errors that speak to the user. Steps raise them; only the CLI turns them into exit codes."""

from __future__ import annotations

from typing import Any


class NbcError(Exception):
    """The operation failed: a plain message for people, a hint saying what to do, details for JSON."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or {}

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class InputError(NbcError):
    """Bad input: a flag, an answer file, an ineligible disk, a broken image. Nothing was written."""

    exit_code = 2


class CommandFailed(NbcError):
    """An external tool failed. The message holds the redacted command line, its exit code and stderr tail."""


class Cancelled(NbcError):
    """The user interrupted the operation (Ctrl-C or SIGTERM)."""

    exit_code = 130

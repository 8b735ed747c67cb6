"""Flags and error wording shared by the subcommands."""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from ..backend.errors import InputError


def add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="JSON Lines progress on stdout (and nothing else)")
    p.add_argument("-v", "--verbose", action="store_true", help="show the output of the tools that run")
    p.add_argument("-n", "--dry-run", action="store_true", help="show what would be done; write nothing")


def plan_error(exc: ValidationError | ValueError) -> InputError:
    """Turn a plan validation error into one readable sentence per problem."""
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{where}: {msg}" if where else msg)
        return InputError("; ".join(parts))
    return InputError(str(exc))

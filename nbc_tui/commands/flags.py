"""Flags and error wording shared by the subcommands."""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from ..backend.errors import InputError
from ..backend.plan import validation_messages


def add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="JSON Lines progress on stdout (and nothing else)")
    p.add_argument("-v", "--verbose", action="store_true", help="show the output of the tools that run")
    p.add_argument("-n", "--dry-run", action="store_true", help="show what would be done; write nothing")


def plan_error(exc: ValidationError | ValueError) -> InputError:
    """A plan that does not validate, as an input error (exit 2): one sentence per problem."""
    if isinstance(exc, ValidationError):
        return InputError("; ".join(validation_messages(exc)))
    return InputError(str(exc))

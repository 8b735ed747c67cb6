"""What a command asks the person at the terminal, or reads from stdin when it is not one: the consent to go on,
and a LUKS passphrase. Prompts go to stderr, so that stdout stays clean for --json."""

from __future__ import annotations

import getpass
import sys

from pydantic import SecretStr

from ..backend.errors import InputError


def confirm_on_terminal(what: str) -> bool:
    """nbc's prompt (type 'yes'); the answer is the next line of stdin."""
    bar = "=" * 60
    sys.stderr.write(f"\n{bar}\nWARNING: {what}\n{bar}\nType 'yes' to continue: ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip() == "yes"


def passphrase_from_stdin() -> SecretStr:
    """The first line of stdin (its line break dropped): a line after it is left for the confirmation, so
    ``printf '%s\\nyes\\n' "$PASS" | nbc-tui ...`` gives both."""
    value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise InputError("no passphrase on stdin", hint="pipe it in, or use --passphrase-file")
    return SecretStr(value)


def _ask(prompt: str) -> str:
    """One line from the terminal, without echo; Ctrl-D (end of input) gives no passphrase, not a crash."""
    try:
        return getpass.getpass(prompt, stream=sys.stderr)
    except EOFError:
        raise InputError("no passphrase given (end of input)", hint="run the command again, or use "
                                                                   "--passphrase-file") from None


def asked_passphrase() -> SecretStr:
    """The passphrase of an existing encryption, asked once on the terminal, without echo."""
    return SecretStr(_ask("LUKS passphrase: "))


def new_passphrase() -> SecretStr:
    """A passphrase for a new encryption: stdin when it is not a terminal, else asked twice, without echo."""
    if not sys.stdin.isatty():
        return passphrase_from_stdin()
    first = _ask("LUKS passphrase: ")
    second = _ask("LUKS passphrase (again): ")
    if first != second:
        raise InputError("the two passphrases differ", hint="run the command again")
    if not first:
        raise InputError("an empty passphrase cannot encrypt a disk")
    return SecretStr(first)

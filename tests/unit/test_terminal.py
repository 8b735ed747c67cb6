"""What the commands read from stdin when it is not a terminal: a passphrase is its first line, so that the
next line can answer the confirmation that follows."""

from __future__ import annotations

import contextlib
import io
import os
import pty
import sys

import pytest

from nbc_tui.backend.errors import InputError
from nbc_tui.commands.terminal import confirm_on_terminal, new_passphrase, passphrase_from_stdin


def test_a_piped_passphrase_leaves_the_next_line_for_the_confirmation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Piped-Passphrase-1\r\nyes\n"))
    assert passphrase_from_stdin().get_secret_value() == "Piped-Passphrase-1"
    assert confirm_on_terminal("the disk will be erased") is True


def test_a_new_passphrase_from_a_pipe_is_its_first_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Piped-Passphrase-2\nno\n"))
    assert new_passphrase().get_secret_value() == "Piped-Passphrase-2"
    assert confirm_on_terminal("the disk will be erased") is False


def test_no_passphrase_on_stdin_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    with pytest.raises(InputError, match="no passphrase on stdin"):
        passphrase_from_stdin()


def test_ctrl_d_at_the_passphrase_prompt_is_no_passphrase_not_a_crash() -> None:
    """On a real terminal (a pty): end of input at getpass's prompt is bad input (exit 2), not an EOFError."""
    code = ("import sys\nfrom nbc_tui.backend.errors import InputError\nfrom nbc_tui.commands.terminal import "
            "asked_passphrase\ntry:\n    asked_passphrase()\nexcept InputError as exc:\n    print('REFUSED', exc)\n"
            "    sys.exit(exc.exit_code)\n")
    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        os.execv(sys.executable, [sys.executable, "-c", code])
    out = b""
    while b"LUKS passphrase: " not in out:
        out += os.read(fd, 1024)
    os.write(fd, b"\x04")
    with contextlib.suppress(OSError):  # EIO once the child has gone
        while chunk := os.read(fd, 1024):
            out += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 2 and b"REFUSED no passphrase given" in out, out

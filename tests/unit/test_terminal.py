"""What the commands read from stdin when it is not a terminal: a passphrase is its first line, so that the
next line can answer the confirmation that follows."""

from __future__ import annotations

import io

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

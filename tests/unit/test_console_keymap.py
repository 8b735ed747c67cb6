"""The live machine's console keyboard, without touching it: the keymaps found under a folder standing in for
its root, the refusals (no such keymap, no loadkeys) before anything runs, loadkeys' own words when it fails
(a stand-in loadkeys on PATH), and telling a serial console. Switching the real kernel keymap is in
tests/integration/test_console_keymap.py."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from nbc_tui.backend import console_keymap
from nbc_tui.backend.console_keymap import console_keymaps, is_serial_tty, serial_console, switch_console_keymap
from nbc_tui.backend.errors import InputError, NbcError
from nbc_tui.backend.runner import RunContext
from nbc_tui.look import choose_look

KEYMAP_FILES = (
    "usr/share/keymaps/i386/qwertz/de.kmap.gz",           # Debian's console-data
    "usr/share/keymaps/i386/qwertz/de-latin1.kmap.gz",
    "usr/share/keymaps/i386/qwerty/us.kmap.gz",
    "usr/share/keymaps/i386/include/linux-keys-bare.inc",  # an include, no keymap
    "usr/lib/kbd/keymaps/xkb/fr.map.gz",                   # Fedora's kbd
    "usr/lib/kbd/keymaps/legacy/i386/qwertz/sg-latin1.map.gz",
    "usr/lib/kbd/keymaps/i386/dvorak/dvorak.map",
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in KEYMAP_FILES:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"stand-in")
    return tmp_path


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """loadkeys is there; every command the module would run is recorded instead."""
    calls: list[list[str]] = []
    monkeypatch.setattr(console_keymap, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(console_keymap, "run", lambda argv, **kw: calls.append([str(a) for a in argv]))
    return calls


def test_keymaps_are_found_in_each_keymap_folder_and_named_as_the_image_scan_names_them(root: Path) -> None:
    assert console_keymaps(root) == ["de", "de-latin1", "dvorak", "fr", "sg-latin1", "us"]
    assert console_keymaps(root / "nothing-here") == []


def test_an_unknown_keymap_is_refused_in_words_and_nothing_runs(root: Path, runs: list[list[str]]) -> None:
    with pytest.raises(InputError) as err:
        switch_console_keymap("klingon", root=root)
    assert err.value.message == "This system has no console keymap 'klingon'"
    assert err.value.hint is not None and "pick one of the 6 keymaps" in err.value.hint
    with pytest.raises(InputError) as err:
        switch_console_keymap("de", root=root / "nothing-here")
    assert err.value.hint is not None and "install the console-data package" in err.value.hint
    assert runs == []


def test_no_loadkeys_is_refused(root: Path, monkeypatch: pytest.MonkeyPatch, runs: list[list[str]]) -> None:
    monkeypatch.setattr(console_keymap, "which", lambda tool: None)
    with pytest.raises(InputError, match="loadkeys is not installed") as err:
        switch_console_keymap("de", root=root)
    assert err.value.hint is not None and "kbd" in err.value.hint
    assert runs == []


def test_a_known_keymap_is_loaded_by_name(root: Path, runs: list[list[str]]) -> None:
    switch_console_keymap("de-latin1", root=root)
    assert runs == [["loadkeys", "de-latin1"]]


def test_the_switch_goes_through_the_runner_and_is_logged(root: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(console_keymap, "which", lambda tool: f"/usr/bin/{tool}")
    caplog.set_level(logging.INFO, logger="nbc_tui")
    switch_console_keymap("us", root=root, ctx=RunContext(dry_run=True))  # the runner's dry run runs nothing
    assert "loadkeys us" in caplog.text


def test_a_failing_loadkeys_says_its_own_words(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "loadkeys").write_text("#!/bin/sh\necho \"Couldn't get a file descriptor referring to the console.\" >&2\n"
                                    "exit 1\n")
    (tools / "loadkeys").chmod(0o755)
    monkeypatch.setattr(console_keymap, "which", lambda tool: str(tools / tool))
    ctx = RunContext(env_extra={"PATH": str(tools)})  # the stand-in, never the real loadkeys
    with pytest.raises(NbcError) as err:
        switch_console_keymap("fr", root=root, ctx=ctx)
    assert not isinstance(err.value, InputError)
    assert err.value.message == ("loadkeys could not load the keymap fr: Couldn't get a file descriptor referring "
                                 "to the console.")
    assert err.value.hint is not None and "root" in err.value.hint


@pytest.mark.parametrize(("tty", "serial"), [
    ("ttyS0", True), ("/dev/ttyS1", True), ("ttyAMA0", True), ("hvc0", True), ("ttyUSB0", True),
    ("tty1", False), ("pts/3", False), ("/dev/console", False), ("", False),
])
def test_serial_consoles_are_told_apart(tty: str, serial: bool) -> None:
    assert is_serial_tty(tty) is serial
    assert (serial_console(tty) is not None) is serial
    assert choose_look({"TERM": "xterm-256color"}, tty, (80, 24)).console is serial  # the look agrees


def test_serial_console_names_the_tty() -> None:
    assert serial_console("/dev/ttyS0") == "ttyS0"
    assert serial_console("pts/0") is None

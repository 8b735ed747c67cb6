"""Switching this machine's real console keyboard: the kernel's keymap is loaded through the engine's runner
(so it is logged), read back with dumpkeys, and restored exactly as it was afterwards.

The saved keymap is dumpkeys' full table (``--full-table``): its short form leaves out VoidSymbol entries, and
loading it back fills them (the kernel's built-in keymap has some, keycode 99 for one), so only the full table
restores the kernel's keymap entry for entry."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbc_tui.backend.console_keymap import console_keymaps, switch_console_keymap

CONSOLE = "/dev/tty0"
"""The foreground virtual console: one keymap serves them all, so any console reads it."""
Y_KEY = 21
"""The key right of T: y on a US keyboard, z on a German one."""

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(shutil.which("loadkeys") is None or shutil.which("dumpkeys") is None,
                                 reason="needs kbd's loadkeys and dumpkeys (tools/install-deps.sh)"),
              pytest.mark.skipif(not Path(CONSOLE).exists(), reason=f"no virtual console ({CONSOLE})")]


def dumpkeys(*args: str) -> str:
    return subprocess.run(["dumpkeys", "-C", CONSOLE, *args], capture_output=True, text=True, check=True).stdout


def symbol_of(keycode: int) -> str:
    """What the key types unshifted in the kernel's keymap now (``+z`` is z with Caps Lock, drawn as z)."""
    found = re.search(rf"^keycode\s+{keycode} = (\S+)", dumpkeys("--keys-only"), re.MULTILINE)
    assert found, f"dumpkeys shows no keycode {keycode}"
    return found[1].removeprefix("+")


@pytest.fixture
def kernel_keymap(tmp_path: Path) -> Iterator[Path]:
    """The kernel's keymap as it was, loaded back after the test whatever happened in it."""
    saved = tmp_path / "before.map"
    saved.write_text(dumpkeys("--full-table"))
    try:
        yield saved
    finally:
        subprocess.run(["loadkeys", saved], capture_output=True, check=True)


def test_switching_loads_the_keymap_into_the_kernel(kernel_keymap: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert {"de", "us"} <= set(console_keymaps()), "console-data's keymaps are missing (tools/install-deps.sh)"
    caplog.set_level(logging.INFO, logger="nbc_tui")
    switch_console_keymap("de")
    assert symbol_of(Y_KEY) == "z"
    switch_console_keymap("us")
    assert symbol_of(Y_KEY) == "y"
    assert "run: loadkeys de" in caplog.text and "run: loadkeys us" in caplog.text


def test_the_saved_keymap_comes_back_entry_for_entry(kernel_keymap: Path) -> None:
    """What the fixture restores is what was there: the full table survives a switch and a load back."""
    switch_console_keymap("de")
    assert dumpkeys("--full-table") != kernel_keymap.read_text()
    subprocess.run(["loadkeys", kernel_keymap], capture_output=True, check=True)
    assert dumpkeys("--full-table") == kernel_keymap.read_text()

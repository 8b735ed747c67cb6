"""The real ``nbc-tui`` binary in a pty, driven by keys as a person would (the end-to-end test and
bench/tui_bench.py share it)."""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import pexpect

REPO = Path(__file__).resolve().parents[2]
BINARY = REPO / ".venv" / "bin" / "nbc-tui"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")
# Keys as the Linux console sends them.
TAB, SHIFT_TAB, ENTER, ESC, RIGHT, HOME, KILL_TO_END = "\t", "\x1b[Z", "\r", "\x1b", "\x1b[C", "\x01", "\x0b"
CTRL_N = "\x0e"
F6 = "\x1b[17~"
SETTLE = 0.5
"""Seconds after a key that moves the focus before the next key (see Tui.keys)."""
WELCOME_TEXT = "install a bootable container image"
"""On the welcome screen's title line: the first screen is up."""


def plain(raw: str) -> str:
    return ANSI.sub("", raw)


def tui_environment(tmp: Path, term: str = "linux") -> dict[str, str]:
    """This process's environment with private log, lock and cache places, no TPM, the given TERM."""
    env = {**os.environ, "TERM": term, "NBC_TUI_LOG_FILE": str(tmp / "nbc-tui.log"),
           "NBC_TUI_LOCK_DIR": str(tmp / "locks"), "NBC_TUI_CACHE_ROOT": str(tmp / "cache"), "NBC_TUI_TPM": "0"}
    for name in ("NO_COLOR", "COLUMNS", "LINES", "NBC_TUI_SHOW_LOOP"):
        env.pop(name, None)
    return env


class Tui:
    """The binary in an 80x24 pty, everything it drew kept (for the checks and for a readable failure)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.seen = io.StringIO()
        self.child = pexpect.spawn(str(BINARY), [], env=env, cwd=str(REPO), dimensions=(24, 80),
                                   encoding="utf-8", codec_errors="replace", timeout=60)
        self.child.logfile_read = self.seen

    @property
    def pid(self) -> int:
        return int(self.child.pid)

    def wait(self, text: str, timeout: float = 60) -> None:
        try:
            self.child.expect_exact(text, timeout=timeout)
        except (pexpect.TIMEOUT, pexpect.EOF) as exc:
            tail = plain(self.seen.getvalue())[-1500:]
            raise AssertionError(
                f"{text!r} never appeared ({type(exc).__name__}); the screen ended with:\n{tail}") from None

    def keys(self, *keys: str) -> None:
        """Send keys at a person's pace. A key that moves the focus (Tab, Enter...) travels through
        Textual's message queues before the focus moves; a key sent meanwhile would reach the widget that
        had the focus, so the next key waits a little longer."""
        settle = 0.0
        for key in keys:
            time.sleep(max(settle, 0.04))
            self.child.send(key)
            settle = 0.0 if key.isprintable() and len(key) == 1 and key != " " else SETTLE

    def fill(self, text: str, *, shown: int = 20, attempts: int = 3) -> None:
        """Type ``text`` into the focused field and check it arrived whole: back at its start the field
        shows its first characters. A field that missed a key (a loaded machine) is cleared and typed again."""
        for attempt in range(attempts):
            self.keys(HOME, KILL_TO_END, *text, HOME)
            try:
                self.wait(text[:shown], timeout=15)
                return
            except AssertionError:
                if attempt == attempts - 1:
                    raise

    def close(self) -> None:
        self.child.close(force=True)


def install_by_keys(tui: Tui, image_ref: str, image: Path, answers: Path, *, password: str, karg: str,
                    layout: tuple[str, str, str] | None = None, image_gib: int | None = None) -> None:
    """Welcome to done: the image by reference, a disk-image file (of ``image_gib`` GiB, after the advanced
    layout's ESP, root slot and /var sizes ``layout`` are typed), no encryption, ext4, one kernel argument,
    the root password twice, the system left as the image has it (no user), the name typed to confirm; then
    the answers saved and the installer left. Returns when the binary has exited."""
    tui.wait("Running as root")  # the welcome screen has surveyed the machine
    tui.keys(ENTER)
    tui.wait("Image reference")
    tui.fill(image_ref)
    tui.keys(ENTER)
    tui.wait("Digest sha256:", timeout=300)  # looked up and checked; the focus is on Continue
    tui.keys(ENTER)
    tui.wait("Contents")  # the disk table has read the disks
    if layout is not None:
        tui.keys(F6)
        tui.wait("The disk layout")
        for size in layout:  # Enter goes to the next size; from the last one it applies
            tui.fill(size)
            tui.keys(ENTER)
        tui.wait("the disks are measured against it")
    tui.keys(TAB)  # from the disk table to the path
    tui.fill(str(image))
    if image_gib is not None:
        tui.keys(TAB)
        tui.fill(str(image_gib))
    tui.keys(ENTER)  # uses the file
    tui.wait("Disk encryption")
    tui.keys(ENTER)  # "No encryption" is picked already: Enter goes on
    tui.wait("Root password")
    # ext4; the bootloader stays automatic; a kernel argument; the root password twice (Enter in the last
    # field goes on)
    tui.keys(RIGHT, " ", TAB, TAB)
    tui.fill(karg)
    tui.keys(TAB, *password, TAB, *password, ENTER)
    tui.wait("A user (optional)")
    tui.keys(CTRL_N)  # host name, time zone, keymap and locale the image's own; no user
    tui.wait(f"type {image.name} here")
    tui.keys(*image.name, ENTER)
    tui.wait("Save these answers", timeout=900)
    # Leave has the focus: back over "Install again" and "Save answers" to the path.
    tui.keys(SHIFT_TAB, SHIFT_TAB, SHIFT_TAB)
    tui.fill(str(answers))
    tui.keys(ENTER)
    tui.wait("Saved to")
    tui.keys(ESC)  # leave the installer
    tui.child.expect(pexpect.EOF, timeout=60)

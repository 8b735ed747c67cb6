"""The real ``nbc-tui`` binary in an 80x24 pty with TERM=linux, driven by keys as a person would: the
synthetic image (``oci:`` layout) into a disk-image file, every screen of the wizard, the answers saved
on the done screen; then the result is read back from the disk-image file with real tools."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pexpect
import pytest

from nbc_tui.backend.answers import load_answers
from tests.conftest import loop_devices_of
from tests.integration.disk_image import mounted_partition

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
BINARY = REPO / ".venv" / "bin" / "nbc-tui"
PASSWORD = "Pty-Root-pw-6d02b"
KARG = "nbc.test=pty"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")
# Keys as the Linux console sends them.
TAB, SHIFT_TAB, ENTER, ESC, RIGHT, HOME, KILL_TO_END = "\t", "\x1b[Z", "\r", "\x1b", "\x1b[C", "\x01", "\x0b"


def plain(raw: str) -> str:
    return ANSI.sub("", raw)


class Tui:
    """The binary in a pty, everything it drew kept (for the checks and for a readable failure)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.seen = io.StringIO()
        self.child = pexpect.spawn(str(BINARY), [], env=env, cwd=str(REPO), dimensions=(24, 80),
                                   encoding="utf-8", codec_errors="replace", timeout=60)
        self.child.logfile_read = self.seen

    def wait(self, text: str, timeout: float = 60) -> None:
        try:
            self.child.expect_exact(text, timeout=timeout)
        except (pexpect.TIMEOUT, pexpect.EOF) as exc:
            tail = plain(self.seen.getvalue())[-1500:]
            raise AssertionError(
                f"{text!r} never appeared ({type(exc).__name__}); the screen ended with:\n{tail}") from None

    def keys(self, *keys: str) -> None:
        # A person's pace: each key after the screen has taken the one before (focus moves, screens change).
        for key in keys:
            time.sleep(0.04 if key.isprintable() and len(key) == 1 else 0.15)
            self.child.send(key)

    def close(self) -> None:
        self.child.close(force=True)


@pytest.fixture
def tui_env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "TERM": "linux", "NBC_TUI_LOG_FILE": str(tmp_path / "nbc-tui.log"),
           "NBC_TUI_LOCK_DIR": str(tmp_path / "locks"), "NBC_TUI_CACHE_ROOT": str(tmp_path / "cache"),
           "NBC_TUI_TPM": "0"}
    for name in ("NO_COLOR", "COLUMNS", "LINES", "NBC_TUI_SHOW_LOOP"):
        env.pop(name, None)
    return env


def sgdisk_partitions(image: Path) -> list[tuple[int, str, str]]:
    """(number, type code, name) of each partition, from ``sgdisk -p``."""
    out = subprocess.run(["sgdisk", "-p", str(image)], capture_output=True, text=True, check=True).stdout
    rows = re.findall(r"^\s+(\d+)\s+\d+\s+\d+\s+[\d.]+ \S+\s+([0-9A-F]{4})\s+(\S+)\s*$", out, re.M)
    return [(int(n), code, name) for n, code, name in rows]


def test_a_person_installs_with_the_keyboard_on_the_linux_console(
        synthetic_image: str, tmp_path: Path, tui_env: dict[str, str]) -> None:
    image = tmp_path / "disk.img"
    answers = tmp_path / "answers.toml"
    tui = Tui(tui_env)
    try:
        tui.wait("Running as root")  # the welcome screen has surveyed the machine
        tui.keys(ENTER)
        tui.wait("Image reference")
        tui.keys(*synthetic_image)
        tui.wait(synthetic_image[-20:])
        tui.keys(ENTER)
        tui.wait("Digest sha256:", timeout=300)  # looked up and checked; the focus is on Continue
        tui.keys(ENTER)
        tui.wait("Contents")  # the disk table has read the disks
        tui.keys(TAB, *str(image))  # from the disk table to the path
        tui.wait(str(image)[-16:])  # the end of it: the field scrolls
        tui.keys(ENTER)  # uses the file
        tui.wait("Disk encryption")
        tui.keys(TAB, TAB, ENTER)  # no encryption: Back, Continue
        tui.wait("Root password")
        # ext4; the bootloader stays automatic; a kernel argument (seen typed); the root password twice
        tui.keys(RIGHT, " ", TAB, TAB, *KARG)
        tui.wait(KARG)
        tui.keys(TAB, *PASSWORD, TAB, *PASSWORD, TAB, TAB, ENTER)
        tui.wait("type disk.img here")
        tui.keys(*"disk.img", ENTER)
        tui.wait("Save these answers", timeout=900)
        # Leave has the focus: back over "Install again" and "Save answers" to the path.
        tui.keys(SHIFT_TAB, SHIFT_TAB, SHIFT_TAB, HOME, KILL_TO_END, *str(answers), ENTER)
        tui.wait("Saved to")
        tui.keys(ESC)  # leave the installer
        tui.child.expect(pexpect.EOF, timeout=60)
    finally:
        tui.close()
    seen = plain(tui.seen.getvalue())
    (tmp_path / "screen.txt").write_text(tui.seen.getvalue())  # what was drawn, for a failing run
    assert tui.child.exitstatus == 0, seen[-1500:]
    assert "Finished" in seen and "The install failed" not in seen

    # The disk: nbc's GPT, nothing left attached.
    assert sgdisk_partitions(image) == [(1, "EF00", "boot"), (2, "8300", "root1"), (3, "8300", "root2"),
                                        (4, "8300", "var")]
    assert loop_devices_of(image) == []
    with mounted_partition(image, 4, tmp_path / "var") as var:
        config = json.loads((var / "lib/nbc/state/config.json").read_text())
    assert config["image_ref"] == synthetic_image
    assert config["filesystem_type"] == "ext4"
    assert config["kernel_args"] == [KARG]

    # The password: used, shown nowhere, logged nowhere, saved nowhere.
    log = Path(tui_env["NBC_TUI_LOG_FILE"]).read_text()
    assert "Root password set" in log
    for where in (seen, log, answers.read_text()):
        assert PASSWORD not in where
    plan = load_answers(answers)
    assert plan.target.image_file == image and plan.layout.filesystem == "ext4"
    assert plan.system.root_password is None

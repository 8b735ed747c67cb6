"""The lock files: a reader who may not write root's lock file still reads; a lock that cannot be taken is an
error in words, never a crash."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from nbc_tui.backend.errors import NbcError
from nbc_tui.backend.locks import CACHE_LOCK, locked

TRY_BOTH = """
from pathlib import Path
from nbc_tui.backend.errors import NbcError
from nbc_tui.backend.locks import CACHE_LOCK, locked
with locked("x.lock", shared=True, lock_dir=Path({dir!r})):
    print("shared: held")
try:
    with locked("x.lock", lock_dir=Path({dir!r})):
        print("exclusive: held")
except NbcError as exc:
    print("exclusive:", exc)
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to switch users")
def test_a_user_who_cannot_write_the_lock_file_takes_a_shared_lock_and_is_told_about_an_exclusive_one() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as where:  # pytest's folders are closed to other users
        _as_nobody(Path(where))


def _as_nobody(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    (tmp_path / "x.lock").write_text("")
    (tmp_path / "x.lock").chmod(0o644)  # root's, as /var/lock/nbc-cache.lock is
    code = TRY_BOTH.format(dir=str(tmp_path))
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["shared: held",
                                        f"exclusive: Cannot take the lock {tmp_path}/x.lock: permission denied "
                                        "(run it as root)"]


def test_a_lock_folder_that_is_a_file_is_an_error_in_words(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(NbcError, match=r"Cannot take the lock .*/file/x\.lock"), locked("x.lock", lock_dir=blocker):
        pass


def test_sigterm_while_a_command_waits_for_a_lock_ends_it_as_ctrl_c_does(tmp_path: Path) -> None:
    """A service manager's stop: "Interrupted" and exit 130 (the README's table), not a silent 143."""
    env = {**os.environ, "NBC_TUI_LOCK_DIR": str(tmp_path), "NBC_TUI_CACHE_ROOT": str(tmp_path / "cache")}
    with locked(CACHE_LOCK, lock_dir=tmp_path):  # held: `cache list` waits for it
        proc = subprocess.Popen([sys.executable, "-m", "nbc_tui.cli", "cache", "list", "--install-images"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=Path(__file__).resolve().parents[2])
        deadline = time.monotonic() + 30
        while not _catches_sigterm(proc.pid) and time.monotonic() < deadline:  # started (the lock wait is 5 s)
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Interrupted" in err, (proc.returncode, out, err)


def _catches_sigterm(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False

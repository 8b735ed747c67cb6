"""After a failure or Ctrl-C nothing stays mounted or attached, and the same command works again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, loop_devices_of, nbc_mounts, sigint_not_ignored
from tests.support.synthetic import make_image

pytestmark = pytest.mark.root

SMALL = ["--image-size", "3", "--esp-size", "100M", "--root-size", "1G", "--var-min-size", "256M"]


def test_failure_after_mounting_unwinds_and_retry_works(nbc, tmp_path: Path) -> None:
    ref = make_image(tmp_path / "layout", shadow=False)
    password = tmp_path / "pw"
    password.write_text("a-password\n")
    image = tmp_path / "disk.img"
    r = nbc("install", "--image", ref, "--via-loopback", str(image), *SMALL, "--root-password-file",
            str(password), "--json")
    assert r.returncode != 0
    error = r.events[-1]
    assert error["type"] == "error" and "shadow" in error["details"]["error"]
    assert [e["step_name"] for e in r.events if e["type"] == "step"][-1] == "Configuring system"
    assert nbc_mounts() == [] and loop_devices_of(image) == []
    r = nbc("install", "--image", ref, "--via-loopback", str(image), *SMALL, "--yes")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_during_extraction(tmp_path: Path, log_file: Path, sig: signal.Signals) -> None:
    ref = make_image(tmp_path / "layout", padding=400 << 20, compression="tar")
    image = tmp_path / "disk.img"
    env = {**os.environ, "NBC_TUI_LOG_FILE": str(log_file)}
    argv = [sys.executable, "-m", "nbc_tui.cli", "install", "--image", ref, "--via-loopback", str(image),
            *SMALL, "--json"]
    with sigint_not_ignored():
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    events = []
    assert proc.stdout
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["type"] == "progress" and events[-1].get("message") == "Extracting":
            time.sleep(0.5)
            proc.send_signal(sig)
            break
    rest, _ = proc.communicate(timeout=120)
    events += [json.loads(line) for line in rest.splitlines() if line.strip()]
    assert proc.returncode == 130
    assert events[-1]["type"] == "error" and "Interrupted" in events[-1]["details"]["error"]
    assert nbc_mounts() == [] and loop_devices_of(image) == []
    r = subprocess.run([*argv, "--yes"], capture_output=True, text=True, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr

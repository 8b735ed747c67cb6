"""After a failure or Ctrl-C nothing stays mounted or attached, and the same command works again."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import loop_devices_of, nbc_mounts, stopped_while_extracting
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
def test_interrupted_during_extraction(nbc, tmp_path: Path, log_file: Path, sig: signal.Signals) -> None:
    ref = make_image(tmp_path / "layout", padding=400 << 20, compression="tar")
    image = tmp_path / "disk.img"
    returncode, events = stopped_while_extracting(["install", "--image", ref, "--via-loopback", str(image), *SMALL,
                                                   "--json"], log_file, sig)
    assert returncode == 130
    assert events[-1]["type"] == "error" and "Interrupted" in events[-1]["details"]["error"]
    assert nbc_mounts() == [] and loop_devices_of(image) == []
    r = nbc("install", "--image", ref, "--via-loopback", str(image), *SMALL, "--json", "--yes")
    assert r.returncode == 0, r.stderr

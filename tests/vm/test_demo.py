"""The README's first command, as a new user meets it without a terminal: ``tools/demo.sh`` installs the demo
image into its disk-image file with a root password of its own, prints how to boot and log in, and that
login works on the booted disk."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from tests.vm.host_lock import one_host_install_at_a_time
from tests.vm.image_builder import TEST_ROOT_PASSWORD
from tests.vm.qemu import booted

pytestmark = [pytest.mark.vm, pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT = 1800
BOOT_TIMEOUT = 300


def test_the_demo_installs_prints_how_to_log_in_and_the_login_works(debian_image: Path, tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    env = {**os.environ, "NBC_TUI_DEMO_DIR": str(demo), "NBC_TUI_LOG_FILE": str(tmp_path / "nbc-tui.log")}
    with one_host_install_at_a_time():
        run = subprocess.run(["bash", str(REPO / "tools/demo.sh")], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, env=env, cwd=REPO, timeout=DEMO_TIMEOUT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    password_file = demo / "root-password"
    password = password_file.read_text().strip()
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600 and len(password) >= 8
    assert password != TEST_ROOT_PASSWORD  # the demo's own, not the test image's
    said = re.search(r"Log in as root with the password in (\S+): (\S+)", run.stdout)
    assert said and said.groups() == (f"{password_file}", password), run.stdout[-2000:]
    assert f"-drive file={demo}/debian.img" in run.stdout
    for text in (run.stdout.replace(said.group(0), ""), run.stderr, (tmp_path / "nbc-tui.log").read_text()):
        assert password not in text  # printed once, for the user, and nowhere else

    with booted(demo / "debian.img", log=tmp_path / "console.log", timeout=BOOT_TIMEOUT, interactive=True) as vm:
        vm.wait_for(r"login:", BOOT_TIMEOUT)
        vm.send("root\r")
        vm.wait_for(r"Password:", 60)
        vm.send(password + "\r")
        vm.wait_for(r"root@\S+:~# ", 60)  # logged in: the shell's prompt
        vm.send("echo DEMO-LOGIN-$((40 + 2))\r")
        vm.wait_for(r"DEMO-LOGIN-42", 60)

"""The real ``nbc-tui`` binary in an 80x24 pty with TERM=linux, driven by keys as a person would: the
synthetic image (``oci:`` layout) into a disk-image file, every screen of the wizard, the answers saved
on the done screen; then the result is read back from the disk-image file with real tools."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from nbc_tui.backend.answers import load_answers
from nbc_tui.backend.plan import GPT_OVERHEAD
from nbc_tui.backend.runner import RunContext
from nbc_tui.backend.sizes import GiB, MiB
from nbc_tui.backend.storage.partition import read_partition_table
from tests.conftest import loop_devices_of
from tests.integration.disk_image import mounted_partition
from tests.tui.pty_driver import Tui, install_by_keys, plain, tui_environment

pytestmark = pytest.mark.root

PASSWORD = "Pty-Root-pw-6d02b"
KARG = "nbc.test=pty"


@pytest.fixture
def tui_env(tmp_path: Path) -> dict[str, str]:
    return tui_environment(tmp_path)


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
        install_by_keys(tui, synthetic_image, image, answers, password=PASSWORD, karg=KARG,
                        layout=("128M", "1G", "512M"), image_gib=3)
    finally:
        tui.close()
    seen = plain(tui.seen.getvalue())
    (tmp_path / "screen.txt").write_text(tui.seen.getvalue())  # what was drawn, for a failing run
    assert tui.child.exitstatus == 0, seen[-1500:]
    assert "Finished" in seen and "The install failed" not in seen
    assert sorted({ch for ch in seen if ord(ch) > 127}) == []  # every screen, ASCII only on the console

    # The disk: nbc's GPT, nothing left attached.
    assert sgdisk_partitions(image) == [(1, "EF00", "boot"), (2, "8300", "root1"), (3, "8300", "root2"),
                                        (4, "8300", "var")]
    # The small layout typed in the advanced layout, in a 3 GiB file (the default layout needs 30 GB).
    assert image.stat().st_size == 3 * GiB
    esp, root1, root2, var = (p.size for p in read_partition_table(image, ctx=RunContext()))
    assert (esp, root1, root2) == (128 * MiB, GiB, GiB)
    assert 512 * MiB <= 3 * GiB - 128 * MiB - 2 * GiB - GPT_OVERHEAD <= var
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
    assert (plan.target.image_size, plan.layout.esp_size, plan.layout.root_size, plan.layout.var_min_size) == (
        3 * GiB, 128 * MiB, GiB, 512 * MiB)
    assert plan.system.root_password is None

"""/etc across an update, over real directories: the layers as the overlay builds them (whiteouts included),
runtime files kept in the upper layer, account files merged, conflicts named."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from nbc_tui.backend.mounts import bound_alone
from nbc_tui.backend.runner import RunContext
from nbc_tui.backend.system.etc_carry import EtcLayers, carry_runtime_files, etc_conflicts, merge_account_files

MACHINE_ID = "0123456789abcdef0123456789abcdef\n"


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def layers(tmp_path: Path) -> EtcLayers:
    lower = tree(tmp_path / "lower", {
        "passwd": "root:x:0:0::/root:/bin/sh\n", "shadow": "root:$6$hash:19000:0:99999:7:::\n",
        "issue": "v1\n", "motd": "v1 motd\n", "hostname": "old\n", "machine-id": "uninitialized\n",
        "ssh/ssh_host_ed25519_key": "PRIVATE\n"})
    upper = tree(tmp_path / "upper", {"issue": "mine\n", "motd": "v1 motd\n", "mine.conf": "x\n"})
    return EtcLayers(lower=lower, upper=upper)


@pytest.mark.root  # mknod
def test_the_current_file_is_the_upper_one_else_the_lower_one_and_a_whiteout_hides_both(layers: EtcLayers) -> None:
    os.mknod(layers.upper / "hostname", stat.S_IFCHR | 0o600, os.makedev(0, 0))  # removed on the system
    assert layers.current("issue") == layers.upper / "issue"
    assert layers.current("passwd") == layers.lower / "passwd"
    assert layers.current("hostname") is None and not layers.in_upper("hostname")
    assert layers.current("nothing") is None


def test_runtime_files_move_into_the_upper_layer_with_their_mode(layers: EtcLayers) -> None:
    os.chmod(layers.lower / "ssh/ssh_host_ed25519_key", 0o600)
    copied = carry_runtime_files(layers)
    assert copied == ["ssh/ssh_host_ed25519_key"]  # machine-id is not set yet: nothing to keep
    kept = layers.upper / "ssh/ssh_host_ed25519_key"
    assert kept.read_text() == "PRIVATE\n" and stat.S_IMODE(kept.stat().st_mode) == 0o600
    (layers.lower / "machine-id").write_text(MACHINE_ID)
    assert carry_runtime_files(layers) == ["machine-id"]
    assert carry_runtime_files(layers) == []  # in the upper layer now


def test_account_files_are_merged_into_the_new_slot_and_into_an_upper_copy(layers: EtcLayers, tmp_path: Path) -> None:
    tree(layers.upper, {"passwd": "root:x:0:0::/root:/bin/zsh\nalice:x:1000:1000::/home/alice:/bin/sh\n"})
    new = tree(tmp_path / "new", {"passwd": "root:x:0:0::/root:/bin/sh\n_v2:x:998:998::/:/bin/false\n",
                                  "shadow": "root:*:19000:0:99999:7:::\n_v2:!:19500::::::\n"})
    os.chmod(new / "shadow", 0o640)
    assert merge_account_files(layers, new) == []
    merged = "root:x:0:0::/root:/bin/zsh\n_v2:x:998:998::/:/bin/false\nalice:x:1000:1000::/home/alice:/bin/sh\n"
    assert (new / "passwd").read_text() == merged and (layers.upper / "passwd").read_text() == merged
    # shadow only in the lower layer: merged into the new slot (root's hash kept), the upper layer untouched
    assert (new / "shadow").read_text() == "root:$6$hash:19000:0:99999:7:::\n_v2:!:19500::::::\n"
    assert stat.S_IMODE((new / "shadow").stat().st_mode) == 0o640
    assert not (layers.upper / "shadow").exists()


def test_a_file_changed_here_and_by_the_new_image_is_a_conflict(layers: EtcLayers, tmp_path: Path) -> None:
    new = tree(tmp_path / "new", {"issue": "v2\n", "motd": "v1 motd\n", "mine.conf": "x\n", "passwd": "changed\n"})
    # issue: changed here and by the image; motd: unchanged by the image; mine.conf: new in the image, same bytes;
    # passwd: merged, never a conflict
    assert etc_conflicts(layers, new) == ["issue"]
    (new / "mine.conf").write_text("the image's\n")
    assert etc_conflicts(layers, new) == ["issue", "mine.conf"]


def test_on_the_running_system_writes_go_through_the_live_etc(layers: EtcLayers, tmp_path: Path) -> None:
    """The live overlay is stood in for by a directory: what matters is that the write goes there, never into
    the upper directory behind the mounted overlay's back."""
    live = tree(tmp_path / "live", {"machine-id": MACHINE_ID, "passwd": "root:x:0:0::/root:/bin/sh\n"})
    running = EtcLayers(lower=layers.lower, upper=layers.upper, live=live)
    tree(layers.upper, {"passwd": "root:x:0:0::/root:/bin/sh\n"})
    new = tree(tmp_path / "new", {"passwd": "root:x:0:0::/root:/bin/sh\n_v2:x:998:998::/:/bin/false\n"})
    assert carry_runtime_files(running) == ["machine-id"]
    merge_account_files(running, new)
    assert "_v2" in (live / "passwd").read_text()
    assert (layers.upper / "passwd").read_text() == "root:x:0:0::/root:/bin/sh\n"  # not behind the overlay


@pytest.mark.root  # mount
def test_on_the_running_system_the_hidden_lower_layer_is_read_through_a_bind_of_the_root_alone(
        layers: EtcLayers, tmp_path: Path) -> None:
    """The etc-overlay hook mounts an empty tmpfs over /.etc.lower; read through it, every file changed here
    would look changed by the image too."""
    root = tmp_path / "root"
    (root / ".etc.lower").mkdir(parents=True)
    shutil.copytree(layers.lower, root / ".etc.lower", dirs_exist_ok=True)
    (layers.upper / "motd").write_text("my motd\n")  # changed here; the new image keeps v1's
    new = tree(tmp_path / "new", {"issue": "v2\n", "motd": "v1 motd\n"})
    hidden = root / ".etc.lower"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=0,mode=000", "tmpfs", hidden], check=True)
    try:
        assert etc_conflicts(EtcLayers(lower=hidden, upper=layers.upper), new) == ["issue", "motd"]
        with bound_alone(root, tmp_path / "view", ctx=RunContext()) as view:
            assert etc_conflicts(EtcLayers(lower=view / ".etc.lower", upper=layers.upper), new) == ["issue"]
            with pytest.raises(OSError):
                (view / "written").write_text("x")  # read-only
        assert not (tmp_path / "view").exists()
    finally:
        subprocess.run(["umount", hidden], check=True)

"""The one resolver of paths inside a target root: symlinks followed as the target sees them, never out of it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nbc_tui.backend.inroot import path_in_target, resolve_in_target


def test_resolve_in_target_never_leaves_the_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    os.symlink("../../../../../../etc/passwd", tmp_path / "etc/escape")
    assert resolve_in_target(tmp_path, "etc/escape") is None  # /etc/passwd of the image: absent
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    assert resolve_in_target(tmp_path, "etc/escape") == tmp_path / "etc/passwd"
    assert resolve_in_target(tmp_path, "/etc/escape") == tmp_path / "etc/passwd"  # absolute or not
    os.symlink("loop", tmp_path / "loop")
    assert resolve_in_target(tmp_path, "loop") is None


def test_an_absolute_link_starts_again_from_the_targets_root(tmp_path: Path) -> None:
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "usr/lib/os-release").write_text("ID=x\n")
    (tmp_path / "etc").mkdir()
    os.symlink("/usr/lib/os-release", tmp_path / "etc/os-release")  # on the host this would be the host's file
    assert resolve_in_target(tmp_path, "etc/os-release") == tmp_path / "usr/lib/os-release"


def test_a_path_still_to_be_made_follows_the_links_that_exist(tmp_path: Path) -> None:
    """/root as a link into /var (bootc images): the folder to create lands on var, inside the target."""
    (tmp_path / "var").mkdir()
    os.symlink("/var/roothome", tmp_path / "root")
    assert path_in_target(tmp_path, "/root/.ssh/authorized_keys") == tmp_path / "var/roothome/.ssh/authorized_keys"
    assert path_in_target(tmp_path, "/srv/new") == tmp_path / "srv/new"
    os.symlink("a", tmp_path / "b")
    os.symlink("b", tmp_path / "a")
    with pytest.raises(OSError, match="too many symlinks"):
        path_in_target(tmp_path, "/a/x")

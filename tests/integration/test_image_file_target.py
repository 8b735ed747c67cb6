"""A disk-image file as the target: the one check the disk screen and the engine share, for every way a path
cannot become one, and the install refusing each of them with the file left as it was."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from nbc_tui.backend.disks import check_image_file_path, existing_file_words
from nbc_tui.backend.errors import InputError
from tests.support.loopdev import attached_loop

pytestmark = pytest.mark.root


def refused(path: Path, *, overwrite: bool = False) -> InputError:
    with pytest.raises(InputError) as info:
        check_image_file_path(path, overwrite=overwrite)
    assert info.value.exit_code == 2
    return info.value


def test_a_new_file_in_an_existing_folder_is_fine(tmp_path: Path) -> None:
    check_image_file_path(tmp_path / "new.img", overwrite=False)
    assert existing_file_words(tmp_path / "new.img") is None


def test_each_refusal_says_why(tmp_path: Path) -> None:
    missing = refused(tmp_path / "no" / "d.img")
    assert missing.message == f"the folder {tmp_path}/no of the disk-image file does not exist"
    assert "is not a regular file" in refused(tmp_path, overwrite=True).message
    os.symlink("/etc/passwd", tmp_path / "link.img")
    assert "is not a regular file" in refused(tmp_path / "link.img", overwrite=True).message
    with attached_loop(tmp_path / "disk.img", size=1 << 20) as dev:
        block = refused(dev, overwrite=True)
        assert (block.message, block.hint) == (f"{dev} is a block device, not a disk-image file",
                                               "choose it as the disk to install to instead")
    (tmp_path / "old.img").write_bytes(b"x" * 4096)
    old = refused(tmp_path / "old.img")
    assert (old.message, old.hint) == (f"image file {tmp_path}/old.img already exists", "use --yes to overwrite it")
    check_image_file_path(tmp_path / "old.img", overwrite=True)
    assert existing_file_words(tmp_path / "old.img") == f"{tmp_path}/old.img exists (4.0 KB) and will be overwritten"


def test_a_file_attached_to_a_loop_device_is_refused(tmp_path: Path) -> None:
    with attached_loop(tmp_path / "busy.img", size=1 << 20) as dev:
        exc = refused(tmp_path / "busy.img", overwrite=True)
        assert exc.message == f"image file {tmp_path}/busy.img is in use by {dev}"
        assert exc.hint == "detach those loop devices (losetup -d) first"


def test_the_install_refuses_a_busy_file_and_leaves_it_as_it_was(nbc, synthetic_image: str, tmp_path: Path) -> None:
    target = tmp_path / "busy.img"
    with attached_loop(target, size=1 << 20) as dev:
        before = target.read_bytes()
        r = nbc("install", "--image", synthetic_image, "--via-loopback", str(target), "--image-size", "3",
                "--root-size", "1G", "--esp-size", "100M", "--var-min-size", "300M", "--yes")
        assert r.returncode == 2 and f"is in use by {dev}" in r.stderr
        assert target.read_bytes() == before


def test_the_disk_image_file_never_overwrites_the_image_it_installs(nbc, synthetic_image: str,
                                                                    tmp_path: Path) -> None:
    """The file is made anew over its path: an oci-archive given as both, or a file inside the layout, would be
    wiped before its layers were read."""
    layout = Path(synthetic_image.removeprefix("oci:").rpartition(":")[0])
    archive = tmp_path / "os.tar"
    subprocess.run(["tar", "-C", str(layout), "-cf", str(archive), "."], check=True)
    before = archive.read_bytes()
    for image, target in ((f"oci-archive:{archive}", archive), (synthetic_image, layout / "disk.img")):
        r = nbc("install", "--image", image, "--via-loopback", str(target), "--image-size", "3", "--root-size", "1G",
                "--esp-size", "100M", "--var-min-size", "300M", "--yes")
        assert r.returncode == 2 and "would overwrite the image being installed" in r.stderr, r.stderr
    assert archive.read_bytes() == before and not (layout / "disk.img").exists()

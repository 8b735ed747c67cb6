"""A disk-image file as the target: whether a path can be one (the disk screen as it is typed, and the engine's
preflight with the same words), and whether one is there already."""

from __future__ import annotations

import contextlib
import stat
from pathlib import Path

from ..errors import InputError
from ..sizes import human


def check_image_file_path(path: Path, *, overwrite: bool) -> None:
    """Refuse (InputError, nothing written) a path that cannot become a new disk-image file: its folder is
    missing, it is a block device or not a regular file, loop devices use it, or it exists and ``overwrite``
    was not given."""
    path = path.absolute()
    if not path.parent.is_dir():
        raise InputError(f"the folder {path.parent} of the disk-image file does not exist",
                         hint="create it or choose another place")
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if stat.S_ISBLK(st.st_mode):
        raise InputError(f"{path} is a block device, not a disk-image file",
                         hint="choose it as the disk to install to instead")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path} exists and is not a regular file: it cannot become a disk-image file",
                         hint="choose another name")
    users = loop_devices_backed_by(path)
    if users:
        raise InputError(f"image file {path} is in use by {', '.join(users)}",
                         hint="detach those loop devices (losetup -d) first")
    if not overwrite:
        raise InputError(f"image file {path} already exists", hint="use --yes to overwrite it")


def existing_file_words(path: Path) -> str | None:
    """``/x/disk.img exists (35.0 GB) and will be overwritten``, or None when nothing is there."""
    with contextlib.suppress(OSError):
        return f"{path.absolute()} exists ({human(path.stat().st_size)}) and will be overwritten"
    return None


def loop_devices_backed_by(path: Path) -> list[str]:
    """Loop devices whose backing file is ``path`` (a leftover of a killed run, or someone else's)."""
    wanted = str(path.resolve())
    users = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        with contextlib.suppress(OSError):
            if backing.read_text().strip().removesuffix(" (deleted)") == wanted:
                users.append("/dev/" + backing.parent.parent.name)
    return sorted(users)

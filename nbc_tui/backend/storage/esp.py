"""The EFI system partition: written without ever mounting it (mkfs.vfat, then mtools), or through the mount
a booted system has of it.

Mounting vfat needs a kernel driver that some hosts (containers, minimal kernels) lack; mtools reads and
writes the FAT image directly through the block device, so :class:`Esp` works everywhere (install, and an
update from another system). A running nbc system has its ESP mounted at /boot: :class:`MountedEsp` writes
through that mount, never behind the back of the mounted filesystem. Both speak :class:`EspFiles`. ESP paths
are given relative to the ESP root with forward slashes ("EFI/BOOT/BOOTX64.EFI"); FAT compares them without
regard to case.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Protocol

from ..errors import CommandFailed
from ..runner import RunContext, run

# nbc's filesystem label for p1 (reference §3.2, §20).
ESP_LABEL = "UEFI"

_VOLUME_ID = re.compile(r"[0-9A-Fa-f]{8}")


def new_volume_id() -> str:
    """A random FAT volume id: 8 upper-case hex digits, as mkfs.vfat -i takes it."""
    return secrets.token_hex(4).upper()


def esp_uuid(volume_id: str) -> str:
    """The ESP's filesystem UUID as blkid (and root=/mount-extra tokens) write it: ``ABCD-1234``."""
    _check_volume_id(volume_id)
    vid = volume_id.upper()
    return f"{vid[:4]}-{vid[4:]}"


def _check_volume_id(volume_id: str) -> None:
    if not _VOLUME_ID.fullmatch(volume_id):
        raise ValueError(f"a FAT volume id is 8 hex digits, not {volume_id!r}")


def _esp_path(path: str) -> str:
    """``EFI/BOOT`` -> ``::/EFI/BOOT`` (mtools' name for a path on the image given with -i)."""
    parts = [p for p in PurePosixPath("/", path).parts[1:] if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"ESP path {path!r} leaves the ESP")
    return "::/" + "/".join(parts)


class EspFiles(Protocol):
    """The files of an ESP, however it is reached."""

    def mkdir(self, path: str) -> None: ...
    def put_file(self, src: Path, dest: str) -> None: ...
    def put_text(self, text: str, dest: str) -> None: ...
    def remove(self, path: str) -> None: ...
    def rename(self, src: str, dest: str) -> None: ...
    def files(self) -> list[str]: ...
    def exists(self, path: str) -> bool: ...
    def read(self, path: str) -> bytes: ...


class Esp:
    """One FAT32 ESP on a block device (or a file) that is never mounted."""

    def __init__(self, device: Path, *, ctx: RunContext) -> None:
        self.device = device
        # mtools refuses "unusual" geometries (a loop device, a partition) unless told not to check.
        self._ctx = dataclasses.replace(ctx, env_extra={**ctx.env_extra, "MTOOLS_SKIP_CHECK": "1"})

    def format(self, volume_id: str) -> None:
        """mkfs.vfat -F 32 with label UEFI and the given volume id (blkid then shows esp_uuid(volume_id))."""
        _check_volume_id(volume_id)
        run(["mkfs.vfat", "-F", "32", "-n", ESP_LABEL, "-i", volume_id.upper(), self.device],
            ctx=self._ctx, what="mkfs.vfat")

    def mkdir(self, path: str) -> None:
        """Create a directory and its parents; directories that already exist are fine."""
        target = _esp_path(path)
        if target == "::/":
            return
        existing = {d.casefold() for d in self._listing() if d.endswith("/")}
        missing: list[str] = []
        parts = target[3:].split("/")
        for i in range(len(parts)):
            sub = "::/" + "/".join(parts[: i + 1])
            if (sub[3:] + "/").casefold() not in existing:
                missing.append(sub)
        if missing:
            run(["mmd", "-i", self.device, *missing], ctx=self._ctx, what="mmd")

    def put_file(self, src: Path, dest: str) -> None:
        """Copy a host file to ``dest`` (parents created). An existing file is replaced through a temporary name
        beside it, renamed over it (one directory entry changes), so a power cut leaves the old file or the
        new one, never none. (mren stores a name that fits 8.3 in upper case, ``GRUB.CFG``: FAT, GRUB and
        systemd-boot ignore case.)"""
        target = PurePosixPath(_esp_path(dest)[3:])
        parent = str(target.parent)
        if parent not in ("", "."):
            self.mkdir(parent)
        if not self.exists(dest):
            run(["mcopy", "-i", self.device, src, _esp_path(dest)], ctx=self._ctx, what="mcopy")
            return
        staging = str(target.with_name(f".{target.name}.new"))
        run(["mcopy", "-o", "-i", self.device, src, _esp_path(staging)], ctx=self._ctx, what="mcopy")
        self.rename(staging, dest)

    def put_text(self, text: str, dest: str) -> None:
        """Write UTF-8 text to ``dest`` (LF line endings, exactly as given)."""
        with tempfile.TemporaryDirectory(prefix="nbc-tui-esp-") as tmp:
            src = Path(tmp, PurePosixPath(dest).name or "file")
            src.write_bytes(text.encode())
            self.put_file(src, dest)

    def put_tree(self, src: Path, dest: str = "") -> None:
        """Copy the contents of a host directory recursively under ``dest`` (mcopy -s)."""
        entries = sorted(src.iterdir())
        if not entries:
            return
        if dest:
            self.mkdir(dest)
        run(["mcopy", "-s", "-o", "-i", self.device, *entries, _esp_path(dest or "/")],
            ctx=self._ctx, what="mcopy")

    def remove(self, path: str) -> None:
        """Delete one file."""
        run(["mdel", "-i", self.device, _esp_path(path)], ctx=self._ctx, what="mdel")

    def rename(self, src: str, dest: str) -> None:
        """Rename a file within its folder, replacing ``dest`` when it exists."""
        run(["mren", "-D", "o", "-i", self.device, _esp_path(src), _esp_path(dest)], ctx=self._ctx, what="mren")

    def files(self) -> list[str]:
        """Every file (not directory) on the ESP, recursively, as ``EFI/BOOT/BOOTX64.EFI``."""
        return sorted(p for p in self._listing() if not p.endswith("/"))

    def directories(self) -> list[str]:
        """Every directory on the ESP, recursively, without a trailing slash."""
        return sorted(p.rstrip("/") for p in self._listing() if p.endswith("/"))

    def exists(self, path: str) -> bool:
        want = _esp_path(path)[3:].casefold()
        return any(p.rstrip("/").casefold() == want for p in self._listing())

    def read(self, path: str) -> bytes:
        """The bytes of one file (mtype without -t copies them unchanged)."""
        return run(["mtype", "-i", self.device, _esp_path(path)], ctx=self._ctx, changes_system=False,
                   what="mtype").stdout

    def _listing(self) -> list[str]:
        # `mdir -/ -b` prints one full path per entry, directories with a trailing slash; on an empty
        # filesystem it fails with 'File "::/" not found', which simply means no entries. A dry run
        # formatted nothing, so there is nothing to list.
        if self._ctx.dry_run:
            return []
        done = run(["mdir", "-i", self.device, "-/", "-b", "::/"], ctx=self._ctx, changes_system=False,
                   ok=(0, 1), what="mdir")
        if done.returncode == 1:
            if b"not found" in done.stderr:
                return []
            raise CommandFailed(
                f"mdir could not read the ESP on {self.device}: {done.stderr.decode(errors='replace').strip()}",
                hint="check that the partition holds a FAT filesystem",
            )
        return [line[3:] for line in done.out.splitlines() if line.startswith("::/") and line != "::/"]


class MountedEsp:
    """An ESP mounted at ``root`` (a running system's /boot): written through the mount, each file replaced by a
    rename so that a power cut leaves the old or the new one."""

    def __init__(self, root: Path, *, dry_run: bool = False) -> None:
        self.root = root
        self.dry_run = dry_run

    def _path(self, path: str) -> Path:
        return self.root / _esp_path(path)[3:]

    def mkdir(self, path: str) -> None:
        if not self.dry_run:
            self._path(path).mkdir(parents=True, exist_ok=True)

    def put_file(self, src: Path, dest: str) -> None:
        if not self.dry_run:
            self._replace(dest, lambda tmp: shutil.copyfile(src, tmp))

    def put_text(self, text: str, dest: str) -> None:
        if not self.dry_run:
            self._replace(dest, lambda tmp: tmp.write_bytes(text.encode()))

    def _replace(self, dest: str, write: Callable[[Path], object]) -> None:
        # FAT keeps no modes (a chmod is refused), so not write_atomically: a temp file, fsync, rename.
        target = self._path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}")
        try:
            write(tmp)
            with tmp.open("rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def remove(self, path: str) -> None:
        if not self.dry_run:
            self._path(path).unlink(missing_ok=True)

    def rename(self, src: str, dest: str) -> None:
        if not self.dry_run:
            os.replace(self._path(src), self._path(dest))

    def files(self) -> list[str]:
        found = []
        for dirpath, _dirs, names in os.walk(self.root):
            for name in names:
                found.append(str(Path(dirpath, name).relative_to(self.root)))
        return sorted(found)

    def exists(self, path: str) -> bool:
        return self._path(path).exists()

    def read(self, path: str) -> bytes:
        return self._path(path).read_bytes()


def remove_tree(esp: EspFiles, folder: str) -> None:
    """Delete every file under ``folder`` (a slot's kernel folder before new files go in)."""
    prefix = folder.rstrip("/").casefold() + "/"
    for path in esp.files():
        if path.casefold().startswith(prefix):
            with contextlib.suppress(CommandFailed, FileNotFoundError):
                esp.remove(path)

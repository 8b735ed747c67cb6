"""The etc-overlay hook added to an image's own dracut initramfs without running dracut.

The kernel unpacks an initramfs made of several cpio archives back to back, each over the ones before it
(the kernel's "initramfs buffer format": an uncompressed newc archive may follow a compressed one, starting
on a 4-byte boundary after zero padding). When the image's initramfs is a dracut one that already holds
what the hook runs (dracut's pre-pivot hook directory and dracut-lib.sh, mount, umount and mkdir, and the
overlay kernel module), a small uncompressed archive holding the hook alone, appended to it, makes it mount
/etc as an overlay at boot: milliseconds instead of a full dracut run. Anything else missing (LUKS or TPM2
support) still takes the full rebuild (steps/slot.py decides).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Set as AbstractSet
from pathlib import Path

from .dracut import HOOK_SCRIPT, module_source

HOOK_DIRS = ("usr/lib/dracut/hooks/pre-pivot", "lib/dracut/hooks/pre-pivot", "var/lib/dracut/hooks/pre-pivot")
"""Where dracut's initramfs keeps pre-pivot hooks, newest dracut first; the hook goes where the initramfs has one."""
HOOK_PRIORITY = "50"
"""The priority module-setup.sh gives the hook (inst_hook pre-pivot 50)."""
DRACUT_LIB = ("usr/lib/dracut-lib.sh", "lib/dracut-lib.sh")
"""The hook calls getarg, getargbool, info and warn from it."""
COMMANDS = ("mount", "umount", "mkdir")
"""What the hook cannot do without (module-setup.sh installs them; the rest it does without)."""
COMMAND_DIRS = ("usr/bin", "usr/sbin", "bin", "sbin")
_DASHED_HOOK = re.compile(r"/hooks/[^/]+/\d\d-[^/]+$")
_NEWC_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


def append_blocker(members: AbstractSet[str], kver: str) -> str | None:
    """Why the hook cannot be appended to this initramfs (its member names), or None when it can."""
    if hook_dir(members) is None:
        return "it is not a dracut initramfs (no pre-pivot hook directory)"
    if not any(lib in members for lib in DRACUT_LIB):
        return "it has no dracut-lib.sh"
    lacking = [c for c in COMMANDS if not any(f"{d}/{c}" in members for d in COMMAND_DIRS)]
    if lacking:
        return f"it lacks {', '.join(lacking)}"
    if not has_overlay_module(members, kver):
        return f"it lacks the overlay kernel module of {kver}"
    return None


def hook_dir(members: AbstractSet[str]) -> str | None:
    """The pre-pivot hook directory of this initramfs (listed itself, or holding a hook)."""
    return next((d for d in HOOK_DIRS if d in members or any(n.startswith(f"{d}/") for n in members)), None)


def has_overlay_module(members: AbstractSet[str], kver: str) -> bool:
    """overlay.ko (compressed or not) for ``kver`` in the initramfs. A kernel with overlayfs built in does
    not need it, but only modules.builtin's content says so: such an initramfs takes the full rebuild."""
    module = re.compile(rf"(?:usr/)?lib/modules/{re.escape(kver)}/kernel/fs/overlayfs/overlay\.ko(?:\.(?:xz|zst|gz))?")
    return any(module.fullmatch(name) for name in members)


def hook_member(members: AbstractSet[str]) -> str:
    """The hook's path inside the initramfs, named the way this dracut names its hooks (``50-name.sh`` since
    dracut 057, ``50name.sh`` before)."""
    directory = hook_dir(members)
    if directory is None:
        raise ValueError("not a dracut initramfs")
    dashed = any(_DASHED_HOOK.search(name) for name in members)
    return f"{directory}/{HOOK_PRIORITY}{'-' if dashed else ''}{HOOK_SCRIPT}"


def newc_archive(files: list[tuple[str, int, bytes]]) -> bytes:
    """An uncompressed newc cpio archive of regular files (name, mode, content) owned by root, then the
    trailer. Parent directories are not included: they exist in the archive this one is appended to."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*files, (_TRAILER, 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        is_trailer = name == _TRAILER
        fields = (0 if is_trailer else ino, 0 if is_trailer else (0o100000 | mode), 0, 0, 0 if is_trailer else 1,
                  0, len(data), 0, 0, 0, 0, len(encoded), 0)
        out += _NEWC_MAGIC + b"".join(b"%08X" % value for value in fields) + encoded
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def hook_archive(members: AbstractSet[str]) -> bytes:
    """The archive to append: the module's hook script at :func:`hook_member`, mode 0755."""
    script = (module_source() / HOOK_SCRIPT).read_bytes()
    return newc_archive([(hook_member(members), 0o755, script)])


def append_archive(initramfs: Path, archive: bytes) -> None:
    """Append ``archive`` to ``initramfs`` on a 4-byte boundary (zero padding before it), through a copy
    renamed over the original, so the file is never half written."""
    tmp = initramfs.with_name(f".{initramfs.name}.nbc-tui")
    shutil.copyfile(initramfs, tmp)
    try:
        with tmp.open("ab") as out:
            out.write(b"\0" * (-out.tell() % 4))
            out.write(archive)
            out.flush()
            os.fsync(out.fileno())
        shutil.copymode(initramfs, tmp)
        os.replace(tmp, initramfs)
    finally:
        tmp.unlink(missing_ok=True)

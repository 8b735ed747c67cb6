"""The 95etc-overlay dracut module (package data) and initramfs regeneration inside the target.

The scripts keep nbc's hook name, kernel parameters and paths (reference §10), so a disk nbc-tui writes and
a disk nbc writes boot the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.resources
import logging
import os
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import InputError, NbcError
from ..inroot import resolve_in_target
from ..mounts import chroot_binds
from ..runner import RunContext, run
from .initramfs import InitramfsError, initramfs_contains

log = logging.getLogger("nbc_tui")

MODULES_D = "usr/lib/dracut/modules.d"
MODULE_NAME = "etc-overlay"
MODULE_DIR = f"{MODULES_D}/95etc-overlay"
# The image's own modules an encrypted disk needs in a rebuilt initramfs.
CRYPT_MODULE = "crypt"
TPM2_MODULE = "tpm2-tss"
MODULE_FILES = ("module-setup.sh", "etc-overlay-mount.sh")
HOOK_SCRIPT = "etc-overlay-mount.sh"
# inst_hook pre-pivot 50 puts the hook in the initramfs under a name that varies with dracut's version:
# var/lib/dracut/hooks/pre-pivot/50etc-overlay-mount.sh (older), usr/lib/dracut/hooks/pre-pivot/
# 50-etc-overlay-mount.sh (Debian 12's dracut 059). initramfs_contains matches any priority prefix.
DRACUT_CANDIDATES = ("usr/bin/dracut", "usr/sbin/dracut", "sbin/dracut", "bin/dracut")
# dracut writes large temporary trees: a disk-backed directory inside the chroot, not a small tmpfs.
CHROOT_TMPDIR = "/var/tmp"
# dracut's default compression is gzip -9 (or what it finds first), a third of a rebuild's time. Every kernel
# unpacks gzip, so the fast levels of gzip (pigz on all cores when the image has it) keep the initramfs
# bootable anywhere and a few percent bigger. An image whose dracut configuration picks a compressor keeps it.
FAST_COMPRESSORS = (("usr/bin/pigz", "pigz -1 -n"), ("usr/bin/gzip", "gzip -1 -n"), ("bin/gzip", "gzip -1 -n"))
DRACUT_CONF_FILES = ("etc/dracut.conf", "etc/dracut.conf.d/*.conf", "usr/lib/dracut/dracut.conf.d/*.conf")
_COMPRESS_SETTING = re.compile(r"^\s*compress\s*=\s*[\"']?\s*([^\"'\s]*)", re.MULTILINE)
READABLE_COMPRESSORS = (("usr/bin/zstd", "zstd"), ("usr/bin/xz", "xz"))
"""Without gzip, what replaces an unlistable compressor (dracut knows their flags by name)."""
UNLISTABLE_COMPRESSORS = frozenset({"lz4", "lzo", "lzop"})
"""Compressors whose archives :mod:`.initramfs` cannot list: a rebuild must be readable back (the hook is
checked in it), so an image's configuration naming one of these is overridden."""


def module_source() -> Path:
    """The module's directory as shipped in the nbc_tui package."""
    return Path(str(importlib.resources.files("nbc_tui") / "dracut" / "95etc-overlay"))


def install_etc_overlay_module(target_root: Path) -> None:
    """Copy the module into ``<target>/usr/lib/dracut/modules.d/95etc-overlay`` (files mode 0755)."""
    dest = target_root / MODULE_DIR
    if dest.is_symlink():
        raise NbcError(f"{dest} is a symlink in the image; refusing to write through it")
    dest.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chmod(dest, 0o755)
    src = module_source()
    for name in MODULE_FILES:
        target = dest / name
        if target.is_symlink():
            target.unlink()
        shutil.copyfile(src / name, target)
        os.chmod(target, 0o755)


def initramfs_has_etc_overlay(initramfs: Path) -> bool:
    """Whether the initramfs carries the etc-overlay hook (as hooks/pre-pivot/<NN>etc-overlay-mount.sh).

    False when the file is missing or cannot be listed: like nbc, the answer then is "regenerate".
    """
    if not initramfs.is_file():
        return False
    try:
        return initramfs_contains(initramfs, HOOK_SCRIPT)
    except InitramfsError as exc:
        log.warning("cannot list %s (%s); treating it as lacking the etc-overlay hook", initramfs, exc)
        return False


def module_glob(name: str) -> str:
    """The glob dracut finds module ``name`` by: modules.d/<two digits><name>. The digits move between
    releases (dracut-ng renamed 90crypt to 70crypt), so a check for one number would miss the module."""
    return f"{MODULES_D}/[0-9][0-9]{name}"


def modules_to_add(*, crypt: bool, tpm2: bool, image_matches: Callable[[str], bool]) -> list[str]:
    """The ``--add`` list of a rebuild: etc-overlay always; crypt for an encrypted disk and tpm2-tss for TPM2
    unlock, each only when ``image_matches(module_glob(name))`` says the image has it.

    crypt is in a ``--no-hostonly`` build anyway when its check passes, but asking for it makes a missing
    cryptsetup an error instead of an initramfs that cannot unlock. tpm2-tss must be asked for: its check
    returns 255 (only on request) and nothing requests it without host-only. A module dracut cannot find
    or install on ``--add`` makes it exit 1, hence the filter (the preflight refuses such images first).
    """
    wanted = [CRYPT_MODULE] if crypt else []
    if crypt and tpm2:
        wanted.append(TPM2_MODULE)
    return [MODULE_NAME, *(m for m in wanted if image_matches(module_glob(m)))]


def find_dracut(target_root: Path) -> str | None:
    """dracut's path inside the target (e.g. /usr/bin/dracut), or None when the image has none."""
    for rel in DRACUT_CANDIDATES:
        found = resolve_in_target(target_root, rel)
        if found is not None and found.is_file():
            return "/" + rel
    return None


def compress_choice(target_root: Path) -> str | None:
    """The ``--compress`` of a rebuild: None when the image's dracut configuration names one (it wins), else
    the fastest gzip the image has (None when it has none: dracut picks). A configured compressor whose
    archive cannot be read back (lz4, lzo) does not win: the rebuild would fail its check after the wipe."""
    configured = configured_compressor(target_root)
    if configured is not None and configured not in UNLISTABLE_COMPRESSORS:
        return None
    for rel, command in FAST_COMPRESSORS + (READABLE_COMPRESSORS if configured is not None else ()):
        found = resolve_in_target(target_root, rel)
        if found is not None and found.is_file():
            return command
    return None


def configured_compressor(target_root: Path) -> str | None:
    """The compressor the image's dracut configuration names last (dracut sources the files in this order, a
    later setting wins), as its program's name; None when none does."""
    found = None
    for pattern in DRACUT_CONF_FILES:
        for conf in sorted(target_root.glob(pattern)):
            with contextlib.suppress(OSError, UnicodeDecodeError):
                if not conf.is_symlink():
                    for match in _COMPRESS_SETTING.finditer(conf.read_text()):
                        found = Path(match.group(1)).name or found
    return found


def regenerate_initramfs(target_root: Path, kver: str, *, ctx: RunContext,
                         modules: Sequence[str] = (MODULE_NAME,)) -> Path:
    """Rebuild ``usr/lib/modules/<kver>/initramfs.img`` with the image's dracut, adding ``modules`` (one
    ``--add`` each; :func:`modules_to_add` picks them).

    Runs in a chroot of the target with /dev, /proc and /sys bound (always unbound again), with
    ``--no-hostonly`` so the initramfs boots any machine rather than the installer's. Returns the host
    path of the new initramfs after checking that it contains the hook.
    """
    dracut = find_dracut(target_root)
    if dracut is None:
        raise InputError("the image has no dracut, so its initramfs cannot get the etc-overlay module",
                         hint="install dracut in the image")
    if not (target_root / "usr/lib/modules" / kver).is_dir():
        raise InputError(f"the image has no kernel modules for {kver}")
    image = f"/usr/lib/modules/{kver}/initramfs.img"
    output = target_root / image.lstrip("/")
    if ctx.dry_run:
        log.info("dry-run, not regenerating %s", output)
        return output
    tmp = target_root / CHROOT_TMPDIR.lstrip("/")
    if not tmp.is_dir():
        tmp.mkdir(parents=True)
        os.chmod(tmp, 0o1777)
    chroot_ctx = dataclasses.replace(ctx, env_extra={**ctx.env_extra, "TMPDIR": CHROOT_TMPDIR})
    compress = compress_choice(target_root)
    with chroot_binds(target_root, ctx=ctx):
        run(["chroot", target_root, dracut, "--force", "--no-hostonly", "--tmpdir", CHROOT_TMPDIR,
             *(["--compress", compress] if compress else []),
             *(arg for m in modules for arg in ("--add", m)), "--kver", kver, image],
            ctx=chroot_ctx, timeout=1800, what="dracut")
    if not output.is_file():
        raise NbcError(f"dracut finished but wrote no {image}")
    if not initramfs_has_etc_overlay(output):
        raise NbcError(
            f"the regenerated {image} lacks the etc-overlay hook",
            hint=f"check that {MODULE_DIR} is intact in the image and that dracut accepts the module",
        )
    return output

"""What the initramfs that boots a disk must hold (the etc-overlay hook; for an encrypted disk LUKS unlock,
and the TPM2 with ``--tpm2``), and what an image needs for dracut to add what its own initramfs lacks.

The answers come from member names (an initramfs read with :mod:`.initramfs`) and from ``exists``/``matches``
callables over the image's final tree (the pre-install scan's inventory, before anything is written).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from pathlib import Path

from .dracut import CRYPT_MODULE, HOOK_SCRIPT, TPM2_MODULE, module_glob
from .initramfs import InitramfsError, initramfs_names, names_contain

# What in an initramfs means it can unlock LUKS, and what in an image lets dracut add that (its crypt
# module's check wants systemd-cryptsetup or cryptsetup). No initramfs-tools hook counts: the installer
# only ever rebuilds an initramfs with dracut.
INITRAMFS_UNLOCKERS = ("usr/lib/systemd/systemd-cryptsetup", "lib/systemd/systemd-cryptsetup",
                       "usr/sbin/cryptsetup", "sbin/cryptsetup", "usr/bin/cryptsetup", "bin/cryptsetup")
IMAGE_UNLOCKERS = ("usr/lib/systemd/systemd-cryptsetup", "usr/lib64/systemd/systemd-cryptsetup",
                   "usr/sbin/cryptsetup", "usr/bin/cryptsetup", "sbin/cryptsetup")
DRACUT_CRYPT_MODULE = module_glob(CRYPT_MODULE)
# What lets an initramfs use a TPM2: the TCTI library systemd-cryptsetup loads, which a rebuild gets from
# dracut's tpm2-tss module (91tpm2-tss); that module's check wants tpm2-tools' `tpm2` command.
DRACUT_TPM2_MODULE = module_glob(TPM2_MODULE)
TCTI_DEVICE_GLOBS = ("usr/lib/*/libtss2-tcti-device.so*", "usr/lib64/libtss2-tcti-device.so*",
                     "usr/lib/libtss2-tcti-device.so*")
TPM2_TOOLS = ("usr/bin/tpm2", "usr/sbin/tpm2", "bin/tpm2", "sbin/tpm2")
ETC_OVERLAY_GAP = "the etc-overlay module"
"""The gap :func:`initramfs_gaps` names when the hook is missing (system/initramfs_hook.py can fill it alone)."""
_TCTI_NAME = re.compile(r"(?:^|/)libtss2-tcti-device\.so(?:\.\d+)*$")


def initramfs_gaps(members: AbstractSet[str], *, encrypted: bool, tpm2: bool) -> list[str]:
    """What an initramfs (its member names) lacks to boot a slot, in words. The image's initramfs is generic
    (the unlock is driven by rd.luks.* on the kernel command line, not by a crypttab inside it), so one that
    has these parts boots this disk."""
    missing = []
    if not names_contain(members, HOOK_SCRIPT):
        missing.append(ETC_OVERLAY_GAP)
    if encrypted:
        if not initramfs_can_unlock(members):
            missing.append("LUKS support")
        if tpm2 and not initramfs_has_tpm2(members):
            missing.append("TPM2 support")
    return missing


def unlock_support_problem(exists: Callable[[str], bool], matches: Callable[[str], bool], *,
                           initramfs_members: AbstractSet[str] | None = None) -> str | None:
    """Why the image cannot unlock LUKS at boot, or None.

    ``exists(path)`` and ``matches(glob)`` answer for the image's final tree (paths relative to its root;
    the pre-install scan's :class:`~nbc_tui.backend.image.scan.ImageInventory`, before anything is
    written). Give ``initramfs_members`` when the shipped initramfs is the one that boots: an unlocker in
    it is then enough. Otherwise dracut rebuilds it, and needs its crypt module and systemd-cryptsetup or
    cryptsetup in the image.
    """
    if initramfs_members is not None and initramfs_can_unlock(initramfs_members):
        return None
    if not any(exists(p) for p in IMAGE_UNLOCKERS):
        return ("the image has neither systemd-cryptsetup nor cryptsetup, so its initramfs cannot unlock "
                "an encrypted root")
    if not matches(DRACUT_CRYPT_MODULE):
        return ("the image has no dracut crypt module (90crypt), so its initramfs cannot unlock an encrypted "
                "root")
    return None


def initramfs_member_names(initramfs: Path) -> set[str]:
    """Member names of an initramfs (empty when it cannot be read: then it counts as lacking everything)."""
    try:
        with initramfs.open("rb") as f:
            return set(initramfs_names(f))
    except (OSError, InitramfsError):
        return set()


def initramfs_can_unlock(names: AbstractSet[str]) -> bool:
    return any(n in names for n in INITRAMFS_UNLOCKERS)


def initramfs_has_tpm2(names: AbstractSet[str]) -> bool:
    """Whether an initramfs (its member names) carries the TPM2 TCTI that systemd-cryptsetup loads."""
    return any(_TCTI_NAME.search(n) for n in names)


def image_tpm2_problem(exists: Callable[[str], bool], matches: Callable[[str], bool], *,
                       initramfs_members: AbstractSet[str] | None = None) -> str | None:
    """Why the image's initramfs cannot unlock with the TPM2, or None.

    Like :func:`unlock_support_problem`: ``exists``/``matches`` answer for the image's
    final tree, and ``initramfs_members`` is given when the shipped initramfs is the one that boots.
    """
    if initramfs_members is not None and initramfs_has_tpm2(initramfs_members):
        return None
    if not any(matches(g) for g in TCTI_DEVICE_GLOBS):
        return ("the image lacks libtss2-tcti-device (tpm2-tss), so systemd-cryptsetup in its initramfs "
                "cannot talk to the TPM")
    if not matches(DRACUT_TPM2_MODULE):
        return "the image has no dracut tpm2-tss module (91tpm2-tss) to put the TPM2 libraries in its initramfs"
    if not any(exists(p) for p in TPM2_TOOLS):
        return ("the image lacks tpm2-tools (the tpm2 command), without which dracut's tpm2-tss module cannot "
                "put the TPM2 libraries in its initramfs")
    return None

"""LUKS2 on root1, root2 and var (reference §5): every cryptsetup argv, /etc/crypttab, and the checks that
come before the wipe.

The passphrase only ever travels on cryptsetup's stdin (``--key-file -``, no trailing newline: with a key
file every byte is key material, so ``printf`` semantics, never ``echo``), never on argv or in the
environment, and it is registered with the run's redactor before the first command. Mappers are opened
under nbc's fixed names and each is closed by the cleanup stack (after the filesystems on it are
unmounted, since the stack unwinds last-in first-out). Unlike nbc, a mapper of one of those names that
already exists is never closed: it belongs to someone else (an nbc system running this installer), and the
install is refused before anything is written.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path

from pydantic import SecretStr

from .boot.cmdline import ROOT_MAPPERS, VAR_MAPPER
from .dracut import CRYPT_MODULE, module_glob
from .errors import InputError, NbcError
from .initramfs import InitramfsError, initramfs_names
from .runner import RunContext, run, which
from .state import write_atomically

ENCRYPTED_ROLES = ("root1", "root2", "var")
"""The partitions that are encrypted (the ESP never is), in the order they are set up."""
MAPPER_NAMES = {"root1": ROOT_MAPPERS[0], "root2": ROOT_MAPPERS[1], "var": VAR_MAPPER}
MAPPER_DIR = Path("/dev/mapper")
DM_CONTROL = MAPPER_DIR / "control"
CRYPTTAB = Path("etc/crypttab")

FAST_PBKDF_ENV = "NBC_TUI_TEST_FAST_PBKDF"
"""TEST ONLY. ``NBC_TUI_TEST_FAST_PBKDF=1`` makes every new keyslot use PBKDF2 with 1000 iterations, which
a GPU guesses at billions per second: it exists so that VM tests under TCG do not spend minutes in argon2id.
Never set it for a real install; the install says so in a warning when it is set."""
FAST_PBKDF_ARGS = ("--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")
# A recovery key is 256 random bits: stretching adds nothing (systemd-cryptenroll uses minimal PBKDF2 too).
HIGH_ENTROPY_PBKDF_ARGS = ("--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")

# What in an initramfs means it can unlock LUKS, and what in an image lets dracut add that (its crypt
# module's check wants systemd-cryptsetup or cryptsetup). No initramfs-tools hook counts: the installer
# only ever rebuilds an initramfs with dracut.
INITRAMFS_UNLOCKERS = ("usr/lib/systemd/systemd-cryptsetup", "lib/systemd/systemd-cryptsetup",
                       "usr/sbin/cryptsetup", "sbin/cryptsetup", "usr/bin/cryptsetup", "bin/cryptsetup")
IMAGE_UNLOCKERS = ("usr/lib/systemd/systemd-cryptsetup", "usr/lib64/systemd/systemd-cryptsetup",
                   "usr/sbin/cryptsetup", "usr/bin/cryptsetup", "sbin/cryptsetup")
DRACUT_CRYPT_MODULE = module_glob(CRYPT_MODULE)


def fast_pbkdf_requested() -> bool:
    return os.environ.get(FAST_PBKDF_ENV) == "1"


def pbkdf_args() -> list[str]:
    """cryptsetup's defaults (argon2id, benchmarked) unless the test-only override is set."""
    return list(FAST_PBKDF_ARGS) if fast_pbkdf_requested() else []


def _key(passphrase: SecretStr) -> bytes:
    # Exactly the passphrase: no newline, so the disk opens with the same bytes typed at the boot prompt.
    return passphrase.get_secret_value().encode()


# -- checks before anything is written ---------------------------------------------------------------

def device_mapper_problem(*, ctx: RunContext | None = None) -> str | None:
    """Why this kernel cannot open LUKS mappings, or None. Reads /dev, /proc and /sys; with ``ctx`` (not
    in a dry run) it first loads dm_mod when the module is installed but not loaded (no disk is touched)."""
    if not _kernel_has_dm():
        # /dev/mapper/control alone proves nothing: libdevmapper creates the node whether or not the
        # kernel has a driver behind it.
        return "this kernel has no device-mapper (no device-mapper in /proc/misc, and no dm_mod module)"
    if not DM_CONTROL.exists() and ctx is not None:
        with contextlib.suppress(NbcError):  # loading it makes the kernel create the node
            run(["modprobe", "dm_mod"], ctx=ctx, timeout=60)
    if not DM_CONTROL.exists():
        return f"{DM_CONTROL} is missing although the kernel has device-mapper (is /dev populated?)"
    if not _dm_crypt_available():
        return "this kernel has device-mapper but no dm-crypt target (module dm_crypt)"
    return None


def _kernel_has_dm() -> bool:
    """Loaded (it shows in sysfs and /proc/misc), or a module the kernel loads on the first open of
    /dev/mapper/control (a static node systemd creates at boot)."""
    if Path("/sys/class/misc/device-mapper").exists():
        return True
    with contextlib.suppress(OSError):
        if any(line.split()[-1:] == ["device-mapper"] for line in Path("/proc/misc").read_text().splitlines()):
            return True
    return _module_installed("dm-mod.ko")


def _dm_crypt_available() -> bool:
    # Not loaded yet: the kernel loads it on the first crypt table if the module is installed.
    return Path("/sys/module/dm_crypt").exists() or _module_installed("dm-crypt.ko")


def _module_installed(filename: str) -> bool:
    """Whether the running kernel has the module built in or installed (modules.builtin, modules.dep)."""
    release = os.uname().release
    for base in (Path("/lib/modules", release), Path("/usr/lib/modules", release)):
        for index in ("modules.builtin", "modules.dep"):
            with contextlib.suppress(OSError):
                if f"/{filename}" in (base / index).read_text():
                    return True
    return False


def existing_mappers(names: Iterable[str] = tuple(MAPPER_NAMES.values())) -> list[str]:
    """Which of ``names`` are device-mapper devices on this machine now (by /dev/mapper and sysfs)."""
    wanted = set(names)
    found = {n for n in wanted if (MAPPER_DIR / n).exists() or (MAPPER_DIR / n).is_symlink()}
    for name_file in Path("/sys/block").glob("dm-*/dm/name"):
        with contextlib.suppress(OSError):
            name = name_file.read_text().strip()
            if name in wanted:
                found.add(name)
    return sorted(found)


def check_can_encrypt(*, ctx: RunContext | None = None) -> None:
    """Refuse (InputError, nothing written) when this machine cannot create and open LUKS2 volumes."""
    if which("cryptsetup") is None:
        raise InputError("encryption needs cryptsetup, which is not installed: nothing was written",
                         hint="install cryptsetup (Debian: cryptsetup-bin)")
    problem = device_mapper_problem(ctx=ctx)
    if problem:
        raise InputError(f"encryption needs device-mapper with dm-crypt: {problem}; nothing was written",
                         hint="run the installer on a kernel with device-mapper (any live ISO has it), "
                              "or install without --encrypt")
    taken = existing_mappers()
    if taken:
        raise InputError(
            f"device-mapper names {', '.join(taken)} are already in use on this machine (nbc's mapper names "
            "for the new disk): nothing was written",
            hint="this looks like an nbc system with encrypted disks: install from a live ISO, or close "
                 "those mappings (cryptsetup close NAME) if they are left over",
            details={"mappers": taken})


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


# -- format, open, read back -----------------------------------------------------------------------

def luks_format(device: Path, passphrase: SecretStr, *, ctx: RunContext) -> None:
    """``cryptsetup luksFormat --type luks2 --batch-mode --key-file -`` with the passphrase on stdin."""
    run(["cryptsetup", "luksFormat", "--type", "luks2", "--batch-mode", *pbkdf_args(), "--key-file", "-",
         device], ctx=ctx, stdin=_key(passphrase), timeout=600, what="cryptsetup luksFormat")


def luks_uuid(device: Path, *, ctx: RunContext) -> str:
    out = run(["cryptsetup", "luksUUID", device], ctx=ctx, changes_system=False).out.strip()
    if not out:
        raise NbcError(f"cryptsetup luksUUID gave no UUID for {device}")
    return out


def check_passphrase(device: Path, passphrase: SecretStr, *, ctx: RunContext) -> None:
    """Check that the passphrase opens a keyslot of ``device`` (no mapping is made: works without dm)."""
    run(["cryptsetup", "open", "--test-passphrase", "--key-file", "-", device], ctx=ctx,
        stdin=_key(passphrase), changes_system=False, what="cryptsetup open --test-passphrase")


@contextlib.contextmanager
def opened(device: Path, name: str, passphrase: SecretStr, *, ctx: RunContext) -> Iterator[Path]:
    """Open ``device`` as /dev/mapper/``name`` for the block; always closed again on the way out."""
    if existing_mappers((name,)):
        raise NbcError(f"/dev/mapper/{name} already exists; it is not ours, so it is left alone",
                       hint=f"close it (cryptsetup close {name}) if it is left over, then run again")
    run(["cryptsetup", "open", "--type", "luks2", "--key-file", "-", device, name], ctx=ctx,
        stdin=_key(passphrase), timeout=300, what="cryptsetup open")
    try:
        yield MAPPER_DIR / name
    finally:
        close(name, ctx=ctx)


def close(name: str, *, ctx: RunContext) -> None:
    """``cryptsetup close``; a mapper still busy a moment after an unmount gets a few retries."""
    for attempt in range(10):
        if not existing_mappers((name,)) and not ctx.dry_run:
            return
        try:
            run(["cryptsetup", "close", name], ctx=ctx, timeout=60)
            return
        except NbcError:
            if attempt == 9:
                raise
            time.sleep(0.5)


def add_key(device: Path, *, ctx: RunContext, unlock_key_file: Path, new_key_file: Path,
            high_entropy: bool = False) -> None:
    """Add a keyslot for the key in ``new_key_file``, unlocking with ``unlock_key_file`` (both 0600 files
    under /run, so neither secret is on argv or in the environment)."""
    pbkdf = list(HIGH_ENTROPY_PBKDF_ARGS) if high_entropy else pbkdf_args()
    run(["cryptsetup", "luksAddKey", "--batch-mode", *pbkdf, "--key-file", unlock_key_file, device,
         new_key_file], ctx=ctx, timeout=600, what="cryptsetup luksAddKey")


# -- the installed system's /etc/crypttab ----------------------------------------------------------

def crypttab_text(uuids: dict[str, str], *, active_root: str = "root1", tpm2: bool = False) -> str:
    """nbc's crypttab (reference §5.3), with the inactive root ``noauto`` so that the booted system never
    asks for it (nbc listed it plainly: an extra passphrase prompt at every boot without TPM2)."""
    if active_root not in ROOT_MAPPERS:
        raise ValueError(f"active_root must be one of {ROOT_MAPPERS}")
    lines = [
        "# /etc/crypttab - LUKS encrypted devices",
        "# Generated by nbc-tui (nbc-compatible); the root slot that is not booted is noauto",
        "#",
        "# <name> <device> <keyfile> <options>",
        "",
    ]
    for role in ENCRYPTED_ROLES:
        options = ["luks"]
        if role in ROOT_MAPPERS and role != active_root:
            options.append("noauto")
        if tpm2:
            options.append("tpm2-device=auto")
        lines.append(f"{MAPPER_NAMES[role]} UUID={uuids[role]} none {','.join(options)}")
    return "\n".join(lines) + "\n"


def write_crypttab(root: Path, text: str) -> Path:
    """Write ``<root>/etc/crypttab`` mode 0600 (before /.etc.lower is copied from /etc)."""
    path = root / CRYPTTAB
    write_atomically(path, text.encode(), mode=0o600)
    return path

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
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import SecretStr

from ..atomic import write_atomically
from ..errors import InputError, NbcError
from ..mounts import MOUNTINFO, mounted_device_numbers
from ..runner import RunContext, retry, run, which
from ..system.slots import ENCRYPTED_ROLES, MAPPER_NAMES, Slot

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


def idle_mapping_of(name: str, device: Path, *, sys_block: Path = Path("/sys/block"),
                    mountinfo: Path = MOUNTINFO) -> bool:
    """Whether /dev/mapper/``name`` is open on exactly ``device`` and nothing uses it: no device stacked on it,
    nothing mounted from it. nbc's crypttab lists the other root without ``noauto`` (reference §5.3), so on a
    disk nbc wrote the boot opens the slot an update is about to write; nbc reuses that mapping (§5.6)."""
    for dm in sys_block.glob("dm-*"):
        with contextlib.suppress(OSError):
            if (dm / "dm/name").read_text().strip() != name:
                continue
            slaves = [p.name for p in (dm / "slaves").iterdir()]
            if slaves != [Path(os.path.realpath(device)).name] or any((dm / "holders").iterdir()):
                return False
            return (dm / "dev").read_text().strip() not in mounted_device_numbers(mountinfo)
    return False


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


SYSTEMD_CRYPTSETUP = (Path("/usr/lib/systemd/systemd-cryptsetup"), Path("/lib/systemd/systemd-cryptsetup"))


@contextlib.contextmanager
def opened_by_tpm2(device: Path, name: str, *, ctx: RunContext) -> Iterator[Path]:
    """Open ``device`` as /dev/mapper/``name`` with its TPM2 token, as the boot does (systemd-cryptsetup,
    ``headless``: never a prompt); NbcError when the TPM does not open it. Always closed on the way out."""
    tool = next((t for t in SYSTEMD_CRYPTSETUP if t.exists()), None)
    if tool is None:
        raise NbcError("systemd-cryptsetup is not installed: the TPM2 cannot open the slot")
    if existing_mappers((name,)):
        raise NbcError(f"/dev/mapper/{name} already exists; it is not ours, so it is left alone",
                       hint=f"close it (cryptsetup close {name}) if it is left over, then run again")
    run([tool, "attach", name, device, "none", "tpm2-device=auto,headless=true"], ctx=ctx, timeout=300,
        what="systemd-cryptsetup attach")
    try:
        yield MAPPER_DIR / name
    finally:
        close(name, ctx=ctx)


def close(name: str, *, ctx: RunContext) -> None:
    """``cryptsetup close``; a mapper still busy a moment after an unmount gets a few retries."""

    def close_once() -> None:
        if existing_mappers((name,)) or ctx.dry_run:
            run(["cryptsetup", "close", name], ctx=ctx, timeout=60)

    retry(close_once, attempts=10, delay=0.5)


def add_key(device: Path, *, ctx: RunContext, unlock_key_file: Path, new_key_file: Path,
            high_entropy: bool = False) -> None:
    """Add a keyslot for the key in ``new_key_file``, unlocking with ``unlock_key_file`` (both 0600 files
    under /run, so neither secret is on argv or in the environment)."""
    pbkdf = list(HIGH_ENTROPY_PBKDF_ARGS) if high_entropy else pbkdf_args()
    run(["cryptsetup", "luksAddKey", "--batch-mode", *pbkdf, "--key-file", unlock_key_file, device,
         new_key_file], ctx=ctx, timeout=600, what="cryptsetup luksAddKey")


# -- the installed system's /etc/crypttab ----------------------------------------------------------

def crypttab_text(uuids: dict[str, str], *, active: Slot = Slot.A, tpm2: bool = False) -> str:
    """nbc's crypttab (reference §5.3) for the system in slot ``active``, with the other root ``noauto`` so
    that the booted system never asks for it (nbc listed it plainly: an extra passphrase prompt at every boot
    without TPM2)."""
    lines = [
        "# /etc/crypttab - LUKS encrypted devices",
        "# Generated by nbc-tui (nbc-compatible); the root slot that is not booted is noauto",
        "#",
        "# <name> <device> <keyfile> <options>",
        "",
    ]
    for role in ENCRYPTED_ROLES:
        options = ["luks"]
        if role == active.other.role:
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

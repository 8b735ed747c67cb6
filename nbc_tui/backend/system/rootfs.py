"""Configure the extracted root for nbc's model (reference §9): fstab, machine-id, the root password,
/.etc.lower, the overlay directories on /var and the tmpfiles marker.

Order matters: everything that changes /etc happens before /.etc.lower is copied, because at boot the
overlay's lower layer is /.etc.lower, not /etc (nbc set the root password after the copy, so it was lost).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from ..atomic import write_atomically
from ..errors import InputError, NbcError
from ..inroot import path_in_target, resolve_in_target
from ..osrelease import OS_RELEASE_PATHS
from ..runner import RunContext, run
from ..secret_files import read_secret_file

ETC_LOWER = Path(".etc.lower")
OVERLAY_BASE = Path("var/lib/nbc/etc-overlay")
PRISTINE_ETC = Path("var/lib/nbc/etc.pristine")
TMPFILES_MARKER = Path("usr/lib/tmpfiles.d/nbc.conf")
TMPFILES_MARKER_TEXT = (
    "# nbc boot marker - indicates system was installed by nbc\n"
    "# Similar to /run/ostree-booted for ostree-managed systems\n"
    "f /run/nbc-booted 0644 root root - nbc\n"
)
# `systemd.mount-extra=` is understood from this systemd version on. The tokens stay on the kernel command line
# for older images too (nbc writes them), but then /boot and /var also need fstab lines.
MOUNT_EXTRA_MIN_SYSTEMD = 254
SYSTEM_DIRS = ("dev", "proc", "sys", "run", "tmp", "var/tmp", "boot", "mnt", "media", "opt", "srv")


def verify_extraction(root: Path) -> None:
    """The image must look like an OS: /usr, /usr/lib, /etc and an os-release (nbc §6.5)."""
    missing = [d for d in ("usr", "usr/lib", "etc") if not (root / d).is_dir()]
    if missing:
        raise InputError(f"the image is not a bootable OS: /{', /'.join(missing)} missing after extraction")
    if not any((found := resolve_in_target(root, p)) is not None and found.is_file()
               for p in OS_RELEASE_PATHS):
        raise InputError("the image is not a bootable OS: it has no /usr/lib/os-release")


def ensure_system_dirs(root: Path) -> None:
    for d in SYSTEM_DIRS:
        p = root / d
        if not p.is_dir() and not p.is_symlink():
            p.mkdir(mode=0o755, parents=True)
    for d in ("tmp", "var/tmp"):
        if (root / d).is_dir() and not (root / d).is_symlink():
            os.chmod(root / d, 0o1777)


TMP_MOUNT_WANTS = ("usr/lib/systemd/system/local-fs.target.wants/tmp.mount",
                   "etc/systemd/system/local-fs.target.wants/tmp.mount")
"""Where an image that mounts a tmpfs on /tmp itself (Fedora, bootc images) enables systemd's tmp.mount."""
TMP_LINE = "tmpfs\t/tmp\ttmpfs\tmode=1777,strictatime,nosuid,nodev,size=50%,nr_inodes=1m\t0 0"


def mounts_tmp_itself(root: Path) -> bool:
    return any((found := resolve_in_target(root, p)) is not None and found.exists() for p in TMP_MOUNT_WANTS)


def fstab_text(*, esp_uuid: str, var_uuid: str, filesystem: str, systemd_version: int | None,
               tmp_tmpfs: bool = True) -> str:
    """``tmp_tmpfs``: a tmpfs on /tmp (the root is read-only: without one, /tmp is too, and systemd cannot
    set up PrivateDevices= for its own services, hostnamed, timedated and localed among them)."""
    lines = [
        "# /etc/fstab: created by nbc-tui (an nbc A/B layout)",
        "# /     comes from root= on the kernel command line and is mounted read-only",
        "# /etc  is an overlay mounted in the initramfs by the 95etc-overlay dracut module",
        "# /boot (the ESP) and /var come from systemd.mount-extra= on the kernel command line",
    ]
    if systemd_version is None or systemd_version < MOUNT_EXTRA_MIN_SYSTEMD:
        # systemd before 254 ignores systemd.mount-extra=: mount them from here instead.
        lines += [
            f"# this image's systemd ({systemd_version or 'unknown version'}) predates systemd.mount-extra=",
            f"UUID={esp_uuid}\t/boot\tvfat\tdefaults\t0 2",
            f"UUID={var_uuid}\t/var\t{filesystem}\tdefaults\t0 0",
        ]
    if tmp_tmpfs:
        lines += ["# /tmp: the read-only root's own /tmp cannot be written", TMP_LINE]
    return "\n".join(lines) + "\n"


def write_fstab(root: Path, text: str) -> None:
    write_atomically(root / "etc/fstab", text.encode(), mode=0o644)


def reset_machine_id(root: Path, warn: Callable[[str], None]) -> None:
    """``uninitialized`` makes systemd treat the first boot as such and commit a fresh id into /etc."""
    path = root / "etc/machine-id"
    current = path.read_text().strip() if path.is_file() else ""
    if current and current != "uninitialized":
        warn(f"the image ships a machine-id ({current[:8]}...): every machine installed from it shares it")
        return
    if path.exists() or path.is_symlink():
        path.unlink()
    path.write_text("uninitialized\n")
    os.chmod(path, 0o444)


_SHA512_CRYPT = re.compile(r"\$6\$[^\s:$]*\$[./0-9A-Za-z]+")


def hash_password(password: SecretStr, *, ctx: RunContext) -> str:
    """A crypt(3) SHA-512 hash made by openssl (the password goes on stdin); redacted from every log. The
    runner logs a tool's output as it comes, before the hash could be registered: openssl runs with its
    output masked by shape and shown nowhere (no --verbose line, no TUI log pane)."""
    hashed = run(["openssl", "passwd", "-6", "-stdin"], ctx=ctx.masking(_SHA512_CRYPT), stdin=password,
                 changes_system=False).out.strip()
    ctx.redactor.add(hashed)
    return hashed


def password_hash(value: SecretStr | None, file: Path | None, hashed: str | None, *, what: str,
                  ctx: RunContext) -> str | None:
    """The crypt(3) hash to set for a password given one of three ways (the plan allows one): typed, in a file
    (both hashed here, the secret redacted from every log), or as a hash. None when none was given."""
    if file is not None:
        value = read_secret_file(file, what)
    if value is not None:
        ctx.redactor.add(value)
        return hash_password(value, ctx=ctx)
    return hashed


def set_root_password_hash(root: Path, hashed: str) -> None:
    """Write a crypt(3) hash into root's field of the target's /etc/shadow (no other field changes)."""
    shadow = root / "etc/shadow"
    if not shadow.is_file():
        raise InputError("the image has no /etc/shadow: cannot set the root password")
    st = shadow.stat()
    lines = shadow.read_text().splitlines()
    found = False
    for i, line in enumerate(lines):
        fields = line.split(":")
        if fields[0] == "root" and len(fields) >= 2:
            fields[1] = hashed
            lines[i] = ":".join(fields)
            found = True
    if not found:
        lines.insert(0, f"root:{hashed}:19000:0:99999:7:::")
    write_atomically(shadow, ("\n".join(lines) + "\n").encode(), mode=st.st_mode & 0o7777)
    os.chown(shadow, st.st_uid, st.st_gid)


def write_authorized_keys(root: Path, keys: tuple[str, ...]) -> Path:
    """Append the keys to root's ``~/.ssh/authorized_keys``. Where the image makes /root a link into
    /var (``/var/roothome``), the file lands on the shared var partition and survives updates."""
    home = path_in_target(root, "/root")
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(ssh, 0o700)
    path = ssh / "authorized_keys"
    existing = path.read_text() if path.is_file() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"
    new = [k.strip() for k in keys if k.strip() not in existing.splitlines()]
    write_atomically(path, (existing + "".join(f"{k}\n" for k in new)).encode(), mode=0o600)
    for p in (ssh, path):
        os.chown(p, 0, 0)
    return path


ROOT_KEYS = "/root/.ssh/authorized_keys"


def carry_root_keys(current_root: Path, new_root: Path) -> bool:
    """Root's SSH keys into a new slot, when /root is a folder of the slot in both (where the image links it
    into /var, the keys are on var already): without them, a machine reached only by key is locked out after
    the update. Returns whether any were carried."""
    if (current_root / "root").is_symlink() or (new_root / "root").is_symlink():
        return False
    source = current_root / ROOT_KEYS.lstrip("/")
    if source.is_symlink() or not source.is_file():
        return False
    keys = tuple(line for line in source.read_text(errors="replace").splitlines()
                 if line.strip() and not line.lstrip().startswith("#"))
    if not keys:
        return False
    write_authorized_keys(new_root, keys)
    return True


def write_tmpfiles_marker(root: Path) -> None:
    write_atomically(root / TMPFILES_MARKER, TMPFILES_MARKER_TEXT.encode(), mode=0o644)


def _copy_tree(src: Path, dest: Path, *, ctx: RunContext) -> None:
    """A faithful copy (owners, modes, xattrs, hardlinks, symlinks as links): cp -a."""
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    run(["cp", "-a", "--no-dereference", src, dest], ctx=ctx)


def populate_etc_lower(root: Path, *, ctx: RunContext) -> None:
    etc = root / "etc"
    if not etc.is_dir() or not any(etc.iterdir()):
        raise InputError("the image's /etc is empty: there is nothing for the /etc overlay to start from")
    _copy_tree(etc, root / ETC_LOWER, ctx=ctx)
    if not any((root / ETC_LOWER).iterdir()):
        raise NbcError("copying /etc to /.etc.lower left it empty")


def create_overlay_dirs(shared_root: Path) -> None:
    """upper and work of the /etc overlay on the shared var partition (``shared_root/var``)."""
    for d in ("upper", "work"):
        (shared_root / OVERLAY_BASE / d).mkdir(mode=0o755, parents=True, exist_ok=True)


def warn_missing_etc_files(root: Path, warn: Callable[[str], None]) -> None:
    for name in ("passwd", "group", "os-release"):
        if not (root / "etc" / name).exists() and not (root / "etc" / name).is_symlink():
            warn(f"the image has no /etc/{name}")


def save_pristine_etc(root: Path, shared_root: Path, *, ctx: RunContext) -> None:
    """A copy of the slot's image /etc on var (nbc keeps one: an update compares the next image with it)."""
    (shared_root / PRISTINE_ETC).parent.mkdir(parents=True, exist_ok=True)
    _copy_tree(root / "etc", shared_root / PRISTINE_ETC, ctx=ctx)

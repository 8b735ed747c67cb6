"""Who the machine is and who uses it: host name, time zone, keymap and locale (systemd-firstboot), and
people's accounts (the image's own useradd and chpasswd, in a chroot, so the image's UID ranges, skeleton and
shells apply).

What the image offers is read by the scan through the globs and paths here (steps/identity.py checks a plan
against it before the wipe). The files written land in the slot's /etc and, because only the /etc overlay's
upper layer on var outlives an update (system/etc_carry.py), also in that upper layer; accounts are merged
across updates entry by entry (system/accounts.py) and homes are on var.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from ..atomic import write_atomically
from ..errors import NbcError
from ..inroot import path_in_target
from ..mounts import chroot_binds
from ..runner import RunContext, run

if TYPE_CHECKING:
    from ..plan import System, User

ZONEINFO = "usr/share/zoneinfo"
ZONE_GLOBS = tuple(ZONEINFO + "/*" * depth for depth in (1, 2, 3))
KEYMAP_DIRS = ("usr/share/keymaps", "usr/share/kbd/keymaps", "usr/lib/kbd/keymaps")
# A keymap file lies two to four folders down: xkb/de.map.gz, i386/qwertz/de-latin1.kmap.gz (Debian's
# console-data, Arch), legacy/i386/qwertz/de-latin1.map.gz (Fedora's and CentOS's kbd).
KEYMAP_GLOBS = tuple(d + "/*" * depth for d in KEYMAP_DIRS for depth in (2, 3, 4))
LOCALE_DIRS_GLOB = "usr/lib/locale/*"
LOCALE_ARCHIVE = "usr/lib/locale/locale-archive"
LOCALE_GEN = "etc/locale.gen"
FIRSTBOOT = "usr/bin/systemd-firstboot"
USERADD = "usr/sbin/useradd"
CHPASSWD = "usr/sbin/chpasswd"
ACCOUNT_READS = ("etc/passwd", "etc/group", "etc/shells", LOCALE_GEN)
ADMIN_GROUPS = ("sudo", "wheel")
"""The admin group by family: Debian and Ubuntu, then Fedora and Arch."""
IDENTITY_FILES = ("hostname", "localtime", "vconsole.conf", "locale.conf")
"""What systemd-firstboot writes under /etc for the four settings."""
HOMES = "var/home"
_KEYMAP_FILE = re.compile(r"^(?P<name>.+?)\.k?map(\.(gz|bz2|xz|zst))?$")
_BUILTIN_LOCALES = {"C", "POSIX", "C.UTF-8", "C.utf8"}


# -- what the image offers (from the scan's listings) ---------------------------------------------------------

_NOT_ZONES = {"SECURITY"}
"""A file of tzdata's zoneinfo directory that is no zone (its other files start lower-case or end .tab)."""


def zone_names(paths: Iterable[str]) -> set[str]:
    """Time zone names from zoneinfo paths (``usr/share/zoneinfo/Europe/Berlin`` -> ``Europe/Berlin``): its
    files, not its folders (``Europe``), the ``posix``/``right`` copies or tzdata's own files (``leapseconds``,
    ``zone1970.tab``); every zone name starts with a capital (``UTC``, ``Etc/GMT+1``)."""
    prefix = ZONEINFO + "/"
    names = {p[len(prefix):] for p in paths if p.startswith(prefix)}
    folders = {n.rsplit("/", 1)[0] for n in names if "/" in n}
    folders |= {f.rsplit("/", 1)[0] for f in folders if "/" in f}
    return {n for n in names if n not in folders and n[:1].isupper() and n not in _NOT_ZONES and "." not in n
            and not n.startswith(("posix/", "right/"))}


def keymap_names(paths: Iterable[str]) -> set[str]:
    """Keymap names from keymap files (``.../qwerty/de-latin1.map.gz`` -> ``de-latin1``)."""
    return {m["name"] for p in paths if (m := _KEYMAP_FILE.match(p.rsplit("/", 1)[-1]))}


def _locale_key(name: str) -> str:
    """glibc's normalised form: ``en_US.UTF-8`` and ``en_US.utf8`` are the same locale."""
    base, dot, codeset = name.partition(".")
    codeset, at, modifier = codeset.partition("@")
    if not dot:
        base, at, modifier = base.partition("@")
    norm = re.sub(r"[^a-z0-9]", "", codeset.lower())
    return base + ("." + norm if norm else "") + (at + modifier if at else "")


def locale_installed(name: str, *, dirs: Iterable[str], has_archive: bool, locale_gen: str) -> bool:
    """Whether the image has ``name`` built: a directory under /usr/lib/locale, or (with a locale-archive)
    an enabled line of /etc/locale.gen (Debian builds the archive from it). C and C.UTF-8 are built in."""
    if name in _BUILTIN_LOCALES:
        return True
    key = _locale_key(name)
    if key in {_locale_key(d.rsplit("/", 1)[-1]) for d in dirs}:
        return True
    enabled = {line.split()[0] for line in locale_gen.splitlines() if line.strip() and not line.startswith("#")}
    return has_archive and key in {_locale_key(e) for e in enabled}


def names_in(account_text: str) -> set[str]:
    """The names (first fields) of /etc/passwd or /etc/group."""
    return {line.split(":", 1)[0] for line in account_text.splitlines() if line.strip() and not line.startswith("#")}


def admin_group(groups: set[str]) -> str | None:
    return next((g for g in ADMIN_GROUPS if g in groups), None)


# -- applying --------------------------------------------------------------------------------------------------

def apply_settings(root: Path, upper: Path, system: System, *, with_firstboot: bool, ctx: RunContext) -> list[str]:
    """Host name, time zone, keymap and locale: made in the root's /etc with the image's systemd-firstboot when
    it has one (else the same files written directly), then moved to the /etc overlay's ``upper`` layer, which
    outlives updates; the slot's /etc keeps the image's own files (so an update sees no change there to carry).
    Returns the /etc files set."""
    settings = {"hostname": system.hostname, "timezone": system.timezone, "keymap": system.keymap,
                "locale": system.locale}
    given = {k: v for k, v in settings.items() if v is not None}
    if not given:
        return []
    names = [name for key, name in zip(settings, IDENTITY_FILES, strict=True) if key in given]
    originals = {name: _read(root / "etc" / name) for name in names}
    if with_firstboot:
        with chroot_binds(root, ctx=ctx):
            run(["chroot", root, "/" + FIRSTBOOT, "--root=/", "--force",
                 *(f"--{key}={value}" for key, value in given.items())], ctx=ctx, what="systemd-firstboot")
        # systemd-firstboot writes no file for its own default (C.UTF-8): the choice is still written down.
        missing = [n for n in names if not (root / "etc" / n).is_symlink() and not (root / "etc" / n).exists()]
        _write_settings(root, system, only=missing)
    else:
        _write_settings(root, system, only=names)
    for name in names:
        _put(upper / name, _read(root / "etc" / name))
        _put(root / "etc" / name, originals[name])
    return names


@dataclass(frozen=True)
class _Saved:
    """A file of /etc as it was: a symlink's target, or a regular file's bytes, mode and owner."""

    link: str | None = None
    data: bytes = b""
    mode: int = 0o644
    owner: tuple[int, int] = (0, 0)


def _read(path: Path) -> _Saved | None:
    if path.is_symlink():
        return _Saved(link=os.readlink(path))
    if path.is_file():
        st = path.stat()
        return _Saved(data=path.read_bytes(), mode=st.st_mode & 0o7777, owner=(st.st_uid, st.st_gid))
    return None


def _put(path: Path, saved: _Saved | None) -> None:
    if path.is_symlink() or path.exists():
        path.unlink()
    if saved is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if saved.link is not None:
        path.symlink_to(saved.link)
    else:
        write_atomically(path, saved.data, mode=saved.mode, owner=saved.owner)


def _write_settings(root: Path, system: System, *, only: list[str]) -> None:
    """What systemd-firstboot writes (the files of ``only``), for an image without it."""
    etc = root / "etc"
    if system.hostname and "hostname" in only:
        write_atomically(etc / "hostname", f"{system.hostname}\n".encode(), mode=0o644)
    if system.timezone and "localtime" in only:
        _put(etc / "localtime", _Saved(link=f"../{ZONEINFO}/{system.timezone}"))
    if system.keymap and "vconsole.conf" in only:
        write_atomically(etc / "vconsole.conf", f"KEYMAP={system.keymap}\n".encode(), mode=0o644)
    if system.locale and "locale.conf" in only:
        write_atomically(etc / "locale.conf", f"LANG={system.locale}\n".encode(), mode=0o644)


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str


def add_user(root: Path, user: User, *, groups: list[str], var_home: bool, ctx: RunContext) -> Account:
    """useradd in the image's chroot: a home, the groups, the shell, the full name. ``var_home``: the home is
    /var/home/NAME (the image's /home is on the root slot, not on var)."""
    argv: list[str | Path] = ["chroot", root, "/" + USERADD, "--create-home"]
    if var_home:
        argv += ["--home-dir", f"/{HOMES}/{user.name}"]
        (root / HOMES).mkdir(mode=0o755, parents=True, exist_ok=True)
    if user.full_name:
        argv += ["--comment", user.full_name]
    if groups:
        argv += ["--groups", ",".join(groups)]
    if user.shell:
        argv += ["--shell", user.shell]
    with chroot_binds(root, ctx=ctx):
        run([*argv, user.name], ctx=ctx, what="useradd")
    return account(root, user.name)


def set_password(root: Path, name: str, hashed: str, *, ctx: RunContext) -> None:
    """chpasswd -e in the chroot: the hash goes on stdin, never on a command line."""
    ctx.redactor.add(hashed)
    with chroot_binds(root, ctx=ctx):
        run(["chroot", root, "/" + CHPASSWD, "--encrypted"], ctx=ctx, stdin=SecretStr(f"{name}:{hashed}\n"),
            what="chpasswd")


def account(root: Path, name: str) -> Account:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name and len(fields) >= 6:
            return Account(name, int(fields[2]), int(fields[3]), fields[5])
    raise NbcError(f"useradd finished but /etc/passwd has no {name}")


def write_user_keys(root: Path, who: Account, keys: tuple[str, ...]) -> Path:
    """``~/.ssh/authorized_keys`` of the account, owned by it: 0700 for the folder, 0600 for the file."""
    ssh = path_in_target(root, who.home) / ".ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = ssh / "authorized_keys"
    write_atomically(path, "".join(f"{k.strip()}\n" for k in keys).encode(), mode=0o600, owner=(who.uid, who.gid))
    os.chmod(ssh, 0o700)
    os.chown(ssh, who.uid, who.gid)
    return path

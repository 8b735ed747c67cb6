"""A plan's identity (host name, time zone, keymap, locale, users) against the image, before the wipe: the
image must ship the zone, the keymap, the locale, the groups, the shells and the tools the plan asks for.
Each problem is an InputError that names the answer-file key it is about (``details["answer_key"]``)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

from ..engine import StepContext
from ..errors import InputError
from ..image.scan import ImageInventory
from ..image_facts import image_keymaps, image_time_zones
from ..inroot import path_in_target
from ..plan import System
from ..secret_files import read_secret_file
from ..system import identity
from ..system.etc_carry import OVERLAY_UPPER
from ..system.rootfs import password_hash


def _error(key: tuple[str | int, ...], message: str, hint: str) -> InputError:
    return InputError(message, hint=hint + ". Nothing was written", details={"answer_key": list(key)})


def _close(name: str, known: Iterable[str]) -> str:
    near = difflib.get_close_matches(name, sorted(known), n=4, cutoff=0.6)
    return f"did you mean {', '.join(near)}?" if near else "none is close"


def _text(inventory: ImageInventory, path: str) -> str:
    data = inventory.small_content(path)
    return data.decode(errors="replace") if data else ""


def identity_problems(system: System, inventory: ImageInventory) -> list[InputError]:
    """Everything the image lacks for ``system``, in the plan's order."""
    found: list[InputError] = []
    zones, keymaps = image_time_zones(inventory), image_keymaps(inventory)
    for key, value, known, what, add in (
            ("timezone", system.timezone, zones, "time zone", "Add tzdata to the image, or leave timezone out "
                                                               "(the system then runs on UTC)"),
            ("keymap", system.keymap, keymaps, "console keymap", "Add the keymaps to the image (kbd or "
                                                                 "console-data), or leave keymap out")):
        if value and not known:
            found.append(_error(("system", key), f"The image ships no {what}s: cannot set {value}", add))
        elif value and value not in known:
            found.append(_error(("system", key), f"The image has no {what} {value!r}",
                                f"Name one it ships ({_close(value, known)})"))
    if system.locale:
        dirs = inventory.matching(identity.LOCALE_DIRS_GLOB)
        if not identity.locale_installed(system.locale, dirs=dirs, has_archive=inventory.exists(
                identity.LOCALE_ARCHIVE), locale_gen=_text(inventory, identity.LOCALE_GEN)):
            built = sorted(d.rsplit("/", 1)[-1] for d in dirs if not d.endswith("locale-archive"))
            found.append(_error(("system", "locale"), f"The image has no locale {system.locale!r} built",
                                "Build it into the image (Debian: locales, with the line enabled in "
                                f"/etc/locale.gen); built: {', '.join(built) or 'none besides C.UTF-8'}"))
    found += _user_problems(system, inventory)
    return found


def _user_problems(system: System, inventory: ImageInventory) -> list[InputError]:
    if not system.users:
        return []
    found = []
    if not inventory.exists(identity.USERADD):
        found.append(_error(("system", "users"), "The image has no useradd: cannot create the users",
                            "Add it to the image (Debian: passwd; Fedora: shadow-utils)"))
    if any(u.sets_password for u in system.users) and not inventory.exists(identity.CHPASSWD):
        found.append(_error(("system", "users"), "The image has no chpasswd: cannot set the users' passwords",
                            "Add it to the image (Debian: passwd; Fedora: shadow-utils)"))
    existing = identity.names_in(_text(inventory, "etc/passwd"))
    groups = identity.names_in(_text(inventory, "etc/group"))
    shells = {line.strip() for line in _text(inventory, "etc/shells").splitlines() if line.startswith("/")}
    for n, user in enumerate(system.users):
        if user.password_file is not None:
            try:
                read_secret_file(user.password_file, f"password of {user.name}")
            except InputError as exc:
                found.append(_error(("system", "users", n, "password_file"), exc.message, exc.hint or "Fix the file"))
        if user.name in existing:
            found.append(_error(("system", "users", n, "name"), f"The image already has an account {user.name!r}",
                                "Choose another user name"))
        if user.admin and identity.admin_group(groups) is None:
            found.append(_error(("system", "users", n, "admin"),
                                f"The image has no admin group ({' or '.join(identity.ADMIN_GROUPS)}) for {user.name}",
                                "Add sudo to the image, or name the groups yourself"))
        if missing := [g for g in user.groups if g not in groups]:
            found.append(_error(("system", "users", n, "groups"),
                                f"The image has no group {', '.join(missing)} for {user.name}",
                                f"Name groups its /etc/group has ({_close(missing[0], groups)})"))
        if user.shell and shells and user.shell not in shells:
            found.append(_error(("system", "users", n, "shell"),
                                f"{user.shell} is not a login shell of the image (its /etc/shells)",
                                f"Use one of {', '.join(sorted(shells))}"))
    return found


def check_identity(system: System, inventory: ImageInventory) -> None:
    """Raise the first problem (InputError, exit 2)."""
    problems = identity_problems(system, inventory)
    if problems:
        raise problems[0]


def firstboot_note(system: System, inventory: ImageInventory) -> str | None:
    """What to say when the image has no systemd-firstboot and the files are written the same way instead."""
    if system.sets_identity and not inventory.exists(identity.FIRSTBOOT):
        return ("the image has no systemd-firstboot: nbc-tui writes /etc/hostname, /etc/localtime, "
                "/etc/vconsole.conf and /etc/locale.conf itself, as systemd-firstboot would")
    return None


def set_identity(root: Path, shared_root: Path, system: System, inventory: ImageInventory, io: StepContext) -> None:
    """Host name, time zone, keymap and locale (kept in the /etc overlay's upper layer), then each user: made
    by the image's useradd, its password set by chpasswd from a hash, its SSH keys in its home."""
    upper = shared_root / OVERLAY_UPPER
    names = identity.apply_settings(root, upper, system, with_firstboot=inventory.exists(identity.FIRSTBOOT),
                                    ctx=io.ctx)
    if names:
        io.message(f"Set {', '.join(f'/etc/{n}' for n in names)} (kept on /var: they outlive updates)")
    if not system.users:
        return
    admin = identity.admin_group(identity.names_in((root / "etc/group").read_text()))
    # /home on the root slot would be read-only and replaced by each update: homes go on var.
    var_home = not _on_var(root, "/home")
    for user in system.users:
        groups = [*user.groups, *([admin] if user.admin and admin and admin not in user.groups else [])]
        who = identity.add_user(root, user, groups=groups, var_home=var_home, ctx=io.ctx)
        hashed = password_hash(user.password, user.password_file, user.password_hash,
                               what=f"password of {user.name}", ctx=io.ctx)
        if hashed is not None:
            identity.set_password(root, user.name, hashed, ctx=io.ctx)
        if user.ssh_authorized_keys:
            identity.write_user_keys(root, who, user.ssh_authorized_keys)
        io.message(f"User {user.name} (UID {who.uid}, home {who.home}"
                   + (f", groups {', '.join(groups)}" if groups else "")
                   + (", password set" if hashed else ", no password: log in with an SSH key") + ")")


def _on_var(root: Path, path: str) -> bool:
    return path_in_target(root, path).is_relative_to(root / "var")

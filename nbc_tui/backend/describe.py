"""The plan and its target in words: one wording for the review screen, the dry run, ``answers validate`` and
headless installs alike (a disk in words is :mod:`.disks.words`).

Every function returns plain sentences (no markup); the faces decide how to frame them.
"""

from __future__ import annotations

from pathlib import Path

from .disks import Disk, disk_line
from .plan import InstallPlan, System, User
from .sizes import human
from .storage.partition import nbc_layout

BOOTLOADER_WORDS = {"auto": "automatic (systemd-boot when the image carries it, else GRUB)",
                    "grub": "GRUB", "systemd-boot": "systemd-boot"}

# ---------------------------------------------------------------------------------------------------
# A target


def image_file_words(path: Path, size: int) -> list[str]:
    """A disk-image file target, and what happens to a file already there."""
    lines = [f"a new disk-image file {path.absolute()}, {human(size)} (sparse)"]
    if path.exists():
        lines.append(f"The file there now ({human(path.stat().st_size)}) will be replaced.")
    return lines


def target_line(plan: InstallPlan, disk: Disk | None) -> str:
    """The target in one line: ``the disk-image file X`` or the disk's line."""
    if disk is None:
        return f"the disk-image file {plan.target.image_file}"
    return disk_line(disk)


# ---------------------------------------------------------------------------------------------------
# The plan


def encryption_lines(plan: InstallPlan) -> list[str]:
    """What is encrypted and how it unlocks, in a line or two."""
    enc = plan.encryption
    if enc is None:
        return ["Encryption: none (anyone holding the disk can read it)"]
    if not enc.tpm2:
        unlock = "the passphrase, at every boot"
    elif enc.tpm2_pcrs:
        unlock = f"the TPM2 while PCR {'+'.join(str(p) for p in enc.tpm2_pcrs)} is unchanged, else the passphrase"
    else:
        unlock = "the TPM2 on any boot of this machine, else the passphrase"
    lines = ["Encryption: LUKS2 on root1, root2 and var (not the ESP)", f"Unlocking: {unlock}"]
    if enc.tpm2:
        where = f"written to {enc.recovery_key_file}" if enc.recovery_key_file else "shown once during the install"
        lines.append(f"Recovery key: {where}")
    return lines


def creation_lines(plan: InstallPlan) -> list[str]:
    """What the install creates on the target, in words (the review screen and the dry run)."""
    parts = ", ".join(f"p{p.number} {p.name} {human(p.size) if p.size else '(the rest)'}"
                      for p in nbc_layout(plan.layout))
    kargs = " ".join(plan.boot.kernel_args) or "none"
    password = "set" if plan.system.sets_password else "not set"
    return [
        f"GPT: {parts}",
        f"{plan.layout.filesystem} on root1, root2 and var; the system goes into root1 (slot A)",
        *encryption_lines(plan),
        f"Bootloader: {BOOTLOADER_WORDS.get(plan.boot.bootloader, plan.boot.bootloader)}",
        f"Kernel arguments: {kargs}. Root password: {password}.",
    ]


# ---------------------------------------------------------------------------------------------------
# Who the installed system is

def _listed(words: list[str]) -> str:
    return " and ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


def user_words(user: User) -> str:
    """One user in a line: name, full name, administrator or not, whether a password is set; never the
    password itself."""
    words = [user.name + (f" ({user.full_name})" if user.full_name else ""),
             "administrator" if user.admin else "not an administrator",
             "password set" if user.sets_password else "no password"]
    if user.groups:
        words.append(f"groups {' '.join(user.groups)}")
    if user.ssh_authorized_keys:
        keys = len(user.ssh_authorized_keys)
        words.append(f"{keys} SSH key" + ("s" if keys > 1 else ""))
    if user.shell:
        words.append(f"shell {user.shell}")
    return ", ".join(words)


def identity_lines(system: System) -> list[str]:
    """The installed system's name, time, keyboard, language and users, in words: what is set, then what the
    image keeps."""
    settings = {"host name": system.hostname, "time zone": system.timezone, "keymap": system.keymap,
                "locale": system.locale}
    given = ", ".join(f"{what} {value}" for what, value in settings.items() if value)
    kept = [what for what, value in settings.items() if not value]
    lines = [given[:1].upper() + given[1:]] if given else []
    if kept:
        lines.append(f"The image's own {_listed(kept)}")
    return lines + ([f"User {user_words(u)}" for u in system.users] or ["No user besides root"])

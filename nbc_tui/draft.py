"""The plan as the TUI builds it, screen by screen: mutable, partial, and turned into a validated
InstallPlan (the same model_validate call the CLI and answer files use) only at the review screen."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from .backend.image.reference import absolute_local_ref
from .backend.plan import InstallPlan, Layout
from .backend.sizes import gib_up, short_size

TPM2_RECOMMENDED_PCRS: tuple[int, ...] = (7,)
"""PCR 7 (the Secure Boot state): what the encryption screen recommends."""


@dataclass
class PlanDraft:
    image_ref: str = ""
    staged_digest: str | None = None
    image_summary: str = ""
    """What the image screen's look-up found (OS, version, architecture, size, digest), for the review."""
    device: str | None = None
    serial: str | None = None
    """The chosen disk's serial, pinned in the plan so that the engine writes to no other disk."""
    image_file: Path | None = None
    image_size_gib: int = 35
    encrypt: bool = False
    """LUKS2 on root1, root2 and var."""
    passphrase: SecretStr | None = None
    tpm2: bool = False
    tpm2_pcrs: tuple[int, ...] = TPM2_RECOMMENDED_PCRS
    filesystem: str = "btrfs"
    bootloader: str = "auto"
    kernel_args: list[str] = field(default_factory=list)
    root_password: SecretStr | None = None
    esp_size: str = "2G"
    """The layout's sizes as typed (the layout dialog's fields): the ESP, each root slot, /var at least."""
    root_size: str = "12G"
    var_min_size: str = "4G"
    hostname: str = ""
    """The system screen's fields: "" leaves each to the image."""
    timezone: str = ""
    keymap: str = ""
    locale: str = ""
    user_name: str = ""
    """The one user the system screen makes ("": none)."""
    user_full_name: str = ""
    user_password: SecretStr | None = None
    """Typed twice on the system screen; None keeps a password file or hash of the answer file (or sets none)."""
    user_admin: bool = False
    image_time_zones: tuple[str, ...] = ()
    """What the image screen's look-up found the image ships (empty: none, or not known): the system screen's
    lists."""
    image_keymaps: tuple[str, ...] = ()
    console_keymap: str = ""
    """The keyboard the user switched this live machine's consoles to on the welcome screen ("": not switched):
    the keymap the system screen offers first."""
    live_defaults_offered: bool = False
    """Whether the live system's time zone and keymap were offered already (the system screen offers them once,
    so an emptied field stays empty; an answer file says what it wants itself)."""
    kept: dict[str, Any] = field(default_factory=dict)
    """Parts of a plan loaded from an answer file that no screen edits (a password file or hash, SSH keys,
    the after-install action, a passphrase file, the user's groups, shell and keys, more users): carried into
    the plan as they came."""

    @classmethod
    def from_plan(cls, plan: InstallPlan) -> PlanDraft:
        """A draft that starts where an answer file says (``nbc-tui --answers FILE``). Disk rules are
        not carried: the disk is chosen on the disk screen, and typing its name there is the consent."""
        t, enc, system = plan.target, plan.encryption, plan.system
        kept: dict[str, Any] = {
            "after": plan.after,
            "system": system.model_dump(include={"root_password_file", "root_password_hash",
                                                 "ssh_authorized_keys"}, exclude_defaults=True),
        }
        if enc is not None and enc.passphrase_file is not None:
            kept["encryption"] = {"passphrase_file": enc.passphrase_file, "recovery_key_file": enc.recovery_key_file}
        user, *more = system.users or (None,)
        kept["more_users"] = tuple(more)
        if user is not None:
            kept["user"] = user.model_dump(include={"password_file", "password_hash", "groups",
                                                    "ssh_authorized_keys", "shell"}, exclude_defaults=True)
        return cls(
            image_ref=plan.image.ref, staged_digest=plan.image.staged_digest,
            device=str(t.device) if t.device else None, serial=t.serial if t.device else None,
            image_file=t.image_file, image_size_gib=gib_up(t.image_size),
            encrypt=enc is not None, passphrase=enc.passphrase if enc else None,
            tpm2=bool(enc and enc.tpm2),
            tpm2_pcrs=enc.tpm2_pcrs if enc and enc.tpm2 else TPM2_RECOMMENDED_PCRS,
            filesystem=plan.layout.filesystem, bootloader=plan.boot.bootloader,
            kernel_args=list(plan.boot.kernel_args), root_password=system.root_password,
            esp_size=short_size(plan.layout.esp_size), root_size=short_size(plan.layout.root_size),
            var_min_size=short_size(plan.layout.var_min_size),
            hostname=system.hostname or "", timezone=system.timezone or "", keymap=system.keymap or "",
            locale=system.locale or "", user_name=user.name if user else "",
            user_full_name=user.full_name if user else "", user_password=user.password if user else None,
            user_admin=bool(user and user.admin), live_defaults_offered=True, kept=kept,
        )

    def to_plan(self) -> InstallPlan:
        # A chosen disk is pinned by its serial; the typed name on the review screen is the consent to wipe.
        target: dict[str, object] = (
            {"device": self.device, "serial": self.serial or None, "wipe": True} if self.device else
            {"image_file": self.image_file, "image_size": self.image_size_gib << 30, "overwrite": True})
        system: dict[str, Any] = dict(self.kept.get("system", {}))
        if self.root_password is not None:  # typed on the options screen: it replaces a file or a hash
            system = {k: v for k, v in system.items() if k == "ssh_authorized_keys"}
            system["root_password"] = self.root_password
        system |= self.identity()
        return InstallPlan.model_validate({
            "after": self.kept.get("after", "none") if self.device else "none",
            "image": {"ref": absolute_local_ref(self.image_ref, Path.cwd()), "staged_digest": self.staged_digest},
            "target": target,
            "layout": {"filesystem": self.filesystem, **self.layout_sizes()},
            "encryption": self._encryption(),
            "boot": {"bootloader": self.bootloader, "kernel_args": tuple(self.kernel_args)},
            "system": system,
        })

    def layout_sizes(self) -> dict[str, str]:
        return {"esp_size": self.esp_size, "root_size": self.root_size, "var_min_size": self.var_min_size}

    def layout(self) -> Layout:
        """The layout the sizes make (checked by the plan's own model when the dialog applied them)."""
        return Layout.model_validate({"filesystem": self.filesystem, **self.layout_sizes()})

    def identity(self) -> dict[str, Any]:
        """The plan's ``system`` keys the system screen fills: host name, time zone, keymap, locale, users."""
        settings = {"hostname": self.hostname, "timezone": self.timezone, "keymap": self.keymap,
                    "locale": self.locale}
        found: dict[str, Any] = {key: value for key, value in settings.items() if value}
        users = [*([self.user()] if self.user_name else []), *self.kept.get("more_users", ())]
        if users:
            found["users"] = users
        return found

    def user(self) -> dict[str, Any]:
        """The system screen's user; a typed password replaces the answer file's password file or hash."""
        kept = dict(self.kept.get("user", {}))
        if self.user_password is not None:
            kept = {k: v for k, v in kept.items() if k not in ("password_file", "password_hash")}
            kept["password"] = self.user_password
        return {**kept, "name": self.user_name, "full_name": self.user_full_name, "admin": self.user_admin}

    def _encryption(self) -> dict[str, Any] | None:
        if not self.encrypt:
            return None
        kept = self.kept.get("encryption", {})
        secret: dict[str, Any] = ({"passphrase": self.passphrase} if self.passphrase is not None
                                  else {"passphrase_file": kept.get("passphrase_file")})
        recovery_file = kept.get("recovery_key_file") if self.tpm2 else None
        recovery = {"recovery_key_file": recovery_file} if recovery_file else {}
        return {**secret, **recovery, "tpm2": self.tpm2, "tpm2_pcrs": self.tpm2_pcrs if self.tpm2 else ()}

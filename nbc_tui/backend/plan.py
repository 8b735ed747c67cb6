"""InstallPlan: everything that decides what happens to a disk, in one frozen, strict model.

The CLI flags, the answer file and the TUI all build one; the review screen, ``--dry-run`` and saved
answer files render the same plan, and the engine executes nothing else.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from .sizes import GiB, MiB, human, parse_size, short_size

Size = Annotated[int, BeforeValidator(lambda v: parse_size(v) if isinstance(v, str) else v)]

# nbc's defaults (reference §3.2); the minimums keep mkfs from failing on a toy layout.
DEFAULT_ESP_SIZE = 2 * GiB
DEFAULT_ROOT_SIZE = 12 * GiB
DEFAULT_VAR_MIN_SIZE = 4 * GiB
DEFAULT_IMAGE_FILE_SIZE = 35 * GiB
MIN_ESP_SIZE = 64 * MiB
MIN_ROOT_SIZE = 512 * MiB
MIN_VAR_SIZE = 256 * MiB
# GPT headers and 1 MiB alignment at both ends of the disk.
GPT_OVERHEAD = 2 * MiB
MIN_PASSPHRASE = 8

Filesystem = Literal["btrfs", "ext4"]
Bootloader = Literal["auto", "grub", "systemd-boot"]
SecureBootMode = Literal["auto", "require", "off"]
"""``require``: refuse an image that cannot boot with Secure Boot on; ``auto``: warn when this machine has it on
and the image cannot; ``off``: do not ask."""
AfterInstall = Literal["none", "reboot", "poweroff"]
# PCRs a TPM2 key may be bound to: 7 is the Secure Boot state; 0-23 exist on every TPM2.
Pcr = Annotated[int, Field(ge=0, le=23)]
STABLE_PCRS = (0, 1, 2, 3, 6, 7, 14)
"""The PCRs the key may be bound to. Enrolment seals to their values on this boot, the live medium's: these
measure the firmware, its settings, the Secure Boot keys and shim's MOK list, which the installed disk's boot
measures the same way. The others measure the boot loader, the partition table, GRUB's commands and files, the
kernel command line or the running system (4, 5, 8-13, 15): the installed disk's boot never matches the live
medium's, and every boot would ask for the passphrase."""


def pcr_problem(pcrs: tuple[int, ...]) -> str | None:
    """Why these PCRs cannot be bound at install, or None."""
    moving = [p for p in pcrs if p not in STABLE_PCRS]
    if not moving:
        return None
    listed = ", ".join(str(p) for p in moving)
    return (f"PCR {listed} {'is' if len(moving) == 1 else 'are'} measured differently when the installed disk "
            f"boots than now, on the live medium: the TPM2 would never unlock it. Bind to "
            f"{', '.join(str(p) for p in STABLE_PCRS)} only (7, the Secure Boot state, is the usual choice), or none")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class ImageSpec(_Strict):
    ref: str
    """The image: a registry reference (``quay.io/org/os:tag``), ``localhost/NAME`` (Podman or Docker),
    ``oci:PATH[:TAG]`` or ``oci-archive:FILE[:TAG]``. Recorded on the installed system for its updates."""
    staged_digest: str | None = None
    """Install offline from the staged-install cache entry with this digest (``ref`` is where it came from)."""
    cosign_key: Path | None = None
    """Require a key-based cosign signature by this public key (PEM, ECDSA) on a registry pull, instead of the
    signature policy. The installed system keeps trusting it for its updates."""
    insecure_skip_verify: bool = False
    """Do not check image signatures at all (a warning says so)."""
    signature_policy: Path | None = None
    """containers' policy.json to follow (default: /etc/containers/policy.json)."""
    registries_d: Path | None = None
    """containers' registries.d directory naming where GPG signatures are (default: /etc/containers/registries.d)."""

    @model_validator(mode="after")
    def _one_trust(self) -> ImageSpec:
        if self.cosign_key is not None and self.insecure_skip_verify:
            raise ValueError("cosign_key and insecure_skip_verify contradict each other: give one of them")
        return self


class DiskRule(_Strict):
    """One way to recognise the target disk: every field given must hold. Only eligible disks are ever
    considered (never the live medium, a mounted disk, or one too small for the layout)."""

    path: str | None = None
    """``/dev/sdb``, ``/dev/disk/by-id/NAME``, or just the by-id ``NAME``."""
    serial: str | None = None
    """The disk's serial number, exactly."""
    model: str | None = None
    """The disk's model; ``*`` and ``?`` match like in a shell (``Samsung*``)."""
    transport: str | None = None
    """How the disk is attached: nvme, sata, usb, virtio, scsi, mmc..."""
    min_size: Size | None = None
    """The smallest acceptable disk size (``"64G"``)."""
    max_size: Size | None = None
    """The largest acceptable disk size."""
    size: Literal["largest", "smallest"] | None = None
    """Among the disks that match the other fields, take the largest or the smallest."""

    @model_validator(mode="after")
    def _not_empty(self) -> DiskRule:
        if not self.model_fields_set:
            raise ValueError("an empty disk rule would match any disk: give at least one field")
        return self


class Target(_Strict):
    """Where the system goes: a whole disk (by path, or found by rules), or a disk-image file (sparse)."""

    device: Path | None = None
    """Block device of the whole disk, e.g. /dev/sdb or /dev/disk/by-id/... (all of it is erased)."""
    match: tuple[DiskRule, ...] = ()
    """Rules that find the disk on the machine, tried in order: the first rule that matches exactly one
    eligible disk picks it; a rule that matches two is an error (never a guess)."""
    serial: str | None = None
    """Pin: the disk must have this serial, or nothing is written."""
    wipe: bool = False
    """Consent to erase the whole disk; an unattended (headless) install refuses to run without it."""
    image_file: Path | None = None
    """A disk-image file to create and install into instead of a disk."""
    image_size: Size = DEFAULT_IMAGE_FILE_SIZE
    """Size of the disk-image file (sparse)."""
    overwrite: bool = False
    """Replace an existing disk-image file."""

    @model_validator(mode="after")
    def _one_target(self) -> Target:
        given = [self.device is not None, bool(self.match), self.image_file is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of a device, disk rules (match) or a disk-image file")
        if self.image_file is not None and self.serial is not None:
            raise ValueError("a serial pin applies to a disk, not to a disk-image file")
        return self

    @property
    def is_image_file(self) -> bool:
        return self.image_file is not None

    @property
    def is_resolved(self) -> bool:
        """A target the engine can run: a device path or an image file (rules are resolved first)."""
        return not self.match

    @property
    def path(self) -> Path:
        return self.device if self.device is not None else self.image_file  # type: ignore[return-value]


class Layout(_Strict):
    """nbc's GPT layout: p1 ESP, p2 root1, p3 root2, p4 var (the rest of the disk)."""

    filesystem: Filesystem = "btrfs"
    """Filesystem of root1, root2 and var."""
    esp_size: Size = Field(DEFAULT_ESP_SIZE, ge=MIN_ESP_SIZE)
    """Size of the EFI system partition (p1), which also holds the kernels."""
    root_size: Size = Field(DEFAULT_ROOT_SIZE, ge=MIN_ROOT_SIZE)
    """Size of each root slot (p2 root1, p3 root2)."""
    var_min_size: Size = Field(DEFAULT_VAR_MIN_SIZE, ge=MIN_VAR_SIZE)
    """Smallest acceptable /var (p4 takes the rest of the disk)."""

    @property
    def min_disk_size(self) -> int:
        return GPT_OVERHEAD + self.esp_size + 2 * self.root_size + self.var_min_size

    def var_size_on(self, disk_size: int) -> int:
        """What /var (p4, the rest of the disk) gets on a disk of ``disk_size`` bytes; below
        ``var_min_size`` (or negative) when the layout does not fit."""
        return disk_size - GPT_OVERHEAD - self.esp_size - 2 * self.root_size

    def describe(self) -> str:
        return (f"ESP {human(self.esp_size)}, root1 and root2 {human(self.root_size)} each, "
                f"var the rest (at least {human(self.var_min_size)}), {self.filesystem}")


def kernel_arg_problem(arg: str) -> str | None:
    """Why ``arg`` cannot be one kernel argument of a boot entry (None when it can): an empty one, or one with
    a control character (a newline would end the entry's line)."""
    if not arg.strip():
        return "an empty kernel argument was given"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in arg):
        return f"kernel argument {arg!r} contains a control character (such as a newline)"
    return None


def kernel_arg_quoting_problem(arg: str) -> str | None:
    """Why ``arg`` would not reach the kernel as the one argument it is given as (None when it does): the
    kernel splits at spaces outside double quotes, so a value with spaces is written ``name="a b"``, with its
    quotes in pairs. systemd-boot passes the line as it is; GRUB's entry gets the same argument (boot/grub)."""
    if arg.count('"') % 2:
        return f"kernel argument {arg!r} has an unpaired double quote"
    if any(c.isspace() for c in re.sub(r'"[^"]*"', "", arg)):
        return f'kernel argument {arg!r} has a space outside double quotes: write it as name="a b"'
    return None


def _kernel_args(values: tuple[str, ...]) -> tuple[str, ...]:
    for arg in values:
        if problem := kernel_arg_problem(arg):
            raise ValueError(f"{problem}: give each kernel argument as one line of printable text")
        if problem := kernel_arg_quoting_problem(arg):
            raise ValueError(problem)
    return values


class Boot(_Strict):
    bootloader: Bootloader = "auto"
    """auto picks systemd-boot when the image carries its EFI binary, else GRUB."""
    kernel_args: Annotated[tuple[str, ...], AfterValidator(_kernel_args)] = ()
    """Extra kernel arguments, appended last to the command line."""
    secure_boot: SecureBootMode = "auto"
    """require: refuse an image that cannot boot with Secure Boot on; auto: warn when this machine has it on and
    the image cannot (and prefer the image's signed GRUB); off: do not check."""


class Encryption(_Strict):
    """LUKS2 on root1, root2 and var (the ESP is never encrypted), optionally unlocked by the TPM2."""

    passphrase_file: Path | None = None
    """File holding the LUKS passphrase (trailing newlines are dropped); it is never logged."""
    passphrase: SecretStr | None = Field(default=None, exclude=True)
    """The passphrase itself (typed in the TUI, or read from stdin). Never serialised."""
    tpm2: bool = False
    """Also enrol the TPM2 so the disk unlocks by itself; the passphrase stays as a fallback."""
    tpm2_pcrs: tuple[Pcr, ...] = ()
    """PCRs the TPM2 key is bound to: () unlocks on any boot of this machine; (7,) only while the
    Secure Boot state (firmware, keys, shim) is unchanged."""
    recovery_key_file: Path | None = None
    """Where to write the recovery key generated with TPM2 (0600). The TUI shows it once instead."""

    @model_validator(mode="after")
    def _consistent(self) -> Encryption:
        if self.passphrase_file is not None and self.passphrase is not None:
            raise ValueError("give the passphrase either as a file or as a value, not both")
        if self.passphrase_file is None and self.passphrase is None:
            raise ValueError("encryption needs a passphrase: give passphrase_file")
        if self.passphrase is not None and len(self.passphrase.get_secret_value()) < MIN_PASSPHRASE:
            raise ValueError(f"the passphrase must be at least {MIN_PASSPHRASE} characters")
        if not self.tpm2 and (self.tpm2_pcrs or self.recovery_key_file is not None):
            raise ValueError("tpm2_pcrs and recovery_key_file need tpm2 = true")
        if len(set(self.tpm2_pcrs)) != len(self.tpm2_pcrs):
            raise ValueError("tpm2_pcrs lists a PCR twice")
        return self

    @field_validator("tpm2_pcrs")
    @classmethod
    def _stable_pcrs(cls, pcrs: tuple[int, ...]) -> tuple[int, ...]:
        if problem := pcr_problem(pcrs):
            raise ValueError(problem)
        return pcrs


# Identity: the syntax here; whether the image has the zone, keymap, locale, groups and tools is checked
# against the image before the wipe (steps/identity.py).
_HOST_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_ZONE_PART = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9_+.-]*$")
_KEYMAP = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_LOCALE = re.compile(r"^[A-Za-z]{1,8}(_[A-Za-z0-9]+)?(\.[A-Za-z0-9-]+)?(@[A-Za-z0-9]+)?$|^C(\.[A-Za-z0-9-]+)?$|^POSIX$")


def _hostname(value: str) -> str:
    if len(value) > 64 or not all(_HOST_LABEL.match(label) for label in value.split(".")):
        raise ValueError(f"{value!r} is not a valid host name: letters, digits and '-' (not first or last), "
                         "dot-separated labels, at most 64 characters")
    return value


def _timezone(value: str) -> str:
    if not all(_ZONE_PART.match(part) for part in value.split("/")):
        raise ValueError(f"{value!r} is not a time zone name such as Europe/Berlin or UTC")
    return value


def _keymap(value: str) -> str:
    if not _KEYMAP.match(value):
        raise ValueError(f"{value!r} is not a console keymap name such as us, de or fr-latin1")
    return value


def _locale(value: str) -> str:
    if not _LOCALE.match(value):
        raise ValueError(f"{value!r} is not a locale name such as en_US.UTF-8 or C.UTF-8")
    return value


def _user_name(value: str) -> str:
    if not _USER_NAME.match(value):
        raise ValueError(f"{value!r} is not a valid user name: lowercase letters, digits, '_' and '-', starting "
                         "with a letter or '_', at most 32 characters")
    if value == "root":
        raise ValueError("root exists already: its password is system.root_password_file")
    return value


def _crypt_hash(value: str) -> str:
    """A password given as a hash is written into /etc/shadow as it is: it must be one crypt(3) string, with
    nothing that would end its field or its line."""
    if not value.startswith("$"):
        raise ValueError("must be a crypt(3) hash such as $y$... or $6$... (make one with: openssl passwd -6)")
    if ":" in value or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("must be one crypt(3) hash, without ':', spaces or line breaks (the hash alone, not a "
                         "whole /etc/shadow line)")
    return value


CryptHash = Annotated[str, AfterValidator(_crypt_hash)]


def _one_line(value: str) -> str:
    if ":" in value or "\n" in value or "," in value:
        raise ValueError("may not contain ':', ',' or a line break")
    return value


class User(_Strict):
    """A person's account, made with the image's own ``useradd`` (its UID range, skeleton and shell rules)."""

    name: Annotated[str, AfterValidator(_user_name)]
    """The login name: lowercase letters, digits, ``_`` and ``-``."""
    full_name: Annotated[str, AfterValidator(_one_line)] = ""
    """The person's name (the GECOS field)."""
    password_file: Path | None = None
    """File holding the password (trailing newlines are dropped); it is never logged."""
    password_hash: CryptHash | None = None
    """The password as a crypt(3) hash (``$y$...``, ``$6$...``), set as it is."""
    password: SecretStr | None = Field(default=None, exclude=True)
    """The password itself (typed in the TUI). Never serialised: a saved plan refers to a file."""
    admin: bool = False
    """Member of the image's admin group: ``sudo`` (Debian, Ubuntu) or ``wheel`` (Fedora, Arch), whichever it has."""
    groups: tuple[Annotated[str, AfterValidator(_user_name)], ...] = ()
    """More groups the image has (``video``, ``audio``...)."""
    ssh_authorized_keys: tuple[str, ...] = ()
    """Public keys (one ``authorized_keys`` line each) that may log in as this user over SSH."""
    shell: str | None = None
    """The login shell, a path the image has (default: useradd's)."""

    @model_validator(mode="after")
    def _consistent(self) -> User:
        given = [self.password_file is not None, self.password_hash is not None, self.password is not None]
        if sum(given) > 1:
            raise ValueError(f"give {self.name}'s password one way only: a file, a hash or a value")
        if self.shell is not None and not self.shell.startswith("/"):
            raise ValueError(f"shell must be an absolute path such as /bin/bash, not {self.shell!r}")
        for key in self.ssh_authorized_keys:
            if "\n" in key or not key.strip():
                raise ValueError("each entry of ssh_authorized_keys is one non-empty line")
        return self

    @property
    def sets_password(self) -> bool:
        return any(v is not None for v in (self.password_file, self.password_hash, self.password))


class System(_Strict):
    hostname: Annotated[str, AfterValidator(_hostname)] | None = None
    """The machine's name (``/etc/hostname``)."""
    timezone: Annotated[str, AfterValidator(_timezone)] | None = None
    """A time zone the image ships (``Europe/Berlin``; ``/etc/localtime``)."""
    keymap: Annotated[str, AfterValidator(_keymap)] | None = None
    """The console keymap (``de``, ``fr-latin1``; ``/etc/vconsole.conf``), one the image ships."""
    locale: Annotated[str, AfterValidator(_locale)] | None = None
    """The system locale (``en_US.UTF-8``; ``/etc/locale.conf``), one the image has built."""
    users: tuple[User, ...] = ()
    """People's accounts (``[[system.users]]``)."""
    root_password_file: Path | None = None
    """File holding the root password (trailing newlines are dropped); it is never logged."""
    root_password_hash: CryptHash | None = None
    """The root password as a crypt(3) hash (``$y$...``, ``$6$...``), set as it is."""
    root_password: SecretStr | None = Field(default=None, exclude=True)
    """The root password itself (typed in the TUI). Never serialised: a saved plan refers to a file."""
    ssh_authorized_keys: tuple[str, ...] = ()
    """Public keys (one ``authorized_keys`` line each) that may log in as root over SSH."""

    @model_validator(mode="after")
    def _one_password(self) -> System:
        given = [self.root_password_file is not None, self.root_password_hash is not None,
                 self.root_password is not None]
        if sum(given) > 1:
            raise ValueError("give the root password one way only: a file, a hash or a value")
        for key in self.ssh_authorized_keys:
            if "\n" in key or not key.strip():
                raise ValueError("each entry of ssh_authorized_keys is one non-empty line")
        names = [u.name for u in self.users]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"users: {', '.join(twice)} given more than once")
        return self

    @property
    def sets_password(self) -> bool:
        return any(v is not None for v in (self.root_password_file, self.root_password_hash, self.root_password))

    @property
    def sets_identity(self) -> bool:
        """Whether a host name, time zone, keymap or locale is asked for (systemd-firstboot's part)."""
        return any(v is not None for v in (self.hostname, self.timezone, self.keymap, self.locale))


class InstallPlan(_Strict):
    version: Literal[1] = 1
    """The answer-file format version."""
    after: AfterInstall = "none"
    """What to do once the install succeeded: nothing, reboot or power off."""
    image: ImageSpec
    target: Target
    layout: Layout = Layout()
    encryption: Encryption | None = None
    """LUKS2 (and TPM2); absent means no encryption."""
    boot: Boot = Boot()
    system: System = System()

    @model_validator(mode="after")
    def _fits(self) -> InstallPlan:
        if self.target.is_image_file and self.after != "none":
            raise _plan_rule("after", f"after = {self.after!r} would {self.after} this machine, not the "
                             "disk-image file", "use after = 'none' with a disk-image file")
        if self.target.is_image_file and self.target.image_size < self.layout.min_disk_size:
            raise _plan_rule("target.image_size",
                             f"the disk-image file ({human(self.target.image_size)}) is smaller than the layout "
                             f"needs ({human(self.layout.min_disk_size)}: {self.layout.describe()})",
                             f"make it at least {short_size(self.layout.min_disk_size)}, or the layout smaller")
        return self

    def secrets(self) -> list[str | SecretStr]:
        """Every secret the plan itself holds (typed passwords and passphrase, password hashes), for a run's
        redactor: a crypt hash can be attacked offline, so it stays out of logs like the password."""
        system, enc = self.system, self.encryption
        found = [system.root_password, system.root_password_hash, enc.passphrase if enc else None]
        found += [value for user in system.users for value in (user.password, user.password_hash)]
        return [value for value in found if value is not None]


def _plan_rule(key: str, message: str, hint: str) -> PydanticCustomError:
    """A rule between sections, said about the key to change (``key``, dotted): pydantic would blame the whole
    plan, a place no answer-file line or form field stands for (see :func:`error_loc`)."""
    # pydantic fills {key} and {hint} from the context and has no escape for braces: these sentences have none.
    return PydanticCustomError("plan_rule", f"{message}: {hint}", {"key": key, "hint": hint})


# ---------------------------------------------------------------------------------------------------
# Validation errors in words (the CLI, the review screen and answer files say them the same way)


def error_text(err: ErrorDetails) -> str:
    """What one validation error says, without pydantic's "Value error, " in front of our own sentences; a
    size below its floor in bytes made readable ("at least 64.0 MB (64M)", not 67108864)."""
    floor = err.get("ctx", {}).get("ge")
    if err["type"] == "greater_than_equal" and str(err["loc"][-1]).endswith("_size") and isinstance(floor, int):
        return f"must be at least {human(floor)} ({short_size(floor)})"
    return str(err["msg"]).removeprefix("Value error, ")


def error_loc(err: ErrorDetails) -> tuple[int | str, ...]:
    """Where a validation error is: pydantic's place, or the key a rule between sections named (_plan_rule)."""
    if not err["loc"] and err["type"] == "plan_rule":
        return tuple(str(err.get("ctx", {}).get("key", "")).split("."))
    return tuple(err["loc"])


def validation_messages(exc: ValidationError) -> list[str]:
    """Each problem of a plan as one line: the key path, then what is wrong (``target: give exactly one of
    ...``)."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(part) for part in error_loc(err))
        lines.append(f"{where}: {error_text(err)}" if where else error_text(err))
    return lines

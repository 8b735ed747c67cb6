"""InstallPlan: everything that decides what happens to a disk, in one frozen, strict model.

The CLI flags, the answer file and the TUI all build one; the review screen, ``--dry-run`` and saved
answer files render the same plan, and the engine executes nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

from .sizes import GiB, MiB, human, parse_size

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

Filesystem = Literal["btrfs", "ext4"]
Bootloader = Literal["auto", "grub", "systemd-boot"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class ImageSpec(_Strict):
    ref: str
    """The image: a registry reference (``quay.io/org/os:tag``), ``localhost/NAME`` (Podman or Docker),
    ``oci:PATH[:TAG]`` or ``oci-archive:FILE[:TAG]``. Recorded on the installed system for its updates."""
    staged_digest: str | None = None
    """Install offline from the staged-install cache entry with this digest (``ref`` is where it came from)."""


class Target(_Strict):
    """Where the system goes: a whole disk, or a disk-image file (created sparse)."""

    device: Path | None = None
    """Block device of the whole disk, e.g. /dev/sdb or /dev/disk/by-id/... (all of it is erased)."""
    image_file: Path | None = None
    """A disk-image file to create and install into instead of a disk."""
    image_size: Size = DEFAULT_IMAGE_FILE_SIZE
    """Size of the disk-image file (sparse)."""
    overwrite: bool = False
    """Replace an existing disk-image file."""

    @model_validator(mode="after")
    def _one_target(self) -> Target:
        if (self.device is None) == (self.image_file is None):
            raise ValueError("give exactly one of a device or a disk-image file")
        return self

    @property
    def is_image_file(self) -> bool:
        return self.image_file is not None

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

    def describe(self) -> str:
        return (f"ESP {human(self.esp_size)}, root1 and root2 {human(self.root_size)} each, "
                f"var the rest (at least {human(self.var_min_size)}), {self.filesystem}")


class Boot(_Strict):
    bootloader: Bootloader = "auto"
    """auto picks systemd-boot when the image carries its EFI binary, else GRUB."""
    kernel_args: tuple[str, ...] = ()
    """Extra kernel arguments, appended last to the command line."""


class System(_Strict):
    root_password_file: Path | None = None
    """File holding the root password (trailing newlines are dropped); it is never logged."""
    root_password: SecretStr | None = Field(default=None, exclude=True)
    """The root password itself (typed in the TUI). Never serialised: a saved plan refers to a file."""

    @model_validator(mode="after")
    def _one_password(self) -> System:
        if self.root_password_file is not None and self.root_password is not None:
            raise ValueError("give the root password either as a file or as a value, not both")
        return self


class InstallPlan(_Strict):
    version: Literal[1] = 1
    image: ImageSpec
    target: Target
    layout: Layout = Layout()
    boot: Boot = Boot()
    system: System = System()

    @model_validator(mode="after")
    def _fits(self) -> InstallPlan:
        if self.target.is_image_file and self.target.image_size < self.layout.min_disk_size:
            raise ValueError(
                f"the disk-image file ({human(self.target.image_size)}) is smaller than the layout needs "
                f"({human(self.layout.min_disk_size)}: {self.layout.describe()})"
            )
        return self

"""The installed system's state: /var/lib/nbc/state/config.json, nbc's keys (reference §8.1), atomically.

Extra keys (ours) come after nbc's; nbc ignores keys it does not know.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict

from ..atomic import write_atomically

CONFIG_PATH = Path("var/lib/nbc/state/config.json")
LEGACY_CONFIG_PATH = Path("etc/nbc/config.json")


class EncryptionState(BaseModel):
    enabled: bool
    tpm2: bool
    root1_luks_uuid: str
    root2_luks_uuid: str
    var_luks_uuid: str


class SystemConfig(BaseModel):
    """Field order is nbc's key order."""

    model_config = ConfigDict(extra="allow")

    image_ref: str
    image_digest: str
    """The digest an update compares with the registry: the index digest for a multi-platform image."""
    device: str
    disk_id: str = ""
    install_date: str
    # nbc writes null for no kernel arguments and "" for a legacy ext4 install: read both.
    kernel_args: Annotated[list[str], BeforeValidator(lambda v: v or [])]
    bootloader_type: Literal["grub2", "systemd-boot"]
    filesystem_type: Annotated[Literal["ext4", "btrfs"], BeforeValidator(lambda v: v or "ext4")]
    encryption: EncryptionState | None = None
    # ours, after nbc's keys
    image_manifest_digest: str = ""
    """The platform manifest digest that was actually installed."""
    installed_by: str = ""
    boot_layout: str = "per-slot"
    """Kernel and initramfs live in /A and /B on the ESP (nbc keeps them at the ESP root)."""

    def to_json(self) -> str:
        data = self.model_dump(mode="json")
        if not self.disk_id:
            data.pop("disk_id")
        if self.encryption is None:
            data.pop("encryption")
        return json.dumps(data, indent=2)


def local_now_rfc3339() -> str:
    """nbc writes install_date in local time with its offset."""
    return datetime.now().astimezone().replace(microsecond=0).isoformat()


def write_system_config(root: Path, config: SystemConfig) -> Path:
    """Write config.json under ``root`` (the target root with var mounted), then read it back."""
    path = root / CONFIG_PATH
    write_atomically(path, config.to_json().encode())  # nbc writes no trailing newline
    SystemConfig.model_validate_json(path.read_bytes())
    return path


def read_system_config(root: Path = Path("/")) -> SystemConfig:
    """Primary path first; the legacy /etc/nbc/config.json when it is missing or unreadable (§8.2)."""
    primary, legacy = root / CONFIG_PATH, root / LEGACY_CONFIG_PATH
    try:
        return SystemConfig.model_validate_json(primary.read_bytes())
    except (OSError, ValueError):
        if legacy.exists():
            return SystemConfig.model_validate_json(legacy.read_bytes())
        raise

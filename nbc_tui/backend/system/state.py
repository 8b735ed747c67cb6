"""The installed system's state on the shared var partition, written atomically.

- ``config.json``: nbc's keys (reference §8.1), then ours (nbc ignores keys it does not know). It keeps nbc's
  meaning: the image of the slot that boots by default. An update does not switch it; the slot's first good
  boot does (system/boot_assessment.py copies the slot's ``slots/<slot>.config.json`` over it).
- ``slots/<slot>.json``: what each root slot holds (image, digests, kernel, kernel arguments, when and by
  what it was written), and ``slots/<slot>.config.json``, config.json as it is to be once that slot boots by
  default.
- ``/run/nbc-reboot-required``: nbc's marker of an update waiting for a reboot (tmpfs: a reboot clears it).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict

from ..atomic import write_atomically
from ..provenance import Verification
from .slots import Slot

STATE_DIR = Path("var/lib/nbc/state")
CONFIG_PATH = STATE_DIR / "config.json"
LEGACY_CONFIG_PATH = Path("etc/nbc/config.json")
SLOTS_DIR = STATE_DIR / "slots"
COSIGN_KEY_PATH = STATE_DIR / "cosign.pub"
"""Where an install keeps the key given by ``--cosign-key`` (on var: it outlives both slots)."""
REBOOT_MARKER = Path("/run/nbc-reboot-required")


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
    image_verification: Verification | None = None
    """Whether and by what the image of this config was verified (its signatures, trust/)."""
    cosign_key: str = ""
    """The cosign public key trusted at install (``--cosign-key``), kept on the system (COSIGN_KEY_PATH):
    updates require its signature unless told otherwise."""

    @property
    def digests(self) -> set[str]:
        """Every digest recorded for the image (the index's and the manifest's): what an image is matched by."""
        return {self.image_digest, self.image_manifest_digest} - {""}

    def to_json(self) -> str:
        data = self.model_dump(mode="json")
        if not self.disk_id:
            data.pop("disk_id")
        if self.encryption is None:
            data.pop("encryption")
        for optional in ("image_verification", "cosign_key"):
            if not data.get(optional):
                data.pop(optional)
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


# ---------------------------------------------------------------------------------------------------
# Per slot


class SlotRecord(BaseModel):
    """What one root slot holds, as the install or update that wrote it recorded."""

    model_config = ConfigDict(extra="allow")

    slot: Literal["A", "B"]
    image_ref: str
    image_digest: str
    """As in config.json: what an update compares with the registry."""
    image_manifest_digest: str = ""
    kernel: str = ""
    kernel_args: list[str] = []
    written: str
    """When the slot was written (local time with its offset, like install_date)."""
    written_by: str = ""
    operation: Literal["install", "update"] = "install"
    verification: Verification | None = None
    """Whether and by what the image was verified before it was written (trust/)."""

    @property
    def digests(self) -> set[str]:
        """As :attr:`SystemConfig.digests`."""
        return {self.image_digest, self.image_manifest_digest} - {""}


def write_slot_record(root: Path, record: SlotRecord, config: SystemConfig) -> None:
    """``slots/<slot>.json``, and the config.json that becomes current once the slot boots by default."""
    folder = root / SLOTS_DIR
    write_atomically(folder / f"{record.slot}.json", record.model_dump_json(indent=2).encode())
    write_atomically(folder / f"{record.slot}.config.json", config.to_json().encode())


def keep_record_of(root: Path, slot: Slot, config: SystemConfig) -> bool:
    """A record for ``slot`` made from ``config`` (config.json, which names the image of the slot that boots
    by default) when it has none: a disk nbc wrote keeps no per-slot records, and once config.json names the
    other slot's image (an update's good boot, a rollback), the one of ``slot`` would be known nowhere.
    Returns whether one was written."""
    if read_slot_record(root, slot) is not None:
        return False
    write_slot_record(root, SlotRecord(slot=slot.value, image_ref=config.image_ref, image_digest=config.image_digest,
                                       image_manifest_digest=config.image_manifest_digest,
                                       kernel_args=config.kernel_args, written=config.install_date,
                                       written_by=config.installed_by or "nbc"), config)
    return True


def forget_slot(root: Path, slot: Slot) -> None:
    """The slot's record and config go before the slot is written again."""
    for name in (f"{slot.value}.json", f"{slot.value}.config.json"):
        (root / SLOTS_DIR / name).unlink(missing_ok=True)


def read_slot_record(root: Path, slot: Slot) -> SlotRecord | None:
    """The slot's record, or None when there is none (never written by nbc-tui, or unreadable)."""
    try:
        return SlotRecord.model_validate_json((root / SLOTS_DIR / f"{slot.value}.json").read_bytes())
    except (OSError, ValueError):
        return None


def slot_config(root: Path, slot: Slot) -> SystemConfig | None:
    """config.json as it is to be while ``slot`` boots by default."""
    try:
        return SystemConfig.model_validate_json((root / SLOTS_DIR / f"{slot.value}.config.json").read_bytes())
    except (OSError, ValueError):
        return None


class RebootMarker(BaseModel):
    """nbc's /run/nbc-reboot-required (reference §8.3)."""

    pending_image_ref: str
    pending_image_digest: str
    update_time: str
    target_partition: str


def write_reboot_marker(marker: RebootMarker, path: Path = REBOOT_MARKER) -> None:
    write_atomically(path, marker.model_dump_json(indent=2).encode())


def read_reboot_marker(path: Path = REBOOT_MARKER) -> RebootMarker | None:
    try:
        return RebootMarker.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
        return None

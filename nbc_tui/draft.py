"""The plan as the TUI builds it, screen by screen: mutable, partial, and turned into a validated
InstallPlan (the same model_validate call the CLI and answer files use) only at the review screen."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from .backend.plan import InstallPlan

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
    root_size: str = "12G"
    var_min_size: str = "4G"

    def to_plan(self) -> InstallPlan:
        # A chosen disk is pinned by its serial; the typed name on the review screen is the consent to wipe.
        target: dict[str, object] = (
            {"device": self.device, "serial": self.serial or None, "wipe": True} if self.device else
            {"image_file": self.image_file, "image_size": self.image_size_gib << 30, "overwrite": True})
        return InstallPlan.model_validate({
            "image": {"ref": self.image_ref, "staged_digest": self.staged_digest},
            "target": target,
            "layout": {"filesystem": self.filesystem, "esp_size": self.esp_size, "root_size": self.root_size,
                       "var_min_size": self.var_min_size},
            "encryption": self._encryption(),
            "boot": {"bootloader": self.bootloader, "kernel_args": tuple(self.kernel_args)},
            "system": {"root_password": self.root_password},
        })

    def _encryption(self) -> dict[str, Any] | None:
        if not self.encrypt:
            return None
        return {"passphrase": self.passphrase, "tpm2": self.tpm2,
                "tpm2_pcrs": self.tpm2_pcrs if self.tpm2 else ()}

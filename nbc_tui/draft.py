"""The plan as the TUI builds it, screen by screen: mutable, partial, and turned into a validated
InstallPlan (the same model_validate call the CLI and answer files use) only at the review screen."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from .backend.plan import InstallPlan


@dataclass
class PlanDraft:
    image_ref: str = ""
    staged_digest: str | None = None
    image_summary: str = ""
    """What the image screen's look-up found (OS, version, architecture, size, digest), for the review."""
    device: str | None = None
    image_file: Path | None = None
    image_size_gib: int = 35
    filesystem: str = "btrfs"
    bootloader: str = "auto"
    kernel_args: list[str] = field(default_factory=list)
    root_password: SecretStr | None = None
    esp_size: str = "2G"
    root_size: str = "12G"
    var_min_size: str = "4G"

    def to_plan(self) -> InstallPlan:
        target: dict[str, object] = (
            {"device": self.device} if self.device else
            {"image_file": self.image_file, "image_size": self.image_size_gib << 30, "overwrite": True})
        return InstallPlan.model_validate({
            "image": {"ref": self.image_ref, "staged_digest": self.staged_digest},
            "target": target,
            "layout": {"filesystem": self.filesystem, "esp_size": self.esp_size, "root_size": self.root_size,
                       "var_min_size": self.var_min_size},
            "boot": {"bootloader": self.bootloader, "kernel_args": tuple(self.kernel_args)},
            "system": {"root_password": self.root_password},
        })

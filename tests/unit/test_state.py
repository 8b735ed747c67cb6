from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbc_tui.backend.system.state import SystemConfig, read_system_config, write_system_config


def config(**kw) -> SystemConfig:
    base = dict(image_ref="oci:/x:latest", image_digest="sha256:" + "a" * 64, device="/dev/sdz",
                install_date="2026-11-29T10:00:00+01:00", kernel_args=["console=ttyS0"],
                bootloader_type="grub2", filesystem_type="btrfs")
    return SystemConfig(**{**base, **kw})


def test_written_with_nbcs_keys_in_order(tmp_path: Path) -> None:
    path = write_system_config(tmp_path, config())
    raw = path.read_text()
    assert path == tmp_path / "var/lib/nbc/state/config.json"
    assert not raw.endswith("\n") and raw.startswith('{\n  "image_ref"')
    assert list(json.loads(raw)) == ["image_ref", "image_digest", "device", "install_date", "kernel_args",
                                     "bootloader_type", "filesystem_type", "image_manifest_digest",
                                     "installed_by", "boot_layout"]
    assert path.stat().st_mode & 0o777 == 0o644
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


def test_disk_id_and_encryption_present_when_set(tmp_path: Path) -> None:
    enc = dict(enabled=True, tpm2=False, root1_luks_uuid="1", root2_luks_uuid="2", var_luks_uuid="3")
    data = json.loads(write_system_config(tmp_path, config(disk_id="nvme-X", encryption=enc)).read_text())
    assert list(data)[3] == "disk_id" and data["encryption"]["var_luks_uuid"] == "3"


def test_reads_legacy_when_primary_is_corrupt(tmp_path: Path) -> None:
    (tmp_path / "var/lib/nbc/state").mkdir(parents=True)
    (tmp_path / "var/lib/nbc/state/config.json").write_text("{corrupt")
    (tmp_path / "etc/nbc").mkdir(parents=True)
    (tmp_path / "etc/nbc/config.json").write_text(config(device="/dev/legacy").to_json())
    assert read_system_config(tmp_path).device == "/dev/legacy"
    (tmp_path / "etc/nbc/config.json").unlink()
    with pytest.raises(ValueError):
        read_system_config(tmp_path)


def test_reads_configs_written_by_nbc(tmp_path: Path) -> None:
    nbc_written = {"image_ref": "ghcr.io/frostyard/snow:latest", "image_digest": "sha256:ab", "device": "/dev/vda",
                   "install_date": "2026-07-01T12:00:00+02:00", "kernel_args": None,
                   "bootloader_type": "systemd-boot", "filesystem_type": ""}
    (tmp_path / "var/lib/nbc/state").mkdir(parents=True)
    (tmp_path / "var/lib/nbc/state/config.json").write_text(json.dumps(nbc_written))
    cfg = read_system_config(tmp_path)
    assert cfg.kernel_args == [] and cfg.filesystem_type == "ext4" and cfg.disk_id == ""

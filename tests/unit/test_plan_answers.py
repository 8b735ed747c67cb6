"""The plan fields answer files rely on: disk rules, the serial pin, consent, encryption, the root password,
SSH keys and the after-install action each refuse what makes no sense."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from nbc_tui.backend.disks.rules import describe_rule
from nbc_tui.backend.plan import DiskRule, Encryption, InstallPlan, System, Target

SMALL = {"esp_size": "100M", "root_size": "1G", "var_min_size": "256M"}


def test_an_empty_disk_rule_would_match_anything() -> None:
    with pytest.raises(ValidationError, match="empty disk rule"):
        DiskRule()
    assert describe_rule(DiskRule(size="largest")) == "size=largest"
    assert describe_rule(DiskRule(transport="nvme", min_size="200G")) == "transport=nvme, min_size=200.0 GB"


def test_rules_are_a_target_that_still_needs_resolving() -> None:
    target = Target(match=(DiskRule(transport="nvme"),), wipe=True)
    assert not target.is_resolved and not target.is_image_file
    assert Target(device=Path("/dev/sdz")).is_resolved
    with pytest.raises(ValidationError, match="exactly one"):
        Target(device=Path("/dev/sdz"), match=(DiskRule(serial="x"),))


def test_consent_defaults_to_no() -> None:
    assert Target(device=Path("/dev/sdz")).wipe is False


def test_a_serial_pin_is_for_disks() -> None:
    with pytest.raises(ValidationError, match="serial pin applies to a disk"):
        Target(image_file=Path("/tmp/x.img"), serial="S1")


def test_after_reboot_is_for_disks_only() -> None:
    with pytest.raises(ValidationError, match="not the disk-image file"):
        InstallPlan(image={"ref": "x"}, target={"image_file": "/tmp/x.img", "image_size": "3G"}, layout=SMALL,
                    after="reboot")
    plan = InstallPlan(image={"ref": "x"}, target={"device": "/dev/sdz", "wipe": True}, after="poweroff")
    assert plan.after == "poweroff"


def test_encryption_needs_one_passphrase_and_consistent_tpm_settings() -> None:
    with pytest.raises(ValidationError, match="needs a passphrase"):
        Encryption()
    with pytest.raises(ValidationError, match="either as a file or as a value"):
        Encryption(passphrase_file=Path("/p"), passphrase=SecretStr("long-enough"))
    with pytest.raises(ValidationError, match="at least 8"):
        Encryption(passphrase=SecretStr("short"))
    with pytest.raises(ValidationError, match="need tpm2 = true"):
        Encryption(passphrase_file=Path("/p"), tpm2_pcrs=(7,))
    with pytest.raises(ValidationError, match="twice"):
        Encryption(passphrase_file=Path("/p"), tpm2=True, tpm2_pcrs=(7, 7))
    with pytest.raises(ValidationError):
        Encryption(passphrase_file=Path("/p"), tpm2=True, tpm2_pcrs=(24,))


def test_typed_secrets_are_never_serialised() -> None:
    enc = Encryption(passphrase=SecretStr("Typed-Passphrase"))
    system = System(root_password=SecretStr("Typed-Root"))
    assert "Typed" not in enc.model_dump_json() + system.model_dump_json() + repr(enc) + repr(system)


def test_root_password_one_way_and_a_real_hash() -> None:
    with pytest.raises(ValidationError, match="one way only"):
        System(root_password_file=Path("/p"), root_password_hash="$6$x$y")
    with pytest.raises(ValidationError, match="crypt"):
        System(root_password_hash="plain-text")
    assert System(root_password_hash="$y$j9T$abc").sets_password
    assert not System().sets_password


def test_ssh_keys_are_single_lines() -> None:
    with pytest.raises(ValidationError, match="one non-empty line"):
        System(ssh_authorized_keys=("ssh-ed25519 AAAA a@b\nssh-rsa BBBB c@d",))
    with pytest.raises(ValidationError, match="one non-empty line"):
        System(ssh_authorized_keys=("  ",))

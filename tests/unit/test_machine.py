"""What this machine offers (the survey, the tools an install needs, the live system, the TPM probe) and the
reboot or power-off after an install, in a dry run."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from nbc_tui.backend import machine
from nbc_tui.backend.machine import POWER_DRY_RUN_ENV, Severity, needed_tools, on_live_system, power, survey_machine
from nbc_tui.backend.plan import Encryption, InstallPlan
from nbc_tui.backend.storage.tpm import MIN_SYSTEMD, TPM_ENV, systemd_version, tpm_present


def test_the_tools_follow_the_plan() -> None:
    plain = InstallPlan.model_validate({"image": {"ref": "oci:/x"}, "target": {"image_file": "/tmp/d.img"},
                                        "layout": {"filesystem": "ext4"}})
    assert "mkfs.ext4" in needed_tools(plain) and "mkfs.btrfs" not in needed_tools(plain)
    assert "cryptsetup" not in needed_tools(plain) and "openssl" not in needed_tools(plain)
    enc = plain.model_copy(update={"encryption": Encryption(passphrase_file=Path("/p"), tpm2=True)})
    assert {"cryptsetup", "systemd-cryptenroll"} <= set(needed_tools(enc))
    assert {"mkfs.ext4", "mkfs.btrfs"} <= set(needed_tools(None))  # before a plan: either filesystem


def test_one_tpm_probe_for_screens_and_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TPM_ENV, raising=False)
    assert not tpm_present((tmp_path / "tpmrm0",))
    (tmp_path / "tpmrm0").touch()
    assert tpm_present((tmp_path / "tpmrm0",))
    monkeypatch.setenv(TPM_ENV, "0")
    assert not tpm_present((tmp_path / "tpmrm0",))
    checks = {c.key: c for c in survey_machine(efi_dir=tmp_path / "no-efi", tpm_device=tmp_path / "tpmrm0")}
    assert checks["tpm"].severity is Severity.NOTICE  # the switch wins over the device node, in the survey too
    monkeypatch.setenv(TPM_ENV, "1")
    assert tpm_present((tmp_path / "none",))


def test_the_live_system_is_known_by_its_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(machine.ENV_LIVE_MARKER, str(tmp_path / "nbc-tui-live"))
    assert not on_live_system()
    (tmp_path / "nbc-tui-live").write_text("NBC_TUI_LIVE_BUILD=test\n")
    assert on_live_system()


def test_power_in_a_dry_run_is_announced_and_logged_not_done(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    said: list[str] = []
    caplog.set_level(logging.INFO, logger="nbc_tui")
    power("reboot", dry_run=True, announce=said.append)
    assert said == ["Would run now: systemctl reboot (dry run)"]
    assert "dry-run, not running: systemctl reboot" in caplog.text
    monkeypatch.setenv(POWER_DRY_RUN_ENV, "1")
    power("poweroff", announce=said.append)  # the test switch: no dry run asked, still not done
    assert said[-1] == "Would run now: systemctl poweroff (dry run)"


def test_the_survey_says_whether_secure_boot_is_on(tmp_path: Path) -> None:
    efi = tmp_path / "efi"
    (efi / "efivars").mkdir(parents=True)
    assert "secure-boot" not in {c.key for c in survey_machine(efi_dir=tmp_path / "no-efi")}
    off = {c.key: c for c in survey_machine(efi_dir=efi)}["secure-boot"]
    assert off.severity is Severity.OK and off.text == "Secure Boot is off: any image boots here."
    (efi / "efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c").write_bytes(b"\x06\x00\x00\x00\x01")
    on = {c.key: c for c in survey_machine(efi_dir=efi)}["secure-boot"]
    assert on.severity is Severity.NOTICE and on.text.startswith("Secure Boot is on: the installed system starts")


def test_the_systemd_version_systemd_cryptenroll_reports() -> None:
    assert systemd_version("systemd 252 (252.30-1~deb12u2)\n+PAM +AUDIT\n") == 252
    assert systemd_version("systemd 249 (249.11-0ubuntu3.12)") == 249 < MIN_SYSTEMD
    assert systemd_version("") is None

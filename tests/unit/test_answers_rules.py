"""Disk rules resolved over a fake machine (NVMe, SATA, USB disks, a live medium, a mounted disk): the first
rule matching exactly one eligible disk wins, two is an error, none lists the eligible disks."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbc_tui.backend.disks.rules import SHOW_LOOP_ENV, loops_wanted, resolve_target, rule_matches
from nbc_tui.backend.errors import InputError
from nbc_tui.backend.plan import DiskRule, ImageSpec, InstallPlan, Target
from nbc_tui.backend.sizes import GiB
from tests.support.fake_machine import ATA, ATA2, NVME, USB, FakeMachine

NVME2 = "devices/pci0000:00/0000:00:1d.1/0000:3e:00.0/nvme/nvme1"


@pytest.fixture
def machine(tmp_path: Path) -> FakeMachine:
    m = FakeMachine(tmp_path / "machine")
    m.disk("vda", "254:0", 40 * GiB, devpath="devices/pci0000:00/0000:00:02.0/virtio1")
    m.mount("254:0", "/", "/dev/root")  # the running system
    m.disk("nvme0n1", "259:0", 512 * GiB, devpath=NVME, model="WD SN850", serial="WD-NVME-512")
    m.disk("nvme1n1", "259:1", 1024 * GiB, devpath=NVME2, model="Samsung SSD 990 PRO", serial="S-NVME-1T")
    m.disk("sda", "8:0", 256 * GiB, devpath=ATA, model="Samsung SSD 870", serial="S-SATA-256")
    m.disk("sdb", "8:16", 256 * GiB, devpath=ATA2, model="Crucial MX500", serial="C-SATA-256")
    m.disk("sdc", "8:32", 64 * GiB, devpath=USB, model="Flash Drive", serial="USB-LIVE", removable=True)
    m.partition("sdc", 1, "8:33", 2 * GiB)
    m.mount("8:33", "/run/live/medium", "/dev/sdc1", "iso9660")  # the live medium
    m.udev("8:0", ["S:disk/by-id/ata-Samsung_SSD_870_S-SATA-256"])
    return m


def plan(*rules: DiskRule, serial: str | None = None) -> InstallPlan:
    return InstallPlan(image=ImageSpec(ref="oci:/x"), target=Target(match=rules, serial=serial, wipe=True))


def resolve(machine: FakeMachine, *rules: DiskRule, serial: str | None = None):
    return resolve_target(plan(*rules, serial=serial), include_loop=False, view=machine.view)


def test_first_rule_matching_one_disk_wins_and_pins_its_serial(machine: FakeMachine) -> None:
    got = resolve(machine, DiskRule(transport="usb"), DiskRule(model="samsung ssd 9*"), DiskRule(transport="sata"))
    assert got.rule == 1 and got.disk and got.disk.device == "/dev/nvme1n1"
    target = got.plan.target
    assert (target.device, target.serial, target.wipe, target.match) == (Path("/dev/nvme1n1"), "S-NVME-1T", True, ())
    assert target.is_resolved


def test_largest_and_smallest(machine: FakeMachine) -> None:
    assert resolve(machine, DiskRule(transport="nvme", size="largest")).disk.name == "nvme1n1"  # type: ignore[union-attr]
    assert resolve(machine, DiskRule(transport="nvme", size="smallest")).disk.name == "nvme0n1"  # type: ignore[union-attr]
    with pytest.raises(InputError, match="matches 2 disks") as info:  # two of the same size: no guess
        resolve(machine, DiskRule(transport="sata", size="largest"))
    assert info.value.details["loc"] == ["target", "match", 0]


def test_a_rule_matching_two_is_an_error_not_a_fallthrough(machine: FakeMachine) -> None:
    with pytest.raises(InputError) as info:
        resolve(machine, DiskRule(transport="nvme"), DiskRule(serial="S-SATA-256"))
    message = info.value.message
    assert "disk rule 0 (transport=nvme) matches 2 disks" in message
    assert "/dev/nvme0n1 (WD SN850, serial WD-NVME-512" in message and "/dev/nvme1n1" in message
    assert "serial" in (info.value.hint or "")


def test_paths_by_device_by_id_and_bare_name(machine: FakeMachine) -> None:
    for path in ("/dev/sda", "/dev/disk/by-id/ata-Samsung_SSD_870_S-SATA-256", "ata-Samsung_SSD_870_S-SATA-256"):
        assert resolve(machine, DiskRule(path=path)).disk.device == "/dev/sda"  # type: ignore[union-attr]


def test_sizes_bound_the_candidates(machine: FakeMachine) -> None:
    got = resolve(machine, DiskRule(min_size=600 * GiB))
    assert got.disk.name == "nvme1n1"  # type: ignore[union-attr]
    got = resolve(machine, DiskRule(transport="nvme", max_size=600 * GiB))
    assert got.disk.name == "nvme0n1"  # type: ignore[union-attr]


def test_the_live_medium_and_the_running_system_are_never_matched(machine: FakeMachine) -> None:
    with pytest.raises(InputError) as info:
        resolve(machine, DiskRule(transport="usb"), DiskRule(transport="virtio"))
    message, hint = info.value.message, info.value.hint or ""
    assert message.startswith("no disk rule matches an eligible disk")
    assert ("/dev/sdc (Flash Drive, serial USB-LIVE, 64.0 GB, usb, removable) matches rule 0 but cannot be used"
            in message)
    assert "live medium" in message and "running system" in message
    assert hint.startswith("eligible disks here (loop devices count only with NBC_TUI_SHOW_LOOP=1): /dev/nvme0n1")
    assert "/dev/sdc" not in hint and "/dev/vda" not in hint
    assert info.value.details["loc"] == ["target", "match"]


def test_a_disk_too_small_for_the_layout_is_not_a_candidate(machine: FakeMachine) -> None:
    machine.disk("sdd", "8:48", 16 * GiB, devpath="devices/pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0",
                 model="Tiny", serial="T1")
    with pytest.raises(InputError, match=r"/dev/sdd .* matches rule 0 but cannot be used: .*too small"):
        resolve(machine, DiskRule(serial="T1"))


def test_serial_pin_must_match(machine: FakeMachine) -> None:
    with pytest.raises(InputError, match="has serial WD-NVME-512, but the plan is pinned to serial OTHER") as info:
        resolve(machine, DiskRule(model="WD*"), serial="OTHER")
    assert info.value.details["loc"] == ["target", "serial"]
    assert resolve(machine, DiskRule(model="WD*"), serial="WD-NVME-512").disk.name == "nvme0n1"  # type: ignore[union-attr]


def test_loop_devices_only_when_asked(machine: FakeMachine, monkeypatch: pytest.MonkeyPatch) -> None:
    machine.loop(3, 64 * GiB, "/srv/disk.img")
    monkeypatch.delenv(SHOW_LOOP_ENV, raising=False)
    assert not loops_wanted()
    with pytest.raises(InputError, match="no disk rule matches"):
        resolve_target(plan(DiskRule(transport="loop")), view=machine.view)
    monkeypatch.setenv(SHOW_LOOP_ENV, "1")
    assert resolve_target(plan(DiskRule(transport="loop")), view=machine.view).disk.name == "loop3"  # type: ignore[union-attr]


def test_rule_matches_model_glob_case_insensitively(machine: FakeMachine) -> None:
    from nbc_tui.backend.disks import list_disks

    disks = {d.name: d for d in list_disks(view=machine.view)}
    assert rule_matches(DiskRule(model="*870"), disks["sda"])
    assert rule_matches(DiskRule(model="SAMSUNG SSD ???"), disks["sda"])
    assert not rule_matches(DiskRule(model="Samsung"), disks["sda"])
    assert rule_matches(DiskRule(model="*"), disks["vda"])  # a disk without a model is an empty model

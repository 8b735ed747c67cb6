"""The Slot type (A = p2 root1, B = p3 root2) and booted_slot(), found by the device of / on fake machines: a
plain partition, a LUKS mapper, btrfs's anonymous device numbers, and a live system that is no slot."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbc_tui.backend.disks import booted_slot
from nbc_tui.backend.sizes import GiB
from nbc_tui.backend.system.slots import ENCRYPTED_ROLES, MAPPER_NAMES, Slot
from tests.support.fake_machine import VIRTUAL, FakeMachine


def test_a_slot_is_one_type_for_every_spelling() -> None:
    assert [(s.value, s.partition, s.role, s.mapper, s.esp_dir) for s in Slot] == [
        ("A", 2, "root1", "root1", "A"), ("B", 3, "root2", "root2", "B")]
    assert Slot.A.other is Slot.B and Slot.B.other is Slot.A
    assert Slot.of_role("root2") is Slot.B
    with pytest.raises(ValueError, match="not a root slot"):
        Slot.of_role("var")
    assert Slot.B.kernel_paths("6.1.0-18-amd64") == ("B/vmlinuz-6.1.0-18-amd64", "B/initramfs-6.1.0-18-amd64.img")
    assert ENCRYPTED_ROLES == ("root1", "root2", "var") and {r: r for r in ENCRYPTED_ROLES} == MAPPER_NAMES


def nbc_disk(tmp_path: Path) -> FakeMachine:
    """vda with nbc's four partitions (vda1..vda4 as 252:1..252:4)."""
    m = FakeMachine(tmp_path)
    m.disk("vda", "252:0", 64 * GiB, devpath=VIRTUAL)
    for number in range(1, 5):
        m.partition("vda", number, f"252:{number}", GiB)
    return m


@pytest.mark.parametrize(("partition", "slot"), [(2, Slot.A), (3, Slot.B)])
def test_a_plain_root_is_found_by_its_partition_number(tmp_path: Path, partition: int, slot: Slot) -> None:
    m = nbc_disk(tmp_path)
    m.mount(f"252:{partition}", "/", f"/dev/vda{partition}")
    m.mount("252:4", "/var", "/dev/vda4")
    assert booted_slot(view=m.view) is slot


def test_btrfs_anonymous_device_numbers_are_seen_through_the_mount_source(tmp_path: Path) -> None:
    m = nbc_disk(tmp_path)
    m.mount("0:31", "/", "/dev/vda3", fstype="btrfs")  # btrfs reports an anonymous device in mountinfo
    assert booted_slot(view=m.view) is Slot.B


@pytest.mark.parametrize(("mapper", "slot"), [("root1", Slot.A), ("root2", Slot.B)])
def test_an_encrypted_root_is_found_by_its_mapper_name(tmp_path: Path, mapper: str, slot: Slot) -> None:
    m = nbc_disk(tmp_path)
    # The mapper's own partition is deliberately the other slot's: the name decides, as nbc names mappers.
    m.stack("dm-0", "253:0", ["vda3" if slot is Slot.A else "vda2"], dm_name=mapper, dm_uuid="CRYPT-LUKS2-x")
    m.mount("253:0", "/", f"/dev/mapper/{mapper}")
    assert booted_slot(view=m.view) is slot


def test_a_system_not_on_a_slot_has_no_booted_slot(tmp_path: Path) -> None:
    m = nbc_disk(tmp_path)
    m.mount("0:27", "/", "overlay", fstype="overlay")  # a live ISO's root
    m.mount("252:1", "/boot/efi", "/dev/vda1", fstype="vfat")
    assert booted_slot(view=m.view) is None
    other = nbc_disk(tmp_path / "other")
    other.stack("dm-0", "253:0", ["vda2"], dm_name="cryptroot", dm_uuid="CRYPT-LUKS2-x")
    other.mount("253:0", "/", "/dev/mapper/cryptroot")
    assert booted_slot(view=other.view) is None  # a LUKS root that is not nbc's

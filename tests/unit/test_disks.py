"""Disk discovery and eligibility over a fake sysfs/proc/dev tree (cases this machine cannot create:
SATA/NVMe/USB disks, partitions, device-mapper and md holders, a live medium)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from nbc_tui.backend.disks import (
    Disk,
    Ineligible,
    Partition,
    SystemView,
    disk_id,
    identity_changed,
    list_disks,
    live_medium_disks,
    partition_name,
    refusals,
    resolve_disk,
    running_system_disks,
    split_partition_name,
)
from nbc_tui.backend.errors import InputError
from nbc_tui.backend.sizes import GiB, MiB
from nbc_tui.commands.disks_cmd import disk_json, disk_text
from tests.support.fake_machine import ATA2, NVME, USB, VIRTUAL, FakeMachine

MIN = 30 * GiB


@pytest.fixture
def fake(tmp_path: Path) -> FakeMachine:
    m = FakeMachine(tmp_path / "machine")
    m.disk("vda", "254:0", 40 * GiB, devpath="devices/pci0000:00/0000:00:02.0/virtio1")
    m.mount("254:0", "/", "/dev/root")  # the running system, named as the kernel names it
    return m


def get(fake: FakeMachine, name: str, *, include_loop: bool = True) -> Disk:
    found = {d.name: d for d in list_disks(include_loop=include_loop, view=fake.view)}
    return found[name]


def reasons(fake: FakeMachine, name: str, min_size: int = MIN) -> list[Ineligible]:
    return [r.reason for r in refusals(get(fake, name), min_size=min_size, view=fake.view)]


def messages(fake: FakeMachine, name: str, min_size: int = MIN) -> list[str]:
    return [r.message for r in refusals(get(fake, name), min_size=min_size, view=fake.view)]


# --- names ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), [
    ("sda1", ("sda", 1)),
    ("sdab12", ("sdab", 12)),
    ("vdb3", ("vdb", 3)),
    ("xvda2", ("xvda", 2)),
    ("hdc1", ("hdc", 1)),
    ("nvme0n1p2", ("nvme0n1", 2)),
    ("nvme10n2p15", ("nvme10n2", 15)),
    ("mmcblk0p1", ("mmcblk0", 1)),
    ("loop0p3", ("loop0", 3)),
    ("md127p1", ("md127", 1)),
    ("sda", None),
    ("nvme0n1", None),
    ("mmcblk0", None),
    ("mmcblk0boot0", None),
    ("loop1", None),
    ("loop12", None),
    ("sr0", None),
    ("dm-0", None),
    ("zram0", None),
    ("sda0", None),
])
def test_split_partition_name(name: str, expected: tuple[str, int] | None) -> None:
    assert split_partition_name(name) == expected


@pytest.mark.parametrize(("disk", "number", "expected"), [
    ("sda", 1, "sda1"), ("vdb", 4, "vdb4"), ("nvme0n1", 2, "nvme0n1p2"), ("mmcblk0", 1, "mmcblk0p1"),
    ("loop7", 3, "loop7p3"), ("md0", 1, "md0p1"),
])
def test_partition_name_round_trips(disk: str, number: int, expected: str) -> None:
    assert partition_name(disk, number) == expected
    assert split_partition_name(expected) == (disk, number)


# --- discovery --------------------------------------------------------------------------------------------


def test_list_reads_identity_and_partitions(fake: FakeMachine) -> None:
    fake.disk("sdb", "8:16", 64 * GiB, model="Samsung SSD 870", serial="S5Y1NX0R", rotational=False)
    fake.partition("sdb", 1, "8:17", 512 * MiB)
    fake.partition("sdb", 2, "8:18", 20 * GiB)
    fake.disk("nvme0n1", "259:0", 512 * GiB, devpath=NVME, model="WD SN850")
    fake.disk("sdc", "8:32", 16 * GiB, devpath=USB, removable=True, rotational=True)
    disks = list_disks(view=fake.view)
    assert [d.name for d in disks] == ["nvme0n1", "sdb", "sdc", "vda"]
    sdb = disks[1]
    assert (sdb.device, sdb.size, sdb.dev) == ("/dev/sdb", 64 * GiB, "8:16")
    assert (sdb.model, sdb.serial, sdb.transport, sdb.rotational) == ("Samsung SSD 870", "S5Y1NX0R", "sata", False)
    assert [(p.device, p.number, p.size, p.dev) for p in sdb.partitions] == [
        ("/dev/sdb1", 1, 512 * MiB, "8:17"), ("/dev/sdb2", 2, 20 * GiB, "8:18")]
    assert disks[0].transport == "nvme"
    assert (disks[2].transport, disks[2].removable, disks[2].rotational) == ("usb", True, True)
    assert disks[3].transport == "virtio"


def test_list_skips_loops_unless_asked_and_attached(fake: FakeMachine) -> None:
    fake.loop(0, 64 * MiB, "/srv/disk.img")
    fake.loop(1, 0, None)
    assert "loop0" not in [d.name for d in list_disks(view=fake.view)]
    loops = [d for d in list_disks(include_loop=True, view=fake.view) if d.name.startswith("loop")]
    assert [(d.name, d.size, d.transport, d.backing_file) for d in loops] == [
        ("loop0", 64 * MiB, "loop", "/srv/disk.img")]


def test_list_skips_non_disks_hidden_and_empty(fake: FakeMachine) -> None:
    fake.disk("mmcblk0", "179:0", 32 * GiB, devpath="devices/platform/mmc_host/mmc0/mmc0:0001")
    fake.disk("mmcblk0boot0", "179:8", 4 * MiB, devpath="devices/platform/mmc_host/mmc0/mmc0:0001")
    fake.disk("zram0", "253:0", 4 * GiB, devpath=VIRTUAL)
    fake.disk("sr0", "11:0", 700 * MiB, devpath=ATA2)
    fake.disk("sdd", "8:48", 0, devpath=USB, removable=True)  # a card reader without a card
    hidden = fake.disk("nvme0c0n1", "259:5", 512 * GiB, devpath=NVME)
    (hidden / "hidden").write_text("1\n")
    assert [d.name for d in list_disks(include_loop=True, view=fake.view)] == ["mmcblk0", "vda"]
    assert get(fake, "mmcblk0").transport == "mmc"


def test_udev_data_adds_by_id_and_serial(fake: FakeMachine) -> None:
    fake.disk("sdb", "8:16", 64 * GiB)
    fake.udev("8:16", ["S:disk/by-id/ata-Samsung_SSD_870_S5Y1NX0R", "S:disk/by-id/wwn-0x5002538f",
                       "S:disk/by-path/pci-0000:00:1f.2-ata-1", "E:ID_BUS=ata", "E:ID_SERIAL_SHORT=S5Y1NX0R",
                       "E:ID_MODEL=Samsung_SSD_870"])
    fake.dev_link("disk/by-id/usb-Other_123", "sdb")  # a link only /dev knows
    sdb = get(fake, "sdb")
    assert sdb.by_id == ["/dev/disk/by-id/ata-Samsung_SSD_870_S5Y1NX0R", "/dev/disk/by-id/usb-Other_123",
                         "/dev/disk/by-id/wwn-0x5002538f"]
    assert (sdb.serial, sdb.model) == ("S5Y1NX0R", "Samsung SSD 870")
    assert disk_id(sdb) == "ata-Samsung_SSD_870_S5Y1NX0R"


def test_disk_id_prefers_nvme_then_ata_then_scsi() -> None:
    def d(*names: str) -> Disk:
        return Disk(device="/dev/x", name="x", size=1, by_id=[f"/dev/disk/by-id/{n}" for n in names])

    assert disk_id(d("wwn-0x1", "nvme-eui.0025", "nvme-WD_SN850_123")) == "nvme-WD_SN850_123"
    assert disk_id(d("scsi-0QEMU_disk", "ata-QEMU_HARDDISK_QM1")) == "ata-QEMU_HARDDISK_QM1"
    assert disk_id(d("wwn-0x2", "usb-Stick_1")) == "usb-Stick_1"
    assert disk_id(d()) is None


def test_identity_changed_names_what_changed() -> None:
    chosen = Disk(device="/dev/sdb", name="sdb", size=64 * GiB, model="Stick A", serial="111")
    assert identity_changed(chosen, chosen.model_copy()) is None
    other = chosen.model_copy(update={"serial": "222"})
    assert identity_changed(chosen, other) == (
        "/dev/sdb is not the disk that was chosen: its serial number was 111 and is now 222")
    assert "size was 64.0 GB" in (identity_changed(chosen, chosen.model_copy(update={"size": GiB})) or "")


def test_a_card_swapped_in_the_same_reader_is_not_the_disk_that_was_chosen() -> None:
    """A card reader reports its own model and serial: two cards of one size differ only in what they hold."""
    from nbc_tui.backend.disks.model import Partition

    def card(uuid: str, label: str) -> Disk:
        return Disk(device="/dev/sdc", name="sdc", size=32 * GiB, model="Card Reader", serial="READER-1",
                    pttype="dos", partitions=[Partition(device="/dev/sdc1", number=1, size=32 * GiB - 4096,
                                                        fstype="exfat", uuid=uuid, label=label)])

    chosen = card("1A2B-3C4D", "SPARE")
    assert identity_changed(chosen, card("1A2B-3C4D", "SPARE")) is None
    assert identity_changed(chosen, card("5E6F-7A8B", "CAMERA")) == (
        "/dev/sdc is not the disk that was chosen: what is on it changed (it held 1 partition(s): exfat 'SPARE', "
        "it now holds 1 partition(s): exfat 'CAMERA')")
    blank = chosen.model_copy(update={"pttype": None, "partitions": []})
    assert "it now holds no partitions" in (identity_changed(chosen, blank) or "")


# --- eligibility -----------------------------------------------------------------------------------------


def test_unused_big_disk_is_eligible(fake: FakeMachine) -> None:
    fake.disk("sdb", "8:16", 64 * GiB)
    fake.partition("sdb", 1, "8:17", 10 * GiB)
    assert refusals(get(fake, "sdb"), min_size=MIN, view=fake.view) == []


def test_too_small(fake: FakeMachine) -> None:
    fake.disk("sdb", "8:16", 16 * GiB)
    assert messages(fake, "sdb") == ["/dev/sdb is too small: needs 30.0 GB, has 16.0 GB"]
    assert reasons(fake, "sdb", min_size=16 * GiB) == []


def test_read_only(fake: FakeMachine) -> None:
    fake.disk("sdb", "8:16", 64 * GiB, ro=True)
    assert reasons(fake, "sdb") == [Ineligible.READ_ONLY]


def test_partition_mounted_under_another_name(fake: FakeMachine) -> None:
    fake.disk("sdb", "8:16", 64 * GiB)
    fake.partition("sdb", 1, "8:17", 10 * GiB)
    fake.partition("sdb", 2, "8:18", 10 * GiB)
    # ext4 through a by-label link: mountinfo's device number says which partition it is.
    fake.mount("8:17", "/mnt/data", "/dev/disk/by-label/data")
    # btrfs has an anonymous device number: the source path is resolved to the kernel's name instead.
    fake.dev_link("disk/by-uuid/abcd", "sdb2")
    fake.mount("0:45", "/srv/my files", "/dev/disk/by-uuid/abcd", "btrfs")
    sdb = get(fake, "sdb")
    assert [p.mountpoints for p in sdb.partitions] == [["/mnt/data"], ["/srv/my files"]]
    assert messages(fake, "sdb") == [
        "partition /dev/sdb1 is mounted at /mnt/data: unmount it or choose another disk",
        "partition /dev/sdb2 is mounted at /srv/my files: unmount it or choose another disk",
    ]


def test_whole_disk_mounted(fake: FakeMachine) -> None:
    fake.disk("sdc", "8:32", 64 * GiB, devpath=USB)
    fake.mount("8:32", "/media/stick", "/dev/sdc", "iso9660")
    assert get(fake, "sdc").mountpoints == ["/media/stick"]
    assert messages(fake, "sdc") == ["/dev/sdc is mounted at /media/stick: unmount it or choose another disk"]


def test_swap_by_device_number(fake: FakeMachine) -> None:
    fake.disk("sdb", "8:16", 64 * GiB)
    fake.partition("sdb", 1, "8:17", 10 * GiB)
    fake.partition("sdb", 2, "8:18", 4 * GiB)
    fake.dev_link("disk/by-partlabel/swap", "sdb2")
    fake.swap("/dev/disk/by-partlabel/swap")
    assert messages(fake, "sdb") == [
        "partition /dev/sdb2 is in use as swap (/dev/disk/by-partlabel/swap): turn it off with "
        "`swapoff /dev/disk/by-partlabel/swap` or choose another disk"]


def test_holders_on_disk_and_on_partition(fake: FakeMachine) -> None:
    fake.disk("sdb", "8:16", 64 * GiB)
    fake.partition("sdb", 1, "8:17", 10 * GiB)
    fake.partition("sdb", 2, "8:18", 10 * GiB)
    fake.stack("dm-0", "252:0", ["sdb2"], dm_name="cryptdata", dm_uuid="CRYPT-LUKS2-abcd-cryptdata")
    fake.disk("sdc", "8:32", 64 * GiB, devpath=ATA2)
    fake.stack("dm-1", "252:1", ["sdc"], dm_name="vg0-home", dm_uuid="LVM-xyz")
    fake.disk("sdd", "8:48", 64 * GiB, devpath=USB)
    fake.partition("sdd", 1, "8:49", 60 * GiB)
    fake.stack("md127", "9:127", ["sdd1"])
    assert get(fake, "sdb").partitions[1].holders == ["dm-0"]
    assert get(fake, "sdc").holders == ["dm-1"]
    assert messages(fake, "sdb") == [
        "partition /dev/sdb2 is in use by dm-0 (the open LUKS mapping cryptdata): close it with "
        "`cryptsetup close cryptdata`, or choose another disk"]
    assert messages(fake, "sdc") == [
        "/dev/sdc is in use by dm-1 (the LVM volume vg0-home): deactivate its volume group with "
        "`vgchange -an`, or choose another disk"]
    assert messages(fake, "sdd") == [
        "partition /dev/sdd1 is in use by md127 (a software RAID array): stop it with "
        "`mdadm --stop /dev/md127`, or choose another disk"]


def test_mounted_and_swap_through_holders(fake: FakeMachine) -> None:
    fake.disk("sdb", "8:16", 64 * GiB)
    fake.partition("sdb", 1, "8:17", 10 * GiB)
    fake.partition("sdb", 2, "8:18", 10 * GiB)
    fake.stack("dm-0", "252:0", ["sdb1"], dm_name="home", dm_uuid="CRYPT-LUKS2-1-home")
    fake.stack("dm-1", "252:1", ["sdb2"], dm_name="swap", dm_uuid="CRYPT-PLAIN-2-swap")
    fake.dev_link("mapper/home", "dm-0")
    fake.mount("252:0", "/home", "/dev/mapper/home")
    fake.swap("/dev/dm-1")
    sdb = get(fake, "sdb")
    assert sdb.partitions[0].mountpoints == ["/home"]
    found = refusals(sdb, min_size=MIN, view=fake.view)
    assert [r.reason for r in found] == [Ineligible.MOUNTED, Ineligible.HOLDERS, Ineligible.SWAP,
                                         Ineligible.HOLDERS]
    assert found[0].message == (
        "partition /dev/sdb1 (through dm-0) is mounted at /home: unmount it or choose another disk")
    assert found[2].message.startswith("partition /dev/sdb2 is in use as swap (/dev/dm-1)")


def test_several_reasons_at_once(fake: FakeMachine) -> None:
    fake.disk("sdb", "8:16", 8 * GiB, ro=True)
    fake.partition("sdb", 1, "8:17", 4 * GiB)
    fake.partition("sdb", 2, "8:18", 2 * GiB)
    fake.partition("sdb", 3, "8:19", 1 * GiB)
    fake.mount("8:17", "/mnt/a", "/dev/sdb1")
    fake.mount("8:17", "/mnt/b", "/dev/sdb1")  # the same filesystem twice: one refusal, both places
    fake.swap("/dev/sdb2")
    fake.stack("dm-0", "252:0", ["sdb3"], dm_name="thing")
    found = refusals(get(fake, "sdb"), min_size=MIN, view=fake.view)
    assert [r.reason for r in found] == [Ineligible.READ_ONLY, Ineligible.TOO_SMALL, Ineligible.MOUNTED,
                                         Ineligible.SWAP, Ineligible.HOLDERS]
    assert found[2].message == (
        "partition /dev/sdb1 is mounted at /mnt/a, /mnt/b: unmount it or choose another disk")
    assert "dmsetup remove thing" in found[4].message


def test_running_system_through_device_mapper(fake: FakeMachine) -> None:
    fake._mountinfo.clear()
    fake.disk("nvme0n1", "259:0", 512 * GiB, devpath=NVME)
    fake.partition("nvme0n1", 1, "259:1", 1 * GiB)
    fake.partition("nvme0n1", 2, "259:2", 500 * GiB)
    fake.stack("dm-0", "252:0", ["nvme0n1p2"], dm_name="root", dm_uuid="CRYPT-LUKS2-9-root")
    fake.disk("sda", "8:0", 64 * GiB)
    fake.partition("sda", 1, "8:1", 1 * GiB)
    fake.mount("0:31", "/", "/dev/mapper/root", "btrfs")  # anonymous number; the name leads to dm-0
    fake.dev_link("mapper/root", "dm-0")
    fake.mount("8:1", "/boot/efi", "/dev/sda1", "vfat")
    assert running_system_disks(view=fake.view) == {"/dev/nvme0n1", "/dev/sda"}
    assert messages(fake, "sda")[0] == "/dev/sda holds the running system (/boot/efi): choose another disk"
    assert messages(fake, "nvme0n1") == [
        "/dev/nvme0n1 holds the running system (/): choose another disk",
        "partition /dev/nvme0n1p2 (through dm-0) is mounted at /: unmount it or choose another disk",
        "partition /dev/nvme0n1p2 is in use by dm-0 (the open LUKS mapping root): close it with "
        "`cryptsetup close root`, or choose another disk",
    ]


def test_live_medium_by_mount_and_iso_file(fake: FakeMachine) -> None:
    fake.disk("sdb", "8:16", 32 * GiB, devpath=USB, removable=True)
    fake.partition("sdb", 1, "8:17", 32 * GiB)
    fake.mount("8:17", "/run/live/findiso", "/dev/sdb1", "exfat")
    fake.loop(0, 900 * MiB, "/run/live/findiso/debian-live.iso", ro=True)
    fake.mount("7:0", "/run/live/medium", "/dev/loop0", "iso9660")
    fake.disk("sdc", "8:32", 64 * GiB, devpath=ATA2)
    assert live_medium_disks(view=fake.view) == {"/dev/sdb", "/dev/loop0"}
    assert messages(fake, "sdb")[0] == (
        "/dev/sdb is the live medium this system started from (it holds "
        "/run/live/findiso/debian-live.iso, mounted at /run/live/medium): choose another disk")
    assert Ineligible.LIVE_MEDIUM in reasons(fake, "loop0")
    assert reasons(fake, "sdc") == []


def test_live_medium_by_label_on_the_kernel_command_line(fake: FakeMachine) -> None:
    fake.disk("sdb", "8:16", 64 * GiB, devpath=USB)
    fake.partition("sdb", 1, "8:17", 2 * GiB)
    fake.disk("sdc", "8:32", 64 * GiB, devpath=ATA2)
    fake.dev_link("disk/by-label/NBC\\x20LIVE", "sdb1")  # as udev names it
    fake.cmdline("BOOT_IMAGE=/vmlinuz root=live:CDLABEL=NBC\\x20LIVE rd.live.image quiet")
    assert live_medium_disks(view=fake.view) == {"/dev/sdb"}
    assert messages(fake, "sdb") == [
        "/dev/sdb is the live medium this system started from (named on the kernel command line "
        "(root=live:CDLABEL=NBC\\x20LIVE)): choose another disk"]
    fake.cmdline("BOOT_IMAGE=/vmlinuz root=UUID=1 cdlabel=NBC\\x20LIVE")  # no live boot: labels mean nothing
    assert live_medium_disks(view=fake.view) == set()


def test_loop_sharing_its_file_with_a_partition_loop(fake: FakeMachine) -> None:
    fake.loop(0, 40 * GiB, "/srv/disk.img")
    fake.loop(1, 2 * GiB, "/srv/disk.img", offset=MiB, sizelimit=2 * GiB)
    fake.loop(2, 40 * GiB, "/srv/other.img")
    fake.loop(3, 40 * GiB, "/srv/disk.img")  # attached twice as a whole
    fake.mount("7:1", "/mnt/esp", "/dev/loop1")
    assert messages(fake, "loop0") == [
        "the file behind /dev/loop0 (/srv/disk.img) is also attached as /dev/loop1 (offset 1.0 MB), "
        "/dev/loop3: detach them with `losetup -d /dev/loop1 /dev/loop3` or choose another disk",
        "/dev/loop1, attached to the same file at offset 1.0 MB, is mounted at /mnt/esp: "
        "unmount it or choose another disk",
    ]
    assert reasons(fake, "loop1") == [Ineligible.TOO_SMALL, Ineligible.MOUNTED, Ineligible.IN_USE]
    assert reasons(fake, "loop2") == []


def test_not_a_disk() -> None:
    view = SystemView(sys=Path("/nonexistent/sys"), proc=Path("/nonexistent/proc"),
                      dev=Path("/nonexistent/dev"), run=Path("/nonexistent/run"), probe=False)
    zram = Disk(device="/dev/zram0", name="zram0", size=64 * GiB)
    assert [r.message for r in refusals(zram, min_size=MIN, view=view)] == [
        "/dev/zram0 is a compressed RAM device, not a disk: choose a disk"]
    loose = Disk(device="/dev/loop5", name="loop5", size=0)
    assert [r.reason for r in refusals(loose, min_size=MIN, view=view)] == [
        Ineligible.NOT_A_DISK, Ineligible.TOO_SMALL]


def test_os_hint_from_labels(fake: FakeMachine) -> None:
    fake.disk("sdb", "8:16", 64 * GiB)
    for n in range(1, 5):
        fake.partition("sdb", n, f"8:{16 + n}", GiB)
    for n, label in ((1, "UEFI"), (2, "root1"), (3, "root2"), (4, "var")):
        fake.udev(f"8:{16 + n}", [f"E:ID_FS_LABEL={label}", "E:ID_FS_TYPE=btrfs"])
    sdb = get(fake, "sdb")
    assert [p.label for p in sdb.partitions] == ["UEFI", "root1", "root2", "var"]
    assert sdb.os_hint == "an nbc A/B system (root1, root2, var)"


# --- resolve_disk ---------------------------------------------------------------------------------------


def test_resolve_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist") as exc:
        resolve_disk(tmp_path / "nope")
    assert exc.value.exit_code == 2


def test_resolve_regular_file(tmp_path: Path) -> None:
    (tmp_path / "disk.img").write_bytes(b"")
    with pytest.raises(InputError, match="is not a block device"):
        resolve_disk(tmp_path / "disk.img")


@pytest.mark.root
def test_resolve_partition_names_its_disk(fake: FakeMachine, tmp_path: Path) -> None:
    # A real block node (mknod) whose device number the fake sysfs lists as partition 2 of sdb.
    fake.disk("sdb", "8:16", 64 * GiB)
    fake.partition("sdb", 2, "8:18", 10 * GiB)
    node = tmp_path / "sdb2"
    subprocess.run(["mknod", str(node), "b", "8", "18"], check=True)
    link = tmp_path / "by-partlabel-root"
    link.symlink_to(node)
    with pytest.raises(InputError, match=r"is partition 2 of /dev/sdb, not a whole disk") as exc:
        resolve_disk(link, view=fake.view)
    assert exc.value.hint == "give the whole disk, /dev/sdb (everything on it will be erased)"
    whole = tmp_path / "sdb"
    subprocess.run(["mknod", str(whole), "b", "8", "16"], check=True)
    assert resolve_disk(whole, view=fake.view).device == "/dev/sdb"


# --- CLI rendering ----------------------------------------------------------------------------------------


def _sample() -> tuple[Disk, list]:
    disk = Disk(device="/dev/sdb", name="sdb", size=64 * GiB, serial="S5Y1", transport="sata",
                partitions=[Partition(device="/dev/sdb1", number=1, size=512 * MiB, fstype="vfat",
                                      label="UEFI", mountpoints=["/boot/efi"])])
    found = refusals(disk, min_size=MIN, view=SystemView(sys=Path("/x"), proc=Path("/x"), dev=Path("/x"),
                                                         run=Path("/x"), probe=False))
    return disk, found


def test_list_json_keeps_nbc_keys() -> None:
    disk, found = _sample()
    out = disk_json(disk, found)
    assert list(out)[:5] == ["device", "size", "size_human", "is_removable", "partitions"]  # no empty model
    part = out["partitions"][0]
    assert (part["device"], part["size"], part["size_human"], part["mount_point"], part["filesystem"]) == (
        "/dev/sdb1", 512 * MiB, "512.0 MB", "/boot/efi", "vfat")
    assert out["eligible"] is False
    assert out["refusals"] == [{"reason": "mounted", "message": (
        "partition /dev/sdb1 is mounted at /boot/efi: unmount it or choose another disk")}]
    assert (out["serial"], out["transport"], out["read_only"]) == ("S5Y1", "sata", False)


def test_list_text_follows_nbc_layout() -> None:
    disk, found = _sample()
    assert disk_text(disk, found, verbose=True).splitlines() == [
        "Device: /dev/sdb",
        "  Size:      64.0 GB (68719476736 bytes)",
        "  Serial:    S5Y1",
        "  Transport: sata",
        "  Removable: false",
        "  Partitions:",
        "    - /dev/sdb1 (512.0 MB) mounted at /boot/efi [vfat] label UEFI",
        "  Ineligible: partition /dev/sdb1 is mounted at /boot/efi: unmount it or choose another disk",
    ]
    assert "[vfat]" not in disk_text(disk, found, verbose=False)

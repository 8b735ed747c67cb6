"""The plan, a disk and a target in words: the one wording every face shows (backend/describe.py and
backend/disks/words.py)."""

from __future__ import annotations

from pathlib import Path

from nbc_tui.backend.describe import creation_lines, encryption_lines, image_file_words, target_line
from nbc_tui.backend.disks import (
    Disk,
    Partition,
    destruction_warning,
    disk_contents,
    disk_line,
    disk_summary,
    disk_words,
)
from nbc_tui.backend.plan import Encryption, InstallPlan
from nbc_tui.backend.sizes import GiB

PART = Partition(device="/dev/sdb1", number=1, size=GiB // 2, fstype="vfat", label="EFI", partlabel="boot")
DISK = Disk(device="/dev/sdb", name="sdb", size=64 * GiB, model="Stick", serial="S1", transport="usb",
            removable=True, partitions=[PART], pttype="gpt", os_hint="Debian GNU/Linux 12")


def test_a_disk_in_words() -> None:
    assert disk_words(DISK) == "Stick, serial S1, 64.0 GB, usb, removable"
    assert disk_line(DISK) == "/dev/sdb (Stick, serial S1, 64.0 GB, usb, removable)"
    bare = Disk(device="/dev/loop3", name="loop3", size=GiB, transport="loop", backing_file="/x/d.img")
    assert disk_line(bare) == "/dev/loop3 (unknown model, no serial, 1.0 GB, loop, file /x/d.img)"
    assert disk_contents(DISK) == ["Debian GNU/Linux 12", 'sdb1 512.0 MB vfat "EFI" boot']
    assert disk_summary(DISK) == "Debian GNU/Linux 12" and disk_summary(bare) == "none found"


def test_the_question_before_a_wipe_says_what_is_lost() -> None:
    assert destruction_warning(DISK).splitlines() == [
        "ALL DATA on /dev/sdb (Stick, serial S1, 64.0 GB, usb, removable) will be erased.",
        "  On it: Debian GNU/Linux 12", '  On it: sdb1 512.0 MB vfat "EFI" boot']
    empty = Disk(device="/dev/sdc", name="sdc", size=GiB)
    assert destruction_warning(empty).endswith("\n  Nothing was found on it.")


def plan(**changes: object) -> InstallPlan:
    data: dict[str, object] = {"image": {"ref": "oci:/x"}, "target": {"image_file": "/tmp/d.img"}, **changes}
    return InstallPlan.model_validate(data)


def test_the_plan_in_words() -> None:
    lines = creation_lines(plan())
    assert lines[0] == "GPT: p1 boot 2.0 GB, p2 root1 12.0 GB, p3 root2 12.0 GB, p4 var (the rest)"
    assert lines[-1] == "Kernel arguments: none. Root password: not set."
    hashed = plan(system={"root_password_hash": "$6$salt$hash"})
    assert creation_lines(hashed)[-1].endswith("Root password: set.")  # a hash sets one too
    enc = plan(encryption=Encryption(passphrase_file=Path("/p"), tpm2=True, tpm2_pcrs=(7,),
                                     recovery_key_file=Path("/root/rk")).model_dump())
    assert encryption_lines(enc) == ["Encryption: LUKS2 on root1, root2 and var (not the ESP)",
                                     "Unlocking: the TPM2 while PCR 7 is unchanged, else the passphrase",
                                     "Recovery key: written to /root/rk"]


def test_a_target_in_words(tmp_path: Path) -> None:
    assert target_line(plan(), None) == "the disk-image file /tmp/d.img"
    assert target_line(plan(), DISK) == disk_line(DISK)
    assert image_file_words(tmp_path / "new.img", 3 * GiB) == [f"a new disk-image file {tmp_path}/new.img, 3.0 GB "
                                                               "(sparse)"]
    (tmp_path / "old.img").write_bytes(b"x" * 2048)
    assert image_file_words(tmp_path / "old.img", GiB)[1] == "The file there now (2.0 KB) will be replaced."

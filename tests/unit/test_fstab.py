"""The installed root's fstab: nbc's mounts for old systemd, and a tmpfs on /tmp unless the image mounts one."""

from __future__ import annotations

from pathlib import Path

from nbc_tui.backend.system.rootfs import TMP_LINE, fstab_text, mounts_tmp_itself


def test_fstab_has_boot_and_var_for_old_systemd_and_tmp_unless_told() -> None:
    old = fstab_text(esp_uuid="AB-CD", var_uuid="v-1", filesystem="btrfs", systemd_version=252)
    assert "UUID=AB-CD\t/boot\tvfat" in old and "UUID=v-1\t/var\tbtrfs" in old and TMP_LINE in old
    new = fstab_text(esp_uuid="AB-CD", var_uuid="v-1", filesystem="ext4", systemd_version=256, tmp_tmpfs=False)
    assert [line for line in new.splitlines() if not line.startswith("#")] == []  # mount-extra= does the rest


def test_an_image_that_enables_tmp_mount_keeps_its_own(tmp_path: Path) -> None:
    assert not mounts_tmp_itself(tmp_path)
    wants = tmp_path / "usr/lib/systemd/system/local-fs.target.wants"
    wants.mkdir(parents=True)
    (tmp_path / "usr/lib/systemd/system/tmp.mount").write_text("[Mount]\n")
    (wants / "tmp.mount").symlink_to("../tmp.mount")
    assert mounts_tmp_itself(tmp_path)

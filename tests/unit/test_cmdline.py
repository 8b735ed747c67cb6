"""The kernel command line, token for token (reference §12.1, §12.2)."""

from __future__ import annotations

import pytest

from nbc_tui.backend.boot.cmdline import FAILURE_REBOOTS, LuksCmdline, grub_cmdline, kernel_cmdline
from nbc_tui.backend.errors import InputError
from nbc_tui.backend.system.rootfs import MOUNT_EXTRA_MIN_SYSTEMD
from nbc_tui.backend.system.slots import Slot

ROOT = "11111111-2222-3333-4444-555555555555"
VAR = "66666666-7777-8888-9999-aaaaaaaaaaaa"
ESP = "ABCD-1234"


def base(fs: str, kargs: tuple[str, ...] = ()) -> list[str]:
    return kernel_cmdline(root_uuid=ROOT, esp_uuid=ESP, var_uuid=VAR, filesystem=fs, kernel_args=kargs)


@pytest.mark.parametrize("fs", ["ext4", "btrfs"])
def test_unencrypted_order_is_nbcs(fs: str) -> None:
    assert base(fs) == [
        f"root=UUID={ROOT}",
        "ro",
        f"systemd.mount-extra=UUID={ESP}:/boot:vfat:defaults",
        f"systemd.mount-extra=UUID={VAR}:/var:{fs}:defaults",
        "rd.etc.overlay=1",
        f"rd.etc.overlay.var=UUID={VAR}",
        "nvme_core.multipath=N",
        *FAILURE_REBOOTS,
    ]


def test_user_kargs_come_last_in_order() -> None:
    line = base("btrfs", ("console=ttyS0", "quiet", "rw"))
    assert line[-7:] == ["nvme_core.multipath=N", *FAILURE_REBOOTS, "console=ttyS0", "quiet", "rw"]
    assert FAILURE_REBOOTS == ("panic=10", "rd.shell=0", "rd.emergency=reboot")  # a failed boot reboots


def test_empty_filesystem_means_ext4() -> None:
    assert f"systemd.mount-extra=UUID={VAR}:/var:ext4:defaults" in base("")


@pytest.mark.parametrize("tpm2", [False, True])
def test_encrypted_variant(tpm2: bool) -> None:
    enc = LuksCmdline(root_luks_uuid="r-luks", slot=Slot.B, var_luks_uuid="v-luks", tpm2=tpm2)
    line = kernel_cmdline(root_uuid=ROOT, esp_uuid=ESP, var_uuid=VAR, filesystem="btrfs",
                          kernel_args=["quiet"], encryption=enc)
    tpm = ["rd.luks.options=r-luks=tpm2-device=auto", "rd.luks.options=v-luks=tpm2-device=auto"]
    assert line == [
        "root=/dev/mapper/root2",
        "ro",
        "rd.luks.uuid=r-luks",
        "rd.luks.name=r-luks=root2",
        "rd.luks.uuid=v-luks",
        "rd.luks.name=v-luks=var",
        *(tpm if tpm2 else []),
        f"systemd.mount-extra=UUID={ESP}:/boot:vfat:defaults",
        "systemd.mount-extra=/dev/mapper/var:/var:btrfs:defaults",
        "rd.etc.overlay=1",
        "rd.etc.overlay.var=/dev/mapper/var",
        "nvme_core.multipath=N",
        *FAILURE_REBOOTS,
        "quiet",
    ]


def test_grub_variant_puts_console_after_ro_and_drops_ro_rw() -> None:
    line = grub_cmdline(base("ext4", ("rw", "console=ttyS0")))
    assert line == [
        f"root=UUID={ROOT}",
        "ro",
        "console=tty0",
        f"systemd.mount-extra=UUID={ESP}:/boot:vfat:defaults",
        f"systemd.mount-extra=UUID={VAR}:/var:ext4:defaults",
        "rd.etc.overlay=1",
        f"rd.etc.overlay.var=UUID={VAR}",
        "nvme_core.multipath=N",
        *FAILURE_REBOOTS,
        "console=ttyS0",
    ]
    assert line.count("ro") == 1


def test_grub_variant_edge_cases() -> None:
    assert grub_cmdline([]) == []
    with pytest.raises(ValueError, match="root="):
        grub_cmdline(["ro", "root=UUID=x"])


@pytest.mark.parametrize("bad", ["", "quiet\ninit=/bin/sh", "a\tb"])
def test_kernel_args_that_break_an_entry_line_are_refused(bad: str) -> None:
    with pytest.raises(InputError):
        base("ext4", (bad,))


def test_missing_uuid_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        kernel_cmdline(root_uuid="", esp_uuid=ESP, var_uuid=VAR, filesystem="ext4", kernel_args=())


def test_mount_extra_threshold() -> None:
    assert MOUNT_EXTRA_MIN_SYSTEMD == 254

"""The Debian test image and the QEMU harness, proven without the installer.

The image's rootfs is extracted with tar into a filesystem image made by ``mke2fs -d`` and booted with its
own kernel and initramfs passed to QEMU directly; the report unit must print its line and a login prompt
must appear.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.vm.image_builder import (
    build_debian_image,
    image_info,
    image_reference,
    parse_report,
    read_report,
    source_key,
)
from tests.vm.qemu import booted, qmp_command

BOOT_TIMEOUT = 300


# --- pure logic -----------------------------------------------------------------------------------------

def test_source_key_follows_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("one")
    b.write_text("two")
    key = source_key([a, b])
    assert key == source_key([a, b])
    b.write_text("three")
    assert source_key([a, b]) != key


def test_parse_report_keeps_the_command_line_whole() -> None:
    line = ("root=ro etc=overlay var=mounted boot=mounted rootfs=ext4 varfs=ext4 bootfs=vfat "
            "cmdline=root=UUID=1234 ro console=ttyS0 rd.etc.overlay=1")
    assert parse_report(line) == {
        "root": "ro", "etc": "overlay", "var": "mounted", "boot": "mounted", "rootfs": "ext4",
        "varfs": "ext4", "bootfs": "vfat", "cmdline": "root=UUID=1234 ro console=ttyS0 rd.etc.overlay=1",
    }


# --- the real image -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rootfs(debian_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's single layer extracted with GNU tar (owners, modes, xattrs kept)."""
    dest = tmp_path_factory.mktemp("rootfs")
    layer = _layer_blob(debian_image)
    subprocess.run(["tar", "--zstd", "--extract", "--xattrs", "--xattrs-include=*", "--numeric-owner",
                    "--same-permissions", "-f", str(layer), "-C", str(dest)], check=True)
    return dest


@pytest.mark.vm
@pytest.mark.root
def test_cached_image_is_reused(debian_image: Path) -> None:
    started = time.monotonic()
    again = build_debian_image(debian_image.parent.parent)
    assert again == debian_image
    assert time.monotonic() - started < 5, "a cached image must not be rebuilt"
    assert image_reference(again) == f"oci:{debian_image}:latest"


@pytest.mark.vm
@pytest.mark.root
def test_image_is_a_bootc_style_debian(debian_image: Path, rootfs: Path) -> None:
    index = json.loads((debian_image / "index.json").read_text())
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == ["latest"]
    kver = str(image_info(debian_image)["kver"])
    moddir = rootfs / "usr/lib/modules" / kver
    assert (moddir / "vmlinuz").stat().st_size > 1_000_000
    assert (moddir / "initramfs.img").stat().st_size > 1_000_000
    assert list((rootfs / "boot").iterdir()) == []
    assert "bookworm" in (rootfs / "usr/lib/os-release").read_text()
    assert (rootfs / "etc/machine-id").read_text().strip() in ("", "uninitialized")
    assert not list((rootfs / "etc").glob("ssh/ssh_host_*"))
    # What the installer relies on: dracut to regenerate with, GRUB modules, the systemd-boot EFI binary.
    assert (rootfs / "usr/bin/dracut").exists()
    assert not (rootfs / "usr/lib/dracut/modules.d/95etc-overlay").exists()
    assert (rootfs / "usr/lib/grub/x86_64-efi/linux.mod").exists()
    assert (rootfs / "usr/bin/grub-mkimage").exists()
    assert (rootfs / "usr/lib/systemd/boot/efi/systemd-bootx64.efi").exists()
    assert (rootfs / "etc/systemd/system/multi-user.target.wants/nbc-test-report.service").is_symlink()
    # Encrypted installs: systemd-cryptsetup for LUKS, and for TPM2 tpm2-tools, the TCTI and dracut's tpm2-tss.
    assert (rootfs / "usr/lib/systemd/systemd-cryptsetup").exists()
    assert (rootfs / "usr/bin/tpm2").exists()
    assert list(rootfs.glob("usr/lib/x86_64-linux-gnu/libtss2-tcti-device.so*"))
    assert "tpm2-tss" in (rootfs / "etc/dracut.conf.d/50-tpm2.conf").read_text()


@pytest.mark.vm
@pytest.mark.root
def test_direct_kernel_boot_prints_report_and_login(debian_image: Path, rootfs: Path, tmp_path: Path) -> None:
    kver = str(image_info(debian_image)["kver"])
    disk = tmp_path / "root.img"
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-L", "root", "-d", str(rootfs), str(disk), "2G"],
                   check=True)
    moddir = rootfs / "usr/lib/modules" / kver
    log = tmp_path / "console.log"
    with booted(disk, log=log, timeout=BOOT_TIMEOUT, kernel=moddir / "vmlinuz",
                initrd=moddir / "initramfs.img", append="root=/dev/vda console=ttyS0 rw") as vm:
        report = read_report(vm, BOOT_TIMEOUT)
        vm.wait_for(r"login:", BOOT_TIMEOUT)
        print(f"direct-kernel boot: report and login prompt after {vm.elapsed:.0f} s (console: {log})")
    assert report["root"] == "rw"
    assert report["etc"] == "ext4"   # no overlay without the installer's dracut module
    assert report["rootfs"] == "ext4"
    assert report["var"] == "missing"
    assert report["boot"] == "missing"
    assert "console=ttyS0" in report["cmdline"]
    assert "NBC-REPORT-END" in vm.console()


def _layer_blob(layout: Path) -> Path:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":", 1)[1]
    manifest = json.loads((layout / "blobs/sha256" / digest).read_text())
    [layer] = manifest["layers"]
    return layout / "blobs/sha256" / layer["digest"].split(":", 1)[1]


PANIC_WAIT = 3600
"""Seconds the panicking guest says it waits before it reboots by itself. The kernel times that wait with the
loops-per-jiffy of the CPU that panicked, and under TCG a secondary vCPU measures its own ("calibrate_delay_direct()")
and can get it wrong by a factor of a thousand: with panic=100, and again with panic=3600, the whole test took under
20 s in CI (2026-12-07), the guest rebooting before the harness's reset it was there to see. So this guest has one
vCPU, whose loops-per-jiffy comes from the TSC's frequency (measured against the PIT or HPET), not from that loop."""
PANICKED = rf"Rebooting in {PANIC_WAIT} seconds"


@pytest.mark.vm
@pytest.mark.root
def test_harness_resets_a_guest_whose_reset_never_comes(debian_image: Path, rootfs: Path, tmp_path: Path) -> None:
    """A guest that says it resets and then stays silent is reset from QEMU's monitor after ``stuck_after``
    seconds (``stuck_resets``); when that does not help either, QEMU is started again on the same disks and the
    console log goes on (``relaunches``): what keeps a reboot scenario going when TCG does not come back from a
    guest's reset. The guest: a kernel that panics with panic=PANIC_WAIT (no root to mount). First it merely waits
    (the monitor's reset cuts the wait short); then QEMU's vCPUs are paused (QMP stop), as wedged as the
    QEMU seen in CI: the monitor answers the reset, nothing runs, and only a new QEMU boots."""
    kver = str(image_info(debian_image)["kver"])
    log = tmp_path / "console.log"
    with booted(None, log=log, timeout=BOOT_TIMEOUT, kernel=rootfs / "usr/lib/modules" / kver / "vmlinuz",
                append=f"console=ttyS0 panic={PANIC_WAIT} root=/dev/nothing", reboots=True, smp=1) as vm:
        vm.stuck_after = 20
        vm.wait_for(PANICKED, BOOT_TIMEOUT)
        started = vm.elapsed
        second = vm.wait_for(rf"(?s){PANICKED}.*?Linux version.*?{PANICKED}",
                             BOOT_TIMEOUT + vm.stuck_after)
        waited = vm.elapsed - started
        assert (vm.stuck_resets, vm.relaunches) == (1, 0)
        first_process = vm.process
        assert qmp_command(vm.qmp, "stop") == '{"return": {}}'
        vm.wait_after(second.end(), r"Linux version", BOOT_TIMEOUT + 2 * vm.stuck_after)
        assert (vm.stuck_resets, vm.relaunches) == (2, 1)
        assert vm.process is not first_process and first_process.poll() is not None
        vm.wait_after(second.end(), PANICKED, BOOT_TIMEOUT)  # the log goes on
    assert vm.stuck_after <= waited < 100, f"reset after {waited:.0f} s"  # the harness's reset, not the guest's
    harness = (tmp_path / "console.log.qemu").read_text()
    assert harness.count('QMP system_reset: {"return": {}}') == 2, harness
    assert "QEMU stopped and started again" in harness, harness
    assert (tmp_path / "console.log.vars-at-stall").stat().st_size > 0

"""Install the Debian test image with the real ``nbc-tui`` CLI onto a disk image file, boot it in QEMU with
OVMF, and check on the serial console that the system came up the way nbc lays it out: root read-only,
/etc an overlay, /var and /boot mounted, and a login prompt.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.disk_image import esp_files, esp_offset
from tests.vm.host_lock import one_host_install_at_a_time
from tests.vm.image_builder import read_report
from tests.vm.image_variants import REBUILD_TAG, ImageVariants
from tests.vm.qemu import booted
from tests.vm.signed_image import signed_chain_image

pytestmark = [pytest.mark.vm(minutes=3), pytest.mark.root]

INSTALL_TIMEOUT = 1200
BOOT_TIMEOUT = 300
TAIL = 40


def nbc_tui() -> str:
    """The nbc-tui entry point of the venv running the tests (else the one on PATH)."""
    beside = Path(sys.executable).with_name("nbc-tui")
    found = str(beside) if beside.exists() else shutil.which("nbc-tui")
    if found is None or importlib.util.find_spec("nbc_tui.cli") is None:
        pytest.skip("the nbc-tui CLI is not installed yet")
    return found


def install(ref: str, disk: Path, *, filesystem: str, bootloader: str,
            extra: tuple[str, ...] = ()) -> list[dict[str, object]]:
    """Run ``nbc-tui install --json`` onto ``disk``; return its events, failing with their tail if it fails."""
    argv = [nbc_tui(), "install", "--image", ref, "--via-loopback", str(disk),
            "--image-size", "6", "--esp-size", "512M", "--root-size", "2G", "--var-min-size", "1G",
            "--filesystem", filesystem,
            "--bootloader", bootloader, "--karg", "console=ttyS0", *extra, "--yes", "--json"]
    with one_host_install_at_a_time():
        done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)
    lines = done.stdout.splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    if done.returncode != 0 or not events or events[-1].get("type") != "complete":
        stdout = "\n".join(lines[-TAIL:])
        stderr = "\n".join(done.stderr.splitlines()[-TAIL:])
        pytest.fail(f"nbc-tui install exited {done.returncode} without a complete event\n"
                    f"$ {' '.join(argv)}\n--- stdout (tail) ---\n{stdout}\n--- stderr (tail) ---\n{stderr}")
    return events


# Two pairs installed on the host, one for each way the engine makes the initramfs boot the disk: the hook
# appended to the image's own initramfs (``latest``, GRUB + btrfs, with Secure Boot on: the last test here),
# and dracut rebuilding it (``needs-rebuild``, whose initramfs lacks the overlay kernel module). The other two
# pairs boot after installs from the live ISO
# (test_iso.py: ext4 + systemd-boot by the TUI; test_iso_encrypted.py: ext4 + GRUB and btrfs + systemd-boot,
# encrypted), so every filesystem boots with every bootloader within the suite's time budget (each boot is
# about 2 minutes).
INITRAMFS_WAYS = {
    "latest": "Adding the etc-overlay hook to the initramfs",
    REBUILD_TAG: "Regenerating the initramfs",
}


@pytest.mark.parametrize(("bootloader", "filesystem", "tag"), [
    ("systemd-boot", "ext4", REBUILD_TAG),
])
def test_installed_disk_boots(image_variants: ImageVariants, tmp_path: Path, bootloader: str, filesystem: str,
                              tag: str) -> None:
    disk = tmp_path / "disk.img"
    ref = image_variants.latest_ref if tag == "latest" else image_variants.rebuild_ref
    events = install(ref, disk, filesystem=filesystem, bootloader=bootloader)
    assert disk.stat().st_blocks * 512 < disk.stat().st_size, "the disk image should stay sparse"
    messages = [str(e.get("message", "")) for e in events]
    for tag_of, words in INITRAMFS_WAYS.items():
        assert any(words in m for m in messages) == (tag_of == tag), f"{tag}: {words!r} in {messages}"
    seconds = events[-1]["details"]["step_seconds"]["initramfs"]  # type: ignore[index]
    print(f"{tag}: the initramfs step took {seconds} s")

    log = tmp_path / "console.log"
    with booted(disk, log=log, timeout=BOOT_TIMEOUT) as vm:
        report = read_report(vm, BOOT_TIMEOUT)
        vm.wait_for(r"login:", BOOT_TIMEOUT)
        print(f"{bootloader}/{filesystem}: booted to a login prompt in {vm.elapsed:.0f} s (console: {log})")

    check_report(report, filesystem, log)
    disk.unlink()  # a few hundred MB of real blocks each; the console log stays for inspection


def check_report(report: dict[str, str], filesystem: str, log: Path) -> None:
    facts = f"report: {report}; console: {log}"
    assert report["root"] == "ro", facts
    assert report["etc"] == "overlay", facts
    assert report["var"] == "mounted", facts
    assert report["boot"] == "mounted", facts
    assert report["rootfs"] == filesystem, facts
    assert report["varfs"] == filesystem, facts
    assert report["bootfs"] == "vfat", facts
    assert "console=ttyS0" in report["cmdline"].split(), facts
    assert "rd.etc.overlay=1" in report["cmdline"].split(), facts


def test_signed_chain_boots_with_secure_boot_on_and_an_unsigned_kernel_does_not(
        image_variants: ImageVariants, tmp_path: Path) -> None:
    """Debian's chain (shim, signed GRUB, signed kernel) installed with ``--secure-boot require``: OVMF enforcing
    Secure Boot with Microsoft's keys boots it to a login prompt, and the kernel says Secure Boot is on. The same
    disk with the kernel's signature stripped is refused by the signed GRUB (through shim)."""
    ref = signed_chain_image(image_variants.layout, tmp_path / "image")
    disk = tmp_path / "disk.img"
    events = install(ref, disk, filesystem="btrfs", bootloader="auto", extra=("--secure-boot", "require"))
    assert events[-1]["details"]["bootloader"] == "grub2"  # type: ignore[index]  # auto took the signed GRUB
    messages = [str(e.get("message", "")) for e in events]
    assert any(INITRAMFS_WAYS["latest"] in m for m in messages), messages
    esp = esp_files(disk)
    assert {"EFI/BOOT/BOOTX64.EFI", "EFI/BOOT/grubx64.efi", "EFI/BOOT/mmx64.efi", "EFI/debian/grub.cfg"} <= set(esp)

    log = tmp_path / "console.log"
    with booted(disk, log=log, timeout=BOOT_TIMEOUT, secure_boot=True) as vm:
        vm.wait_for(r"secureboot: Secure boot enabled", BOOT_TIMEOUT)
        report = read_report(vm, BOOT_TIMEOUT)
        vm.wait_for(r"login:", BOOT_TIMEOUT)
        print(f"grub/btrfs with Secure Boot on: booted to a login prompt in {vm.elapsed:.0f} s (console: {log})")
    check_report(report, "btrfs", log)

    (kernel,) = [f for f in esp if f.startswith("A/vmlinuz-")]
    strip_signature(disk, kernel, tmp_path)
    log = tmp_path / "console-unsigned.log"
    with booted(disk, log=log, timeout=BOOT_TIMEOUT, secure_boot=True) as vm:
        vm.wait_for(r"bad shim signature", BOOT_TIMEOUT)
        print(f"the unsigned kernel was refused {vm.elapsed:.0f} s after start (console: {log})")
    disk.unlink()


def strip_signature(disk: Path, esp_path: str, work: Path) -> None:
    """Replace ``esp_path`` on the disk's ESP by the same file without its Authenticode signature."""
    where = f"{disk}@@{esp_offset(disk)}"
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    copy = work / "vmlinuz"
    subprocess.run(["mcopy", "-n", "-i", where, f"::/{esp_path}", str(copy)], check=True, env=env)
    subprocess.run(["sbattach", "--remove", str(copy)], check=True, capture_output=True)
    subprocess.run(["mcopy", "-o", "-i", where, str(copy), f"::/{esp_path}"], check=True, env=env)

"""The live ISO: built (cached) by ``iso/build.sh``, booted in QEMU + OVMF with a blank virtio disk, driven
and checked on the serial console.

- UEFI boot through the ISO's GRUB: the installer starts by itself on the serial console and, driven by keys
  (pexpect-style, over the console socket), switches the machine's keyboard to de, installs the staged image
  onto the blank disk without encryption; everything it drew is ASCII; leaving it leaves a shell, where the live
  system is checked (the keymap the kernel has, medium, layers, the installer on tty1 too, the staged image, the
  live medium refused); the installed disk then boots and reports /, /etc, /var and /boot as the layout promises.
- ``--stage``: the staged image is in the ISO's top layer under ``/var/cache/nbc/staged-install``.
- ``iso/build.sh`` refuses bad arguments with a message before building anything (no VM, no root).

The unattended, encrypted installs from the ISO (``nbc.answers=``) are in test_iso_encrypted.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.vm.image_variants import PRELOADED_TAG, ImageVariants
from tests.vm.installed import boot_installed, check_layout, sparse_disk
from tests.vm.iso_builder import BUILD_SCRIPT, TUI_EXITED, TUI_FIRST_SCREEN, LiveIso, booted_iso
from tests.vm.qemu import Vm

BOOT_TIMEOUT = 300
"""Seconds from QEMU's start to the installer on the console (about 60-90 s under TCG here)."""
BLANK_DISK_BYTES = 32 << 30
"""Sparse; nbc's default layout needs 30 GB."""
INSTALL_TIMEOUT = 1200
"""Seconds the install itself may take once confirmed (about 3 minutes under TCG here)."""
INSTALLED_BOOT_TIMEOUT = 420
PROMPT = re.compile(r"root@nbc-tui-live:~# ")
# Keys as a VT220 serial terminal sends them.
TAB, ENTER, ESC, DOWN, RIGHT, CTRL_N, F3 = "\t", "\r", "\x1b", "\x1b[B", "\x1b[C", "\x0e", "\x1bOR"
SETTLE = 1.5
"""Seconds after a key that moves the focus before the next key (see keys()). 0.7 s was once too short on a
loaded machine: the first letters of console=ttyS0 went to the widget the focus was leaving."""
KERNEL_ARG = "console=ttyS0"


def blank_disk(tmp_path: Path) -> Path:
    return sparse_disk(tmp_path / "blank.img", BLANK_DISK_BYTES)


def keys(vm: Vm, *sequence: str) -> None:
    """Type keys on the serial console at a person's pace: a key that moves the focus (Tab, Enter, an
    arrow) travels through Textual's queues before the focus moves, so the next key waits a little."""
    settle = 0.0
    for key in sequence:
        time.sleep(max(settle, 0.05))
        vm.send(key)
        settle = 0.0 if key.isprintable() and len(key) == 1 and key != " " else SETTLE


def install_by_keys(vm: Vm) -> tuple[str, re.Match[str], float]:
    """Welcome to done on the serial console: the machine's keyboard switched to de (F3 on the welcome screen),
    the staged image, the blank disk from the table, no encryption, ext4 and the automatic bootloader,
    console=ttyS0, no root password, the disk's name typed to confirm; then leave it. Returns what the
    installer drew, the shell's "nbc-tui exited" line and the seconds the install itself took."""
    start = vm.mark()
    vm.wait_after(start, "Running as root")  # the welcome screen has surveyed the machine
    keys(vm, F3)
    vm.wait_after(start, "ype to filter")  # the dialog's filter field ("t" is drawn under the cursor)
    keys(vm, "d", "e", ENTER)  # "de" heads the filtered list: Enter switches to it
    vm.wait_after(start, "The keyboard is now de")
    keys(vm, ESC)
    vm.wait_after(start, "Keyboard: de")
    keys(vm, ENTER)
    vm.wait_after(start, "Or pick a staged image")
    keys(vm, TAB, DOWN, ENTER)  # from the reference field to the staged list; its first (only) image
    vm.wait_after(start, re.escape("(staged, offline)"))
    keys(vm, ENTER)  # the focus moved to Continue
    at_disks = vm.mark()
    # The detail line of the disk under the cursor: the blank disk, the only one listed (the live medium is
    # an optical drive, which the table never lists; nbc-tui validate refuses it below).
    vm.wait_after(at_disks, re.escape("/dev/vda ("))
    keys(vm, ENTER, CTRL_N)  # choose it, continue
    vm.wait_after(at_disks, "Disk encryption")
    keys(vm, ENTER)  # "No encryption" is picked already: Enter goes on
    vm.wait_after(at_disks, "Root password")
    # ext4 (the second filesystem choice), the bootloader left automatic (systemd-boot: the image has it),
    # then the kernel arguments
    keys(vm, RIGHT, " ", TAB, TAB, *KERNEL_ARG)
    keys(vm, TAB, TAB, TAB, TAB, ENTER)  # password, again (both empty), Back, Continue
    vm.wait_after(at_disks, re.escape("A user (optional)"))
    keys(vm, CTRL_N)  # the system screen: the image's own settings, no user
    word = vm.wait_after(at_disks, r"type (\S+) here").group(1)
    keys(vm, *word, ENTER)
    installing = time.monotonic()
    vm.wait_after(at_disks, "Save these answers", timeout=INSTALL_TIMEOUT)
    install_seconds = time.monotonic() - installing
    leaving = vm.mark()
    keys(vm, ESC)  # leave the installer
    exited = vm.wait_after(leaving, TUI_EXITED, timeout=60)
    return vm.console()[start:exited.start()], exited, install_seconds


@pytest.mark.vm(minutes=6)
@pytest.mark.root
def test_tui_on_the_serial_console_installs_a_disk_that_boots(live_iso: LiveIso, image_variants: ImageVariants,
                                                                tmp_path: Path) -> None:
    """UEFI boot from the CD with Secure Boot enforced, through shim and the ISO's signed GRUB; the installer
    starts by itself on the serial console and, driven by keys, installs the staged image onto the blank disk
    without encryption; leaving it leaves a shell, where the live system is checked (Secure Boot on included);
    the installed disk then boots with the layout the installer promised."""
    disk = blank_disk(tmp_path)
    with booted_iso(live_iso, log=tmp_path / "live-console.log", disks=[disk], timeout=BOOT_TIMEOUT,
                    memory="3072", secure_boot=True) as vm:
        vm.wait_for(r"nbc-tui live: install a container image", timeout=120)  # the GRUB menu, on serial too
        grub_seconds = vm.elapsed
        vm.wait_for(TUI_FIRST_SCREEN)
        tui_seconds = vm.elapsed
        drawn, exited, install_seconds = install_by_keys(vm)
        assert exited.group(1) == "0", drawn[-3000:]
        assert "The install failed" not in drawn
        assert sorted({ch for ch in drawn if ord(ch) > 127}) == [], "the serial console look is ASCII only"
        vm.wait_after(exited.end(), PROMPT, timeout=30)

        medium = vm.shell("findmnt -no SOURCE,FSTYPE /run/live/medium").split()
        assert medium == ["/dev/sr0", "iso9660"], medium
        assert "SecureBoot enabled" in vm.shell("mokutil --sb-state")
        # The keyboard switched on the welcome screen is the kernel's: the key left of U types z on de.
        assert re.search(r"^keycode +21 = \+?z\b", vm.shell("dumpkeys -C /dev/tty1"), re.M), "not a de keymap"
        # The installer runs on tty1 too (no display in this VM, but the virtual console exists).
        on_tty1 = vm.shell("pgrep -a -t tty1 -f bin/nbc-tui").strip()
        assert "nbc-tui" in on_tty1, f"no nbc-tui on tty1: {on_tty1!r}"
        layers = vm.shell("ls /run/live/rootfs").split()
        assert layers == ["00-base.squashfs", "10-python.squashfs", "20-nbc-tui.squashfs",
                          "30-staged.squashfs"], layers
        staged = json.loads(vm.shell("nbc-tui cache list --install-images --json", timeout=120))
        assert [i["image_digest"] for i in staged["images"]] == [image_variants.digests[PRELOADED_TAG]], staged
        listing = json.loads(vm.shell("nbc-tui list --json --all", timeout=120))
        disks = {d["name"]: d for d in listing["disks"]}
        assert disks["vda"]["size"] == BLANK_DISK_BYTES, sorted(disks)
        assert "sr0" not in disks  # an optical drive is no install target, so it is not listed at all
        # ... and named directly it is refused, as the live medium it is (the check can fail: it reads the
        # mounts and the kernel command line of the live system).
        refused = json.loads(vm.shell("nbc-tui validate --device /dev/sr0 --json", timeout=120))
        assert refused["valid"] is False, refused
        assert {"not-a-disk", "live-medium"} <= {r["reason"] for r in refused["refusals"]}, refused
        vm.send("poweroff\r")
        vm.process.wait(timeout=180)

    boot = boot_installed(disk, tmp_path / "console.log", timeout=INSTALLED_BOOT_TIMEOUT)
    check_layout(boot.report, filesystem="ext4", facts=boot.facts)
    print(f"\nlive ISO, TUI on the serial console: GRUB menu at {grub_seconds:.0f} s, installer at "
          f"{tui_seconds:.0f} s after QEMU started, install by keys {install_seconds:.0f} s; installed disk at "
          f"login {boot.seconds:.0f} s after its start; ISO build {live_iso.build_seconds:.0f} s")
    disk.unlink()


@pytest.mark.vm
@pytest.mark.root
def test_iso_as_a_disk_boots_the_installer_with_secure_boot_on(live_iso: LiveIso, tmp_path: Path) -> None:
    """The ISO written to a USB stick (here a virtio disk): the firmware boots its EFI partition, whose GRUB reads
    the config in that partition and finds the ISO's menu by the marker file."""
    with booted_iso(live_iso, log=tmp_path / "live-console.log", timeout=BOOT_TIMEOUT, secure_boot=True,
                    as_disk=True) as vm:
        vm.wait_for(TUI_FIRST_SCREEN)
        print(f"\nlive ISO as a disk, Secure Boot on: installer at {vm.elapsed:.0f} s after QEMU started")
        leaving = vm.mark()
        keys(vm, ESC)  # quit, from the welcome screen ...
        vm.wait_after(leaving, "Quit the installer?", timeout=30)
        keys(vm, "y")  # ... once asked
        exited = vm.wait_after(leaving, TUI_EXITED, timeout=60)
        vm.wait_after(exited.end(), PROMPT, timeout=30)
        assert "SecureBoot enabled" in vm.shell("mokutil --sb-state")
        assert vm.shell("findmnt -no FSTYPE /run/live/medium").split() == ["iso9660"]


@pytest.mark.vm
@pytest.mark.root
def test_iso_carries_staged_images(live_iso: LiveIso, image_variants: ImageVariants, tmp_path: Path) -> None:
    listing = subprocess.run(["xorriso", "-indev", str(live_iso.iso), "-find", "/live", "-name", "*.squashfs"],
                             capture_output=True, text=True, check=True).stdout.split()
    assert [Path(p.strip("'")).name for p in listing] == [
        "00-base.squashfs", "10-python.squashfs", "20-nbc-tui.squashfs", "30-staged.squashfs"]
    staged = tmp_path / "30-staged.squashfs"
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(live_iso.iso),
                    "-extract", "/live/30-staged.squashfs", str(staged)], capture_output=True, check=True)
    files = subprocess.run(["unsquashfs", "-l", "-d", "", str(staged)], capture_output=True, text=True,
                           check=True).stdout.split()
    pattern = r"/var/cache/nbc/staged-install/sha256-[0-9a-f]{64}/metadata.json"
    entries = [f for f in files if re.fullmatch(pattern, f)]
    assert len(entries) == 1, files
    assert entries[0].split("/")[-2] == image_variants.digests[PRELOADED_TAG].replace(":", "-")


@pytest.mark.parametrize(("args", "message"), [
    (["--bogus"], "unknown option --bogus"),
    (["--stage"], "--stage needs an image reference"),
    (["a.iso", "b.iso"], "only one output path"),
])
def test_build_script_says_what_is_wrong(args: list[str], message: str) -> None:
    """Bad arguments are refused before anything is built (no root needed)."""
    done = subprocess.run([str(BUILD_SCRIPT), *args], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert message in done.stderr
    assert done.stdout == ""

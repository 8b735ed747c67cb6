"""Smoke tests of the live ISO: built (cached) by ``iso/build.sh``, booted in QEMU + OVMF with a blank
virtio disk, checked on the serial console.

- UEFI boot through the ISO's GRUB: the live system comes up, the installer starts by itself on the serial
  console, quitting it leaves a shell prompt, and ``nbc-tui list`` there offers the blank disk and refuses
  the live medium.
- ``--stage``: the Debian test image is staged in the ISO's top layer under
  ``/var/cache/nbc/staged-install`` (checked in the ISO file, and by ``nbc-tui cache list`` in the live system).
- ``nbc.answers=`` on the kernel command line: the headless unit runs instead of the TUI and prints its
  exit marker (the answer file given here does not exist: only the wiring is checked, not an install).
- ``iso/build.sh`` refuses bad arguments with a message before building anything (no VM, no root).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.vm.image_builder import image_reference
from tests.vm.iso_builder import (
    BUILD_SCRIPT,
    CTRL_C,
    HEADLESS_EXIT,
    TUI_EXITED,
    TUI_FIRST_SCREEN,
    LiveIso,
    LiveVm,
    booted_iso,
    build_iso,
)

BOOT_TIMEOUT = 300
"""Seconds from QEMU's start to the installer on the console (about 60-90 s under TCG here)."""
BLANK_DISK_BYTES = 32 << 30
"""Sparse; nbc's default layout needs 30 GB."""
PROMPT = re.compile(r"root@nbc-tui-live:~# ")


@pytest.fixture(scope="module")
def live_iso(debian_image: Path) -> LiveIso:
    """The ISO with the Debian test image staged (what the offline install scenarios boot, too)."""
    return build_iso(stage=[image_reference(debian_image)])


def staged_digest(layout: Path) -> str:
    """The manifest digest an OCI layout written by the image builder stages under."""
    return json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]


def blank_disk(tmp_path: Path) -> Path:
    disk = tmp_path / "blank.img"
    with disk.open("wb") as f:
        f.truncate(BLANK_DISK_BYTES)
    return disk


def shell_output(vm: LiveVm, command: str, timeout: float = 60) -> str:
    """Run ``command`` at the live system's shell prompt; return its stdout+stderr. The output travels
    base64-encoded on one marker line, so nothing the terminal does to it (wrapping, CRLF) matters; the
    marker's "$((1))" is "1" only in the output, never in the echo of the typed line."""
    start = vm.mark()
    vm.send(f"echo NBC-OUT-$((1)) $({{ {command}; }} 2>&1 | base64 -w0)\r")
    match = vm.wait_after(start, re.compile(r"NBC-OUT-1 ([A-Za-z0-9+/=]*)\n"), timeout)
    return base64.b64decode(match.group(1)).decode(errors="replace")


@pytest.mark.vm
@pytest.mark.root
def test_iso_boots_to_the_installer_on_the_serial_console(live_iso: LiveIso, debian_image: Path,
                                                          tmp_path: Path) -> None:
    disk = blank_disk(tmp_path)
    with booted_iso(live_iso, log=tmp_path / "console.log", disks=[disk], timeout=BOOT_TIMEOUT) as vm:
        vm.wait_for(r"nbc-tui live: install a container image", timeout=120)  # the GRUB menu, on serial too
        grub_seconds = vm.elapsed
        vm.wait_for(TUI_FIRST_SCREEN)
        tui_seconds = vm.elapsed

        start = vm.mark()
        vm.send(CTRL_C)  # the installer asks first
        vm.wait_after(start, r"Quit the installer\?", timeout=60)
        vm.send("y")
        exited = vm.wait_after(start, TUI_EXITED, timeout=60)
        assert exited.group(1) == "0"
        vm.wait_after(exited.end(), PROMPT, timeout=30)

        medium = shell_output(vm, "findmnt -no SOURCE,FSTYPE /run/live/medium").split()
        assert medium == ["/dev/sr0", "iso9660"], medium
        # The installer runs on tty1 too (no display in this VM, but the virtual console exists).
        on_tty1 = shell_output(vm, "pgrep -a -t tty1 -f bin/nbc-tui").strip()
        assert "nbc-tui" in on_tty1, f"no nbc-tui on tty1: {on_tty1!r}"
        layers = shell_output(vm, "ls /run/live/rootfs").split()
        assert layers == ["00-base.squashfs", "10-python.squashfs", "20-nbc-tui.squashfs",
                          "30-staged.squashfs"], layers
        staged = json.loads(shell_output(vm, "nbc-tui cache list --install-images --json", timeout=120))
        assert [i["image_digest"] for i in staged["images"]] == [staged_digest(debian_image)], staged

        listing = json.loads(shell_output(vm, "nbc-tui list --json --all", timeout=120))
        disks = {d["name"]: d for d in listing["disks"]}
        assert "vda" in disks, f"the blank virtio disk is not listed: {sorted(disks)}"
        assert disks["vda"]["eligible"], disks["vda"].get("refusals")
        assert disks["vda"]["size"] == BLANK_DISK_BYTES
        if "sr0" in disks:
            assert not disks["sr0"]["eligible"]
        print(f"\nlive ISO: GRUB menu at {grub_seconds:.0f} s, installer on the serial console at "
              f"{tui_seconds:.0f} s after QEMU started, checks done at {vm.elapsed:.0f} s; "
              f"ISO build {live_iso.build_seconds:.0f} s")


@pytest.mark.vm
@pytest.mark.root
def test_iso_runs_headless_with_answers_on_the_kernel_command_line(live_iso: LiveIso, tmp_path: Path) -> None:
    disk = blank_disk(tmp_path)
    started = time.monotonic()
    with booted_iso(live_iso, log=tmp_path / "console.log", disks=[disk], timeout=BOOT_TIMEOUT,
                    kernel_args="nbc.answers=/run/nbc-test/no-such-answers.toml") as vm:
        marker = vm.wait_for(HEADLESS_EXIT)
        rc = int(marker.group(1))
        assert rc != 0, "an answer file that does not exist cannot succeed"
        assert "cannot read the answer file" in vm.console(), "nbc-tui's own message should be on the console"
        vm.wait_after(marker.end(), r"Unattended install \(nbc\.answers=", timeout=60)
        vm.wait_after(marker.end(), PROMPT, timeout=60)
        assert not TUI_FIRST_SCREEN.search(vm.console()), "the TUI must not start in an unattended boot"
        disk_untouched = disk.stat().st_blocks == 0
        print(f"\nlive ISO headless: exit marker rc={rc} after {time.monotonic() - started:.0f} s")
    assert disk_untouched, "a failed unattended run wrote to the disk"


@pytest.mark.vm
@pytest.mark.root
def test_iso_carries_staged_images(live_iso: LiveIso, debian_image: Path, tmp_path: Path) -> None:
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
    assert entries[0].split("/")[-2] == staged_digest(debian_image).replace(":", "-")


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

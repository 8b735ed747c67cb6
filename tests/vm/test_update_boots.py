"""The proof of A/B updates: a disk installed with v1 boots, updates itself from inside to v2, boots B, rolls
back to A, updates to a v3 that cannot boot and comes back on A by itself. One QEMU process per scenario, across
all its reboots (QEMU + OVMF, TCG).

Per scenario (systemd-boot on btrfs with an init that exits at once; GRUB on ext4 with a health check that
fails, that one with Debian's signed chain under OVMF enforcing Secure Boot): install ``v1`` on the host (with
a root password); boot: A runs v1; log in on the serial console; write a file under /etc; ``nbc-tui update``
to v2 from the images disk (a second virtio disk, no network); reboot: B runs v2, the /etc file, machine-id and
root's password (the login itself) are kept, v2's system user exists, ``nbc status --json`` (the ``nbc`` link)
says B good, running, default; ``nbc-tui rollback`` (before the reboot, ``update --check`` calls A's v1 no
update); reboot: A runs v1; update to the broken v3 with 2 tries; reboot: B fails twice and the loader boots A
by itself; status says B bad and that it fell back; ``update --download-only`` refuses to stage v3 again and
(without Secure Boot) stages v2, which status calls ready.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.vm.host_lock import one_host_install_at_a_time
from tests.vm.installed import (
    BOOT_TIMEOUT,
    UPDATE_TIMEOUT,
    log_in,
    next_report,
    reboot,
    run_json,
    slots,
    status,
    wait_until,
)
from tests.vm.qemu import booted
from tests.vm.signed_image import signed_chain_image
from tests.vm.update_images import ImagesDisk, UpdateImages

pytestmark = [pytest.mark.vm(minutes=10), pytest.mark.root, pytest.mark.timeout(3600)]

PASSWORD = "vm-Root-pw-4711"
USER, USER_PASSWORD, HOSTNAME, TIMEZONE = "alice", "vm-Alice-pw-0815", "nbc-box", "Europe/Berlin"
TRIES = 2
FALLBACK_TIMEOUT = TRIES * 300 + BOOT_TIMEOUT
FIGURES: dict[str, dict[str, object]] = {}
"""What the closing note quotes: update step times, fallback times, status outputs (printed with -s)."""


def nbc_tui() -> str:
    return str(Path(sys.executable).with_name("nbc-tui"))


def install_v1(images: UpdateImages, disk: Path, tmp_path: Path, *, bootloader: str, filesystem: str,
               secure_boot: bool) -> str:
    """Install v1 (with Debian's signed chain on top for ``secure_boot``, else with a host name, time zone,
    locale and an administrator); returns the reference installed."""
    password = tmp_path / "root-password"
    password.write_text(PASSWORD + "\n")
    (tmp_path / "user-password").write_text(USER_PASSWORD + "\n")
    identity = [] if secure_boot else [
        "--hostname", HOSTNAME, "--timezone", TIMEZONE, "--locale", "C.UTF-8", "--user", USER,
        "--user-password-file", str(tmp_path / "user-password"), "--user-admin"]
    ref = signed_chain_image(images.layout, tmp_path / "signed", tag="v1") if secure_boot else images.refs["v1"]
    argv = [nbc_tui(), "install", "--image", ref, "--via-loopback", str(disk), "--image-size", "7",
            "--esp-size", "512M", "--root-size", "2560M", "--var-min-size", "1G", "--filesystem", filesystem,
            "--bootloader", bootloader, "--karg", "console=ttyS0", "--root-password-file", str(password), "--yes",
            "--json", *(["--secure-boot", "require"] if secure_boot else []), *identity]
    with one_host_install_at_a_time():
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return ref


@pytest.mark.parametrize(("bootloader", "filesystem", "broken", "secure_boot"), [
    ("systemd-boot", "btrfs", "v3-noinit", False),
    # Debian's signed GRUB under OVMF enforcing Secure Boot: it loads no module from disk, so the boot
    # counting must work with what it has built in.
    ("grub", "ext4", "v3-health", True),
])
def test_update_rollback_and_fallback_across_reboots(update_images: UpdateImages, images_disk: ImagesDisk,
                                                     tmp_path: Path, bootloader: str, filesystem: str,
                                                     broken: str, secure_boot: bool) -> None:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("QEMU is not installed")
    disk = tmp_path / "disk.img"
    v1_ref = install_v1(update_images, disk, tmp_path, bootloader=bootloader, filesystem=filesystem,
                        secure_boot=secure_boot)
    figures: dict[str, object] = {}
    FIGURES[f"{bootloader}/{filesystem}" + (" (Secure Boot)" if secure_boot else "")] = figures
    log = tmp_path / "console.log"
    with booted(disk, log=log, timeout=BOOT_TIMEOUT, interactive=True, reboots=True,
                readonly_disks=[images_disk.path], secure_boot=secure_boot) as vm:
        # 1. A runs v1.
        report = next_report(vm, 0)
        assert report["version"] == "1", report
        login_from = 0
        if secure_boot:
            assert "secureboot: Secure boot enabled" in vm.console(), "the kernel did not see Secure Boot on"
        else:  # the machine's identity, set at install: the user logs in with the password
            log_in(vm, 0, USER_PASSWORD, user=USER)
            assert set(vm.shell("id -nG").split()) >= {USER, "sudo"}
            # hostnamed, timedated and localed start on demand (they need the tmpfs on /tmp the install adds:
            # without it they fail with status=226/NAMESPACE on the read-only root); under TCG the first start
            # can take longer than busctl's 25 s, so ask again until they answer.
            asked = {"hostnamectl hostname": HOSTNAME, "timedatectl show -p Timezone --value": TIMEZONE,
                     "localectl status": "LANG=C.UTF-8"}
            for command, expected in asked.items():
                wait_until(lambda c=command, e=expected: e in vm.shell(c, 90), 300, f"{command} never said {expected}")
            assert vm.shell("env -u TZ date +%Z").strip() in ("CET", "CEST")
            figures["identity"] = vm.shell("hostnamectl; timedatectl; localectl; id", 90)
            login_from = vm.mark()
            vm.send("exit\r")
        log_in(vm, login_from, PASSWORD)
        st = status(vm)
        assert (st["booted_slot"], st["default_slot"], slots(st)["B"]["state"]) == ("A", "A", "empty"), st
        vm.shell(images_disk.mount_command, 60)
        vm.shell("echo kept-across-updates > /etc/nbc-test.conf")
        vm.shell("test -f /etc/motd && echo 'Welcome to the test machine' > /etc/motd")  # v2 has v1's motd
        machine_id = vm.shell("cat /etc/machine-id").strip()
        assert re.fullmatch(r"[0-9a-f]{32}", machine_id), machine_id

        # Update to v2 from inside.
        started = time.monotonic()
        events = run_json(vm, f"nbc-tui update --image {images_disk.refs['v2']} --force", UPDATE_TIMEOUT)
        figures["update_seconds"] = round(time.monotonic() - started)
        figures["update_steps"] = events[-1]["details"]["step_seconds"]
        warnings = " ".join(e["message"] for e in events if e["type"] == "warning")
        assert "/etc/motd" not in warnings, warnings  # changed here only, not by v2: no conflict
        st = status(vm)
        figures["status_after_update"] = vm.shell("nbc-tui status")
        assert slots(st)["B"]["state"] == "trial" and slots(st)["B"]["tries_left"] == 3, st
        assert st["reboot_pending"]["pending_image_ref"] == images_disk.refs["v2"], st

        # 2. B runs v2, with what the system had.
        start = reboot(vm)
        report = next_report(vm, start, version="2")
        assert "root=UUID=" in report["cmdline"] and "panic=10" in report["cmdline"].split(), report
        log_in(vm, start, PASSWORD)
        assert vm.shell("cat /etc/nbc-test.conf") == "kept-across-updates\n"
        assert vm.shell("cat /etc/motd") == "Welcome to the test machine\n"
        assert vm.shell("cat /etc/machine-id").strip() == machine_id
        assert vm.shell("getent passwd nbc-v2").startswith("nbc-v2:x:"), "v2's system user is missing"
        assert vm.shell("getent passwd root").startswith("root:x:0:0:")
        if not secure_boot:  # who the machine is outlives the update
            assert vm.shell("cat /etc/hostname; hostname").split() == [HOSTNAME, HOSTNAME]
            assert vm.shell(f"getent passwd {USER}").startswith(f"{USER}:x:")
        wait_until(lambda: slots(status(vm))["B"]["state"] == "good", 180, "slot B was not marked good")
        st = status(vm)
        assert (st["booted_slot"], st["default_slot"]) == ("B", "B"), st
        assert st["image"] == images_disk.refs["v2"], st  # config.json switched at the good boot
        assert slots(st)["A"]["state"] == "good" and not st["fell_back"], st
        figures["status_on_b"] = vm.shell("nbc-tui status")

        # Roll back: A boots by default again. Until the reboot, updating A to the v1 it holds is no update.
        run_json(vm, "nbc-tui rollback", 120)
        if not secure_boot:  # there A holds a signed copy of v1 made on the host, which the images disk lacks
            vm.shell(images_disk.mount_command, 60)
            out = vm.shell(f"nbc-tui update --image {images_disk.refs['v1']} --check --json", 120)
            answer, _ = json.JSONDecoder().raw_decode(out, out.index("{"))
            assert answer["update_needed"] is False and "boots next: reboot" in answer["message"], out
        start = reboot(vm)
        report = next_report(vm, start, version="1")
        log_in(vm, start, PASSWORD)
        st = status(vm)
        assert (st["booted_slot"], st["default_slot"]) == ("A", "A"), st
        assert slots(st)["B"]["state"] == "good" and st["image"] == v1_ref, st
        figures["status_after_rollback"] = vm.shell("nbc-tui status")

        # Update to a v3 that cannot boot, with 2 tries: the loader gives up on B and boots A by itself.
        vm.shell(images_disk.mount_command, 60)
        run_json(vm, f"nbc-tui update --image {images_disk.refs[broken]} --force --tries {TRIES}", UPDATE_TIMEOUT)
        start = reboot(vm)
        went = time.monotonic()
        report = next_report(vm, start, version="1", timeout=FALLBACK_TIMEOUT)
        figures["fallback_seconds"] = round(time.monotonic() - went)
        tried = vm.console()[start:]
        marker = "NBC-NOINIT" if broken == "v3-noinit" else "NBC-HEALTH-FAIL"
        assert tried.count(marker) == TRIES, f"{tried.count(marker)} failed boots of B, expected {TRIES}"
        log_in(vm, start, PASSWORD)
        st = status(vm)
        assert (st["booted_slot"], st["default_slot"]) == ("A", "A"), st
        assert slots(st)["B"]["state"] == "bad" and st["fell_back"] is True, st
        assert slots(st)["A"]["state"] == "good", st
        text = vm.shell("nbc-tui status")
        assert "FELL BACK" in text, text
        figures["status_after_fallback"] = text

        # Staging: the image that failed is refused as the update refuses it; another one is staged, and
        # status calls it ready (update --download-only, nbc's way to stage, on the system it is for; once, in
        # the scenario that ends first).
        vm.shell(images_disk.mount_command, 60)
        out = vm.shell(f"nbc-tui update --image {images_disk.refs[broken]} --download-only; echo rc=$?", 120)
        assert "failed to boot from slot B" in out and out.rstrip().endswith("rc=2"), out
        if not secure_boot:
            out = vm.shell(f"nbc-tui update --image {images_disk.refs['v2']} --download-only --json",
                           UPDATE_TIMEOUT)
            staged, _ = json.JSONDecoder().raw_decode(out, out.index("{"))  # the one answer, whatever stderr says
            assert staged["success"] is True, out
            st = status(vm)
            assert st["staged_update"]["ready"] is True, st
            assert st["staged_update"]["image_digest"] == staged["image_digest"], st
        # What the harness had to do when QEMU did not come back from a reset (Vm._unstick).
        figures["stuck_resets"], figures["relaunches"] = vm.stuck_resets, vm.relaunches
    print(json.dumps(FIGURES, indent=2))

"""Encrypted installs, proven in VMs: nbc-tui runs inside a live VM (a real kernel with device-mapper),
installs the Debian test image with ``--encrypt`` onto a blank virtio disk and powers off; then the
installed disk boots under OVMF, the passphrase is typed at the prompt on the serial console, and the
system reports /, /etc, /var and /boot as the layout promises.

With ``--tpm2`` the live VM and the installed disk share one swtpm state: the disk must then unlock with
no prompt at all. The live VM runs with ``NBC_TUI_TEST_FAST_PBKDF=1`` (test only: PBKDF2 keyslots, so that
TCG does not spend minutes in argon2id). Every console line, the JSON events and the install log are
searched for the test passphrase.

Wall times on a 2-core machine under TCG: each default scenario takes about 7 minutes (install inside the
live VM about 290 s, the encrypted boot about 135 s). They install the ``preloaded`` image, whose shipped
initramfs the engine keeps; the scenarios marked slow (``NBC_TUI_VM_SLOW=1``) regenerate it with dracut
inside the VM (about 12 minutes more) or bind the TPM2 key to PCR 7.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.vm.image_builder import read_report
from tests.vm.live_builder import LiveSystem, build_live_system, make_payload
from tests.vm.qemu import Vm, booted, software_tpm

pytestmark = [pytest.mark.vm, pytest.mark.root, pytest.mark.timeout(3600)]

PASSPHRASE = "vm-luks-Secret-4711"
LIVE_TIMEOUT = 2400
BOOT_TIMEOUT = 420
PROMPT = re.compile(r"Please enter passphrase for disk")
SLOW_ENV = "NBC_TUI_VM_SLOW"
SLOW = pytest.mark.skipif(os.environ.get(SLOW_ENV) != "1",
                          reason=f"dracut in a TCG VM takes about 12 minutes: set {SLOW_ENV}=1 to run it")

FAILING_INSTALL = """\
export NBC_TUI_TEST_FAST_PBKDF=1 NBC_TUI_LOG_FILE=/run/nbc-tui.log
nbc-tui install --image {bad_image} --device /dev/vdb --encrypt --passphrase-file /payload/secrets/passphrase \\
    --esp-size 512M --root-size 2G --var-min-size 1G --filesystem {fs} --yes --json >/run/fail.jsonl 2>/dev/null
echo "NBC-FAILED rc=$? mappers=$(ls /dev/mapper | grep -vx control | tr '\\n' ,) \
mounts=$(grep -c nbc-tui /proc/mounts) loops=$(losetup -a | wc -l)"
sed 's/^/NBC-F /' /run/fail.jsonl
"""

RUN_INSTALL = """\
export NBC_TUI_TEST_FAST_PBKDF=1 NBC_TUI_LOG_FILE=/run/nbc-tui.log
start=$(date +%s)
{{ nbc-tui install --image {image} --device /dev/vdb --encrypt --passphrase-file /payload/secrets/passphrase \\
    --esp-size 512M --root-size 2G --var-min-size 1G --filesystem {fs} --bootloader {bootloader} \\
    --karg console=ttyS0 --yes --json {extra} 2>/run/install.err; echo $? >/run/install.rc; }} \\
    | tee /run/install.jsonl | grep --line-buffered '"type":"step"' | sed -u 's/^/NBC-STEP /'
rc=$(cat /run/install.rc)
echo "NBC-INSTALL rc=$rc seconds=$(( $(date +%s) - start ))"
if [ -e /run/recovery.key ]; then
    m='[cbdefghijklnrtuv]{{8}}'
    echo "NBC-RECOVERY-KEY mode=$(stat -c %a /run/recovery.key) form=$(grep -cE "^($m-){{7}}$m\\$" /run/recovery.key)"
fi
sed 's/^/NBC-J /' /run/install.jsonl
sed 's/^/NBC-E /' /run/install.err
sed 's/^/NBC-L /' /run/nbc-tui.log
echo "NBC-LEFTOVER mappers=$(ls /dev/mapper | grep -vx control | tr '\\n' ,) mounts=$(grep -c nbc-tui /proc/mounts)"
for n in 2 3 4; do echo "NBC-LUKS p$n $(cryptsetup luksUUID /dev/vdb$n 2>&1)"; done
"""


def live_install(live: LiveSystem, tmp_path: Path, *, fs: str, bootloader: str, initramfs: str, extra: str = "",
                 tpm_socket: Path | None = None, failing_first: bool = False) -> tuple[Path, str, float]:
    """Install encrypted inside the live VM; returns the target disk, the console text and the seconds.

    ``initramfs`` "preloaded" installs the image whose shipped initramfs already has what the disk needs
    (the engine keeps it); "regenerate" the one whose initramfs lacks etc-overlay (dracut runs in the VM).
    ``failing_first`` first runs an encrypted install of an image that cannot unlock LUKS onto the same disk:
    it must fail after the mappers were opened and the image extracted, and leave nothing behind for the
    real install that follows (a retry without a reboot)."""
    image = live.preloaded_ref if initramfs == "preloaded" else live.image_ref
    target = tmp_path / "target.img"
    with target.open("wb") as f:
        f.truncate(6 << 30)
    script = RUN_INSTALL.format(image=image, fs=fs, bootloader=bootloader, extra=extra)
    if failing_first:
        script = FAILING_INSTALL.format(bad_image=live.no_unlock_ref, fs=fs) + script
    payload = make_payload(tmp_path / "payload.img", script,
                           {"secrets/passphrase": PASSPHRASE.encode() + b"\n"})
    started = time.monotonic()
    with booted(live.root, snapshot=True, kernel=live.kernel, initrd=live.initrd,
                append="root=/dev/vda rw console=ttyS0 nbc.live=1", extra_disks=[target, payload],
                log=tmp_path / "live-console.log", timeout=LIVE_TIMEOUT, tpm_socket=tpm_socket) as vm:
        vm.wait_for(r"NBC-LIVE-DONE rc=\d+", LIVE_TIMEOUT)
        console = vm.console()
    return target, console, time.monotonic() - started


def events_of(console: str) -> list[dict[str, object]]:
    return [json.loads(line[len("NBC-J "):]) for line in console.splitlines() if line.startswith("NBC-J {")]


def type_passphrases(vm: Vm, until: re.Pattern[str], timeout: float) -> int:
    """Answer every passphrase prompt until ``until`` shows; returns how many prompts were answered."""
    answered = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = vm.console()
        if until.search(text):
            return answered
        if len(PROMPT.findall(text)) > answered:
            time.sleep(1)  # the prompt is printed before the password agent reads the console
            vm.send(PASSPHRASE + "\r")
            answered += 1
        time.sleep(0.5)
    vm.wait_for(until, 1)  # raises with the console tail
    return answered


def check_live_install(console: str, seconds: float, what: str) -> dict[str, str]:
    """The install inside the live VM succeeded and left nothing open; returns the LUKS UUIDs by partition."""
    rc = re.search(r"NBC-INSTALL rc=(\d+) seconds=(\d+)", console)
    events = events_of(console)
    assert rc and rc.group(1) == "0", f"install failed in the live VM: {events[-3:]}\n{console[-4000:]}"
    assert events[-1]["type"] == "complete", events[-3:]
    assert "NBC-LEFTOVER mappers= mounts=0" in console, "the install left mappers or mounts behind"
    luks_uuids = dict(re.findall(r"NBC-LUKS (p\d) ([0-9a-f-]{36})", console))
    assert set(luks_uuids) == {"p2", "p3", "p4"}, console[-2000:]
    assert PASSPHRASE not in console, "the passphrase reached the live console, the events or the log"
    print(f"{what}: install inside the live VM {seconds:.0f} s (nbc-tui itself {rc.group(2)} s)")
    return luks_uuids


def check_report(report: dict[str, str], fs: str, luks_uuids: dict[str, str], facts: str) -> None:
    cmdline = report["cmdline"].split()
    assert report["root"] == "ro", facts
    assert report["etc"] == "overlay", facts
    assert report["var"] == "mounted" and report["varfs"] == fs, facts
    assert report["boot"] == "mounted" and report["bootfs"] == "vfat", facts
    assert "root=/dev/mapper/root1" in cmdline, facts
    assert f"rd.luks.name={luks_uuids['p2']}=root1" in cmdline, facts
    assert f"rd.luks.name={luks_uuids['p4']}=var" in cmdline, facts
    assert not any(luks_uuids["p3"] in token for token in cmdline), "the inactive root is not on the cmdline"
    assert "rd.etc.overlay.var=/dev/mapper/var" in cmdline, facts


def check_initramfs_choice(console: str, initramfs: str) -> None:
    kept = "already has the etc-overlay module and can unlock LUKS" in console
    assert kept == (initramfs == "preloaded"), "the engine did not decide about the initramfs as expected"


@pytest.mark.parametrize(("fs", "bootloader", "initramfs"), [
    ("ext4", "grub", "preloaded"),
    pytest.param("btrfs", "systemd-boot", "regenerate", marks=SLOW),
])
def test_encrypted_install_boots_with_the_passphrase(debian_image: Path, tmp_path: Path, fs: str,
                                                     bootloader: str, initramfs: str) -> None:
    live = build_live_system(debian_image)
    target, console, install_seconds = live_install(live, tmp_path, fs=fs, bootloader=bootloader,
                                                    initramfs=initramfs, failing_first=True)
    failed = [json.loads(line[len("NBC-F "):]) for line in console.splitlines() if line.startswith("NBC-F {")]
    assert failed and failed[-1]["type"] == "error", console[-3000:]
    assert "cannot boot an encrypted disk" in failed[-1]["details"]["error"], failed[-1]
    assert any(e.get("step_name") == "Configuring system" for e in failed), "it should fail after extracting"
    assert "NBC-FAILED rc=2 mappers= mounts=0 loops=0" in console, "the failed install left something open"
    luks_uuids = check_live_install(console, install_seconds, f"encrypted {fs}/{bootloader}/{initramfs}")
    check_initramfs_choice(console, initramfs)

    log = tmp_path / "console.log"
    with booted(target, log=log, timeout=BOOT_TIMEOUT, interactive=True) as vm:
        prompts = type_passphrases(vm, re.compile(r"NBC-REPORT-END"), BOOT_TIMEOUT)
        report = read_report(vm, 10)
        vm.wait_for(r"login:", BOOT_TIMEOUT)
        print(f"encrypted {fs}/{bootloader}: booted to login in {vm.elapsed:.0f} s, {prompts} passphrase prompt(s)")
        boot_console = vm.console()

    check_report(report, fs, luks_uuids, f"report: {report}; console: {log}")
    assert prompts >= 1, "no passphrase was asked for: is the disk encrypted?"
    assert "root2" not in " ".join(PROMPT.findall(boot_console)), "root2 is noauto and must not be asked for"
    target.unlink()


@pytest.mark.parametrize(("fs", "bootloader", "pcrs"), [
    ("btrfs", "systemd-boot", ""),
    # Bound to PCR 7 while the live VM booted its kernel directly: the installed disk boots through GRUB
    # with the same firmware and Secure Boot state (off), so PCR 7 must be the same.
    pytest.param("ext4", "grub", "7", marks=SLOW),
])
def test_tpm2_install_unlocks_by_itself(debian_image: Path, tmp_path: Path, fs: str, bootloader: str,
                                        pcrs: str) -> None:
    """Enrolled inside the live VM against a swtpm; the installed disk then boots with the same TPM state
    and reaches the report without any passphrase prompt."""
    if shutil.which("swtpm") is None:
        pytest.skip("needs swtpm (tools/install-deps.sh)")
    live = build_live_system(debian_image)
    tpm_state = tmp_path / "tpm"
    # The TPM state carries over from the install to the boot (one machine); the firmware NVRAM starts from
    # the same template each time, so the Secure Boot variables PCR 7 measures are the same.
    extra = f"--tpm2 --tpm2-pcrs={pcrs!r} --recovery-key-file /run/recovery.key"
    with software_tpm(tpm_state) as sock:
        target, console, install_seconds = live_install(live, tmp_path, fs=fs, bootloader=bootloader,
                                                        initramfs="preloaded", extra=extra, tpm_socket=sock)
    luks_uuids = check_live_install(console, install_seconds, f"TPM2 {fs}/{bootloader}")
    assert "NBC-RECOVERY-KEY mode=600 form=1" in console, "no recovery key of systemd's form was written"
    assert re.search(r"Enrolling TPM2 for var", console), "no TPM2 enrolment was reported"
    assert f"Enrolling TPM2 for var (/dev/vdb4), {'PCR ' + pcrs if pcrs else 'no PCRs'}" in console

    log = tmp_path / "console.log"
    with software_tpm(tpm_state) as sock, booted(target, log=log, timeout=BOOT_TIMEOUT, tpm_socket=sock) as vm:
        report = read_report(vm, BOOT_TIMEOUT)
        vm.wait_for(r"login:", BOOT_TIMEOUT)
        print(f"TPM2 {fs}/{bootloader}: booted to login without a prompt in {vm.elapsed:.0f} s")
        boot_console = vm.console()
    check_report(report, fs, luks_uuids, f"report: {report}; console: {log}")
    assert f"rd.luks.options={luks_uuids['p2']}=tpm2-device=auto" in report["cmdline"].split()
    assert not PROMPT.search(boot_console), "a passphrase was asked for although the TPM2 should unlock"
    target.unlink()

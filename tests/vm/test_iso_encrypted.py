"""Encrypted installs from the live ISO, unattended, proven by booting what they wrote (QEMU + OVMF, TCG).

Each scenario boots the ISO with a blank virtio disk and a small ext4 disk labelled ``nbc-answers`` that
holds the answer file and the passphrase file, and ``nbc.answers=LABEL=nbc-answers:/answers.toml`` on the
kernel command line: the ISO's headless unit installs the staged test image (the ``preloaded`` variant,
whose shipped initramfs the engine keeps) onto the blank disk. Then the installed disk boots:

- **passphrase** (ext4 + GRUB, ``after = "poweroff"``): the ISO powers itself off after the install; the
  installed disk asks for the passphrase on the serial console, it is typed, and the system comes up.
- **TPM2** (btrfs + systemd-boot, no PCRs; ``after = "none"``): enrolled against a swtpm. At the ISO's
  shell afterwards: the recovery key file is 0600 and of systemd's form, neither secret is in the journal
  or the log, and an install onto a second disk stopped with SIGTERM in the middle of the extraction exits
  130 with its mappers closed and nothing mounted. The installed disk (the update scenarios' ``v1``, which
  carries nbc-tui) then boots with the same swtpm state and unlocks with no prompt at all; in the same QEMU
  process it updates itself to ``v2`` (root2 opened with its TPM2 token) and boots slot B, again with no
  prompt, unlocking only root2 and var.

Both check on the installed system's console that / is read-only, /etc the overlay, /var and /boot mounted,
and the kernel command line of reference §12. The ISO runs with ``NBC_TUI_TEST_FAST_PBKDF=1`` (via
``systemd.setenv``: PBKDF2 keyslots, so that TCG does not spend minutes in argon2id; test only). The
passphrase is searched for in every console line.

Opt-in (``NBC_TUI_VM_SLOW=1``): the passphrase scenario with the image as built, whose initramfs dracut
regenerates inside the VM (about 12 minutes more, from an ISO that stages both variants), and the TPM2
scenario bound to PCR 7.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.vm.image_variants import PRELOADED_TAG, ImageVariants
from tests.vm.installed import (
    BOOT_TIMEOUT,
    PASSPHRASE_PROMPT,
    UPDATE_TIMEOUT,
    boot_installed,
    check_encrypted_cmdline,
    check_layout,
    log_in,
    luks_uuids,
    next_report,
    reboot,
    run_json,
    slots,
    sparse_disk,
    status,
    wait_until,
)
from tests.vm.iso_builder import HEADLESS_EXIT, LiveIso, booted_iso, build_iso
from tests.vm.qemu import Vm, booted, software_tpm
from tests.vm.update_images import ImagesDisk, UpdateImages

pytestmark = [pytest.mark.vm(minutes=4), pytest.mark.root, pytest.mark.timeout(3600)]

PASSPHRASE = "iso-luks-Secret-4711"
ROOT_PASSWORD = "iso-Root-pw-0815"
ANSWERS_LABEL = "nbc-answers"
TARGET_BYTES = 6 << 30
"""512M ESP + 2 x 2G roots + 1G var, and slack."""
INSTALL_TIMEOUT = 2400
"""Seconds from QEMU's start to the headless exit marker (about 6 minutes under TCG here)."""
SHELL_PROMPT = re.compile(r"root@nbc-tui-live:~# ")
KERNEL_ARGS = f"nbc.answers=LABEL={ANSWERS_LABEL}:/answers.toml systemd.setenv=NBC_TUI_TEST_FAST_PBKDF=1"
RECOVERY_KEY = "/run/nbc-recovery.key"
RECOVERY_KEY_FORM = r"^([cbdefghijklnrtuv]{8}-){7}[cbdefghijklnrtuv]{8}$"
SLOW_ENV = "NBC_TUI_VM_SLOW"
SLOW = pytest.mark.skipif(os.environ.get(SLOW_ENV) != "1", reason=f"opt-in: set {SLOW_ENV}=1 to run it")


def answer_file(ref: str, digest: str, *, target: str, filesystem: str, bootloader: str, after: str,
                tpm2_pcrs: str | None = None, root_password: bool = False) -> str:
    """The answer file of a scenario: the staged image ``ref`` (``digest``), sizes that fit a small disk, a
    serial console; TPM2 bound to ``tpm2_pcrs`` ("" none, "7") unless None; root's password from the answers
    disk when ``root_password``."""
    tpm = ("" if tpm2_pcrs is None else
           f'tpm2 = true\ntpm2_pcrs = [{tpm2_pcrs}]\nrecovery_key_file = "{RECOVERY_KEY}"\n')
    system = '\n[system]\nroot_password_file = "root-password"\n' if root_password else ""
    return f"""\
version = 1
after = "{after}"

[image]
ref = "{ref}"
staged_digest = "{digest}"

[target]
wipe = true
{target}

[layout]
filesystem = "{filesystem}"
esp_size = "512M"
root_size = "2G"
var_min_size = "1G"

[boot]
bootloader = "{bootloader}"
kernel_args = ["console=ttyS0"]

[encryption]
passphrase_file = "passphrase"
{tpm}{system}"""


def answers_disk(dest: Path, answers: str) -> Path:
    """A 16 MiB ext4 disk labelled nbc-answers with answers.toml and the passphrase file (0600)."""
    tree = dest.with_suffix(".d")
    tree.mkdir()
    (tree / "answers.toml").write_text(answers)
    (tree / "passphrase").write_text(PASSPHRASE + "\n")
    (tree / "root-password").write_text(ROOT_PASSWORD + "\n")
    for secret in ("passphrase", "root-password"):
        (tree / secret).chmod(0o600)
    sparse_disk(dest, 16 << 20)
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-L", ANSWERS_LABEL, "-d", str(tree), str(dest)], check=True)
    shutil.rmtree(tree)
    return dest


def headless_exit(vm: Vm) -> tuple[int, float]:
    """Wait for the headless unit's exit marker: (exit code, seconds since QEMU started)."""
    marker = vm.wait_for(HEADLESS_EXIT, INSTALL_TIMEOUT)
    return int(marker.group(1)), vm.elapsed


def check_headless_console(console: str, rc: int, *, kept_initramfs: bool = True) -> None:
    assert rc == 0, f"the unattended install failed (exit {rc}):\n{console[-5000:]}"
    assert "Encrypting partitions" in console and "Extracting container filesystem" in console
    kept = "already has the etc-overlay module and can unlock LUKS" in console
    assert kept == kept_initramfs, "the engine did not decide about the shipped initramfs as expected"
    assert PASSPHRASE not in console, "the passphrase reached the console"


@pytest.mark.parametrize("tag", [
    PRELOADED_TAG,
    # The image as built: dracut regenerates its initramfs inside the TCG VM (about 12 minutes more).
    pytest.param("latest", marks=SLOW),
])
def test_unattended_install_boots_with_the_passphrase(live_iso: LiveIso, image_variants: ImageVariants,
                                                      tmp_path: Path, tag: str) -> None:
    if tag != PRELOADED_TAG:
        live_iso = build_iso(stage=[image_variants.preloaded_ref, image_variants.latest_ref])
    target = sparse_disk(tmp_path / "target.img", TARGET_BYTES)
    # The target by a rule, as a real answer file would: the only disk of at least 5 GB (not the answers disk,
    # not the live medium).
    ref = image_variants.preloaded_ref if tag == PRELOADED_TAG else image_variants.latest_ref
    answers = answers_disk(tmp_path / "answers.img", answer_file(
        ref, image_variants.digests[tag], target='[[target.match]]\nmin_size = "5G"', filesystem="ext4",
        bootloader="grub", after="poweroff"))
    with booted_iso(live_iso, log=tmp_path / "live-console.log", disks=[target, answers], memory="3072",
                    kernel_args=KERNEL_ARGS, timeout=INSTALL_TIMEOUT) as vm:
        rc, install_seconds = headless_exit(vm)
        vm.process.wait(timeout=180)  # after = "poweroff": the live system stops by itself
        console = vm.console()
    check_headless_console(console, rc, kept_initramfs=tag == PRELOADED_TAG)
    assert "After the install: poweroff" in console
    uuids = luks_uuids(target)

    boot = boot_installed(target, tmp_path / "console.log", timeout=BOOT_TIMEOUT, passphrase=PASSPHRASE)
    check_layout(boot.report, filesystem="ext4", facts=boot.facts)
    check_encrypted_cmdline(boot.report, uuids, boot.facts)
    assert boot.prompts >= 1, "no passphrase was asked for: is the disk encrypted?"
    assert "root2" not in " ".join(PASSPHRASE_PROMPT.findall(boot.console)), "root2 is noauto: never asked for"
    print(f"\nISO, unattended LUKS2 (ext4/GRUB): install done {install_seconds:.0f} s after QEMU started; "
          f"installed disk at login {boot.seconds:.0f} s after its start, {boot.prompts} passphrase prompt(s)")
    target.unlink()


@pytest.mark.parametrize("pcrs", [
    "",
    # Bound to PCR 7 (the Secure Boot state) while the ISO's kernel was booted directly: the installed disk
    # boots through its bootloader with the same firmware and Secure Boot state (off, the same NVRAM
    # template), so PCR 7 must read the same.
    pytest.param("7", marks=SLOW),
])
@pytest.mark.vm(minutes=8)
def test_unattended_tpm2_install_unlocks_by_itself_and_updates(live_iso_with_v1: LiveIso, image_variants: ImageVariants,
                                                               update_images: UpdateImages, images_disk: ImagesDisk,
                                                               tmp_path: Path, pcrs: str) -> None:
    """Installs ``v1`` (it carries nbc-tui), boots it with no prompt, then in the same QEMU process updates it
    from inside to v2: root2 is opened with its TPM2 token, and B boots with no prompt either, unlocking only
    itself and var."""
    if shutil.which("swtpm") is None:
        pytest.skip("needs swtpm (tools/install-deps.sh)")
    target = sparse_disk(tmp_path / "target.img", TARGET_BYTES)
    second = sparse_disk(tmp_path / "second.img", TARGET_BYTES)
    answers = answers_disk(tmp_path / "answers.img", answer_file(
        update_images.refs["v1"], update_images.digests["v1"], target='device = "/dev/vda"', filesystem="btrfs",
        bootloader="systemd-boot", after="none", tpm2_pcrs=pcrs, root_password=True))
    tpm_state = tmp_path / "tpm"  # one "chip" for the install and the installed system's boots
    with software_tpm(tpm_state) as sock, booted_iso(
            live_iso_with_v1, log=tmp_path / "live-console.log", disks=[target, second, answers], memory="3072",
            kernel_args=KERNEL_ARGS, timeout=INSTALL_TIMEOUT, tpm_socket=sock) as vm:
        rc, install_seconds = headless_exit(vm)
        vm.wait_for(SHELL_PROMPT, 120)
        check_headless_console(vm.console(), rc)
        after_install = shell_checks(vm, image_variants)
        vm.send("poweroff\r")
        vm.process.wait(timeout=180)
        console = vm.console()
    assert f"Enrolling TPM2 for var (/dev/vda4), {'PCR ' + pcrs if pcrs else 'no PCRs'}" in console
    assert PASSPHRASE not in console
    assert after_install["key"] == "mode=600 form=1", "no 0600 recovery key of systemd's form was written"
    assert after_install["secrets"] == "journal=0 recovery=0 log=0", "a secret reached the journal or the log"
    assert after_install["cancel"] == "rc=130 mappers= mounts=0", "the stopped install left something behind"
    uuids = luks_uuids(target)

    log = tmp_path / "console.log"
    with software_tpm(tpm_state) as sock, booted(target, log=log, timeout=BOOT_TIMEOUT, tpm_socket=sock,
                                                 interactive=True, reboots=True,
                                                 readonly_disks=[images_disk.path]) as vm:
        report = next_report(vm, 0, version="1")
        facts = f"report: {report}; console: {log}"
        check_layout(report, filesystem="btrfs", facts=facts)
        check_encrypted_cmdline(report, uuids, facts)
        assert f"rd.luks.options={uuids['root1']}=tpm2-device=auto" in report["cmdline"].split(), facts
        log_in(vm, 0, ROOT_PASSWORD)
        first_boot = vm.elapsed
        vm.shell(images_disk.mount_command, 60)
        events = run_json(vm, f"nbc-tui update --image {images_disk.refs['v2']} --force", UPDATE_TIMEOUT)
        assert any("as /dev/mapper/root2 with the TPM2" in e.get("message", "") for e in events), events
        start = reboot(vm)
        report = next_report(vm, start, version="2")
        facts = f"report: {report}; console: {log}"
        check_layout(report, filesystem="btrfs", facts=facts)
        check_encrypted_cmdline(report, uuids, facts, active="root2")
        log_in(vm, start, ROOT_PASSWORD)
        crypttab = vm.shell("cat /etc/crypttab")
        assert re.search(rf"^root1 UUID={uuids['root1']} none luks,noauto,tpm2-device=auto$", crypttab, re.M), crypttab
        assert re.search(rf"^root2 UUID={uuids['root2']} none luks,tpm2-device=auto$", crypttab, re.M), crypttab
        wait_until(lambda: slots(status(vm))["B"]["state"] == "good", 180, "B was not marked good")
        assert status(vm)["booted_slot"] == "B"
        console = vm.console()
    assert not PASSPHRASE_PROMPT.search(console), "a passphrase was asked for although the TPM2 should unlock"
    assert PASSPHRASE not in console and ROOT_PASSWORD not in console
    print(f"\nISO, unattended LUKS2 + TPM2 (btrfs/systemd-boot): install done {install_seconds:.0f} s after QEMU "
          f"started; installed disk at login {first_boot:.0f} s after its start, no prompt; updated to B, "
          "which booted with no prompt")
    target.unlink()


def shell_checks(vm: Vm, variants: ImageVariants) -> dict[str, str]:
    """At the ISO's shell after the TPM2 install: the recovery key file, the secrets nowhere, and an
    install onto /dev/vdb stopped with SIGTERM while it extracts (it must close and unmount everything)."""
    vm.shell(f"mkdir -p /mnt/answers && mount -o ro LABEL={ANSWERS_LABEL} /mnt/answers")
    key = vm.shell(f"echo mode=$(stat -c %a {RECOVERY_KEY}) form=$(grep -cE '{RECOVERY_KEY_FORM}' {RECOVERY_KEY})")
    # grep -F -f: the secrets come from their files, so they are never typed on the console.
    secrets = vm.shell(
        "echo journal=$(journalctl -b --no-pager -o cat | grep -cF -f /mnt/answers/passphrase)"
        f" recovery=$(journalctl -b --no-pager -o cat | grep -cF -f {RECOVERY_KEY})"
        " log=$(cat /var/log/nbc-tui/* | grep -cF -f /mnt/answers/passphrase)")
    started = time.monotonic()
    cancel = vm.shell(
        "export NBC_TUI_TEST_FAST_PBKDF=1 PYTHONUNBUFFERED=1;"
        f" nbc-tui install --local-image {variants.digests[PRELOADED_TAG]} --device /dev/vdb --encrypt"
        " --passphrase-file /mnt/answers/passphrase --esp-size 512M --root-size 2G --var-min-size 1G"
        " --filesystem ext4 --yes --json >/run/stopped.jsonl 2>/run/stopped.err & pid=$!;"
        " for i in $(seq 900); do grep -q '\"step_name\":\"Extracting container filesystem\"' /run/stopped.jsonl"
        " && break; kill -0 $pid 2>/dev/null || break; sleep 1; done; sleep 5; kill -TERM $pid; wait $pid; rc=$?;"
        # The engine mounts under /run/nbc-tui (the live system's own layers have "nbc-tui" in their names).
        " echo rc=$rc mappers=$(ls /dev/mapper | grep -vx control | tr '\\n' ,)"
        " mounts=$(grep -c ' /run/nbc-tui/' /proc/mounts)",
        timeout=1200)
    print(f"\nISO: the install stopped with SIGTERM took {time.monotonic() - started:.0f} s to run and clean up")
    if not cancel.strip().startswith("rc=130"):
        print(vm.shell("tail -n 5 /run/stopped.jsonl /run/stopped.err", timeout=60))
    return {"key": key.strip(), "secrets": secrets.strip(), "cancel": cancel.strip()}

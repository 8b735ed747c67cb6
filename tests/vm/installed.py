"""What the VM scenarios check on a disk nbc-tui installed: read on the host (the LUKS2 headers) and on the
installed system's console (the ``NBC-REPORT`` line of the test image, the passphrase prompts)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.vm.image_builder import REPORT_RE, parse_report, read_report
from tests.vm.qemu import Vm, booted

PASSPHRASE_PROMPT = re.compile(r"Please enter passphrase for disk")
"""systemd-cryptsetup's prompt on the console (it names the disk)."""
LUKS2_MAGIC = b"LUKS\xba\xbe\x00\x02"
LUKS2_UUID_OFFSET = 168
"""magic 6, version 2, header size 8, seqid 8, label 48, checksum algorithm 32, salt 64: then the UUID."""
PARTITIONS = {"root1": 2, "root2": 3, "var": 4}
REPORT_END = re.compile(r"NBC-REPORT-END")
BOOT_TIMEOUT = 420
"""Seconds from a (re)boot to the login prompt, with room for a slow machine (about 2 minutes under TCG)."""
UPDATE_TIMEOUT = 1800
"""Seconds an update inside the VM may take (about a minute for the test image under TCG)."""
LOGIN = re.compile(r"login: $", re.M)
ROOT_PROMPT = re.compile(r"root@[\w.-]+:[^\n]*# $", re.M)


def sparse_disk(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
    return path


def luks_uuids(disk: Path) -> dict[str, str]:
    """The LUKS2 UUID of root1, root2 and var on ``disk`` (a raw image), read from each partition's header.
    A partition without a LUKS2 header fails the test."""
    uuids = {}
    for name, number in PARTITIONS.items():
        info = subprocess.run(["sgdisk", "-i", str(number), str(disk)], capture_output=True, text=True,
                              check=True).stdout
        first = re.search(r"^First sector: (\d+)", info, re.MULTILINE)
        assert first, f"no partition {number} on {disk}:\n{info}"
        with disk.open("rb") as f:
            f.seek(int(first.group(1)) * 512)
            header = f.read(LUKS2_UUID_OFFSET + 40)
        assert header.startswith(LUKS2_MAGIC), f"partition {number} ({name}) of {disk} is not LUKS2"
        uuids[name] = header[LUKS2_UUID_OFFSET:].split(b"\0", 1)[0].decode()
    return uuids


def type_passphrases(vm: Vm, passphrase: str, until: re.Pattern[str], timeout: float) -> int:
    """Answer every passphrase prompt until ``until`` shows; returns how many prompts were answered."""
    answered = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = vm.console()
        if until.search(text):
            return answered
        if len(PASSPHRASE_PROMPT.findall(text)) > answered:
            time.sleep(1)  # the prompt is printed before the password agent reads the console
            vm.send(passphrase + "\r")
            answered += 1
        time.sleep(0.5)
    vm.wait_for(until, 1)  # raises with the console tail
    return answered


@dataclass(frozen=True)
class InstalledBoot:
    """What a boot of an installed disk showed, up to its login prompt."""

    report: dict[str, str]
    console: str
    seconds: float
    """From QEMU's start to the login prompt."""
    prompts: int
    """Passphrase prompts answered."""
    facts: str
    """The report and where the console log is: for assertion messages."""


def boot_installed(disk: Path, log: Path, *, timeout: float, passphrase: str | None = None,
                   tpm_socket: Path | None = None) -> InstalledBoot:
    """Boot ``disk`` under OVMF to its login prompt, typing ``passphrase`` at every prompt when given."""
    with booted(disk, log=log, timeout=timeout, interactive=passphrase is not None, tpm_socket=tpm_socket) as vm:
        prompts = type_passphrases(vm, passphrase, REPORT_END, timeout) if passphrase is not None else 0
        report = read_report(vm, timeout)
        vm.wait_for(r"login:", timeout)
        return InstalledBoot(report, vm.console(), vm.elapsed, prompts, f"report: {report}; console: {log}")


def check_layout(report: dict[str, str], *, filesystem: str, facts: str) -> None:
    """/ read-only, /etc the overlay, /var and /boot (the ESP) mounted: what the layout promises."""
    assert report["root"] == "ro", facts
    assert report["etc"] == "overlay", facts
    assert report["rootfs"] == filesystem, facts
    assert report["var"] == "mounted" and report["varfs"] == filesystem, facts
    assert report["boot"] == "mounted" and report["bootfs"] == "vfat", facts
    assert "console=ttyS0" in report["cmdline"].split(), facts


def check_encrypted_cmdline(report: dict[str, str], uuids: dict[str, str], facts: str, *,
                            active: str = "root1") -> None:
    """Reference §12: the active root and var by LUKS UUID, the inactive root nowhere (it stays locked)."""
    cmdline = report["cmdline"].split()
    inactive = "root2" if active == "root1" else "root1"
    assert f"root=/dev/mapper/{active}" in cmdline, facts
    assert f"rd.luks.name={uuids[active]}={active}" in cmdline, facts
    assert f"rd.luks.name={uuids['var']}=var" in cmdline, facts
    assert not any(uuids[inactive] in token for token in cmdline), "the inactive root is not on the cmdline"
    assert "rd.etc.overlay.var=/dev/mapper/var" in cmdline, facts


# -- a logged-in system across its reboots (booted with reboots=True, interactive=True) ------------------

def next_report(vm: Vm, start: int, *, version: str | None = None, timeout: float = BOOT_TIMEOUT) -> dict[str, str]:
    """The first NBC-REPORT line after ``start`` (of ``version`` when given)."""
    pattern = REPORT_RE if version is None else re.compile(rf"NBC-REPORT (root=[^\n]*? version={re.escape(version)} "
                                                           r"cmdline=.*?)\r?\n")
    return parse_report(vm.wait_after(start, pattern, timeout).group(1))


def log_in(vm: Vm, start: int, password: str, user: str = "root") -> None:
    """On the serial console, as ``user`` (root by default) with ``password`` (the one set at install: it must
    work after every update), from the login prompt that shows after ``start``."""
    vm.wait_after(start, LOGIN, BOOT_TIMEOUT)
    mark = vm.mark()
    vm.send(f"{user}\r")
    vm.wait_after(mark, r"Password: ", 60)
    vm.send(password + "\r")
    if user == "root":
        vm.wait_after(mark, ROOT_PROMPT, 120)
        vm.shell("dmesg -n 1")  # kernel messages would land in the middle of a command's output line
    else:
        # bash's prompt, or a bare "$ " (Debian's useradd gives new users /bin/sh)
        vm.wait_after(mark, re.compile(rf"(?:{re.escape(user)}@[\w.-]+:[^\n]*)?\$ $", re.M), 120)


def reboot(vm: Vm) -> int:
    """Reboot the logged-in system (booted with ``reboots=True``); returns the console mark to wait after."""
    start = vm.mark()
    vm.send("systemctl reboot\r")
    return start


def status(vm: Vm) -> dict:
    """``nbc status --json`` through the ``nbc`` link the image ships (scripts written for nbc keep working)."""
    out = vm.shell("nbc status --json --offline", 120)
    return json.loads(out)


def slots(st: dict) -> dict[str, dict]:
    return {s["slot"]: s for s in st["slots"]}


def run_json(vm: Vm, command: str, timeout: float) -> list[dict]:
    """Run an nbc-tui command with ``--json`` in the VM; its events, the last one ``complete``."""
    out = vm.shell(f"{command} --json", timeout)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert events and events[-1]["type"] == "complete", out[-4000:]
    return events


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} after {timeout:.0f} s")
        time.sleep(5)

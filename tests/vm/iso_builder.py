"""Build (or reuse) the nbc-tui live ISO with ``iso/build.sh``, and boot it in QEMU + OVMF (TCG).

    live = build_iso()                                   # cached: instant when nothing changed
    with booted_iso(live, log=tmp_path / "console.log", disks=[blank]) as vm:
        vm.wait_for(TUI_FIRST_SCREEN, timeout=300)       # the installer on the serial console
        vm.send(CTRL_C)

``build_iso`` runs the build script (which caches every layer under ``/var/cache/nbc-tui-iso``, or
``$NBC_TUI_ISO_CACHE``) and returns the ISO with the kernel, initrd and kernel arguments beside it.
``booted_iso`` boots it as a CD-ROM through OVMF and the ISO's own GRUB menu, or, given ``kernel_args``,
its kernel directly with the ISO's arguments plus those (how a test passes ``nbc.answers=...``); the
ISO is attached as the CD-ROM either way, so live-boot finds its medium. The serial console is a socket:
everything the guest writes is appended to ``log`` (read with the usual :class:`~tests.vm.qemu.Vm`
methods), and :meth:`Vm.send` types on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.vm.qemu import OVMF_VARS, OVMF_VARS_MS, Vm, option_path, qemu_argv, require_qemu, stop_qemu

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "iso" / "build.sh"
ISO_CACHE_ENV = "NBC_TUI_ISO_CACHE"
DEFAULT_ISO_CACHE = Path("/var/cache/nbc-tui-iso")
BUILD_TIMEOUT = 3600
"""Seconds a cold build may take (debootstrap and ~100 packages: about 8 minutes here)."""

TUI_FIRST_SCREEN = re.compile(r"install a bootable container image")
"""Text of the installer's first (welcome) screen."""
HEADLESS_EXIT = re.compile(r"NBC-TUI-HEADLESS-EXIT=(\d+)")
"""The line the live system's headless unit prints when ``nbc-tui --headless`` has exited."""
TUI_EXITED = re.compile(r"nbc-tui exited \(code (\d+)\)")
"""What the live system's login shell prints when the installer exits (a prompt follows)."""
CTRL_C = b"\x03"


class IsoBuildError(RuntimeError):
    """iso/build.sh failed; the message ends with the tail of its output."""


@dataclass(frozen=True)
class LiveIso:
    """A built ISO and what a direct kernel boot of it needs."""

    iso: Path
    kernel: Path
    initrd: Path
    cmdline: str
    """The kernel arguments of the ISO's default boot entry."""
    build_seconds: float
    """How long this call took (0 when the ISO was cached)."""


def iso_cache() -> Path:
    return Path(os.environ.get(ISO_CACHE_ENV) or DEFAULT_ISO_CACHE)


def build_iso(stage: Sequence[str] = (), *, cache: Path | None = None,
              timeout: float = BUILD_TIMEOUT) -> LiveIso:
    """Build the ISO (or reuse the cached one) with ``stage`` images for offline installs; needs root."""
    if os.geteuid() != 0:
        raise IsoBuildError("building the live ISO needs root (debootstrap, chroot, overlay mounts)")
    argv = [str(BUILD_SCRIPT), "--cache", str(cache or iso_cache())]
    for ref in stage:
        argv += ["--stage", ref]
    started = time.monotonic()
    with tempfile.TemporaryFile(mode="w+") as err:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=err, text=True, timeout=timeout, check=False)
        err.seek(0)
        output = err.read()
    if done.returncode != 0 or not done.stdout.strip():
        tail = "\n".join(output.splitlines()[-40:])
        raise IsoBuildError(f"{' '.join(argv)} exited with {done.returncode}:\n{tail}")
    iso = Path(done.stdout.strip().splitlines()[-1])
    info = json.loads((iso.parent / "info.json").read_text())
    cached = "ISO cached" in output
    return LiveIso(iso=iso, kernel=Path(info["kernel"]), initrd=Path(info["initrd"]), cmdline=info["cmdline"],
                   build_seconds=0.0 if cached else round(time.monotonic() - started, 1))


@contextlib.contextmanager
def booted_iso(live: LiveIso, *, log: Path, disks: Sequence[Path] = (), kernel_args: str | None = None,
               memory: str = "2048", timeout: float = 300, tpm_socket: Path | None = None,
               extra_args: Sequence[str] = (), secure_boot: bool = False, as_disk: bool = False) -> Iterator[Vm]:
    """Boot ``live`` with ``disks`` as virtio disks; yield a Vm; always stop QEMU on exit.

    ``kernel_args`` None: UEFI boot from the CD-ROM through OVMF and the ISO's GRUB (its default entry).
    A string: the ISO's kernel and initrd booted directly with its arguments plus ``kernel_args``.
    ``tpm_socket``: a TPM 2.0 backed by a running swtpm (:func:`~tests.vm.qemu.software_tpm`).
    ``extra_args`` go to QEMU as they are (a display: ``-device VGA``). ``secure_boot``: OVMF enforcing Secure
    Boot (Microsoft's keys). ``as_disk``: the ISO is a virtio disk (a USB stick), not a CD-ROM."""
    require_qemu()
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    log.touch()
    qemu_log = log.with_name(log.name + ".qemu")
    with tempfile.TemporaryDirectory(prefix="nbc-iso-vm-") as tmp:
        vars_file = Path(tmp) / "OVMF_VARS_4M.fd"
        shutil.copyfile(OVMF_VARS_MS if secure_boot else OVMF_VARS, vars_file)
        sock_path = Path(tmp) / "serial.sock"
        direct = kernel_args is not None
        # The serial port is a socket QEMU waits on before it starts the guest, so nothing printed is lost.
        argv = qemu_argv(None, log=log, vars_file=vars_file, memory=memory, extra_disks=disks,
                         kernel=live.kernel if direct else None, initrd=live.initrd if direct else None,
                         append=f"{live.cmdline} {kernel_args}".strip() if direct else None,
                         console_socket=sock_path, tpm_socket=tpm_socket, secure_boot=secure_boot)
        # The CD-ROM on virtio-scsi (OVMF and the live initramfs both drive it): several times faster
        # under TCG than the q35 board's emulated AHCI. A direct kernel boot takes bootindex 0 itself;
        # else the CD-ROM comes before the disks.
        if as_disk:
            argv += ["-drive", f"if=none,id=live,format=raw,readonly=on,file={option_path(live.iso)}",
                     "-device", "virtio-blk-pci,drive=live" + ("" if direct else ",bootindex=0")]
        else:
            argv += ["-drive", f"if=none,id=live,media=cdrom,format=raw,readonly=on,file={option_path(live.iso)}",
                     "-device", "virtio-scsi-pci,id=scsi0",
                     "-device", "scsi-cd,bus=scsi0.0,drive=live" + ("" if direct else ",bootindex=0")]
        argv += [*extra_args]
        qemu_log.write_bytes(b"")
        vm = Vm(argv, log, qemu_log, timeout, console_socket=sock_path)  # started, its console attached
        try:
            yield vm
        finally:
            stop_qemu(vm.process)
            vm.disconnect()



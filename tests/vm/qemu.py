"""Boot a raw disk image (or a kernel directly) in QEMU with OVMF under TCG, and read its serial console.

    with booted(disk, log=tmp_path / "console.log") as vm:
        vm.wait_for(r"login:", timeout=300)

The console goes to ``log`` (a plain file, kept for the test report); QEMU's own messages go to
``<log>.qemu``. QEMU is always killed when the block exits, whatever happened inside it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

QEMU = "qemu-system-x86_64"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
# Secure Boot enforced with Microsoft's keys enrolled (ovmf's README.Debian); the code needs SMM (q35, smm=on).
OVMF_CODE_SECBOOT = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
OVMF_VARS_MS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
DEFAULT_TIMEOUT = 300.0
"""Seconds a wait_for waits by default: a TCG boot takes about a minute, a slow CI machine more."""
GUEST_CPUS = 1
"""vCPUs of a guest. The VM tier runs two guests at a time on two cores: with one vCPU each, every vCPU thread
has a core, where two each had four threads take turns (a guest's spinning vCPU waiting for a preempted one).
The tier took 25:04 with one (2026-12-07), 25:32 to 27:27 in the three runs before with two; and no secondary
vCPU is left to calibrate its delay loop wrong (see test_image_builder.PANIC_WAIT)."""
TAIL_LINES = 60
POLL_SECONDS = 0.5
RESET_REQUEST = re.compile(r"(reboot: Restarting system|reboot: machine restart|Rebooting in \d+ seconds\.*)\s*$")
"""The guest's last words before it resets the machine (a reboot, or a panic with panic=N)."""
STUCK_RESET_SECONDS = 60.0
"""Silence after a reset request that means QEMU did not reset: OVMF prints within seconds of one."""
LOADER_STARTED = re.compile(r"Welcome to GRUB!(\x1b\[[0-9;]*m|\s)*$")
"""GRUB's first words, when nothing followed them: it clears the screen and draws its menu or its messages
within seconds (under TCG with Secure Boot too), so ``stuck_after`` of silence after them means a frozen
machine."""
KERNEL_STARTED = re.compile(r"Linux version \d")
"""A kernel's first line: a machine that prints it after a reset came back from the reset."""


def stall_remedy(tail: str, silent_for: float, stuck_after: float, *,
                 reset_tried: bool) -> Literal["reset", "relaunch"] | None:
    """What the harness does about a console whose last words are ``tail`` and that has been silent for
    ``silent_for`` seconds (see Vm._unstick): nothing yet, press reset, or start QEMU again. ``reset_tried``:
    reset was pressed and no kernel has started since."""
    if RESET_REQUEST.search(tail):
        if silent_for < stuck_after:
            return None
        return "relaunch" if reset_tried else "reset"
    if LOADER_STARTED.search(tail) and silent_for >= stuck_after:
        return "relaunch"  # a reset came back to the same frozen loader (2026-12-07)
    return None


class VmError(AssertionError):
    """The VM did not show what was awaited (timeout or QEMU exit); the message holds the console tail."""


class Vm:
    """A running QEMU whose serial console is written to ``log``."""

    def __init__(self, argv: Sequence[str], log: Path, qemu_log: Path, timeout: float,
                 qmp: Path | None = None, console_socket: Path | None = None) -> None:
        self.argv = list(argv)
        self.log = log
        self.qemu_log = qemu_log
        self.timeout = timeout
        self.qmp = qmp
        self.console_socket = console_socket
        self.stuck_after = STUCK_RESET_SECONDS
        """Seconds of silence after a reset request that count as a stuck reset (see _unstick)."""
        self.stuck_resets = 0
        """Times the guest asked for a reset and QEMU sat silent until the harness reset it (see _unstick)."""
        self.relaunches = 0
        """Times a reset from the monitor did not help either and the harness started QEMU again (_unstick)."""
        self._quiet_since = (0, time.monotonic())
        self._reset_pressed = False
        self._reset_at = 0
        """The console's length when the harness last pressed reset: a kernel starting after it means it helped."""
        self.started = time.monotonic()
        self.process = self._launch()

    def _launch(self) -> subprocess.Popen[bytes]:
        """Start QEMU with ``argv`` (its messages appended to ``qemu_log``) and attach to its console."""
        with self.qemu_log.open("ab") as err:  # appending: the harness adds its own lines (_unstick)
            self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        if self.console_socket is not None:
            try:
                self.connect(self.console_socket)
            except BaseException:
                stop_qemu(self.process)
                raise
        return self.process

    _sock: socket.socket | None = None

    def connect(self, path: Path, timeout: float = 30) -> None:
        """Attach to the serial port's socket; a thread copies what the guest writes to ``log``."""
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                break
            except OSError:
                sock.close()
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise VmError(self._explain(f"cannot connect to the console socket {path}")) from None
                time.sleep(0.1)
        self._sock = sock
        threading.Thread(target=self._drain, args=(sock,), daemon=True).start()

    def _drain(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError), self.log.open("ab") as out:
            while data := sock.recv(65536):
                out.write(data)
                out.flush()

    def disconnect(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def send(self, text: str | bytes) -> None:
        """Type ``text`` on the serial console (booted with ``interactive=True``; "\\r" is Enter)."""
        if self._sock is None:
            raise VmError("the console is not interactive: boot with interactive=True")
        self._sock.sendall(text.encode() if isinstance(text, str) else text)

    @property
    def elapsed(self) -> float:
        """Seconds since QEMU was started."""
        return time.monotonic() - self.started

    def console(self) -> str:
        """Everything the guest wrote to its serial port so far (carriage returns removed)."""
        if not self.log.exists():
            return ""
        return self.log.read_bytes().decode("utf-8", "replace").replace("\r", "")

    def tail(self, lines: int = TAIL_LINES) -> str:
        """The last ``lines`` lines of the console."""
        return "\n".join(self.console().splitlines()[-lines:])

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float | None = None) -> re.Match[str]:
        """Poll the whole console until ``pattern`` matches; raise VmError with the console tail if it
        does not within ``timeout`` seconds (default: the one given to booted()) or if QEMU exits."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            if match := regex.search(self.console()):
                return match
            if self.process.poll() is not None:
                if match := regex.search(self.console()):  # written just before it exited
                    return match
                raise VmError(self._explain(f"QEMU exited with code {self.process.returncode} before "
                                            f"{regex.pattern!r} appeared on the console"))
            if time.monotonic() >= deadline:
                raise VmError(self._explain(f"no {regex.pattern!r} on the console after {limit:.0f} s"))
            self._unstick()
            time.sleep(POLL_SECONDS)

    def mark(self) -> int:
        """The console's length now: pass it to :meth:`wait_after` to match only what comes later."""
        return len(self.console())

    def wait_after(self, start: int, pattern: str | re.Pattern[str], timeout: float | None = None) -> re.Match[str]:
        """Like wait_for, but matching only what the console printed after ``start`` (from :meth:`mark`)."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            if match := regex.search(self.console(), start):
                return match
            if self.process.poll() is not None:
                raise VmError(self._explain(f"QEMU exited with code {self.process.returncode} before "
                                            f"{regex.pattern!r} appeared on the console"))
            if time.monotonic() >= deadline:
                raise VmError(self._explain(f"no {regex.pattern!r} on the console after {limit:.0f} s"))
            self._unstick()
            time.sleep(POLL_SECONDS)

    def shell(self, command: str, timeout: float = 60) -> str:
        """Run ``command`` at the shell prompt (the live system's, or one logged in to); return its stdout and
        stderr. The output travels base64-encoded on one marker line, so nothing the terminal does to it
        (wrapping, CRLF) matters, and a secret a command handles never shows on the console as itself; the
        marker's "$((1))" is "1" only in the output, never in the echo of the typed line."""
        start = self.mark()
        self.send(f"echo NBC-OUT-$((1)) $({{ {command}; }} 2>&1 | base64 -w0)\r")
        # No output: echo prints the marker alone (the empty word is dropped).
        match = self.wait_after(start, re.compile(r"NBC-OUT-1 ?([A-Za-z0-9+/=]*)\n"), timeout)
        return base64.b64decode(match.group(1)).decode(errors="replace")

    def _unstick(self) -> None:
        """Reset the machine when the guest asked for a reset and nothing followed, or froze in its loader.

        Under TCG with 2 vCPUs, QEMU 7.2 now and then never comes back from a guest's reset: the console stops at
        "reboot: Restarting system" for good (seen in CI on 2026-12-05, twice, in the GRUB update scenario's first
        reboot; every other reset of those runs came back within seconds, and the same disk boots at once in a new
        QEMU). Or the reset comes back and the machine freezes right after "Welcome to GRUB!" (CI, 2026-12-06 and
        2026-12-07, the GRUB scenario under Secure Boot, after a guest's reboot): on 2026-12-07 two resets from the
        monitor each came back to the same freeze, and the very disk and firmware variables of the stall reached
        GRUB's menu in 10 s in a new QEMU. GRUB freezes before it runs its grub.cfg (a slot on trial still has the
        try the frozen boot would have counted down). The guest did its part (what boots next is the firmware's and the
        loader's business, which the tests check), so the harness does what a person would:

        - after ``stuck_after`` seconds of silence following a reset request, it presses the reset button (QMP
          system_reset, counted in ``stuck_resets``);
        - when that does not help (no kernel has started since: the console stays silent, or stalls again) or the
          monitor does not answer, and at once for a loader silent as long after its first words, it pulls the
          plug and starts QEMU again on the same disks, firmware variables and TPM (counted in ``relaunches``).

        Each step is written to the QEMU log, and the firmware variables of the stall are kept beside it for a
        post-mortem. Booted with ``reboots=True`` only (otherwise QEMU exits on a reset)."""
        if self.qmp is None:
            return
        size = self.log.stat().st_size if self.log.exists() else 0
        if size != self._quiet_since[0]:
            if self._reset_pressed and KERNEL_STARTED.search(self.console(), self._reset_at):
                self._reset_pressed = False  # the reset helped: a kernel started after it
            self._quiet_since = (size, time.monotonic())
            return
        tail = self.console()[-400:]
        remedy = stall_remedy(tail, time.monotonic() - self._quiet_since[1], self.stuck_after,
                              reset_tried=self._reset_pressed)
        if remedy is None:
            return
        self._quiet_since = (size, time.monotonic())  # once per stall
        self._keep_firmware_variables()
        stall = f"silence after {tail.strip()[-40:]!r} ({self.elapsed:.0f} s after start)"
        if remedy == "reset":
            self._reset_pressed, self._reset_at = True, len(self.console())
            self.stuck_resets += 1
            outcome = qmp_command(self.qmp, "system_reset")
            self._note(f"{stall}: QMP system_reset: {outcome}")
            if '"return"' in outcome:
                return
        self.relaunches += 1
        self._note(f"{stall}: QEMU stopped and started again")
        stop_qemu(self.process)
        self.disconnect()
        self._reset_pressed = False
        self._launch()

    def _keep_firmware_variables(self) -> None:
        for arg in self.argv:
            if arg.startswith("if=pflash,") and "unit=1" in arg:
                shutil.copyfile(arg.rsplit("file=", 1)[1].replace(",,", ","),
                                self.log.with_name(self.log.name + ".vars-at-stall"))

    def _note(self, line: str) -> None:
        with self.qemu_log.open("a") as out:
            out.write(f"[test harness] {line}\n")

    def _explain(self, what: str) -> str:
        qemu = self.qemu_log.read_text(errors="replace").strip() if self.qemu_log.exists() else ""
        return (f"{what} ({self.elapsed:.0f} s after start).\n"
                f"--- last {TAIL_LINES} lines of {self.log} ---\n{self.tail()}\n--- end of console ---"
                + (f"\nQEMU said: {qemu}" if qemu else ""))


def qemu_argv(disk: Path | None, *, log: Path, vars_file: Path, memory: str = "2048", smp: int = GUEST_CPUS,
              kernel: Path | None = None, initrd: Path | None = None, append: str | None = None,
              extra_disks: Sequence[Path] = (), readonly_disks: Sequence[Path] = (), snapshot: bool = False,
              tpm_socket: Path | None = None, console_socket: Path | None = None, reboots: bool = False,
              secure_boot: bool = False) -> list[str]:
    """The QEMU command line: q35, TCG, no network, no display, OVMF, virtio disks, serial to ``log``.

    ``snapshot`` attaches ``disk`` with writes going to a temp overlay (a cached image stays untouched);
    ``readonly_disks`` come after ``extra_disks``, read-only: a file other QEMUs read at the same time (the
    images disk; QEMU refuses a file another QEMU holds open for writing);
    ``tpm_socket`` adds a TPM 2.0 (tpm-tis) backed by a running swtpm's control socket;
    ``console_socket`` makes the serial port a unix socket (for typing into it); :class:`Vm` logs it;
    ``reboots``: a reboot of the guest restarts it in the same QEMU process (else QEMU exits on it);
    ``secure_boot``: OVMF's Secure Boot build, enforcing (``vars_file`` must be a copy of OVMF_VARS_MS)."""
    firmware = OVMF_CODE_SECBOOT if secure_boot else OVMF_CODE
    # The Secure Boot firmware keeps its variables in SMM-protected flash (edk2 OvmfPkg/README, "SMM support").
    smm = ["-global", "driver=cfi.pflash01,property=secure,value=on", "-global", "ICH9-LPC.disable_s3=1"]
    argv = [
        QEMU, "-machine", "q35,smm=on" if secure_boot else "q35", *(smm if secure_boot else []),
        "-accel", "tcg", "-m", memory, "-smp", str(smp), "-nic", "none",
        # -nodefaults drops the default CD-ROM, VGA and monitor the guest would spend time probing;
        # virtio-rng lets the guest's entropy pool fill at once instead of stalling systemd for seconds.
        "-nodefaults", "-display", "none", *([] if reboots else ["-no-reboot"]), "-device", "virtio-rng-pci",
        # With a socket, QEMU waits for the test to connect before it starts the guest; the test writes what
        # it reads to ``log`` (QEMU's own logfile= option repeated bytes on a busy socket).
        # A file console is appended to, so a QEMU started again (Vm._unstick) continues the same log.
        "-chardev", (f"socket,id=ser0,path={option_path(console_socket)},server=on,wait=on" if console_socket
                     else f"file,id=ser0,path={option_path(log)},append=on"),
        "-serial", "chardev:ser0",
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={option_path(firmware)}",
        "-drive", f"if=pflash,format=raw,unit=1,file={option_path(vars_file)}",
    ]
    if disk:
        argv += ["-drive", f"if=virtio,format=raw,cache=unsafe,file={option_path(disk)}"
                 + (",snapshot=on" if snapshot else "")]
    for path in extra_disks:
        argv += ["-drive", f"if=virtio,format=raw,cache=unsafe,file={option_path(path)}"]
    for path in readonly_disks:
        argv += ["-drive", f"if=virtio,format=raw,readonly=on,file={option_path(path)}"]
    if tpm_socket:
        argv += ["-chardev", f"socket,id=chrtpm,path={option_path(tpm_socket)}",
                 "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0"]
    if kernel:
        argv += ["-kernel", str(kernel)]
        if initrd:
            argv += ["-initrd", str(initrd)]
        if append:
            argv += ["-append", append]
    return argv


@contextlib.contextmanager
def booted(disk: Path | None, *, log: Path, memory: str = "2048", timeout: float = DEFAULT_TIMEOUT,
           smp: int = GUEST_CPUS, kernel: Path | None = None, initrd: Path | None = None, append: str | None = None,
           extra_disks: Sequence[Path] = (), readonly_disks: Sequence[Path] = (), snapshot: bool = False,
           tpm_socket: Path | None = None, vars_file: Path | None = None, interactive: bool = False,
           reboots: bool = False, secure_boot: bool = False) -> Iterator[Vm]:
    """Start QEMU on ``disk`` (UEFI boot through OVMF), or on ``kernel``/``initrd``/``append`` directly
    with ``disk`` as /dev/vda; yield the Vm; always kill QEMU on exit. ``timeout`` is wait_for's default.
    ``vars_file``: an OVMF NVRAM to use (and keep) instead of a fresh copy, for boots that must see the
    same firmware state (TPM PCR 7). ``interactive``: the console also takes input (:meth:`Vm.send`).
    ``reboots``: the guest's reboots stay in this QEMU process (one process per scenario, across its boots).
    ``secure_boot``: OVMF enforcing Secure Boot with Microsoft's keys (a fresh copy of its enrolled NVRAM)."""
    require_qemu()
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    qemu_log = log.with_name(log.name + ".qemu")
    with tempfile.TemporaryDirectory(prefix="nbc-vm-") as tmp:
        if vars_file is None:
            vars_file = Path(tmp) / "OVMF_VARS_4M.fd"  # a fresh NVRAM per boot: firmware writes to it
            shutil.copyfile(OVMF_VARS_MS if secure_boot else OVMF_VARS, vars_file)
        argv = qemu_argv(disk, log=log, vars_file=vars_file, memory=memory, smp=smp, kernel=kernel,
                         initrd=initrd, append=append, extra_disks=extra_disks,
                         readonly_disks=readonly_disks, snapshot=snapshot,
                         tpm_socket=tpm_socket, console_socket=Path(tmp) / "console.sock" if interactive else None,
                         reboots=reboots, secure_boot=secure_boot)
        qmp = Path(tmp) / "qmp.sock" if reboots else None
        if qmp is not None:
            argv += ["-qmp", f"unix:{option_path(qmp)},server=on,wait=off"]
        qemu_log.write_bytes(b"")
        vm = Vm(argv, log, qemu_log, timeout, qmp=qmp,
                console_socket=Path(tmp) / "console.sock" if interactive else None)
        try:
            yield vm
        finally:
            stop_qemu(vm.process)
            vm.disconnect()


def require_qemu() -> None:
    """QEMU and the OVMF firmware are installed (tools/install-deps.sh), else a VmError saying which."""
    for needed in (OVMF_CODE, OVMF_VARS, OVMF_CODE_SECBOOT, OVMF_VARS_MS):
        if not needed.exists():
            raise VmError(f"{needed} is missing: install the 'ovmf' package")
    if shutil.which(QEMU) is None:
        raise VmError(f"{QEMU} is missing: install the 'qemu-system-x86' package")


def qmp_command(path: Path, command: str, timeout: float = 10) -> str:
    """Run one QMP ``command`` on QEMU's monitor socket; its reply, or why there was none."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            reader = sock.makefile("r")
            reader.readline()  # the greeting
            for execute in ("qmp_capabilities", command):
                sock.sendall(json.dumps({"execute": execute}).encode() + b"\n")
                while "return" not in (reply := json.loads(reader.readline() or "{}")) and "error" not in reply:
                    if not reply:
                        return "the monitor closed"
            return json.dumps(reply)
    except (OSError, ValueError) as error:
        return f"no answer: {error}"


def stop_qemu(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def option_path(path: Path) -> str:
    """A path inside a QEMU option value, where a comma must be doubled."""
    return str(path).replace(",", ",,")


@contextlib.contextmanager
def software_tpm(state: Path) -> Iterator[Path]:
    """A swtpm TPM 2.0 keeping its state in ``state`` (reuse the directory to boot the same "chip" again);
    yields the control socket for :func:`booted`'s ``tpm_socket``. Always stopped on exit."""
    if shutil.which("swtpm") is None:
        raise VmError("swtpm is missing: install the 'swtpm' package")
    state.mkdir(parents=True, exist_ok=True)
    sock = state / "swtpm.sock"
    sock.unlink(missing_ok=True)
    with (state / "swtpm.log").open("ab") as out:
        process = subprocess.Popen(["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}",
                                    "--ctrl", f"type=unixio,path={sock}"],
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise VmError(f"swtpm did not start (see {state / 'swtpm.log'})")
            time.sleep(0.05)
        yield sock
    finally:
        stop_qemu(process)

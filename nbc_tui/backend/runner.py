"""The one external-command runner: argv lists only, secrets on stdin, output captured, one log line per call.

Every tool nbc-tui runs goes through :func:`run` (the only importer of ``subprocess`` in the engine), so
that redaction, dry-run, timeouts and cancellation are decided in one place.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from pydantic import SecretStr

from .errors import Cancelled, CommandFailed, InputError, NbcError

log = logging.getLogger("nbc_tui")

# The child environment is an allowlist: nothing of the caller's environment (tokens, passwords) leaks
# into tools or into an environment dump of them.
_ENV_KEEP = ("PATH", "TERM", "TMPDIR", "SYSTEMD_LOG_LEVEL")
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REDACTED = "<redacted>"
T = TypeVar("T")


class Redactor:
    """Masks every registered secret in text. Secrets are registered as soon as they are read."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str | SecretStr | None) -> None:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if value and len(value) >= 3:
            with self._lock:
                self._secrets.add(value)
                stripped = value.strip()
                if len(stripped) >= 3:
                    self._secrets.add(stripped)

    def __call__(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, REDACTED)
        return text

    def join(self, argv: Sequence[str | os.PathLike[str]]) -> str:
        return self(shlex.join(str(a) for a in argv))


class ShapeRedactor(Redactor):
    """Another redactor plus a pattern: masks a secret by its shape. For tool output that carries a secret
    the runner logs as the tool returns, before it can be read and registered (a credential helper's
    reply, a generated recovery key)."""

    def __init__(self, inner: Redactor, pattern: re.Pattern[str], replacement: str = REDACTED) -> None:
        super().__init__()
        self._inner = inner
        self._pattern = pattern
        self._replacement = replacement

    def add(self, secret: str | SecretStr | None) -> None:
        self._inner.add(secret)

    def __call__(self, text: str) -> str:
        return self._pattern.sub(self._replacement, self._inner(text))


class RedactingFilter(logging.Filter):
    """A logging filter that runs every record through a :class:`Redactor` (attached to the log file)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor(record.getMessage())
        record.args = None
        return True


@dataclass
class Completed:
    argv: list[str]
    returncode: int
    stdout: bytes
    stderr: bytes
    skipped: bool = False

    @property
    def out(self) -> str:
        return self.stdout.decode(errors="replace")


@dataclass
class RunContext:
    """What every command needs: dry-run, redaction, cancellation, and where tool output goes."""

    dry_run: bool = False
    redactor: Redactor = field(default_factory=Redactor)
    cancel: threading.Event = field(default_factory=threading.Event)
    # Called with each (redacted) line of tool output, for --verbose and the TUI's log pane.
    on_output: Callable[[str], None] | None = None
    env_extra: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
        env.setdefault("PATH", _DEFAULT_PATH)
        env["LANG"] = env["LC_ALL"] = "C.UTF-8"
        env.update(self.env_extra)
        return env

    def masking(self, shape: re.Pattern[str], replacement: str = REDACTED, *, shown: bool = False) -> RunContext:
        """This context for a tool whose output carries a secret not known yet (so not registered yet: the
        runner logs output as it comes): text of that ``shape`` is masked, and unless ``shown`` no line
        reaches the output hook (--verbose, the TUI's log pane)."""
        return replace(self, redactor=ShapeRedactor(self.redactor, shape, replacement),
                       on_output=self.on_output if shown else None)

    def check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("Interrupted", hint="Nothing is left mounted or attached; run the command again")


def which(tool: str) -> str | None:
    for d in _DEFAULT_PATH.split(":"):
        p = Path(d, tool)
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    ctx: RunContext,
    stdin: bytes | SecretStr | None = None,
    timeout: float | None = 600,
    ok: Container[int] = (0,),
    changes_system: bool = True,
    cwd: str | os.PathLike[str] | None = None,
    what: str | None = None,
) -> Completed:
    """Run one command. ``stdin`` carries secrets (never argv). Raises CommandFailed, Cancelled."""
    args = [str(a) for a in argv]
    shown = ctx.redactor.join(args)
    if ctx.dry_run and changes_system:
        log.info("dry-run, not running: %s", shown)
        return Completed(args, 0, b"", b"", skipped=True)
    ctx.check_cancelled()
    log.info("run: %s", shown)
    data = stdin.get_secret_value().encode() if isinstance(stdin, SecretStr) else stdin
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=ctx.env(),
            cwd=cwd,
            start_new_session=True,  # Ctrl-C reaches us, and we stop the child ourselves
        )
    except FileNotFoundError as exc:
        raise InputError(
            f"{args[0]} is not installed", hint=f"install the package that provides {args[0]}"
        ) from exc
    out, err = _communicate(proc, data, timeout, ctx, shown)
    for line in (out + err).decode(errors="replace").splitlines():
        if line.strip():
            text = ctx.redactor(line)
            log.debug("  | %s", text)
            if ctx.on_output:
                ctx.on_output(text)
    if proc.returncode not in ok:
        tail = ctx.redactor(err.decode(errors="replace").strip() or out.decode(errors="replace").strip())
        tail = "\n".join(tail.splitlines()[-8:])
        raise CommandFailed(
            f"{what or args[0]} failed (exit {proc.returncode}): {shown}" + (f": {tail}" if tail else ""),
            details={"command": shown, "returncode": proc.returncode, "stderr": tail},
        )
    return Completed(args, proc.returncode, out, err)


def retry(action: Callable[[], T], *, attempts: int, delay: float) -> T:
    """Run ``action`` until it succeeds, at most ``attempts`` times ``delay`` seconds apart: for a device still
    busy a moment after what used it went away (a loop device or a LUKS mapper after an unmount). The last
    failure is raised; a cancel is never retried."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Cancelled:
            raise
        except NbcError:
            if attempt == attempts:
                raise
            log.info("busy, trying again in %g s (%d of %d)", delay, attempt, attempts)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _communicate(
    proc: subprocess.Popen[bytes], data: bytes | None, timeout: float | None, ctx: RunContext, shown: str
) -> tuple[bytes, bytes]:
    # Wait in short slices so that a cancel request (Ctrl-C in the TUI, SIGINT) stops the child promptly.
    result: dict[str, tuple[bytes, bytes]] = {}
    errors: list[BaseException] = []

    def talk() -> None:
        try:
            result["io"] = proc.communicate(data)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=talk, daemon=True)
    t.start()
    waited = 0.0
    try:
        while t.is_alive():
            t.join(0.2)
            waited += 0.2
            if ctx.cancel.is_set():
                _stop(proc)
                t.join()
                raise Cancelled("Interrupted", hint="Run the command again; nothing is left mounted")
            if timeout is not None and waited > timeout:
                _stop(proc)
                t.join()
                raise CommandFailed(f"{shown} did not finish within {int(timeout)} s")
    except KeyboardInterrupt:
        _stop(proc)
        t.join()
        raise
    if errors:
        raise errors[0]
    return result["io"]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

from __future__ import annotations

import logging
import os
import threading
import time

import pytest
from pydantic import SecretStr

from nbc_tui.backend.errors import Cancelled, CommandFailed, InputError
from nbc_tui.backend.runner import RedactingFilter, Redactor, RunContext, retry, run

SECRET = "hunter2-very-secret"


def test_secret_goes_on_stdin_and_is_redacted_everywhere(caplog: pytest.LogCaptureFixture) -> None:
    ctx = RunContext()
    ctx.redactor.add(SecretStr(SECRET))
    lines: list[str] = []
    ctx.on_output = lines.append
    caplog.set_level(logging.DEBUG, logger="nbc_tui")
    r = run(["cat"], ctx=ctx, stdin=SecretStr(SECRET))
    assert r.out == SECRET  # the tool got it
    assert lines == ["<redacted>"]
    with pytest.raises(CommandFailed) as exc:
        run(["sh", "-c", f"echo {SECRET} >&2; exit 3"], ctx=ctx)
    assert SECRET not in str(exc.value) and "<redacted>" in str(exc.value)
    assert exc.value.details["returncode"] == 3
    assert SECRET not in caplog.text


def test_redacting_filter() -> None:
    r = Redactor()
    r.add("pw-123456")
    rec = logging.LogRecord("nbc_tui", logging.INFO, "", 0, "run: %s", ("echo pw-123456",), None)
    RedactingFilter(r).filter(rec)
    assert rec.getMessage() == "run: echo <redacted>"


def test_environment_is_an_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "leak")
    out = run(["env"], ctx=RunContext()).out
    assert "leak" not in out and "LANG=C.UTF-8" in out


def test_dry_run_skips_changes_but_runs_reads(tmp_path) -> None:
    ctx = RunContext(dry_run=True)
    target = tmp_path / "f"
    assert run(["touch", target], ctx=ctx).skipped
    assert not target.exists()
    assert run(["echo", "read"], ctx=ctx, changes_system=False).out == "read\n"


def test_missing_tool_is_input_error() -> None:
    with pytest.raises(InputError, match="not installed"):
        run(["no-such-tool-xyz"], ctx=RunContext())


def test_cancel_stops_the_child_promptly() -> None:
    ctx = RunContext()
    threading.Timer(0.3, ctx.cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        run(["sleep", "30"], ctx=ctx)
    assert time.monotonic() - started < 5


def test_timeout() -> None:
    with pytest.raises(CommandFailed, match="did not finish"):
        run(["sleep", "5"], ctx=RunContext(), timeout=0.5)
    assert os.getpid()


def test_retry_tries_again_only_for_a_failure_and_raises_the_last() -> None:
    calls: list[int] = []

    def busy_twice() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise CommandFailed("losetup: device busy")
        return "detached"

    assert retry(busy_twice, attempts=5, delay=0) == "detached" and len(calls) == 3

    def always_busy() -> None:
        raise CommandFailed("still busy")

    with pytest.raises(CommandFailed, match="still busy"):
        retry(always_busy, attempts=2, delay=0)
    cancels: list[int] = []

    def cancelled() -> None:
        cancels.append(1)
        raise Cancelled("Interrupted")

    with pytest.raises(Cancelled):
        retry(cancelled, attempts=5, delay=0)
    assert cancels == [1]  # a cancel is never retried

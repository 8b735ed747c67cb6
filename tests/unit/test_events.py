"""Pinned serialisation of the events (nbc's keys, reference §14.3) and the text conventions (§14.2)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

from nbc_tui.backend.errors import NbcError
from nbc_tui.backend.events import (
    CompleteEvent,
    ErrorEvent,
    JsonLinesWriter,
    MessageEvent,
    StepEvent,
    TextWriter,
    WarningEvent,
    progress_event,
)

T = datetime(2026, 11, 29, 9, 30, 5, tzinfo=UTC)


def test_json_lines_golden() -> None:
    out = io.StringIO()
    w = JsonLinesWriter(out)
    w(StepEvent(timestamp=T, step=3, total_steps=11, step_name="Creating partitions"))
    w(MessageEvent(timestamp=T, message="hello"))
    w(ErrorEvent(timestamp=T, message="Installation failed", details={"error": "boom"}))
    w(CompleteEvent(timestamp=T, message="done", details={"image": "x"}))
    assert out.getvalue().splitlines() == [
        '{"type":"step","timestamp":"2026-11-29T09:30:05Z","step":3,"total_steps":11,'
        '"step_name":"Creating partitions"}',
        '{"type":"message","timestamp":"2026-11-29T09:30:05Z","message":"hello"}',
        '{"type":"error","timestamp":"2026-11-29T09:30:05Z","message":"Installation failed",'
        '"details":{"error":"boom"}}',
        '{"type":"complete","timestamp":"2026-11-29T09:30:05Z","message":"done","details":{"image":"x"}}',
    ]


def test_progress_carries_bytes() -> None:
    e = json.loads(progress_event("Extracting", 50, 200, 10.4).model_dump_json(exclude_none=True))
    assert e["type"] == "progress" and e["percent"] == 25
    assert e["details"] == {"bytes_done": 50, "bytes_total": 200, "bytes_per_second": 10}


def test_text_writer_conventions() -> None:
    out, err = io.StringIO(), io.StringIO()
    w = TextWriter(out, errors=err)
    w(StepEvent(step=1, total_steps=2, step_name="One"))
    w(MessageEvent(message="msg"))
    w(MessageEvent(message="only verbose", details={"verbose": True}))
    w(StepEvent(step=2, total_steps=2, step_name="Two"))
    w(WarningEvent(message="careful"))
    w(ErrorEvent(message="Installation failed", details={"error": "disk gone", "hint": "plug it in"}))
    w(CompleteEvent(message="Done"))
    assert out.getvalue() == (
        "Step 1/2: One...\n  msg\n\nStep 2/2: Two...\nWarning: careful\n\n" + "=" * 65 + "\nDone\n" + "=" * 65
        + "\n")
    assert err.getvalue() == "Error: Installation failed: disk gone\n  plug it in\n"


def test_an_error_event_is_built_from_an_error_one_way() -> None:
    from nbc_tui.backend.errors import InputError

    exc = InputError("the disk is mounted", hint="unmount it", details={"device": "/dev/sdb", "error": "raw"})
    event = ErrorEvent.from_error("Installation failed", exc)
    assert event.message == "Installation failed"
    assert event.details == {"device": "/dev/sdb", "error": "the disk is mounted", "hint": "unmount it"}
    assert "hint" not in (ErrorEvent.from_error("X", InputError("no hint")).details or {})


def test_a_file_name_that_is_not_utf8_still_makes_a_json_line() -> None:
    """A layer entry named in Latin-1 (kept as a lone surrogate): the error event must reach the stream."""
    name = b"etc/caf\xe9/../../x".decode("utf-8", "surrogateescape")
    out = io.StringIO()
    JsonLinesWriter(out)(ErrorEvent.from_error("Installation failed", NbcError(f"entry {name!s} is refused",
                                                                               details={"entry": name})))
    event = json.loads(out.getvalue())
    assert event["details"]["entry"] == "etc/caf\\xe9/../../x" and "caf\\xe9" in event["details"]["error"]

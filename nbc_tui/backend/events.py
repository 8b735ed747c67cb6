"""Typed engine events and their two writers (text lines and JSON Lines).

Keys and types follow nbc's ``--json`` events (reference §14.3): ``type``, ``timestamp``, ``step``,
``total_steps``, ``step_name``, ``message``, ``percent``, ``details``. An install ends with a
``complete`` or an ``error`` event.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from .errors import NbcError


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: str
    timestamp: datetime = Field(default_factory=utc_now)
    message: str | None = None
    details: dict[str, Any] | None = None

    @field_serializer("timestamp")
    def _rfc3339(self, value: datetime) -> str:
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    @field_validator("message", "details", mode="before")
    @classmethod
    def _printable(cls, value: Any) -> Any:
        """A file name that is not UTF-8 (kept by Python as lone surrogates) shown as ``\\xe9``: JSON cannot
        carry the byte, and an event that cannot be written would be lost, the error event too."""
        return _without_surrogates(value)


def _without_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_without_surrogates(v) for v in value)
    return value


class StepEvent(Event):
    type: Literal["step"] = "step"
    step: int
    total_steps: int
    step_name: str


class ProgressEvent(Event):
    """Byte-level progress. ``details`` holds bytes_done, bytes_total and bytes_per_second."""

    type: Literal["progress"] = "progress"
    percent: int


class MessageEvent(Event):
    type: Literal["message"] = "message"


class WarningEvent(Event):
    type: Literal["warning"] = "warning"


class ErrorEvent(Event):
    type: Literal["error"] = "error"

    @classmethod
    def from_error(cls, title: str, exc: NbcError) -> ErrorEvent:
        """``title`` ("Installation failed") as the message; the error's sentence, hint and details in
        ``details`` (the sentence for people wins over a raw "error" a source may carry in its details)."""
        details = {**exc.details, "error": exc.message, **({"hint": exc.hint} if exc.hint else {})}
        return cls(message=title, details=details)


class CompleteEvent(Event):
    type: Literal["complete"] = "complete"


Emit = Callable[[Event], None]


def progress_event(label: str, done: int, total: int, rate: float) -> ProgressEvent:
    percent = int(done * 100 / total) if total else 0
    return ProgressEvent(
        percent=min(percent, 100),
        message=label,
        details={"bytes_done": done, "bytes_total": total, "bytes_per_second": int(rate)},
    )


class JsonLinesWriter:
    """One compact JSON object per line on stdout, flushed per line; nothing else goes to stdout."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, event: Event) -> None:
        self.stream.write(event.model_dump_json(exclude_none=True) + "\n")
        self.stream.flush()


class TextWriter:
    """nbc's text conventions (reference §14.2): ``Step i/n: name...``, two-space messages, ``Warning:``."""

    def __init__(self, stream: TextIO | None = None, *, verbose: bool = False,
                 errors: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        # Errors go to stderr, where scripts look for them; everything else to stdout.
        self.errors = errors or sys.stderr
        self.verbose = verbose
        self._steps = 0
        self._last_percent: dict[str, int] = {}

    def __call__(self, event: Event) -> None:
        w = self.stream.write
        if isinstance(event, StepEvent):
            if self._steps:
                w("\n")
            self._steps += 1
            w(f"Step {event.step}/{event.total_steps}: {event.step_name}...\n")
        elif isinstance(event, ProgressEvent):
            # Only every 10 %, so that a log captured from a pipe stays readable.
            key = event.message or ""
            bucket = event.percent // 10
            if self._last_percent.get(key) == bucket:
                return
            self._last_percent[key] = bucket
            d = event.details or {}
            rate = d.get("bytes_per_second", 0) / 1e6
            w(f"  {event.message}: {event.percent}% ({_mb(d.get('bytes_done', 0))} of "
              f"{_mb(d.get('bytes_total', 0))}, {rate:.0f} MB/s)\n")
        elif isinstance(event, WarningEvent):
            w(f"Warning: {event.message}\n")
        elif isinstance(event, ErrorEvent):
            err = (event.details or {}).get("error")
            self.errors.write(f"Error: {event.message}" + (f": {err}" if err and err != event.message else "")
                              + "\n")
            hint = (event.details or {}).get("hint")
            if hint:
                self.errors.write(f"  {hint}\n")
            self.errors.flush()
        elif isinstance(event, CompleteEvent):
            w("\n" + "=" * 65 + f"\n{event.message}\n" + "=" * 65 + "\n")
        elif isinstance(event, MessageEvent):
            if (event.details or {}).get("verbose") and not self.verbose:
                return
            w(f"  {event.message}\n")
        self.stream.flush()


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


# ---------------------------------------------------------------------------------------------------
# JSON Schema of one JSON Lines record (committed as docs/events.schema.json)

EVENT_TYPES: tuple[type[Event], ...] = (StepEvent, ProgressEvent, MessageEvent, WarningEvent, ErrorEvent,
                                        CompleteEvent)
TIMESTAMP_PATTERN = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"


def events_json_schema() -> dict[str, Any]:
    """What :class:`JsonLinesWriter` writes, one record per line: an event chosen by its ``type``."""
    from typing import Annotated, Union

    from pydantic import TypeAdapter

    union = Annotated[Union[EVENT_TYPES], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007
    schema = TypeAdapter(union).json_schema(mode="serialization")
    for definition in schema.get("$defs", {}).values():
        props = definition.get("properties", {})
        if "timestamp" in props:  # written by _rfc3339: UTC, whole seconds
            props["timestamp"] = {"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN}
        # The writer leaves out what is None (exclude_none): a present key always has a value.
        for name, prop in list(props.items()):
            branches = [b for b in prop.get("anyOf", []) if b.get("type") != "null"]
            if "anyOf" in prop and len(branches) == 1:
                props[name] = {**{k: v for k, v in prop.items() if k not in ("anyOf", "default")}, **branches[0]}
        definition["required"] = sorted({*definition.get("required", []), "type", "timestamp"})
        definition["additionalProperties"] = False  # the writer dumps exactly the model's fields
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "nbc-tui event (one line of --json output)", **schema}

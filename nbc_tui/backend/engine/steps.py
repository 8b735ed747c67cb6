"""One step driver for every operation: an operation is a list of :class:`Step` over a state of its own.

:func:`run_steps` owns what every operation needs done the same way: the one cleanup stack (each step pushes
the release of what it acquires; the stack unwinds on success, failure and Ctrl-C alike, and a second Ctrl-C
cannot cut it short), SIGTERM treated as Ctrl-C, the cancel flag, timings, and the step, complete and error
events. Steps report through their :class:`StepContext` (messages, warnings, byte progress).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any, Generic, TypeVar

from ..errors import Cancelled, NbcError
from ..events import CompleteEvent, Emit, ErrorEvent, MessageEvent, StepEvent, WarningEvent, progress_event
from ..locks import system_locked
from ..runner import RunContext

log = logging.getLogger("nbc_tui")
S = TypeVar("S")
T = TypeVar("T")

Timings = dict[str, float]
"""Seconds each step took, by step key."""


class When(Enum):
    """Which runs a step takes part in."""

    ALWAYS = "always"
    """Real runs and dry runs: a step that only reads (the checks before anything is written)."""
    REAL = "real"
    """Only a real run: a step that changes something."""
    DRY_RUN = "dry-run"
    """Only a dry run: saying what a real run would do."""


class Finished(Exception):
    """Raised by a step when the operation has nothing (more) to do, e.g. the system already runs the image:
    the remaining steps are skipped, the cleanup stack unwinds and the run completes with ``message``."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


@dataclass(frozen=True)
class Step(Generic[S]):
    """One step of an operation over its state ``S``."""

    key: str
    """Names the step in timings and logs: ``partition``."""
    title: str
    """What people read: ``Creating partitions``."""
    run: Callable[[S, StepContext], None]
    when: When = When.REAL
    shown: bool = True
    """Announced with a step event and counted in ``total_steps``; a hidden step (taking the system lock,
    asking before a wipe) runs between the shown ones without a number of its own."""


class StepContext:
    """What every step of one run can use: the command context, the event stream and the cleanup stack."""

    def __init__(self, ctx: RunContext, emit: Emit, stack: contextlib.ExitStack) -> None:
        self.ctx = ctx
        self.emit = emit
        self.stack = stack

    def message(self, text: str, *, verbose: bool = False) -> None:
        log.info("%s", text)
        self.emit(MessageEvent(message=text, details={"verbose": True} if verbose else None))

    def warn(self, text: str) -> None:
        log.warning("%s", text)
        self.emit(WarningEvent(message=text))

    def hold(self, cm: contextlib.AbstractContextManager[T]) -> T:
        """Enter ``cm`` and push its exit onto the stack. A failing release becomes a warning: it never masks
        the error that made the stack unwind."""
        value = cm.__enter__()

        def release(exc_type: type[BaseException] | None, exc: BaseException | None,
                    tb: TracebackType | None) -> bool:
            try:
                cm.__exit__(exc_type, exc, tb)
            except Exception as failure:
                self.warn(f"cleanup: {failure}")
            return False

        self.stack.push(release)
        return value

    def progress(self, label: str) -> Callable[[int, int], None]:
        """A byte counter for one long piece of work: progress events at most twice a second (and at the end),
        and the cancel flag checked at every call."""
        started = time.monotonic()
        last = [0.0]

        def report(done: int, total: int) -> None:
            self.ctx.check_cancelled()
            now = time.monotonic()
            if now - last[0] < 0.5 and done < total:
                return
            last[0] = now
            self.emit(progress_event(label, done, total, done / max(now - started, 1e-6)))

        return report


def system_lock_step() -> Step[Any]:
    """A hidden step that holds nbc's system lock (flock, shared with nbc) for the rest of the run: one install
    or update at a time. It comes right after the checks, which only read."""

    def take(_state: object, io: StepContext) -> None:
        io.hold(system_locked(what="an install or update"))

    return Step("lock", "Taking the system lock", take, shown=False)


def run_steps(steps: Sequence[Step[S]], state: S, *, ctx: RunContext, emit: Emit, failed: str,
              interrupted: Cancelled, complete: Callable[[S, Timings], CompleteEvent]) -> Timings:
    """Run ``steps`` over ``state`` in order; in a dry run (``ctx.dry_run``) only those that take part in one.

    Shown steps are numbered among all shown steps (a dry run announces only its checks, out of the same
    total). A step that raises :class:`Finished` ends the run early with its message as the complete event.
    Ends with ``complete(state, timings)`` (a dry run with its own complete event) once the cleanup
    stack has unwound, or with an error event titled ``failed`` (``interrupted`` after Ctrl-C or SIGTERM);
    the error is raised again after its event.
    """
    timings: Timings = {}
    total = sum(1 for step in steps if step.shown)
    number = 0
    finished: Finished | None = None
    current = ""
    try:
        with _interrupts_become_cancel(ctx), _cleanup_stack(ctx) as stack:
            io = StepContext(ctx, emit, stack)
            for step in steps:
                current = step.title
                if step.shown:
                    number += 1
                if step.when is (When.REAL if ctx.dry_run else When.DRY_RUN):
                    continue
                ctx.check_cancelled()
                if step.shown:
                    emit(StepEvent(step=number, total_steps=total, step_name=step.title))
                    log.info("step %d/%d: %s", number, total, step.title)
                started = time.monotonic()
                try:
                    step.run(state, io)
                except Finished as done:
                    finished = done
                    break
                finally:
                    timings[step.key] = time.monotonic() - started
    except NbcError as exc:
        _emit_error(emit, ErrorEvent.from_error(failed, exc))
        raise
    except KeyboardInterrupt as exc:
        _emit_error(emit, ErrorEvent.from_error(failed, interrupted))
        raise interrupted from exc
    except Exception as exc:  # still said as an error event (the stream's promise), never as a bare traceback
        error = _unexpected(exc, current, ctx)
        _emit_error(emit, ErrorEvent.from_error(failed, error))
        raise error from exc
    if finished is not None:
        emit(CompleteEvent(message=finished.message, details=finished.details))
    elif ctx.dry_run:
        emit(CompleteEvent(message="Dry run complete: nothing was written", details={"dry_run": True}))
    else:
        emit(complete(state, timings))
    return timings


def _unexpected(exc: Exception, step: str, ctx: RunContext) -> NbcError:
    """An error no step turned into an NbcError. A system call's (no space left, a read-only filesystem) is
    said in its own words; anything else is a bug in nbc-tui, its traceback in the log file. The text is
    redacted: it may quote what a step was handling."""
    where = f"{step}: " if step else ""
    log.error("step %r failed", step, exc_info=exc)  # the log file redacts it
    if isinstance(exc, BrokenPipeError):  # an event writer's: not the disk's
        return NbcError(f"{where}the output was closed (the program reading it stopped)",
                        hint="keep the reading end open to the end, or send the output to a file")
    if isinstance(exc, OSError) and exc.strerror:
        on = f": {exc.filename}" if exc.filename else ""
        return NbcError(ctx.redactor(f"{where}{exc.strerror}{on}"),
                        hint="check that the disk and the filesystems it writes to have room and are writable")
    return NbcError(ctx.redactor(f"{where}internal error ({type(exc).__name__}: {exc})"),
                    hint="this is a bug in nbc-tui: please report it with the log file")


def _emit_error(emit: Emit, event: ErrorEvent) -> None:
    with contextlib.suppress(Exception):  # a broken subscriber must not hide the error itself
        emit(event)


@contextlib.contextmanager
def _interrupts_become_cancel(ctx: RunContext) -> Iterator[None]:
    """SIGTERM is treated like Ctrl-C (KeyboardInterrupt) so that the cleanup stack always runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: object) -> None:
        ctx.cancel.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _cleanup_stack(ctx: RunContext) -> Iterator[contextlib.ExitStack]:
    """The one cleanup stack. While it unwinds, a second Ctrl-C or SIGTERM is ignored so cleanup is never cut
    short (a release stopped half-way would leave a mapper or a loop device behind)."""
    stack = contextlib.ExitStack()
    try:
        yield stack
    finally:
        # The releases run commands too (umount, losetup -d): a cancel request has done its job once the
        # stack unwinds, and must not stop them.
        ctx.cancel.clear()
        previous: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():
            previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            stack.close()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)  # type: ignore[arg-type]

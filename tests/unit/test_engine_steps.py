"""The step driver: numbering of shown steps, hidden steps, dry runs, the cleanup stack on success, failure and
Ctrl-C, the complete and error events, and the system lock step."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbc_tui.backend.engine import Finished, Step, StepContext, When, run_steps, system_lock_step
from nbc_tui.backend.errors import Cancelled, InputError, NbcError
from nbc_tui.backend.events import CompleteEvent, ErrorEvent, Event, ProgressEvent, StepEvent, WarningEvent
from nbc_tui.backend.locks import LOCK_DIR, NBC_LOCK_DIR, SYSTEM_LOCK
from nbc_tui.backend.runner import REDACTED, RunContext

INTERRUPTED = Cancelled("Interrupted: the test was stopped", hint="run it again")


class Trace:
    """A state that records what ran, and the releases the cleanup stack made."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.released: list[str] = []

    def step(self, key: str, *, when: When = When.REAL, shown: bool = True, fails: Exception | None = None,
             holds: bool = False) -> Step[Trace]:
        def run(state: Trace, io: StepContext) -> None:
            state.ran.append(key)
            if holds:
                io.hold(self.held(key))
            if fails is not None:
                raise fails

        return Step(key, f"Doing {key}", run, when=when, shown=shown)

    @contextlib.contextmanager
    def held(self, key: str) -> Iterator[None]:
        try:
            yield
        finally:
            self.released.append(key)


def complete(state: Trace, timings: dict[str, float]) -> CompleteEvent:
    return CompleteEvent(message="done", details={"steps": sorted(timings), "released": list(state.released)})


def drive(trace: Trace, steps: list[Step[Trace]], *, dry_run: bool = False) -> list[Event]:
    events: list[Event] = []
    run_steps(steps, trace, ctx=RunContext(dry_run=dry_run), emit=events.append, failed="Testing failed",
              interrupted=INTERRUPTED, complete=complete)
    return events


def test_shown_steps_are_numbered_and_hidden_ones_run_between_them() -> None:
    trace = Trace()
    events = drive(trace, [trace.step("check", when=When.ALWAYS), trace.step("ask", shown=False),
                           trace.step("write", holds=True), trace.step("finish")])
    assert trace.ran == ["check", "ask", "write", "finish"]
    steps = [(e.step, e.total_steps, e.step_name) for e in events if isinstance(e, StepEvent)]
    assert steps == [(1, 3, "Doing check"), (2, 3, "Doing write"), (3, 3, "Doing finish")]
    # complete comes last, once the stack has unwound (the release is already done when it is built)
    assert isinstance(events[-1], CompleteEvent)
    assert events[-1].details == {"steps": ["ask", "check", "finish", "write"], "released": ["write"]}


def test_a_dry_run_runs_only_what_takes_part_in_one() -> None:
    trace = Trace()
    events = drive(trace, [trace.step("check", when=When.ALWAYS), trace.step("summary", when=When.DRY_RUN,
                                                                             shown=False),
                           trace.step("write"), trace.step("finish")], dry_run=True)
    assert trace.ran == ["check", "summary"]
    assert [(e.step, e.total_steps) for e in events if isinstance(e, StepEvent)] == [(1, 3)]
    assert events[-1] == CompleteEvent(message="Dry run complete: nothing was written", details={"dry_run": True},
                                       timestamp=events[-1].timestamp)
    real = Trace()
    drive(real, [real.step("check", when=When.ALWAYS), real.step("summary", when=When.DRY_RUN), real.step("write")])
    assert real.ran == ["check", "write"]


def test_a_failure_unwinds_the_stack_and_ends_with_one_error_event() -> None:
    trace = Trace()
    events: list[Event] = []
    with pytest.raises(InputError, match="no room"):
        run_steps([trace.step("a", holds=True), trace.step("b", holds=True, fails=InputError("no room", hint="h")),
                   trace.step("c")], trace, ctx=RunContext(), emit=events.append, failed="Testing failed",
                  interrupted=INTERRUPTED, complete=complete)
    assert trace.ran == ["a", "b"] and trace.released == ["b", "a"]  # last acquired, first released
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert errors == [ErrorEvent(message="Testing failed", details={"error": "no room", "hint": "h"},
                                 timestamp=errors[0].timestamp)]
    assert not any(isinstance(e, CompleteEvent) for e in events)


@pytest.mark.parametrize(("raised", "said"), [
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/var/lib/nbc/state/config.json"),
     "Doing b: No space left on device: /var/lib/nbc/state/config.json"),
    (ValueError("could not parse Secret-In-Text-1"), "Doing b: internal error (ValueError: could not parse ***)"),
])
def test_an_unexpected_error_still_ends_with_an_error_event_in_words(raised: Exception, said: str) -> None:
    """A step's system call failing (no space, a read-only filesystem) or a bug: the run still unwinds and
    ends with its error event (JSON Lines readers wait for one), as an NbcError (exit 1), redacted."""
    trace = Trace()
    events: list[Event] = []
    ctx = RunContext()
    ctx.redactor.add("Secret-In-Text-1")
    with pytest.raises(NbcError) as caught:
        run_steps([trace.step("a", holds=True), trace.step("b", fails=raised), trace.step("c")], trace, ctx=ctx,
                  emit=events.append, failed="Testing failed", interrupted=INTERRUPTED, complete=complete)
    assert caught.value.message == said.replace("***", REDACTED) and caught.value.exit_code == 1
    assert trace.released == ["a"]
    assert [(e.message, e.details["error"]) for e in events if isinstance(e, ErrorEvent)] == [
        ("Testing failed", caught.value.message)]


def test_a_step_that_finishes_the_run_skips_the_rest_and_completes_with_its_message() -> None:
    trace = Trace()
    done = Finished("No update needed", details={"update_needed": False})
    events = drive(trace, [trace.step("check", when=When.ALWAYS, holds=True, fails=done), trace.step("write")])
    assert trace.ran == ["check"] and trace.released == ["check"]
    assert [e.step for e in events if isinstance(e, StepEvent)] == [1]
    assert events[-1] == CompleteEvent(message="No update needed", details={"update_needed": False},
                                       timestamp=events[-1].timestamp)
    dry = Trace()
    events = drive(dry, [dry.step("check", when=When.ALWAYS, fails=done), dry.step("summary", when=When.DRY_RUN)],
                   dry_run=True)
    assert dry.ran == ["check"] and events[-1].message == "No update needed"


def test_ctrl_c_becomes_the_operations_cancel_and_the_stack_still_unwinds() -> None:
    trace = Trace()
    events: list[Event] = []
    with pytest.raises(Cancelled) as info:
        run_steps([trace.step("a", holds=True), trace.step("b", fails=KeyboardInterrupt())], trace, ctx=RunContext(),
                  emit=events.append, failed="Testing failed", interrupted=INTERRUPTED, complete=complete)
    assert info.value is INTERRUPTED and info.value.exit_code == 130
    assert trace.released == ["a"]
    assert [e.details for e in events if isinstance(e, ErrorEvent)] == [
        {"error": "Interrupted: the test was stopped", "hint": "run it again"}]


def test_a_cancel_request_stops_before_the_next_step() -> None:
    trace = Trace()
    ctx = RunContext()

    def cancel(state: Trace, io: StepContext) -> None:
        ctx.cancel.set()

    with pytest.raises(Cancelled):
        run_steps([Step("cancel", "Cancelling", cancel), trace.step("never")], trace, ctx=ctx, emit=lambda e: None,
                  failed="Testing failed", interrupted=INTERRUPTED, complete=complete)
    assert trace.ran == [] and not ctx.cancel.is_set()  # cleared for the releases, which run commands too


def test_a_failing_release_is_a_warning_and_never_hides_the_first_error() -> None:
    @contextlib.contextmanager
    def broken() -> Iterator[None]:
        yield
        raise OSError("umount: target is busy")

    def acquire(state: object, io: StepContext) -> None:
        io.hold(broken())

    def fail(state: object, io: StepContext) -> None:
        raise InputError("the real problem")

    events: list[Event] = []
    with pytest.raises(InputError, match="the real problem"):
        run_steps([Step("a", "A", acquire), Step("b", "B", fail)], object(), ctx=RunContext(), emit=events.append,
                  failed="F", interrupted=INTERRUPTED, complete=lambda s, t: CompleteEvent())
    assert [e.message for e in events if isinstance(e, WarningEvent)] == ["cleanup: umount: target is busy"]


def test_progress_is_throttled_but_always_reports_the_end() -> None:
    events: list[Event] = []

    def work(state: object, io: StepContext) -> None:
        report = io.progress("Copying")
        for done in range(0, 101, 10):
            report(done, 100)

    run_steps([Step("copy", "Copying", work)], object(), ctx=RunContext(), emit=events.append, failed="F",
              interrupted=INTERRUPTED, complete=lambda s, t: CompleteEvent())
    progress = [e for e in events if isinstance(e, ProgressEvent)]
    assert 1 <= len(progress) < 11 and progress[-1].percent == 100


def test_the_system_lock_step_holds_nbcs_lock_until_the_run_ends() -> None:
    seen: list[bool] = []

    def probe(state: object, io: StepContext) -> None:
        seen.extend([lock_is_free(), lock_is_free(NBC_LOCK_DIR / "system.lock")])

    run_steps([system_lock_step(), Step("probe", "Probing", probe)], object(), ctx=RunContext(),
              emit=lambda e: None, failed="F", interrupted=INTERRUPTED, complete=lambda s, t: CompleteEvent())
    # Held in both places: nbc-tui's, and where nbc's own code locks (so neither runs beside the other).
    assert seen == [False, False] and lock_is_free() and lock_is_free(NBC_LOCK_DIR / "system.lock")
    assert system_lock_step().shown is False and system_lock_step().when is When.REAL


def lock_is_free(path: Path = LOCK_DIR / SYSTEM_LOCK) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_a_sigterm_while_the_stack_unwinds_cuts_no_release_short() -> None:
    """A second stop (a supervisor's SIGTERM) during cleanup: every release still runs, none cancelled."""
    trace = Trace()
    ctx = RunContext()
    before = signal.getsignal(signal.SIGTERM)

    @contextlib.contextmanager
    def stopped_again() -> Iterator[None]:
        try:
            yield
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # delivered at once, in the middle of the unwinding
            trace.released.append("first")

    @contextlib.contextmanager
    def runs_a_command() -> Iterator[None]:
        try:
            yield
        finally:
            ctx.check_cancelled()  # what a release's run() does first
            trace.released.append("second")

    def hold_both(state: Trace, io: StepContext) -> None:
        io.hold(runs_a_command())
        io.hold(stopped_again())
        raise NbcError("it broke")

    with pytest.raises(NbcError, match="it broke"):
        run_steps([Step("work", "Working", hold_both)], trace, ctx=ctx, emit=lambda _e: None, failed="Testing failed",
                  interrupted=INTERRUPTED, complete=complete)
    assert trace.released == ["first", "second"]
    assert signal.getsignal(signal.SIGTERM) == before  # the handlers are put back


def test_an_output_that_closed_is_said_as_such_not_as_a_disk_problem() -> None:
    """`nbc-tui install --json | head -1`: the writer's BrokenPipeError is the reader's doing."""
    def talks(state: Trace, io: StepContext) -> None:
        io.message("hello")

    def closed(event: Event) -> None:
        if event.type == "message":
            raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(NbcError) as info:
        run_steps([Step("talk", "Talking", talks)], Trace(), ctx=RunContext(), emit=closed, failed="Testing failed",
                  interrupted=INTERRUPTED, complete=complete)
    assert "the output was closed" in info.value.message and "room" not in (info.value.hint or "")

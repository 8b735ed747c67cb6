"""`nbc-tui --headless --answers FILE`: an unattended install of exactly the plan an answer file resolves to.

Order matters: the answers are read and checked against this machine (consent, disk rules, serial pin,
secret files, TPM) before the engine starts, so a bad file writes nothing. The engine then runs with the
same events as `install` (text, or JSON Lines with --json), and only after it succeeded is the ``after``
action (reboot, power off) carried out.

``--answers-from-cmdline`` takes the file from ``nbc.answers=`` on the kernel command line (the live ISO):
a path, or ``LABEL=<filesystem label>:<path>`` on a partition that is mounted read-only while the install
runs (so that secret files beside the answers can be read) and unmounted afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys

from ..backend.answers import AnswerFileError, Checked, check_answers, keyed_engine_errors, read_answers
from ..backend.answers.sources import answers_from_cmdline
from ..backend.disks import disk_line
from ..backend.errors import InputError, NbcError
from ..backend.events import Emit, ErrorEvent, JsonLinesWriter, MessageEvent, TextWriter
from ..backend.logfile import RunLog
from ..backend.machine import power
from ..backend.operations.install import Confirm, run_install
from ..backend.plan import InstallPlan
from ..backend.runner import RunContext

log = logging.getLogger("nbc_tui")


def cmd_headless(args: argparse.Namespace) -> int:
    emit: Emit = JsonLinesWriter() if args.headless_json else TextWriter(verbose=args.headless_verbose)
    ctx = RunContext(dry_run=args.tui_dry_run)
    if args.headless_verbose:
        ctx.on_output = lambda line: emit(MessageEvent(message=f"  | {line}", details={"verbose": True}))
    with RunLog(ctx.redactor) as run_log:
        try:
            # The stack holds the answers' partition (LABEL=): mounted for the install, gone before a reboot.
            with contextlib.ExitStack() as stack:
                try:
                    checked = _checked_answers(args, ctx, stack, emit)
                except NbcError as exc:
                    _report(emit, exc)
                    raise
                plan = checked.plan
                log.info("headless: running the plan\n%s", plan.model_dump_json(indent=2))
                run_install(plan, emit=keyed_engine_errors(checked.answers, emit), ctx=ctx,
                            confirm=_consented(emit, checked), log_snapshot=run_log.this_run)
        finally:
            print(f"Log: {run_log.path}", file=sys.stderr)  # also after a failure: that is when it is read
        try:
            perform_after(plan, dry_run=ctx.dry_run)
        except NbcError as exc:
            log.error("%s", exc)
            print(f"Error: {exc}", file=sys.stderr)
            return exc.exit_code
    return 0


def _checked_answers(args: argparse.Namespace, ctx: RunContext, stack: contextlib.ExitStack,
                     emit: Emit) -> Checked:
    if not args.headless:
        raise InputError("--answers and --answers-from-cmdline go with --headless",
                         hint="run: nbc-tui --headless --answers FILE")
    if args.answers and args.answers_from_cmdline:
        raise InputError("give --answers or --answers-from-cmdline, not both")
    if args.answers:
        path = args.answers
    elif args.answers_from_cmdline:
        path = answers_from_cmdline(stack, ctx)
    else:
        raise InputError("--headless needs an answer file", hint="give --answers FILE or --answers-from-cmdline")
    emit(MessageEvent(message=f"Answers: {path}"))
    answers = read_answers(path)
    checked = check_answers(answers, ctx=ctx, preflight=False)
    target = (f"the disk-image file {checked.plan.target.image_file}" if checked.disk is None
              else disk_line(checked.disk))
    emit(MessageEvent(message=f"Target: {target}"))
    if checked.plan.after != "none":
        emit(MessageEvent(message=f"After the install: {checked.plan.after}"))
    return checked


def _consented(emit: Emit, checked: Checked) -> Confirm:
    """The answer file's ``wipe = true`` is the consent the engine asks for; say what is erased."""
    line = checked.answers.line(("target", "wipe"))

    def confirm(what: str) -> bool:
        where = f"{checked.answers.source}" + (f" line {line}" if line else "")
        emit(MessageEvent(message=f"{what}\n  Consent: target.wipe = true in {where}"))
        return checked.plan.target.wipe

    return confirm


def _report(emit: Emit, exc: NbcError) -> None:
    title = "Invalid answer file" if isinstance(exc, AnswerFileError) else (
        "Invalid arguments" if isinstance(exc, InputError) else "Installation failed")
    emit(ErrorEvent.from_error(title, exc))


# ---------------------------------------------------------------------------------------------------
# After the install


def perform_after(plan: InstallPlan, *, dry_run: bool) -> None:
    """Reboot or power off as the answers say, never in a dry run. Runs after the install's ``complete``
    event, so it reports on stderr and in the log, not as an event."""
    if plan.after == "none":
        return
    try:
        power(plan.after, dry_run=dry_run, announce=lambda text: print(text, file=sys.stderr))
    except NbcError as exc:
        raise NbcError(f"the install succeeded, but {exc.message}", hint=exc.hint) from exc

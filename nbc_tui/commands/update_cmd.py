"""`nbc-tui update` (aliases `upgrade`, `up`): nbc's flags (reference §1.3) -> the update engine, with text or
JSON Lines output; ``--check`` and ``--download-only`` print nbc's single JSON objects."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from ..backend.errors import InputError, NbcError
from ..backend.events import Emit, ErrorEvent, Event, JsonLinesWriter, ProgressEvent, TextWriter, WarningEvent
from ..backend.logfile import RunLog
from ..backend.operations.update import (
    DEFAULT_TRIES,
    MAX_TRIES,
    UpdateCheck,
    UpdateRequest,
    check_for_update,
    download_update,
    run_update,
)
from ..backend.operations.update_image import StagedUse
from ..backend.runner import RunContext
from ..backend.secret_files import read_secret_file
from .flags import add_output_flags, add_trust_flags, image_ref, trust_settings
from .terminal import asked_passphrase, confirm_on_terminal, passphrase_from_stdin


def add_update_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "update", aliases=["upgrade", "up"], help="update the installed system into its other root slot",
        description="Write a new image into the root slot that is not running and boot it next, on trial: if "
                    "none of its first boots (--tries, default 3) reaches boot-complete.target, the loader "
                    "goes back to the slot that runs now by itself. The running slot and /var are not "
                    "touched; /etc changes (the overlay's upper layer), machine-id, SSH host keys, accounts "
                    "and the stored kernel arguments carry over.")
    p.add_argument("-i", "--image", type=image_ref, metavar="SRC",
                   help="the image (any source install takes); default: the installed system's image")
    p.add_argument("-d", "--device", type=Path, metavar="DISK",
                   help="update this nbc disk or disk-image file instead of the running system (from a live "
                        "system or a host); the slot that is not the last good default is written")
    p.add_argument("-c", "--check", action="store_true", help="only say whether an update is available")
    staged = p.add_mutually_exclusive_group()
    staged.add_argument("--download-only", action="store_true",
                        help="stage the update in /var/cache/nbc/staged-update; apply it later with --local-image")
    staged.add_argument("--local-image", action="store_true", help="apply the staged update (offline)")
    staged.add_argument("--auto", action="store_true",
                        help="apply the staged update when there is one, else fetch the image")
    p.add_argument("-k", "--karg", action="append", default=[], metavar="ARG",
                   help="kernel argument appended after the stored ones, for this update's slot (repeatable)")
    p.add_argument("-f", "--force", "--yes", dest="force", action="store_true",
                   help="do not ask; write the slot even when the system already runs the image (or when it "
                        "failed to boot before)")
    p.add_argument("--tries", type=int, default=DEFAULT_TRIES, metavar="N",
                   help=f"boots the new slot gets to reach boot-complete.target (1 to {MAX_TRIES}, default "
                        f"{DEFAULT_TRIES})")
    p.add_argument("--passphrase-file", "--keyfile", dest="passphrase_file", type=Path, metavar="FILE",
                   help="the LUKS passphrase, when the TPM2 does not open the slot (else stdin when it is not a "
                        "terminal, else asked once; never asked under --json)")
    add_trust_flags(p)
    add_output_flags(p)
    p.set_defaults(func=cmd_update)


def request_from_args(args: argparse.Namespace) -> UpdateRequest:
    if args.check and args.download_only:
        raise InputError("--check and --download-only are mutually exclusive")
    staged = StagedUse.ONLY if args.local_image else StagedUse.FIRST if args.auto else StagedUse.NEVER
    if staged is not StagedUse.NEVER and args.image:
        raise InputError("--image and --local-image/--auto are mutually exclusive",
                         hint="the staged update names its own image")
    return UpdateRequest(image=args.image, staged=staged,
                         device=args.device.absolute() if args.device else None,
                         extra_kernel_args=tuple(args.karg), force=args.force, tries=args.tries,
                         trust=trust_settings(args))


def passphrase_reader(args: argparse.Namespace) -> Callable[[], SecretStr] | None:
    """--passphrase-file, else stdin when it is not a terminal, else a no-echo prompt; under --json with a
    terminal on stdin nothing (the engine then says which flag to give)."""
    if args.passphrase_file is not None:
        path = args.passphrase_file.absolute()
        return lambda: read_secret_file(path, "passphrase")
    if not sys.stdin.isatty():
        return passphrase_from_stdin
    if args.json:
        return None
    return asked_passphrase


def cmd_update(args: argparse.Namespace) -> int:
    ctx = RunContext(dry_run=args.dry_run)
    quiet = args.check or args.download_only  # one answer on stdout, not an event stream
    emit: Emit = JsonLinesWriter() if args.json else TextWriter(verbose=args.verbose)
    try:
        request = request_from_args(args)
    except NbcError as exc:
        if quiet:
            return _fail(args, "Invalid arguments", exc, reported=False)
        emit(ErrorEvent.from_error("Invalid arguments", exc))
        raise
    with RunLog(ctx.redactor) as run_log:
        if args.check:
            return _check(args, request, ctx)
        if args.download_only:
            return _download_only(args, request, ctx)
        confirm = None if args.force or args.json or args.dry_run else confirm_on_terminal
        run_update(request, emit=emit, ctx=ctx, confirm=confirm, read_passphrase=passphrase_reader(args),
                   log_snapshot=run_log.this_run)
        print(f"Log: {run_log.path}", file=sys.stderr)
    return 0


def _quiet(args: argparse.Namespace) -> Emit:
    """For --check and --download-only: stdout holds the one answer; warnings and errors go to stderr."""
    text = TextWriter(stream=sys.stderr, verbose=args.verbose)

    def emit(event: Event) -> None:
        if isinstance(event, WarningEvent | ErrorEvent) or (isinstance(event, ProgressEvent) and not args.json):
            text(event)

    return emit


def _check(args: argparse.Namespace, request: UpdateRequest, ctx: RunContext) -> int:
    try:
        answer = check_for_update(request, ctx=ctx, emit=_quiet(args))
    except NbcError as exc:
        return _fail(args, "Update check failed", exc)
    if args.json:
        _print_json(_check_json(answer))
    elif answer.update_needed:
        print(f"Update available: {answer.new_digest}")
        print(f"  {answer.image} (the system runs {answer.current_digest or 'an unrecorded image'})")
        print("Run 'nbc-tui update' to install it.")
    else:
        print(f"No update available: {answer.message}")
    return 0


def _check_json(answer: UpdateCheck) -> dict[str, Any]:
    out: dict[str, Any] = {"update_needed": answer.update_needed, "image": answer.image, "device": answer.device}
    for key in ("current_digest", "new_digest", "message"):
        value = getattr(answer, key)
        if value:
            out[key] = value
    return out


def _download_only(args: argparse.Namespace, request: UpdateRequest, ctx: RunContext) -> int:
    try:
        answer, entry = download_update(request, ctx=ctx, emit=_quiet(args), on_message=None if args.json else _note)
    except NbcError as exc:
        return _fail(args, "failed to download update", exc)
    if entry is None:
        if args.json:
            _print_json(_check_json(answer))
        elif args.dry_run and answer.update_needed:
            print(f"Dry run: would download and stage {answer.image} ({answer.new_digest})")
        else:
            print(f"Up to date, no download needed: {answer.message}")
        return 0
    if args.json:
        _print_json({"success": True, "image_ref": entry.image_ref, "image_digest": entry.image_digest,
                     "size_bytes": entry.size_bytes, "cache_dir": str(entry.path.parent if entry.path else ""),
                     "message": "Update downloaded and staged"})
    else:
        print(f"Update downloaded and staged: {entry.image_ref} ({entry.image_digest})")
        print("Apply it with: nbc-tui update --local-image")
    return 0


def _fail(args: argparse.Namespace, summary: str, exc: NbcError, *, reported: bool = True) -> int:
    """nbc's generic error object under --json; `Error: <message>` and the hint on stderr always (the engine's
    error event already ``reported`` it there)."""
    if args.json:
        out: dict[str, Any] = {"error": True, "message": summary, "details": exc.message}
        if exc.hint:
            out["hint"] = exc.hint
        _print_json(out)
    if not reported:
        _note(f"Error: {exc.message}" + (f"\n  {exc.hint}" if exc.hint else ""))
    return exc.exit_code


def _print_json(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)

"""`nbc-tui rollback`: the other root slot boots next, and stays the default (nbc has no such command)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..backend.events import Emit, JsonLinesWriter, TextWriter
from ..backend.logfile import RunLog
from ..backend.operations.rollback import RollbackRequest, run_rollback
from ..backend.runner import RunContext


def add_rollback_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "rollback", help="boot the other root slot by default (run again to swap back)",
        description="Make the other root slot boot next and stay the default; run it again to swap back. "
                    "Refused, with nothing changed, when the other slot is empty, its boot files are missing, "
                    "or it failed to boot. An update waiting for its first boot is cancelled. Not reverted: "
                    "/var and the changes made to /etc (the /etc overlay's upper layer is shared by both "
                    "slots).")
    p.add_argument("-d", "--device", type=Path, metavar="DISK",
                   help="roll back this nbc disk or disk-image file instead of the running system")
    p.add_argument("--json", action="store_true", help="JSON Lines progress on stdout (and nothing else)")
    p.add_argument("-v", "--verbose", action="store_true", help="say more")
    p.add_argument("-n", "--dry-run", action="store_true", help="show what would be done; change nothing")
    p.set_defaults(func=cmd_rollback)


def cmd_rollback(args: argparse.Namespace) -> int:
    emit: Emit = JsonLinesWriter() if args.json else TextWriter(verbose=args.verbose)
    ctx = RunContext(dry_run=args.dry_run)
    with RunLog(ctx.redactor) as run_log:
        run_rollback(RollbackRequest(device=args.device.absolute() if args.device else None), emit=emit, ctx=ctx)
        print(f"Log: {run_log.path}", file=sys.stderr)
    return 0

"""The command line: parses flags and dispatches to a subcommand; with none, starts the TUI."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .backend.errors import NbcError

log = logging.getLogger("nbc_tui")


def build_parser() -> argparse.ArgumentParser:
    from .commands.answers_cmd import add_answers_parser
    from .commands.cache_cmd import add_cache_parser, add_download_parser
    from .commands.disks_cmd import add_list_parser, add_validate_parser
    from .commands.headless_cmd import add_headless_flags
    from .commands.install_cmd import add_install_parser
    from .commands.lint_cmd import add_lint_parser
    from .commands.rollback_cmd import add_rollback_parser
    from .commands.status_cmd import add_status_parser
    from .commands.update_cmd import add_update_parser

    parser = argparse.ArgumentParser(
        prog="nbc-tui",
        description="Install a bootable OCI container image onto a disk with A/B root slots (nbc-compatible).",
    )
    parser.add_argument("--version", action="version", version=f"nbc-tui {__version__}")
    # Its own dest: the install subcommand's --dry-run would overwrite a shared one.
    parser.add_argument("--dry-run", dest="tui_dry_run", action="store_true",
                        help="with no command: walk the whole installer (or with --headless, check and run the "
                             "answers) and show the plan, writing nothing")
    add_headless_flags(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_install_parser(sub)
    add_update_parser(sub)
    add_status_parser(sub)
    add_rollback_parser(sub)
    add_list_parser(sub)
    add_validate_parser(sub)
    add_download_parser(sub)
    add_cache_parser(sub)
    add_answers_parser(sub)
    add_lint_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .commands.headless_cmd import cmd_headless, wants_headless

    headless = wants_headless(args)
    if headless and args.command is not None:
        print("nbc-tui: --headless runs an answer file and takes no command", file=sys.stderr)
        return 2
    if args.command is None and not headless:
        return run_tui(dry_run=args.tui_dry_run, answers=args.answers)
    func = cmd_headless if headless else getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except NbcError as exc:
        # The event writers already reported it on stdout (text or JSON); stderr gets one plain line.
        if getattr(args, "json", False) or not _reports_errors_itself(args):
            print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("Interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:
        log.exception("internal error")
        print(f"nbc-tui: internal error: {exc!r} (details in the log file)", file=sys.stderr)
        return 1


def run_tui(*, dry_run: bool = False, answers: Path | None = None) -> int:
    """The full-screen installer, started from an answer file's plan when one is given. Textual is
    imported only here, after the look (console or not) has put its settings into the environment,
    which Textual reads at import time."""
    from .backend.answers import load_answers
    from .draft import PlanDraft
    from .look import detect_look

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        hint = "run it with --headless" if answers else "for scripts use a command (nbc-tui --help lists them)"
        print(f"nbc-tui: the full-screen installer needs a terminal; {hint}", file=sys.stderr)
        return 2
    draft = None
    if answers is not None:
        try:
            draft = PlanDraft.from_plan(load_answers(answers))
        except NbcError as exc:
            print(f"nbc-tui: {exc}", file=sys.stderr)
            return exc.exit_code
    look = detect_look()
    os.environ.update(look.environment())
    from .app import NbcTuiApp

    app = NbcTuiApp(draft=draft, dry_run=dry_run, look=look)
    app.run(mouse=look.mouse)
    app.perform_choice()
    if app.return_code:
        return app.return_code
    return 1 if app.outcome is not None and not app.outcome.ok else 0


def _reports_errors_itself(args: argparse.Namespace) -> bool:
    """The text writer of install, update, rollback, status and headless already printed the error (with its
    hint) on stderr."""
    own = ("install", "inst", "update", "upgrade", "up", "rollback", "status", "stat", "info")
    return args.command in own or bool(getattr(args, "headless", False))


if __name__ == "__main__":
    sys.exit(main())

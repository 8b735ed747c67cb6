"""The command line: parses flags and dispatches to a subcommand; with none, starts the TUI."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from . import __version__
from .backend.errors import NbcError

log = logging.getLogger("nbc_tui")


COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "install_cmd": ("install", "inst"),
    "update_cmd": ("update", "upgrade", "up"),
    "status_cmd": ("status", "stat", "info"),
    "rollback_cmd": ("rollback",),
    "disks_cmd": ("list", "ls", "disks", "validate"),
    "cache_cmd": ("download", "dl", "cache"),
    "answers_cmd": ("answers",),
    "lint_cmd": ("lint",),
    "shell_cmd": ("completion", "man"),
}
"""Each command module of ``nbc_tui.commands`` and the words (aliases too) its parsers take, in help order.
A command line names one of them, and only that module is imported: each costs its imports, and a
script that runs ``nbc-tui status`` should not wait for the installer's. (A test checks this table against
the parsers the modules add.)"""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or only of the module that takes the word ``command``."""
    from .commands.headless_flags import add_headless_flags

    parser = argparse.ArgumentParser(
        prog="nbc-tui",
        description="Install a bootable OCI container image onto a disk with A/B root slots (nbc-compatible).",
    )
    parser.add_argument("--version", action="version", version=f"nbc-tui {__version__}")
    # Its own dest: the install subcommand's --dry-run would overwrite a shared one.
    parser.add_argument("--dry-run", dest="tui_dry_run", action="store_true",
                        help="with no command: walk the whole installer (or with --headless, check and run the "
                             "answers) and show the plan, writing nothing; before a command, the command's own "
                             "--dry-run")
    add_headless_flags(parser)
    # `completion` and `man` describe every command, but given a command word this parser holds only its module's.
    parser.set_defaults(whole_parser=build_parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _modules_for(command):
        for add_parser in _parser_adders(importlib.import_module(f".commands.{module}", __package__)):
            add_parser(sub)
    return parser


def _modules_for(command: str | None) -> list[str]:
    wanted = [m for m, words in COMMAND_MODULES.items() if command in words]
    return wanted or list(COMMAND_MODULES)


def _parser_adders(module: ModuleType) -> list[Callable[[argparse._SubParsersAction], None]]:  # type: ignore[type-arg]
    """The module's ``add_*_parser`` functions, in the order they are defined."""
    return [f for name, f in vars(module).items()
            if name.startswith("add_") and name.endswith("_parser") and getattr(f, "__module__", "") == module.__name__]


def _command_word(argv: list[str]) -> str | None:
    """The first word of ``argv`` that is not an option: the command, if any (options before it take no
    values, except --answers, whose value is skipped). None after -h or --help: that help lists them all."""
    words = iter(argv)
    for word in words:
        if word in ("-h", "--help"):
            return None
        if word in ("--answers",):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


TOP_FLAGS_FOR_COMMANDS = (("tui_dry_run", "dry_run", "--dry-run"), ("headless_json", "json", "--json"),
                          ("headless_verbose", "verbose", "-v/--verbose"))
"""nbc's global flags, given before a command word: (the top-level parser's name, the command's, the flag)."""


def _hand_top_flags_to_command(args: argparse.Namespace) -> str | None:
    """``nbc-tui --dry-run update`` is ``nbc-tui update --dry-run`` (nbc takes these flags before its command):
    each goes to the command, or is refused when the command has no such flag. Never dropped: a dropped
    --dry-run would run for real. Returns why the command line is refused, or None."""
    for top, own, flag in TOP_FLAGS_FOR_COMMANDS:
        if getattr(args, top, False):
            if not hasattr(args, own):
                return f"{flag} does not apply to '{args.command}'"
            setattr(args, own, True)
    if args.answers is not None:
        return "--answers starts the installer (or --headless); it takes no command"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_word(argv))
    args = parser.parse_args(argv)
    from .commands.headless_flags import wants_headless

    headless = wants_headless(args)
    if headless and args.command is not None:
        print("nbc-tui: --headless runs an answer file and takes no command", file=sys.stderr)
        return 2
    if args.command is None and not headless:
        return run_tui(dry_run=args.tui_dry_run, answers=args.answers)
    if not headless and (refused := _hand_top_flags_to_command(args)):
        print(f"nbc-tui: {refused} (nbc-tui {args.command} --help lists its options)", file=sys.stderr)
        return 2
    # SIGTERM (a service manager stopping a script's command) ends a command as Ctrl-C does: "Interrupted",
    # exit 130, its temporary files removed. The step engine keeps its own handler while it runs.
    signal.signal(signal.SIGTERM, _interrupt)
    log.addHandler(logging.NullHandler())  # without a run's log file, Python would print log lines on stderr
    if headless:
        from .commands.headless_cmd import cmd_headless

        func = cmd_headless
    else:
        func = getattr(args, "func", None)
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
        log.exception("internal error")  # into a run's log file (redacted), else nowhere (the NullHandler)
        # Its type only: its text may quote what it was handling (a secret file's bytes, say).
        print(f"nbc-tui: internal error: {type(exc).__name__} (a bug in nbc-tui; please report it)", file=sys.stderr)
        return 1


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


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

"""The command line: parses flags and dispatches to a subcommand (the TUI comes with issue 4)."""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__
from .backend.errors import NbcError

log = logging.getLogger("nbc_tui")


def build_parser() -> argparse.ArgumentParser:
    from .commands.cache_cmd import add_cache_parser, add_download_parser
    from .commands.disks_cmd import add_list_parser, add_validate_parser
    from .commands.install_cmd import add_install_parser

    parser = argparse.ArgumentParser(
        prog="nbc-tui",
        description="Install a bootable OCI container image onto a disk with A/B root slots (nbc-compatible).",
    )
    parser.add_argument("--version", action="version", version=f"nbc-tui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_install_parser(sub)
    add_list_parser(sub)
    add_validate_parser(sub)
    add_download_parser(sub)
    add_cache_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
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


def _reports_errors_itself(args: argparse.Namespace) -> bool:
    """install's text writer already printed the error (with its hint) on stderr."""
    return args.command in ("install", "inst")


if __name__ == "__main__":
    sys.exit(main())

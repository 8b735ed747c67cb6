"""The top-level flags of an unattended install (``--headless``, ``--answers``, ...): every command line parses
them, so they live apart from :mod:`.headless_cmd` and its imports."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_headless_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("unattended install")
    g.add_argument("--headless", action="store_true",
                   help="install without asking anything, from an answer file (--answers or "
                        "--answers-from-cmdline)")
    g.add_argument("--answers", type=Path, metavar="FILE",
                   help="the answer file (TOML or JSON; docs/answers.md); without --headless the full-screen "
                        "installer starts with its answers filled in")
    g.add_argument("--answers-from-cmdline", action="store_true",
                   help="take the answer file from nbc.answers= on the kernel command line: a path, or "
                        "LABEL=<filesystem label>:<path>")
    g.add_argument("--json", dest="headless_json", action="store_true",
                   help="with --headless: JSON Lines progress on stdout (and nothing else); before a command, "
                        "the command's own --json")
    g.add_argument("-v", "--verbose", dest="headless_verbose", action="store_true",
                   help="with --headless: show the output of the tools that run; before a command, the "
                        "command's own -v")


def wants_headless(args: argparse.Namespace) -> bool:
    """``--answers FILE`` alone starts the full-screen installer with those answers filled in: running
    unattended takes ``--headless`` (the kernel command line form is for unattended boots only)."""
    return bool(args.headless or args.answers_from_cmdline)

"""`nbc-tui completion bash|zsh|fish` and `nbc-tui man`: the command line describing itself.

Both print, on stdout, what a generator makes at run time from the one argparse parser of every command (the
one ``nbc_tui.cli`` builds and hands over as ``args.whole_parser``): shtab's completion script for the shell,
argparse-manpage's roff page. Nothing is hand-written, so a new flag shows up in both. Exit 0; an unknown
shell is argparse's own error (exit 2). tools/install-shell-files.sh and the ISO build install the output.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .. import __version__

SHELLS = ("bash", "zsh", "fish")


def add_completion_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "completion", help="print a shell completion script",
        description="Print the completion script of a shell for every command and flag of nbc-tui.",
        epilog="For example: nbc-tui completion bash > /etc/bash_completion.d/nbc-tui")
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    p.set_defaults(func=cmd_completion)


def add_man_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("man", help="print the manual page (roff)",
                       description="Print nbc-tui's manual page in roff, as installed for `man nbc-tui`.",
                       epilog="Read it without installing it: nbc-tui man | man -l -")
    p.set_defaults(func=cmd_man)


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    parser = _whole_parser(args)
    # The flags' metavars say what they take, across every command: a FILE or a DISK completes as a path.
    paths = {"FILE": shtab.FILE, "DISK": shtab.FILE, "DIR": shtab.DIRECTORY}
    for action in _actions(parser):
        if isinstance(action.metavar, str) and action.metavar in paths:
            action.complete = paths[action.metavar]  # type: ignore[attr-defined]  # shtab reads this attribute
    print(shtab.complete(parser, shell=args.shell).rstrip("\n"))
    return 0


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every argument of ``parser`` and of its subcommands, at every depth."""
    found: list[argparse.Action] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # an alias names the same parser again
                found += _actions(sub)
        else:
            found.append(action)
    return found


def cmd_man(args: argparse.Namespace) -> int:
    print(man_page(_whole_parser(args)).rstrip("\n"))
    return 0


def man_page(parser: argparse.ArgumentParser) -> str:
    """The roff page of ``parser``, section 1."""
    from argparse_manpage.manpage import Manpage

    page = Manpage(parser)
    page.description = "install a bootable OCI container image onto a disk with A/B root slots"
    page.source = f"nbc-tui {__version__}"
    page.manual = "nbc-tui manual"
    return str(page)


def _whole_parser(args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of every command: the one that parsed this command line may hold only this module's."""
    build: Callable[[], argparse.ArgumentParser] = args.whole_parser
    return build()

"""The command line imports only the module of the command it runs, and its table of command words agrees
with the parsers the command modules add."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nbc_tui.cli import COMMAND_MODULES, _command_word, _hand_top_flags_to_command, build_parser

REPO = Path(__file__).resolve().parents[2]


def _words(parser) -> list[str]:
    [sub] = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return list(sub.choices)


def test_the_table_names_every_word_of_every_module_in_help_order() -> None:
    assert _words(build_parser()) == [w for words in COMMAND_MODULES.values() for w in words]
    for module, words in COMMAND_MODULES.items():
        assert _words(build_parser(words[0])) == list(words), module


@pytest.mark.parametrize(("argv", "word"), [
    (["status", "--json"], "status"), (["-v", "dl", "-i", "x"], "dl"), (["--answers", "a.yaml", "--headless"], None),
    (["--dry-run"], None), ([], None), (["instal"], "instal"),
])
def test_the_command_word(argv: list[str], word: str | None) -> None:
    assert _command_word(argv) == word


def test_a_command_imports_only_its_own_module() -> None:
    code = ("import sys, nbc_tui.cli as c; c.build_parser(c._command_word(['status', '--json']))"
            ".parse_args(['status', '--json']); "
            "print(sorted(m for m in sys.modules if m.startswith('nbc_tui.commands.') and m.endswith('_cmd')))")
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, capture_output=True, text=True).stdout
    assert out.strip() == "['nbc_tui.commands.status_cmd']"


def test_a_download_starts_without_signature_libraries_or_the_plan() -> None:
    """cryptography and yaml come in when a signature is checked, the plan's models with a plan: a download
    (the unsigned default) starts without them, which is time every such run saves."""
    code = ("import sys, nbc_tui.cli as c; argv = ['download', '--image', 'r.example/i:1', '--for-install']; "
            "c.build_parser(c._command_word(argv)).parse_args(argv); "
            "print(sorted(m for m in ('cryptography', 'yaml', 'nbc_tui.backend.plan', 'nbc_tui.backend.trust.cosign',"
            " 'nbc_tui.backend.trust.lookaside') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_a_mistyped_command_still_lists_them_all() -> None:
    proc = subprocess.run([sys.executable, "-m", "nbc_tui.cli", "instal"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "invalid choice: 'instal'" in proc.stderr and "'install'" in proc.stderr and "'lint'" in proc.stderr


@pytest.mark.parametrize("argv", [
    ["--dry-run", "update"], ["--dry-run", "install", "--image", "x", "-d", "/dev/vdz", "--yes"],
    ["--dry-run", "rollback"], ["--dry-run", "download", "-i", "x", "--for-install"]])
def test_a_dry_run_given_before_the_command_is_the_commands_own(argv: list[str]) -> None:
    """nbc takes --dry-run before its command: dropped, the update, install or rollback would run for real."""
    args = build_parser(_command_word(argv)).parse_args(argv)
    assert args.dry_run is False and _hand_top_flags_to_command(args) is None and args.dry_run is True


def test_json_and_verbose_before_the_command_reach_it_and_a_flag_it_lacks_is_refused() -> None:
    cli = [sys.executable, "-m", "nbc_tui.cli"]
    proc = subprocess.run([*cli, "--json", "status", "--offline"], cwd=REPO, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "NBC_TUI_ROOT": "/nonexistent"})
    assert proc.returncode == 2 and json.loads(proc.stdout)["error"] is True, proc.stdout + proc.stderr
    args = build_parser("status").parse_args(["-v", "status"])
    assert _hand_top_flags_to_command(args) is None and args.verbose is True
    proc = subprocess.run([*cli, "--dry-run", "lint", "oci:/nonexistent"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "--dry-run does not apply to 'lint'" in proc.stderr, proc.stderr


def test_help_before_the_command_word_lists_every_command() -> None:
    proc = subprocess.run([sys.executable, "-m", "nbc_tui.cli", "-h", "status"], cwd=REPO, capture_output=True,
                          text=True)
    assert proc.returncode == 0 and "install" in proc.stdout and "rollback" in proc.stdout, proc.stdout

"""Shell completions and the man page, generated from the one parser by the real CLI: bash completes install's
flags (in a real bash with bash-completion's helpers), zsh and fish get scripts their shells accept, `man`
renders the page, and once tools/install-shell-files.sh has run, `man nbc-tui` finds it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")
INSTALL_FLAGS = ["--image", "--device", "--via-loopback", "--cosign-key"]

# Sources bash-completion and the script, then calls the function `complete -p nbc-tui` names the way bash
# would for the words given (the last one is being completed), and prints what it offers, one a line.
DRIVE_BASH = r"""
source "$1"
source "$2"
shift 2
spec=$(complete -p nbc-tui) || exit 3
func=${spec##*-F }; func=${func%% *}
COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
"$func" nbc-tui "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"""


def man_env() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C.UTF-8", "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat"}


@pytest.fixture
def bash_script(nbc, tmp_path: Path) -> Path:
    r = nbc("completion", "bash", timeout=120)
    assert r.returncode == 0, r.stderr
    path = tmp_path / "nbc-tui.bash"
    path.write_text(r.stdout)
    return path


def complete_in_bash(script: Path, *words: str) -> list[str]:
    if not BASH_COMPLETION.is_file():
        pytest.skip("bash-completion is not installed (tools/install-deps.sh installs it)")
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", DRIVE_BASH, "drive", str(BASH_COMPLETION),
                           str(script), "nbc-tui", *words], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_bash_completes_the_flags_of_install(bash_script: Path) -> None:
    offered = complete_in_bash(bash_script, "install", "--")
    assert set(INSTALL_FLAGS) <= set(offered), offered
    assert all(word.startswith("--") for word in offered)


def test_bash_completes_commands_and_choices(bash_script: Path) -> None:
    assert complete_in_bash(bash_script, "ins") == ["install", "inst"]
    assert {"completion", "man", "lint", "status"} <= set(complete_in_bash(bash_script, ""))
    assert complete_in_bash(bash_script, "install", "--filesystem", "") == ["btrfs", "ext4"]
    assert complete_in_bash(bash_script, "completion", "") == ["bash", "zsh", "fish"]


def test_bash_completes_paths_where_a_flag_takes_one(bash_script: Path, tmp_path: Path) -> None:
    """A FILE or a DISK completes as any path, a DIR as folders only; a flag that takes a name offers none."""
    (tmp_path / "secrets").mkdir()
    (tmp_path / "passphrase").write_text("x")
    (tmp_path / "policy.json").write_text("{}")
    at = f"{tmp_path}/"
    assert complete_in_bash(bash_script, "install", "--passphrase-file", at + "pa") == [at + "passphrase"]
    assert complete_in_bash(bash_script, "answers", "validate", at + "po") == [at + "policy.json"]
    assert set(complete_in_bash(bash_script, "status", "-d", at + "p")) == {at + "passphrase", at + "policy.json"}
    assert complete_in_bash(bash_script, "update", "--registries.d", at) == [at + "secrets"]
    assert complete_in_bash(bash_script, "install", "--hostname", at + "p") == []


@pytest.mark.parametrize(("shell", "check"), [("zsh", ["zsh", "-n"]), ("fish", ["fish", "--no-execute"])])
def test_zsh_and_fish_scripts_are_generated(nbc, tmp_path: Path, shell: str, check: list[str]) -> None:
    r = nbc("completion", shell, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "nbc-tui" in r.stdout and "via-loopback" in r.stdout
    if shutil.which(shell) is None:
        return  # the script is there; its shell is not, to check it
    path = tmp_path / f"nbc-tui.{shell}"
    path.write_text(r.stdout)
    proc = subprocess.run([*check, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completes_the_flags_of_install(nbc, tmp_path: Path) -> None:
    path = tmp_path / "nbc-tui.fish"
    path.write_text(nbc("completion", "fish", timeout=120).stdout)
    proc = subprocess.run(["fish", "--no-config", "-c", f"source {path}; complete -C 'nbc-tui install --'"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    offered = {line.split("\t")[0] for line in proc.stdout.splitlines()}
    assert set(INSTALL_FLAGS) <= offered, offered


def test_an_unknown_shell_is_a_usage_error(nbc) -> None:
    r = nbc("completion", "tcsh", timeout=120)
    assert r.returncode == 2
    assert "invalid choice: 'tcsh'" in r.stderr and r.stdout == ""


@pytest.mark.skipif(shutil.which("man") is None, reason="man (man-db) is not installed")
def test_man_renders_the_page(nbc, tmp_path: Path) -> None:
    r = nbc("man", timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(".TH NBC\\-TUI \"1\"")
    page = tmp_path / "nbc-tui.1"
    page.write_text(r.stdout)
    proc = subprocess.run(["man", "--no-hyphenation", "--no-justification", "-l", str(page)], capture_output=True,
                          text=True, env=man_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "nbc-tui install" in proc.stdout and "--via-loopback" in proc.stdout
    assert "nbc-tui completion" in proc.stdout and "nbc-tui man" in proc.stdout


@pytest.mark.root  # writes /usr/local/share/{bash-completion,zsh,fish,man}
@pytest.mark.skipif(shutil.which("man") is None, reason="man (man-db) is not installed")
def test_man_nbc_tui_after_the_install_script() -> None:
    for _ in range(2):  # idempotent: the second run changes nothing and succeeds too
        subprocess.run(["bash", str(REPO / "tools/install-shell-files.sh")], check=True, timeout=300)
    for path in ("bash-completion/completions/nbc-tui", "zsh/site-functions/_nbc-tui",
                 "fish/vendor_completions.d/nbc-tui.fish", "man/man1/nbc-tui.1"):
        assert (Path("/usr/local/share") / path).stat().st_size > 0, path
    proc = subprocess.run(["man", "nbc-tui"], capture_output=True, text=True, env=man_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "NBC-TUI(1)" in proc.stdout and "--via-loopback" in proc.stdout

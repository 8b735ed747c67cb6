"""Rendered boot configuration: loader.conf, bootc.conf and grub.cfg, byte for byte."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from nbc_tui.backend.boot.entries import BootEntry
from nbc_tui.backend.boot.grub import grub_quote, parse_grub_cfg, render_early_config, render_grub_cfg
from nbc_tui.backend.boot.systemd_boot import render_entry, render_loader_conf, without_stale_default
from nbc_tui.backend.system.slots import Slot

OPTIONS = ["root=UUID=r", "ro", "rd.etc.overlay=1", "console=ttyS0"]


def test_loader_conf() -> None:
    # No default: sort order picks bootc.conf or the trial, and never a trial with no tries left (systemd >= 258
    # would match `default bootc.conf` to bootc+0-3.conf, whose id drops its counter).
    assert render_loader_conf() == (
        "timeout 5\n"
        "console-mode keep\n"
        "editor no\n"
    )


def test_bootc_entry_has_nbcs_spacing_and_slot_paths() -> None:
    linux, initrd = Slot.A.kernel_paths("6.1.0-18-amd64")
    text = render_entry(BootEntry(title="Debian GNU/Linux 12 (bookworm)", linux=linux, initrd=initrd,
                                  options=tuple(OPTIONS)))
    assert text == (
        "title   Debian GNU/Linux 12 (bookworm)\n"
        "linux   /A/vmlinuz-6.1.0-18-amd64\n"
        "initrd  /A/initramfs-6.1.0-18-amd64.img\n"
        "options root=UUID=r ro rd.etc.overlay=1 console=ttyS0\n"
    )


def test_entry_title_cannot_inject_lines() -> None:
    text = render_entry(BootEntry(title="Evil\noptions init=/bin/sh", linux="A/k", initrd="A/i", options=("ro",)))
    assert text.splitlines()[0] == "title   Evil options init=/bin/sh"
    assert len(text.splitlines()) == 4


def test_grub_cfg_exact_text() -> None:
    entry = BootEntry(title="Fedora Linux 40", linux="A/vmlinuz-6.8", initrd="A/initramfs-6.8.img",
                      options=tuple(OPTIONS))
    assert render_grub_cfg([entry]) == (
        "set timeout=5\n"
        "set default=0\n"
        "\n"
        "menuentry 'Fedora Linux 40' {\n"
        "    linux /A/vmlinuz-6.8 root=UUID=r ro rd.etc.overlay=1 console=ttyS0\n"
        "    initrd /A/initramfs-6.8.img\n"
        "}\n"
    )


def test_grub_cfg_escapes_quotes_in_the_title() -> None:
    entry = BootEntry(title="Bob's OS", linux="A/k", initrd="A/i", options=("ro",))
    assert "menuentry 'Bob'\\''s OS' {\n" in render_grub_cfg([entry])


def test_grub_words_are_quoted_only_when_needed() -> None:
    assert grub_quote("systemd.mount-extra=UUID=AB-12:/boot:vfat:defaults") == (
        "systemd.mount-extra=UUID=AB-12:/boot:vfat:defaults")
    # The kernel's double quotes (or a bare space): double quotes for GRUB, without the kernel's, which GRUB puts
    # back around an argument with a space; kept, GRUB would pass them on escaped and the kernel would split it.
    assert grub_quote('dyndbg="file foo.c +p"') == grub_quote("dyndbg=file foo.c +p") == '"dyndbg=file foo.c +p"'
    assert grub_quote('foo="bar"') == '"foo=bar"'
    assert grub_quote('a="$x\\y z"') == '"a=\\$x\\\\y z"'
    assert grub_quote("a;b$c") == "'a;b$c'"
    assert grub_quote("it's") == "'it'\\''s'"


def test_grub_cfg_two_entries() -> None:
    new = BootEntry(title="OS", linux="B/k", initrd="B/i", options=("ro",))
    old = BootEntry(title="OS (Previous)", linux="A/k", initrd="A/i", options=("ro",))
    text = render_grub_cfg([new, old])
    assert text.count("menuentry ") == 2
    assert "menuentry 'OS (Previous)' {\n    linux /A/k ro\n    initrd /A/i\n}\n" in text


def test_early_config_finds_the_esp_by_uuid() -> None:
    assert render_early_config("ABCD-1234") == (
        "search --no-floppy --fs-uuid --set=root ABCD-1234\n"
        "set prefix=($root)/grub\n"
        "configfile ($root)/grub/grub.cfg\n"
    )


def test_the_default_older_installs_named_is_dropped_and_nothing_else() -> None:
    old = "default bootc.conf\ntimeout 5\nconsole-mode keep\neditor no\n"
    assert without_stale_default(old) == "timeout 5\nconsole-mode keep\neditor no\n"
    assert without_stale_default("default bootc\ntimeout 5\n") is None  # nbc's matches no entry: left alone
    assert without_stale_default(render_loader_conf()) is None


@pytest.mark.skipif(shutil.which("grub-script-check") is None, reason="needs grub-common")
def test_kernel_arguments_with_quotes_read_back_as_one_word_each(tmp_path: Path) -> None:
    """What GRUB's lexer makes of the entry (grub-script-check accepts it; our reader splits it alike)."""
    options = ("root=UUID=r", 'dyndbg="file foo.c +p"', "a;b$c", 'x="$y"')
    cfg = tmp_path / "grub.cfg"
    cfg.write_text(render_grub_cfg([BootEntry(title="T", linux="A/vmlinuz", initrd="A/initrd", options=options)]))
    check = subprocess.run(["grub-script-check", str(cfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    [entry] = parse_grub_cfg(cfg.read_text())
    assert entry.options == ("root=UUID=r", "dyndbg=file foo.c +p", "a;b$c", "x=$y")

"""WelcomeScreen: what this machine offers for an install, each problem in words with what to do."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Button, Footer, Static

from ..backend.errors import NbcError
from ..backend.image.cache import CacheKind, list_cached
from ..backend.install import BASE_TOOLS
from ..backend.runner import which
from ..backend.storage.tpm import TPM_DEVICES
from .encryption import tpm_present

EFI_DIR = Path("/sys/firmware/efi")
MKFS_TOOLS = ("mkfs.btrfs", "mkfs.ext4")
# How each state is marked: plain ASCII so the Linux console shows it too.
MARK = {"ok": "[ ok ]", "notice": "[note]", "problem": "[ !! ]"}


class Severity(StrEnum):
    OK = "ok"
    NOTICE = "notice"
    PROBLEM = "problem"


@dataclass(frozen=True)
class Check:
    """One fact about the machine: what was found, and when it is a problem, what to do."""

    key: str
    severity: Severity
    text: str


def survey_machine(*, efi_dir: Path = EFI_DIR, tpm_device: Path | None = None) -> list[Check]:
    """Look at the machine (no changes): root, UEFI, tools, TPM, staged images. Blocking (the cache lock)."""
    checks = [
        Check("root", Severity.OK, "Running as root.") if os.geteuid() == 0 else
        Check("root", Severity.PROBLEM, "Not running as root: disks cannot be written. "
              "Quit and start it again with sudo (a dry run works without root)."),
        Check("uefi", Severity.OK, "This machine started with UEFI firmware.") if efi_dir.is_dir() else
        Check("uefi", Severity.NOTICE, "This machine did not start with UEFI firmware; the installed system "
              "boots only with UEFI. Installing for another machine or into a disk-image file still works."),
    ]
    missing = [t for t in (*BASE_TOOLS, *MKFS_TOOLS) if which(t) is None]
    checks.append(
        Check("tools", Severity.OK, "Every tool the install needs is present.") if not missing else
        Check("tools", Severity.PROBLEM, f"Missing tools: {', '.join(missing)}. Install the packages that "
              "provide them (on Debian, tools/install-deps.sh lists them), then start again."))
    checks.append(
        Check("tpm", Severity.OK, "A TPM 2.0 is present: an encrypted disk could unlock itself at boot.")
        if tpm_present((tpm_device,) if tpm_device is not None else TPM_DEVICES) else
        Check("tpm", Severity.NOTICE, "No TPM 2.0 found: an encrypted disk would ask for its passphrase "
              "at every boot."))
    checks.append(_staged_check())
    return checks


def _staged_check() -> Check:
    try:
        staged = list_cached(CacheKind.INSTALL)
    except NbcError as exc:
        return Check("staged", Severity.NOTICE, f"The staged image cache could not be read: {exc}.")
    if not staged:
        return Check("staged", Severity.NOTICE, "No staged images: the image will be fetched during the install "
                     "(the network must work), or stage one first with `nbc-tui download`.")
    names = ", ".join(e.os_release_pretty_name or e.image_ref for e in staged[:3])
    more = f" and {len(staged) - 3} more" if len(staged) > 3 else ""
    return Check("staged", Severity.OK, f"{len(staged)} staged image(s) for an offline install: {names}{more}.")


class WelcomeScreen(Screen[bool]):
    """The first screen. ``checks`` replaces the survey of this machine (tests, snapshots)."""

    HELP = ("Welcome: this screen lists what this machine offers for an install. Problems marked [ !! ] "
            "stop a real install; notes are for your information. Continue with Enter.")
    BINDINGS = [Binding("escape", "app.request_quit", "Quit", show=False)]

    def __init__(self, *, checks: list[Check] | None = None) -> None:
        super().__init__()
        self.checks = checks

    def compose(self) -> ComposeResult:
        yield Static("nbc-tui: install a bootable container image", classes="title")
        with VerticalScroll(classes="body"):
            yield Static(Content(
                "This installer puts a bootable OCI container image onto a disk, with two root slots "
                "(A and B) so that updates can be rolled back. Nothing is written until you confirm "
                "on the review screen."), classes="lead")
            if getattr(self.app, "dry_run", False):
                yield Static("Dry run: the whole flow is shown, nothing is written.", classes="notice lead")
            yield Vertical(Static("Checking this machine...", classes="message"), id="checks")
        with Horizontal(classes="buttons"):
            yield Button("Quit", id="quit")
            yield Button("Continue", id="continue", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#continue", Button).focus()
        if self.checks is not None:
            self.show_checks(self.checks)
        else:
            self.survey()

    @work(thread=True, exit_on_error=False, group="survey")
    def survey(self) -> None:
        checks = survey_machine()
        self.app.call_from_thread(self.show_checks, checks)

    def show_checks(self, checks: list[Check]) -> None:
        self.checks = checks
        box = self.query_one("#checks", Vertical)
        box.remove_children()
        box.mount_all(Static(Content(f"{MARK[c.severity]} {c.text}"), classes=f"check {c.severity}",
                             id=f"check-{c.key}") for c in checks)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks or () if c.severity is Severity.PROBLEM]

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "continue":
            self.dismiss(True)
        else:
            self.app.action_request_quit()  # type: ignore[attr-defined]

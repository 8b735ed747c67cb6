"""Snapshots of the screens test_screens_simple.py does not cover, at 80x24 in the default look and the
console look: disk (a fixed list of fake disks), encryption (with a TPM), progress (mid-install, fed
fixed events, no engine running), cancel question, the system screen typed into (its time zone list
filtered; without the image's lists, a refusal), and the welcome screen's keyboard dialog filtered. Nothing in
them depends on this machine or the clock.

Also: every console-look snapshot (of both files) draws only glyphs a Linux console font has."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from textual import work
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Input

from nbc_tui.app import NbcTuiApp
from nbc_tui.backend.disks import Disk
from nbc_tui.draft import PlanDraft
from nbc_tui.screens.done import DoneScreen
from nbc_tui.screens.encryption import EncryptionScreen
from nbc_tui.screens.progress import InstallOutcome
from nbc_tui.screens.review import ReviewScreen
from nbc_tui.screens.system import SystemScreen
from nbc_tui.widgets.recovery_key import RecoveryKeyScreen
from tests.tui.harness import (
    CHECKS,
    CONSOLE,
    FAKE_DISKS,
    LIVE,
    PASSPHRASE,
    SIZE,
    FakeDiskScreen,
    FrozenProgress,
    feed_mid_install,
    progress_plan,
    rendered_text,
    system_draft,
    wait_for,
    welcome,
)
from tests.tui.test_screens_simple import SCREENS as SIMPLE_SCREENS

SNAPSHOTS = Path(__file__).parent / "__snapshots__"
# Glyphs Textual draws by default that console fonts lack (NOTES.md, textual #5011), and their kin.
CONSOLE_MISSING = set("▁▂▃▄▅▆▇█▉▊▋▌▍▎▏▔▕━╸╺⭘·✓✗▸…")
RECOVERY_KEY = "fjkbdhvn-ctbcrhit-ujtgclrb-vbjnhbnl-kltrhjvf-nlfhvcbe-ilejiuvg-ennvdcdc"


async def push(pilot: Pilot[Any], screen: Screen[Any]) -> None:
    await pilot.app.push_screen(screen)
    await pilot.pause()
    await pilot.pause()


async def disk_state(pilot: Pilot[Any]) -> None:
    await push(pilot, FakeDiskScreen(PlanDraft(), FAKE_DISKS))


async def disk_chosen_state(pilot: Pilot[Any]) -> None:
    screen = FakeDiskScreen(PlanDraft(), FAKE_DISKS)
    await push(pilot, screen)
    await pilot.press("down", "down", "down", "enter")


async def layout_dialog_state(pilot: Pilot[Any]) -> None:
    """The advanced layout over the chosen 40 GB disk, with a root slot too large for it."""
    await disk_chosen_state(pilot)
    await pilot.press("f6")
    await pilot.pause()
    await pilot.press("tab", "ctrl+u", *"20G")
    await pilot.pause()


async def encryption_state(pilot: Pilot[Any]) -> None:
    await push(pilot, EncryptionScreen(PlanDraft(), tpm=True))
    await pilot.press("right", "space", "tab", *PASSPHRASE, "enter", *PASSPHRASE, "enter", "down", "space")


async def encryption_no_tpm_state(pilot: Pilot[Any]) -> None:
    await push(pilot, EncryptionScreen(PlanDraft(), tpm=False))


async def progress_state(pilot: Pilot[Any]) -> None:
    screen = FrozenProgress(progress_plan())
    await push(pilot, screen)
    await feed_mid_install(pilot, screen)


async def cancel_state(pilot: Pilot[Any]) -> None:
    await progress_state(pilot)
    await pilot.press("ctrl+c")
    await pilot.pause()


async def recovery_key_state(pilot: Pilot[Any]) -> None:
    await progress_state(pilot)
    await pilot.app.push_screen(RecoveryKeyScreen(SecretStr(RECOVERY_KEY)))
    await pilot.pause()


async def done_dry_run_state(pilot: Pilot[Any]) -> None:
    outcome = InstallOutcome(ok=True, message="Dry run complete: nothing was written",
                             log_path="/var/log/nbc-tui/nbc-tui.log")
    await push(pilot, DoneScreen(outcome, PlanDraft(), dry_run=True, plan=progress_plan(),
                                 answers_path=Path("/root/nbc-tui-answers.toml")))


async def system_typed_state(pilot: Pilot[Any]) -> None:
    """A user typed (the password is the secret no snapshot may show), then "Ber" in the time zone field and
    Down: Europe/Berlin highlighted in the filtered list."""
    screen = SystemScreen(system_draft(), defaults=LIVE)
    await push(pilot, screen)
    await pilot.press(*"nbc-box")
    for selector, value in (("#user-name", "alice"), ("#full-name", "Alice Example"), ("#password", PASSPHRASE),
                            ("#password-again", PASSPHRASE)):
        screen.query_one(selector, Input).value = value
    screen.query_one("#timezone", Input).focus()
    await pilot.press("ctrl+u", *"Ber", "down")
    await pilot.pause()


async def system_refused_state(pilot: Pilot[Any]) -> None:
    """A staged image (its lists not known: a note stands in), and two passwords that differ, refused."""
    screen = SystemScreen(system_draft(image_time_zones=(), image_keymaps=()), defaults=LIVE)
    await push(pilot, screen)
    screen.query_one("#user-name", Input).value = "alice"
    screen.query_one("#password", Input).value = PASSPHRASE
    screen.query_one("#password-again", Input).value = PASSPHRASE + "x"
    await pilot.press("ctrl+n")
    await pilot.pause()


class FakeDiskReview(ReviewScreen):
    """The real review screen reading a fixed disk instead of this machine's."""

    @work(thread=True, exclusive=True, exit_on_error=False, group="disk")
    def read_disk(self, device: str) -> Disk:
        return next(e.disk for e in FAKE_DISKS if e.disk.device == device)


async def welcome_keyboard_state(pilot: Pilot[Any]) -> None:
    """F3 on the welcome screen, "de" typed in the keyboard dialog: de highlighted in the filtered list."""
    await push(pilot, welcome(checks=CHECKS))
    await pilot.press("f3")
    await pilot.pause()
    await pilot.press("d", "e")
    await pilot.pause()


async def review_disk_encrypted_state(pilot: Pilot[Any]) -> None:
    draft = PlanDraft(image_ref="quay.io/example/os:stable", device="/dev/nvme0n1", serial="S69ENF0R812345",
                      encrypt=True, passphrase=SecretStr(PASSPHRASE), tpm2=True, tpm2_pcrs=(7,),
                      image_summary="Example OS 42, version 42\nArchitecture amd64, 2.1 GB of files",
                      root_password=SecretStr(PASSPHRASE))
    screen = FakeDiskReview(draft)
    await push(pilot, screen)
    await wait_for(pilot, lambda: screen.confirm_word is not None, timeout=5, what="the disk read")
    await pilot.pause()


STATES: dict[str, Callable[[Pilot[Any]], Awaitable[None]]] = {
    "disk": disk_state,
    "disk-chosen": disk_chosen_state,
    "layout-dialog": layout_dialog_state,
    "encryption": encryption_state,
    "encryption-no-tpm": encryption_no_tpm_state,
    "progress": progress_state,
    "cancel-install": cancel_state,
    "recovery-key": recovery_key_state,
    "done-dry-run": done_dry_run_state,
    "review-disk-encrypted": review_disk_encrypted_state,
    "system-typed": system_typed_state,
    "system-refused": system_refused_state,
    "welcome-keyboard": welcome_keyboard_state,
}


@pytest.mark.parametrize("console", [False, True], ids=["default", "console"])
@pytest.mark.parametrize("name", sorted(STATES))
def test_snapshot(name: str, console: bool, snap_compare: Any) -> None:
    app = NbcTuiApp(start_wizard=False, look=CONSOLE if console else None)
    assert snap_compare(app, terminal_size=SIZE, run_before=STATES[name])


@pytest.mark.parametrize("name", sorted(STATES))
async def test_console_look_draws_only_ascii_and_no_secret(name: str) -> None:
    app = NbcTuiApp(start_wizard=False, look=CONSOLE)
    async with app.run_test(size=SIZE) as pilot:
        await STATES[name](pilot)
        text = rendered_text(app)
    odd = sorted({ch for ch in text if not (32 <= ord(ch) < 127 or ch == "\n")})
    assert odd == [], f"glyphs a console font may lack: {odd}"
    assert PASSPHRASE not in text


def test_console_snapshots_have_only_console_glyphs() -> None:
    files = sorted(SNAPSHOTS.glob("*/*console*.svg"))
    assert len(files) == len(STATES) + len(SIMPLE_SCREENS), files  # the console halves of both files
    for svg in files:
        body = svg.read_text(encoding="utf-8")
        found = sorted(set(body) & CONSOLE_MISSING)
        assert found == [], f"{svg.name} draws {found}"
        assert PASSPHRASE not in body


def test_no_snapshot_shows_a_secret() -> None:
    for svg in SNAPSHOTS.glob("*/*.svg"):
        assert PASSPHRASE not in svg.read_text(encoding="utf-8"), svg.name

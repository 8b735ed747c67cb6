"""The encryption screen and the plan it builds: no encryption, LUKS2 with a passphrase typed twice,
TPM2 only where a TPM is present; the chosen disk's serial pin and the wipe consent in the plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from textual.widgets import Input, RadioSet

from nbc_tui.app import NbcTuiApp
from nbc_tui.backend.describe import encryption_lines
from nbc_tui.backend.storage.tpm import tpm_present
from nbc_tui.draft import PlanDraft
from nbc_tui.screens.encryption import EncryptionScreen, check_passphrases, passphrase_strength
from nbc_tui.screens.review import ReviewScreen
from tests.tui.harness import FAKE_DISKS, SIZE, FakeDiskScreen, image_file_draft, rendered_text, show

PASSPHRASE = "Tui-Luks-pass-51c2e"


# -- pure logic ----------------------------------------------------------------------------------------

def test_strength_in_words_never_shows_the_text() -> None:
    assert passphrase_strength("") == "Type a passphrase of at least 8 characters."
    assert passphrase_strength("abc").startswith("Strength: too short (at least 8 characters) (3 characters")
    assert passphrase_strength("abcdefgh") == "Strength: weak (8 characters; lower-case)"
    assert passphrase_strength("abcdefgh1234") == "Strength: fair (12 characters; lower-case, digits)"
    assert passphrase_strength("Abcdefgh-1234") == (
        "Strength: good (13 characters; lower-case, upper-case, digits, symbols)")
    assert passphrase_strength("correct horse battery staple").startswith("Strength: strong (28 characters")
    assert "other" in passphrase_strength("pässwörter-sind-lang")
    assert PASSPHRASE not in passphrase_strength(PASSPHRASE)


def test_passphrase_refusals_in_words() -> None:
    assert "too short" in (check_passphrases("short", "short") or "")
    assert "differ" in (check_passphrases("long enough", "long enougH") or "")
    assert check_passphrases("long enough", "long enough") is None


def test_tpm_presence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NBC_TUI_TPM", raising=False)
    managed = tmp_path / "tpmrm0"
    assert not tpm_present((managed,))  # a TPM 1.2 has /dev/tpm0 alone: no TPM2 key can go there
    managed.touch()
    assert tpm_present((managed,))
    monkeypatch.setenv("NBC_TUI_TPM", "0")
    assert not tpm_present((managed,))
    monkeypatch.setenv("NBC_TUI_TPM", "1")
    assert tpm_present(())


def test_draft_pins_the_chosen_disk_and_consents_to_the_wipe() -> None:
    plan = PlanDraft(image_ref="oci:/x", device="/dev/sdz", serial="S3Z9NB0K123").to_plan()
    assert plan.target.serial == "S3Z9NB0K123" and plan.target.wipe
    plan = PlanDraft(image_ref="oci:/x", device="/dev/loop7", serial=None).to_plan()
    assert plan.target.serial is None and plan.target.wipe  # a disk without a serial is not pinned
    plan = image_file_draft().to_plan()
    assert plan.target.serial is None and not plan.target.wipe


def test_draft_encryption_becomes_the_plans() -> None:
    draft = image_file_draft(encrypt=True, passphrase=SecretStr(PASSPHRASE), tpm2=True, tpm2_pcrs=(7,))
    enc = draft.to_plan().encryption
    assert enc is not None and enc.passphrase == SecretStr(PASSPHRASE) and enc.tpm2 and enc.tpm2_pcrs == (7,)
    draft.tpm2 = False
    enc = draft.to_plan().encryption
    assert enc is not None and not enc.tpm2 and enc.tpm2_pcrs == ()
    draft.encrypt = False
    assert draft.to_plan().encryption is None
    assert PASSPHRASE not in draft.to_plan().model_dump_json()


def test_review_words_for_encryption() -> None:
    base = image_file_draft()
    assert encryption_lines(base.to_plan()) == ["Encryption: none (anyone holding the disk can read it)"]
    words = encryption_lines(image_file_draft(encrypt=True, passphrase=SecretStr(PASSPHRASE)).to_plan())
    assert words == ["Encryption: LUKS2 on root1, root2 and var (not the ESP)",
                     "Unlocking: the passphrase, at every boot"]
    tpm = image_file_draft(encrypt=True, passphrase=SecretStr(PASSPHRASE), tpm2=True, tpm2_pcrs=(7,))
    assert encryption_lines(tpm.to_plan())[1] == "Unlocking: the TPM2 while PCR 7 is unchanged, else the passphrase"
    tpm.tpm2_pcrs = ()
    assert "on any boot of this machine" in encryption_lines(tpm.to_plan())[1]


# -- the screen ----------------------------------------------------------------------------------------

async def _fill(shown: Any, first: str, again: str) -> None:
    shown.screen.query_one("#passphrase", Input).value = first
    shown.screen.query_one("#passphrase-again", Input).value = again
    await shown.pilot.pause()


async def test_no_encryption_is_the_default_and_fields_wait() -> None:
    draft = image_file_draft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, EncryptionScreen(draft, tpm=False))
        assert shown.screen.query_one("#passphrase", Input).disabled
        assert "No TPM 2.0 on this machine" in rendered_text(pilot.app)
        assert not shown.screen.query("#unlock")
        await pilot.click("#continue")
        assert shown.results == [True]
    assert draft.to_plan().encryption is None


@pytest.mark.parametrize(("keymap", "noted"), [("de", True), ("us", False), ("", False)])
async def test_a_non_us_keyboard_is_told_the_boot_prompts_layout(keymap: str, noted: bool) -> None:
    """The welcome screen switched the keyboard: the passphrase typed here may be asked at boot on US keys."""
    draft = image_file_draft()
    draft.console_keymap = keymap
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        await show(pilot, EncryptionScreen(draft, tpm=False))
        text = " ".join(rendered_text(pilot.app).split())
        assert ("This keyboard is de, but at boot the passphrase is asked with the layout" in text) is noted


async def test_mismatch_and_short_passphrases_are_refused_in_words() -> None:
    draft = image_file_draft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, EncryptionScreen(draft, tpm=False))
        await pilot.press("right", "space")  # keyboard: LUKS2 with a passphrase
        assert not shown.screen.query_one("#passphrase", Input).disabled
        await _fill(shown, "short", "short")
        await pilot.click("#continue")
        assert not shown.results
        assert "too short: use at least 8 characters" in shown.text("#status")
        await _fill(shown, PASSPHRASE, PASSPHRASE + "x")
        await pilot.click("#continue")
        assert not shown.results
        assert "The two passphrases differ" in shown.text("#status")
        assert shown.screen.query_one("#passphrase-again", Input).value == ""
        assert not draft.encrypt and draft.passphrase is None
        assert PASSPHRASE not in rendered_text(pilot.app)  # masked


async def test_passphrase_typed_twice_by_keyboard_fills_the_plan_with_tpm_pcr7() -> None:
    draft = image_file_draft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, EncryptionScreen(draft, tpm=True))
        unlock = shown.screen.query_one("#unlock", RadioSet)
        assert unlock.disabled and unlock.pressed_button is not None
        assert unlock.pressed_button.name == "passphrase"  # TPM unlock is opted into, never assumed
        await pilot.press("right", "space", "tab", *PASSPHRASE)
        assert "Strength: good" in shown.text("#strength") or "Strength: strong" in shown.text("#strength")
        await pilot.press("enter", *PASSPHRASE, "enter")  # Enter moves on, never leaves
        assert not shown.results
        assert shown.screen.focused is unlock
        await pilot.press("down", "space")  # the recommended TPM2 choice, PCR 7
        text = rendered_text(pilot.app)
        assert "PCR 7: only while Secure Boot state is unchanged (recommended)" in text
        assert "no PCRs: unlocks on any boot of this machine (weakest)" in text
        assert PASSPHRASE not in text
        await pilot.click("#continue")
        assert shown.results == [True]
    enc = draft.to_plan().encryption
    assert enc is not None and enc.passphrase == SecretStr(PASSPHRASE)
    assert enc.tpm2 and enc.tpm2_pcrs == (7,)


async def test_enter_picks_luks_then_goes_on_from_the_last_field() -> None:
    draft = image_file_draft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, EncryptionScreen(draft, tpm=False))
        await pilot.press("right", "enter")  # LUKS2 highlighted, then picked: the screen stays
        assert not shown.results and not shown.screen.query_one("#passphrase", Input).disabled
        await pilot.press("tab", *PASSPHRASE, "enter", *PASSPHRASE)
        assert not shown.results
        await pilot.press("enter")  # the last field (no TPM here): goes on
        assert shown.results == [True]
    assert draft.encrypt and draft.passphrase == SecretStr(PASSPHRASE) and not draft.tpm2


async def test_tpm_without_pcrs_and_coming_back_keeps_the_answers() -> None:
    draft = image_file_draft(encrypt=True, passphrase=SecretStr(PASSPHRASE), tpm2=True, tpm2_pcrs=())
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, EncryptionScreen(draft, tpm=True))
        screen = shown.screen
        assert screen.query_one("#passphrase", Input).value == PASSPHRASE
        assert screen.query_one("#unlock", RadioSet).pressed_button.name == "nopcr"  # type: ignore[union-attr]
        await pilot.click("#continue")
        assert shown.results == [True]
    enc = draft.to_plan().encryption
    assert enc is not None and enc.tpm2 and enc.tpm2_pcrs == ()


async def test_choosing_no_encryption_again_drops_the_passphrase() -> None:
    draft = image_file_draft(encrypt=True, passphrase=SecretStr(PASSPHRASE))
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, EncryptionScreen(draft, tpm=False))
        await pilot.press("left", "space")
        await pilot.click("#continue")
        assert shown.results == [True]
    assert draft.passphrase is None and draft.to_plan().encryption is None


async def test_review_says_what_is_encrypted() -> None:
    draft = image_file_draft(encrypt=True, passphrase=SecretStr(PASSPHRASE), tpm2=True, tpm2_pcrs=(7,))
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, ReviewScreen(draft))
        text = shown.text("#plan-text")
        assert "Encryption: LUKS2 on root1, root2 and var (not the ESP)" in text
        assert PASSPHRASE not in text


async def test_choosing_a_disk_pins_its_serial_and_a_file_drops_it(tmp_path: Path) -> None:
    draft = PlanDraft(image_ref="oci:/x")
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        screen = FakeDiskScreen(draft, FAKE_DISKS)
        shown = await show(pilot, screen)
        await pilot.press("down", "down", "down", "enter")  # vdb
        assert (draft.device, draft.serial) == ("/dev/vdb", "nbc-target-1")
        await pilot.press("up", "up", "enter")  # sda, the live medium: refused, the choice stays
        assert (draft.device, draft.serial) == ("/dev/vdb", "nbc-target-1")
        await pilot.press("up", "enter")  # nvme0n1
        assert (draft.device, draft.serial) == ("/dev/nvme0n1", "S69ENF0R812345")
        plan = draft.to_plan()
        assert plan.target.serial == "S69ENF0R812345" and plan.target.wipe
        screen.query_one("#image-path", Input).value = str(tmp_path / "disk.img")
        await pilot.click("#use-image")
        assert shown.results == [True]
    assert (draft.device, draft.serial, draft.image_file) == (None, None, tmp_path / "disk.img")

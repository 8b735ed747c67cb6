"""Pilot tests of the wizard's simple screens (welcome, image, options, review, done, dialogs), each in
the real App at 80x24 with the real backend underneath; refusals included. Snapshots at the end."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from textual.pilot import Pilot
from textual.widgets import Button, Input, OptionList

from nbc_tui.app import NbcTuiApp
from nbc_tui.backend.image.cache import CacheKind, download
from nbc_tui.backend.image.opener import open_image
from nbc_tui.backend.image_facts import describe_reference
from nbc_tui.backend.machine import Severity, survey_machine
from nbc_tui.backend.plan import InstallPlan
from nbc_tui.draft import PlanDraft
from nbc_tui.screens.done import DoneScreen
from nbc_tui.screens.image import ImageScreen
from nbc_tui.screens.options import OptionsScreen
from nbc_tui.screens.progress import InstallOutcome as Outcome
from nbc_tui.screens.review import ReviewScreen
from nbc_tui.screens.system import SystemScreen
from nbc_tui.screens.welcome import WelcomeScreen
from nbc_tui.widgets.confirm_quit import ConfirmQuit
from nbc_tui.widgets.help_dialog import HelpDialog
from tests.support.signing import CosignSigner, write_policy
from tests.tui.harness import (
    CHECKS,
    CONSOLE,
    LIVE,
    SIZE,
    image_file_draft,
    rendered_text,
    show,
    system_draft,
    wait_for,
    welcome,
)

# -- welcome ----------------------------------------------------------------------------------------


def test_survey_reads_this_machine(tmp_path: Path) -> None:
    checks = {c.key: c for c in survey_machine(efi_dir=tmp_path / "no-efi", tpm_device=tmp_path / "no-tpm")}
    assert set(checks) == {"root", "uefi", "tools", "tpm", "staged"}
    assert checks["uefi"].severity is Severity.NOTICE and "UEFI" in checks["uefi"].text
    assert checks["tpm"].severity is Severity.NOTICE
    assert "No staged images" in checks["staged"].text  # the private cache of tests/tui/conftest.py


async def test_welcome_lists_checks_and_continues() -> None:
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, welcome(checks=CHECKS))
        assert "[ !! ] Missing tools: mkfs.btrfs" in rendered_text(pilot.app)
        assert [c.key for c in shown.screen.problems] == ["tools"]  # type: ignore[attr-defined]
        await pilot.press("enter")  # Continue has the focus
        assert shown.results == [True]


async def test_welcome_quit_asks_first() -> None:
    app = NbcTuiApp(start_wizard=False)
    async with app.run_test(size=SIZE) as pilot:
        shown = await show(pilot, welcome(checks=CHECKS))
        await pilot.click("#quit")
        assert isinstance(app.screen, ConfirmQuit)
        await pilot.press("escape")
        assert app.screen is shown.screen and not shown.results


async def test_welcome_surveys_when_given_nothing() -> None:
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, WelcomeScreen(PlanDraft()))
        await wait_for(pilot, lambda: shown.screen.checks is not None)  # type: ignore[attr-defined]
        await pilot.pause()
        assert "Running as root" in rendered_text(pilot.app) or "Not running as root" in rendered_text(pilot.app)


# -- image --------------------------------------------------------------------------------------------

def test_reference_words() -> None:
    assert describe_reference("oci:/srv/layout:v1") == "An OCI image layout directory: /srv/layout, tag v1"
    assert describe_reference("localhost/os:1").startswith("An image of the local Podman or Docker daemon")
    assert "full download" in describe_reference("quay.io/org/os:tag")


async def test_image_malformed_reference_is_shown_as_typed() -> None:
    draft = PlanDraft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, ImageScreen(draft))
        await pilot.press(*"Bad/Name")
        status = shown.screen.query_one("#ref-status")
        assert status.has_class("-error")
        assert "uppercase" in shown.text("#ref-status")
        await pilot.press("enter")  # a malformed reference is not looked up
        assert shown.screen.query_one("#continue", Button).disabled
        assert not shown.results


async def test_image_unknown_reference_is_refused(tmp_path: Path) -> None:
    draft = PlanDraft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, ImageScreen(draft))
        shown.screen.query_one("#image-ref", Input).value = f"oci:{tmp_path}/missing"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "could not be used" in shown.text("#status"))
        assert shown.screen.query_one("#status").has_class("-error")
        assert shown.screen.query_one("#continue", Button).disabled
        await pilot.click("#continue")
        await pilot.press("ctrl+n")  # the key for Continue asks for a look-up first
        assert "Look the image up first" in shown.text("#status")
        assert not shown.results and draft.image_ref == ""


async def test_image_lookup_shows_facts_and_fills_the_draft(synthetic_image: str) -> None:
    draft = PlanDraft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, ImageScreen(draft))
        shown.screen.query_one("#image-ref", Input).value = synthetic_image
        await pilot.press("enter")
        await wait_for(pilot, lambda: shown.screen.facts is not None)  # type: ignore[attr-defined]
        facts = shown.text("#image-facts")
        assert "Synthetic Linux 1 (test), version 1" in facts
        assert "Architecture amd64" in facts and "Digest sha256:" in facts
        await pilot.press("enter")  # the focus moved to Continue
        assert shown.results == [True]
        assert draft.image_ref == synthetic_image and draft.staged_digest is None
        assert draft.image_summary.startswith("Synthetic Linux 1 (test)")


async def test_image_lookup_says_whether_the_signature_verified_and_refuses_an_unsigned_image(
        synthetic_image: str, registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The look-up checks signatures as the install will: here the user's containers policy (HOME) asks for a
    cosign signature of everything from the registry."""
    signer = CosignSigner.create(tmp_path / "cosign")
    signed, unsigned = registry.push(synthetic_image, "tui/signed:1"), registry.push(synthetic_image, "tui/plain:1")
    with open_image(signed) as source:
        signer.push_signature(registry.host, "tui/signed", source.manifest_digest,
                              docker_reference=f"{registry.host}/tui/signed")
    monkeypatch.setenv("HOME", str(tmp_path))
    write_policy(tmp_path / ".config/containers/policy.json", {
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {"docker": {registry.host: [{"type": "sigstoreSigned", "keyPath": str(signer.public_pem),
                                                   "signedIdentity": {"type": "matchRepository"}}]}}})
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, ImageScreen(PlanDraft()))
        field = shown.screen.query_one("#image-ref", Input)
        field.value = signed
        await pilot.press("enter")
        await wait_for(pilot, lambda: shown.screen.facts is not None)  # type: ignore[attr-defined]
        assert "Signature: verified: cosign signature of sha256:" in shown.text("#image-facts")
        field.focus()
        field.value = unsigned
        await pilot.press("enter")
        await wait_for(pilot, lambda: "could not be used" in shown.text("#status"))
        assert "has no valid cosign signature" in shown.text("#status")
        assert shown.screen.facts is None  # type: ignore[attr-defined]


async def test_image_staged_entry_is_offered(synthetic_image: str) -> None:
    with open_image(synthetic_image) as source:
        entry = download(source, CacheKind.INSTALL, ref_text="quay.io/example/synthetic:1")
    draft = PlanDraft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, ImageScreen(draft))
        options = shown.screen.query_one("#staged", OptionList)
        await wait_for(pilot, lambda: options.option_count == 1)
        options.focus()
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: shown.screen.facts is not None)  # type: ignore[attr-defined]
        assert "staged, offline" in shown.text("#image-facts")
        await pilot.press("enter")
        assert shown.results == [True]
        assert draft.image_ref == "quay.io/example/synthetic:1"
        assert draft.staged_digest == entry.image_digest


# -- options ------------------------------------------------------------------------------------------

async def test_options_refuse_different_passwords() -> None:
    draft = PlanDraft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, OptionsScreen(draft))
        shown.screen.query_one("#password", Input).value = "secret-1"
        shown.screen.query_one("#password-again", Input).value = "secret-2"
        await pilot.click("#continue")
        assert not shown.results
        assert "The two passwords differ" in shown.text("#status")
        assert draft.root_password is None
        assert shown.screen.query_one("#password-again", Input).value == ""


async def test_options_fill_the_draft() -> None:
    draft = PlanDraft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, OptionsScreen(draft))
        # Keyboard only: the filesystem set has the focus; right + space picks ext4.
        await pilot.press("right", "space", "tab", "right", "right", "space")
        shown.screen.query_one("#kernel-args", Input).value = "  console=ttyS0   quiet "
        shown.screen.query_one("#password", Input).value = "pw"
        shown.screen.query_one("#password-again", Input).value = "pw"
        await pilot.click("#continue")
        assert shown.results == [True]
    assert draft.filesystem == "ext4" and draft.bootloader == "systemd-boot"
    assert draft.kernel_args == ["console=ttyS0", "quiet"]
    assert draft.root_password == SecretStr("pw")


async def test_options_enter_goes_on_from_a_picked_choice() -> None:
    draft = PlanDraft(filesystem="ext4")
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, OptionsScreen(draft))
        await pilot.press("enter")  # the filesystem's picked choice has the focus
        assert shown.results == [True]
    assert draft.filesystem == "ext4" and draft.bootloader == "auto"


async def test_options_enter_picks_the_highlighted_choice_before_going_on() -> None:
    draft = PlanDraft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, OptionsScreen(draft))
        await pilot.press("right", "enter")  # ext4 highlighted, then picked: the screen stays
        assert not shown.results
        await pilot.press("enter")  # on the picked choice: goes on
        assert shown.results == [True]
    assert draft.filesystem == "ext4"


async def test_options_enter_walks_the_fields_then_goes_on() -> None:
    draft = PlanDraft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, OptionsScreen(draft))
        shown.screen.query_one("#kernel-args", Input).focus()
        await pilot.press(*"quiet", "enter")
        assert shown.screen.focused is shown.screen.query_one("#password")
        await pilot.press(*"pw", "enter")
        assert shown.screen.focused is shown.screen.query_one("#password-again") and not shown.results
        await pilot.press(*"pw", "enter")  # the last field: goes on
        assert shown.results == [True]
    assert draft.kernel_args == ["quiet"] and draft.root_password == SecretStr("pw")


async def test_options_empty_password_sets_none() -> None:
    draft = PlanDraft(root_password=SecretStr("old"))
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, OptionsScreen(draft))
        assert shown.screen.query_one("#password", Input).value == "old"  # kept when coming back
        shown.screen.query_one("#password", Input).value = ""
        shown.screen.query_one("#password-again", Input).value = ""
        await pilot.click("#continue")
        assert shown.results == [True] and draft.root_password is None


# -- review -------------------------------------------------------------------------------------------

async def test_review_image_file_needs_the_name_typed(tmp_path: Path) -> None:
    target = tmp_path / "disk.img"
    draft = image_file_draft(target, kernel_args=["quiet"])
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, ReviewScreen(draft))
        text = shown.text("#plan-text")
        assert f"a new disk-image file {target}, 35.0 GB (sparse)" in text
        assert "GPT: p1 boot 2.0 GB, p2 root1 12.0 GB, p3 root2 12.0 GB, p4 var (the rest)" in text
        assert "Kernel arguments: quiet" in text
        confirm = shown.screen.query_one("#confirm-input", Input)
        assert confirm.has_focus and shown.screen.query_one("#install", Button).disabled
        await pilot.press("enter")  # a single Enter never confirms
        assert not shown.results and "Type disk.img exactly" in shown.text("#status")
        await pilot.press("ctrl+n")  # nor does the key for Continue
        assert not shown.results
        await pilot.press(*"disk.im", "enter")  # nor a near miss
        assert not shown.results
        await pilot.press("g", "enter")
        assert len(shown.results) == 1
    plan = shown.results[0]
    assert isinstance(plan, InstallPlan) and plan == draft.to_plan()
    assert not target.exists()  # the review writes nothing


async def test_review_invalid_plan_is_shown_in_words() -> None:
    draft = image_file_draft(image_size_gib=4)  # smaller than the layout needs
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, ReviewScreen(draft))
        assert "This plan cannot be installed" in shown.text("#plan-text")
        assert "smaller than the layout needs" in shown.text("#plan-text")
        assert not shown.screen.query_one("#confirm-input").display
        await pilot.press("enter")  # Back has the focus
        assert shown.results == [None]


@pytest.fixture
def loop_disk(tmp_path: Path) -> Iterator[str]:
    backing = tmp_path / "loop.img"
    with backing.open("wb") as f:
        f.truncate(40 << 30)
    device = subprocess.run(["losetup", "--find", "--show", str(backing)], check=True, capture_output=True,
                            text=True).stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], check=False)


@pytest.mark.root
async def test_review_disk_is_described_and_confirmed_by_name(loop_disk: str) -> None:
    draft = PlanDraft(image_ref="oci:/srv/x", device=loop_disk)
    name = Path(loop_disk).name
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, ReviewScreen(draft))
        await wait_for(pilot, lambda: shown.screen.confirm_word is not None)  # type: ignore[attr-defined]
        text = shown.text("#plan-text")
        assert f"Target: the disk {loop_disk} (" in text and "40.0 GB" in text
        assert "will be destroyed" in text
        assert f"Erase {name} and install" in str(shown.screen.query_one("#install", Button).label)
        await pilot.press(*name)
        assert not shown.screen.query_one("#install", Button).disabled
        await pilot.click("#install")
        assert shown.results and shown.results[0].target.device == Path(loop_disk)


# -- done ---------------------------------------------------------------------------------------------

async def test_done_after_a_disk_install_offers_reboot() -> None:
    draft = PlanDraft(image_ref="x", device="/dev/sdz")
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, DoneScreen(Outcome(True, "Installation complete!", "/var/log/x.log"), draft))
        ids = [b.id for b in shown.screen.query(Button)]
        assert ids == ["stay", "poweroff", "reboot"]
        await pilot.press("enter")  # Reboot has the focus
        assert shown.results == ["reboot"]


async def test_done_after_a_failure_offers_retry() -> None:
    outcome = Outcome(False, "Installation failed", "/var/log/nbc-tui/nbc-tui.log",
                      error="sgdisk failed (exit 4)", hint="check the disk")
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, DoneScreen(outcome, image_file_draft()))
        text = rendered_text(pilot.app)
        assert "sgdisk failed (exit 4)" in text and "What to do: check the disk" in text
        assert "/var/log/nbc-tui/nbc-tui.log" in text
        assert "reboot" not in [b.id for b in shown.screen.query(Button)]
        await pilot.press("enter")
        assert shown.results == ["retry"]


async def test_done_dry_run_never_offers_reboot() -> None:
    draft = PlanDraft(image_ref="x", device="/dev/sdz")
    async with NbcTuiApp(start_wizard=False, dry_run=True).run_test(size=SIZE) as pilot:
        shown = await show(pilot, DoneScreen(Outcome(True, "Dry run complete", ""), draft))
        assert "nothing was written" in rendered_text(pilot.app)
        assert [b.id for b in shown.screen.query(Button)] == ["retry", "stay"]


# -- dialogs and keys ---------------------------------------------------------------------------------

async def test_ctrl_c_asks_and_stay_keeps_going() -> None:
    app = NbcTuiApp(start_wizard=False)
    async with app.run_test(size=SIZE) as pilot:
        shown = await show(pilot, ImageScreen(PlanDraft()))
        await pilot.press("ctrl+c")
        assert isinstance(app.screen, ConfirmQuit)
        await pilot.press("enter")  # "Stay" is the default answer
        assert app.screen is shown.screen and app.is_running
        await pilot.press("ctrl+c", "y")
        await pilot.pause()
    assert app.return_value == "stay"


async def test_f1_shows_the_screens_help_and_esc_closes_it() -> None:
    app = NbcTuiApp(start_wizard=False)
    async with app.run_test(size=SIZE) as pilot:
        shown = await show(pilot, OptionsScreen(PlanDraft()))
        await pilot.press("f1")
        assert isinstance(app.screen, HelpDialog)
        assert "root password typed twice" in rendered_text(app)
        await pilot.press("escape")
        assert app.screen is shown.screen and not shown.results
        await pilot.press("f1", "ctrl+c")  # Ctrl+C on the help still asks (about the screen below)
        assert isinstance(app.screen, ConfirmQuit)
        await pilot.press("escape")
        assert app.screen is shown.screen


async def test_esc_goes_back() -> None:
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, OptionsScreen(PlanDraft()))
        await pilot.press("escape")
        assert shown.results == [None]


# -- the console look ---------------------------------------------------------------------------------

SCREENS = {
    "welcome": lambda: welcome(checks=CHECKS),
    "image": lambda: ImageScreen(PlanDraft()),
    "options": lambda: OptionsScreen(PlanDraft()),
    "system": lambda: SystemScreen(system_draft(), defaults=LIVE),  # the live time zone and keymap offered
    "review": lambda: ReviewScreen(image_file_draft()),
    "done-ok": lambda: DoneScreen(Outcome(True, "Installation complete!", "/var/log/nbc-tui/nbc-tui.log"),
                                  PlanDraft(image_ref="x", device="/dev/sdz"),
                                  plan=PlanDraft(image_ref="x", device="/dev/sdz").to_plan(),
                                  answers_path=Path("/root/nbc-tui-answers.toml")),
    "done-failed": lambda: DoneScreen(Outcome(False, "Installation failed", "/var/log/nbc-tui/nbc-tui.log",
                                              error="sgdisk failed", hint="check the disk"), image_file_draft()),
    "confirm-quit": ConfirmQuit,
    "help": lambda: HelpDialog("Options: what each field means."),
}


@pytest.mark.parametrize("name", sorted(SCREENS))
async def test_console_look_draws_only_ascii(name: str) -> None:
    app = NbcTuiApp(start_wizard=False, look=CONSOLE)
    async with app.run_test(size=SIZE) as pilot:
        await show(pilot, SCREENS[name]())
        text = rendered_text(app)
        assert app.theme == "ansi-dark" and app.animation_level == "none"
        odd = sorted({ch for ch in text if not (32 <= ord(ch) < 127 or ch == "\n")})
        assert odd == [], f"glyphs a console font may lack: {odd}"


@pytest.mark.parametrize("size", [(40, 12), (60, 16), (200, 60)])
async def test_screens_survive_small_and_large_terminals(size: tuple[int, int]) -> None:
    async with NbcTuiApp(start_wizard=False).run_test(size=size) as pilot:
        for make in SCREENS.values():
            await show(pilot, make())
            pilot.app.pop_screen()
            await pilot.pause()


# -- snapshots (80x24; the default look and the console look) -----------------------------------------

@pytest.mark.parametrize("console", [False, True], ids=["default", "console"])
@pytest.mark.parametrize("name", sorted(SCREENS))
def test_snapshot(name: str, console: bool, snap_compare: Any) -> None:
    app = NbcTuiApp(start_wizard=False, look=CONSOLE if console else None)

    async def push(pilot: Pilot[Any]) -> None:
        await pilot.app.push_screen(SCREENS[name]())
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=push)

"""The whole wizard with the real screens and the real engine: driven by keys alone (there and back, and
the demo's walk with Enter alone), saving the answers of a session and loading them back (with a user and the
system's identity too), an encrypted install refused by the engine shown on the done screen, and every screen
surviving a 40x12 terminal."""

from __future__ import annotations

import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Input, Static

from nbc_tui.app import NbcTuiApp
from nbc_tui.backend.answers import AnswerFileError, load_answers
from nbc_tui.backend.plan import InstallPlan
from nbc_tui.backend.sizes import GiB
from nbc_tui.draft import PlanDraft
from nbc_tui.screens.disk import DiskScreen
from nbc_tui.screens.done import DoneScreen, default_answers_path
from nbc_tui.screens.encryption import EncryptionScreen
from nbc_tui.screens.image import ImageScreen
from nbc_tui.screens.options import OptionsScreen
from nbc_tui.screens.progress import InstallOutcome
from nbc_tui.screens.review import ReviewScreen
from nbc_tui.screens.system import SystemScreen
from nbc_tui.screens.welcome import WelcomeScreen
from nbc_tui.widgets.confirm_quit import ConfirmQuit
from nbc_tui.widgets.help_dialog import HelpDialog
from nbc_tui.widgets.layout_dialog import LayoutDialog
from nbc_tui.widgets.log_view import LogView
from nbc_tui.widgets.recovery_key import RecoveryKeyScreen, key_lines
from tests.tui.harness import (
    CONSOLE,
    FAKE_DISKS,
    LIVE,
    SIZE,
    FakeDiskScreen,
    FlowApp,
    FrozenProgress,
    feed_mid_install,
    progress_plan,
    rendered_text,
    system_draft,
    until_screen,
    wait_for,
    welcome,
)
from tests.tui.pty_driver import REPO

ROOT_PASSWORD = "Flow-Root-pw-3e1b"
PASSPHRASE = "Flow-Luks-pass-9a4c"
USER_PASSWORD = "Flow-User-pw-51c7"


@pytest.fixture(autouse=True)
def private_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "nbc-tui.log"
    monkeypatch.setenv("NBC_TUI_LOG_FILE", str(path))
    monkeypatch.setenv("NBC_TUI_TPM", "0")  # this machine's TPM (if any) stays out of the flow
    return path


async def keys_only_checks(pilot: Pilot[Any], screen: Screen[Any]) -> None:
    """F1 opens this screen's help and Esc closes it; Ctrl-C asks and Esc stays."""
    app = pilot.app
    await pilot.press("f1")
    assert isinstance(app.screen, HelpDialog), f"F1 on {screen!r}"
    await pilot.press("escape")
    assert app.screen is screen
    await pilot.press("ctrl+c")
    assert isinstance(app.screen, ConfirmQuit), f"Ctrl-C on {screen!r}"
    await pilot.press("escape")
    assert app.screen is screen


async def image_by_keys(pilot: Pilot[Any], ref: str | None) -> ImageScreen:
    image = await until_screen(pilot, ImageScreen)
    if ref is not None:
        await pilot.press(*ref)
    await pilot.press("enter")  # looks it up
    await wait_for(pilot, lambda: image.facts is not None, timeout=60,
                   what=f"the look-up ({image.query_one('#status', Static).render()})")
    await pilot.press("enter")  # the focus moved to Continue
    return image


async def disk_file_by_keys(pilot: Pilot[Any], path: Path | None) -> None:
    """A disk-image file: typed into its field (Tab from the table), or, named already, Enter alone."""
    disk = await until_screen(pilot, DiskScreen)
    await pilot.pause(0.2)
    if path is not None:
        await pilot.press("tab")  # from the table to the path
        assert disk.focused is not None and disk.focused.id == "image-path"
        await pilot.press(*str(path))
    else:
        assert disk.focused is not None and disk.focused.id == "image-path"  # the file named before
    await pilot.press("enter")


SMALL_LAYOUT = {"esp_size": "256M", "root_size": "2G", "var_min_size": "512M"}
"""A layout for a small disk-image file: it needs 4.8 GB, so a 5 GiB file."""


async def small_layout_and_file_by_keys(pilot: Pilot[Any], path: Path) -> DiskScreen:
    """The advanced layout (F6) with :data:`SMALL_LAYOUT` typed over the defaults, then a 5 GiB disk-image file:
    refused first under the default layout, then taken."""
    disk = await until_screen(pilot, DiskScreen)
    await pilot.pause(0.2)
    await pilot.press("tab", *str(path), "tab", "ctrl+u", "5", "enter")
    assert pilot.app.screen is disk and "5 GiB is too small" in disk.status.message, disk.status.message
    await pilot.press("f6")
    dialog = await until_screen(pilot, LayoutDialog)
    assert "Does not fit on a disk-image file of 5 GiB" in str(dialog.query_one("#layout-fit", Static).render())
    for size in SMALL_LAYOUT.values():  # each field, then Enter: the next one, from the last one Apply
        await pilot.press("ctrl+u", *size, "enter")
    await until_screen(pilot, DiskScreen)
    assert "at least 4.8 GB" in str(disk.query_one("#title", Static).render())
    assert "ESP 256.0 MB, root slots 2.0 GB each, /var at least 512.0 MB" in str(
        disk.query_one("#layout-line", Static).render())
    disk.query_one("#image-size", Input).focus()
    await pilot.press("enter")  # uses the file
    return disk


async def encryption_by_keys(pilot: Pilot[Any], passphrase: str | None) -> None:
    await until_screen(pilot, EncryptionScreen)
    if passphrase is not None:
        # LUKS2; Enter moves on from the first field and, from the last one (no TPM here), goes on.
        await pilot.press("right", "space", "tab", *passphrase, "enter", *passphrase, "enter")
    else:
        await pilot.press("enter")  # on "No encryption", already picked: goes on


async def options_by_keys(pilot: Pilot[Any], password: str | None) -> None:
    await until_screen(pilot, OptionsScreen)
    if password is not None:
        # ext4, systemd-boot, two kernel arguments, the password twice (Enter in the last field goes on)
        await pilot.press("right", "space", "tab", "right", "right", "space", "tab", *"console=ttyS0 quiet",
                          "tab", *password, "tab", *password, "enter")
    else:
        await pilot.press("enter")  # on the filesystem, already picked: goes on


async def system_by_keys(pilot: Pilot[Any], *, with_user: bool) -> SystemScreen:
    """Without a user: Ctrl+N keeps everything as it is. With one: a host name, Europe/Berlin from the
    image's list (typed "Ber", Down, Enter), the keymap offered, the locale left, then alice, an
    administrator, whose second password differs at first (refused), then matches."""
    screen = await until_screen(pilot, SystemScreen)
    if not with_user:
        await pilot.press("ctrl+n")
        return screen
    await pilot.press(*"nbc-box", "enter", "ctrl+u", *"Ber", "down", "enter", "enter", "enter")
    await pilot.press(*"alice", "tab", *"Alice Example", "tab", *USER_PASSWORD, "tab", *"Flow-User-pw-0000",
                      "enter", "right", "enter", "enter")
    assert pilot.app.screen is screen and "The two passwords differ" in screen.status.message
    await pilot.press("tab", *USER_PASSWORD, "enter", "enter")  # again, then on the admin choice: goes on
    return screen


async def confirm_by_keys(pilot: Pilot[Any], word: str) -> None:
    review = await until_screen(pilot, ReviewScreen)
    await wait_for(pilot, lambda: review.confirm_word is not None, timeout=10, what="the review")
    assert review.confirm_word == word, review.error
    await pilot.press(*word, "enter")


# -- by keys alone ------------------------------------------------------------------------------------

async def test_every_screen_by_keys_alone_there_and_back(synthetic_image: str, tmp_path: Path) -> None:
    target = tmp_path / "disk.img"
    app = FlowApp(dry_run=True, watch_disks=False)
    async with app.run_test(size=SIZE) as pilot:
        welcome = await until_screen(pilot, WelcomeScreen)
        await keys_only_checks(pilot, welcome)
        await pilot.press("enter")
        await keys_only_checks(pilot, await until_screen(pilot, ImageScreen))
        await image_by_keys(pilot, synthetic_image)
        await keys_only_checks(pilot, await until_screen(pilot, DiskScreen))
        await disk_file_by_keys(pilot, target)
        await keys_only_checks(pilot, await until_screen(pilot, EncryptionScreen))
        await encryption_by_keys(pilot, None)
        await keys_only_checks(pilot, await until_screen(pilot, OptionsScreen))
        await options_by_keys(pilot, None)
        await keys_only_checks(pilot, await until_screen(pilot, SystemScreen))
        await system_by_keys(pilot, with_user=False)
        await keys_only_checks(pilot, await until_screen(pilot, ReviewScreen))
        # Esc all the way back, one screen at a time, to the question on the first screen.
        for kind in (SystemScreen, OptionsScreen, EncryptionScreen, DiskScreen, ImageScreen, WelcomeScreen):
            await pilot.press("escape")
            await until_screen(pilot, kind)
        await pilot.press("escape")
        assert isinstance(app.screen, ConfirmQuit)
        await pilot.press("n")
        # ... and forward again: every answer was kept.
        await pilot.press("enter")
        await image_by_keys(pilot, None)
        await disk_file_by_keys(pilot, None)
        await encryption_by_keys(pilot, None)
        await options_by_keys(pilot, None)
        await system_by_keys(pilot, with_user=False)
        await confirm_by_keys(pilot, "disk.img")
        done: DoneScreen = await until_screen(pilot, DoneScreen)
        assert done.outcome.ok, done.outcome
        await keys_only_checks(pilot, done)
        await pilot.press("enter")  # Leave
        await pilot.pause()
    assert app.return_value == "stay"
    assert app.plan is not None and app.plan.target.image_file == target and app.plan.image.ref == synthetic_image
    assert not target.exists()


async def test_the_demo_walks_with_enter_alone(synthetic_image: str, tmp_path: Path) -> None:
    """The README's demo (tools/demo.sh's answers, the synthetic image in place of the demo's): its answers
    name the image and an 8 GiB disk-image file with a small layout, which the disk screen shows; Enter alone
    goes through every screen (through each field of the system screen's form, then on from its last one), and
    only the review's confirmation is typed."""
    answers = tmp_path / "answers.toml"
    answers.write_text((REPO / "tools/demo-answers.toml").read_text().replace("@IMAGE_REF@", synthetic_image))
    (tmp_path / "root-password").write_text("Demo-root-pw-1\n")
    target = tmp_path / "debian.img"
    app = FlowApp(draft=PlanDraft.from_plan(load_answers(answers)), dry_run=True, watch_disks=False)
    async with app.run_test(size=SIZE) as pilot:
        await until_screen(pilot, WelcomeScreen)
        await pilot.press("enter")
        await image_by_keys(pilot, None)  # Enter looks the prefilled reference up, Enter goes on
        disk = await until_screen(pilot, DiskScreen)
        assert "at least 7.5 GB" in str(disk.query_one("#title", Static).render())
        assert "ESP 512.0 MB, root slots 3.0 GB each, /var at least 1.0 GB" in str(
            disk.query_one("#layout-line", Static).render())
        assert disk.query_one("#image-size", Input).value == "8"
        await pilot.press("enter")
        for kind in (EncryptionScreen, OptionsScreen):
            await until_screen(pilot, kind)
            await pilot.press("enter")
        system = await until_screen(pilot, SystemScreen)
        for _field in range(9):  # host name, time zone, keymap, locale, user name, full name, passwords, admin
            await pilot.press("enter")
        assert app.screen is not system
        review = await until_screen(pilot, ReviewScreen)
        await wait_for(pilot, lambda: review.confirm_word is not None, timeout=10, what="the review")
        await pilot.press("enter")
        assert app.screen is review  # a single Enter never confirms
        await pilot.press(*"debian.img", "enter")
        done = await until_screen(pilot, DoneScreen)
        assert done.outcome.ok, done.outcome
        await pilot.press("enter")  # Leave
        await pilot.pause()
    assert app.return_value == "stay"
    assert app.plan is not None and app.plan.target.image_file == target and app.plan.encryption is None
    assert (app.plan.target.image_size, app.plan.layout.root_size) == (8 * GiB, 3 * GiB)


# -- save these answers -----------------------------------------------------------------------------

def without_typed_secrets(plan: InstallPlan) -> InstallPlan:
    users = tuple(u.model_copy(update={"password": None}) for u in plan.system.users)
    return plan.model_copy(update={"system": plan.system.model_copy(update={"root_password": None, "users": users})})


async def save_on_done(pilot: Pilot[Any], path: Path) -> DoneScreen:
    done: DoneScreen = await until_screen(pilot, DoneScreen)
    assert done.outcome.ok, done.outcome
    field = done.query_one("#answers-path", Input)
    field.focus()
    await pilot.press("ctrl+a", "ctrl+k", *str(path), "enter")
    await pilot.pause()
    return done


async def test_saved_answers_load_back_to_the_sessions_plan(synthetic_image: str, tmp_path: Path,
                                                           private_log: Path) -> None:
    answers = tmp_path / "answers" / "install.toml"
    app = FlowApp(dry_run=True, watch_disks=False)
    async with app.run_test(size=SIZE) as pilot:
        await until_screen(pilot, WelcomeScreen)
        await pilot.press("enter")
        await image_by_keys(pilot, synthetic_image)
        await disk_file_by_keys(pilot, tmp_path / "disk.img")
        await encryption_by_keys(pilot, None)
        await options_by_keys(pilot, ROOT_PASSWORD)
        await system_by_keys(pilot, with_user=False)
        await confirm_by_keys(pilot, "disk.img")
        done = await save_on_done(pilot, answers)
        said = done.status.message
        assert done.saved == answers, said
        assert f"Saved to {answers} (the root password left out" in said
        screen_text = rendered_text(app)
    plan = app.plan
    assert plan is not None and plan.system.root_password == SecretStr(ROOT_PASSWORD)
    assert (plan.layout.filesystem, plan.boot.bootloader, plan.boot.kernel_args) == (
        "ext4", "systemd-boot", ("console=ttyS0", "quiet"))
    assert load_answers(answers) == without_typed_secrets(plan)
    text = answers.read_text()
    assert "root password was typed in and is not saved" in text
    assert answers.stat().st_mode & 0o777 == 0o600
    for where in (text, private_log.read_text(), screen_text):
        assert ROOT_PASSWORD not in where


async def test_a_user_the_identity_and_a_small_layout_by_keys_reviewed_and_saved_without_the_password(
        identity_image: str, tmp_path: Path, private_log: Path) -> None:
    """An image that ships time zones, keymaps, useradd and a sudo group onto a 5 GiB disk-image file with a
    small layout set on the disk screen: the system screen offers the live keymap, Europe/Berlin is picked from
    the image's list, alice is made an administrator; the review shows it all; the dry run's engine checks it
    against the image; the saved answers have it all but the password."""
    answers = tmp_path / "answers.toml"
    app = FlowApp(dry_run=True, watch_disks=False)
    async with app.run_test(size=SIZE) as pilot:
        await until_screen(pilot, WelcomeScreen)
        await pilot.press("enter")
        await image_by_keys(pilot, identity_image)
        await small_layout_and_file_by_keys(pilot, tmp_path / "disk.img")
        await encryption_by_keys(pilot, None)
        await options_by_keys(pilot, None)
        await system_by_keys(pilot, with_user=True)
        review = await until_screen(pilot, ReviewScreen)
        await wait_for(pilot, lambda: review.confirm_word is not None, timeout=10, what="the review")
        shown = str(review.query_one("#plan-text", Static).render())
        assert "p1 boot 256.0 MB, p2 root1 2.0 GB, p3 root2 2.0 GB, p4 var (the rest)" in shown, shown
        assert "Host name nbc-box, time zone Europe/Berlin, keymap de" in shown
        assert "User alice (Alice Example), administrator, password set" in shown
        await pilot.press(*"disk.img", "enter")
        done = await save_on_done(pilot, answers)
        assert "the password of alice left out" in done.status.message, done.status.message
        screen_text = rendered_text(app)
    plan = app.plan
    assert plan is not None
    assert (plan.system.hostname, plan.system.timezone, plan.system.keymap) == (
        "nbc-box", "Europe/Berlin", LIVE.keymap)  # the live system's keymap, offered because the image ships it
    (alice,) = plan.system.users
    assert (alice.name, alice.full_name, alice.admin, alice.password) == (
        "alice", "Alice Example", True, SecretStr(USER_PASSWORD))
    text = answers.read_text()
    saved = tomllib.loads(text)
    assert saved["system"]["hostname"] == "nbc-box" and saved["system"]["timezone"] == "Europe/Berlin"
    assert saved["system"]["users"] == [{"name": "alice", "full_name": "Alice Example", "admin": True}]
    assert {key: saved["layout"][key] for key in SMALL_LAYOUT} == SMALL_LAYOUT
    assert saved["target"]["image_size"] in ("5G", 5 << 30), saved["target"]
    assert "# The password of alice was typed in and is not saved in this file." in text
    assert '# password_file = "/root/password-alice"' in text
    assert load_answers(answers) == without_typed_secrets(plan)
    for where in (text, private_log.read_text(), screen_text):
        assert USER_PASSWORD not in where


async def test_encrypted_answers_leave_the_passphrase_out(synthetic_image: str, tmp_path: Path) -> None:
    answers = tmp_path / "answers.toml"
    app = FlowApp(dry_run=True, watch_disks=False)
    async with app.run_test(size=SIZE) as pilot:
        await until_screen(pilot, WelcomeScreen)
        await pilot.press("enter")
        await image_by_keys(pilot, synthetic_image)
        await disk_file_by_keys(pilot, tmp_path / "disk.img")
        await encryption_by_keys(pilot, PASSPHRASE)
        await options_by_keys(pilot, None)
        await system_by_keys(pilot, with_user=False)
        await confirm_by_keys(pilot, "disk.img")
        done = await save_on_done(pilot, answers)
        assert "the passphrase left out" in done.status.message
    plan = app.plan
    assert plan is not None and plan.encryption is not None
    assert plan.encryption.passphrase == SecretStr(PASSPHRASE)
    text = answers.read_text()
    assert PASSPHRASE not in text and "LUKS passphrase was typed in and is not saved" in text
    with pytest.raises(AnswerFileError):
        load_answers(answers)  # an encrypted plan without its passphrase is not a plan
    # Given as a file, the way the comment says, it is the session's plan again.
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE)
    answers.write_text(text.replace('# passphrase_file = "/root/passphrase"', f'passphrase_file = "{secret}"'))
    loaded = load_answers(answers)
    assert loaded.encryption is not None and loaded.encryption.passphrase_file == secret
    assert loaded.model_copy(update={"encryption": None}) == plan.model_copy(update={"encryption": None})
    assert tomllib.loads(answers.read_text())["encryption"].get("tpm2", False) is False


async def test_saving_to_an_impossible_place_says_why(tmp_path: Path) -> None:
    plan = PlanDraft(image_ref="oci:/x", image_file=tmp_path / "d.img").to_plan()
    outcome = InstallOutcome(ok=True, message="Dry run complete", log_path="")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    async with NbcTuiApp(start_wizard=False, dry_run=True).run_test(size=SIZE) as pilot:
        done = DoneScreen(outcome, PlanDraft(), plan=plan, answers_path=blocker / "answers.toml")
        await pilot.app.push_screen(done)
        await pilot.pause()
        await pilot.click("#save-answers")
        said = done.status.message
        assert done.saved is None and f"Cannot save the answers to {blocker}/answers.toml" in said
        assert done.status.has_class("-error")


async def test_no_saving_after_a_failure(tmp_path: Path) -> None:
    plan = PlanDraft(image_ref="oci:/x", image_file=tmp_path / "d.img").to_plan()
    outcome = InstallOutcome(ok=False, message="Installation failed", log_path="", error="it broke")
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        done = DoneScreen(outcome, PlanDraft(), plan=plan)
        await pilot.app.push_screen(done)
        await pilot.pause()
        assert not done.query("#answers-path")


def test_default_answers_path(tmp_path: Path) -> None:
    writable, elsewhere = tmp_path / "a.toml", tmp_path / "missing" / "b.toml"
    assert default_answers_path((elsewhere, writable)) == writable
    assert default_answers_path((elsewhere,)) == elsewhere


# -- an encrypted install on this machine: the engine refuses, the done screen says why ---------------

@pytest.mark.root
async def test_encrypted_install_refused_by_the_engine_is_shown_on_done(
        synthetic_image: str, tmp_path: Path, private_log: Path) -> None:
    target = tmp_path / "disk.img"
    app = FlowApp(watch_disks=False)
    async with app.run_test(size=SIZE) as pilot:
        await until_screen(pilot, WelcomeScreen)
        await pilot.press("enter")
        await image_by_keys(pilot, synthetic_image)
        await disk_file_by_keys(pilot, target)
        await encryption_by_keys(pilot, PASSPHRASE)
        await options_by_keys(pilot, None)
        await system_by_keys(pilot, with_user=False)
        await confirm_by_keys(pilot, "disk.img")
        done: DoneScreen = await until_screen(pilot, DoneScreen, timeout=300)
        text = str(done.query_one("#done-text", Static).render())
        assert not done.outcome.ok
        assert "encryption needs device-mapper" in text and "nothing was written" in text
        assert "What to do:" in text
        assert not done.query("#answers-path")  # nothing to save after a failure
    assert not target.exists()
    assert PASSPHRASE not in private_log.read_text()


# -- small terminals ----------------------------------------------------------------------------------

def _screens(tmp_path: Path) -> dict[str, Any]:
    ok = InstallOutcome(ok=True, message="Installation complete!", log_path="/var/log/nbc-tui/nbc-tui.log")
    plan = PlanDraft(image_ref="oci:/x", image_file=tmp_path / "d.img").to_plan()
    return {
        "welcome": welcome,
        "image": lambda: ImageScreen(PlanDraft()),
        "disk": lambda: FakeDiskScreen(PlanDraft(), FAKE_DISKS),
        "encryption": lambda: EncryptionScreen(PlanDraft(), tpm=True),
        "options": lambda: OptionsScreen(PlanDraft()),
        "system": lambda: SystemScreen(system_draft(), defaults=LIVE),
        "review": lambda: ReviewScreen(PlanDraft(image_ref="oci:/x", image_file=tmp_path / "d.img")),
        "progress": lambda: FrozenProgress(progress_plan()),
        "recovery-key": lambda: RecoveryKeyScreen(SecretStr("abcdefgh-ijklmnop-qrstuvwx-yz012345")),
        "done": lambda: DoneScreen(ok, PlanDraft(), plan=plan, answers_path=tmp_path / "a.toml"),
        "help": lambda: HelpDialog("Some help."),
        "confirm-quit": ConfirmQuit,
    }


@pytest.mark.parametrize("console", [False, True], ids=["default", "console"])
async def test_each_screen_survives_40x12_and_back(tmp_path: Path, console: bool) -> None:
    app = NbcTuiApp(start_wizard=False, look=CONSOLE if console else None)
    async with app.run_test(size=SIZE) as pilot:
        for name, make in _screens(tmp_path).items():
            screen = make()
            await app.push_screen(screen)
            await pilot.pause()
            if isinstance(screen, FrozenProgress):
                await feed_mid_install(pilot, screen)
            await pilot.resize_terminal(40, 12)
            await pilot.pause()
            await pilot.press("tab", "tab")
            await pilot.resize_terminal(80, 24)
            await pilot.pause()
            assert app.screen is screen, name
            app.pop_screen()
            await pilot.pause()


# -- the TPM2 recovery key ------------------------------------------------------------------------------

RECOVERY_KEY = "fjkbdhvn-ctbcrhit-ujtgclrb-vbjnhbnl-kltrhjvf-nlfhvcbe-ilejiuvg-ennvdcdc"


def test_recovery_key_breaks_between_groups() -> None:
    assert key_lines(RECOVERY_KEY) == "fjkbdhvn-ctbcrhit-ujtgclrb-vbjnhbnl-\nkltrhjvf-nlfhvcbe-ilejiuvg-ennvdcdc"
    assert key_lines("abcd") == "abcd"


async def test_recovery_key_is_shown_once_and_the_engine_waits_for_it() -> None:
    app = NbcTuiApp(start_wizard=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = FrozenProgress(progress_plan())
        await app.push_screen(screen)
        await pilot.pause()
        # The engine's thread hands the key over and waits until the user has noted it.
        engine = threading.Thread(target=screen._recovery_key, args=(SecretStr(RECOVERY_KEY),))
        engine.start()
        await until_screen(pilot, RecoveryKeyScreen)
        await pilot.press("escape")  # Esc does not hide the key
        assert isinstance(app.screen, RecoveryKeyScreen) and engine.is_alive()
        assert "kltrhjvf-nlfhvcbe" in rendered_text(app)
        await pilot.press("enter")  # "I have written it down"
        engine.join(5)
        assert not engine.is_alive() and app.screen is screen
        # From now on no line of the install can show it.
        screen.post_message(FrozenProgress.ToolOutput(f"systemd-cryptenroll: {RECOVERY_KEY}"))
        await pilot.pause()
        lines = screen.query_one(LogView).plain_lines
    assert RECOVERY_KEY not in "\n".join(lines)
    assert "  | systemd-cryptenroll: <redacted>" in lines

"""The App: the look chosen for each terminal, the wizard controller (with small stand-ins, and with the
real disk and progress screens in a dry run into a disk-image file), keys, and the CLI's TUI branch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from textual import on
from textual.app import ComposeResult
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Button, Input, Static

from nbc_tui.app import NbcTuiApp
from nbc_tui.backend.plan import InstallPlan
from nbc_tui.cli import build_parser
from nbc_tui.draft import PlanDraft
from nbc_tui.look import FALLBACK_SIZE, choose_look
from nbc_tui.screens.disk import DiskScreen
from nbc_tui.screens.done import DoneScreen
from nbc_tui.screens.encryption import EncryptionScreen
from nbc_tui.screens.image import ImageScreen
from nbc_tui.screens.options import OptionsScreen
from nbc_tui.screens.progress import InstallOutcome
from nbc_tui.screens.review import ReviewScreen
from nbc_tui.screens.system import SystemScreen
from nbc_tui.screens.welcome import WelcomeScreen
from nbc_tui.widgets.confirm_quit import ConfirmQuit
from tests.tui.harness import SIZE, FlowApp, until_screen, wait_for

REPO = Path(__file__).resolve().parents[2]


# -- look.py --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("term", ["linux", "vt100", "vt102", "vt220", "vt220-8bit"])
def test_console_terms_get_the_console_look(term: str) -> None:
    look = choose_look({"TERM": term}, "tty1", (80, 25))
    assert look.console and not look.mouse and look.theme == "ansi-dark"
    assert look.reason == f"TERM={term}"
    assert look.environment() == {"TEXTUAL_ANIMATIONS": "none"}


@pytest.mark.parametrize("term", ["xterm-256color", "screen", "tmux-256color", ""])
def test_graphical_terminals_keep_the_default_look(term: str) -> None:
    look = choose_look({"TERM": term}, "pts/3", (120, 40))
    assert not look.console and look.mouse and look.environment() == {}


@pytest.mark.parametrize("tty", ["ttyS0", "ttyUSB1", "ttyAMA0", "/dev/ttyS1"])
def test_serial_consoles_get_the_console_look_whatever_term_says(tty: str) -> None:
    look = choose_look({"TERM": "xterm-256color"}, tty, (80, 24))
    assert look.console and "serial console" in look.reason
    assert look.env["TEXTUAL_FPS"]  # fewer redraws over a slow line


def test_no_color_gets_the_console_look() -> None:
    look = choose_look({"TERM": "xterm-256color", "NO_COLOR": ""}, "pts/0", (80, 24))
    assert look.console and look.reason == "NO_COLOR is set"


def test_a_serial_tty_without_a_size_is_80x24() -> None:
    look = choose_look({"TERM": "vt220"}, "ttyS0", (0, 0))
    assert (int(look.env["COLUMNS"]), int(look.env["LINES"])) == FALLBACK_SIZE == (80, 24)
    assert choose_look({"TERM": "vt220"}, "ttyS0", None).env["LINES"] == "24"


def test_columns_and_lines_override_the_fallback() -> None:
    look = choose_look({"TERM": "linux", "COLUMNS": "132", "LINES": "43"}, "ttyS0", (0, 0))
    assert (look.env["COLUMNS"], look.env["LINES"]) == ("132", "43")


# -- the wizard with stand-ins -------------------------------------------------------------------------

class StandInDisk(Screen[bool]):
    """Chooses a disk-image file at once (the real DiskScreen is tested in test_disk_screen.py)."""

    def __init__(self, draft: PlanDraft, path: Path) -> None:
        super().__init__()
        self.draft, self.path = draft, path

    def compose(self) -> ComposeResult:
        yield Button("Use file", id="use")

    @on(Button.Pressed, "#use")
    def _use(self) -> None:
        self.draft.device = None
        self.draft.image_file = self.path
        self.draft.image_size_gib = 35
        self.dismiss(True)


class StandInProgress(Screen[object]):
    """Reports an outcome without running the engine."""

    def __init__(self, plan: InstallPlan, ok: bool) -> None:
        super().__init__()
        self.plan, self.ok = plan, ok

    def compose(self) -> ComposeResult:
        yield Static(f"would install onto {self.plan.target.path}")

    def on_mount(self) -> None:
        self.dismiss(InstallOutcome(ok=self.ok, message="done" if self.ok else "Installation failed",
                                    log_path="/tmp/x.log", error=None if self.ok else "it broke",
                                    hint=None if self.ok else "try again"))


class StandInApp(FlowApp):
    def __init__(self, path: Path, *, outcomes: list[bool], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.outcomes = outcomes
        self.plans: list[InstallPlan] = []

    def disk_screen(self) -> Screen[Any]:
        return StandInDisk(self.draft, self.path)

    def progress_screen(self, plan: InstallPlan) -> Screen[Any]:
        self.plans.append(plan)
        return StandInProgress(plan, self.outcomes.pop(0))


async def walk_to_review(pilot: Pilot[Any], image_ref: str) -> None:
    await until_screen(pilot, WelcomeScreen)
    await pilot.press("enter")
    image = await until_screen(pilot, ImageScreen)
    image.query_one("#image-ref", Input).value = image_ref
    await pilot.press("enter")
    await wait_for(pilot, lambda: image.facts is not None, timeout=30, what="the look-up")
    await pilot.press("enter")


async def test_wizard_walks_back_and_forth_and_retries(synthetic_image: str, tmp_path: Path) -> None:
    target = tmp_path / "disk.img"
    app = StandInApp(target, outcomes=[False, True])
    async with app.run_test(size=SIZE) as pilot:
        await walk_to_review(pilot, synthetic_image)
        await pilot.click("#use")
        await until_screen(pilot, EncryptionScreen)
        await pilot.click("#continue")
        await until_screen(pilot, OptionsScreen)
        await pilot.press("escape")  # back to encryption, back to the disk step, and on again
        await until_screen(pilot, EncryptionScreen)
        await pilot.press("escape")
        await pilot.click("#use")
        await until_screen(pilot, EncryptionScreen)
        await pilot.click("#continue")
        await until_screen(pilot, OptionsScreen)
        await pilot.click("#continue")
        await until_screen(pilot, SystemScreen)
        await pilot.press("escape")  # back to the options, and on again
        await until_screen(pilot, OptionsScreen)
        await pilot.click("#continue")
        await until_screen(pilot, SystemScreen)
        await pilot.click("#continue")
        await until_screen(pilot, ReviewScreen)
        await pilot.press(*"disk.img", "enter")
        done = await until_screen(pilot, DoneScreen)
        assert "it broke" in str(done.query_one("#done-text", Static).render())
        await pilot.press("enter")  # Retry from the start: the answers are kept
        await until_screen(pilot, WelcomeScreen)
        await pilot.press("enter")
        image = await until_screen(pilot, ImageScreen)
        assert image.query_one("#image-ref", Input).value == synthetic_image
    assert len(app.plans) == 1
    assert app.plans[0] == app.draft.to_plan()
    assert app.plans[0].target.image_file == target


async def test_esc_on_the_first_screen_asks_before_quitting() -> None:
    app = StandInApp(Path("/nonexistent"), outcomes=[])
    async with app.run_test(size=SIZE) as pilot:
        await until_screen(pilot, WelcomeScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, ConfirmQuit)
        await pilot.press("escape")  # Esc on the question means stay
        assert isinstance(app.screen, WelcomeScreen)


def test_power_actions_only_after_a_real_disk_install() -> None:
    ok = InstallOutcome(ok=True, message="done", log_path="")
    app = NbcTuiApp(start_wizard=False)
    app.plan = PlanDraft(image_ref="oci:/x", device="/dev/sdz").to_plan()
    app.outcome, app.choice = ok, "reboot"
    assert app.power_action() == "reboot"
    app.choice = "stay"
    assert app.power_action() is None
    app.choice = "poweroff"
    assert app.power_action() == "poweroff"
    app.dry_run = True
    assert app.power_action() is None
    app.dry_run = False
    app.outcome = InstallOutcome(ok=False, message="failed", log_path="")
    assert app.power_action() is None
    app.outcome = ok
    app.plan = PlanDraft(image_ref="oci:/x", image_file=Path("/tmp/d.img")).to_plan()
    assert app.power_action() is None


def test_the_chosen_power_action_is_the_engines(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NBC_TUI_AFTER_DRY_RUN", "1")  # the engine announces it instead of doing it
    app = NbcTuiApp(start_wizard=False)
    app.plan = PlanDraft(image_ref="oci:/x", device="/dev/sdz").to_plan()
    app.outcome, app.choice = InstallOutcome(ok=True, message="done", log_path=""), "poweroff"
    app.perform_choice()
    assert capsys.readouterr().out == "Would run now: systemctl poweroff (dry run)\n"
    app.choice = "stay"
    app.perform_choice()
    assert capsys.readouterr().out == ""


# -- the whole flow with the real screens, as a dry run into a disk-image file ----------------------------

async def test_dry_run_walks_every_real_screen(synthetic_image: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_TUI_LOG_FILE", str(tmp_path / "nbc-tui.log"))
    target = tmp_path / "disk.img"

    app = FlowApp(dry_run=True, watch_disks=False)
    async with app.run_test(size=SIZE) as pilot:
        await walk_to_review(pilot, synthetic_image)
        disk = await until_screen(pilot, DiskScreen)
        disk.query_one("#image-path", Input).value = str(target)
        disk.use_image_file()
        await until_screen(pilot, EncryptionScreen)
        await pilot.click("#continue")
        await until_screen(pilot, OptionsScreen)
        await pilot.click("#continue")
        await until_screen(pilot, SystemScreen)
        await pilot.click("#continue")
        review = await until_screen(pilot, ReviewScreen)
        assert str(review.query_one("#install", Button).label) == "Dry run"
        await pilot.press("enter")
        assert isinstance(app.screen, ReviewScreen)  # a single Enter never confirms
        await pilot.press(*"disk.img", "enter")
        done = await until_screen(pilot, DoneScreen)
        assert done.outcome.ok, done.outcome
        assert "nothing was written" in str(done.query_one("#done-text", Static).render())
        await pilot.press("enter")  # Leave
        await pilot.pause()
    assert app.return_value == "stay"
    assert app.plan is not None and app.plan.target.image_file == target
    assert not target.exists()  # a dry run writes nothing
    assert app.power_action() is None


# -- the CLI's TUI branch ----------------------------------------------------------------------------------

def test_no_command_means_the_tui() -> None:
    args = build_parser().parse_args([])
    assert args.command is None and not args.tui_dry_run
    args = build_parser().parse_args(["--dry-run"])
    assert args.command is None and args.tui_dry_run


def test_install_keeps_its_own_dry_run() -> None:
    args = build_parser().parse_args(["install", "--image", "oci:/x", "--device", "/dev/sdz", "--dry-run"])
    assert args.command == "install" and args.dry_run and not args.tui_dry_run


def test_the_cli_imports_no_textual_until_the_tui_starts() -> None:
    code = ("import sys, nbc_tui.cli as c; c.build_parser().parse_args(['list']); "
            "assert 'textual' not in sys.modules, 'textual imported'; "
            "import nbc_tui.look; assert 'textual' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_without_a_terminal_the_tui_refuses_in_words() -> None:
    proc = subprocess.run([sys.executable, "-m", "nbc_tui.cli"], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 2
    assert "needs a terminal" in proc.stderr


def test_the_real_binary_starts_on_the_linux_console_and_asks_before_quitting(tmp_path: Path) -> None:
    import os

    import pexpect

    env = {**os.environ, "TERM": "linux", "NBC_TUI_LOG_FILE": str(tmp_path / "log"),
           "NBC_TUI_CACHE_ROOT": str(tmp_path / "cache")}
    env.pop("NO_COLOR", None)
    child = pexpect.spawn(sys.executable, ["-m", "nbc_tui.cli", "--dry-run"], env=env, cwd=str(REPO),
                          dimensions=(24, 80), encoding="utf-8", timeout=30)
    try:
        child.expect("Continue")
        seen = child.before
        child.send("\x1b[[A")  # F1 as the Linux console sends it
        child.expect("this help")
        seen += child.before
        child.send("\x03")  # Ctrl+C closes the help and asks
        child.expect("Quit the installer")
        seen += child.before
        child.send("y")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert sorted({ch for ch in seen if ord(ch) > 127}) == []  # only glyphs every console font has

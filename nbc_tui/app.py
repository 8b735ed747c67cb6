"""NbcTuiApp: the full-screen installer. A wizard controller walks the screens in order (welcome,
image, disk, encryption, options, system, review, progress, done), going back when a screen answers None; the
screens fill one PlanDraft and the review turns it into the InstallPlan that the engine runs.

Keys everywhere: F1 help, Esc back, Ctrl+C quit (asked first); on each step (screens/wizard.py) Enter and
Ctrl+N go on. The look (default, or ASCII and 16 colours on consoles) is decided in look.py and applied
here, with the style sheets in order: app.tcss, one per screen (assets/screens/), console.tcss last.

The App runs no command itself: a reboot or power-off chosen on the done screen is carried out by the
engine (:func:`nbc_tui.backend.machine.power`) once the TUI has given the terminal back.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen, Screen
from textual.scrollbar import ScrollBar, ScrollBarRender

from .backend.errors import NbcError
from .backend.machine import PowerAction, power
from .backend.plan import InstallPlan
from .draft import PlanDraft
from .look import Look
from .screens.disk import DiskScreen
from .screens.done import DoneScreen, Outcome
from .screens.encryption import EncryptionScreen
from .screens.image import ImageScreen
from .screens.options import OptionsScreen
from .screens.progress import ProgressScreen
from .screens.review import ReviewScreen
from .screens.system import SystemScreen
from .screens.welcome import WelcomeScreen
from .widgets.confirm_quit import ConfirmQuit
from .widgets.help_dialog import HelpDialog

log = logging.getLogger("nbc_tui")

ASSETS = Path(__file__).parent / "assets"
APP_CSS = ASSETS / "app.tcss"
SCREEN_CSS = sorted((ASSETS / "screens").glob("*.tcss"))
"""One style sheet per screen, after app.tcss and before console.tcss (so that the console look wins)."""
CONSOLE_CSS = ASSETS / "console.tcss"
POWER_ACTIONS: dict[str | None, PowerAction] = {"reboot": "reboot", "poweroff": "poweroff"}
"""The done screen's choices that restart the machine."""


class AsciiScrollBarRender(ScrollBarRender):
    """Scrollbars drawn with colour only: console fonts have no eighth-block glyphs."""

    VERTICAL_BARS: ClassVar[list[str]] = [" "] * 8
    HORIZONTAL_BARS: ClassVar[list[str]] = [" "] * 8


def _own_ctrl_c_action(screen: Screen[Any]) -> str | None:
    """The action a screen class of ours binds to Ctrl+C (not Textual's own "copy" of Screen)."""
    for cls in type(screen).__mro__:
        if cls in (Screen, ModalScreen):
            break
        for binding in cls.__dict__.get("BINDINGS", ()):
            if isinstance(binding, Binding) and "ctrl+c" in binding.key.split(","):
                return binding.action
    return None


class NbcTuiApp(App[str]):
    """The installer. ``start_wizard=False`` leaves the screens to the caller (tests push them one by
    one); ``watch_disks=False`` keeps the disk screen from following hot-plug (tests)."""

    TITLE = "nbc-tui"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help"),
        Binding("escape", "back", "Back"),
        # Priority: Input and Screen bind Ctrl+C to "copy"; the installer asks before quitting instead.
        Binding("ctrl+c,ctrl+q", "request_quit", "Quit", priority=True),
    ]

    def __init__(self, *, draft: PlanDraft | None = None, dry_run: bool = False, look: Look | None = None,
                 start_wizard: bool = True, watch_disks: bool = True) -> None:
        self.look = look or Look(console=False, reason="default")
        super().__init__(css_path=[APP_CSS, *SCREEN_CSS, *([CONSOLE_CSS] if self.look.console else [])])
        self.draft = draft or PlanDraft()
        self.dry_run = dry_run
        self.start_wizard = start_wizard
        self.watch_disks = watch_disks
        self.plan: InstallPlan | None = None
        """The plan confirmed on the review screen (the last one, after a retry)."""
        self.outcome: Outcome | None = None
        self.choice: str | None = None
        """What the user chose on the done screen: reboot, poweroff or stay."""
        self.answers_path: Path | None = None
        """The path the done screen offers for the answer file (None: /root, else /var/log/nbc-tui)."""
        self.tpm: bool | None = None
        """Whether this machine has a TPM (None: look at /dev/tpmrm0, /dev/tpm0 and NBC_TUI_TPM)."""
        self._scrollbar_renderer: type[ScrollBarRender] | None = None
        if self.look.console:
            self.animation_level = "none"

    @property
    def console_look(self) -> bool:
        """ASCII and 16 colours (read by screens that draw glyphs of their own)."""
        return self.look.console

    # -- look ---------------------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.theme = self.look.theme
        if self.look.console:
            # Process-wide in Textual; restored on unmount so other apps (tests) keep the default.
            self._scrollbar_renderer = ScrollBar.renderer
            ScrollBar.renderer = AsciiScrollBarRender
        if self.dry_run:
            self.sub_title = "dry run"
        if self.start_wizard:
            self.run_wizard()

    def on_unmount(self) -> None:
        if self._scrollbar_renderer is not None:
            ScrollBar.renderer = self._scrollbar_renderer

    # -- the wizard ---------------------------------------------------------------------------------

    @work(exclusive=True, group="wizard")
    async def run_wizard(self) -> None:
        """Screens in order; None from a screen goes back one. After a failure, "retry" starts over with
        the answers kept."""
        while True:
            self.plan = plan = await self.walk_to_plan()
            self.outcome = outcome = await self.push_screen_wait(self.progress_screen(plan))
            choice = await self.push_screen_wait(DoneScreen(outcome, self.draft, dry_run=self.dry_run, plan=plan,
                                                            answers_path=self.answers_path))
            if choice != "retry":
                self.choice = choice
                self.exit(choice)
                return

    async def walk_to_plan(self) -> InstallPlan:
        steps = (self.welcome_screen, self.image_screen, self.disk_screen, self.encryption_screen,
                 self.options_screen, self.system_screen, self.review_screen)
        index = 0
        while True:
            result: Any = await self.push_screen_wait(steps[index]())
            if result is None:
                index = max(index - 1, 0)
            elif index == len(steps) - 1:
                return result
            else:
                index += 1

    # One factory per step, so that tests (and later variants) can replace a step.
    def welcome_screen(self) -> Screen[Any]:
        return WelcomeScreen(self.draft)

    def image_screen(self) -> Screen[Any]:
        return ImageScreen(self.draft)

    def disk_screen(self) -> Screen[Any]:
        return DiskScreen(self.draft, watch=self.watch_disks)

    def encryption_screen(self) -> Screen[Any]:
        return EncryptionScreen(self.draft, tpm=self.tpm)

    def options_screen(self) -> Screen[Any]:
        return OptionsScreen(self.draft)

    def system_screen(self) -> Screen[Any]:
        return SystemScreen(self.draft)

    def review_screen(self) -> Screen[Any]:
        return ReviewScreen(self.draft, dry_run=self.dry_run)

    def progress_screen(self, plan: InstallPlan) -> Screen[Any]:
        return ProgressScreen(plan, dry_run=self.dry_run)

    # -- keys ---------------------------------------------------------------------------------------

    def action_help(self) -> None:
        if isinstance(self.screen, HelpDialog):
            return
        self.push_screen(HelpDialog(getattr(self.screen, "HELP", None)))

    def action_back(self) -> None:
        """Esc on a screen that does not take it itself (each wizard step and question does): back."""
        if not isinstance(self.screen, ModalScreen) and len(self.screen_stack) >= 2:
            self.screen.dismiss(None)

    def action_request_quit(self) -> None:
        """Ask before quitting. A screen that binds Ctrl+C itself (the progress screen, which cancels a
        running install cleanly) gets the key instead: this priority binding would otherwise hide it."""
        screen = self.screen
        if isinstance(screen, HelpDialog):
            self.pop_screen()  # the help is no question: close it and ask about the screen below
            screen = self.screen
        if isinstance(screen, ModalScreen):
            return  # a question is already open
        own = _own_ctrl_c_action(screen)
        if own:
            self.call_later(screen.run_action, own)
            return
        self.push_screen(ConfirmQuit(), callback=self._quit_answered)

    def _quit_answered(self, quit_now: bool | None) -> None:
        if quit_now:
            self.choice = "stay"
            self.exit("stay")

    # -- after the TUI --------------------------------------------------------------------------

    def power_action(self) -> PowerAction | None:
        """The reboot or power-off the user chose, only after a real install onto a disk."""
        outcome = self.outcome
        if (self.choice not in POWER_ACTIONS or self.dry_run or outcome is None or not outcome.ok
                or self.plan is None or self.plan.target.is_image_file):
            return None
        return POWER_ACTIONS[self.choice]

    def perform_choice(self) -> None:
        """Reboot or power off as chosen (call after the TUI has given the terminal back)."""
        action = self.power_action()
        if action is None:
            return
        try:
            power(action, dry_run=self.dry_run, announce=print)
        except NbcError as exc:
            print(f"Could not {action}: {exc}")

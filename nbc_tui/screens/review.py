"""ReviewScreen: the plan in plain words, and a deliberate confirmation before anything is written.

The plan comes from ``draft.to_plan()`` (the same validation as answer files and the CLI). The disk is
read again here (model, serial, size, what is on it now). Confirming needs the disk's name (``sdb``), or
the disk-image file's name, typed into a field: a single Enter never confirms, and the destructive button
is never focused first.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import ValidationError
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Button, Input, Static
from textual.worker import Worker, WorkerState

from ..backend.describe import creation_lines, identity_lines, image_file_words
from ..backend.disks import Disk, disk_contents, disk_line, resolve_disk
from ..backend.errors import NbcError
from ..backend.plan import InstallPlan, validation_messages
from ..draft import PlanDraft
from .wizard import WizardScreen


def describe_disk(disk: Disk) -> list[str]:
    """The disk's line, then what is on it now (everything of which is destroyed)."""
    found = disk_contents(disk) or ["nothing found on it"]
    return [f"the disk {disk_line(disk)}", "Now on it, and will be destroyed:", *(f"  {x}" for x in found)]


class ReviewScreen(WizardScreen[InstallPlan]):
    """Shows the plan; dismisses the validated InstallPlan once confirmed, or None for back. Going on (Enter
    in the name field, the red button, Ctrl+N) needs the name typed exactly."""

    HEADING = "Review: nothing has been written yet"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+n", "go_on", "Install")]
    HELP = ("Review: read what will happen. To go ahead, type the name shown (the disk's name, or the "
            "disk-image file's name) and press Enter or the red button. Esc goes back and changes nothing.")

    def __init__(self, draft: PlanDraft, *, dry_run: bool = False) -> None:
        super().__init__()
        self.draft = draft
        self.dry_run = dry_run
        self.plan: InstallPlan | None = None
        self.error: str | None = None
        self.confirm_word: str | None = None
        """What the user must type: the disk's kernel name, or the disk-image file's name."""
        self.disk: Disk | None = None

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(classes="body", id="review-body"):
            yield Static("", id="plan-text")
        # Outside the scrolling plan, so the plan's first lines stay in view while the name is typed.
        with Vertical(id="confirm-box"):
            yield Static("", id="confirm-label")
            yield Input(id="confirm-input", select_on_focus=False)

    def compose_buttons(self) -> ComposeResult:
        yield Button("Back", id="back")
        yield Button("Install", id="install", variant="error", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#confirm-input").display = False
        try:
            self.plan = self.draft.to_plan()
        except ValidationError as exc:
            self.error = "\n".join(validation_messages(exc))
            self._show([f"This plan cannot be installed:\n{self.error}", "",
                        "Go back (Esc) and change what is named above."], message_error=True)
            self.query_one("#back", Button).focus()
            return
        target = self.plan.target
        if target.image_file is not None:
            self._ready(image_file_words(target.image_file, target.image_size), target.image_file.name)
        else:
            self._show(["Reading the disk..."])
            self.read_disk(str(target.device))

    @work(thread=True, exclusive=True, exit_on_error=False, group="disk")
    def read_disk(self, device: str) -> Disk:
        return resolve_disk(device)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "disk":
            return
        if event.state is WorkerState.SUCCESS:
            self.disk = event.worker.result
            assert self.disk is not None
            self._ready(describe_disk(self.disk), self.disk.name)
        elif event.state is WorkerState.ERROR:
            error = event.worker.error
            why = str(error) if isinstance(error, NbcError) else repr(error)
            self.error = f"The disk cannot be read now: {why}"
            self._show([self.error, "", "Go back (Esc) and choose the disk again."], message_error=True)
            self.query_one("#back", Button).focus()

    # -- showing ----------------------------------------------------------------------------------

    def _target_lines(self, target_lines: list[str]) -> list[str]:
        assert self.plan is not None
        image = [f"Image: {self.plan.image.ref}"]
        image += [f"  {line}" for line in self.draft.image_summary.splitlines()]
        first, *rest = target_lines
        if self.plan.target.serial:
            rest.append(f"Only the disk with serial {self.plan.target.serial} is written to.")
        return [*image, f"Target: {first}", *(f"  {x}" for x in rest), "To be created:",
                *(f"  {x}" for x in creation_lines(self.plan)), "The installed system:",
                *(f"  {x}" for x in identity_lines(self.plan.system))]

    def _show(self, lines: list[str], *, message_error: bool = False) -> None:
        text = self.query_one("#plan-text", Static)
        text.update(Content("\n".join(lines)))
        text.set_class(message_error, "problem")

    def _ready(self, target_lines: list[str], word: str) -> None:
        self.confirm_word = word
        self._show(self._target_lines(target_lines))
        what = "write nothing (dry run)" if self.dry_run else (
            f"erase {word}" if self.disk is not None else f"create {word}")
        self.query_one("#confirm-label", Static).update(Content(f"To {what} and install, type {word} here:"))
        field = self.query_one("#confirm-input", Input)
        field.placeholder = word
        field.display = True
        field.focus()
        self.query_one("#install", Button).label = (
            "Dry run" if self.dry_run else f"Erase {word} and install" if self.disk else "Install")

    # -- confirming -------------------------------------------------------------------------------

    @property
    def confirmed(self) -> bool:
        return self.confirm_word is not None and self.query_one("#confirm-input", Input).value.strip() == \
            self.confirm_word

    @on(Input.Changed, "#confirm-input")
    def _typed(self) -> None:
        self.query_one("#install", Button).disabled = not self.confirmed
        self.say("")

    @on(Button.Pressed, "#install")
    def _install_pressed(self) -> None:
        self.action_go_on()

    def save(self) -> InstallPlan | None:
        """The plan, once its name is typed: Enter in the (only) field comes here too, so a single Enter
        never confirms."""
        if self.plan is None or self.error is not None:
            self.say("This plan cannot be installed: go back (Esc) and change what is named above.", "error")
            return None
        if self.confirm_word is None:
            self.say("The disk is still being read: a moment, please.")
            return None
        if not self.confirmed:
            self.say(f"Type {self.confirm_word} exactly to go ahead, or press Esc to go back.", "error")
            return None
        return self.plan

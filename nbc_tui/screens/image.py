"""ImageScreen: which image to install. A reference is checked as it is typed; Enter looks it up (OS,
version, architecture, size, digest); or a staged image is picked from the cache for an offline install.
A ``localhost/NAME`` reference reaches the local Podman or Docker daemon like any other reference. What a
reference or an image is comes from :mod:`nbc_tui.backend.image_facts`."""

from __future__ import annotations

import threading

from textual import on, work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import Button, Input, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from ..backend.errors import InputError, NbcError
from ..backend.image.cache import CachedImage, CacheKind, list_cached
from ..backend.image_facts import ImageFacts, describe_reference, look_up_image, staged_facts
from ..backend.sizes import human
from ..draft import PlanDraft
from ..widgets.status_line import StatusLine
from .wizard import WizardScreen

PLACEHOLDER = "quay.io/org/os:tag, localhost/name, oci:/path/to/layout"


class ImageScreen(WizardScreen[bool]):
    """Fills ``draft.image_ref``, ``staged_digest`` and ``image_summary``; dismisses True, or None for back.
    Continue needs an image found and checked."""

    HEADING = "The image to install"
    HELP = ("The image: type a reference and press Enter to look it up, or pick a staged image below. "
            "Continue becomes available once the image has been found and checked.")

    class LookupProgress(Message):
        """Bytes of the image read so far by the look-up; a newer one replaces a queued one."""

        def __init__(self, done: int, total: int) -> None:
            super().__init__()
            self.done = done
            self.total = total

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, ImageScreen.LookupProgress)

    def __init__(self, draft: PlanDraft) -> None:
        super().__init__()
        self.draft = draft
        self.facts: ImageFacts | None = None
        self.staged: list[CachedImage] = []
        self._cancel = threading.Event()

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(classes="body"):
            yield Static("Image reference (Enter looks it up):", classes="field-label")
            yield Input(self.draft.image_ref if not self.draft.staged_digest else "",
                        placeholder=PLACEHOLDER, id="image-ref", select_on_focus=False)
            yield StatusLine(id="ref-status")
            yield Static("", id="image-facts")
            yield Static("Or pick a staged image (offline install):", id="staged-label", classes="field-label")
            yield OptionList(id="staged")

    def compose_buttons(self) -> ComposeResult:
        yield Button("Back", id="back")
        yield Button("Continue", id="continue", variant="primary", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#staged-label").display = False
        self.query_one("#staged").display = False
        self.query_one("#image-ref", Input).focus()
        self._check_typed(self.query_one("#image-ref", Input).value)
        self.load_staged()

    def on_unmount(self) -> None:
        self._cancel.set()  # a look-up still reading the image stops at its next chunk

    # -- typing and looking up ------------------------------------------------------------------

    @on(Input.Changed, "#image-ref")
    def _typed(self, event: Input.Changed) -> None:
        self._set_facts(None)
        self._check_typed(event.value)

    def _check_typed(self, text: str) -> bool:
        status = self.query_one("#ref-status", StatusLine)
        if not text.strip():
            status.clear()
            return False
        try:
            status.say(describe_reference(text.strip()))
        except InputError as exc:
            status.say(str(exc), "error")
            return False
        return True

    @on(Input.Submitted, "#image-ref")
    def _submitted(self, event: Input.Submitted) -> None:
        event.prevent_default()  # Enter here looks the image up (not WizardScreen's next field)
        ref = event.value.strip()
        if not self._check_typed(ref):
            if not ref:
                self.say("Type an image reference first.", "error")
            return
        self._cancel.set()
        self._cancel = threading.Event()
        self.say("Looking the image up...")
        self.look_up(ref, self._cancel)

    @work(thread=True, exclusive=True, exit_on_error=False, group="lookup")
    def look_up(self, ref: str, cancel: threading.Event) -> ImageFacts:
        return look_up_image(ref, cancel=cancel,
                             on_progress=lambda done, total: self.post_message(self.LookupProgress(done, total)))

    def on_image_screen_lookup_progress(self, message: LookupProgress) -> None:
        if self.facts is None and message.total:
            self.say(f"Reading the image to check it: {human(message.done)} of {human(message.total)}...")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "lookup":
            return
        if event.state is WorkerState.SUCCESS:
            self._set_facts(event.worker.result)
        elif event.state is WorkerState.ERROR:
            error = event.worker.error
            if isinstance(error, NbcError):
                self.say(f"The image could not be used: {error}", "error")
            else:
                self.say(f"The look-up failed unexpectedly: {error!r} (details in the log)", "error")

    # -- staged images --------------------------------------------------------------------------

    @work(thread=True, exit_on_error=False, group="staged")
    def load_staged(self) -> None:
        try:
            entries = list_cached(CacheKind.INSTALL)
        except NbcError:
            entries = []  # the welcome screen already said the cache is unreadable
        self.app.call_from_thread(self._show_staged, entries)

    def _show_staged(self, entries: list[CachedImage]) -> None:
        self.staged = entries
        if not entries:
            return
        options = self.query_one("#staged", OptionList)
        options.clear_options()
        options.add_options(Option(Content(f"{e.os_release_pretty_name or e.image_ref} ({e.architecture}, "
                                           f"{human(e.size_bytes)}) {e.image_digest[:19]}"), id=e.image_digest)
                            for e in entries)
        self.query_one("#staged-label").display = True
        options.display = True

    @on(OptionList.OptionSelected, "#staged")
    def _staged_chosen(self, event: OptionList.OptionSelected) -> None:
        entry = next(e for e in self.staged if e.image_digest == event.option.id)
        self._cancel.set()
        with self.prevent(Input.Changed):
            self.query_one("#image-ref", Input).value = ""
        self.query_one("#ref-status", StatusLine).clear()
        self._set_facts(staged_facts(entry))

    # -- showing and leaving ----------------------------------------------------------------------

    def _set_facts(self, facts: ImageFacts | None) -> None:
        self.facts = facts
        button = self.query_one("#continue", Button)
        button.disabled = facts is None
        self.query_one("#image-facts", Static).update(Content(facts.summary() if facts else ""))
        self.say("")
        if facts is not None:
            button.focus()

    def save(self) -> bool | None:
        if self.facts is None:
            self.say("Look the image up first (Enter in the reference field), or pick a staged image.", "error")
            return None
        self.draft.image_ref = self.facts.ref
        self.draft.staged_digest = self.facts.staged_digest
        self.draft.image_summary = self.facts.summary()
        self.draft.image_time_zones = self.facts.time_zones
        self.draft.image_keymaps = self.facts.keymaps
        return True

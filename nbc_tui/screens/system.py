"""SystemScreen: who the installed system is and who uses it. Host name, time zone, console keymap and locale
(each left empty keeps the image's own), and one user (optional): name, full name, password typed twice, and
whether they are an administrator.

The time zone and the keymap are picked from what the image ships (the image screen's look-up, in the draft):
typing in the field filters the list beside it, Up and Down move in the list, Enter takes the highlighted name.
When the image's lists are not known (a staged image) or it ships none, the field takes any name, and the
install checks it against the image before anything is written. The live system's own time zone and keymap
are offered once, when the image ships them (the keyboard switched to on the welcome screen, if any, ahead of
the live system's keymap).

What is typed is checked by the plan's own model (``System`` and ``User`` in backend/plan.py), as the review
and answer files are; the password also by the rules here (the same twice, at least 8 characters).
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from pydantic import SecretStr, ValidationError
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.events import DescendantFocus
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Input, OptionList, Static
from textual.widgets.option_list import Option

from ..backend.live_defaults import LiveDefaults, live_defaults
from ..backend.plan import System, error_text
from ..draft import PlanDraft
from ..widgets.choice_set import ChoiceSet
from ..widgets.name_filter import filter_names
from ..widgets.secret_input import SecretInput
from .wizard import WizardScreen

MIN_USER_PASSWORD = 8
ADMIN_CHOICES = (("no", "No"), ("yes", "Yes (sudo)"))
PICKERS: dict[str, tuple[str, str, str, str]] = {
    "timezone": ("Time zone", "Time zones", "time zone", "Europe/Berlin"),
    "keymap": ("Keymap", "Keymaps", "console keymap", "de"),
}
"""The fields picked from the image's lists: (the field's label, the list's title, what one is called, an
example)."""
FIELDS = {"hostname": "#hostname", "timezone": "#timezone", "keymap": "#keymap", "locale": "#locale"}
USER_FIELDS = {"name": "#user-name", "full_name": "#full-name"}
"""Where the model's complaint about a key is typed (``users.0.name`` -> the user name field)."""


def _row(label: str, field: Widget) -> Horizontal:
    return Horizontal(Static(label, classes="row-label"), field, classes="row")


class SystemScreen(WizardScreen[bool]):
    """Fills the draft's host name, time zone, keymap, locale and user; dismisses True, or None for back.
    ``defaults`` replaces what the live system is set to (tests); the draft's ``console_keymap`` goes first."""

    HEADING = "The system and a user"
    HELP = ("System: the host name, time zone, console keymap and locale of the installed system; an empty "
            "field keeps the image's own. Time zone and keymap: type to filter the image's list, Up and Down "
            "move in it, Enter takes the highlighted name. A user is optional (no user name, no user): the "
            "password is typed twice, at least 8 characters, and is never saved in an answer file; Admin puts "
            "the user in the image's sudo (or wheel) group.")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("down", "move_pick(1)", "Next in the list", show=False),
        Binding("up", "move_pick(-1)", "Previous in the list", show=False),
    ]

    def __init__(self, draft: PlanDraft, *, defaults: LiveDefaults | None = None) -> None:
        super().__init__()
        self.draft = draft
        self.defaults = live_defaults() if defaults is None else defaults
        self.names: dict[str, tuple[str, ...]] = {"timezone": draft.image_time_zones, "keymap": draft.image_keymaps}
        """What the image ships, per picked field (empty: any name is taken)."""

    # -- composing --------------------------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(classes="body"), Horizontal(id="system-form"):
            with Vertical(id="machine-column", classes="column"):
                yield Static("This system (empty: the image's own)", classes="column-title")
                yield _row("Host name", Input(self.draft.hostname, placeholder="empty: the image's",
                                              id="hostname", select_on_focus=False))
                for key, (label, *_rest) in PICKERS.items():
                    yield _row(label, Input(self._first_value(key), id=key, select_on_focus=False,
                                            placeholder="type to filter" if self.names[key] else "empty: the image's"))
                yield _row("Locale", Input(self.draft.locale, placeholder="empty: the image's", id="locale",
                                           select_on_focus=False))
                yield Static("", id="picks-title")
                with ContentSwitcher(initial="timezone-list", id="picks"):
                    for key in PICKERS:
                        yield self._pick_list(key)
            with Vertical(id="user-column", classes="column"):
                more = len(self.draft.kept.get("more_users", ()))
                yield Static(f"A user (and {more} from the answers)" if more else "A user (optional)",
                             id="user-title", classes="column-title")
                yield _row("User name", Input(self.draft.user_name, placeholder="empty: no user", id="user-name",
                                              select_on_focus=False))
                yield _row("Full name", Input(self.draft.user_full_name, placeholder="optional", id="full-name",
                                              select_on_focus=False))
                yield _row("Password", SecretInput(placeholder=self._password_hint(), id="password"))
                yield _row("Again", SecretInput(placeholder="the same again", id="password-again"))
                yield _row("Admin", ChoiceSet(ADMIN_CHOICES, picked="yes" if self.draft.user_admin else "no",
                                              id="admin"))

    def _first_value(self, key: str) -> str:
        """The draft's value; the first time, the live system's own when the image ships it (for the keymap, the
        keyboard switched to on the welcome screen first: the one the user types on)."""
        value: str = getattr(self.draft, key)
        if value or self.draft.live_defaults_offered:
            return value
        offers = [self.draft.console_keymap] if key == "keymap" else []
        offers.append(getattr(self.defaults, key))
        return next((name for name in offers if name and name in self.names[key]), "")

    def _password_hint(self) -> str:
        kept = self.draft.kept.get("user", {})
        if self.draft.user_password is None and ("password_file" in kept or "password_hash" in kept):
            return "empty: the answers' one"
        return f"at least {MIN_USER_PASSWORD} characters"

    def _pick_list(self, key: str) -> Widget:
        _label, title, what, example = PICKERS[key]
        if not self.names[key]:
            return Static(f"No list of the image's {title.lower()}: type a {what} such as {example}, or "
                          "leave it empty.", id=f"{key}-list", classes="picks-none")
        options = OptionList(id=f"{key}-list", classes="picks", compact=True)
        options.can_focus = False  # the field above is where keys go; a click still picks
        return options

    def on_mount(self) -> None:
        if self.draft.user_password is not None:
            secret = self.draft.user_password.get_secret_value()
            self.query_one("#password", Input).value = secret
            self.query_one("#password-again", Input).value = secret
        for key in PICKERS:
            self._filter(key)
        self._show_picks("timezone")
        self.query_one("#hostname", Input).focus()

    # -- picking from the image's lists -------------------------------------------------------------

    def _filter(self, key: str) -> None:
        names = self.names[key]
        if not names:
            return
        text = self.query_one(f"#{key}", Input).value
        shown = filter_names(names, text)
        options = self.query_one(f"#{key}-list", OptionList)
        options.clear_options()
        options.add_options(Option(Content(name), id=name) for name in shown)
        options.highlighted = 0 if shown and text.strip() else None
        if self.query_one("#picks", ContentSwitcher).current == f"{key}-list":
            self._show_picks(key)

    def _show_picks(self, key: str) -> None:
        """Show ``key``'s list under the fields, titled with how many names match of how many."""
        self.query_one("#picks", ContentSwitcher).current = f"{key}-list"
        title = PICKERS[key][1]
        if self.names[key]:
            shown = self.query_one(f"#{key}-list", OptionList).option_count
            title = f"{title}: {shown} of {len(self.names[key])} (Up, Down, Enter)"
        self.query_one("#picks-title", Static).update(Content(title))

    def _picker(self) -> tuple[str, OptionList] | None:
        """The picked field that has the focus and its list (None: another widget, or no list)."""
        key = self.focused.id if self.focused is not None else None
        if key not in PICKERS or not self.names[key]:
            return None
        return key, self.query_one(f"#{key}-list", OptionList)

    @on(Input.Changed, "#timezone, #keymap")
    def _typed_in_picker(self, event: Input.Changed) -> None:
        if event.input.id:
            self._filter(event.input.id)

    def on_descendant_focus(self, event: DescendantFocus) -> None:
        if event.widget.id in PICKERS:
            self._show_picks(event.widget.id)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "move_pick":
            return self._picker() is not None
        return super().check_action(action, parameters)

    def action_move_pick(self, delta: int) -> None:
        picker = self._picker()
        if picker is None or not picker[1].option_count:
            return
        options = picker[1]
        start = -1 if options.highlighted is None and delta > 0 else options.highlighted or 0
        options.highlighted = max(0, min(options.option_count - 1, start + delta))

    @on(Input.Submitted, "#timezone, #keymap")
    def _take_highlighted(self, event: Input.Submitted) -> None:
        """Enter takes the highlighted name (then WizardScreen moves to the next field)."""
        picker = self._picker()
        if picker is None:
            return
        option = picker[1].highlighted_option
        if option is not None and option.id and event.input.value != option.id:
            event.input.value = option.id

    @on(OptionList.OptionSelected, ".picks")
    def _clicked(self, event: OptionList.OptionSelected) -> None:
        key = (event.option_list.id or "").removesuffix("-list")
        field = self.query_one(f"#{key}", Input)
        field.value = event.option.id or field.value
        field.focus()

    # -- leaving ------------------------------------------------------------------------------------

    def _refuse(self, selector: str, message: str) -> None:
        self.say(message, "error")
        self.query_one(selector).focus()

    def save(self) -> bool | None:
        """Copy the fields into the draft; None (and the reason in words, the focus on the field) when a name
        is not one the image ships, the passwords differ or are short, or the model refuses a value."""
        values = {key: self.query_one(selector, Input).value.strip() for key, selector in FIELDS.items()}
        for key, (_label, _title, what, _example) in PICKERS.items():
            if values[key] and self.names[key] and values[key] not in self.names[key]:
                self._refuse(f"#{key}", f"The image has no {what} {values[key]!r}: pick one from the list, "
                                        "or leave the field empty for the image's own.")
                return None
        name = self.query_one("#user-name", Input).value.strip()
        full_name = self.query_one("#full-name", Input).value.strip()
        password = self.query_one("#password", Input).value
        if not self._password_ok(name, full_name, password):
            return None
        candidate = replace(self.draft, **values, user_name=name, user_full_name=full_name,
                            user_password=SecretStr(password) if name and password else None,
                            user_admin=self.query_one("#admin", ChoiceSet).picked == "yes")
        try:
            System.model_validate(candidate.identity())
        except ValidationError as exc:
            err = exc.errors()[0]
            where = [str(part) for part in err["loc"]]
            selector = USER_FIELDS.get(where[-1], "#user-name") if where[:1] == ["users"] else FIELDS.get(
                where[0] if where else "", "#hostname")
            self._refuse(selector, error_text(err))
            return None
        for key in (*values, "user_name", "user_full_name", "user_password", "user_admin"):
            setattr(self.draft, key, getattr(candidate, key))
        self.draft.live_defaults_offered = True
        self.say("")
        return True

    def _password_ok(self, name: str, full_name: str, password: str) -> bool:
        """The user's password rules, said in words when broken: none without a user, twice the same, long
        enough (an empty one keeps the answer file's password file or hash)."""
        again = self.query_one("#password-again", Input)
        if not name:
            if full_name or password or again.value:
                self._refuse("#user-name", "Type a user name, or empty the user's fields for no user.")
                return False
            return True
        if password != again.value:
            self.say("The two passwords differ: type the same password in both fields.", "error")
            again.value = ""
            self.query_one("#password", Input).focus()
            return False
        kept = self.draft.kept.get("user", {})
        if not password and ("password_file" in kept or "password_hash" in kept):
            return True
        if len(password) < MIN_USER_PASSWORD:
            said = "is too short" if password else "is missing"
            self._refuse("#password", f"The password of {name} {said}: type at least {MIN_USER_PASSWORD} "
                                      "characters, twice.")
            return False
        return True

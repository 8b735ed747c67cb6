"""LayoutDialog: the advanced layout, the sizes of the ESP, of each root slot and the least /var may get. They are
checked as typed by the plan's own Layout model (the answer file's rules), and the dialog says what the layout
needs and what /var gets on the disk or file in view, so that a small disk or disk-image file can be used."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import ValidationError
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from ..backend.plan import DEFAULT_ESP_SIZE, DEFAULT_ROOT_SIZE, DEFAULT_VAR_MIN_SIZE, Layout, error_text
from ..backend.sizes import gib_up, human, short_size

FIELDS: dict[str, tuple[str, str]] = {
    "esp_size": ("ESP", "boot files and kernels"),
    "root_size": ("Each root slot", "A and B, one system each"),
    "var_min_size": ("/var at least", "gets the rest of the disk"),
}
"""The layout's sizes: (the row's label, the field's placeholder)."""
LAST_FIELD = list(FIELDS)[-1]
DEFAULTS = {"esp_size": DEFAULT_ESP_SIZE, "root_size": DEFAULT_ROOT_SIZE, "var_min_size": DEFAULT_VAR_MIN_SIZE}


def _field_id(key: str) -> str:
    return key.replace("_", "-")  # esp_size -> #esp-size


@dataclass(frozen=True)
class FitTarget:
    """What the sizes are measured against: the disk or file in words, and its size in bytes."""

    words: str
    size: int


def read_sizes(typed: dict[str, str]) -> Layout | str:
    """The layout the typed sizes make, or what is wrong with them in words. A size needs its unit: on a
    screen, "512" is more likely a slip than 512 bytes."""
    for key, text in typed.items():
        if text.strip().isdigit():
            return f"{FIELDS[key][0]}: give a unit, like 512M or 2G"
    try:
        return Layout.model_validate(typed)
    except ValidationError as exc:
        err = exc.errors()[0]
        label = FIELDS.get(str(err["loc"][0]), ("",))[0] if err["loc"] else ""
        return f"{label}: {error_text(err)}" if label else error_text(err)


def fit_words(layout: Layout, target: FitTarget | None) -> tuple[str, bool]:
    """What ``layout`` needs, and whether (and how) it fits on ``target``."""
    needs = f"Needs {human(layout.min_disk_size)}; a disk-image file of {gib_up(layout.min_disk_size)} GiB."
    if target is None:
        return needs, True
    var = layout.var_size_on(target.size)
    if var >= layout.var_min_size:
        return f"{needs}\nOn {target.words}: /var gets {human(var)}.", True
    short = layout.min_disk_size - target.size
    return f"{needs}\nDoes not fit on {target.words}: {human(short)} short.", False


class LayoutDialog(ModalScreen[dict[str, str] | None]):
    """Dismisses the sizes as the answer file writes them (``{"esp_size": "512M", ...}``), or None (Cancel,
    Esc). Apply with sizes that break a rule says why and stays; sizes that do not fit on ``target`` are
    taken (the disk screen then says that disk cannot be chosen)."""

    DEFAULT_CSS = """
    LayoutDialog .row > .row-label {
        width: 16;
    }
    LayoutDialog #layout-fit {
        height: 2;
        margin: 1 0 0 0;
    }
    LayoutDialog #layout-fit.error {
        color: $error;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", show=False)]

    def __init__(self, sizes: dict[str, str], target: FitTarget | None = None) -> None:
        super().__init__()
        self.sizes = sizes
        self.target = target

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="layout-dialog"):
            yield Static(Content("The disk layout: the ESP, two root slots, /var the rest"),
                         classes="lead")
            for key, (label, placeholder) in FIELDS.items():
                with Horizontal(classes="row"):
                    yield Static(label, classes="row-label")
                    yield Input(self.sizes.get(key, ""), placeholder=placeholder, id=_field_id(key),
                                select_on_focus=False)
            yield Static(id="layout-fit")
            with Horizontal(classes="buttons"):
                yield Button("Defaults", id="defaults")
                yield Button("Cancel", id="cancel")
                yield Button("Apply", id="apply", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#esp-size", Input).focus()
        self.show_fit()

    def typed(self) -> dict[str, str]:
        return {key: self.field(key).value for key in FIELDS}

    def field(self, key: str) -> Input:
        return self.query_one(f"#{_field_id(key)}", Input)

    @on(Input.Changed)
    def show_fit(self) -> None:
        """The verdict on what is typed, under the fields, at every key."""
        found = read_sizes(self.typed())
        words, fits = (found, False) if isinstance(found, str) else fit_words(found, self.target)
        fit = self.query_one("#layout-fit", Static)
        fit.update(Content(words))
        fit.set_class(not fits, "error")

    @on(Input.Submitted)
    def _next_field(self, event: Input.Submitted) -> None:
        """Enter moves to the next size; from the last one it applies."""
        event.stop()
        if event.input is self.field(LAST_FIELD):
            self.action_apply()
        else:
            self.focus_next()

    @on(Button.Pressed, "#apply")
    def action_apply(self) -> None:
        found = read_sizes(self.typed())
        if isinstance(found, str):
            self.show_fit()
            return
        self.dismiss({key: short_size(getattr(found, key)) for key in FIELDS})

    @on(Button.Pressed, "#defaults")
    def defaults(self) -> None:
        for key, size in DEFAULTS.items():
            self.field(key).value = short_size(size)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

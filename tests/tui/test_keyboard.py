"""The welcome screen's keyboard (F3): the dialog over a fake machine's console keymaps, switching by keys or
by the button, the welcome line and the draft afterwards, the system screen offering the switched keymap, and a
switch that fails. The snapshots of the open dialog are in test_snapshots.py; the real loadkeys is in
tests/integration/test_console_keymap.py."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.widgets import Button, Input, OptionList

from nbc_tui.app import NbcTuiApp
from nbc_tui.screens.system import SystemScreen
from nbc_tui.widgets.keymap_dialog import KeymapDialog
from nbc_tui.widgets.status_line import StatusLine
from tests.tui.harness import LIVE, SIZE, FakeKeyboard, Shown, show, system_draft, until_screen, wait_for, welcome


def line(shown: Shown) -> str:
    return shown.text("#keyboard-line")


def status(dialog: KeymapDialog) -> StatusLine:
    return dialog.query_one("#keymap-status", StatusLine)


async def open_dialog(pilot: Pilot[Any]) -> KeymapDialog:
    await pilot.press("f3")
    return await until_screen(pilot, KeymapDialog)


async def test_f3_filters_switches_and_the_system_screen_offers_it() -> None:
    """"fr" typed and Enter: the fake switch gets fr; closed, the welcome line and the draft say fr, and the
    system screen offers fr ahead of the live system's de (both shipped by the image)."""
    draft, keyboard = system_draft(), FakeKeyboard()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, welcome(draft, keyboard=keyboard))
        assert line(shown).startswith("Keyboard: us (the kernel's default).")
        dialog = await open_dialog(pilot)
        assert dialog.focused is dialog.query_one("#keymap-filter", Input)
        await pilot.press("f", "r")
        options = dialog.query_one("#keymap-list", OptionList)
        assert [str(options.get_option_at_index(i).id) for i in range(options.option_count)] == ["fr", "fr-latin1"]
        await pilot.press("enter")
        await wait_for(pilot, lambda: keyboard.switched == ["fr"], what="the switch")
        await wait_for(pilot, lambda: "now fr" in status(dialog).message, what="the dialog saying so")
        assert status(dialog).kind == "good"
        assert dialog.focused is dialog.query_one("#keymap-try", Input)  # the keys are tried next
        await pilot.press(*"zy", "enter")  # Enter while trying changes nothing
        assert pilot.app.screen is dialog and keyboard.switched == ["fr"]
        await pilot.press("escape")
        assert pilot.app.screen is shown.screen
        assert line(shown).startswith("Keyboard: fr.")
        assert draft.console_keymap == "fr"
        system = await show(pilot, SystemScreen(draft, defaults=LIVE))
        assert system.screen.query_one("#keymap", Input).value == "fr"


async def test_the_keyboard_button_and_apply_switch_to_the_highlighted_keymap() -> None:
    """"de", Down: de-latin1 highlighted; Apply switches to it; Close (the Cancel button, renamed) returns it."""
    draft, keyboard = system_draft(), FakeKeyboard()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, welcome(draft, keyboard=keyboard))
        await pilot.click("#keyboard")
        dialog = await until_screen(pilot, KeymapDialog)
        await pilot.press("d", "e", "down")
        await pilot.click("#keymap-apply")
        await wait_for(pilot, lambda: keyboard.switched == ["de-latin1"], what="the switch")
        await wait_for(pilot, lambda: str(dialog.query_one("#keymap-close", Button).label) == "Close",
                       what="Cancel becoming Close")
        await pilot.click("#keymap-close")
        assert line(shown).startswith("Keyboard: de-latin1.") and draft.console_keymap == "de-latin1"


async def test_a_failing_switch_says_why_and_changes_nothing() -> None:
    draft = system_draft()
    keyboard = FakeKeyboard(fails="loadkeys could not load the keymap de: Couldn't get a file descriptor")
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, welcome(draft, keyboard=keyboard))
        dialog = await open_dialog(pilot)
        await pilot.press("d", "e", "enter")
        await wait_for(pilot, lambda: status(dialog).kind == "error", what="the failure")
        assert status(dialog).message == ("The keyboard was not switched: loadkeys could not load the keymap de: "
                                          "Couldn't get a file descriptor (the keyboard is as it was)")
        assert not dialog.query_one("#keymap-apply", Button).disabled  # another try is possible
        await pilot.press("escape")
        assert pilot.app.screen is shown.screen
        assert line(shown).startswith("Keyboard: us (the kernel's default).") and draft.console_keymap == ""
        system = await show(pilot, SystemScreen(draft, defaults=LIVE))
        assert system.screen.query_one("#keymap", Input).value == "de"  # the live system's, as before


async def test_a_name_not_in_the_list_is_not_switched_to() -> None:
    keyboard = FakeKeyboard()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        await show(pilot, welcome(keyboard=keyboard))
        dialog = await open_dialog(pilot)
        await pilot.press(*"klingon", "enter")
        assert status(dialog).kind == "error" and "Pick a keymap from the list" in status(dialog).message
        await pilot.press("escape")
        assert keyboard.switched == []


async def test_a_serial_console_is_told_where_its_keys_come_from() -> None:
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, welcome(tty="ttyS0"))
        assert "serial console (ttyS0): your keys come from your own terminal's layout" in shown.text(
            "#keyboard-serial")
        dialog = await open_dialog(pilot)
        assert "your own terminal's layout" in str(dialog.query_one("#keymap-serial").render())

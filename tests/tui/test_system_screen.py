"""The system screen (host name, time zone, keymap, locale, a user) in the real App at 80x24, driven by keys;
what feeds it (the image's zones and keymaps from the scan, the live system's defaults from its files); the
review showing what it filled. Its snapshots are with the other screens' (test_screens_simple.py,
test_snapshots.py); the whole flow with a user, saved answers included, is in test_flow.py."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from textual.widgets import Input, OptionList

from nbc_tui.app import NbcTuiApp
from nbc_tui.backend.image.scan import LISTED_GLOBS, ImageInventory
from nbc_tui.backend.image_facts import image_keymaps, image_time_zones
from nbc_tui.backend.live_defaults import LiveDefaults, live_defaults
from nbc_tui.backend.plan import User
from nbc_tui.draft import PlanDraft
from nbc_tui.screens.review import ReviewScreen
from nbc_tui.screens.system import SystemScreen
from nbc_tui.widgets.choice_set import ChoiceSet
from nbc_tui.widgets.name_filter import filter_names
from tests.tui.harness import LIVE, SIZE, ZONES, Shown, rendered_text, show, system_draft

PASSWORD = "Alice-pw-5c8e"
NOTHING = LiveDefaults()


def field(shown: Shown, selector: str) -> Input:
    return shown.screen.query_one(selector, Input)


# -- what feeds the screen --------------------------------------------------------------------------

def test_the_live_systems_time_zone_and_keymap(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "default").mkdir(parents=True)
    assert live_defaults(tmp_path) == LiveDefaults()
    (etc / "localtime").symlink_to("../usr/share/zoneinfo/Europe/Berlin")
    (etc / "default/keyboard").write_text('XKBMODEL="pc105"\nXKBLAYOUT="fr,us"\n')
    assert live_defaults(tmp_path) == LiveDefaults(timezone="Europe/Berlin", keymap="fr")
    (etc / "timezone").write_text("Etc/UTC\n")  # Debian's file wins over the symlink
    (etc / "vconsole.conf").write_text('# console\nKEYMAP="de-latin1"\nFONT=eurlatgr\n')  # and systemd's
    assert live_defaults(tmp_path) == LiveDefaults(timezone="Etc/UTC", keymap="de-latin1")


def test_the_images_zones_and_keymaps_from_the_scans_listing() -> None:
    listed = {g: () for g in LISTED_GLOBS}
    listed["usr/share/zoneinfo/*"] = tuple(f"usr/share/zoneinfo/{n}" for n in (
        "Europe", "America", "UTC", "zone.tab", "leapseconds", "SECURITY", "posix", "tzdata.zi"))
    listed["usr/share/zoneinfo/*/*"] = ("usr/share/zoneinfo/Europe/Berlin", "usr/share/zoneinfo/America/Argentina",
                                        "usr/share/zoneinfo/posix/Europe")
    listed["usr/share/zoneinfo/*/*/*"] = ("usr/share/zoneinfo/America/Argentina/Salta",)
    listed["usr/share/keymaps/*/*/*"] = ("usr/share/keymaps/i386/qwertz/de.kmap.gz",
                                         "usr/share/keymaps/i386/include/compose.inc")
    inventory = ImageInventory(listed_globs=listed)
    assert image_time_zones(inventory) == ("America/Argentina/Salta", "Europe/Berlin", "UTC")
    assert image_keymaps(inventory) == ("de",)


def test_filtering_ranks_the_name_then_a_part_starting_with_it() -> None:
    assert filter_names(ZONES, "ber") == ["Atlantic/Bermuda", "Europe/Berlin"]
    assert filter_names(ZONES, "utc") == ["UTC", "Etc/UTC"]
    assert filter_names(("mac-de", "de-latin1", "de", "fr"), "de") == ["de", "de-latin1", "mac-de"]
    assert filter_names(ZONES, "") == list(ZONES)


# -- the screen ---------------------------------------------------------------------------------------

async def test_a_user_by_keys_refused_passwords_then_berlin_from_the_list() -> None:
    draft = system_draft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, SystemScreen(draft, defaults=LIVE))
        screen = shown.screen
        assert field(shown, "#timezone").value == "Europe/Paris"  # the live system's, which the image ships
        assert field(shown, "#keymap").value == "de"
        await pilot.press(*"nbc-box", "enter")  # Enter: the next field
        assert screen.focused is field(shown, "#timezone")
        await pilot.press("ctrl+u", *"Ber")
        options = screen.query_one("#timezone-list", OptionList)
        assert [options.get_option_at_index(i).id for i in range(options.option_count)] == [
            "Atlantic/Bermuda", "Europe/Berlin"]
        assert "Time zones: 2 of 6" in rendered_text(pilot.app)
        await pilot.press("down", "enter")  # Europe/Berlin, taken; then the keymap field
        assert field(shown, "#timezone").value == "Europe/Berlin"
        assert screen.focused is field(shown, "#keymap")
        await pilot.press("enter", "enter")  # the keymap offered, the locale left to the image
        assert screen.focused is field(shown, "#user-name")
        await pilot.press(*"alice", "tab", *"Alice Example", "tab", *PASSWORD, "tab", *"Alice-pw-5c8f", "enter")
        assert screen.focused is screen.query_one("#admin", ChoiceSet)
        await pilot.press("right", "enter", "enter")  # "Yes" picked; Enter on it goes on: refused
        assert not shown.results
        assert "The two passwords differ" in shown.text("#status")
        assert field(shown, "#password-again").value == "" and screen.focused is field(shown, "#password")
        assert draft.user_name == ""
        await pilot.press("tab", *PASSWORD, "enter", "enter")
        assert shown.results == [True], shown.text("#status")
        assert PASSWORD not in rendered_text(pilot.app)
    system = draft.to_plan().system
    assert (system.hostname, system.timezone, system.keymap, system.locale) == (
        "nbc-box", "Europe/Berlin", "de", None)
    assert system.users == (User(name="alice", full_name="Alice Example", password=SecretStr(PASSWORD),
                                 admin=True),)
    assert draft.live_defaults_offered


async def test_everything_left_empty_keeps_the_images_own_and_makes_no_user() -> None:
    draft = system_draft(live_defaults_offered=True)  # offered once already (and emptied)
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, SystemScreen(draft, defaults=LIVE))
        assert field(shown, "#timezone").value == "" and field(shown, "#keymap").value == ""
        await pilot.press("ctrl+n")
        assert shown.results == [True]
    system = draft.to_plan().system
    assert not system.sets_identity and system.users == ()


async def test_a_live_setting_the_image_lacks_is_not_offered() -> None:
    draft = system_draft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, SystemScreen(draft, defaults=LiveDefaults(timezone="Asia/Tokyo", keymap="jp106")))
        assert field(shown, "#timezone").value == "" and field(shown, "#keymap").value == ""


async def test_a_name_the_image_does_not_ship_is_refused() -> None:
    draft = system_draft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, SystemScreen(draft, defaults=NOTHING))
        field(shown, "#keymap").value = "dvorak"
        await pilot.press("ctrl+n")
        assert not shown.results
        assert "The image has no console keymap 'dvorak'" in shown.text("#status")
        assert shown.screen.focused is field(shown, "#keymap")


async def test_without_the_images_lists_any_name_is_taken() -> None:
    draft = system_draft(image_time_zones=(), image_keymaps=())  # a staged image: not known
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, SystemScreen(draft, defaults=LIVE))
        assert field(shown, "#timezone").value == ""  # nothing offered the image may lack
        assert "No list of the image's time zones" in rendered_text(pilot.app)
        await pilot.press("tab", *"Asia/Tokyo", "tab", *"jp106", "ctrl+n")
        assert shown.results == [True]
    assert (draft.timezone, draft.keymap) == ("Asia/Tokyo", "jp106")


async def test_the_model_refuses_a_bad_host_name_in_its_words() -> None:
    draft = system_draft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, SystemScreen(draft, defaults=NOTHING))
        await pilot.press(*"-box-")
        field(shown, "#user-name").focus()
        await pilot.press("ctrl+n")
        assert not shown.results
        assert "'-box-' is not a valid host name" in shown.text("#status")
        assert shown.screen.focused is field(shown, "#hostname")
        field(shown, "#hostname").value = "box"
        field(shown, "#user-name").value = "Alice"
        field(shown, "#password").value = field(shown, "#password-again").value = PASSWORD
        await pilot.press("ctrl+n")
        assert "'Alice' is not a valid user name" in shown.text("#status")
        assert shown.screen.focused is field(shown, "#user-name")
        assert draft.hostname == ""  # nothing copied while refused


async def test_user_fields_without_a_name_or_with_a_short_password_are_refused() -> None:
    draft = system_draft()
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, SystemScreen(draft, defaults=NOTHING))
        field(shown, "#password").value = field(shown, "#password-again").value = PASSWORD
        await pilot.press("ctrl+n")
        assert "Type a user name" in shown.text("#status")
        field(shown, "#user-name").value = "alice"
        field(shown, "#password").value = field(shown, "#password-again").value = "short"
        await pilot.press("ctrl+n")
        assert "The password of alice is too short: type at least 8 characters" in shown.text("#status")
        field(shown, "#password").value = field(shown, "#password-again").value = ""
        await pilot.press("ctrl+n")
        assert "The password of alice is missing" in shown.text("#status")
        assert not shown.results


async def test_coming_back_shows_what_was_filled() -> None:
    draft = system_draft(hostname="box", timezone="UTC", user_name="alice", user_admin=True,
                         user_password=SecretStr(PASSWORD), live_defaults_offered=True)
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, SystemScreen(draft, defaults=LIVE))
        assert field(shown, "#hostname").value == "box" and field(shown, "#timezone").value == "UTC"
        assert field(shown, "#keymap").value == ""  # emptied before: the live "de" is not offered again
        assert field(shown, "#password-again").value == PASSWORD
        assert shown.screen.query_one("#admin", ChoiceSet).picked == "yes"
        await pilot.press("escape")
        assert shown.results == [None]


# -- review -------------------------------------------------------------------------------------------

async def test_review_shows_the_identity_and_never_the_password() -> None:
    draft = system_draft(hostname="nbc-box", timezone="Europe/Berlin", keymap="de", user_name="alice",
                         user_full_name="Alice Example", user_password=SecretStr(PASSWORD), user_admin=True)
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, ReviewScreen(draft))
        text = shown.text("#plan-text")
    assert ("The installed system:\n  Host name nbc-box, time zone Europe/Berlin, keymap de\n"
            "  The image's own locale\n  User alice (Alice Example), administrator, password set") in text
    assert PASSWORD not in text


async def test_review_without_identity_says_the_image_keeps_its_own() -> None:
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, ReviewScreen(system_draft()))
        text = shown.text("#plan-text")
    assert text.endswith("The installed system:\n  The image's own host name, time zone, keymap and locale\n"
                         "  No user besides root")


def test_a_draft_gives_its_users_back() -> None:
    plan = system_draft(hostname="box", user_name="alice", user_password=SecretStr(PASSWORD)).to_plan()
    assert PlanDraft.from_plan(plan).to_plan() == plan

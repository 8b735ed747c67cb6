"""``nbc-tui --answers FILE``: the full-screen installer starts from an answer file's plan. The draft made
from a plan gives the same plan back (so a TUI session started from answers, left as it is, saves the same
answers), and the screens (the image's, the system's) show what the file said."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

from nbc_tui.app import NbcTuiApp
from nbc_tui.backend.answers import load_answers, parse_answers
from nbc_tui.backend.plan import InstallPlan
from nbc_tui.draft import PlanDraft
from nbc_tui.screens.image import ImageScreen
from nbc_tui.screens.system import SystemScreen
from tests.tui.harness import LIVE, SIZE, FlowApp, rendered_text, until_screen

EXAMPLES = Path(__file__).parents[2] / "docs/examples"


@pytest.mark.parametrize("name", ["image-file.toml", "disk-by-serial.toml", "offline-staged.toml"])
def test_a_draft_from_an_example_gives_its_plan_back(name: str) -> None:
    plan = load_answers(EXAMPLES / name)
    assert PlanDraft.from_plan(plan).to_plan() == plan


def test_parts_no_screen_edits_are_carried_through() -> None:
    plan = parse_answers('''
version = 1
after = "poweroff"
[image]
ref = "oci:/srv/os"
[target]
device = "/dev/vdb"
serial = "QM0001"
wipe = true
[layout]
filesystem = "ext4"
esp_size = "1G"
root_size = "6G"
var_min_size = "2G"
[encryption]
passphrase_file = "/root/luks"
tpm2 = true
tpm2_pcrs = [7]
recovery_key_file = "/root/recovery"
[boot]
kernel_args = ["console=ttyS0"]
[system]
root_password_hash = "$6$salt$hash"
ssh_authorized_keys = ["ssh-ed25519 AAAAC3Nza test@example"]
''', source="t.toml").plan
    draft = PlanDraft.from_plan(plan)
    assert draft.to_plan() == plan
    # A rule-chosen disk is not carried: the disk screen chooses it (typing its name is the consent).
    ruled = parse_answers('version = 1\n[image]\nref = "x"\n[target]\nwipe = true\n'
                          '[[target.match]]\nsize = "largest"\n', source="r.toml").plan
    assert PlanDraft.from_plan(ruled).device is None


def test_a_typed_root_password_replaces_the_files_hash() -> None:
    from pydantic import SecretStr

    plan = parse_answers('version = 1\n[image]\nref = "x"\n[target]\nimage_file = "/var/tmp/a.img"\n'
                         '[system]\nroot_password_hash = "$6$s$h"\nssh_authorized_keys = ["ssh-ed25519 K"]\n',
                         source="h.toml").plan
    draft = PlanDraft.from_plan(plan)
    draft.root_password = SecretStr("typed-pw-123")
    system = draft.to_plan().system
    assert system.root_password_hash is None and system.root_password is not None
    assert system.ssh_authorized_keys == ("ssh-ed25519 K",)


async def test_the_screens_start_from_the_answer_file(tmp_path: Path) -> None:
    plan: InstallPlan = load_answers(EXAMPLES / "image-file.toml")
    app = FlowApp(draft=PlanDraft.from_plan(plan), dry_run=True, watch_disks=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter")  # past the welcome
        image = await until_screen(pilot, ImageScreen)
        assert image.query_one(Input).value == plan.image.ref
        assert app.draft.image_file == plan.target.image_file
        assert app.draft.image_size_gib == 40


async def test_the_system_screen_starts_from_the_answer_file() -> None:
    """The first user is on the screen (its password hash kept while the fields stay empty), the others are
    carried as they came; the live system's settings are not offered over what the file left out."""
    plan = parse_answers('version = 1\n[image]\nref = "x"\n[target]\nimage_file = "/var/tmp/a.img"\n'
                         'overwrite = true\n[system]\nhostname = "box"\ntimezone = "Europe/Berlin"\n'
                         '[[system.users]]\nname = "alice"\nfull_name = "Alice"\nadmin = true\n'
                         'password_hash = "$6$s$h"\ngroups = ["video"]\n'
                         '[[system.users]]\nname = "bob"\n', source="u.toml").plan
    draft = PlanDraft.from_plan(plan)
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        screen = SystemScreen(draft, defaults=LIVE)
        await pilot.app.push_screen(screen)
        await pilot.pause()
        values = {i.id: i.value for i in screen.query(Input)}
        assert values == {"hostname": "box", "timezone": "Europe/Berlin", "keymap": "", "locale": "",
                          "user-name": "alice", "full-name": "Alice", "password": "", "password-again": ""}
        assert screen.query_one("#password", Input).placeholder == "empty: the answers' one"
        assert "A user (and 1 from the answers)" in rendered_text(pilot.app)
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert pilot.app.screen is not screen
    assert draft.to_plan() == plan

"""The machine's identity, the pure parts: the plan's syntax rules, what an image offers (zones, keymaps,
locales, groups) read from the scan's listings, the checks against it keyed to answer-file lines, and answer
files with users (secrets refused, paths relative to the file, saved and loaded back). Installs with real
images are in tests/vm/test_identity.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from nbc_tui.backend.answers import load_answers, parse_answers
from nbc_tui.backend.answers.problems import AnswerFileError
from nbc_tui.backend.answers.writer import dump_answers
from nbc_tui.backend.image.opener import open_image
from nbc_tui.backend.image.scan import LISTED_GLOBS, PROBED_PATHS, READ_PATHS, ImageInventory, scan_image
from nbc_tui.backend.image_facts import image_keymaps
from nbc_tui.backend.plan import ImageSpec, InstallPlan, System, Target, User
from nbc_tui.backend.steps.identity import firstboot_note, identity_problems
from nbc_tui.backend.system import identity
from tests.support.oci import ImageSpec as OciImage
from tests.support.oci import Layer, TarBuilder, write_layout


@pytest.mark.parametrize(("field", "value"), [
    ("hostname", "-box"), ("hostname", "box_1"), ("hostname", "a" * 65), ("timezone", "../etc/shadow"),
    ("timezone", "Europe/ Berlin"), ("keymap", "de latin1"), ("locale", "en US"), ("locale", "$(reboot)"),
])
def test_settings_with_bad_syntax_are_refused(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as err:
        System(**{field: value})
    assert err.value.errors()[0]["loc"][0] == field


def test_good_settings_pass() -> None:
    system = System(hostname="web-01.example.com", timezone="America/Argentina/Buenos_Aires", keymap="fr-latin1",
                    locale="sr_RS.UTF-8@latin")
    assert system.sets_identity and not System().sets_identity


@pytest.mark.parametrize(("user", "words"), [
    ({"name": "Alice"}, "not a valid user name"), ({"name": "root"}, "root exists already"),
    ({"name": "a", "full_name": "A:B"}, "may not contain"), ({"name": "a", "shell": "bash"}, "absolute path"),
    ({"name": "a", "password_hash": "plain"}, "crypt(3)"),
    ({"name": "a", "password_hash": "$6$x", "password_file": "/p"}, "one way only"),
    ({"name": "a", "groups": ["Video"]}, "not a valid user name"),
])
def test_bad_users_are_refused(user: dict, words: str) -> None:
    with pytest.raises(ValidationError, match=words.replace("(", r"\(").replace(")", r"\)")):
        User(**user)


def test_a_user_given_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="given more than once"):
        System(users=[User(name="a"), User(name="a")])


def test_what_an_image_offers_is_read_from_its_paths() -> None:
    zones = identity.zone_names(f"usr/share/zoneinfo/{n}" for n in (
        "UTC", "Europe", "Europe/Berlin", "posix", "posix/Europe", "posix/Europe/Berlin", "zone1970.tab", "SECURITY",
        "leapseconds", "America", "America/Argentina", "America/Argentina/Salta", "Etc", "Etc/GMT+1"))
    assert zones == {"UTC", "Europe/Berlin", "America/Argentina/Salta", "Etc/GMT+1"}  # no folder is a zone
    assert identity.keymap_names(["usr/share/keymaps/i386/qwertz/de-latin1.kmap.gz",
                                  "usr/share/kbd/keymaps/xkb/fr.map.gz", "usr/lib/kbd/keymaps/i386/include/x.inc",
                                  "usr/share/kbd/keymaps/legacy/us.map"]) == {"de-latin1", "fr", "us"}
    dirs = ["usr/lib/locale/C.utf8", "usr/lib/locale/de_DE.utf8"]
    assert identity.locale_installed("de_DE.UTF-8", dirs=dirs, has_archive=False, locale_gen="")
    assert identity.locale_installed("C.UTF-8", dirs=[], has_archive=False, locale_gen="")
    gen = "# en_GB.UTF-8 UTF-8\nfr_FR.UTF-8 UTF-8\n"
    assert identity.locale_installed("fr_FR.utf8", dirs=[], has_archive=True, locale_gen=gen)
    assert not identity.locale_installed("en_GB.UTF-8", dirs=[], has_archive=True, locale_gen=gen)
    assert not identity.locale_installed("fr_FR.UTF-8", dirs=[], has_archive=False, locale_gen=gen)
    assert identity.admin_group({"wheel", "video"}) == "wheel" and identity.admin_group({"video"}) is None


KEYMAP_LAYOUTS = {
    "usr/lib/kbd/keymaps/xkb/fr.map.gz": "fr",                        # Fedora's kbd, from the XKB layouts
    "usr/lib/kbd/keymaps/legacy/i386/qwertz/de-latin1.map.gz": "de-latin1",  # and its own, four folders down
    "usr/share/kbd/keymaps/i386/dvorak/dvorak.map.gz": "dvorak",      # Arch's kbd
    "usr/share/keymaps/i386/qwerty/us.kmap.gz": "us",                 # Debian's console-data
}


def test_keymaps_are_found_in_each_distribution_s_folders_by_a_real_scan(tmp_path: Path) -> None:
    """Each layout's keymap files, in an image scanned as an install scans it, are offered and accepted; a file
    five folders down or an include is no keymap."""
    files = (*KEYMAP_LAYOUTS, "usr/lib/kbd/keymaps/legacy/i386/include/compose.inc",
             "usr/lib/kbd/keymaps/a/b/c/d/deep.map.gz")
    folders = sorted({"/".join(f.split("/")[:depth]) for f in files for depth in range(1, f.count("/") + 1)})
    tar = TarBuilder()
    for folder in folders:
        tar.dir(folder)
    for path in files:
        tar.file(path, b"stand-in")
    write_layout(tmp_path / "layout", [OciImage([Layer(tar.bytes(), "gzip")])])
    inv = scan_image(open_image(f"oci:{tmp_path / 'layout'}"), list_initramfs=False)
    assert image_keymaps(inv) == tuple(sorted(KEYMAP_LAYOUTS.values()))
    problems = identity_problems(System(keymap="de-latin1"), inv)
    assert not [p for p in problems if p.details["answer_key"] == ["system", "keymap"]]


def inventory(**overrides: object) -> ImageInventory:
    """What a scan of a small Debian-like image would say."""
    inv = ImageInventory()
    inv.probed_paths = {p: True for p in PROBED_PATHS}
    inv.listed_globs = {g: () for g in LISTED_GLOBS}
    inv.listed_globs["usr/share/zoneinfo/*/*"] = ("usr/share/zoneinfo/Europe/Berlin", "usr/share/zoneinfo/Europe/Paris")
    inv.listed_globs["usr/share/keymaps/*/*/*"] = ("usr/share/keymaps/i386/qwertz/de-latin1.kmap.gz",)
    inv.small_files = {p: None for p in READ_PATHS}
    inv.small_files["etc/group"] = b"root:x:0:\nsudo:x:27:\nvideo:x:44:\n"
    inv.small_files["etc/passwd"] = b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/:/usr/sbin/nologin\n"
    inv.small_files["etc/shells"] = b"# /etc/shells\n/bin/sh\n/bin/bash\n"
    for key, value in overrides.items():
        path, _, what = key.partition(":")
        if what == "exists":
            inv.probed_paths[path] = bool(value)
        else:
            inv.small_files[path] = value  # type: ignore[assignment]
    return inv


def test_identity_is_checked_against_the_image_and_each_problem_names_its_key() -> None:
    system = System(timezone="Europe/Berln", keymap="de-latin", locale="de_DE.UTF-8", users=[
        User(name="daemon"), User(name="alice", admin=True, groups=("video", "plugdev"), shell="/bin/zsh")])
    problems = identity_problems(system, inventory())
    found = {tuple(p.details["answer_key"]): p.message for p in problems}
    assert "no time zone 'Europe/Berln'" in found[("system", "timezone")]
    assert "did you mean Europe/Berlin" in next(p.hint for p in problems if "Berln" in p.message)  # type: ignore[operator]
    assert "no console keymap 'de-latin'" in found[("system", "keymap")]
    assert "no locale 'de_DE.UTF-8' built" in found[("system", "locale")]
    assert "already has an account 'daemon'" in found[("system", "users", 0, "name")]
    assert "no group plugdev" in found[("system", "users", 1, "groups")]
    assert "/bin/zsh is not a login shell" in found[("system", "users", 1, "shell")]
    assert ("system", "users", 1, "admin") not in found  # sudo is there
    assert identity_problems(System(timezone="Europe/Paris", keymap="de-latin1", locale="C.UTF-8",
                                    users=[User(name="alice", admin=True)]), inventory()) == []


def test_missing_tools_and_groups_are_said() -> None:
    users = System(users=[User(name="alice", admin=True, password_hash="$6$x")])
    bare = inventory(**{"usr/sbin/useradd:exists": False, "usr/sbin/chpasswd:exists": False,
                        "etc/group": b"root:x:0:\n"})
    messages = [p.message for p in identity_problems(users, bare)]
    assert any("no useradd" in m for m in messages) and any("no chpasswd" in m for m in messages)
    assert any("no admin group (sudo or wheel)" in m for m in messages)
    no_zones = inventory()
    no_zones.listed_globs["usr/share/zoneinfo/*/*"] = ()
    assert "ships no time zones" in identity_problems(System(timezone="UTC"), no_zones)[0].message
    assert firstboot_note(System(hostname="x"), inventory(**{"usr/bin/systemd-firstboot:exists": False}))
    assert firstboot_note(System(hostname="x"), inventory()) is None
    assert firstboot_note(System(), inventory(**{"usr/bin/systemd-firstboot:exists": False})) is None


GOOD = 'version = 1\n[image]\nref = "oci:/x"\n[target]\nimage_file = "/tmp/x.img"\n'


def test_a_users_password_in_the_file_is_refused_on_its_line() -> None:
    with pytest.raises(AnswerFileError) as err:
        parse_answers(GOOD + '[system]\n[[system.users]]\nname = "alice"\npassword = "hunter22"\n')
    [problem] = err.value.problems
    assert (problem.key, problem.line) == ("system.users[0].password", 9)
    assert "secret written in the answer file is refused" in problem.message and "hunter22" not in str(err.value)


def test_users_load_relative_to_the_file_and_save_without_secrets(tmp_path: Path) -> None:
    path = tmp_path / "answers.toml"
    path.write_text(GOOD + '[system]\nhostname = "box"\n[[system.users]]\nname = "alice"\n'
                           'password_file = "secrets/alice"\nadmin = true\n')
    plan = load_answers(path)
    assert plan.system.users[0].password_file == tmp_path / "secrets/alice"
    typed = InstallPlan(image=ImageSpec(ref="oci:/x"), target=Target(image_file=Path("/tmp/x.img")),
                        system=System(hostname="box", users=[User(name="alice", password=SecretStr("s3cret-pw"))]))
    text = dump_answers(typed)
    assert "s3cret-pw" not in text and "[[system.users]]" in text
    assert '# password_file = "/root/password-alice"' in text
    assert parse_answers(text).plan.system.users[0].name == "alice"

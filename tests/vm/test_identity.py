"""Who the machine is and who uses it, installed into disk-image files (no boot): the Debian test image with
real console keymaps on top (Debian's console-data) gets a host name, time zone, keymap, locale and two users
from an answer file, made by its own systemd-firstboot and useradd; read back from the disk. Bad identity input
is refused before the disk, keyed to its line. The synthetic image, which has no systemd-firstboot, gets the same
files written directly."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.integration.disk_image import mounted_partition
from tests.support.debs import unpacked
from tests.support.oci import TarBuilder
from tests.vm.extra_layer import image_plus_layer
from tests.vm.image_variants import ImageVariants

pytestmark = pytest.mark.root

PASSWORD = "Alice-pw-7f3k2"
BOB_HASH = "$6$nbctest$0e2M4b6N1v7b3W0yq5o8Tqk0oWb1lH3b3Q4WqJtQ6x5Qw2xVq9r2B6m3pH8y1dE0l7s2Lw5qZ0c3B9n8a1m2."
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOw8dmhsm6bQ2s5KxEu7xvUJ8lq6cM1W6mS0j0uZb6Kq alice@laptop"


def keymaps_layer(work: Path) -> bytes:
    """Debian's console keymaps (console-data), as a layer."""
    tree = unpacked("console-data", work / "console-data")
    tar = TarBuilder()
    root = tree / "usr/share/keymaps"
    tar.dir("usr").dir("usr/share").dir("usr/share/keymaps")
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(tree))
        if path.is_dir():
            tar.dir(rel)
        elif path.is_file() and not path.is_symlink():
            tar.file(rel, path.read_bytes())
    return tar.bytes()


def answers(tmp_path: Path, image: str, disk: Path, system: str) -> Path:
    path = tmp_path / "answers.toml"
    path.write_text(f'version = 1\n[image]\nref = "{image}"\n[target]\nimage_file = "{disk}"\nimage_size = "6G"\n'
                    '[layout]\nfilesystem = "ext4"\nesp_size = "512M"\nroot_size = "2G"\nvar_min_size = "1G"\n'
                    f"{system}")
    return path


SYSTEM = f'''[system]
hostname = "nbc-box"
timezone = "Europe/Berlin"
keymap = "de-latin1"
locale = "C.UTF-8"

[[system.users]]
name = "alice"
full_name = "Alice Example"
password_file = "alice-password"
admin = true
shell = "/bin/bash"
ssh_authorized_keys = ["{KEY}"]

[[system.users]]
name = "bob"
password_hash = "{BOB_HASH}"
groups = ["video", "audio"]
'''


@pytest.fixture(scope="module")
def identity_image(image_variants: ImageVariants, tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("identity-image")
    return image_plus_layer(image_variants.layout, work, keymaps_layer(work), tag="preloaded", new_tag="identity")


def test_host_name_zone_keymap_locale_and_users_land_on_the_disk(nbc, identity_image: str, tmp_path: Path,
                                                                 log_file: Path) -> None:
    disk = tmp_path / "disk.img"
    (tmp_path / "alice-password").write_text(PASSWORD + "\n")
    r = nbc("--headless", "--answers", str(answers(tmp_path, identity_image, disk, SYSTEM)), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    messages = [e.get("message", "") for e in r.events]
    assert any("User alice" in m and "groups sudo" in m for m in messages), messages

    with mounted_partition(disk, 4, tmp_path / "var") as var:
        upper = var / "lib/nbc/etc-overlay/upper"
        assert (upper / "hostname").read_text() == "nbc-box\n"
        assert os.readlink(upper / "localtime").endswith("zoneinfo/Europe/Berlin")
        assert "KEYMAP=de-latin1" in (upper / "vconsole.conf").read_text()
        assert "LANG=C.UTF-8" in (upper / "locale.conf").read_text()
        home = var / "home/alice"
        ssh, keys = home / ".ssh", home / ".ssh/authorized_keys"
        assert keys.read_text() == KEY + "\n"
        homes = {p.name: p.stat() for p in (home, ssh, keys)}
        assert stat.S_IMODE(homes[".ssh"].st_mode) == 0o700 and stat.S_IMODE(homes["authorized_keys"].st_mode) == 0o600
        assert (var / "home/bob").is_dir()
        alice_ids = {(st.st_uid, st.st_gid) for st in homes.values()}
    with mounted_partition(disk, 2, tmp_path / "root") as root:
        etc = root / ".etc.lower"
        passwd = {line.split(":")[0]: line.split(":") for line in (etc / "passwd").read_text().splitlines()}
        assert passwd["alice"][4] == "Alice Example" and passwd["alice"][5] == "/var/home/alice"
        assert passwd["alice"][6] == "/bin/bash"
        assert alice_ids == {(int(passwd["alice"][2]), int(passwd["alice"][3]))}
        assert int(passwd["alice"][2]) >= 1000  # the image's UID range (login.defs)
        shadow = {line.split(":")[0]: line.split(":")[1] for line in (etc / "shadow").read_text().splitlines()}
        assert shadow["alice"].startswith("$6$") and shadow["bob"] == BOB_HASH
        check = subprocess.run(["openssl", "passwd", "-6", "-salt", shadow["alice"].split("$")[2], PASSWORD],
                               capture_output=True, text=True, check=True).stdout.strip()
        assert check == shadow["alice"]
        groups = {fields[0]: fields[3].split(",")
                  for fields in (line.split(":") for line in (etc / "group").read_text().splitlines())}
        assert "alice" in groups["sudo"] and "bob" in groups["video"] and "bob" in groups["audio"]
        assert "bob" not in groups["sudo"]
        # The slot's /etc keeps the image's own files: only the overlay's upper layer says who the machine is.
        assert not (etc / "vconsole.conf").exists()
    for text in (r.stdout, r.stderr, log_file.read_text()):
        assert PASSWORD not in text


@pytest.mark.parametrize(("system", "key", "line", "words"), [
    ('[system]\ntimezone = "Mars/Olympus_Mons"\n', "system.timezone", 13, "no time zone 'Mars/Olympus_Mons'"),
    ('[system]\nkeymap = "xx-nothing"\n', "system.keymap", 13, "no console keymap 'xx-nothing'"),
    ('[system]\nlocale = "de_DE.UTF-8"\n', "system.locale", 13, "no locale 'de_DE.UTF-8' built"),
    ('[system]\n[[system.users]]\nname = "carol"\ngroups = ["wizards"]\n', "system.users[0].groups", 15,
     "no group wizards"),
    ('[system]\n[[system.users]]\nname = "daemon"\n', "system.users[0].name", 14, "already has an account"),
    ('[system]\nhostname = "-nope"\n', "system.hostname", 13, "not a valid host name"),
])
def test_bad_identity_is_refused_on_its_line_and_the_disk_is_untouched(nbc, identity_image: str, tmp_path: Path,
                                                                       system: str, key: str, line: int,
                                                                       words: str) -> None:
    disk = tmp_path / "disk.img"
    path = answers(tmp_path, identity_image, disk, system)
    r = nbc("answers", "validate", str(path), "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    [problem] = json.loads(r.stdout)["problems"]
    assert (problem["key"], problem["line"]) == (key, line), problem
    assert words in problem["message"], problem
    r = nbc("--headless", "--answers", str(path))
    assert r.returncode == 2 and words in r.stderr, r.stderr
    assert not disk.exists()


def test_an_image_without_systemd_firstboot_gets_the_same_files(nbc, synthetic_image: str, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    r = nbc("install", "--image", synthetic_image, "--via-loopback", str(disk), "--image-size", "3", "--esp-size",
            "100M", "--root-size", "1G", "--var-min-size", "256M", "--hostname", "plain-box", "--locale", "C.UTF-8",
            "--yes", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    warnings = [e["message"] for e in r.events if e["type"] == "warning"]
    assert any("has no systemd-firstboot" in w for w in warnings), warnings
    with mounted_partition(disk, 4, tmp_path / "var") as var:
        upper = var / "lib/nbc/etc-overlay/upper"
        assert (upper / "hostname").read_text() == "plain-box\n"
        assert (upper / "locale.conf").read_text() == "LANG=C.UTF-8\n"
        assert not (upper / "vconsole.conf").exists()
    r = nbc("install", "--image", synthetic_image, "--via-loopback", str(tmp_path / "x.img"), "--image-size", "3",
            "--esp-size", "100M", "--root-size", "1G", "--var-min-size", "256M", "--timezone", "Europe/Berlin",
            "--yes")
    assert r.returncode == 2 and "ships no time zones" in r.stderr, r.stderr
    assert not (tmp_path / "x.img").exists()

"""Update, status and rollback of an installed disk-image file from the host (``--device``), with the real CLI:
the other slot is written and the one that boots stays byte for byte the same; /etc carries over; refusals
change nothing; a disk in nbc's own layout is updated too."""

from __future__ import annotations

import json
import re
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from nbc_tui.backend.boot import grubenv
from nbc_tui.backend.locks import LOCK_DIR, NBC_LOCK_DIR, SYSTEM_LOCK, locked
from nbc_tui.backend.mounts import RUN_DIR
from tests.conftest import loop_devices_of, nbc_mounts, stopped_while_extracting
from tests.integration.disk_image import digest_of, esp_files, esp_read, mounted_partition, partition_digest
from tests.support.synthetic import KVER, V2_USER, make_image, make_versions

if TYPE_CHECKING:
    from tests.integration.registry_fixtures import RegistryServer

pytestmark = pytest.mark.root

PASSWORD = "Upd4te-Root-pw-secret"
SMALL = ["--image-size", "3", "--esp-size", "100M", "--root-size", "1G", "--var-min-size", "256M"]
UPPER = "lib/nbc/etc-overlay/upper"
ROOT_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtestkeytestkeytestkeytestkeytestkeytestkey root@test"


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """v1 and v2 (a new system user, a new /etc/issue) in one layout."""
    return make_versions(tmp_path_factory.mktemp("versions") / "layout", {"v1": {}, "v2": {"version": 2}})


def install(nbc, image: str, disk: Path, tmp_path: Path, *extra: str) -> None:
    password = tmp_path / "pw"
    password.write_text(PASSWORD + "\n")
    r = nbc("install", "--image", image, "--via-loopback", str(disk), *SMALL, "--root-password-file",
            str(password), "--karg", "console=ttyS0", *extra)
    assert r.returncode == 0, r.stdout + r.stderr


def var_tree(disk: Path, where: Path) -> dict[str, str]:
    """Every file on var outside nbc's own state and logs, with its content digest."""
    out = {}
    with mounted_partition(disk, 4, where) as var:
        for path in sorted(var.rglob("*")):
            rel = str(path.relative_to(var))
            if rel.startswith(("lib/nbc", "log/nbc-tui", "lost+found")) or not path.is_file():
                continue
            out[rel] = digest_of(path)
    return out


def as_user_would(disk: Path, where: Path) -> None:
    """What the install and the running system did: root's SSH key on the slot; in /etc a user added and an
    image's account removed (passwd in the upper layer), /etc/issue edited, its machine-id, a file of its own,
    written into the overlay's upper directory (nothing runs here)."""
    with mounted_partition(disk, 2, where.with_name("a-root"), writable=True) as a:
        lower_passwd = (a / ".etc.lower/passwd").read_text()
        (a / "root/.ssh").mkdir(mode=0o700, parents=True)  # as [system] ssh_authorized_keys writes them
        (a / "root/.ssh/authorized_keys").write_text(f"# installed\n{ROOT_KEY}\n")
        (a / ".etc.lower/subuid").write_text("alice:100000:65536\n")  # as useradd at install makes it
    with mounted_partition(disk, 4, where, writable=True) as var:
        upper = var / UPPER
        assert "daemon:x:1:" in lower_passwd
        kept = "".join(line for line in lower_passwd.splitlines(keepends=True) if not line.startswith("daemon:"))
        (upper / "passwd").write_text(kept + "alice:x:1000:1000:Alice:/home/alice:/bin/sh\n")
        (upper / "issue").write_text("Welcome to the machine\n")
        (upper / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
        (upper / "nbc-tui-test.conf").write_text("kept\n")


def status(nbc, disk: Path) -> dict:
    r = nbc("status", "--device", str(disk), "--json", "--offline")
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


# -- the update -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("filesystem", "bootloader"), [("ext4", "grub"), ("btrfs", "systemd-boot")])
def test_update_writes_the_other_slot_and_leaves_the_one_that_boots(nbc, versions: dict[str, str], tmp_path: Path,
                                                                    log_file: Path, filesystem: str,
                                                                    bootloader: str) -> None:
    disk = tmp_path / "disk.img"
    install(nbc, versions["v1"], disk, tmp_path, "--filesystem", filesystem, "--bootloader", bootloader)
    as_user_would(disk, tmp_path / "var")
    slot_a, var_before = partition_digest(disk, 2), var_tree(disk, tmp_path / "var")
    esp_before = {f: esp_read(disk, f) for f in esp_files(disk) if f.startswith("A/")}
    before_status = status(nbc, disk)

    run_dirs = sorted(RUN_DIR.glob("update-*"))
    r = nbc("update", "--device", str(disk), "--image", versions["v2"], "--karg", "quiet", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(RUN_DIR.glob("update-*")) == run_dirs  # its mount points are gone, folders included
    done = r.events[-1]
    assert done["type"] == "complete" and done["message"].startswith("System update complete!")
    assert {"image", "device", "target", "image_digest"} <= set(done["details"])  # nbc's keys
    assert done["details"]["slot"] == "B" and done["details"]["image"] == versions["v2"]
    warnings = " ".join(e["message"] for e in r.events if e["type"] == "warning")
    assert "/etc/issue" in warnings and "this system's version is kept" in warnings  # a conflict, named
    assert loop_devices_of(disk) == [] and nbc_mounts() == []

    # The slot that boots, its kernel files and /var outside nbc's state: byte for byte the same.
    assert partition_digest(disk, 2) == slot_a
    assert {f: esp_read(disk, f) for f in esp_files(disk) if f.startswith("A/")} == esp_before
    assert var_tree(disk, tmp_path / "var") == var_before

    files = {f.casefold() for f in esp_files(disk)}
    assert {f"b/vmlinuz-{KVER}", f"b/initramfs-{KVER}.img"} <= files
    if bootloader == "systemd-boot":
        entries = sorted(f for f in esp_files(disk) if f.startswith("loader/entries/"))
        assert entries == ["loader/entries/bootc+3.conf", "loader/entries/bootc-previous.conf"]
        trial = esp_read(disk, "loader/entries/bootc+3.conf").decode()
        previous = esp_read(disk, "loader/entries/bootc-previous.conf").decode()
        assert "Synthetic Linux 2" in trial and f"/B/vmlinuz-{KVER}" in trial
        assert re.search(r"options .* console=ttyS0 quiet$", trial, re.M)
        assert "(Previous)" in previous and f"/A/vmlinuz-{KVER}" in previous and " quiet" not in previous
    else:
        cfg = esp_read(disk, "grub/grub.cfg").decode()
        assert cfg.index("/B/vmlinuz") < cfg.index("/A/vmlinuz") and "(Previous)" in cfg
        env = grubenv.decode(esp_read(disk, "grub/grubenv"))
        assert env == {grubenv.TRIAL_SLOT: "B", grubenv.TRIES: "3"}

    # Status: B on trial with 3 tries and next; A good; config.json still names v1 (B never booted).
    after = status(nbc, disk)
    assert after["image"] == before_status["image"] == versions["v1"]
    slots = {s["slot"]: s for s in after["slots"]}
    assert (slots["A"]["state"], slots["A"]["boots_next"]) == ("good", False)
    assert (slots["B"]["state"], slots["B"]["tries_left"], slots["B"]["boots_next"]) == ("trial", 3, True)
    assert slots["B"]["image"] == versions["v2"] and slots["B"]["operation"] == "update"

    # Slot B: v2, its /etc merged with the system's accounts (root's password, alice) and v2's new user.
    with mounted_partition(disk, 3, tmp_path / "b") as b:
        assert "VERSION_ID=2" in (b / "usr/lib/os-release").read_text()
        passwd = (b / ".etc.lower/passwd").read_text()
        assert V2_USER in passwd and "alice:x:1000" in passwd
        assert "daemon:" not in passwd  # removed on the system, in v1 and v2 alike: it stays removed
        assert (b / ".etc.lower/subuid").read_text() == "alice:100000:65536\n"  # rootless podman still works
        keys = b / "root/.ssh/authorized_keys"  # /root is the slot's: without them a key-only machine is locked out
        assert keys.read_text() == f"{ROOT_KEY}\n" and stat.S_IMODE(keys.stat().st_mode) == 0o600
        shadow = (b / ".etc.lower/shadow").read_text()
        assert re.search(r"^root:\$[^:*!]+:", shadow, re.M), shadow  # the password set at install
        assert "_v2svc:!:" in shadow
        assert (b / "usr/libexec/nbc-bless-boot").is_file()
        assert "/var" in (b / "etc/fstab").read_text()
    with mounted_partition(disk, 4, tmp_path / "var") as var:
        upper = var / UPPER
        upper_passwd = (upper / "passwd").read_text()
        assert V2_USER in upper_passwd and "alice" in upper_passwd and "daemon:" not in upper_passwd
        assert (upper / "issue").read_text() == "Welcome to the machine\n"  # the system's version wins
        assert (upper / "machine-id").read_text() == "0123456789abcdef0123456789abcdef\n"
        assert (upper / "nbc-tui-test.conf").read_text() == "kept\n"
        assert json.loads((var / "lib/nbc/state/slots/B.config.json").read_text())["image_ref"] == versions["v2"]
        assert (var / "log/nbc-tui/update.log").is_file()
    assert PASSWORD not in log_file.read_text() + r.stdout + r.stderr

    # Updating again to the same image: B already holds it on trial, nothing to do.
    again = nbc("update", "--device", str(disk), "--image", versions["v2"])
    assert again.returncode == 0 and "already holds" in again.stdout, again.stdout + again.stderr


def test_check_and_no_update_needed_change_nothing(nbc, versions: dict[str, str], tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    install(nbc, versions["v1"], disk, tmp_path)
    before = digest_of(disk)
    r = nbc("update", "--device", str(disk), "--check", "--json")
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert answer["update_needed"] is False and answer["image"] == versions["v1"]
    assert set(answer) <= {"update_needed", "image", "device", "current_digest", "new_digest", "message"}
    r = nbc("update", "--device", str(disk), "--check", "--image", versions["v2"])
    assert r.returncode == 0 and r.stdout.startswith("Update available: sha256:"), r.stdout
    r = nbc("update", "--device", str(disk))  # the installed image again: nbc's words, exit 0
    assert r.returncode == 0 and "No update needed" in r.stdout, r.stdout + r.stderr
    r = nbc("update", "--device", str(disk), "--image", versions["v2"], "--dry-run")
    assert r.returncode == 0 and "[DRY RUN] Would update to partition" in r.stdout
    assert digest_of(disk) == before
    assert loop_devices_of(disk) == [] and nbc_mounts() == []


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory: pytest.TempPathFactory, versions: dict[str, str]) -> Path:
    """One install with the smallest root slots (512 MiB), shared by the refusals: none of them changes it."""
    from tests.conftest import NBC_TUI, REPO

    d = tmp_path_factory.mktemp("small")
    disk = d / "disk.img"
    subprocess.run([*NBC_TUI, "install", "--image", versions["v1"], "--via-loopback", str(disk), "--image-size", "3",
                    "--esp-size", "100M", "--root-size", "512M", "--var-min-size", "256M"], check=True, cwd=REPO,
                   capture_output=True)
    return disk


@pytest.fixture(scope="module")
def too_big(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An image of about 480 MiB: with headroom it does not fit a 512 MiB slot (it compresses to little)."""
    return make_image(tmp_path_factory.mktemp("big") / "layout", padding=480 << 20, version=2)


@pytest.mark.parametrize(("case", "needle", "exit_code"), [
    ("no-kernel", "has no kernel", 2),
    ("corrupt-blob", "sha256:", 1),
    ("escaping-layer", "escape", 2),
    ("registry-ref", "debian", 1),
    ("too-big", "root slot is", 2),
])
def test_a_refused_update_changes_nothing(nbc, small_disk: Path, broken_images: dict[str, str], too_big: str,
                                          case: str, needle: str, exit_code: int) -> None:
    before = digest_of(small_disk)
    image = too_big if case == "too-big" else broken_images[case]
    r = nbc("update", "--device", str(small_disk), "--image", image, "--force")
    assert r.returncode == exit_code, r.stdout + r.stderr
    assert needle in r.stderr, r.stderr
    assert digest_of(small_disk) == before
    assert loop_devices_of(small_disk) == [] and nbc_mounts() == []


@pytest.mark.parametrize("holder", ["nbc-tui", "nbc"])
def test_an_update_while_another_holds_the_lock_changes_nothing(nbc, small_disk: Path, versions: dict[str, str],
                                                                holder: str) -> None:
    """Another nbc-tui holds its lock, or nbc holds its own (/var/run/nbc/system.lock, where nbc's code takes it)."""
    before = digest_of(small_disk)
    name, where = (SYSTEM_LOCK, LOCK_DIR) if holder == "nbc-tui" else ("system.lock", NBC_LOCK_DIR)
    with locked(name, what="a test", lock_dir=where):
        r = nbc("update", "--device", str(small_disk), "--image", versions["v2"], "--force")
    assert r.returncode == 1 and "another nbc process" in r.stderr, r.stdout + r.stderr
    assert digest_of(small_disk) == before
    assert loop_devices_of(small_disk) == [] and nbc_mounts() == []


def test_an_update_not_confirmed_changes_nothing(nbc, small_disk: Path, versions: dict[str, str]) -> None:
    """Without --force the update asks on the terminal: "no", or no answer at all, is bad input (exit 2, as the
    install's), not an interruption (130)."""
    before = digest_of(small_disk)
    for answer in ("no\n", ""):
        r = nbc("update", "--device", str(small_disk), "--image", versions["v2"], stdin=answer)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "Type 'yes' to continue" in r.stderr and "not confirmed: nothing was changed" in r.stderr
    assert digest_of(small_disk) == before
    assert loop_devices_of(small_disk) == [] and nbc_mounts() == []


def test_a_disk_image_in_use_is_refused(nbc, small_disk: Path, versions: dict[str, str]) -> None:
    """A running VM holds a lock on its disk image (QEMU's): the update refuses it and changes nothing."""
    import fcntl

    before = digest_of(small_disk)
    with small_disk.open("rb+") as held:
        fcntl.lockf(held, fcntl.LOCK_SH)
        r = nbc("update", "--device", str(small_disk), "--image", versions["v2"], "--force")
    assert r.returncode == 2 and "in use" in r.stderr, r.stdout + r.stderr
    assert digest_of(small_disk) == before


def test_an_update_stopped_while_it_extracts_leaves_the_kept_slot_booting(nbc, versions: dict[str, str],
                                                                        tmp_path: Path, log_file: Path) -> None:
    """Stopped in the middle of writing slot B: exit 130, nothing mounted or attached, slot A and its kernel
    files as they were and the only entry of the menu, B empty; the next update works."""
    big = make_image(tmp_path / "big", padding=400 << 20, compression="tar", version=2)
    disk = tmp_path / "disk.img"
    install(nbc, versions["v1"], disk, tmp_path)
    slot_a = partition_digest(disk, 2)
    returncode, events = stopped_while_extracting(["update", "--device", str(disk), "--image", big, "--force",
                                                   "--json"], log_file, signal.SIGTERM, delay=0.0)
    steps = [e["step_name"] for e in events if e["type"] == "step"]
    assert steps[-1] == "Extracting new container filesystem", steps  # stopped in the middle, as meant
    assert returncode == 130 and "Interrupted" in events[-1]["details"]["error"], events[-3:]
    assert loop_devices_of(disk) == [] and nbc_mounts() == []
    assert partition_digest(disk, 2) == slot_a
    assert [f for f in esp_files(disk) if f.startswith("loader/entries/")] == ["loader/entries/bootc.conf"]
    st = status(nbc, disk)
    assert st["default_slot"] == "A" and {s["slot"]: s["state"] for s in st["slots"]} == {"A": "good", "B": "empty"}
    r = nbc("update", "--device", str(disk), "--image", versions["v2"], "--force")
    assert r.returncode == 0, r.stdout + r.stderr


# -- other sources ----------------------------------------------------------------------------------------

def test_an_update_follows_a_moved_registry_tag_and_a_registry_down_changes_nothing(
        nbc, registry: RegistryServer, versions: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed from a registry tag; v2 is pushed under the same tag: the update, with no --image, takes the
    installed system's reference and finds v2. With the registry down, it fails and writes nothing."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    ref = registry.push(versions["v1"], "nbc/os:stable")
    disk = tmp_path / "disk.img"
    install(nbc, ref, disk, tmp_path)
    r = nbc("update", "--device", str(disk), "--check", "--json")
    assert json.loads(r.stdout)["update_needed"] is False, r.stdout + r.stderr
    registry.push(versions["v2"], "nbc/os:stable")
    r = nbc("update", "--device", str(disk), "--check", "--json")
    answer = json.loads(r.stdout)
    assert answer["update_needed"] is True and answer["image"] == ref, answer
    r = nbc("update", "--device", str(disk), "--force", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.events[-1]["details"]["image"] == ref
    assert slots_of(nbc, disk)["B"]["digest"] == answer["new_digest"]

    registry.stop()
    before = digest_of(disk)
    r = nbc("update", "--device", str(disk), "--force")
    assert r.returncode == 1 and ref.split("/")[0] in r.stderr, r.stdout + r.stderr
    r = nbc("update", "--device", str(disk), "--check", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["error"] is True, r.stdout
    assert digest_of(disk) == before
    assert loop_devices_of(disk) == [] and nbc_mounts() == []


def test_an_update_from_an_oci_archive(nbc, versions: dict[str, str], tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    install(nbc, versions["v1"], disk, tmp_path, "--filesystem", "ext4")
    layout = Path(versions["v2"].removeprefix("oci:").rsplit(":", 1)[0])
    archive = tmp_path / "images.tar"
    subprocess.run(["tar", "-C", str(layout), "-cf", str(archive), "."], check=True)
    r = nbc("update", "--device", str(disk), "--image", f"oci-archive:{archive}:v2", "--force", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert slots_of(nbc, disk)["B"]["image"] == f"oci-archive:{archive}:v2"


def slots_of(nbc, disk: Path) -> dict[str, dict]:
    return {s["slot"]: s for s in status(nbc, disk)["slots"]}


# -- staged updates ---------------------------------------------------------------------------------------

def test_a_staged_update_is_applied_offline_and_then_cleared(nbc, versions: dict[str, str], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_TUI_CACHE_ROOT", str(tmp_path / "cache"))
    disk = tmp_path / "disk.img"
    install(nbc, versions["v1"], disk, tmp_path)
    r = nbc("update", "--device", str(disk), "--local-image")
    assert r.returncode == 2 and "no staged update" in r.stderr, r.stderr
    r = nbc("download", "--for-update", "--image", versions["v2"], "--json")
    assert r.returncode == 0, r.stderr
    r = nbc("update", "--device", str(disk), "--auto", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.events[-1]["details"]["image"] == versions["v2"]
    assert not any((tmp_path / "cache/staged-update").glob("sha256-*"))  # applied, then cleared
    assert {s["slot"]: s["state"] for s in status(nbc, disk)["slots"]} == {"A": "good", "B": "trial"}


# -- status's update check --------------------------------------------------------------------------------

def _point(layout: Path, tag: str, to: str) -> None:
    """Make ``tag`` of the layout name the manifest that ``to`` names (as a registry's moved tag would)."""
    ref_name = "org.opencontainers.image.ref.name"
    index = json.loads((layout / "index.json").read_text())
    kept = [m for m in index["manifests"] if m.get("annotations", {}).get(ref_name) != tag]
    target = next(m for m in kept if m.get("annotations", {}).get(ref_name) == to)
    index["manifests"] = [*kept, {**target, "annotations": {ref_name: tag}}]
    (layout / "index.json").write_text(json.dumps(index))


def test_status_announces_only_an_update_the_update_would_take(nbc, versions: dict[str, str], tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The update check (``update_check.available``) and the staged update (``ready``) follow update's own
    verdict: nothing to take while the other slot holds the image on trial, nor once it failed to boot."""
    monkeypatch.setenv("NBC_TUI_CACHE_ROOT", str(tmp_path / "cache"))
    layout = tmp_path / "layout"
    shutil.copytree(versions["v1"].split(":")[1], layout)
    _point(layout, "stable", "v1")
    disk = tmp_path / "disk.img"
    install(nbc, f"oci:{layout}:stable", disk, tmp_path, "--bootloader", "systemd-boot")

    def check() -> dict:
        r = nbc("status", "--device", str(disk), "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        return json.loads(r.stdout)

    def words() -> str:
        r = nbc("status", "--device", str(disk), "-v")
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    assert (check()["update_check"]["available"], check()["update_check"]["error"]) == (False, None)  # it runs
    _point(layout, "stable", "v2")
    assert check()["update_check"]["available"] is True
    r = nbc("update", "--device", str(disk), "--yes")  # the installed reference: v2 now
    assert r.returncode == 0, r.stdout + r.stderr
    # Staged too: download compares with config.json, which names v1 until slot B's first good boot.
    assert nbc("download", "--for-update", "--image", f"oci:{layout}:stable").returncode == 0

    # Slot B holds it, on trial: no update to announce, none ready, and the words say why.
    on_trial = check()
    assert (on_trial["update_check"]["available"], on_trial["update_check"]["error"]) == (False, None), on_trial
    assert on_trial["staged_update"]["ready"] is False
    text = words()
    assert "Update check: Slot B already holds" in text and "reboot to start it" in text
    assert "Update staged (not ready)" in text

    # The loader gave up on it: still none, with the reason the update refuses it for.
    _mtools("mren", disk, "::/loader/entries/bootc+3.conf", "::/loader/entries/bootc+0-3.conf")
    gave_up = check()
    assert gave_up["update_check"]["available"] is False, gave_up
    assert "failed to boot from slot B" in gave_up["update_check"]["error"]
    assert gave_up["staged_update"]["ready"] is False
    text = words()
    assert "Update check: refused (" in text and text.count("failed to boot from slot B") == 2, text
    for how in ([], ["--auto"]):
        r = nbc("update", "--device", str(disk), *how)
        assert r.returncode == 2 and "failed to boot from slot B" in r.stderr, r.stdout + r.stderr

    # Where the image lives is gone: the check failed, which is not a refusal.
    layout.rename(tmp_path / "gone")
    lost = check()["update_check"]
    assert lost["available"] is False and lost["error"], lost
    assert "Update check: failed (" in words()


# -- rollback ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bootloader", ["systemd-boot", "grub"])
def test_rollback_swaps_the_default_and_refuses_an_empty_or_bad_slot(nbc, versions: dict[str, str], tmp_path: Path,
                                                                     bootloader: str) -> None:
    disk = tmp_path / "disk.img"
    install(nbc, versions["v1"], disk, tmp_path, "--bootloader", bootloader)
    before = digest_of(disk)
    r = nbc("rollback", "--device", str(disk))
    assert r.returncode == 2 and "slot B (root2) is empty" in r.stderr, r.stdout + r.stderr
    assert digest_of(disk) == before

    assert nbc("update", "--device", str(disk), "--image", versions["v2"], "--force").returncode == 0
    # The update waits for its first boot: a rollback cancels it, A stays the default.
    r = nbc("rollback", "--device", str(disk), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.events[-1]["details"]["slot"] == "A"
    st = status(nbc, disk)
    assert st["default_slot"] == "A" and {s["state"] for s in st["slots"]} == {"good"}
    assert st["image"] == versions["v1"]
    # Run again: B boots by default, and config.json names v2 (nbc's meaning: the default slot's image).
    r = nbc("rollback", "--device", str(disk))
    assert r.returncode == 0, r.stdout + r.stderr
    st = status(nbc, disk)
    assert st["default_slot"] == "B" and st["image"] == versions["v2"]
    if bootloader == "systemd-boot":
        names = sorted(f for f in esp_files(disk) if f.startswith("loader/entries/"))
        assert names == ["loader/entries/bootc-previous.conf", "loader/entries/bootc.conf"]
        assert f"/B/vmlinuz-{KVER}" in esp_read(disk, "loader/entries/bootc.conf").decode()
    else:
        assert grubenv.decode(esp_read(disk, "grub/grubenv")) == {}

    # A slot the loader gave up on is not rolled back to (here: A's entry out of tries).
    if bootloader == "systemd-boot":
        _mtools("mren", disk, "::/loader/entries/bootc-previous.conf", "::/loader/entries/bootc-previous+0-3.conf")
        before = digest_of(disk)
        r = nbc("rollback", "--device", str(disk))
        assert r.returncode == 2 and "failed to boot" in r.stderr, r.stdout + r.stderr
        assert digest_of(disk) == before


def _mtools(tool: str, disk: Path, *args: str) -> None:
    from tests.integration.disk_image import esp_offset

    subprocess.run([tool, "-i", f"{disk}@@{esp_offset(disk)}", *args], check=True,
                   env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"})


# -- a disk nbc wrote ----------------------------------------------------------------------------------

@pytest.fixture(params=["config.json", "legacy /etc/nbc/config.json"])
def nbc_layout_disk(request: pytest.FixtureRequest, nbc, versions: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    """A disk as nbc leaves it: kernels at the ESP root, bootc.conf naming them, loader.conf's ``default
    bootc``, config.json with nbc's keys only and no per-slot records (made from an nbc-tui install); or with
    only nbc's legacy config, /etc/nbc/config.json in slot A's image /etc."""
    disk = tmp_path / "nbc.img"
    install(nbc, versions["v1"], disk, tmp_path, "--bootloader", "systemd-boot")
    entry = esp_read(disk, "loader/entries/bootc.conf").decode()
    for name in (f"vmlinuz-{KVER}", f"initramfs-{KVER}.img"):
        _mtools("mren", disk, f"::/A/{name}", f"::/{name}")
    entry = entry.replace(f"/A/vmlinuz-{KVER}", f"/vmlinuz-{KVER}").replace(f"/A/initramfs-{KVER}",
                                                                              f"/initramfs-{KVER}")
    staged = tmp_path / "bootc.conf"
    staged.write_text(entry)
    _mtools("mcopy", disk, "-o", str(staged), "::/loader/entries/bootc.conf")
    (tmp_path / "loader.conf").write_text("default bootc\ntimeout 5\nconsole-mode max\neditor yes\n")
    _mtools("mcopy", disk, "-o", str(tmp_path / "loader.conf"), "::/loader/loader.conf")
    legacy = request.param.startswith("legacy")
    with mounted_partition(disk, 4, tmp_path / "var", writable=True) as var:
        state = var / "lib/nbc/state"
        config = json.loads((state / "config.json").read_text())
        nbc_keys = ["image_ref", "image_digest", "device", "install_date", "kernel_args", "bootloader_type",
                    "filesystem_type"]
        nbc_config = json.dumps({k: config[k] for k in nbc_keys}, indent=2)
        (state / "config.json").write_text(nbc_config)
        subprocess.run(["rm", "-rf", str(state / "slots")], check=True)
        if legacy:
            (state / "config.json").unlink()
    if legacy:
        with mounted_partition(disk, 2, tmp_path / "a", writable=True) as a:
            for etc in (a / "etc", a / ".etc.lower"):
                (etc / "nbc").mkdir(exist_ok=True)
                (etc / "nbc/config.json").write_text(nbc_config)
    yield disk


def test_a_disk_in_nbcs_layout_is_updated_and_rolled_back(nbc, nbc_layout_disk: Path, versions: dict[str, str],
                                                          tmp_path: Path) -> None:
    disk = nbc_layout_disk
    st = status(nbc, disk)
    slots = {s["slot"]: s for s in st["slots"]}
    assert slots["A"]["state"] == "good" and slots["A"]["image"] == versions["v1"]  # from config.json
    assert slots["B"]["state"] == "empty"
    slot_a = partition_digest(disk, 2)
    kernel = esp_read(disk, f"vmlinuz-{KVER}")

    r = nbc("update", "--device", str(disk), "--image", versions["v2"], "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert partition_digest(disk, 2) == slot_a and esp_read(disk, f"vmlinuz-{KVER}") == kernel
    previous = esp_read(disk, "loader/entries/bootc-previous.conf").decode()
    assert f"linux   /vmlinuz-{KVER}" in previous  # nbc's entry, kept as it was (its kernel at the ESP root)
    st = status(nbc, disk)
    assert {s["slot"]: s["state"] for s in st["slots"]} == {"A": "good", "B": "trial"}

    # B's good boot, as the bless script makes it: its entry loses the counter, config.json becomes B's. What
    # slot A holds is known only because the update recorded it from config.json before that.
    _mtools("mren", disk, "::/loader/entries/bootc+3.conf", "::/loader/entries/bootc.conf")
    with mounted_partition(disk, 4, tmp_path / "var", writable=True) as var:
        state = var / "lib/nbc/state"
        assert json.loads((state / "slots/A.json").read_text())["image_digest"] == slots["A"]["digest"]
        shutil.copy(state / "slots/B.config.json", state / "config.json")
    st = status(nbc, disk)
    assert (st["default_slot"], st["image"]) == ("B", versions["v2"])

    r = nbc("rollback", "--device", str(disk))
    assert r.returncode == 0 and "not recorded" not in r.stdout + r.stderr, r.stdout + r.stderr
    st = status(nbc, disk)
    slots = {s["slot"]: s for s in st["slots"]}
    assert (st["default_slot"], st["image"], slots["A"]["image"]) == ("A", versions["v1"], versions["v1"])
    assert slots["A"]["digest"] != slots["B"]["digest"]
    assert nbc("rollback", "--device", str(disk)).returncode == 0  # B by default again: config.json names v2
    assert status(nbc, disk)["image"] == versions["v2"]

"""Bad answer files through the real CLI (`answers validate` and `--headless`), against real loop devices as
disks: each exits 2, names the key and its line, and every disk is byte for byte unchanged."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nbc_tui.backend.answers import load_answers
from nbc_tui.backend.disks.rules import SHOW_LOOP_ENV
from tests.conftest import REPO, CliResult, loop_devices_of, mounted_tmpfs
from tests.integration.test_install_refusals import digest_of
from tests.support.loopdev import attached_loop
from tests.support.synthetic import make_image

pytestmark = pytest.mark.root

MiB, GiB = 1 << 20, 1 << 30
# An odd size no other loop device on this machine has: rules select the test's disks by it.
DISK_SIZE = 3 * GiB + 7 * MiB
LAYOUT = '[layout]\nfilesystem = "ext4"\nesp_size = "100M"\nroot_size = "1G"\nvar_min_size = "256M"\n'


@dataclass
class Disks:
    devices: list[str]
    files: list[Path]

    def digests(self) -> list[str]:
        return [digest_of(f) for f in self.files]


@pytest.fixture
def disks(tmp_path: Path) -> Iterator[Disks]:
    """Two identical 3 GiB "disks" with old content: sparse files attached as loop devices."""
    files = [tmp_path / "disk0.raw", tmp_path / "disk1.raw"]
    for f in files:
        with f.open("wb") as out:
            out.truncate(DISK_SIZE)
        subprocess.run(["mkfs.ext4", "-q", "-L", "olddata", str(f)], check=True)
    with attached_loop(files[0]) as d0, attached_loop(files[1]) as d1:
        yield Disks([str(d0), str(d1)], files)


@pytest.fixture(scope="module")
def no_kernel_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_image(tmp_path_factory.mktemp("nokernel") / "layout", kernel=False)


def run_cli(*args: str, env: dict[str, str] | None = None, log_file: Path | None = None,
            stdin: str | None = None) -> CliResult:
    full_env = {**os.environ, SHOW_LOOP_ENV: "1", **(env or {})}
    if log_file is not None:
        full_env["NBC_TUI_LOG_FILE"] = str(log_file)
    proc = subprocess.run([sys.executable, "-m", "nbc_tui.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=600, cwd=REPO, input=stdin)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def left_behind(files: list[Path], keep: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Loop devices on the test's files other than its own, and mounts of any of them. (Only the test's own
    files: other engineers' runs may mount under /run/nbc-tui at the same time.)"""
    loops = [dev for f in files for dev in loop_devices_of(f)]
    mounts = [line for line in Path("/proc/mounts").read_text().splitlines() if line.split()[0] in loops]
    return [dev for dev in loops if dev not in keep] + mounts


@dataclass
class Case:
    body: Callable[[Disks, str, str, Path], str]
    """(disks, good image, image without kernel, tmp dir) -> the answer file after its version line."""
    key: str
    line: int
    words: str


TWO_LINES = b"Pw-One-1\nPw-Two-2\n"
NOT_UTF8_SECRET = b"caf\xe9-Latin1-Secret\n"
"""A password file in Latin-1: refused as not UTF-8, its bytes quoted nowhere."""


def secret_file(folder: Path, content: bytes) -> Path:
    path = folder / f"secret-{len(list(folder.glob('secret-*')))}"
    path.write_bytes(content)
    path.chmod(0o600)
    return path


def disk_target(d: Disks, extra: str = "wipe = true\n") -> str:
    return f'[target]\ndevice = "{d.devices[0]}"\n{extra}'


def same_size_rule() -> str:
    return f"[[target.match]]\nmin_size = {DISK_SIZE}\nmax_size = {DISK_SIZE}\n"


# Line numbers count from the file's first line, "version = 1"; [image] is lines 2-3.
CASES = {
    "misspelt key": Case(lambda d, img, _nk, _t: f'[image]\nref = "{img}"\n' + disk_target(d) + "devcie = 1\n"
                         + LAYOUT, "target.devcie", 7, "did you mean 'device'?"),
    "wrong type": Case(lambda d, img, _nk, _t: f'[image]\nref = "{img}"\n'
                       + disk_target(d, 'wipe = "yes"\n') + LAYOUT, "target.wipe", 6, "true or false"),
    "unknown section": Case(lambda d, img, _nk, _t: f'[image]\nref = "{img}"\n' + disk_target(d) + LAYOUT
                            + '[netwrok]\nhostname = "x"\n', "netwrok", 12, "unknown section"),
    "missing wipe": Case(lambda d, img, _nk, _t: f'[image]\nref = "{img}"\n' + disk_target(d, "") + LAYOUT,
                         "target.wipe", 4, "wipe = true"),
    "pinned serial mismatch": Case(lambda d, img, _nk, _t: f'[image]\nref = "{img}"\n'
                                   + disk_target(d, 'serial = "WDC-NOT-THIS-ONE"\nwipe = true\n') + LAYOUT,
                                   "target.serial", 6, "pinned to serial WDC-NOT-THIS-ONE"),
    "rule matching two disks": Case(lambda d, img, _nk, _t: f'[image]\nref = "{img}"\n[target]\nwipe = true\n'
                                    + same_size_rule() + LAYOUT, "target.match[0]", 6, "matches 2 disks"),
    "rule matching no disk": Case(lambda d, img, _nk, _t: f'[image]\nref = "{img}"\n[target]\nwipe = true\n'
                                  '[[target.match]]\nserial = "NO-SUCH-DISK"\n' + LAYOUT, "target.match", 6,
                                  "no disk rule matches"),
    "disk too small": Case(lambda d, img, _nk, _t: f'[image]\nref = "{img}"\n' + disk_target(d)
                           + '[layout]\nroot_size = "20G"\n', "target.device", 5, "too small"),
    "unreadable secret file": Case(lambda d, img, _nk, t: f'[image]\nref = "{img}"\n' + disk_target(d) + LAYOUT
                                   + f'[system]\nroot_password_file = "{t}/no-such-file"\n',
                                   "system.root_password_file", 13, "cannot read the root password file"),
    "two-line password file": Case(lambda d, img, _nk, t: f'[image]\nref = "{img}"\n' + disk_target(d) + LAYOUT
                                   + f'[system]\nroot_password_file = "{secret_file(t, TWO_LINES)}"\n',
                                   "system.root_password_file", 13, "holds more than one line"),
    "password file not UTF-8": Case(lambda d, img, _nk, t: f'[image]\nref = "{img}"\n' + disk_target(d) + LAYOUT
                                    + f'[system]\nroot_password_file = "{secret_file(t, NOT_UTF8_SECRET)}"\n',
                                    "system.root_password_file", 13, "is not UTF-8 text"),
    "a shadow line for a hash": Case(lambda d, img, _nk, _t: f'[image]\nref = "{img}"\n' + disk_target(d) + LAYOUT
                                     + '[system]\nroot_password_hash = "$6$s$h:19000:0:99999:7:::"\n',
                                     "system.root_password_hash", 13, "without ':'"),
    "an empty kernel argument": Case(lambda d, img, _nk, _t: f'[image]\nref = "{img}"\n' + disk_target(d) + LAYOUT
                                     + '[boot]\nkernel_args = ["quiet", ""]\n',
                                     "boot.kernel_args", 13, "an empty kernel argument"),
    "reboot after a disk-image file": Case(lambda _d, img, _nk, t: f'after = "reboot"\n[image]\nref = "{img}"\n'
                                           f'[target]\nimage_file = "{t}/os.img"\n' + LAYOUT,
                                           "after", 2, "use after = 'none' with a disk-image file"),
    "disk-image file too small": Case(lambda _d, img, _nk, t: f'[image]\nref = "{img}"\n[target]\n'
                                      f'image_file = "{t}/os.img"\nimage_size = "1G"\n' + LAYOUT,
                                      "target.image_size", 6, "smaller than the layout needs"),
    "image without a kernel": Case(lambda d, _img, nk, _t: f'[image]\nref = "{nk}"\n' + disk_target(d) + LAYOUT,
                                   "image.ref", 3, "has no kernel"),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_answer_file_exits_2_names_key_and_line_and_changes_nothing(
        name: str, disks: Disks, synthetic_image: str, no_kernel_image: str, tmp_path: Path) -> None:
    case = CASES[name]
    answers = tmp_path / "answers.toml"
    answers.write_text("version = 1\n" + case.body(disks, synthetic_image, no_kernel_image, tmp_path))
    where = f"{answers}:{case.line}: {case.key}: "
    before = disks.digests()

    r = run_cli("answers", "validate", str(answers))
    assert r.returncode == 2, r.stdout + r.stderr
    assert where in r.stderr and case.words in r.stderr, r.stderr

    r = run_cli("answers", "validate", "--json", str(answers))
    assert r.returncode == 2
    report = json.loads(r.stdout)
    assert report["valid"] is False
    assert {"key": case.key, "line": case.line} in [{"key": p["key"], "line": p["line"]} for p in report["problems"]]

    for mode in ([], ["--json"]):
        r = run_cli("--headless", "--answers", str(answers), *mode, log_file=tmp_path / "log")
        assert r.returncode == 2, r.stdout + r.stderr
        if mode:
            error = r.events[-1]
            assert error["type"] == "error"
            assert where in error["details"]["error"]
        else:
            assert where in r.stderr and case.words in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and "Latin1-Secret" not in r.stdout + r.stderr
    assert disks.digests() == before
    assert left_behind(disks.files, keep=disks.devices) == []
    assert not (tmp_path / "os.img").exists()


def test_valid_file_prints_the_resolved_plan(disks: Disks, synthetic_image: str, tmp_path: Path) -> None:
    """A rule picks the disk: validate says which, and prints the plan pinned to that device."""
    answers = tmp_path / "answers.toml"
    answers.write_text(f'version = 1\n[image]\nref = "{synthetic_image}"\n[target]\nwipe = true\n'
                       '[[target.match]]\nserial = "NO-SUCH-DISK"\n'
                       f'[[target.match]]\npath = "{disks.devices[1]}"\n' + LAYOUT)
    r = run_cli("answers", "validate", str(answers))
    assert r.returncode == 0, r.stderr
    assert "picked by target.match[1] (line 8)" in r.stdout
    printed = tmp_path / "printed.toml"
    printed.write_text(r.stdout.split("runs with it:\n", 1)[1])
    plan = load_answers(printed)
    assert plan.target.device == Path(disks.devices[1]) and plan.target.match == () and plan.target.wipe

    r = run_cli("answers", "validate", "--json", str(answers))
    report = json.loads(r.stdout)
    assert (report["valid"], report["rule"], report["disk"]["device"]) == (True, 1, disks.devices[1])
    assert report["plan"]["target"]["device"] == disks.devices[1]


def test_loop_devices_are_not_disks_unless_asked(disks: Disks, synthetic_image: str, tmp_path: Path) -> None:
    answers = tmp_path / "answers.toml"
    answers.write_text(f'version = 1\n[image]\nref = "{synthetic_image}"\n[target]\nwipe = true\n'
                       f'[[target.match]]\npath = "{disks.devices[0]}"\n' + LAYOUT)
    r = run_cli("answers", "validate", str(answers), env={SHOW_LOOP_ENV: "0"})
    assert r.returncode == 2 and "loop devices count only with NBC_TUI_SHOW_LOOP=1" in r.stderr


def test_install_dry_run_saves_answers_that_load_back(synthetic_image: str, tmp_path: Path) -> None:
    """The image named relative to where the command runs is saved absolute, as the other paths."""
    saved = tmp_path / "saved.toml"
    pw = tmp_path / "pw"
    pw.write_text("Saved-Root-Password\n")
    relative = "oci:" + os.path.relpath(synthetic_image.removeprefix("oci:"), REPO)  # run_cli runs in REPO
    r = run_cli("install", "--image", relative, "--via-loopback", str(tmp_path / "os.img"), "--image-size",
                "3", "--esp-size", "100M", "--root-size", "1G", "--var-min-size", "256M", "--filesystem", "ext4",
                "--karg", "console=ttyS0", "--root-password-file", str(pw), "--dry-run", "--save-answers",
                str(saved), log_file=tmp_path / "log")
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert not (tmp_path / "os.img").exists()
    plan = load_answers(saved)
    assert (plan.image.ref, plan.target.image_file, plan.layout.filesystem, plan.boot.kernel_args,
            plan.system.root_password_file) == (synthetic_image, tmp_path / "os.img", "ext4", ("console=ttyS0",), pw)
    assert "Saved-Root-Password" not in saved.read_text()
    r = run_cli("answers", "validate", str(saved))
    assert r.returncode == 0, r.stderr


def test_a_typed_passphrase_is_left_out_of_saved_answers(synthetic_image: str, tmp_path: Path) -> None:
    """install --encrypt reads the passphrase from stdin: the saved file says which key to add instead."""
    typed = "Typed-On-Stdin-Passphrase"
    saved = tmp_path / "saved.toml"
    r = run_cli("install", "--image", synthetic_image, "--via-loopback", str(tmp_path / "os.img"), "--image-size",
                "3", "--esp-size", "100M", "--root-size", "1G", "--var-min-size", "256M", "--encrypt", "--dry-run",
                "--save-answers", str(saved), log_file=tmp_path / "log", stdin=typed + "\n")
    assert r.returncode == 0, r.stderr
    text = saved.read_text()
    assert typed not in text + r.stdout + r.stderr + (tmp_path / "log").read_text()
    assert "[encryption]" in text and '# passphrase_file = "' in text
    r = run_cli("answers", "validate", str(saved))
    assert r.returncode == 2 and f"{saved}:" in r.stderr and "encryption: encryption needs a passphrase" in r.stderr


def test_saving_answers_where_they_cannot_go_is_bad_input_and_changes_nothing(synthetic_image: str,
                                                                             tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    base = ["install", "--image", synthetic_image, "--via-loopback", str(tmp_path / "os.img"), "--dry-run",
            "--json", "--save-answers"]
    for where, why in ((blocker / "x.toml", "a-file is not a folder"),
                       (blocker / "dir" / "x.toml", "a-file is not a folder"), (tmp_path, "it is a folder")):
        r = run_cli(*base, str(where), log_file=tmp_path / "log")
        assert r.returncode == 2 and why in r.stderr and "internal error" not in r.stderr, r.stderr
        last = json.loads(r.stdout.splitlines()[-1])
        assert last["type"] == "error" and f"Cannot save the answers to {where}" in last["details"]["error"], r.stdout
    assert blocker.read_text() == "" and not (tmp_path / "os.img").exists()


def test_a_recovery_key_left_in_the_live_systems_memory_before_a_reboot_is_refused(
        synthetic_image: str, disks: Disks, tmp_path: Path) -> None:
    """On the live system, a key file in RAM with after = "reboot" would be gone when the key is first needed."""
    marker = tmp_path / "nbc-tui-live"
    marker.write_text("")
    (tmp_path / "pw").write_text("Live-Passphrase-1\n")
    env = {"NBC_TUI_LIVE_MARKER": str(marker), "NBC_TUI_TPM": "1"}
    with mounted_tmpfs(tmp_path / "ram", "size=1M") as ram:
        for after, refused in (("reboot", True), ("none", False)):
            answers = tmp_path / f"{after}.toml"
            answers.write_text(f'version = 1\nafter = "{after}"\n[image]\nref = "{synthetic_image}"\n'
                               + disk_target(disks) + LAYOUT + f'[encryption]\npassphrase_file = "{tmp_path}/pw"\n'
                               f'tpm2 = true\nrecovery_key_file = "{ram}/recovery.key"\n')
            before = disks.digests()
            r = run_cli("--headless", "--answers", str(answers), "--dry-run", env=env)  # this kernel cannot encrypt
            said = "in the live system's memory, and lost at the reboot"
            assert (said in r.stderr) is refused and r.returncode == (2 if refused else 0), r.stdout + r.stderr
            assert disks.digests() == before

"""`nbc-tui --headless` with good answer files: real installs into disk-image files and onto a loop "disk"
picked by a rule, the JSON Lines stream checked against the committed schema, answers from the kernel
command line on a labelled ext4 partition, and no secret in any output or log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jsonschema
import pytest

from nbc_tui.backend.answers.sources import ANSWERS_MOUNT_BASE, CMDLINE_ENV, LABEL_WAIT_ENV
from nbc_tui.backend.machine import POWER_DRY_RUN_ENV
from tests.conftest import sigint_not_ignored
from tests.integration.disk_image import gpt
from tests.integration.test_answers_cli import DISK_SIZE, LAYOUT, left_behind, run_cli
from tests.support.loopdev import attached_loop
from tests.support.oci import flip_byte
from tests.support.synthetic import make_image

pytestmark = pytest.mark.root

# Not the size of test_answers_cli's disks: the rule below must find exactly this test's one.
RULE_DISK_SIZE = DISK_SIZE + (1 << 20)

REPO = Path(__file__).resolve().parents[2]
EVENTS_SCHEMA = json.loads((REPO / "docs" / "events.schema.json").read_text())
ROOT_PASSWORD = "Headless-Root-pw-4711"
PASSPHRASE = "Headless-Luks-Passphrase-0815"
ROOT_HASH = "$6$nbctestsalt$" + "Zx8" * 28 + "q4"


def assert_valid_stream(stdout: str) -> list[dict]:
    """Every line is one JSON event valid against docs/events.schema.json, ending with complete."""
    validator = jsonschema.Draft202012Validator(EVENTS_SCHEMA)
    events = [json.loads(line) for line in stdout.splitlines()]
    for event in events:
        errors = list(validator.iter_errors(event))
        assert not errors, (event, [e.message for e in errors])
    assert events and events[-1]["type"] == "complete"
    return events


def write_secret(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("filesystem", ["ext4", "btrfs"])
def test_headless_installs_into_an_image_file(filesystem: str, synthetic_image: str, tmp_path: Path) -> None:
    write_secret(tmp_path / "root-password", ROOT_PASSWORD)
    answers = tmp_path / "answers.toml"
    answers.write_text(f'version = 1\n[image]\nref = "{synthetic_image}"\n'
                       '[target]\nimage_file = "os.img"\nimage_size = "3G"\n'  # relative to the answers
                       + LAYOUT.replace("ext4", filesystem)
                       + '[boot]\nkernel_args = ["console=ttyS0"]\n[system]\nroot_password_file = "root-password"\n')
    log = tmp_path / "log"
    r = run_cli("--headless", "--answers", str(answers), "--json", log_file=log)
    assert r.returncode == 0, r.stderr
    events = assert_valid_stream(r.stdout)
    assert events[0] == {**events[0], "type": "message", "message": f"Answers: {answers}"}
    assert events[-1]["details"]["filesystem"] == filesystem
    image = tmp_path / "os.img"
    assert [p["name"] for p in gpt(image)["partitions"]] == ["boot", "root1", "root2", "var"]
    assert left_behind([image]) == []
    for text in (r.stdout, r.stderr, log.read_text()):
        assert ROOT_PASSWORD not in text

    # The same file in text mode, as a dry run: nothing is written, the image stays as it is.
    before = image.stat().st_mtime_ns
    r = run_cli("--headless", "--answers", str(answers.with_name("answers.toml")), "--dry-run", log_file=log)
    assert r.returncode == 2 and "already exists" in r.stderr  # overwrite is not given
    assert image.stat().st_mtime_ns == before


def test_headless_onto_a_disk_picked_by_a_rule_then_the_after_action(
        synthetic_image: str, tmp_path: Path) -> None:
    """A loop device stands for a disk: the rule finds it by its unique size, wipe = true consents, and
    after = "reboot" is announced and logged as a dry run (the override keeps this machine running)."""
    backing = tmp_path / "disk.raw"
    with attached_loop(backing, size=RULE_DISK_SIZE) as dev:
        answers = tmp_path / "answers.toml"
        answers.write_text(f'version = 1\nafter = "reboot"\n[image]\nref = "{synthetic_image}"\n'
                           '[target]\nwipe = true\n'
                           f'[[target.match]]\nmin_size = {RULE_DISK_SIZE}\nmax_size = {RULE_DISK_SIZE}\n' + LAYOUT
                           + f'[system]\nroot_password_hash = "{ROOT_HASH}"\n')
        log = tmp_path / "log"
        r = run_cli("--headless", "--answers", str(answers), "--json", log_file=log,
                    env={POWER_DRY_RUN_ENV: "1"})
        assert r.returncode == 0, r.stderr
        events = assert_valid_stream(r.stdout)
        messages = [e.get("message", "") for e in events if e["type"] == "message"]
        assert any(m.startswith(f"Target: {dev} (") for m in messages)
        assert any("will be erased" in m and f"target.wipe = true in {answers} line 6" in m for m in messages)
        assert "After the install: reboot" in messages
        assert "Would run now: systemctl reboot (dry run)" in r.stderr
        assert "dry-run, not running: systemctl reboot" in log.read_text()
        assert ROOT_HASH not in r.stdout + r.stderr + log.read_text()  # a hash is attackable offline
        assert [p["name"] for p in gpt(Path(dev))["partitions"]] == ["boot", "root1", "root2", "var"]
        assert left_behind([backing], keep=[str(dev)]) == []


def test_encrypted_plan_never_shows_its_secrets(synthetic_image: str, tmp_path: Path) -> None:
    """validate, --headless --dry-run and --headless with a passphrase file and a root password file: the
    secrets appear in no output and no log. This machine cannot open LUKS (no device-mapper): validate says
    so (exit 2), a dry run warns, and the real run is refused before anything is written."""
    write_secret(tmp_path / "luks", PASSPHRASE)
    write_secret(tmp_path / "root", ROOT_PASSWORD)
    answers = tmp_path / "answers.toml"
    answers.write_text(f'version = 1\n[image]\nref = "{synthetic_image}"\n'
                       '[target]\nimage_file = "os.img"\nimage_size = "3G"\n' + LAYOUT
                       + '[encryption]\npassphrase_file = "luks"\n[system]\nroot_password_file = "root"\n')
    log = tmp_path / "log"
    outputs = []
    for args, expected in ((["answers", "validate", str(answers)], 2),
                           (["answers", "validate", "--json", str(answers)], 2),
                           (["--headless", "--answers", str(answers), "--dry-run"], 0),
                           (["--headless", "--answers", str(answers), "--dry-run", "--json", "-v"], 0),
                           (["--headless", "--answers", str(answers), "--json"], 2),
                           (["--headless", "--answers", str(answers)], 2)):
        r = run_cli(*args, log_file=log)
        assert r.returncode == expected, (args, r.stdout, r.stderr)
        outputs += [r.stdout, r.stderr]
    outputs.append(log.read_text())
    assert not (tmp_path / "os.img").exists()
    for text in outputs:
        assert PASSPHRASE not in text and ROOT_PASSWORD not in text
    where = f"{answers}:12: encryption: encryption needs device-mapper"
    assert where in outputs[1] and where in outputs[-2]  # validate, and the real run (stderr)
    assert "a real install would be refused on this machine" in outputs[4]  # the dry run's warning


def test_a_users_password_hash_stays_out_of_every_output_and_the_log(synthetic_image: str, tmp_path: Path) -> None:
    """The headless run logs the plan it runs: a user's password hash in it is redacted as root's is (a crypt
    hash can be attacked offline). The synthetic image has no useradd, so the run stops at its checks."""
    user_hash = "$6$usersalt$" + "Qw7" * 28 + "k2"
    answers = tmp_path / "answers.toml"
    answers.write_text(f'version = 1\n[image]\nref = "{synthetic_image}"\n'
                       '[target]\nimage_file = "os.img"\nimage_size = "3G"\n' + LAYOUT
                       + f'[system]\nroot_password_hash = "{ROOT_HASH}"\n'
                       f'[[system.users]]\nname = "alice"\npassword_hash = "{user_hash}"\n')
    log = tmp_path / "log"
    for mode in ([], ["--json"]):
        r = run_cli("--headless", "--answers", str(answers), "--dry-run", *mode, log_file=log)
        assert r.returncode == 2 and "has no useradd" in r.stdout + r.stderr, r.stdout + r.stderr
        assert user_hash not in r.stdout + r.stderr and ROOT_HASH not in r.stdout + r.stderr
    text = log.read_text()
    assert "running the plan" in text and '"name": "alice"' in text
    assert user_hash not in text and ROOT_HASH not in text


def test_answers_from_a_labelled_partition_on_the_kernel_command_line(
        synthetic_image: str, tmp_path: Path) -> None:
    """nbc.answers=LABEL=<label>:<path>: the ext4 partition is found by its label, even when it appears after
    the install started (a slow USB stick at boot), mounted read-only while the install runs (the secret file
    beside the answers is read from it), and unmounted afterwards."""
    label = "nbc" + uuid.uuid4().hex[:8]
    content = tmp_path / "content"
    (content / "nbc").mkdir(parents=True)
    target = tmp_path / "os.img"
    (content / "nbc" / "answers.toml").write_text(
        f'version = 1\n[image]\nref = "{synthetic_image}"\n[target]\nimage_file = "{target}"\nimage_size = "3G"\n'
        + LAYOUT + '[system]\nroot_password_file = "root-password"\n')
    write_secret(content / "nbc" / "root-password", ROOT_PASSWORD)
    fs = tmp_path / "answers.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-L", label, "-d", str(content), str(fs), "16M"], check=True)
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(f"BOOT_IMAGE=/vmlinuz root=live:CDLABEL=X quiet nbc.answers=LABEL={label}:/nbc/answers.toml\n")
    log = tmp_path / "log"
    mounts_before = sorted(ANSWERS_MOUNT_BASE.glob("answers-*")) if ANSWERS_MOUNT_BASE.exists() else []
    env = {**os.environ, CMDLINE_ENV: str(cmdline), "NBC_TUI_LOG_FILE": str(log), LABEL_WAIT_ENV: "120"}
    waiting = subprocess.Popen([sys.executable, "-m", "nbc_tui.cli", "--headless", "--answers-from-cmdline",
                                "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while "waiting for it" not in (log.read_text() if log.exists() else "") and waiting.poll() is None:
            assert time.monotonic() < deadline, "the install never waited for the label"
            time.sleep(0.2)
        with attached_loop(fs) as dev:  # the stick comes up only now
            stdout, stderr = waiting.communicate(timeout=900)
            assert waiting.returncode == 0, stderr
            events = assert_valid_stream(stdout)
            answers_at = Path(events[0]["message"].removeprefix("Answers: "))
            assert answers_at.parent.parent.parent == ANSWERS_MOUNT_BASE and answers_at.name == "answers.toml"
            assert f"{dev} (label {label}) mounted read-only" in log.read_text()
            assert left_behind([fs], keep=[str(dev)]) == []  # unmounted again
            assert not answers_at.parent.parent.exists()  # and its mount point removed
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert [p["name"] for p in gpt(target)["partitions"]] == ["boot", "root1", "root2", "var"]
    assert (sorted(ANSWERS_MOUNT_BASE.glob("answers-*")) if ANSWERS_MOUNT_BASE.exists() else []) == mounts_before
    assert ROOT_PASSWORD not in stdout + stderr + log.read_text()


@pytest.mark.parametrize(("cmdline", "words"), [
    ("quiet splash", "has no nbc.answers="),
    ("nbc.answers=LABEL=nbcnosuchlabel:/a.toml", "no filesystem labelled 'nbcnosuchlabel'"),
    ("nbc.answers=LABEL=onlylabel", "is not LABEL=<filesystem label>:<path>"),
    ("nbc.answers=/nonexistent/answers.toml", "cannot read the answer file"),
])
def test_cmdline_problems_exit_2(cmdline: str, words: str, tmp_path: Path) -> None:
    path = tmp_path / "cmdline"
    path.write_text(cmdline + "\n")
    r = run_cli("--headless", "--answers-from-cmdline", log_file=tmp_path / "log",
                env={CMDLINE_ENV: str(path), LABEL_WAIT_ENV: "0"})
    assert r.returncode == 2 and words in r.stderr, r.stderr


def test_flags_that_do_not_go_together(tmp_path: Path) -> None:
    answers = tmp_path / "a.toml"
    answers.write_text("version = 1\n")
    # --answers alone is the full-screen installer with the answers filled in: it needs a terminal.
    r = run_cli("--answers", str(answers), log_file=tmp_path / "log")
    assert r.returncode == 2 and "needs a terminal; run it with --headless" in r.stderr
    r = run_cli("--answers-from-cmdline", log_file=tmp_path / "log")
    assert r.returncode == 2 and "go with --headless" in r.stderr
    r = run_cli("--headless", log_file=tmp_path / "log")
    assert r.returncode == 2 and "needs an answer file" in r.stderr
    r = run_cli("--headless", "--answers", str(answers), "list", log_file=tmp_path / "log")
    assert r.returncode == 2 and "takes no command" in r.stderr


def image_answers(tmp_path: Path, ref: str) -> Path:
    answers = tmp_path / "answers.toml"
    answers.write_text(f'version = 1\n[image]\nref = "{ref}"\n'
                       '[target]\nimage_file = "os.img"\nimage_size = "3G"\n' + LAYOUT)
    return answers


def test_a_damaged_image_is_exit_1(tmp_path: Path) -> None:
    """The image is damaged, not the answers: "the operation failed" (1), as for install."""
    ref = make_image(tmp_path / "layout")
    index = json.loads((tmp_path / "layout" / "index.json").read_text())
    manifest = json.loads((tmp_path / "layout" / "blobs" / "sha256"
                           / index["manifests"][0]["digest"].split(":")[1]).read_text())
    flip_byte(tmp_path / "layout", manifest["layers"][0]["digest"], offset=100)
    r = run_cli("--headless", "--answers", str(image_answers(tmp_path, ref)), "--json", log_file=tmp_path / "log")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.events[-1]["type"] == "error"
    assert left_behind([tmp_path / "os.img"]) == []


def test_ctrl_c_is_exit_130_and_leaves_nothing_behind(synthetic_image: str, tmp_path: Path) -> None:
    answers = image_answers(tmp_path, synthetic_image)
    env = {**os.environ, "NBC_TUI_LOG_FILE": str(tmp_path / "log")}
    with sigint_not_ignored():
        proc = subprocess.Popen([sys.executable, "-m", "nbc_tui.cli", "--headless", "--answers", str(answers),
                                 "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                cwd=REPO)
    assert proc.stdout is not None
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1].get("step_name") == "Creating partitions":  # sgdisk takes a second here
            proc.send_signal(signal.SIGINT)
            break
    events += [json.loads(line) for line in proc.stdout]
    assert proc.wait(120) == 130, proc.stderr.read() if proc.stderr else ""
    assert events[-1]["type"] == "error" and "Interrupted" in events[-1]["details"]["error"]
    assert left_behind([tmp_path / "os.img"]) == []


def test_answers_by_path_on_the_kernel_command_line(synthetic_image: str, tmp_path: Path) -> None:
    answers = image_answers(tmp_path, synthetic_image)
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(f"quiet nbc.answers={answers} splash\n")
    r = run_cli("--headless", "--answers-from-cmdline", "--dry-run", "--json", log_file=tmp_path / "log",
                env={CMDLINE_ENV: str(cmdline)})
    assert r.returncode == 0, r.stderr
    events = assert_valid_stream(r.stdout)
    assert events[0]["message"] == f"Answers: {answers}"
    assert events[-1]["details"] == {"dry_run": True}
    assert not (tmp_path / "os.img").exists()

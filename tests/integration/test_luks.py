"""LUKS2 with the real cryptsetup on loop devices, and the refusal where the kernel has no device-mapper.

This machine's kernel has no device-mapper: an encrypted install must be refused before anything is
written (the disk byte for byte the same), saying why. ``luksFormat``, ``luksUUID``, ``luksDump``,
``open --test-passphrase`` and ``luksAddKey`` need no device-mapper, so the formatting, the passphrase
bytes (no trailing newline) and the recovery key are proven here for real; opening a mapper is proven in
the VM tier (tests/vm/test_luks.py). Every output and log is searched for the test secrets.

An image that cannot unlock LUKS (or reach the TPM2) is refused by the preflight's scan, before the wipe:
a dry run gets that far here (it only warns about device-mapper), and so does a real install once the
device-mapper refusal is taken out of the way in-process.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from pydantic import SecretStr

from nbc_tui.backend import secret_files
from nbc_tui.backend.answers import AnswerFileError, check_answers, read_answers
from nbc_tui.backend.errors import CommandFailed, InputError, NbcError
from nbc_tui.backend.events import Event, StepEvent
from nbc_tui.backend.operations.install import run_install
from nbc_tui.backend.plan import InstallPlan
from nbc_tui.backend.runner import RunContext
from nbc_tui.backend.storage import luks, tpm
from tests.conftest import loop_devices_of, nbc_mounts
from tests.integration.test_install_refusals import SMALL, digest_of, loop_disk  # noqa: F401
from tests.support.loopdev import attached_loop
from tests.support.oci import ImageSpec, Layer, TarBuilder, write_layout
from tests.support.synthetic import INITRAMFS_UNLOCKER, KVER, base_layer, cpio_gz, make_image

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(shutil.which("cryptsetup") is None or shutil.which("systemd-cryptenroll") is None,
                                 reason="needs cryptsetup and systemd-cryptenroll (tools/install-deps.sh)")]

PASSPHRASE = "Integration-LUKS-passphrase-0815"
MiB = 1 << 20


def no_device_mapper() -> bool:
    return luks.device_mapper_problem() is not None


@pytest.fixture
def fast_pbkdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(luks.FAST_PBKDF_ENV, "1")


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(PASSPHRASE + "\n")
    path.chmod(0o600)
    return path


@pytest.mark.skipif(not no_device_mapper(), reason="this kernel has device-mapper: the refusal cannot happen")
@pytest.mark.parametrize("json_mode", [False, True])
def test_no_device_mapper_refuses_before_writing(nbc, synthetic_image: str, loop_disk,  # noqa: F811
                                                 passphrase_file: Path, log_file: Path, json_mode: bool) -> None:
    dev, backing = loop_disk
    before = digest_of(backing)
    r = nbc("install", "--image", synthetic_image, "--device", dev, *SMALL, "--encrypt", "--passphrase-file",
            str(passphrase_file), "--yes", *(["--json"] if json_mode else []))
    assert r.returncode == 2, r.stdout + r.stderr
    said = r.stdout + r.stderr
    assert "encryption needs device-mapper" in said and "nothing was written" in said, said
    if json_mode:
        assert r.events[-1]["type"] == "error"
        assert "device-mapper" in r.events[-1]["details"]["error"]
    assert digest_of(backing) == before
    assert nbc_mounts() == []
    for text in (r.stdout, r.stderr, log_file.read_text()):
        assert PASSPHRASE not in text


def existing_image_file(tmp_path: Path) -> Path:
    """A 3 GiB disk-image file with data on it that a refused install must leave as it was."""
    image = tmp_path / "existing.img"
    with image.open("wb") as f:
        f.truncate(3 << 30)
        f.seek(1 << 20)
        f.write(b"old data that must survive" * 100)
    return image


@pytest.mark.skipif(not no_device_mapper(), reason="this kernel has device-mapper: the refusal cannot happen")
def test_no_device_mapper_leaves_an_image_file_as_it_was(nbc, synthetic_image: str, tmp_path: Path,
                                                         passphrase_file: Path) -> None:
    image = existing_image_file(tmp_path)
    before = digest_of(image)
    r = nbc("install", "--image", synthetic_image, "--via-loopback", str(image), "--image-size", "3", *SMALL,
            "--encrypt", "--passphrase-file", str(passphrase_file), "--yes")
    assert r.returncode == 2 and "device-mapper" in r.stderr, r.stdout + r.stderr
    assert digest_of(image) == before


def test_passphrase_on_argv_is_refused(nbc, synthetic_image: str, tmp_path: Path) -> None:
    r = nbc("install", "--image", synthetic_image, "--via-loopback", str(tmp_path / "d.img"), "--encrypt",
            "--passphrase", PASSPHRASE, "--yes")
    assert r.returncode == 2 and "process list" in r.stderr, r.stderr
    assert not (tmp_path / "d.img").exists()


def test_dry_run_shows_what_would_be_encrypted(nbc, synthetic_image: str, tmp_path: Path, log_file: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The passphrase comes on stdin here (not a terminal): one line, its newline dropped."""
    r = nbc("install", "--image", synthetic_image, "--via-loopback", str(tmp_path / "d.img"), "--image-size", "3",
            *SMALL, "--encrypt", "--dry-run", stdin=PASSPHRASE + "\n")
    assert r.returncode == 0, r.stdout + r.stderr
    # The dry run says it in the review screen's words (backend/describe.py).
    assert "[DRY RUN]   Encryption: LUKS2 on root1, root2 and var (not the ESP)" in r.stdout
    assert "[DRY RUN]   Unlocking: the passphrase, at every boot" in r.stdout
    assert not (tmp_path / "d.img").exists()
    for text in (r.stdout, r.stderr, log_file.read_text()):
        assert PASSPHRASE not in text
    assert "sealed to this machine's TPM" not in r.stdout + r.stderr
    # With TPM2, a disk-image file is told that the key works only on this machine.
    monkeypatch.setenv("NBC_TUI_TPM", "1")
    r = nbc("install", "--image", synthetic_image, "--via-loopback", str(tmp_path / "d.img"), "--image-size", "3",
            *SMALL, "--encrypt", "--tpm2", "--recovery-key-file", str(tmp_path / "key"), "--dry-run",
            stdin=PASSPHRASE + "\n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "sealed to this machine's TPM: the file unlocks by itself only when it boots on this machine" in r.stdout


def test_luks_format_reads_the_passphrase_from_stdin(tmp_path: Path, fast_pbkdf: None,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    ctx = RunContext()
    secret = SecretStr(PASSPHRASE)
    ctx.redactor.add(secret)
    caplog.set_level(logging.DEBUG, logger="nbc_tui")
    with attached_loop(tmp_path / "part.img", size=64 * MiB) as dev:
        luks.luks_format(dev, secret, ctx=ctx)
        uuid = luks.luks_uuid(dev, ctx=ctx)
        dump = subprocess.run(["cryptsetup", "luksDump", str(dev)], capture_output=True, text=True,
                              check=True).stdout
        assert "Version:       \t2" in dump and f"UUID:          \t{uuid}" in dump
        assert "PBKDF:      pbkdf2" in dump  # the test-only override, asked for by this test
        luks.check_passphrase(dev, secret, ctx=ctx)
        # Every byte on stdin is key material: the same passphrase with a newline is another key.
        with pytest.raises(CommandFailed):
            luks.check_passphrase(dev, SecretStr(PASSPHRASE + "\n"), ctx=ctx)
        blkid = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", str(dev)], capture_output=True,
                               text=True).stdout.strip()
        assert blkid == "crypto_LUKS"
    assert PASSPHRASE not in caplog.text
    assert "luksFormat --type luks2 --batch-mode" in caplog.text


def test_default_pbkdf_is_argon2id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(luks.FAST_PBKDF_ENV, raising=False)
    with attached_loop(tmp_path / "part.img", size=32 * MiB) as dev:
        luks.luks_format(dev, SecretStr(PASSPHRASE), ctx=RunContext())
        dump = subprocess.run(["cryptsetup", "luksDump", str(dev)], capture_output=True, text=True,
                              check=True).stdout
    assert "PBKDF:      argon2id" in dump


def test_one_recovery_key_opens_every_volume(tmp_path: Path, fast_pbkdf: None,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """systemd-cryptenroll makes the key on the first volume (read from its stdout, masked in the log);
    cryptsetup luksAddKey adds the same key to the others, both secrets in 0600 files under /run."""
    ctx = RunContext()
    secret = SecretStr(PASSPHRASE)
    ctx.redactor.add(secret)
    caplog.set_level(logging.DEBUG, logger="nbc_tui")
    lines: list[str] = []
    ctx.on_output = lines.append
    with attached_loop(tmp_path / "a.img", size=32 * MiB) as a, attached_loop(tmp_path / "b.img", size=32 * MiB) as b:
        for dev in (a, b):
            luks.luks_format(dev, secret, ctx=ctx)
        with secret_files.key_file(secret, name="luks") as unlock:
            assert unlock.parent == Path("/run/nbc-tui") and unlock.stat().st_mode & 0o777 == 0o600
            key = tpm.enroll_recovery_key([a, b], unlock_key_file=unlock, ctx=ctx)
        assert not unlock.exists()
        for dev in (a, b):
            luks.check_passphrase(dev, key, ctx=ctx)
            luks.check_passphrase(dev, secret, ctx=ctx)
    value = key.get_secret_value()
    assert len(value) == 71 and value.count("-") == 7
    for text in (caplog.text, "\n".join(lines)):
        assert value not in text and PASSPHRASE not in text
    out = tmp_path / "recovery.key"
    tpm.write_recovery_key(out, key)
    assert out.read_text() == value + "\n" and out.stat().st_mode & 0o777 == 0o600


def test_a_mapper_name_in_use_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Someone else's /dev/mapper/root1 (an nbc system installing a second disk) is never closed."""
    fake = tmp_path / "mapper"
    fake.mkdir()
    (fake / "root1").touch()
    monkeypatch.setattr(luks, "MAPPER_DIR", fake)
    assert luks.existing_mappers() == ["root1"]
    with pytest.raises(NbcError, match="already exists") as info, luks.opened(Path("/dev/null"), "root1",
                                                                               SecretStr(PASSPHRASE), ctx=RunContext()):
        pass
    assert info.value.hint == "close it (cryptsetup close root1) if it is left over, then run again"


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[str]:
    """A software TPM2 on a unix socket; yields systemd's device string for it (the swtpm TCTI)."""
    if shutil.which("swtpm") is None or not list(Path("/usr/lib").glob("*/libtss2-tcti-swtpm.so*")):
        pytest.skip("needs swtpm and libtss2-tcti-swtpm0 (tools/install-deps.sh)")
    state = tmp_path / "tpm"
    state.mkdir()
    sock = state / "tpm.sock"
    # The swtpm TCTI finds the control channel at <socket>.ctrl.
    proc = subprocess.Popen(["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}", "--server",
                             f"type=unixio,path={sock}", "--ctrl", f"type=unixio,path={sock}.ctrl",
                             "--flags", "startup-clear"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        yield f"swtpm:path={sock}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("pcrs", [(), (7,)])
def test_tpm2_enrolment_with_a_software_tpm(tmp_path: Path, fast_pbkdf: None, swtpm: str,
                                            caplog: pytest.LogCaptureFixture, pcrs: tuple[int, ...]) -> None:
    """The enrolment argv systemd 252 accepts, with the passphrase in a 0600 key file under /run."""
    ctx = RunContext()
    secret = SecretStr(PASSPHRASE)
    ctx.redactor.add(secret)
    caplog.set_level(logging.DEBUG, logger="nbc_tui")
    with attached_loop(tmp_path / "a.img", size=32 * MiB) as dev:
        luks.luks_format(dev, secret, ctx=ctx)
        assert not tpm.has_tpm2_token(dev, ctx=ctx)
        with secret_files.key_file(secret, name="luks") as unlock:
            tpm.enroll_tpm2(dev, unlock_key_file=unlock, pcrs=pcrs, ctx=ctx, tpm2_device=swtpm)
        assert tpm.has_tpm2_token(dev, ctx=ctx)
        dump = subprocess.run(["cryptsetup", "luksDump", str(dev)], capture_output=True, text=True,
                              check=True).stdout
        luks.check_passphrase(dev, secret, ctx=ctx)  # the passphrase stays as a fallback
    assert "systemd-tpm2" in dump
    bound = re.search(r"tpm2-hash-pcrs:\s*(\S+)", dump)
    assert bound and bound.group(1) == ("7" if pcrs else "n/a"), dump
    assert PASSPHRASE not in caplog.text
    assert "--unlock-key-file=/run/nbc-tui/luks-" in caplog.text


def test_passphrase_is_asked_twice_on_a_terminal(synthetic_image: str, tmp_path: Path, log_file: Path) -> None:
    """On a tty the passphrase is typed twice without echo; two different ones are refused."""
    env = {**os.environ, "NBC_TUI_LOG_FILE": str(log_file)}
    argv = ["-m", "nbc_tui.cli", "install", "--image", synthetic_image, "--via-loopback", str(tmp_path / "d.img"),
            "--image-size", "3", *SMALL, "--encrypt", "--dry-run"]
    child = pexpect.spawn(sys.executable, argv, env=env, encoding="utf-8", timeout=120)
    child.expect("LUKS passphrase: ")
    child.sendline(PASSPHRASE)
    child.expect(r"LUKS passphrase \(again\): ")
    child.sendline(PASSPHRASE)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert "Encryption: LUKS2 on root1" in child.before
    assert PASSPHRASE not in child.before and PASSPHRASE not in log_file.read_text()

    child = pexpect.spawn(sys.executable, argv, env=env, encoding="utf-8", timeout=120)
    child.expect("LUKS passphrase: ")
    child.sendline(PASSPHRASE)
    child.expect(r"\(again\): ")
    child.sendline(PASSPHRASE + "x")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2 and "the two passphrases differ" in child.before


# -- an image that cannot boot an encrypted disk: refused in preflight, before the wipe ---------------------

CANNOT_BOOT = "the image cannot boot an encrypted disk"


@pytest.fixture(scope="module")
def cannot_unlock(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """"luks": an initramfs with the etc-overlay hook but no unlocker, and no cryptsetup, dracut or crypt
    module in the image. "tpm2": an upper layer swaps in an initramfs that unlocks LUKS but has no TPM2
    TCTI, and the image has no tpm2-tss to rebuild it with."""
    d = tmp_path_factory.mktemp("cannot-unlock")
    no_tcti = cpio_gz({"init": b"#!/bin/sh\n", "usr/lib/dracut/hooks/pre-pivot/50-etc-overlay-mount.sh": b"#\n",
                       INITRAMFS_UNLOCKER: b"\x7fELF stand-in\n"})
    upper = TarBuilder().file(f"usr/lib/modules/{KVER}/initramfs.img", no_tcti).bytes()
    write_layout(d / "tpm2", [ImageSpec([Layer(base_layer(initramfs_unlocks=False), "gzip"), Layer(upper, "zstd")])])
    return {"luks": make_image(d / "luks", initramfs_unlocks=False), "tpm2": f"oci:{d / 'tpm2'}:latest"}


@pytest.mark.parametrize(("kind", "why"), [("luks", "neither systemd-cryptsetup nor cryptsetup"),
                                           ("tpm2", "lacks libtss2-tcti-device")])
def test_an_image_that_cannot_unlock_is_refused_before_the_wipe(
        nbc, cannot_unlock: dict[str, str], loop_disk, tmp_path: Path,  # noqa: F811
        passphrase_file: Path, log_file: Path, kind: str, why: str) -> None:
    """The real CLI on a loop disk: exit 2 from the preflight step (the image scan), the disk unchanged. A
    dry run stops after preflight, so a check made after extraction would let this run succeed."""
    dev, backing = loop_disk
    before = digest_of(backing)
    tpm2 = ["--tpm2", "--recovery-key-file", str(tmp_path / "recovery.key")] if kind == "tpm2" else []
    r = nbc("install", "--image", cannot_unlock[kind], "--device", dev, *SMALL, "--encrypt", "--passphrase-file",
            str(passphrase_file), *tpm2, "--yes", "--dry-run", "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    error = r.events[-1]
    assert error["type"] == "error", r.events
    assert error["details"]["error"].startswith(f"{CANNOT_BOOT}: ") and why in error["details"]["error"]
    assert "add cryptsetup" in error["details"]["hint"]
    steps = [e["step"] for e in r.events if e["type"] == "step"]
    assert steps == [1]  # preflight
    assert any(e["type"] == "progress" for e in r.events)  # the image was scanned
    assert digest_of(backing) == before
    assert nbc_mounts() == [] and not (tmp_path / "recovery.key").exists()
    for text in (r.stdout, r.stderr, log_file.read_text()):
        assert PASSPHRASE not in text


def test_an_image_file_is_left_as_it_was_when_the_image_cannot_unlock(
        nbc, cannot_unlock: dict[str, str], tmp_path: Path, passphrase_file: Path) -> None:
    image = existing_image_file(tmp_path)
    before = digest_of(image)
    r = nbc("install", "--image", cannot_unlock["luks"], "--via-loopback", str(image), "--image-size", "3", *SMALL,
            "--encrypt", "--passphrase-file", str(passphrase_file), "--yes", "--dry-run")
    assert r.returncode == 2 and CANNOT_BOOT in r.stderr, r.stdout + r.stderr
    assert digest_of(image) == before


def _encrypted_plan(ref: str, image_file: Path, passphrase_file: Path) -> InstallPlan:
    return InstallPlan.model_validate({
        "image": {"ref": ref},
        "target": {"image_file": image_file, "image_size": 3 << 30},
        "layout": {"filesystem": "ext4", "esp_size": "100M", "root_size": "1G", "var_min_size": "256M"},
        "encryption": {"passphrase_file": passphrase_file},
    })


def test_a_real_install_is_refused_before_the_image_file_is_made(
        cannot_unlock: dict[str, str], tmp_path: Path, passphrase_file: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a dry run: with this kernel's device-mapper refusal taken out of the way, the engine would go on to
    wipe (create the image file), partition and luksFormat. The unlock check must stop it first."""
    monkeypatch.setattr(luks, "check_can_encrypt", lambda **_kw: None)
    target = tmp_path / "disk.img"
    events: list[Event] = []
    with pytest.raises(InputError, match=CANNOT_BOOT) as info:
        run_install(_encrypted_plan(cannot_unlock["luks"], target, passphrase_file), emit=events.append,
                    ctx=RunContext())
    assert info.value.exit_code == 2
    assert [e.step for e in events if isinstance(e, StepEvent)] == [1]
    assert not target.exists() and loop_devices_of(target) == []
    assert nbc_mounts() == []


def test_answer_files_get_the_refusal_keyed_to_the_image(nbc, cannot_unlock: dict[str, str], tmp_path: Path,
                                                        passphrase_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--headless --dry-run runs the engine's preflight (device-mapper only warns there): the refusal is keyed
    to the answer file's image line. `answers validate` runs the same preflight once the machine can encrypt."""
    answers = tmp_path / "answers.toml"
    answers.write_text(f'version = 1\n[image]\nref = "{cannot_unlock["luks"]}"\n'
                       '[target]\nimage_file = "os.img"\nimage_size = "3G"\n'
                       '[layout]\nfilesystem = "ext4"\nesp_size = "100M"\nroot_size = "1G"\nvar_min_size = "256M"\n'
                       f'[encryption]\npassphrase_file = "{passphrase_file}"\n')
    r = nbc("--headless", "--answers", str(answers), "--dry-run")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{answers}:3: image.ref: {CANNOT_BOOT}" in r.stderr, r.stderr
    assert not (tmp_path / "os.img").exists()
    # validate reports a machine that cannot encrypt on its own, without running the engine's preflight:
    r = nbc("answers", "validate", str(answers))
    assert r.returncode == 2, r.stdout + r.stderr
    assert ("encryption needs device-mapper" if no_device_mapper() else CANNOT_BOOT) in r.stderr, r.stderr
    # ... and on a machine that can encrypt (faked in-process), the image's problem:
    monkeypatch.setattr(luks, "check_can_encrypt", lambda **_kw: None)
    with pytest.raises(AnswerFileError) as info:
        check_answers(read_answers(answers), ctx=RunContext(dry_run=True))
    assert [(p.key, p.line) for p in info.value.problems] == [("image.ref", 3)]
    assert info.value.problems[0].message.startswith(CANNOT_BOOT)

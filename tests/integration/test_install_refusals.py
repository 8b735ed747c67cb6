"""Bad input gets a clear error (exit 2) and changes nothing: the disk is byte for byte the same."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import loop_devices_of, mounted_tmpfs, nbc_mounts
from tests.integration.disk_image import digest_of
from tests.support.loopdev import attached_loop

pytestmark = pytest.mark.root

GiB = 1 << 30
SMALL = ["--esp-size", "100M", "--root-size", "1G", "--var-min-size", "256M"]


@pytest.fixture
def loop_disk(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A 3 GiB "disk": a sparse file attached as a loop device, with some recognisable old content."""
    backing = tmp_path / "disk.raw"
    with backing.open("wb") as f:
        f.truncate(3 * GiB)
    subprocess.run(["mkfs.ext4", "-q", "-L", "olddata", str(backing)], check=True)
    with attached_loop(backing) as dev:
        yield str(dev), backing


def assert_refused(r, *needles: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    for needle in needles:
        assert needle in r.stderr, r.stderr
    assert nbc_mounts() == []


def test_mounted_disk_is_refused(nbc, synthetic_image: str, loop_disk, tmp_path: Path) -> None:
    dev, backing = loop_disk
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", dev, str(mnt)], check=True)
    try:
        subprocess.run(["sync"], check=True)
        # compared while mounted: unmounting writes the superblock itself
        before = digest_of(backing)
        r = nbc("install", "--image", synthetic_image, "--device", dev, *SMALL, "--yes")
        after = digest_of(backing)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert_refused(r, "mounted")
    assert after == before


def test_too_small_disk_is_refused(nbc, synthetic_image: str, loop_disk) -> None:
    dev, backing = loop_disk
    before = digest_of(backing)
    r = nbc("install", "--image", synthetic_image, "--device", dev, "--yes", "--json")
    assert_refused(r)
    assert r.events[-1]["type"] == "error" and "too-small" in json.dumps(r.events[-1])
    assert digest_of(backing) == before


def test_not_confirmed_writes_nothing(nbc, synthetic_image: str, loop_disk) -> None:
    dev, backing = loop_disk
    before = digest_of(backing)
    for answer in ("no\n", ""):
        for mode in ([], ["--json"]):  # --json does not skip the question (nbc's did)
            r = nbc("install", "--image", synthetic_image, "--device", dev, *SMALL, *mode, stdin=answer)
            assert_refused(r, "will be erased", "not confirmed")
    assert digest_of(backing) == before


def test_confirmed_install_to_a_disk_without_partition_nodes(nbc, synthetic_image: str, loop_disk,
                                                              tmp_path: Path) -> None:
    """A loop device is a disk whose partitions the kernel does not scan: one loop device per partition."""
    dev, backing = loop_disk
    r = nbc("install", "--image", synthetic_image, "--device", dev, *SMALL, "--filesystem", "ext4",
            stdin="yes\n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "will be erased" in r.stderr and "olddata" in r.stderr  # says what is on it now
    table = json.loads(subprocess.run(["sfdisk", "--json", dev], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    assert [p["name"] for p in table["partitions"]] == ["boot", "root1", "root2", "var"]
    assert loop_devices_of(backing) == [dev]  # only the test's own device: every partition loop is gone


@pytest.mark.parametrize(("case", "needle", "exit_code"), [
    ("no-kernel", "has no kernel", 2),
    ("no-module-no-dracut", "no dracut", 2),
    ("not-a-layout", "layout", 2),
    ("no-such-tag", "v1", 2),
    ("registry-ref", "debian", 1),  # no network here: the registry cannot be reached, said in words
    ("corrupt-blob", "sha256:", 1),  # the image is damaged, not the request: "the operation failed"
    ("escaping-layer", "escape", 2),
])
def test_broken_image_changes_nothing(nbc, broken_images: dict[str, str], loop_disk, case: str,
                                      needle: str, exit_code: int) -> None:
    dev, backing = loop_disk
    before = digest_of(backing)
    r = nbc("install", "--image", broken_images[case], "--device", dev, *SMALL, "--yes")
    assert r.returncode == exit_code, r.stdout + r.stderr
    assert needle in r.stderr, r.stderr
    assert digest_of(backing) == before
    assert nbc_mounts() == []


def test_secure_boot_require_refuses_an_image_without_the_signed_chain(nbc, synthetic_image: str,
                                                                        loop_disk) -> None:
    """The synthetic image has no shim, no signed GRUB and a kernel that is no EFI image: every gap is named."""
    dev, backing = loop_disk
    before = digest_of(backing)
    r = nbc("install", "--image", synthetic_image, "--device", dev, *SMALL, "--secure-boot", "require", "--yes")
    assert_refused(r, "cannot boot with Secure Boot on", "no shim", "no signed GRUB or systemd-boot",
                   "is not an EFI image", "--secure-boot auto")
    assert digest_of(backing) == before


def test_swap_disk_is_refused(nbc, synthetic_image: str, loop_disk) -> None:
    dev, backing = loop_disk
    subprocess.run(["mkswap", "-q", dev], check=True)
    subprocess.run(["swapon", dev], check=True)
    # An active swap device is the kernel's to write at any time (it swaps pages out to it even with memory to
    # spare: seen in CI), so only its first page is compared: the swap header, never a swapped page, and where
    # a wipe or a partition table would land first.
    try:
        before = digest_of(backing, 0, 4096)
        r = nbc("install", "--image", synthetic_image, "--device", dev, *SMALL, "--yes")
        after = digest_of(backing, 0, 4096)
    finally:
        subprocess.run(["swapoff", dev], check=True)
    assert_refused(r, "swap")
    assert after == before


def test_live_medium_is_refused(nbc, synthetic_image: str, loop_disk) -> None:
    dev, backing = loop_disk
    medium = Path("/run/live/medium")
    assert not medium.exists(), "this machine is not a live system; the test makes its own medium"
    medium.mkdir(parents=True)
    subprocess.run(["mount", "-o", "ro", dev, str(medium)], check=True)
    try:
        before = digest_of(backing)
        r = nbc("install", "--image", synthetic_image, "--device", dev, *SMALL, "--yes", "--json")
        after = digest_of(backing)
    finally:
        subprocess.run(["umount", str(medium)], check=True)
        medium.rmdir()
        medium.parent.rmdir()
    assert_refused(r)
    reasons = {x["reason"] for x in r.events[-1]["details"]["refusals"]}
    assert {"live-medium", "mounted"} <= reasons
    assert after == before


def test_read_only_disk_is_refused(nbc, synthetic_image: str, tmp_path: Path) -> None:
    backing = tmp_path / "ro.raw"
    with attached_loop(backing, size=3 * GiB, read_only=True) as dev:
        r = nbc("install", "--image", synthetic_image, "--device", str(dev), *SMALL, "--yes")
    assert_refused(r, "read-only")
    assert backing.stat().st_blocks == 0  # still an empty sparse file: not a byte was written


def test_running_system_disk_is_refused(nbc, synthetic_image: str, log_file: Path) -> None:
    from nbc_tui.backend.disks import running_system_disks

    root_disk = sorted(running_system_disks())[0]
    r = nbc("install", "--image", synthetic_image, "--device", root_disk, "--yes", "--json")
    assert_refused(r)
    reasons = {x["reason"] for x in r.events[-1]["details"]["refusals"]}
    assert "running-system" in reasons
    # nothing that writes ran: the log holds no wipe, partitioning or mkfs command
    log = log_file.read_text()
    assert not any(tool in log for tool in ("run: wipefs", "run: sgdisk", "run: mkfs", "run: losetup"))


SECRET_WORDS = "Refusal-Secret-9"


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on a read-only filesystem, as the partition nbc.answers=LABEL= names is mounted."""
    with mounted_tmpfs(tmp_path / "ro", "ro,size=1m") as where:
        yield where


def test_secret_files_and_kernel_arguments_are_checked_before_the_wipe(nbc, synthetic_image: str, loop_disk,
                                                                        tmp_path: Path, log_file: Path,
                                                                        read_only_dir: Path) -> None:
    """What the install reads late (root's password in the configure step, kernel arguments in the bootloader
    step, the recovery key's place after the TPM2 enrolment) is refused before a byte is written, in words
    that never quote a secret file's bytes."""
    dev, backing = loop_disk
    before = digest_of(backing)
    files = {name: tmp_path / name for name in ("two-lines", "latin1", "good")}
    files["two-lines"].write_text(f"{SECRET_WORDS}\nsecond line\n")
    files["latin1"].write_bytes(f"caf\xe9-{SECRET_WORDS}\n".encode("latin-1"))
    files["good"].write_text(f"{SECRET_WORDS}-passphrase\n")
    cases = [
        (["--root-password-file", str(tmp_path / "missing")], "cannot read the root password file"),
        (["--root-password-file", str(files["two-lines"])], "holds more than one line"),
        (["--root-password-file", str(files["latin1"])], "is not UTF-8 text"),
        (["--encrypt", "--passphrase-file", str(files["latin1"])], "is not UTF-8 text"),
        (["--karg", "quiet", "--karg", ""], "an empty kernel argument"),
        (["--karg", "dyndbg=file foo.c +p"], 'has a space outside double quotes: write it as name="a b"'),
        (["--karg", 'dyndbg="file foo.c'], "has an unpaired double quote"),
    ]
    for extra, needle in cases:
        for mode in ([], ["--json"]):
            r = nbc("install", "--image", synthetic_image, "--device", dev, *SMALL, "--yes", *extra, *mode)
            assert_refused(r, needle)
            assert "Traceback" not in r.stderr and "internal error" not in r.stderr
            if mode:
                assert r.events[-1]["type"] == "error" and needle in r.events[-1]["details"]["error"]
            assert SECRET_WORDS not in r.stdout + r.stderr
    # Encryption is refused on this kernel (no device-mapper) before the recovery key's place would be looked
    # at; a dry run goes on past that, to the check a real run makes on a machine that can encrypt.
    r = nbc("install", "--image", synthetic_image, "--device", dev, *SMALL, "--dry-run", "--encrypt",
            "--passphrase-file", str(files["good"]), "--tpm2", "--recovery-key-file", str(read_only_dir / "key"))
    assert_refused(r, f"cannot be written in {read_only_dir}", "read-only")
    assert digest_of(backing) == before
    assert SECRET_WORDS not in log_file.read_text()


def test_an_esp_too_small_for_both_slots_kernel_files_is_refused(nbc, loop_disk, tmp_path: Path) -> None:
    """A 30 MiB kernel twice (a slot each) and the loader do not fit a 64 MiB ESP: refused before the wipe
    (the bootloader step's copy failed after the disk was written)."""
    from tests.support.synthetic import make_image

    image = make_image(tmp_path / "big-kernel", kernel_padding=30 << 20)
    dev, backing = loop_disk
    before = digest_of(backing)
    small_esp = ["--esp-size", "64M", "--root-size", "1G", "--var-min-size", "256M"]
    r = nbc("install", "--image", image, "--device", dev, *small_esp, "--yes")
    assert_refused(r, "the ESP (64.0 MB) is too small for the image's kernel files", "--esp-size")
    assert digest_of(backing) == before
    r = nbc("install", "--image", image, "--device", dev, *small_esp[:1], "200M", *small_esp[2:], "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr

"""Install the synthetic image into a disk-image file with the real CLI and read everything back."""

from __future__ import annotations

import hashlib
import json
import re
import stat
from pathlib import Path

import pytest

from nbc_tui.backend.boot.cmdline import FAILURE_REBOOTS
from nbc_tui.backend.system.dracut import HOOK_SCRIPT
from nbc_tui.backend.system.initramfs_needs import initramfs_member_names
from tests.conftest import loop_devices_of, nbc_mounts
from tests.integration.disk_image import (
    blkid,
    esp_files,
    esp_read,
    gpt,
    mounted_partition,
    partition_loop,
)
from tests.support.synthetic import FAKE_KERNEL, KVER

pytestmark = pytest.mark.root

MiB = 1 << 20
GiB = 1 << 30
PASSWORD = "Sup3r-Secret-Root-pw"
SMALL = ["--image-size", "3", "--esp-size", "100M", "--root-size", "1G", "--var-min-size", "256M"]
ESP_GUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_GUID = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    p = tmp_path / "root-password"
    p.write_text(PASSWORD + "\n")
    return p


@pytest.mark.parametrize(("filesystem", "bootloader"), [
    ("ext4", "grub"), ("btrfs", "systemd-boot"), ("ext4", "systemd-boot"), ("btrfs", "grub"),
])
def test_install_into_image_file(nbc, synthetic_image: str, tmp_path: Path, password_file: Path,
                                 log_file: Path, filesystem: str, bootloader: str) -> None:
    image = tmp_path / "disk.img"
    r = nbc("install", "--image", synthetic_image, "--via-loopback", str(image), *SMALL,
            "--filesystem", filesystem, "--bootloader", bootloader, "--karg", "console=ttyS0",
            "--karg", "quiet", "--root-password-file", str(password_file), "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    events = r.events
    # JSON Lines only on stdout, ending with complete; steps numbered 1..N
    assert events[-1]["type"] == "complete"
    steps = [e for e in events if e["type"] == "step"]
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))
    assert all(s["total_steps"] == len(steps) for s in steps)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e["timestamp"]) for e in events)
    assert any(e["type"] == "progress" and "bytes_done" in e["details"] for e in events)

    # Nothing left behind
    assert loop_devices_of(image) == []
    assert nbc_mounts() == []
    assert stat.S_IMODE(image.stat().st_mode) == 0o600  # it holds the password hashes

    # GPT: numbers, names, types, sizes
    table = gpt(image)
    parts = table["partitions"]
    sector = table["sectorsize"]
    assert [p["name"] for p in parts] == ["boot", "root1", "root2", "var"]
    assert [p["type"].upper() for p in parts] == [ESP_GUID, LINUX_GUID, LINUX_GUID, LINUX_GUID]
    assert parts[0]["size"] * sector == 100 * MiB
    assert parts[1]["size"] * sector == parts[2]["size"] * sector == GiB
    assert parts[3]["size"] * sector >= 256 * MiB
    assert parts[0]["start"] * sector % MiB == 0

    # labels and UUIDs
    ids = {}
    for number, label in ((1, "UEFI"), (2, "root1"), (3, "root2"), (4, "var")):
        with partition_loop(image, number) as dev:
            info = blkid(dev)
        assert info["LABEL"] == label
        assert info["TYPE"] == ("vfat" if number == 1 else filesystem)
        ids[label] = info["UUID"]
    assert re.fullmatch(r"[0-9A-F]{4}-[0-9A-F]{4}", ids["UEFI"])

    # the kernel command line, exactly as reference §12.1 (unencrypted)
    base = [f"root=UUID={ids['root1']}", "ro",
            f"systemd.mount-extra=UUID={ids['UEFI']}:/boot:vfat:defaults",
            f"systemd.mount-extra=UUID={ids['var']}:/var:{filesystem}:defaults",
            "rd.etc.overlay=1", f"rd.etc.overlay.var=UUID={ids['var']}", "nvme_core.multipath=N",
            *FAILURE_REBOOTS, "console=ttyS0", "quiet"]

    files = esp_files(image)
    assert "EFI/BOOT/BOOTX64.EFI" in files
    assert f"A/vmlinuz-{KVER}" in files and f"A/initramfs-{KVER}.img" in files
    assert not any(f.startswith("vmlinuz") for f in files), "boot files are per slot, not at the ESP root"
    assert esp_read(image, f"A/vmlinuz-{KVER}") == FAKE_KERNEL
    title = "Synthetic Linux 1 (test)"
    if bootloader == "systemd-boot":
        assert esp_read(image, "EFI/BOOT/BOOTX64.EFI") == b"MZ fake systemd-boot"
        assert "EFI/systemd/systemd-bootx64.efi" in files
        loader = esp_read(image, "loader/loader.conf").decode()
        assert "default" not in loader and "editor no" in loader  # sort order picks the entry
        entry = esp_read(image, "loader/entries/bootc.conf").decode()
        assert entry == (f"title   {title}\nlinux   /A/vmlinuz-{KVER}\ninitrd  /A/initramfs-{KVER}.img\n"
                         f"options {' '.join(base)}\n")
    else:
        assert esp_read(image, "EFI/BOOT/BOOTX64.EFI")[:2] == b"MZ"
        cfg = esp_read(image, "grub/grub.cfg").decode()
        grub_line = [base[0], "ro", "console=tty0", *[t for t in base[1:] if t not in ("ro", "rw")]]
        assert "set timeout=5\nset default=0\n" in cfg
        assert f"menuentry '{title}' {{" in cfg
        assert f"    linux /A/vmlinuz-{KVER} {' '.join(grub_line)}\n" in cfg
        assert f"    initrd /A/initramfs-{KVER}.img\n" in cfg

    # the root: extracted tree and configuration
    with mounted_partition(image, 2, tmp_path / "root") as root:
        assert (root / "usr/lib/os-release").read_text().startswith('PRETTY_NAME="Synthetic')
        assert (root / "bin").is_symlink() and (root / "bin").readlink() == Path("usr/bin")
        assert (root / "usr/bin/passwd").stat().st_mode & 0o7777 == 0o4755
        assert (root / "etc/motd").exists() and not (root / "etc/hostname").exists()  # layer 2 applied
        assert (root / "usr/lib/tmpfiles.d/nbc.conf").read_text().endswith(
            "f /run/nbc-booted 0644 root root - nbc\n")
        mid = root / "etc/machine-id"
        assert mid.read_text() == "uninitialized\n" and mid.stat().st_mode & 0o777 == 0o444
        fstab = (root / "etc/fstab").read_text()
        # the image's systemd is 252: /boot and /var need real fstab lines
        assert f"UUID={ids['UEFI']}\t/boot\tvfat" in fstab and f"UUID={ids['var']}\t/var\t{filesystem}" in fstab
        assert "tmpfs\t/tmp\ttmpfs\tmode=1777," in fstab  # the read-only root's /tmp cannot be written
        for etc in ("etc", ".etc.lower"):
            shadow = (root / etc / "shadow").read_text()
            assert shadow.startswith("root:$6$"), f"password not in /{etc}/shadow"
            assert PASSWORD not in shadow
            assert (root / etc / "shadow").stat().st_mode & 0o777 == 0o640
        assert sorted(p.name for p in (root / ".etc.lower").iterdir()) == sorted(
            p.name for p in (root / "etc").iterdir())
        assert (root / "var").is_dir() and not any((root / "var").iterdir()), "var content is on p4"

    with mounted_partition(image, 4, tmp_path / "var") as var:
        assert (var / "lib/dpkg/status").exists()
        assert (var / "lib/nbc/etc-overlay/upper").is_dir() and (var / "lib/nbc/etc-overlay/work").is_dir()
        assert (var / "lib/nbc/etc.pristine/passwd").exists()
        raw = (var / "lib/nbc/state/config.json").read_text()
        config = json.loads(raw)
        assert list(config)[:8] == ["image_ref", "image_digest", "device", "install_date", "kernel_args",
                                    "bootloader_type", "filesystem_type", "image_manifest_digest"]
        assert config["image_ref"] == synthetic_image
        assert config["image_digest"].startswith("sha256:")
        assert config["kernel_args"] == ["console=ttyS0", "quiet"]
        assert config["bootloader_type"] == ("grub2" if bootloader == "grub" else "systemd-boot")
        assert config["filesystem_type"] == filesystem
        assert not raw.endswith("\n")
        install_log = (var / "log/nbc-tui/install.log").read_text()
        assert "Creating partitions" in install_log

    # the secret never reaches a log or an output
    for text in (r.stdout, r.stderr, log_file.read_text()):
        assert PASSWORD not in text


def test_a_missing_hook_is_appended_to_the_images_initramfs(nbc, tmp_path: Path) -> None:
    """An image without dracut whose initramfs lacks only the etc-overlay hook (and has what it runs in) is
    installed: the hook is added as an archive after the image's own, which stays byte for byte in front."""
    from tests.support.synthetic import make_image

    ref = make_image(tmp_path / "layout", initramfs_has_module=False, initramfs_takes_hook=True)
    image = tmp_path / "disk.img"
    r = nbc("install", "--image", ref, "--via-loopback", str(image), *SMALL, "--filesystem", "ext4", "--json")
    assert r.returncode == 0, r.stderr
    messages = [e.get("message") or "" for e in r.events]
    assert any("Adding the etc-overlay hook" in m for m in messages), messages
    assert not any("Regenerating" in m for m in messages), messages
    initramfs = tmp_path / "initramfs.img"
    initramfs.write_bytes(esp_read(image, f"A/initramfs-{KVER}.img"))
    names = initramfs_member_names(initramfs)
    assert f"usr/lib/dracut/hooks/pre-pivot/50-{HOOK_SCRIPT}" in names and "usr/bin/mount" in names
    with mounted_partition(image, 2, tmp_path / "root") as root:
        shipped = (root / f"usr/lib/modules/{KVER}/initramfs.img").read_bytes()
    assert initramfs.read_bytes() == shipped, "the slot boots the initramfs its root holds"
    assert shipped.startswith(b"\x1f\x8b")  # the image's own gzip archive still comes first


def test_dry_run_writes_nothing(nbc, synthetic_image: str, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    for mode in ([], ["--json"]):
        r = nbc("install", "--image", synthetic_image, "--via-loopback", str(image), *SMALL, "--dry-run", *mode)
        assert r.returncode == 0, r.stderr
        assert not image.exists()
    assert r.events[-1]["type"] == "complete"
    assert any("[DRY RUN]" in (e.get("message") or "") for e in r.events)
    assert nbc_mounts() == []


def test_existing_image_file_needs_yes(nbc, synthetic_image: str, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(b"precious data" * 1000)
    before = sha256(image)
    r = nbc("install", "--image", synthetic_image, "--via-loopback", str(image), *SMALL)
    assert r.returncode == 2
    assert "already exists" in r.stderr and "--yes" in r.stderr
    assert sha256(image) == before


def test_reinstall_over_image_file_with_yes(nbc, synthetic_image: str, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    for _ in range(2):
        r = nbc("install", "--image", synthetic_image, "--via-loopback", str(image), *SMALL, "--filesystem",
                "ext4", "--yes")
        assert r.returncode == 0, r.stderr
    assert "Installation complete" in r.stdout
    assert "qemu-system-x86_64" in r.stdout


def test_layout_too_big_for_image_file(nbc, synthetic_image: str, tmp_path: Path) -> None:
    r = nbc("install", "--image", synthetic_image, "--via-loopback", str(tmp_path / "d.img"),
            "--image-size", "2", "--esp-size", "100M", "--root-size", "1G")
    assert r.returncode == 2
    assert "smaller than the layout needs" in r.stderr
    assert not (tmp_path / "d.img").exists()


def test_text_output_follows_nbc(nbc, synthetic_image: str, tmp_path: Path) -> None:
    r = nbc("install", "--image", synthetic_image, "--via-loopback", str(tmp_path / "d.img"), *SMALL, "--yes")
    assert r.returncode == 0, r.stderr
    assert "Step 1/11: Checking the machine, the disk and the image...\n" in r.stdout
    assert "Step 3/11: Creating partitions...\n" in r.stdout
    assert "=" * 65 + "\nInstallation complete! You can now boot from this disk.\n" in r.stdout
    assert "| The operation has completed successfully." not in r.stdout


def test_verbose_shows_tool_output(nbc, synthetic_image: str, tmp_path: Path) -> None:
    r = nbc("install", "--image", synthetic_image, "--via-loopback", str(tmp_path / "d.img"), *SMALL, "--yes",
            "--verbose")
    assert r.returncode == 0, r.stderr
    assert "  | The operation has completed successfully." in r.stdout  # sgdisk's own words
    assert "EFI boot entry: skipped" in r.stdout

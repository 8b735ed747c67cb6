"""`nbc-tui list` and `nbc-tui validate` as a user runs them (the console script, in a subprocess).

Every refusal exits 2 in text and in JSON mode (nbc's `validate --json` exits 0: fixed), says why, and
leaves the disk's bytes exactly as they were.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_disks import BIG, LIVE_MEDIUM, Loops, sh
from tests.integration.test_disks import loops as loops  # the fixture  # noqa: PLC0414
from tests.integration.test_disks import sha256 as _sha256

pytestmark = pytest.mark.root

CONSOLE_SCRIPT = Path(sys.executable).parent / "nbc-tui"
MiB = 1 << 20


def nbc_tui(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(CONSOLE_SCRIPT)] if CONSOLE_SCRIPT.exists() else [sys.executable, "-m", "nbc_tui.cli"]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120)


def check_refused(dev: str, backing: Path | None, reason: str, needle: str, *flags: str) -> None:
    """validate refuses ``dev`` with ``reason`` in both modes, and nothing of ``backing`` changes. An active swap
    device is the kernel's to write at any time (pages are swapped out to it even with memory to spare: seen in
    CI), so of it only the header page, which a wipe would destroy, is compared."""
    sha256 = _header_sha256 if reason == "swap" else _sha256
    before = sha256(backing) if backing else None
    text = nbc_tui("validate", "--device", dev, *flags)
    assert text.returncode == 2, text.stdout + text.stderr
    assert text.stderr.startswith("❌ Validation failed:"), text.stderr
    assert needle in text.stderr, text.stderr
    out = nbc_tui("validate", "--device", dev, "--json", *flags)
    assert out.returncode == 2, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert (doc["device"], doc["valid"]) == (dev, False)
    assert reason in [r["reason"] for r in doc["refusals"]]
    assert needle in doc["error"]
    assert "message" not in doc
    if backing:
        assert sha256(backing) == before


def test_list_all_json_shows_the_loop_device(loops: Loops) -> None:
    backing = loops.file("disk.img", 64 * MiB, mkfs="ext4")
    dev = loops.attach(backing)
    r = nbc_tui("list", "--all", "--json")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith('{\n  "disks": [')  # one pretty object, 2-space indent, like nbc
    entry = next(d for d in json.loads(r.stdout)["disks"] if d["device"] == dev)
    assert (entry["size"], entry["size_human"], entry["is_removable"], entry["partitions"]) == (
        64 * MiB, "64.0 MB", False, [])
    assert (entry["transport"], entry["backing_file"], entry["eligible"]) == ("loop", str(backing), False)
    assert entry["refusals"][0]["reason"] == "too-small"
    assert "model" not in entry
    plain = nbc_tui("list", "--json")
    assert dev not in [d["device"] for d in json.loads(plain.stdout)["disks"]]


def test_list_text(loops: Loops) -> None:
    dev = loops.attach(loops.file("disk.img", 64 * MiB))
    r = nbc_tui("list", "--all")
    assert r.returncode == 0, r.stderr
    block = next(b for b in r.stdout.split("\n\n") if b.startswith(f"Device: {dev}\n"))
    assert block.splitlines()[1:] == [
        f"  Size:      64.0 MB ({64 * MiB} bytes)",
        "  Transport: loop",
        "  Removable: false",
        f"  File:      {loops.tmp / 'disk.img'}",
        "  Partitions: none",
        f"  Ineligible: {dev} is too small: needs 30.0 GB, has 64.0 MB",
    ]


def test_validate_eligible_disk(loops: Loops) -> None:
    backing = loops.file("big.img", BIG)
    dev = loops.attach(backing)
    r = nbc_tui("validate", "-d", dev)
    assert (r.returncode, r.stdout) == (0, f"✓ Device {dev} is valid for bootc installation\n"), r.stderr
    doc = json.loads(nbc_tui("validate", "-d", dev, "--json").stdout)
    assert (doc["valid"], doc["message"], doc["refusals"]) == (True, "Device is valid for bootc installation", [])
    assert "error" not in doc
    small = nbc_tui("validate", "-d", dev, "--min-size", f"{BIG + 1}")
    assert small.returncode == 2


def test_validate_missing_device_is_bad_input(tmp_path: Path) -> None:
    r = nbc_tui("validate", "--device", str(tmp_path / "nope"), "--json")
    assert r.returncode == 2
    doc = json.loads(r.stdout)
    assert (doc["valid"], doc["error"]) == (False, f"{tmp_path / 'nope'} does not exist")
    text = nbc_tui("validate", "--device", "/dev/null")
    assert (text.returncode, text.stderr.splitlines()[0]) == (
        2, "❌ Validation failed: /dev/null is not a block device (give a whole disk such as /dev/sdb; "
           "`nbc-tui list` shows them)")


def _header_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.sha256(f.read(4096)).hexdigest()


Scenario = Callable[[Loops], tuple[str, Path | None]]
# Scenario disks are small, so that hashing them is quick; validate is told that this size is enough.
SIZE = 64 * MiB
ENOUGH = ("--min-size", "32M")


def mounted(loops: Loops) -> tuple[str, Path | None]:
    backing = loops.file("disk.img", SIZE, mkfs="ext4")
    dev = loops.attach(backing)
    loops.mount(dev, loops.tmp / "mnt")
    return dev, backing


def swap(loops: Loops) -> tuple[str, Path | None]:
    backing = loops.file("swap.img", SIZE)
    dev = loops.attach(backing)
    loops.swapon(dev)
    return dev, backing


def live_medium(loops: Loops) -> tuple[str, Path | None]:
    if LIVE_MEDIUM.exists():
        pytest.skip(f"{LIVE_MEDIUM} exists on this machine")
    backing = loops.file("live.img", SIZE, mkfs="ext4")
    dev = loops.attach(backing)
    loops.mount(dev, LIVE_MEDIUM)
    return dev, backing


def too_small(loops: Loops) -> tuple[str, Path | None]:
    backing = loops.file("small.img", 16 * MiB)
    return loops.attach(backing), backing


def read_only(loops: Loops) -> tuple[str, Path | None]:
    backing = loops.file("ro.img", SIZE)
    return loops.attach(backing, "--read-only"), backing


def partition_loop(loops: Loops) -> tuple[str, Path | None]:
    backing = loops.file("disk.img", SIZE)
    whole = loops.attach(backing)
    loops.attach(backing, "--offset", str(MiB), "--sizelimit", str(16 * MiB))
    return whole, backing


def running_system(loops: Loops) -> tuple[str, Path | None]:
    # Read-only checks only: validate never writes, and the running disk is never modified here.
    root = Path("/sys/dev/block", sh("stat", "-c", "%Hd:%Ld", "/")).resolve()
    name = root.parent.name if (root / "partition").exists() else root.name
    return f"/dev/{name}", None


@pytest.mark.parametrize(("scenario", "reason", "needle", "flags"), [
    (mounted, "mounted", "is mounted at ", ENOUGH),
    (swap, "swap", "is in use as swap", ENOUGH),
    (running_system, "running-system", "holds the running system (/", ()),
    (live_medium, "live-medium", f"is the live medium this system started from (mounted at {LIVE_MEDIUM})",
     ENOUGH),
    (too_small, "too-small", "is too small: needs 30.0 GB, has 16.0 MB", ()),
    (read_only, "read-only", "is read-only: attach it again without --read-only", ENOUGH),
    (partition_loop, "in-use", "(offset 1.0 MB): detach it with `losetup -d", ENOUGH),
], ids=lambda v: v.__name__ if callable(v) else "")
def test_validate_refuses(loops: Loops, scenario: Scenario, reason: str, needle: str,
                          flags: tuple[str, ...]) -> None:
    dev, backing = scenario(loops)
    check_refused(dev, backing, reason, needle, *flags)

"""Benchmark (run on purpose, not a test): boot time to the login prompt with Secure Boot on beside off, the same
disk, the same run.

    sudo .venv/bin/python bench/secure_boot_bench.py [--runs 3]

The Debian test image with Debian's signed chain (tests/vm/signed_image.py) is installed once with
``--secure-boot require`` (GRUB behind shim, btrfs) into a disk-image file. It then boots alternately under
OVMF enforcing Secure Boot (Microsoft keys, q35 with SMM) and under the plain OVMF (Secure Boot off, shim still
in front), each boot on a snapshot of the same disk (nothing a boot writes reaches the next), under TCG; the time
is from QEMU's start to ``login:`` on the serial console. Prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.vm.image_builder import build_debian_image  # noqa: E402
from tests.vm.image_variants import image_variants  # noqa: E402
from tests.vm.qemu import booted  # noqa: E402
from tests.vm.signed_image import signed_chain_image  # noqa: E402

NBC_TUI = str(REPO / ".venv/bin/nbc-tui")
BOOT_TIMEOUT = 600


def seconds_to_login(disk: Path, log: Path, *, secure_boot: bool) -> float:
    with booted(disk, log=log, timeout=BOOT_TIMEOUT, snapshot=True, secure_boot=secure_boot) as vm:
        vm.wait_for(r"login:", BOOT_TIMEOUT)
        if secure_boot:
            assert "Secure boot enabled" in log.read_text(errors="replace"), f"Secure Boot was not on: {log}"
        return vm.elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    variants = image_variants(build_debian_image())
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="nbc-bench-sb-") as d:
        work = Path(d)
        ref = signed_chain_image(variants.layout, work / "image")
        disk = work / "disk.img"
        subprocess.run([NBC_TUI, "install", "--image", ref, "--via-loopback", str(disk), "--image-size", "6",
                        "--esp-size", "512M", "--root-size", "2G", "--var-min-size", "1G", "--filesystem", "btrfs",
                        "--secure-boot", "require", "--karg", "console=ttyS0", "--yes"],
                       check=True, capture_output=True)
        on, off = [], []
        for i in range(args.runs):
            on.append(seconds_to_login(disk, work / f"on-{i}.log", secure_boot=True))
            off.append(seconds_to_login(disk, work / f"off-{i}.log", secure_boot=False))
            print(f"run {i + 1}: Secure Boot on {on[-1]:.1f} s, off {off[-1]:.1f} s", flush=True)
    m_on, m_off = statistics.median(on), statistics.median(off)
    print(f"\nMedians of {args.runs} boots to login (TCG, same disk): Secure Boot on {m_on:.1f} s, "
          f"off {m_off:.1f} s = {m_on / m_off:.2f}x")


if __name__ == "__main__":
    main()

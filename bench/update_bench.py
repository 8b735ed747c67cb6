"""Benchmark (run on purpose, not a test): an update beside a fresh install of the same image, step by step,
on both filesystems, same machine, same run.

    sudo .venv/bin/python bench/update_bench.py [--runs 2]

For each filesystem: ``nbc-tui install`` of the update test image ``v1`` (the Debian test image carrying
nbc-tui) into a disk-image file, then ``nbc-tui update --device`` of that file to ``v2`` (the same image plus
a system user), and a fresh install of ``v2`` into another file: the step times come from each run's complete
event (``step_seconds``). Prints one table per filesystem (median of the runs) and the ratio of the totals.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bytecode import compile_nbc_tui  # noqa: E402
from tests.vm.image_builder import DEFAULT_CACHE_ROOT, build_debian_image  # noqa: E402
from tests.vm.image_variants import image_variants  # noqa: E402
from tests.vm.update_images import build_update_images  # noqa: E402

NBC_TUI = str(REPO / ".venv/bin/nbc-tui")
SIZES = ["--image-size", "7", "--esp-size", "512M", "--root-size", "2560M", "--var-min-size", "1G"]


def timed(argv: list[str]) -> tuple[dict[str, float], float]:
    """Run an nbc-tui command with --json; its step seconds and its wall time."""
    started = time.monotonic()
    done = subprocess.run([*argv, "--json"], capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not events or events[-1]["type"] != "complete":
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return events[-1]["details"]["step_seconds"], wall


def one_round(refs: dict[str, str], filesystem: str, work: Path) -> dict[str, tuple[dict[str, float], float]]:
    first, second = work / "a.img", work / "b.img"
    for disk in (first, second):
        disk.unlink(missing_ok=True)
    common = ["--filesystem", filesystem, "--bootloader", "systemd-boot", "--yes"]
    install_v1 = timed([NBC_TUI, "install", "--image", refs["v1"], "--via-loopback", str(first), *SIZES, *common])
    update = timed([NBC_TUI, "update", "--device", str(first), "--image", refs["v2"], "--force"])
    install_v2 = timed([NBC_TUI, "install", "--image", refs["v2"], "--via-loopback", str(second), *SIZES, *common])
    return {"install v1": install_v1, "update v1 -> v2": update, "install v2": install_v2}


def table(filesystem: str, rounds: list[dict[str, tuple[dict[str, float], float]]]) -> None:
    def median_steps(name: str) -> dict[str, float]:
        keys = rounds[0][name][0]
        return {k: statistics.median(r[name][0].get(k, 0.0) for r in rounds) for k in keys}

    def median_wall(name: str) -> float:
        return statistics.median(r[name][1] for r in rounds)

    install, update = median_steps("install v2"), median_steps("update v1 -> v2")
    print(f"\n{filesystem}: median of {len(rounds)} run(s), seconds")
    print(f"  {'fresh install of v2':<34}{'':>8}   {'update v1 -> v2':<34}")
    rows = max(len(install), len(update))
    left, right = list(install.items()), list(update.items())
    for i in range(rows):
        a = f"  {left[i][0]:<34}{left[i][1]:>8.2f}" if i < len(left) else " " * 44
        b = f"   {right[i][0]:<34}{right[i][1]:>8.2f}" if i < len(right) else ""
        print(a + b)
    wall_install, wall_update = median_wall("install v2"), median_wall("update v1 -> v2")
    print(f"  {'wall (whole command)':<34}{wall_install:>8.2f}   {'wall (whole command)':<34}{wall_update:>8.2f}")
    print(f"  update / fresh install: {wall_update / wall_install:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    compile_nbc_tui()
    base = build_debian_image(DEFAULT_CACHE_ROOT)
    images = build_update_images(image_variants(base, base.parent.parent), base.parent.parent)
    with tempfile.TemporaryDirectory(prefix="nbc-update-bench-", dir="/var/tmp") as tmp:
        for filesystem in ("ext4", "btrfs"):
            rounds = [one_round(images.refs, filesystem, Path(tmp)) for _ in range(args.runs)]
            table(filesystem, rounds)


if __name__ == "__main__":
    main()

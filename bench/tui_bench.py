"""Benchmark (run on purpose, not a test): the full-screen installer's cold start and its memory.

    sudo .venv/bin/python bench/tui_bench.py [--runs 7]

1. Start to the first screen: the real ``.venv/bin/nbc-tui`` in an 80x24 pty (TERM=linux), the time
   from spawn until the welcome screen's title has been drawn; the first run and the median of all runs
   (the first run is the coldest: later ones find Python and Textual in the page cache).
2. Peak memory during a full install: the same binary driven by keys as in tests/tui/test_pty_install.py,
   installing the synthetic image into a disk-image file. /proc is polled every 20 ms for the RSS of the
   nbc-tui process and the PSS of its whole process tree (the tools it runs and the forked extractor, shared
   pages counted once); getrusage(RUSAGE_CHILDREN) gives
   the largest single process the kernel saw among them.

Prints a small table.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import pexpect

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bytecode import compile_nbc_tui  # noqa: E402
from tests.support.synthetic import make_image  # noqa: E402
from tests.tui.pty_driver import WELCOME_TEXT, Tui, install_by_keys, tui_environment  # noqa: E402

PAGE = 4096


def start_time(tmp: Path) -> float:
    """Seconds from spawning nbc-tui to its welcome screen drawn; the installer is then asked to quit."""
    started = time.monotonic()
    tui = Tui(tui_environment(tmp))
    try:
        tui.wait(WELCOME_TEXT)
        elapsed = time.monotonic() - started
        tui.child.send("\x03")  # Ctrl-C asks; y quits
        tui.wait("Quit the installer")
        tui.child.send("y")
        tui.child.expect(pexpect.EOF, timeout=30)
    finally:
        tui.close()
    return elapsed


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):  # the task ended meanwhile
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _pss(pid: int) -> int:
    """Proportional set size: a forked child's pages shared with its parent are counted once overall."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


class RssPoller(threading.Thread):
    """Polls the RSS of a process and of its tree until stopped; keeps the peaks."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_main = self.peak_tree = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            main = _rss(self.pid)
            if main == 0 and not Path(f"/proc/{self.pid}").exists():
                return
            tree, todo = 0, [self.pid]
            while todo:
                pid = todo.pop()
                tree += _pss(pid)
                todo += _children(pid)
            self.peak_main = max(self.peak_main, main)
            self.peak_tree = max(self.peak_tree, tree)
            self.stop.wait(self.interval)


def install_memory(tmp: Path, image_ref: str) -> tuple[float, int, int, int]:
    """(seconds, peak RSS of nbc-tui, peak RSS of its tree, largest single child) for one TUI install."""
    tui = Tui(tui_environment(tmp))
    poller = RssPoller(tui.pid)
    poller.start()
    started = time.monotonic()
    try:
        install_by_keys(tui, image_ref, tmp / "disk.img", tmp / "answers.toml", password="Bench-pw-0c41",
                        karg="nbc.bench=1")
    finally:
        tui.close()
        poller.stop.set()
        poller.join()
    elapsed = time.monotonic() - started
    if tui.child.exitstatus != 0:
        raise SystemExit(f"the install failed (exit {tui.child.exitstatus})")
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    return elapsed, poller.peak_main, poller.peak_tree, largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="start-up runs (default 7)")
    args = parser.parse_args()
    compile_nbc_tui()
    with tempfile.TemporaryDirectory(prefix="nbc-tui-bench-", dir="/var/tmp") as work:
        root = Path(work)
        starts = []
        for n in range(args.runs):
            run_dir = root / f"start-{n}"
            run_dir.mkdir()
            starts.append(start_time(run_dir))
        image_ref = make_image(root / "layout")
        install_dir = root / "install"
        install_dir.mkdir()
        seconds, main_rss, tree_rss, largest = install_memory(install_dir, image_ref)
    mb = 1e6
    rows = [
        ("start to the welcome screen, first run", f"{starts[0] * 1000:.0f} ms"),
        (f"start to the welcome screen, median of {len(starts)}", f"{statistics.median(starts) * 1000:.0f} ms"),
        ("start, fastest / slowest", f"{min(starts) * 1000:.0f} / {max(starts) * 1000:.0f} ms"),
        ("full TUI install (keys to exit), wall", f"{seconds:.1f} s"),
        ("peak RSS of the nbc-tui process", f"{main_rss / mb:.1f} MB"),
        ("peak PSS of its process tree (sum)", f"{tree_rss / mb:.1f} MB"),
        ("largest single process (getrusage)", f"{largest / mb:.1f} MB"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\nnbc-tui full-screen installer, 80x24 pty, TERM=linux ({sys.platform}, Python "
          f"{sys.version.split()[0]})")
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>14}")


if __name__ == "__main__":
    main()

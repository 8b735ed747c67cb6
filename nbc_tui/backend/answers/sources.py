"""Where an unattended install's answers come from on a live system: ``nbc.answers=`` on the kernel command
line, a path, or ``LABEL=<filesystem label>:<path>`` on a partition mounted read-only for as long as the install
runs (so that secret files beside the answers can be read) and unmounted afterwards."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import tempfile
import time
from pathlib import Path

from ..errors import InputError
from ..mounts import RUN_DIR, mounted
from ..runner import RunContext, run

log = logging.getLogger("nbc_tui")

CMDLINE_ENV = "NBC_TUI_PROC_CMDLINE"
"""Read the kernel command line from this file instead of /proc/cmdline (tests)."""
CMDLINE_KEY = "nbc.answers="
LABEL_WAIT_ENV = "NBC_TUI_LABEL_WAIT"
LABEL_WAIT = 30.0
"""Seconds to wait for the labelled filesystem to appear: at boot a USB stick can come up after the
unattended install has started. ``NBC_TUI_LABEL_WAIT`` changes it (tests: 0)."""
ANSWERS_MOUNT_BASE = RUN_DIR


def cmdline_answers_value(text: str) -> str | None:
    """The value of the last ``nbc.answers=`` (as the kernel does, the last one wins)."""
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    values = [w[len(CMDLINE_KEY):] for w in words if w.startswith(CMDLINE_KEY)]
    return values[-1] if values else None


def answers_from_cmdline(stack: contextlib.ExitStack, ctx: RunContext) -> Path:
    source = Path(os.environ.get(CMDLINE_ENV, "/proc/cmdline"))
    try:
        value = cmdline_answers_value(source.read_text())
    except OSError as exc:
        raise InputError(f"cannot read the kernel command line {source}: {exc.strerror}") from None
    if not value:
        raise InputError(f"the kernel command line ({source}) has no {CMDLINE_KEY}",
                         hint=f"boot with {CMDLINE_KEY}/path/answers.toml or "
                              f"{CMDLINE_KEY}LABEL=<label>:/answers.toml")
    if not value.startswith("LABEL="):
        return Path(value)
    label, sep, inner = value.removeprefix("LABEL=").partition(":")
    if not (label and sep and inner):
        raise InputError(f"{CMDLINE_KEY}{value} is not LABEL=<filesystem label>:<path>",
                         hint=f"for example {CMDLINE_KEY}LABEL=ANSWERS:/nbc/answers.toml")
    return mount_labelled(label, stack, ctx) / inner.lstrip("/")


def mount_labelled(label: str, stack: contextlib.ExitStack, ctx: RunContext) -> Path:
    """Mount the filesystem labelled ``label`` read-only for as long as ``stack`` lives (also in a dry run:
    reading the answers is not installing)."""
    device = _labelled_device(label, ctx)
    if not device:
        raise InputError(f"no filesystem labelled {label!r} was found (for {CMDLINE_KEY})",
                         hint="check the label (blkid shows them) and that the medium is plugged in")
    ANSWERS_MOUNT_BASE.mkdir(parents=True, exist_ok=True, mode=0o700)
    where = Path(tempfile.mkdtemp(prefix="answers-", dir=ANSWERS_MOUNT_BASE))
    stack.callback(_rmdir_quietly, where)
    reader = RunContext(redactor=ctx.redactor)
    stack.enter_context(mounted(device, where, ctx=reader, options=["ro", "nosuid", "nodev", "noexec"]))
    log.info("answers: %s (label %s) mounted read-only at %s", device, label, where)
    return where


def _labelled_device(label: str, ctx: RunContext) -> str:
    """The device with filesystem label ``label``, asked again every second until LABEL_WAIT runs out ("" when
    none came)."""
    deadline = time.monotonic() + float(os.environ.get(LABEL_WAIT_ENV) or LABEL_WAIT)
    while True:
        found = run(["blkid", "-c", "/dev/null", "-L", label], ctx=ctx, changes_system=False, ok=(0, 2))
        device = found.out.strip().splitlines()[0] if found.out.strip() else ""
        if (found.returncode == 0 and device) or time.monotonic() >= deadline:
            return device if found.returncode == 0 else ""
        log.info("answers: no filesystem labelled %s yet; waiting for it", label)
        ctx.check_cancelled()
        time.sleep(1)


def _rmdir_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()  # only ever rmdir a mount point: never a recursive delete

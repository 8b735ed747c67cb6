"""The progress screen with the real engine underneath, installing the synthetic image into a disk-image file."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr
from textual.pilot import Pilot

from nbc_tui.app import NbcTuiApp
from nbc_tui.backend.events import MessageEvent, ProgressEvent, StepEvent, progress_event
from nbc_tui.backend.operations import install as install_module
from nbc_tui.backend.operations.install import step_titles
from nbc_tui.backend.plan import InstallPlan
from nbc_tui.backend.runner import run
from nbc_tui.backend.steps import slot as slot_steps
from nbc_tui.screens.progress import ProgressScreen, describe_bytes, time_left
from nbc_tui.widgets.cancel_install import CancelInstallScreen
from nbc_tui.widgets.log_view import LogView
from nbc_tui.widgets.step_list import StepList, StepState
from tests.conftest import loop_devices_of, nbc_mounts
from tests.support.synthetic import make_image
from tests.tui.harness import SIZE, Shown, show, wait_for

PASSWORD = "Tui-Root-pw-7f3a9"
# The small layout of the integration tests: a 3 GiB sparse file.
SMALL_LAYOUT = {"esp_size": "100M", "root_size": "1G", "var_min_size": "256M"}


def small_plan(ref: str, image: Path, *, password: str | None = None) -> InstallPlan:
    return InstallPlan.model_validate({
        "image": {"ref": ref},
        "target": {"image_file": image, "image_size": 3 << 30, "overwrite": True},
        "layout": {"filesystem": "ext4", **SMALL_LAYOUT},
        "system": {"root_password": SecretStr(password) if password else None},
    })


async def until(pilot: Pilot[object], shown: Shown, condition: Callable[[], object], timeout: float = 600) -> None:
    """Let the install run until ``condition()``; fails at once, saying why, if the install ended first, and
    with the log pane's tail on a time-out."""
    await wait_for(pilot, condition, timeout=timeout, what="the progress screen",
                   ended=lambda: shown.results and f"the install ended first: {shown.results[0]}",
                   tail=lambda: "\n".join(shown.screen.query_one(LogView).plain_lines[-15:]))


def our_mounts() -> list[str]:
    """The engine's mounts of this test process (other installs may run on the machine at the same time)."""
    return [line for line in nbc_mounts() if f"/run/nbc-tui/install-{os.getpid()}" in line]


@pytest.fixture(autouse=True)
def log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "nbc-tui.log"
    monkeypatch.setenv("NBC_TUI_LOG_FILE", str(path))
    return path


@pytest.fixture(autouse=True)
def release_leftovers(tmp_path: Path):
    """Whatever a failing test left mounted or attached is released, so later tests and runs start clean."""
    yield
    ours = f"/run/nbc-tui/install-{os.getpid()}"
    points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1].startswith(ours)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", point], capture_output=True)
    for image in tmp_path.glob("*.img"):
        for loop in loop_devices_of(image):
            subprocess.run(["losetup", "-d", loop], capture_output=True)


# -- pure logic ------------------------------------------------------------------------------------

def test_only_adjacent_byte_counts_merge() -> None:
    older = ProgressScreen.Engine(progress_event("Extracting", 1, 10, 1.0))
    newer = ProgressScreen.Engine(progress_event("Extracting", 2, 10, 1.0))
    step = ProgressScreen.Engine(StepEvent(step=2, total_steps=14, step_name="Wiping the disk"))
    message = ProgressScreen.Engine(MessageEvent(message="hello"))
    assert older.can_replace(newer)
    assert not older.can_replace(step) and not step.can_replace(newer)
    assert not message.can_replace(message) and not step.can_replace(step)


def test_bytes_and_time_left_in_words() -> None:
    event = ProgressEvent(percent=25, message="Extracting",
                          details={"bytes_done": 100 << 20, "bytes_total": 400 << 20, "bytes_per_second": 50 << 20})
    assert describe_bytes(event) == "Extracting: 100.0 MB of 400.0 MB, 50.0 MB/s, about 6 s left"
    assert time_left(0.2) == "about 1 s left"
    assert time_left(125) == "about 2 min 5 s left"
    assert time_left(3600) == "about 60 min left"


# -- with the real engine --------------------------------------------------------------------------

@pytest.mark.root
async def test_full_install_reaches_done_and_never_shows_the_password(
        synthetic_image: str, tmp_path: Path, log_file: Path) -> None:
    image = tmp_path / "disk.img"
    plan = small_plan(synthetic_image, image, password=PASSWORD)
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, ProgressScreen(plan), settle=False)
        steps = shown.screen.query_one(StepList)
        pane = shown.screen.query_one(LogView)
        await until(pilot, shown, lambda: shown.results)
        # back on the App's own screen: the progress screen dismissed itself
        assert not isinstance(pilot.app.screen, ProgressScreen)
    outcome = shown.results[0]
    assert outcome.ok, outcome
    assert not outcome.cancelled and outcome.error is None
    assert outcome.log_path == str(log_file)
    assert steps.titles == step_titles(plan)
    assert steps.states == [StepState.DONE] * len(steps.titles)
    assert image.stat().st_size == 3 << 30
    assert loop_devices_of(image) == [] and our_mounts() == []

    drawn = "\n".join(pane.plain_lines)
    assert "Root password set" in drawn  # the password was used ...
    assert any(line.startswith("  | ") for line in pane.plain_lines), "no tool output in the log pane"
    assert "Installation complete" in drawn
    logged = log_file.read_text()
    assert "run: " in logged  # the run was logged to the documented file
    for text in (drawn, logged):
        assert PASSWORD not in text  # ... and shown nowhere


async def test_dry_run_writes_nothing_and_finishes(synthetic_image: str, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, ProgressScreen(small_plan(synthetic_image, image), dry_run=True), settle=False)
        steps = shown.screen.query_one(StepList)
        pane = shown.screen.query_one(LogView)
        await until(pilot, shown, lambda: shown.results)
    outcome = shown.results[0]
    assert outcome.ok and "nothing was written" in outcome.message
    assert not image.exists()
    assert steps.states[0] is StepState.DONE
    assert set(steps.states[1:]) == {StepState.SKIPPED}
    assert any("[DRY RUN] Would install" in line for line in pane.plain_lines)


async def test_tool_output_reaches_the_pane_with_secrets_redacted(
        synthetic_image: str, tmp_path: Path, log_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real command run in the engine's thread, with the run's own context, that prints the password: the
    # dry run's summary runs it before it words the plan.
    plan = small_plan(synthetic_image, tmp_path / "disk.img", password=PASSWORD)
    screen = ProgressScreen(plan, dry_run=True)
    real_lines = install_module.creation_lines

    def lines_after_a_tool(plan: InstallPlan) -> list[str]:
        run(["echo", f"the password is {PASSWORD}"], ctx=screen.ctx, changes_system=False)
        return real_lines(plan)

    monkeypatch.setattr(install_module, "creation_lines", lines_after_a_tool)
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, screen, settle=False)
        pane = screen.query_one(LogView)
        await until(pilot, shown, lambda: shown.results)
    assert shown.results[0].ok
    assert "  | the password is <redacted>" in pane.plain_lines
    assert PASSWORD not in "\n".join(pane.plain_lines)
    assert PASSWORD not in log_file.read_text()


@pytest.mark.root
async def test_failing_plan_ends_with_the_error_in_words(tmp_path: Path) -> None:
    ref = make_image(tmp_path / "layout", kernel=False)
    image = tmp_path / "disk.img"
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, ProgressScreen(small_plan(ref, image)), settle=False)
        steps = shown.screen.query_one(StepList)
        pane = shown.screen.query_one(LogView)
        await until(pilot, shown, lambda: shown.results)
    outcome = shown.results[0]
    assert not outcome.ok and not outcome.cancelled
    assert outcome.message == "Installation failed"
    assert outcome.error == f"the image {ref} has no kernel"
    assert outcome.hint and "vmlinuz" in outcome.hint
    assert steps.states[0] is StepState.FAILED
    assert f"Error: the image {ref} has no kernel" in pane.plain_lines
    assert not image.exists()  # refused before anything was written


@pytest.fixture
def extraction_gate(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Holds the real extraction mid-layer until the test lets it go: the big layer takes well under a
    second here, faster than a person (or a loaded test machine) can answer the question."""
    reached, release = threading.Event(), threading.Event()
    real_extract = slot_steps.extract_image

    def gated_extract(source, root, *, ctx, on_progress=None):
        def progress(done: int, total: int) -> None:
            if done >= 64 << 20 and not release.is_set():
                reached.set()
                release.wait(120)
            if on_progress is not None:
                on_progress(done, total)

        return real_extract(source, root, ctx=ctx, on_progress=progress)

    monkeypatch.setattr(slot_steps, "extract_image", gated_extract)
    return reached, release


@pytest.mark.root
async def test_ctrl_c_asks_then_cancels_cleanly_during_extraction(
        tmp_path: Path, extraction_gate: tuple[threading.Event, threading.Event]) -> None:
    reached, release = extraction_gate
    ref = make_image(tmp_path / "layout", padding=400 << 20, compression="tar")
    image = tmp_path / "disk.img"
    async with NbcTuiApp(start_wizard=False).run_test(size=SIZE) as pilot:
        shown = await show(pilot, ProgressScreen(small_plan(ref, image)), settle=False)
        screen = shown.screen
        steps = screen.query_one(StepList)
        # Ctrl-C asks; keeping on is the default answer (Enter on the focused button)
        await until(pilot, shown, lambda: steps.running is not None, timeout=120)
        await pilot.press("ctrl+c")
        assert isinstance(pilot.app.screen, CancelInstallScreen)
        await pilot.press("enter")
        assert pilot.app.screen is screen and not screen.cancelling and not screen.ctx.cancel.is_set()
        # asked again halfway through the big layer, and answered deliberately
        await until(pilot, shown, reached.is_set, timeout=300)
        await pilot.press("ctrl+c")
        assert isinstance(pilot.app.screen, CancelInstallScreen)
        await pilot.press("y")
        assert screen.cancelling
        release.set()
        await until(pilot, shown, lambda: shown.results, timeout=120)
    outcome = shown.results[0]
    assert outcome.cancelled and not outcome.ok, outcome
    extract = steps.titles.index("Extracting container filesystem")
    assert steps.states[extract] is StepState.FAILED
    assert set(steps.states[:extract]) == {StepState.DONE}
    assert set(steps.states[extract + 1:]) == {StepState.SKIPPED}
    assert our_mounts() == []
    assert loop_devices_of(image) == []

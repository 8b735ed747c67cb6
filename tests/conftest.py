"""Shared fixtures: the synthetic image, the CLI runner, and guards that each test leaves nothing behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Fixtures that start real services: a docker-registry on 127.0.0.1 and a Podman API socket.
pytest_plugins = ["tests.integration.registry_fixtures", "tests.integration.podman_fixtures"]

REPO = Path(__file__).resolve().parent.parent
NBC_TUI = [sys.executable, "-m", "nbc_tui.cli"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root")
        for item in items:
            if "root" in item.keywords or "vm" in item.keywords:
                item.add_marker(skip)
    items.sort(key=_run_order)


def _run_order(item: pytest.Item) -> tuple[bool, float]:
    """The VM tier last, its longest scenarios first (``vm(minutes=N)``): run two at a time (tools/test.sh),
    the tier ends sooner when no long scenario starts while the other process is about to run out of work."""
    vm = item.get_closest_marker("vm")
    return vm is not None, -(vm.kwargs.get("minutes", 0) if vm else 0)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No registry credentials of the machine, a private cache and lock directory (under ``tmp_path``)."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    monkeypatch.setenv("NBC_TUI_CACHE_ROOT", str(tmp_path / "cache"))
    monkeypatch.setenv("NBC_TUI_LOCK_DIR", str(tmp_path / "locks"))
    return tmp_path


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    return tmp_path / "nbc-tui.log"


@pytest.fixture
def nbc(log_file: Path):
    """Run the real CLI in a subprocess (the console script's module), logging to a per-test file."""

    def run(*args: str, stdin: str | None = None, timeout: float = 900) -> CliResult:
        env = {**os.environ, "NBC_TUI_LOG_FILE": str(log_file)}
        proc = subprocess.run([*NBC_TUI, *args], input=stdin, capture_output=True, text=True, env=env,
                              timeout=timeout, cwd=REPO)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


@contextlib.contextmanager
def sigint_not_ignored() -> Iterator[None]:
    """Start a child that will be sent SIGINT inside this block. A test run started as a background job of a
    non-interactive shell has SIGINT ignored, which a child inherits; Python then installs no
    KeyboardInterrupt handler, so Ctrl-C would do nothing and the test would prove nothing about it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a handler becomes SIG_DFL on exec
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def stopped_while_extracting(args: list[str], log_file: Path, sig: signal.Signals,
                             delay: float = 0.5) -> tuple[int, list[dict]]:
    """Run the CLI with ``args`` (``--json``) and send it ``sig`` ``delay`` seconds into its extraction; its
    exit code and every event it wrote."""
    env = {**os.environ, "NBC_TUI_LOG_FILE": str(log_file)}
    with sigint_not_ignored():
        proc = subprocess.Popen([*NBC_TUI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, cwd=REPO)
    events = []
    assert proc.stdout
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["type"] == "progress" and events[-1].get("message") == "Extracting":
            time.sleep(delay)
            proc.send_signal(sig)
            break
    rest, _ = proc.communicate(timeout=120)
    events += [json.loads(line) for line in rest.splitlines() if line.strip()]
    return proc.returncode, events


@contextlib.contextmanager
def mounted_tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A fresh tmpfs at ``where`` (created) with mount ``options`` (its size, ro), unmounted afterwards."""
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def loop_devices_of(path: Path) -> list[str]:
    out = subprocess.run(["losetup", "-j", str(path)], capture_output=True, text=True).stdout
    return [line.split(":")[0] for line in out.splitlines()]


def nbc_mounts() -> list[str]:
    return [line for line in Path("/proc/mounts").read_text().splitlines() if "/run/nbc-tui" in line]


@pytest.fixture(scope="session")
def synthetic_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    from tests.support.synthetic import make_image

    return make_image(tmp_path_factory.mktemp("synthetic") / "layout")


@pytest.fixture(scope="session")
def broken_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Images the install and the update refuse, by case (each changes nothing)."""
    from tests.support.oci import ImageSpec, Layer, TarBuilder, write_layout
    from tests.support.synthetic import base_layer, make_image

    d = tmp_path_factory.mktemp("broken")
    refs = {
        "no-kernel": make_image(d / "no-kernel", kernel=False),
        "no-module-no-dracut": make_image(d / "no-module", initramfs_has_module=False),
        "not-a-layout": f"oci:{d / 'empty-dir'}",
        "no-such-tag": make_image(d / "tagged", tag="v1").rsplit(":", 1)[0] + ":v2",
        "registry-ref": "docker.io/library/debian:12",
    }
    (d / "empty-dir").mkdir()
    # a corrupt blob: one byte of the first layer flipped
    corrupt = make_image(d / "corrupt")
    layout = d / "corrupt"
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs/sha256" / manifest_digest).read_text())
    blob = layout / "blobs/sha256" / manifest["layers"][0]["digest"].split(":")[1]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    refs["corrupt-blob"] = corrupt
    # a layer escaping the root through a symlink
    hostile = TarBuilder().symlink("escape", "/tmp").file("escape/owned", b"x").bytes()
    write_layout(d / "hostile", [ImageSpec(layers=[Layer(base_layer(), "gzip"), Layer(hostile, "tar")])])
    refs["escaping-layer"] = f"oci:{d / 'hostile'}:latest"
    return refs

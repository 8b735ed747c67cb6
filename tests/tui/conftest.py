"""Fixtures for the TUI tests: a frozen cursor (stable snapshots), an empty private image cache, the user's
own environment kept out (NO_COLOR, TERM), and an image that ships what the system screen offers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Input

from tests.support.oci import ImageSpec, Layer, TarBuilder, write_layout
from tests.support.synthetic import base_layer, second_layer
from tests.tui.harness import KEYMAPS, ZONES


@pytest.fixture(autouse=True)
def frozen_cursor_blink(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The input cursor stays as it is: a blinking cursor makes snapshots differ from run to run."""
    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None)
    yield


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty staged-image cache per test (the machine's own /var/cache/nbc stays out of the screens)."""
    root = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("NBC_TUI_CACHE_ROOT", str(root))
    return root


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Textual reads NO_COLOR when an App is created: a developer's setting must not change snapshots."""
    monkeypatch.delenv("NO_COLOR", raising=False)


def identity_layer() -> bytes:
    """Time zones (:data:`ZONES`), console keymaps (:data:`KEYMAPS`), useradd and chpasswd (stand-ins: a dry
    run only checks they are there) and a sudo group: what a plan with a user and an identity needs."""
    t = TarBuilder()
    dirs = {"usr/sbin", "usr/share", "usr/share/zoneinfo", "usr/share/keymaps", "usr/share/keymaps/i386",
            "usr/share/keymaps/i386/qwerty"}
    dirs |= {f"usr/share/zoneinfo/{z.rsplit('/', 1)[0]}" for z in ZONES if "/" in z}
    for d in sorted(dirs):
        t.dir(d)
    for zone in ZONES:
        t.file(f"usr/share/zoneinfo/{zone}", b"TZif2 stand-in\n")
    t.file("usr/share/zoneinfo/zone.tab", b"# not a zone\n")
    for keymap in KEYMAPS:
        t.file(f"usr/share/keymaps/i386/qwerty/{keymap}.kmap.gz", b"stand-in")
    for tool in ("usr/sbin/useradd", "usr/sbin/chpasswd"):
        t.file(tool, b"#!fake tool\n", mode=0o755)
    t.file("etc/group", b"root:x:0:\ndaemon:x:1:\nshadow:x:42:\nsudo:x:27:\n")
    t.file("etc/shells", b"/bin/sh\n")
    return t.bytes()


@pytest.fixture(scope="session")
def identity_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The synthetic image with :func:`identity_layer` on top, as ``oci:DIR:latest``."""
    layout = tmp_path_factory.mktemp("identity") / "layout"
    write_layout(layout, [ImageSpec(layers=[Layer(base_layer(), "gzip"), Layer(second_layer(), "zstd"),
                                            Layer(identity_layer(), "gzip")])])
    return f"oci:{layout}:latest"

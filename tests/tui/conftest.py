"""Fixtures for the TUI tests: a frozen cursor (stable snapshots), an empty private image cache, and
the user's own environment kept out (NO_COLOR, TERM)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Input


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

"""Offline installs from the staged-install cache: download, then install with no network and no --image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.disk_image import mounted_partition
from tests.integration.test_install_refusals import loop_disk  # noqa: F401  (the fixture)
from tests.support.synthetic import make_image

pytestmark = pytest.mark.root

SMALL = ["--image-size", "3", "--esp-size", "100M", "--root-size", "1G", "--var-min-size", "256M"]
DISK = SMALL[2:]  # for --device: the loop disk is 3 GiB already
KEPT = "Kept the staged images: they are part of the live medium"


@pytest.fixture
def cache_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("NBC_TUI_CACHE_ROOT", str(root))
    monkeypatch.setenv("NBC_TUI_LOCK_DIR", str(tmp_path / "locks"))
    return root


@pytest.fixture
def live_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the install looks for the live ISO's marker: absent until a test writes it (whatever the host has)."""
    marker = tmp_path / "nbc-tui-live"
    monkeypatch.setenv("NBC_TUI_LIVE_MARKER", str(marker))
    return marker


def staged_digests(nbc) -> list[str]:
    r = nbc("cache", "list", "--install-images", "--json")
    assert r.returncode == 0, r.stderr
    return [image["image_digest"] for image in json.loads(r.stdout)["images"]]


def test_install_offline_from_the_staged_image(nbc, cache_env: Path, tmp_path: Path, synthetic_image: str) -> None:
    r = nbc("install", "--via-loopback", str(tmp_path / "none.img"), *SMALL, "--yes")
    assert r.returncode == 2 and "no staged images found" in r.stderr
    r = nbc("download", "--image", synthetic_image, "--for-install", "--json")
    assert r.returncode == 0, r.stderr
    staged = json.loads(r.stdout)
    assert staged["cache_dir"] == str(cache_env / "staged-install")

    image = tmp_path / "disk.img"
    r = nbc("install", "--via-loopback", str(image), *SMALL, "--filesystem", "ext4", "--yes")
    assert r.returncode == 0, r.stderr
    assert "Auto-detected staged image: " + synthetic_image in r.stdout
    with mounted_partition(image, 4, tmp_path / "var") as var:
        config = json.loads((var / "lib/nbc/state/config.json").read_text())
    # the installed system updates from where the image came from, not from the live medium's cache
    assert config["image_ref"] == synthetic_image
    assert config["image_digest"] == staged["image_digest"]
    # an image-file install leaves the cache alone (nbc empties it only after installing a real disk)
    r = nbc("cache", "list", "--install-images", "--json")
    assert len(json.loads(r.stdout)["images"]) == 1


def test_local_image_by_digest_prefix_and_ambiguity(nbc, cache_env: Path, tmp_path: Path,
                                                    synthetic_image: str) -> None:
    other = make_image(tmp_path / "other", tag="v2", padding=4096)
    for ref in (synthetic_image, other):
        assert nbc("download", "--image", ref, "--for-install").returncode == 0
    r = nbc("install", "--via-loopback", str(tmp_path / "a.img"), *SMALL, "--yes")
    assert r.returncode == 2 and "--local-image" in r.stderr  # two staged: the user must choose
    digest = json.loads(nbc("cache", "list", "--install-images", "--json").stdout)["images"][0]["image_digest"]
    r = nbc("install", "--local-image", digest[:19], "--via-loopback", str(tmp_path / "b.img"), *SMALL, "--yes")
    assert r.returncode == 0, r.stderr
    assert "Using staged image:" in r.stdout
    r = nbc("install", "--local-image", "sha256:0000", "--via-loopback", str(tmp_path / "c.img"), *SMALL, "--yes")
    assert r.returncode == 1 and "not found in cache" in r.stderr
    assert not (tmp_path / "c.img").exists()


def test_installing_a_disk_empties_the_staged_cache(nbc, cache_env: Path, live_marker: Path, synthetic_image: str,
                                                    loop_disk) -> None:  # noqa: F811
    """nbc's behaviour off the live ISO: the staged images are gone once a real disk is installed from them."""
    dev, _ = loop_disk
    assert nbc("download", "--image", synthetic_image, "--for-install").returncode == 0
    r = nbc("install", "--device", dev, *DISK, "--filesystem", "ext4", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Auto-detected staged image: " + synthetic_image in r.stdout
    assert KEPT not in r.stdout
    assert staged_digests(nbc) == []


def test_live_system_keeps_the_staged_cache(nbc, cache_env: Path, live_marker: Path, synthetic_image: str,
                                            loop_disk) -> None:  # noqa: F811
    """On the live ISO the staged images are part of the medium: kept, so installing again works."""
    live_marker.write_text("NBC_TUI_LIVE_BUILD=test\n")
    dev, _ = loop_disk
    assert nbc("download", "--image", synthetic_image, "--for-install").returncode == 0
    [digest] = staged_digests(nbc)
    r = nbc("install", "--device", dev, *DISK, "--filesystem", "ext4", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert KEPT in r.stdout
    assert staged_digests(nbc) == [digest]
    # the same disk again, as the TUI's "Install again" does, naming the staged image
    r = nbc("install", "--local-image", digest, "--device", dev, *DISK, "--filesystem", "ext4", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Using staged image:" in r.stdout and KEPT in r.stdout
    assert staged_digests(nbc) == [digest]

"""Install and download from every kind of source with the real CLI: a registry, a Podman socket."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import nbc_mounts
from tests.integration.disk_image import mounted_partition
from tests.integration.podman_fixtures import GZ_IMAGE

if TYPE_CHECKING:
    from tests.integration.registry_fixtures import RegistryServer

pytestmark = pytest.mark.root

SMALL = ["--image-size", "3", "--esp-size", "100M", "--root-size", "1G", "--var-min-size", "256M"]


def installed_config(image: Path, where: Path) -> dict:
    with mounted_partition(image, 4, where) as var:
        return json.loads((var / "lib/nbc/state/config.json").read_text())


def test_install_and_download_from_a_registry(nbc, registry: RegistryServer, synthetic_image: str,
                                              isolated: Path) -> None:
    ref = registry.push(synthetic_image, "nbc/synthetic:1")
    image = isolated / "disk.img"
    r = nbc("install", "--image", ref, "--via-loopback", str(image), *SMALL, "--filesystem", "ext4", "--yes",
            "--json")
    assert r.returncode == 0, r.stderr
    assert r.events[-1]["type"] == "complete"
    config = installed_config(image, isolated / "var")
    assert config["image_ref"] == ref
    assert config["image_digest"] == config["image_manifest_digest"] == r.events[-1]["details"]["image_digest"]
    # Each blob fetched once: checked, kept in a spool, extracted from there; the spool is gone after.
    manifest = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                                         capture_output=True, check=True).stdout)
    blobs = {d["digest"]: d["size"] for d in [manifest["config"], *manifest["layers"]]}
    assert registry.served_blob_bytes() == blobs
    assert not list(Path("/var/tmp").glob("nbc-tui-spool-*"))

    r = nbc("download", "--image", ref, "--for-install", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["image_digest"] == config["image_manifest_digest"]
    # The download too: each blob once, checked while it arrived and kept in the cache entry as it was.
    assert registry.served_blob_bytes() == {digest: 2 * size for digest, size in blobs.items()}
    listed = json.loads(nbc("cache", "list", "--install-images", "--json").stdout)["images"]
    assert [i["image_ref"] for i in listed] == [ref]
    entry = Path(json.loads(r.stdout)["cache_dir"]) / ("sha256-" + config["image_manifest_digest"].split(":")[1])
    for digest, size in blobs.items():  # every blob in the entry is the registry's, byte for byte
        data = (entry / "blobs/sha256" / digest.split(":")[1]).read_bytes()
        assert (len(data), "sha256:" + hashlib.sha256(data).hexdigest()) == (size, digest)
    assert not list((entry / "blobs/sha256").glob("*.partial"))


def test_registry_problems_write_nothing(nbc, registry: RegistryServer, synthetic_image: str,
                                         isolated: Path) -> None:
    ref = registry.push(synthetic_image, "nbc/broken:1")
    layout = Path(synthetic_image.split(":", 1)[1].rsplit(":", 1)[0])
    manifest_digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    manifest = json.loads((layout / "blobs/sha256" / manifest_digest.split(":")[1]).read_text())
    blob = registry.blob_path(manifest["layers"][0]["digest"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    image = isolated / "disk.img"
    r = nbc("install", "--image", ref, "--via-loopback", str(image), *SMALL, "--yes")
    assert (r.returncode == 1 and "does not match" in r.stderr.lower()) or "digest" in r.stderr, r.stderr
    assert not image.exists()

    registry.stop()
    r = nbc("install", "--image", ref, "--via-loopback", str(image), *SMALL, "--yes")
    assert r.returncode == 1, r.stderr
    assert ref.split("/")[0] in r.stderr
    assert not image.exists()
    r = nbc("install", "--image", "127.0.0.1:5000/bad//name", "--via-loopback", str(image), *SMALL, "--yes")
    assert r.returncode == 2
    assert nbc_mounts() == []


def test_install_and_download_from_podman(nbc, podman_images, podman_socket: str, isolated: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_TUI_PODMAN_SOCKET", podman_socket)
    image = isolated / "disk.img"
    r = nbc("install", "--image", GZ_IMAGE, "--via-loopback", str(image), *SMALL, "--yes")
    assert r.returncode == 0, r.stderr
    config = installed_config(image, isolated / "var")
    assert config["image_ref"] == GZ_IMAGE
    r = nbc("download", "--image", GZ_IMAGE, "--for-install", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["os_name"] == "Synthetic Linux 1 (test)"
    # No socket answers: `podman image save` exports it, as a layout named by the image ID.
    monkeypatch.setenv("NBC_TUI_PODMAN_SOCKET", f"unix://{isolated}/no-such.sock")
    r = nbc("download", "--image", GZ_IMAGE, "--for-install", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["os_name"] == "Synthetic Linux 1 (test)"
    spools = Path("/var/tmp/nbc-tui")
    assert not spools.exists() or not any(spools.iterdir()), "the daemon's export was not cleaned up"
    monkeypatch.setenv("NBC_TUI_PODMAN_SOCKET", podman_socket)
    r = nbc("install", "--image", "localhost/no-such-image:1", "--via-loopback", str(isolated / "x.img"),
            *SMALL, "--yes")
    assert r.returncode == 1 and "no-such-image" in r.stderr

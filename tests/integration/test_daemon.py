"""`localhost/` images from a real Podman: through its Docker API socket, and through `podman image save`."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbc_tui.backend.errors import NbcError
from nbc_tui.backend.image.daemon import (
    SOCKET_ENV,
    DockerArchiveSource,
    SpooledLayoutSource,
    daemon_endpoints,
    filesystem_type,
    open_daemon_image,
    prepare_spool_dir,
)
from nbc_tui.backend.image.extract import extract_image
from nbc_tui.backend.image.layout import OciLayoutSource
from nbc_tui.backend.image.scan import scan_image
from nbc_tui.backend.image.source import ImageSource
from nbc_tui.backend.runner import RunContext
from tests.integration.podman_fixtures import (
    GZ_IMAGE,
    IMPORTED_IMAGE,
    ZSTD_IMAGE,
    PodmanImages,
    snapshot_tree,
)
from tests.support.synthetic import KVER

pytestmark = pytest.mark.root


def _extract(source: ImageSource, dest: Path) -> dict[str, tuple[object, ...]]:
    dest.mkdir()
    extract_image(source, dest, ctx=RunContext())
    return snapshot_tree(dest)


def _check_kernel(source: ImageSource) -> None:
    inventory = scan_image(source)
    assert [k.version for k in inventory.kernels] == [KVER]


def test_an_image_through_the_podman_socket(tmp_path: Path, podman_socket: str,
                                            podman_images: PodmanImages) -> None:
    spool = tmp_path / "spool"
    source = open_daemon_image(None, GZ_IMAGE, endpoints=[podman_socket], spool_dir=spool)  # type: ignore[arg-type]
    try:
        assert isinstance(source, DockerArchiveSource)
        assert source.ref == GZ_IMAGE
        assert source.manifest_digest == podman_images.image_id(GZ_IMAGE)
        assert source.index_digest is None
        assert len(list(spool.iterdir())) == 1  # the spooled archive, on disk
        _check_kernel(source)
        got = _extract(source, tmp_path / "from-daemon")
    finally:
        source.close()
    assert list(spool.iterdir()) == []
    want = _extract(OciLayoutSource(f"oci:{podman_images.gz_layout}:latest"), tmp_path / "from-layout")
    assert got == want
    assert "etc/motd" in got and "etc/hostname" not in got  # the upper layer's file and whiteout


def test_an_imported_image_through_the_socket(tmp_path: Path, podman_socket: str,
                                              podman_images: PodmanImages) -> None:
    with open_daemon_image(None, IMPORTED_IMAGE, endpoints=[podman_socket],  # type: ignore[arg-type]
                           spool_dir=tmp_path / "spool") as source:
        assert len(source.layers) == 1
        _check_kernel(source)
    assert list((tmp_path / "spool").iterdir()) == []


def test_without_a_socket_podman_image_save_is_used(tmp_path: Path, podman_images: PodmanImages) -> None:
    spool = tmp_path / "spool"
    source = open_daemon_image(None, GZ_IMAGE, endpoints=[f"unix://{tmp_path}/none.sock"],  # type: ignore[arg-type]
                               spool_dir=spool)
    try:
        assert isinstance(source, SpooledLayoutSource)
        assert source.ref == GZ_IMAGE
        assert source.manifest_digest == podman_images.image_id(GZ_IMAGE)
        _check_kernel(source)
        got = _extract(source, tmp_path / "from-podman")
    finally:
        source.close()
    assert list(spool.iterdir()) == []
    want = _extract(OciLayoutSource(f"oci:{podman_images.gz_layout}:latest"), tmp_path / "from-layout")
    assert got == want


def test_an_image_the_api_cannot_export_comes_through_the_podman_command(
        tmp_path: Path, podman_socket: str, podman_images: PodmanImages) -> None:
    # Podman 4.3 refuses to write a docker-archive of zstd layers; `podman image save` writes oci-dir.
    with open_daemon_image(None, ZSTD_IMAGE, endpoints=[podman_socket],  # type: ignore[arg-type]
                           spool_dir=tmp_path / "spool") as source:
        assert isinstance(source, SpooledLayoutSource | DockerArchiveSource)
        _check_kernel(source)
    assert list((tmp_path / "spool").iterdir()) == []


def test_an_unknown_image_says_both_daemons_were_asked(tmp_path: Path, podman_socket: str,
                                                       podman_images: PodmanImages) -> None:
    with pytest.raises(NbcError) as info:
        open_daemon_image(None, "localhost/no-such:1", endpoints=[podman_socket],  # type: ignore[arg-type]
                          spool_dir=tmp_path / "spool")
    assert info.value.message == "Unknown image localhost/no-such:1: neither Podman nor Docker has it"
    assert podman_socket in (info.value.hint or "")
    assert "podman images" in (info.value.hint or "")
    assert list((tmp_path / "spool").iterdir()) == []


def test_no_daemon_at_all_is_said_plainly(tmp_path: Path) -> None:
    with pytest.raises(NbcError, match="no Podman or Docker daemon is running") as info:
        open_daemon_image(None, GZ_IMAGE, endpoints=[f"unix://{tmp_path}/none.sock"],  # type: ignore[arg-type]
                          spool_dir=tmp_path / "spool", use_podman_cli=False)
    assert "none.sock (not running)" in (info.value.hint or "")


def test_endpoints_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SOCKET_ENV, "/tmp/test.sock")
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert daemon_endpoints() == ["unix:///tmp/test.sock", "unix:///var/run/docker.sock",
                                  "unix:///run/podman/podman.sock"]
    monkeypatch.delenv(SOCKET_ENV)
    monkeypatch.delenv("DOCKER_HOST")
    assert daemon_endpoints() == ["unix:///run/podman/podman.sock", "unix:///var/run/docker.sock"]


def test_a_spool_in_memory_is_refused(tmp_path: Path) -> None:
    if filesystem_type(Path("/dev/shm")) != "tmpfs":
        pytest.skip("/dev/shm is not a tmpfs here")
    with pytest.raises(NbcError, match=r"is in memory \(tmpfs\)"):
        prepare_spool_dir(Path("/dev/shm/nbc-tui-test-spool"))
    Path("/dev/shm/nbc-tui-test-spool").rmdir()
    assert filesystem_type(tmp_path) not in ("tmpfs", "ramfs")  # the tests' own spools are on disk


def test_open_image_reaches_the_socket_named_in_the_environment(
        tmp_path: Path, podman_socket: str, podman_images: PodmanImages, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbc_tui.backend.image import daemon
    from nbc_tui.backend.image.opener import open_image

    monkeypatch.setenv(SOCKET_ENV, podman_socket.removeprefix("unix://"))
    monkeypatch.setattr(daemon, "DEFAULT_SPOOL_DIR", tmp_path / "spool")
    source = open_image(GZ_IMAGE)
    try:
        assert isinstance(source, DockerArchiveSource)
        _check_kernel(source)
    finally:
        source.close()
    assert list((tmp_path / "spool").iterdir()) == []

"""A real Podman, kept away from the machine's own images: a private store, images put in by the test, and
the Docker-compatible API served on a temporary socket.

Loaded for every test by ``pytest_plugins`` in tests/conftest.py.
``CONTAINERS_STORAGE_CONF`` and ``CONTAINERS_CONF`` point podman and skopeo at the private store for the
module's duration (``open_daemon_image`` passes them on to the ``podman`` command it runs).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.oci import ImageSpec, Layer, write_layout
from tests.support.synthetic import base_layer, make_image, second_layer

__all__ = ["PodmanImages", "podman_images", "podman_socket", "podman_storage", "snapshot_tree"]

GZ_IMAGE = "localhost/nbc-test:latest"  # gzip layers: Podman's API exports it as a docker-archive
ZSTD_IMAGE = "localhost/nbc-zstd:latest"  # a zstd layer: Podman 4.3's API cannot export it, its CLI can
IMPORTED_IMAGE = "localhost/nbc-import:latest"  # one layer made by `podman import`


def sh(*argv: str | Path, timeout: float = 300) -> str:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        raise AssertionError(f"{' '.join(map(str, argv))} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


@pytest.fixture(scope="module")
def podman_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private containers store (vfs: no mounts to leave behind), in effect for the whole module."""
    if not shutil.which("podman") or not shutil.which("skopeo"):
        pytest.skip("needs podman and skopeo")
    base = tmp_path_factory.mktemp("podman")
    storage_conf, containers_conf = base / "storage.conf", base / "containers.conf"
    storage_conf.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{base}/root"\nrunroot = "{base}/run"\n')
    containers_conf.write_text(f'[engine]\ntmp_dir = "{base}/tmp"\nevents_logger = "file"\n'
                               f'events_logfile_path = "{base}/events.log"\n')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONTAINERS_STORAGE_CONF", str(storage_conf))
        mp.setenv("CONTAINERS_CONF", str(containers_conf))
        try:
            yield base
        finally:
            subprocess.run(["podman", "rmi", "--all", "--force"], capture_output=True, timeout=120)
            shutil.rmtree(base, ignore_errors=True)


@dataclass
class PodmanImages:
    gz_layout: Path  # the OCI layout GZ_IMAGE was copied from
    zstd_layout: Path
    import_tar: Path  # the rootfs tar IMPORTED_IMAGE was made from

    def image_id(self, name: str) -> str:
        return "sha256:" + sh("podman", "image", "inspect", "--format", "{{.Id}}", name).strip()


@pytest.fixture(scope="module")
def podman_images(podman_storage: Path) -> PodmanImages:
    """Three images in the private store: two copied from OCI layouts by skopeo, one `podman import`ed."""
    gz_layout, zstd_layout = podman_storage / "gz-layout", podman_storage / "zstd-layout"
    write_layout(gz_layout, [ImageSpec([Layer(base_layer(), "gzip"), Layer(second_layer(), "gzip")])])
    # A base of its own: otherwise both images chain the same two layers in the store, and which
    # compression the store remembers for the shared upper layer (gzip or zstd) depends on the copy order.
    make_image(zstd_layout, padding=4096)
    sh("skopeo", "copy", "-q", f"oci:{gz_layout}:latest", f"containers-storage:{GZ_IMAGE}")
    sh("skopeo", "copy", "-q", f"oci:{zstd_layout}:latest", f"containers-storage:{ZSTD_IMAGE}")
    import_tar = podman_storage / "rootfs.tar"
    import_tar.write_bytes(base_layer())
    sh("podman", "import", "-q", import_tar, IMPORTED_IMAGE)
    return PodmanImages(gz_layout, zstd_layout, import_tar)


@pytest.fixture(scope="module")
def podman_socket(podman_storage: Path) -> Iterator[str]:
    """`podman system service` on a temporary socket; yields its ``unix://`` URL once it answers."""
    path = podman_storage / "podman.sock"
    url = f"unix://{path}"
    log = (podman_storage / "service.log").open("wb")
    proc = subprocess.Popen(["podman", "system", "service", "--time=0", url], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_podman(path, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        log.close()


def _wait_for_podman(path: Path, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"podman system service exited with {proc.returncode}")
        if path.exists():
            try:
                version = json.loads(_get(path, "/version"))
            except OSError:
                pass
            else:
                names = [c.get("Name") for c in version.get("Components") or []]
                assert "Podman Engine" in names, f"not Podman at {path}: {names}"
                return
        time.sleep(0.2)
    raise AssertionError(f"podman system service did not answer on {path} within {timeout} s")


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=5)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(str(self._path))


def _get(path: Path, url: str) -> bytes:
    conn = _UnixHTTP(path)
    try:
        conn.request("GET", url)
        response = conn.getresponse()
        if response.status != 200:
            raise OSError(f"{url}: HTTP {response.status}")
        return response.read()
    finally:
        conn.close()


def snapshot_tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under ``root``: type, mode, owner, size, mtime (not of directories), content or target."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath, name)
            st = path.lstat()
            rel = path.relative_to(root).as_posix()
            if stat.S_ISREG(st.st_mode):
                what: object = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(path)
            else:
                what = st.st_rdev
            mtime = None if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_size if not stat.S_ISDIR(st.st_mode) else 0,
                        mtime, what)
    return out

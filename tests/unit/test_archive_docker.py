"""docker-archives (what `docker save` and Podman's API write): layers checked against the config's diff_ids."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from nbc_tui.backend.errors import NbcError
from nbc_tui.backend.image.daemon import DockerArchiveSource
from tests.support.oci import TarBuilder


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _docker_archive(dest: Path, layers: list[bytes], *, stored: list[bytes] | None = None) -> str:
    """Write a docker-archive; ``stored`` replaces what is written for each layer. Returns the image ID."""
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    image_id = hashlib.sha256(config).hexdigest()
    with tarfile.open(dest, "w") as tar:
        names = []
        for i, data in enumerate(stored or layers):
            names.append(f"layer{i}/layer.tar")
            _add(tar, names[-1], data)
        _add(tar, f"{image_id}.json", config)
        _add(tar, "manifest.json", json.dumps([{"Config": f"{image_id}.json", "RepoTags": ["localhost/x:1"],
                                                 "Layers": names}]).encode())
    return f"sha256:{image_id}"


def _tars() -> list[bytes]:
    return [TarBuilder().file("a", b"one").bytes(), TarBuilder().file("b", b"two").whiteout("a").bytes()]


def test_plain_and_compressed_layers_are_served_verified(tmp_path: Path) -> None:
    tars = _tars()
    stored = [tars[0], gzip.compress(tars[1])]
    image_id = _docker_archive(tmp_path / "d.tar", tars, stored=stored)
    spool = tmp_path / "spool"
    spool.mkdir()
    (tmp_path / "d.tar").rename(spool / "d.tar")
    source = DockerArchiveSource(spool / "d.tar", ref="localhost/x:1", image_id=image_id, spool=spool)
    assert source.manifest_digest == image_id
    assert [d.media_type.rpartition(".")[2] for d in source.layers] == ["tar", "tar+gzip"]
    assert [d.digest for d in source.layers] == ["sha256:" + hashlib.sha256(s).hexdigest() for s in stored]
    for desc, data in zip(source.layers, stored, strict=True):
        with source.open_blob(desc) as blob:
            assert blob.read() == data
    source.close()
    assert not spool.exists()
    source.close()  # idempotent


def test_a_layer_that_is_not_its_diff_id_is_refused(tmp_path: Path) -> None:
    tars = _tars()
    _docker_archive(tmp_path / "d.tar", tars, stored=[tars[0], TarBuilder().file("b", b"TWO").bytes()])
    with pytest.raises(NbcError, match=r"layer1/layer\.tar' is not the layer"):
        DockerArchiveSource(tmp_path / "d.tar", ref="localhost/x:1")
    assert (tmp_path / "d.tar").exists()  # not a spool: the file stays


def test_a_config_that_is_not_the_image_the_daemon_named_is_refused(tmp_path: Path) -> None:
    _docker_archive(tmp_path / "d.tar", _tars())
    with pytest.raises(NbcError, match="the daemon said sha256:0000"):
        DockerArchiveSource(tmp_path / "d.tar", ref="localhost/x:1", image_id="sha256:" + "0" * 64)

"""OCI layout sources: which manifest is chosen, and every digest checked."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from nbc_tui.backend.errors import InputError, NbcError
from nbc_tui.backend.image.layout import OciLayoutSource
from nbc_tui.backend.image.oci import host_platform
from nbc_tui.backend.image.opener import open_image
from tests.support.oci import ImageSpec, Layer, TarBuilder, flip_byte, write_layout, write_multiarch_layout


def _layer(marker: str) -> Layer:
    return Layer(TarBuilder().file("marker", marker.encode()).bytes(), "gzip")


def _read_all(source: OciLayoutSource) -> bytes:
    out = b""
    for desc in source.layers:
        with source.open_blob(desc) as blob:
            out += blob.read()
    return out


def test_picks_the_image_by_tag(tmp_path: Path) -> None:
    digests = write_layout(tmp_path, [ImageSpec([_layer("a")], tag="one"), ImageSpec([_layer("b")], tag="two")])
    source = open_image(f"oci:{tmp_path}:two")
    assert source.manifest_digest == digests["two"]
    assert source.index_digest is None
    assert source.config["architecture"] == "amd64"
    assert len(source.layers) == 1
    assert source.layers[0].media_type.endswith("+gzip")


def test_without_a_tag_the_only_image_is_used(tmp_path: Path) -> None:
    digests = write_layout(tmp_path, [ImageSpec([_layer("a"), _layer("b")], tag="whatever")])
    source = open_image(f"oci:{tmp_path}")
    assert source.manifest_digest == digests["whatever"]
    assert len(source.layers) == 2


def test_without_a_tag_several_images_are_ambiguous(tmp_path: Path) -> None:
    write_layout(tmp_path, [ImageSpec([_layer("a")], tag="one"), ImageSpec([_layer("b")], tag="two")])
    with pytest.raises(InputError) as info:
        open_image(f"oci:{tmp_path}")
    assert "one, two" in (info.value.hint or "")


def test_a_missing_tag_is_refused_listing_the_tags(tmp_path: Path) -> None:
    write_layout(tmp_path, [ImageSpec([_layer("a")], tag="stable"), ImageSpec([_layer("b")], tag="beta")])
    with pytest.raises(InputError) as info:
        open_image(f"oci:{tmp_path}:nightly")
    assert "'nightly'" in info.value.message
    assert "beta, stable" in (info.value.hint or "")
    assert info.value.details["tags"] == ["beta", "stable"]


def test_a_full_reference_in_ref_name_matches_by_its_tag(tmp_path: Path) -> None:
    digests = write_layout(tmp_path, [ImageSpec([_layer("a")], tag="localhost/snow:42")])
    assert open_image(f"oci:{tmp_path}:42").manifest_digest == digests["localhost/snow:42"]


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_an_image_index_resolves_to_the_host_platform(tmp_path: Path, arch: str) -> None:
    digests = write_multiarch_layout(tmp_path, {"arm64": [_layer("arm")], "amd64": [_layer("x86")]})
    source = OciLayoutSource(f"oci:{tmp_path}:latest", host=("linux", arch))
    assert source.manifest_digest == digests[arch]
    assert source.index_digest == digests["index"]
    assert source.config["architecture"] == arch


def test_the_host_platform_is_linux_and_an_oci_architecture() -> None:
    os_, arch = host_platform()
    assert os_ == "linux"
    assert arch in ("amd64", "arm64")


def test_an_index_without_this_platform_is_refused(tmp_path: Path) -> None:
    write_multiarch_layout(tmp_path, {"arm64": [_layer("arm")], "ppc64le": [_layer("p")]})
    with pytest.raises(InputError) as info:
        OciLayoutSource(f"oci:{tmp_path}", host=("linux", "amd64"))
    assert "linux/amd64" in info.value.message
    assert "linux/arm64, linux/ppc64le" in (info.value.hint or "")  # the attestation is not listed


def test_not_a_layout(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not an OCI image layout"):
        open_image(f"oci:{tmp_path}")
    with pytest.raises(InputError, match="not a directory"):
        open_image(f"oci:{tmp_path}/nope")


def test_a_missing_blob_is_named(tmp_path: Path) -> None:
    write_layout(tmp_path, [ImageSpec([_layer("a")])])
    source = open_image(f"oci:{tmp_path}")
    layer = source.layers[0]
    (tmp_path / "blobs" / "sha256" / layer.digest.split(":")[1]).unlink()
    with pytest.raises(InputError, match="missing") as info:
        source.open_blob(layer)
    assert layer.digest in info.value.message


def test_a_blob_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    """A directory where a blob should be (or a file root may not read): bad input that names it, no traceback."""
    write_layout(tmp_path, [ImageSpec([_layer("a")])])
    source = open_image(f"oci:{tmp_path}")
    layer = source.layers[0]
    path = tmp_path / "blobs" / "sha256" / layer.digest.split(":")[1]
    path.unlink()
    path.mkdir()
    with pytest.raises(InputError, match="cannot be read: Is a directory") as info:
        source.open_blob(layer)
    assert layer.digest in info.value.message
    config = tmp_path / "blobs" / "sha256" / source.config_digest.split(":")[1]
    config.unlink()
    config.mkdir()
    with pytest.raises(InputError, match="cannot be read"):
        open_image(f"oci:{tmp_path}")


def test_an_index_entry_whose_platform_is_not_an_object_matches_no_platform(tmp_path: Path) -> None:
    write_multiarch_layout(tmp_path, {"amd64": [_layer("x")]})
    index_blob = next(p for p in (tmp_path / "blobs" / "sha256").iterdir()
                      if b'"manifests"' in p.read_bytes() and b'"platform"' in p.read_bytes())
    index = json.loads(index_blob.read_bytes())
    for entry in index["manifests"]:
        entry["platform"] = "linux/amd64"
    data = json.dumps(index).encode()
    digest = hashlib.sha256(data).hexdigest()
    (tmp_path / "blobs" / "sha256" / digest).write_bytes(data)
    top = json.loads((tmp_path / "index.json").read_text())
    top["manifests"][0].update(digest=f"sha256:{digest}", size=len(data))
    (tmp_path / "index.json").write_text(json.dumps(top))
    with pytest.raises(InputError, match="has no image for this machine"):
        OciLayoutSource(f"oci:{tmp_path}", host=("linux", "amd64"))


def test_a_corrupt_manifest_is_refused(tmp_path: Path) -> None:
    digests = write_layout(tmp_path, [ImageSpec([_layer("a")])])
    path = tmp_path / "blobs" / "sha256" / digests["latest"].split(":")[1]
    manifest = json.loads(path.read_bytes())
    manifest["annotations"] = {"x": "y"}  # still valid JSON, different bytes
    path.write_text(json.dumps(manifest))
    with pytest.raises(NbcError, match="does not match") as info:
        open_image(f"oci:{tmp_path}")
    assert digests["latest"] in info.value.message
    assert info.value.exit_code == 1  # the image is damaged, the request was fine


def test_a_corrupt_config_is_refused(tmp_path: Path) -> None:
    write_layout(tmp_path, [ImageSpec([_layer("a")])])
    index = json.loads((tmp_path / "index.json").read_text())
    manifest = json.loads((tmp_path / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_text())
    config_digest = manifest["config"]["digest"]
    flip_byte(tmp_path, config_digest, 3)
    with pytest.raises(NbcError, match="Image config") as info:
        open_image(f"oci:{tmp_path}")
    assert config_digest in info.value.message


def test_a_corrupt_layer_fails_at_its_end_and_keeps_failing(tmp_path: Path) -> None:
    write_layout(tmp_path, [ImageSpec([_layer("a")])])
    source = open_image(f"oci:{tmp_path}")
    assert _read_all(source)  # intact: reads fine
    layer = source.layers[0]
    flip_byte(tmp_path, layer.digest, 20)
    with source.open_blob(layer) as blob, pytest.raises(NbcError, match="does not match its digest") as info:
        blob.read()
    assert layer.digest in info.value.message
    assert info.value.exit_code == 1
    with source.open_blob(layer) as blob:
        blob.read(10)  # fine before the end...
        with pytest.raises(NbcError):
            blob.read()
        with pytest.raises(NbcError):  # ...and sticky after
            blob.read()


def test_a_blob_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    write_layout(tmp_path, [ImageSpec([_layer("a")])])
    source = open_image(f"oci:{tmp_path}")
    layer = source.layers[0]
    path = tmp_path / "blobs" / "sha256" / layer.digest.split(":")[1]
    path.write_bytes(path.read_bytes() + b"\0")
    with source.open_blob(layer) as blob, pytest.raises(NbcError, match="larger than"):
        blob.read()
    path.write_bytes(path.read_bytes()[:-2])
    with source.open_blob(layer) as blob, pytest.raises(NbcError, match="descriptor says"):
        blob.read()


def test_a_digest_that_is_not_hex_is_refused(tmp_path: Path) -> None:
    write_layout(tmp_path, [ImageSpec([_layer("a")])])
    index = json.loads((tmp_path / "index.json").read_text())
    index["manifests"][0]["digest"] = "sha256:../../../etc/passwd"
    (tmp_path / "index.json").write_text(json.dumps(index))
    with pytest.raises(InputError, match="invalid digest"):
        open_image(f"oci:{tmp_path}")

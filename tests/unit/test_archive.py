"""OCI archives (a tar of a layout) read in place: same choice of manifest and same checks as a layout."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from nbc_tui.backend.errors import InputError, NbcError
from nbc_tui.backend.image import reference
from nbc_tui.backend.image.archive import OciArchiveSource, TarMembers
from nbc_tui.backend.image.layout import OciLayoutSource
from tests.support.oci import ImageSpec, Layer, TarBuilder, write_layout, write_multiarch_layout


@dataclass(frozen=True)
class _StandInRef:
    """Until reference.py has OciArchiveRef: the same two fields."""

    path: Path
    tag: str | None


ArchiveRef = getattr(reference, "OciArchiveRef", _StandInRef)


def _layer(marker: str) -> Layer:
    return Layer(TarBuilder().file("marker", marker.encode()).bytes(), "gzip")


def _archive(layout: Path, dest: Path, *, prefix: str = "", skip: str = "") -> Path:
    """Tar up a layout as skopeo does (blobs, index.json, oci-layout at the top)."""
    with tarfile.open(dest, "w") as tar:
        for path in sorted(layout.rglob("*")):
            rel = path.relative_to(layout).as_posix()
            if path.is_file() and rel != skip:
                tar.add(path, arcname=prefix + rel)
    return dest


def _blobs(source: OciLayoutSource) -> list[bytes]:
    out = []
    for desc in source.layers:
        with source.open_blob(desc) as blob:
            out.append(blob.read())
    return out


@pytest.mark.parametrize("prefix", ["", "./"])
def test_an_archive_reads_like_its_layout(tmp_path: Path, prefix: str) -> None:
    layout = tmp_path / "layout"
    digests = write_layout(layout, [ImageSpec([_layer("a"), _layer("b")], tag="one"),
                                    ImageSpec([_layer("c")], tag="two")])
    archive = _archive(layout, tmp_path / "image.tar", prefix=prefix)
    source = OciArchiveSource(ArchiveRef(archive, "one"))
    plain = OciLayoutSource(f"oci:{layout}:one")
    assert source.manifest_digest == plain.manifest_digest == digests["one"]
    assert source.config == plain.config
    assert source.layers == plain.layers
    assert _blobs(source) == _blobs(plain)
    assert source.ref == f"oci-archive:{archive}:one"
    source.close()


def test_blobs_can_be_open_together(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    write_layout(layout, [ImageSpec([_layer("a"), _layer("b")])])
    source = OciArchiveSource(ArchiveRef(_archive(layout, tmp_path / "a.tar"), None))
    first, second = (source.open_blob(d) for d in source.layers)
    with first, second:
        a1 = first.read(5)
        b = second.read()
        a = a1 + first.read()
    assert [a, b] == _blobs(source)


def test_tags_and_platforms_are_chosen_as_in_a_layout(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    digests = write_multiarch_layout(layout, {"arm64": [_layer("arm")], "amd64": [_layer("x86")]})
    archive = _archive(layout, tmp_path / "multi.tar")
    source = OciArchiveSource(ArchiveRef(archive, "latest"), host=("linux", "arm64"))
    assert (source.index_digest, source.manifest_digest) == (digests["index"], digests["arm64"])
    with pytest.raises(InputError, match=r"The OCI archive .* has no image tagged 'nightly'"):
        OciArchiveSource(ArchiveRef(archive, "nightly"))


def test_a_corrupt_layer_in_the_archive_is_refused(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    write_layout(layout, [ImageSpec([_layer("a")])])
    archive = _archive(layout, tmp_path / "a.tar")
    source = OciArchiveSource(ArchiveRef(archive, None))
    layer = source.layers[0]
    with TarMembers(archive, what="test").open(f"blobs/sha256/{layer.digest[7:]}") as f:
        assert len(f.read()) == layer.size
    with tarfile.open(archive) as tar:
        offset = next(m.offset_data for m in tar if m.name.endswith(layer.digest[7:]))
    with archive.open("r+b") as f:
        f.seek(offset + 12)
        byte = f.read(1)
        f.seek(offset + 12)
        f.write(bytes([byte[0] ^ 0xFF]))
    with source.open_blob(layer) as blob, pytest.raises(NbcError, match="does not match its digest"):
        blob.read()


def test_what_is_not_an_oci_archive_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        OciArchiveSource(ArchiveRef(tmp_path / "nope.tar", None))
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x1f\x8b not a tar at all" * 40)
    with pytest.raises(InputError, match="not a readable"):
        OciArchiveSource(ArchiveRef(junk, None))
    other = tmp_path / "docker.tar"
    with tarfile.open(other, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        data = json.dumps([{"Config": "c.json", "Layers": []}]).encode()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(InputError, match="is not an OCI archive") as info_:
        OciArchiveSource(ArchiveRef(other, None))
    assert "docker save" in (info_.value.hint or "")


def test_a_missing_blob_is_named(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    write_layout(layout, [ImageSpec([_layer("a")])])
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"]
    archive = _archive(layout, tmp_path / "a.tar", skip=f"blobs/sha256/{manifest_digest[7:]}")
    with pytest.raises(InputError, match="missing from the OCI archive") as info:
        OciArchiveSource(ArchiveRef(archive, None))
    assert manifest_digest in info.value.message

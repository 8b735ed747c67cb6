"""OCI archives written by the real tools (skopeo, podman save) install the same tree as their layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from nbc_tui.backend.image import reference
from nbc_tui.backend.image.archive import OciArchiveSource
from nbc_tui.backend.image.extract import extract_image
from nbc_tui.backend.image.layout import OciLayoutSource
from nbc_tui.backend.image.scan import scan_image
from nbc_tui.backend.image.source import ImageSource
from nbc_tui.backend.runner import RunContext
from tests.integration.podman_fixtures import GZ_IMAGE, PodmanImages, sh, snapshot_tree
from tests.support.synthetic import KVER, make_image

pytestmark = pytest.mark.root


@dataclass(frozen=True)
class _StandInRef:
    """Until reference.py has OciArchiveRef: the same two fields."""

    path: Path
    tag: str | None


ArchiveRef = getattr(reference, "OciArchiveRef", _StandInRef)


def _extract(source: ImageSource, dest: Path) -> dict[str, tuple[object, ...]]:
    assert [k.version for k in scan_image(source).kernels] == [KVER]
    dest.mkdir()
    extract_image(source, dest, ctx=RunContext())
    return snapshot_tree(dest)


def test_an_archive_written_by_skopeo(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    make_image(layout, tag="stable")  # gzip and zstd layers, a whiteout
    archive = tmp_path / "image.tar"
    sh("skopeo", "copy", "-q", f"oci:{layout}:stable", f"oci-archive:{archive}:stable")
    source = OciArchiveSource(ArchiveRef(archive, "stable"))
    plain = OciLayoutSource(f"oci:{layout}:stable")
    assert source.manifest_digest == plain.manifest_digest
    assert [d.digest for d in source.layers] == [d.digest for d in plain.layers]
    assert _extract(source, tmp_path / "a") == _extract(plain, tmp_path / "b")
    assert not any(p.name.startswith("blobs") for p in tmp_path.iterdir())  # nothing unpacked


def test_an_archive_written_by_podman_save(tmp_path: Path, podman_images: PodmanImages) -> None:
    archive = tmp_path / "podman.tar"
    sh("podman", "save", "-q", "--format", "oci-archive", "-o", archive, GZ_IMAGE)
    source = OciArchiveSource(ArchiveRef(archive, None))
    assert source.config_digest == podman_images.image_id(GZ_IMAGE)
    plain = OciLayoutSource(f"oci:{podman_images.gz_layout}:latest")
    assert _extract(source, tmp_path / "a") == _extract(plain, tmp_path / "b")

"""The spool that keeps a remote image's blobs between the check and the extraction (image/spool.py): a blob
is kept only once verified, read back verified, dropped when the spool fills up (the source serves it again),
and a spool with no room is not used. A small tmpfs stands in for the live ISO's RAM-backed /var/tmp.
The whole install from a registry, counting the bytes it serves, is in test_install_sources.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nbc_tui.backend.errors import NbcError
from nbc_tui.backend.image.layout import OciLayoutSource
from nbc_tui.backend.image.source import BlobStream, Descriptor, ImageSource
from nbc_tui.backend.image.spool import SpooledSource, make_spool, spool_problem
from tests.conftest import mounted_tmpfs
from tests.support.synthetic import make_image

pytestmark = pytest.mark.root


class CountingSource(ImageSource):
    """A layout source that counts what it serves (a registry stand-in)."""

    remote = True

    def __init__(self, inner: OciLayoutSource) -> None:
        self.inner = inner
        self.ref, self.manifest_digest, self.index_digest = inner.ref, inner.manifest_digest, inner.index_digest
        self.config, self.layers = inner.config, inner.layers
        self.served: list[str] = []

    def open_blob(self, desc: Descriptor) -> BlobStream:
        self.served.append(desc.digest)
        return self.inner.open_blob(desc)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "ram", "size=4k") as where:
        yield where


def image(tmp_path: Path, **kwargs: object) -> tuple[CountingSource, Descriptor]:
    ref = make_image(tmp_path / "layout", compression="gzip", padding=256 << 10, **kwargs)
    source = CountingSource(OciLayoutSource(ref))
    big = max(source.layers, key=lambda d: d.size)
    return source, big


def read(stream: BlobStream) -> bytes:
    with stream:
        return stream.read()


def test_each_blob_is_served_once_and_later_layers_ahead_of_the_reader(tmp_path: Path) -> None:
    source, _ = image(tmp_path)
    first, second = source.layers
    spooled = SpooledSource(source, make_spool(tmp_path))
    data = read(spooled.open_blob(first))
    assert spooled.spooled(first) and oct(spooled.directory.stat().st_mode & 0o777) == "0o700"
    assert read(spooled.open_blob(second)) == source.inner.blob_path(second.digest).read_bytes()
    assert read(spooled.open_blob(first)) == data
    assert sorted(source.served) == sorted([first.digest, second.digest])  # the second one fetched ahead
    spooled.close()
    assert not spooled.directory.exists()


def test_a_blob_not_read_to_its_end_or_corrupt_is_not_kept(tmp_path: Path) -> None:
    source, big = image(tmp_path)
    spooled = SpooledSource(source, make_spool(tmp_path))
    kept_of_big = lambda: [p for p in spooled.directory.iterdir() if big.digest.split(":")[1] in p.name]  # noqa: E731
    with spooled.open_blob(big) as stream:
        stream.read(1000)
    assert not spooled.spooled(big) and kept_of_big() == []
    blob = source.inner.blob_path(big.digest)
    data = bytearray(blob.read_bytes())
    data[-100] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(NbcError, match="does not match its digest"):
        read(spooled.open_blob(big))
    assert kept_of_big() == [], "a blob that failed its digest is never kept"
    spooled.close()


def test_a_full_spool_drops_the_blob_and_the_source_serves_it_again(tmp_path: Path, small_tmpfs: Path) -> None:
    source, big = image(tmp_path)
    assert big.size > 4096
    spooled = SpooledSource(source, make_spool(small_tmpfs))
    first = read(spooled.open_blob(big))  # the copy fails part-way: the read does not
    assert big.digest in spooled.lost and not spooled.spooled(big)
    assert read(spooled.open_blob(big)) == first
    assert source.served.count(big.digest) == 2
    spooled.close()


def test_no_room_means_no_spool(small_tmpfs: Path, tmp_path: Path) -> None:
    assert "free" in (spool_problem(1 << 20, small_tmpfs) or "")
    assert spool_problem(1 << 20, tmp_path) is None  # a disk with room to spare
    assert "cannot be used" in (spool_problem(1, tmp_path / "missing") or "")

"""The staged cache's pure logic: metadata keys and order, lookup by digest/prefix/reference, listing rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbc_tui.backend.errors import InputError, NbcError
from nbc_tui.backend.image.cache import (
    CachedImage,
    CacheKind,
    cache_dir,
    digest_to_dir,
    dir_to_digest,
    find_cached,
    list_cached,
    single_staged,
)

D1 = "sha256:" + "ab12" * 16
D2 = "sha256:" + "ab34" * 16
D3 = "sha256:" + "cd56" * 16
NBC_KEYS = ["image_ref", "image_digest", "download_date", "architecture", "labels", "os_release_pretty_name",
            "os_release_version_id", "os_release_id", "size_bytes"]


@pytest.fixture(autouse=True)
def cache_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NBC_TUI_CACHE_ROOT", str(tmp_path / "cache"))
    monkeypatch.setenv("NBC_TUI_LOCK_DIR", str(tmp_path / "lock"))
    return tmp_path / "cache"


def put(kind: CacheKind, digest: str, ref: str, **extra: object) -> Path:
    d = cache_dir(kind) / digest_to_dir(digest)
    d.mkdir(parents=True)
    (d / "metadata.json").write_text(json.dumps({"image_ref": ref, "image_digest": digest, **extra}, indent=2))
    return d


def test_metadata_keys_in_nbc_order_then_ours() -> None:
    entry = CachedImage(image_ref="quay.io/x/y:1", image_digest=D1, download_date="2025-01-02T03:04:05Z",
                        architecture="amd64", labels={"a": "b"}, os_release_pretty_name="Debian GNU/Linux 12",
                        os_release_version_id="12", os_release_id="debian", size_bytes=123,
                        index_digest=D2, compressed_size_bytes=45, path=Path("/x"))
    data = entry.metadata_json()
    assert list(data) == [*NBC_KEYS, "index_digest", "compressed_size_bytes"]
    assert "path" not in data and "already_cached" not in data
    assert data["labels"] == {"a": "b"} and data["size_bytes"] == 123


def test_metadata_omits_labels_when_none_but_keeps_empty_strings() -> None:
    data = CachedImage(image_ref="r", image_digest=D1).metadata_json()
    assert "labels" not in data and "index_digest" not in data and "compressed_size_bytes" not in data
    assert data["os_release_id"] == "" and data["size_bytes"] == 0


def test_nbc_written_metadata_reads() -> None:
    # What nbc itself writes: no keys of ours, os_release_id always "".
    nbc = {"image_ref": "ghcr.io/a/b:latest", "image_digest": D1, "download_date": "2025-01-02T03:04:05Z",
           "architecture": "amd64", "os_release_pretty_name": "Snow", "os_release_version_id": "42",
           "os_release_id": "", "size_bytes": 999}
    entry = CachedImage.model_validate_json(json.dumps(nbc))
    assert entry.metadata_json() == nbc


def test_dir_names() -> None:
    assert digest_to_dir(D1) == "sha256-" + "ab12" * 16
    assert dir_to_digest("sha256-" + "ab12" * 16) == D1
    assert dir_to_digest("sha256-a-b") == "sha256:a-b"  # only the first '-'


def test_list_ignores_dot_dirs_files_and_unreadable_metadata() -> None:
    put(CacheKind.INSTALL, D1, "one")
    root = cache_dir(CacheKind.INSTALL)
    (root / ".download-x1").mkdir()
    (root / ".download-x1" / "metadata.json").write_text(json.dumps({"image_ref": "z", "image_digest": D3}))
    (root / "stray-file").write_text("x")
    (root / ("sha256-" + "ef" * 32)).mkdir()  # no metadata
    broken = root / ("sha256-" + "99" * 32)
    broken.mkdir()
    (broken / "metadata.json").write_text("{not json")
    skipped: list[str] = []
    entries = list_cached(CacheKind.INSTALL, skipped=skipped)
    assert [e.image_digest for e in entries] == [D1]
    assert entries[0].path == root / digest_to_dir(D1)
    assert len(skipped) == 2
    assert list_cached(CacheKind.UPDATE) == []


@pytest.mark.parametrize("key", [D1, digest_to_dir(D1), "sha256:ab12ab12", "sha256-ab12", "quay.io/a/one:1"])
def test_find_by_digest_prefix_or_reference(key: str) -> None:
    put(CacheKind.INSTALL, D1, "quay.io/a/one:1")
    put(CacheKind.INSTALL, D2, "quay.io/a/two:1")
    put(CacheKind.INSTALL, D3, "quay.io/a/three:1")
    assert find_cached(CacheKind.INSTALL, key).image_digest == D1


def test_find_ambiguous_prefix_and_not_found() -> None:
    put(CacheKind.INSTALL, D1, "one")
    put(CacheKind.INSTALL, D2, "two")
    with pytest.raises(InputError, match="ambiguous reference, multiple matches found") as exc:
        find_cached(CacheKind.INSTALL, "sha256:ab")
    assert set(exc.value.details["matches"]) == {D1, D2}
    with pytest.raises(NbcError, match="image not found in cache"):
        find_cached(CacheKind.INSTALL, "sha256:ff")
    with pytest.raises(NbcError, match="image not found in cache"):
        find_cached(CacheKind.UPDATE, D1)  # the other cache is not searched
    with pytest.raises(InputError):
        find_cached(CacheKind.INSTALL, "  ")


def test_single_staged() -> None:
    assert single_staged(CacheKind.INSTALL) is None
    put(CacheKind.INSTALL, D1, "one")
    assert single_staged(CacheKind.INSTALL).image_ref == "one"  # type: ignore[union-attr]
    put(CacheKind.INSTALL, D3, "three")
    with pytest.raises(InputError) as exc:
        single_staged(CacheKind.INSTALL)
    assert f"  {D1} (one)" in exc.value.message and f"  {D3} (three)" in exc.value.message
    assert "--local-image" in (exc.value.hint or "")


def test_an_entry_whose_layout_holds_another_manifest_is_not_opened(tmp_path: Path) -> None:
    """A staged entry is installed under its metadata's digest (and signature verdict): its layout must hold
    that very manifest."""
    from tests.support.oci import ImageSpec, Layer, TarBuilder, write_layout

    layer = Layer(TarBuilder().file("marker", b"a").bytes(), "gzip")
    layout = tmp_path / "layout"
    digest = write_layout(layout, [ImageSpec([layer], tag="x")])["x"]
    entry = CachedImage(image_ref="quay.io/a/one:1", image_digest=digest, path=layout)
    assert entry.open_source().manifest_digest == digest
    wrong = entry.model_copy(update={"image_digest": D1})
    with pytest.raises(NbcError, match=f"holds the manifest {digest}, not {D1}") as info:
        wrong.open_source()
    assert "cache remove" in (info.value.hint or "")


def test_downloading_again_adds_a_verified_check_to_the_entry(cache_env: Path, tmp_path: Path) -> None:
    """First staged with --insecure-skip-verify, then downloaded again with --cosign-key: the entry (the same
    bytes) now records the signature, so an install --local-image --cosign-key takes it."""
    from nbc_tui.backend.image.cache import _commit
    from nbc_tui.backend.provenance import SignatureCheck, Verification, not_verified

    root = cache_dir(CacheKind.INSTALL)
    root.mkdir(parents=True)
    signed = SignatureCheck(method="cosign", signer="sha256:" + "5" * 64, signed_digest=D1)
    cosign = Verification(verified=True, by="--cosign-key k.pub", signatures=[signed])
    skipped = not_verified("--insecure-skip-verify", "signatures not checked")

    def download(verdict: Verification) -> CachedImage:
        staging = root / f".download-{len(list(root.iterdir()))}"
        staging.mkdir()
        entry = CachedImage(image_ref="quay.io/a/one:1", image_digest=D1, verification=verdict)
        (staging / "metadata.json").write_text(json.dumps(entry.metadata_json()))
        return _commit(staging, root, entry, replace_others=False, lock_wait=1, say=lambda _m: None)

    assert download(skipped).verification == skipped
    again = download(cosign)
    assert again.already_cached and again.verification == cosign
    assert find_cached(CacheKind.INSTALL, D1).verification == cosign  # written to its metadata.json
    assert download(skipped).verification == cosign  # an unverified download takes nothing away
    gpg = SignatureCheck(method="gpg", signer="ABCD" * 10, signed_digest=D1)
    both = download(Verification(verified=True, by="policy p.json", signatures=[gpg])).verification
    assert both is not None and both.signatures == [signed, gpg] and both.by == "--cosign-key k.pub; policy p.json"

"""The staged cache for real: OCI layouts written, scanned back, listed, removed, cleared; the download and
cache commands (text and JSON); cancellation, damaged blobs and a full disk leave no entry behind; two
processes contending for the cache lock."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from nbc_tui.backend.errors import Cancelled, InputError, NbcError
from nbc_tui.backend.events import Event, ProgressEvent
from nbc_tui.backend.image.cache import (
    CacheKind,
    cache_dir,
    clear_cache,
    digest_to_dir,
    download,
    find_cached,
    list_cached,
    remove_cached,
    single_staged,
)
from nbc_tui.backend.image.layout import OciLayoutSource
from nbc_tui.backend.image.oci import REF_NAME
from nbc_tui.backend.image.opener import open_image
from nbc_tui.backend.image.reference import OciLayoutRef
from nbc_tui.backend.image.scan import scan_image
from nbc_tui.backend.image.source import BlobStream, Descriptor, ImageSource
from nbc_tui.backend.locks import CACHE_BUSY_EXCLUSIVE, CACHE_BUSY_SHARED
from nbc_tui.backend.operations.download import DownloadRequest, StagedImage, stage_image
from nbc_tui.backend.runner import RunContext
from nbc_tui.backend.system.state import SystemConfig, write_system_config
from nbc_tui.commands.cache_cmd import add_cache_parser, add_download_parser
from tests.support.oci import ImageSpec, Layer, TarBuilder, flip_byte, write_layout, write_multiarch_layout
from tests.support.synthetic import base_layer, make_image, second_layer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def cache_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NBC_TUI_CACHE_ROOT", str(tmp_path / "cache"))
    monkeypatch.setenv("NBC_TUI_LOCK_DIR", str(tmp_path / "lock"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two different small images, one with labels and a bigger random layer (several chunks)."""
    base = tmp_path_factory.mktemp("images")
    one = make_image(base / "one")
    big = TarBuilder().dir("usr").dir("usr/share").file("usr/share/blob.bin", os.urandom(3 << 20)).bytes()
    write_layout(base / "two", [ImageSpec([Layer(base_layer(), "gzip"), Layer(second_layer(), "zstd"),
                                           Layer(big, "gzip")], tag="v2",
                                          labels={"org.opencontainers.image.title": "Label Title",
                                                  "com.example.k": "v"})])
    return {"one": one, "two": f"oci:{base / 'two'}:v2"}


def leftovers(kind: CacheKind) -> list[str]:
    root = cache_dir(kind)
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


# -- the backend ---------------------------------------------------------------------------------------

def test_download_writes_a_valid_layout_with_true_metadata(images: dict[str, str]) -> None:
    ref = images["two"]
    source = open_image(ref)
    expected = scan_image(source)
    progress: list[tuple[int, int]] = []
    entry = download(source, CacheKind.INSTALL, ref_text=ref, on_progress=lambda d, t: progress.append((d, t)))

    assert entry.path == cache_dir(CacheKind.INSTALL) / digest_to_dir(source.manifest_digest)
    assert leftovers(CacheKind.INSTALL) == [entry.path.name]  # no staging dir left
    # a valid OCI layout: one manifest, annotated, opens back and scans to the same tree
    index = json.loads((entry.path / "index.json").read_text())
    assert len(index["manifests"]) == 1 and index["manifests"][0]["annotations"][REF_NAME] == ref
    assert json.loads((entry.path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    back = OciLayoutSource(OciLayoutRef(entry.path, None))
    assert back.manifest_digest == source.manifest_digest and back.layers == source.layers
    again = scan_image(back)
    assert again.uncompressed_bytes == expected.uncompressed_bytes
    blobs = {p.name for p in (entry.path / "blobs" / "sha256").iterdir()}
    assert blobs == {d.digest.split(":")[1] for d in source.layers} | {
        source.manifest_digest.split(":")[1], source.config_digest.split(":")[1]}  # type: ignore[attr-defined]
    # metadata: nbc's keys in order, values true
    meta = json.loads((entry.path / "metadata.json").read_text())
    assert list(meta)[:9] == ["image_ref", "image_digest", "download_date", "architecture", "labels",
                              "os_release_pretty_name", "os_release_version_id", "os_release_id", "size_bytes"]
    assert meta["image_ref"] == ref and meta["image_digest"] == source.manifest_digest
    assert meta["os_release_pretty_name"] == "Synthetic Linux 1 (test)"  # the image's os-release, not a label
    assert meta["os_release_version_id"] == "1" and meta["os_release_id"] == "synthetic"
    assert meta["labels"]["com.example.k"] == "v" and meta["architecture"] == "amd64"
    assert meta["size_bytes"] == expected.uncompressed_bytes > 3 << 20
    assert meta["compressed_size_bytes"] == source.compressed_size
    assert datetime.strptime(meta["download_date"], "%Y-%m-%dT%H:%M:%SZ")
    assert (entry.path / "metadata.json").read_text().startswith('{\n  "image_ref"')
    assert progress[-1] == (progress[-1][1], progress[-1][1]) and progress[-1][1] >= source.compressed_size


def test_index_resolves_to_this_platform_and_records_both_digests(tmp_path: Path) -> None:
    digests = write_multiarch_layout(tmp_path / "multi", {"amd64": [Layer(base_layer())],
                                                          "arm64": [Layer(second_layer())]})
    ref = f"oci:{tmp_path / 'multi'}:latest"
    entry = download(open_image(ref), CacheKind.INSTALL, ref_text=ref)
    assert entry.image_digest == digests["amd64"] and entry.index_digest == digests["index"]
    assert json.loads((entry.path / "metadata.json").read_text())["index_digest"] == digests["index"]  # type: ignore[operator]


def test_already_cached_keeps_the_entry(images: dict[str, str]) -> None:
    first = download(open_image(images["one"]), CacheKind.INSTALL, ref_text=images["one"])
    stamp = (first.path / "metadata.json").read_text()  # type: ignore[operator]
    messages: list[str] = []
    second = download(open_image(images["one"]), CacheKind.INSTALL, ref_text="another name",
                      on_message=messages.append)
    assert second.already_cached and second.image_ref == images["one"]
    assert any(m.startswith("Image already cached: ") for m in messages)
    assert (first.path / "metadata.json").read_text() == stamp  # type: ignore[operator]
    assert leftovers(CacheKind.INSTALL) == [first.path.name]  # type: ignore[union-attr]


def test_entry_without_metadata_is_replaced(images: dict[str, str]) -> None:
    source = open_image(images["one"])
    junk = cache_dir(CacheKind.INSTALL) / digest_to_dir(source.manifest_digest)
    junk.mkdir(parents=True)
    (junk / "half-written").write_text("x")
    entry = download(source, CacheKind.INSTALL, ref_text=images["one"])
    assert not entry.already_cached and not (junk / "half-written").exists()
    assert leftovers(CacheKind.INSTALL) == [junk.name]


def test_list_find_remove_clear(images: dict[str, str]) -> None:
    a = download(open_image(images["one"]), CacheKind.INSTALL, ref_text=images["one"])
    b = download(open_image(images["two"]), CacheKind.INSTALL, ref_text=images["two"])
    assert [e.image_digest for e in list_cached(CacheKind.INSTALL)] == sorted([a.image_digest, b.image_digest])
    assert find_cached(CacheKind.INSTALL, images["two"]).image_digest == b.image_digest
    assert find_cached(CacheKind.INSTALL, b.image_digest[:15]).open_source().manifest_digest == b.image_digest
    prefix = digest_to_dir(a.image_digest)[:14]
    assert remove_cached(None, prefix) == a.image_digest
    assert leftovers(CacheKind.INSTALL) == [b.dir_name]
    with pytest.raises(NbcError, match="image not found in cache"):
        remove_cached(CacheKind.UPDATE, b.image_digest)
    clear_cache(CacheKind.INSTALL)
    assert leftovers(CacheKind.INSTALL) == []


def test_update_cache_holds_one_image(images: dict[str, str]) -> None:
    download(open_image(images["one"]), CacheKind.UPDATE, ref_text=images["one"])
    b = download(open_image(images["two"]), CacheKind.UPDATE, ref_text=images["two"])
    assert leftovers(CacheKind.UPDATE) == [b.dir_name]
    assert single_staged(CacheKind.UPDATE).image_digest == b.image_digest  # type: ignore[union-attr]
    assert remove_cached(None, b.image_digest[:12]) == b.image_digest  # not in install: found in update


class _CancelAfterFirstChunk(ImageSource):
    """Wraps a source; the first chunk read of the big layer sets the cancel event."""

    def __init__(self, inner: ImageSource, cancel: threading.Event) -> None:
        self._inner, self._cancel = inner, cancel
        self.ref, self.manifest_digest, self.index_digest = inner.ref, inner.manifest_digest, inner.index_digest
        self.config, self.layers = inner.config, inner.layers
        self.manifest_bytes = inner.blob_path(inner.manifest_digest).read_bytes()  # type: ignore[attr-defined]

    def open_blob(self, desc: Descriptor) -> BlobStream:
        stream = self._inner.open_blob(desc)
        if desc.size > 1 << 20:
            real_read = stream.read

            def read(n: int = -1) -> bytes:
                self._cancel.set()
                return real_read(n)

            stream.read = read  # type: ignore[method-assign]
        return stream


def test_cancel_mid_download_leaves_nothing(images: dict[str, str]) -> None:
    cancel = threading.Event()
    source = _CancelAfterFirstChunk(open_image(images["two"]), cancel)
    with pytest.raises(Cancelled):
        download(source, CacheKind.INSTALL, ref_text=images["two"], cancel=cancel)
    assert cancel.is_set() and leftovers(CacheKind.INSTALL) == []


def test_damaged_blob_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    ref = make_image(tmp_path / "bad")
    source = open_image(ref)
    flip_byte(tmp_path / "bad", source.layers[0].digest)
    with pytest.raises(NbcError, match="does not match its digest"):
        download(open_image(ref), CacheKind.INSTALL, ref_text=ref)
    assert leftovers(CacheKind.INSTALL) == []


# -- the commands --------------------------------------------------------------------------------------

def run_cmd(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Parse with the commands' own parsers (as cli.py will register them) and run in process."""
    parser = argparse.ArgumentParser(prog="nbc-tui")
    sub = parser.add_subparsers(dest="command")
    add_download_parser(sub)
    add_cache_parser(sub)
    args = parser.parse_args(argv)
    rc = args.func(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_download_command_json_and_text(images: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cmd(capsys, "download", "--image", images["two"], "--for-install", "--json")
    assert rc == 0, err
    data = json.loads(out)  # exactly one object on stdout
    # nbc's keys in nbc's order, then ours; an OCI layout is not a registry pull, so nothing was verified
    assert list(data) == ["image_ref", "image_digest", "cache_dir", "size_bytes", "architecture", "os_name",
                          "verification"]
    assert data["os_name"] == "Synthetic Linux 1 (test)" and data["size_bytes"] > 3 << 20
    assert data["verification"]["verified"] is False and data["verification"]["by"] == "local image"
    assert Path(data["cache_dir"]).name == "staged-install"  # nbc: the cache directory, not the entry
    assert out.startswith('{\n  "image_ref"')

    rc, out, err = run_cmd(capsys, "dl", "-i", images["one"], "--for-install")
    assert rc == 0, err
    assert "Download complete!" in out and "Synthetic Linux 1 (test)" in out and "Cached at:" in out
    assert "Downloading image..." in err and "Image cached successfully" in err


def test_download_dry_run_writes_nothing(images: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_cmd(capsys, "download", "-i", images["one"], "--for-update", "--dry-run", "--json")
    assert rc == 0
    data = json.loads(out)
    assert data["image_ref"] == images["one"] and data["cache_dir"] == str(cache_dir(CacheKind.UPDATE))
    assert data["size_bytes"] == 0
    rc, out, _ = run_cmd(capsys, "download", "-i", images["one"], "--for-install", "-n")
    assert rc == 0 and out.strip() == f"Dry run: skipping actual download of image {images['one']}"
    assert not cache_dir(CacheKind.INSTALL).exists() and not cache_dir(CacheKind.UPDATE).exists()


def test_download_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, _, err = run_cmd(capsys, "download", "--for-install")
    assert rc == 2 and "--for-install requires --image" in err
    rc, out, err = run_cmd(capsys, "download", "-i", "not a reference", "--for-install", "--json")
    assert rc == 2 and json.loads(out)["error"] is True and err.startswith("Error: ")
    rc, out, _ = run_cmd(capsys, "download", "-i", f"oci:{tmp_path}/missing", "--for-install", "--json")
    assert rc in (1, 2) and json.loads(out)["message"] == "failed to download image"
    with pytest.raises(SystemExit) as exc:  # argparse: exactly one of --for-install / --for-update
        run_cmd(capsys, "download", "-i", "x", "--for-install", "--for-update")
    assert exc.value.code == 2


def test_cache_commands(images: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_cmd(capsys, "cache", "list", "--install-images", "--json")
    assert rc == 0 and json.loads(out) == {"cache_type": "install", "cache_dir": str(cache_dir(CacheKind.INSTALL)),
                                           "images": []}
    rc, out, _ = run_cmd(capsys, "cache", "list", "--install-images")
    assert "No staged install images" in out and "nbc-tui download" in out

    a = download(open_image(images["one"]), CacheKind.INSTALL, ref_text=images["one"])
    b = download(open_image(images["two"]), CacheKind.INSTALL, ref_text=images["two"])
    rc, out, _ = run_cmd(capsys, "cache", "list", "--install-images", "--json")
    listed = json.loads(out)["images"]
    assert rc == 0 and {i["image_digest"] for i in listed} == {a.image_digest, b.image_digest}
    assert listed[0] == json.loads((cache_dir(CacheKind.INSTALL) / listed[0]["image_digest"].replace(":", "-")
                                    / "metadata.json").read_text())
    rc, out, _ = run_cmd(capsys, "cache", "list", "--install-images")
    assert "1. " in out and "2. " in out and f"Digest:       {a.image_digest}" in out and " MB" in out

    rc, out, _ = run_cmd(capsys, "cache", "remove", "sha256:", "--json")
    assert rc == 2 and json.loads(out)["details"] == "ambiguous reference, multiple matches found"
    rc, out, _ = run_cmd(capsys, "cache", "remove", "sha256:ffff", "--type", "install", "--json")
    assert rc == 1 and json.loads(out)["message"] == "image not found" and json.loads(out)["error"] is True
    key = a.image_digest[:16]
    rc, out, _ = run_cmd(capsys, "cache", "remove", key, "--json")
    assert rc == 0 and json.loads(out)["success"] is True and json.loads(out)["removed"] == key
    assert leftovers(CacheKind.INSTALL) == [b.dir_name]
    rc, out, _ = run_cmd(capsys, "cache", "clear", "--install", "--json")
    assert rc == 0 and json.loads(out) == {"success": True, "cache_type": "install"}
    assert leftovers(CacheKind.INSTALL) == []
    rc, out, _ = run_cmd(capsys, "cache", "clear", "--update")
    assert rc == 0 and "Cleared" in out


# -- two processes, one lock ---------------------------------------------------------------------------

HOLDER = """
import sys
from nbc_tui.backend.locks import cache_locked
with cache_locked(shared=sys.argv[1] == "shared"):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def lock_holder():
    procs: list[subprocess.Popen[str]] = []

    def hold(mode: str = "exclusive") -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, mode], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, cwd=REPO, env=os.environ.copy())
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        return proc

    yield hold
    for proc in procs:
        if proc.poll() is None:
            proc.communicate("", timeout=10)


def test_busy_lock_fails_after_bounded_wait(images: dict[str, str], lock_holder,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    lock_holder("exclusive")
    started = time.monotonic()
    with pytest.raises(NbcError, match=CACHE_BUSY_SHARED):
        list_cached(CacheKind.INSTALL, lock_wait=0.6)
    assert 0.5 <= time.monotonic() - started < 5
    rc, out, err = run_cmd(capsys, "cache", "clear", "--install", "--lock-wait", "0.3", "--json")
    assert rc == 1 and json.loads(out)["details"] == CACHE_BUSY_EXCLUSIVE and CACHE_BUSY_EXCLUSIVE in err
    # a download gets as far as the commit, then gives up and leaves nothing behind
    with pytest.raises(NbcError, match=CACHE_BUSY_EXCLUSIVE):
        download(open_image(images["one"]), CacheKind.INSTALL, ref_text=images["one"], lock_wait=0.3)
    assert leftovers(CacheKind.INSTALL) == []


def test_shared_holders_do_not_block_readers(lock_holder) -> None:
    lock_holder("shared")
    assert list_cached(CacheKind.INSTALL, lock_wait=0) == []
    with pytest.raises(NbcError, match=CACHE_BUSY_EXCLUSIVE):
        clear_cache(CacheKind.INSTALL, lock_wait=0.2)


def test_waiter_succeeds_once_the_lock_is_released(images: dict[str, str], lock_holder) -> None:
    holder = lock_holder("exclusive")
    timer = threading.Timer(0.5, lambda: holder.communicate("", timeout=10))
    timer.start()
    try:
        entry = download(open_image(images["one"]), CacheKind.INSTALL, ref_text=images["one"], lock_wait=10)
    finally:
        timer.join()
    assert holder.returncode == 0 and entry.path is not None and entry.path.is_dir()


# -- a full disk ---------------------------------------------------------------------------------------

@pytest.fixture
def tiny_filesystem(tmp_path: Path):
    """An 8 MiB ext4 filesystem mounted through a loop device."""
    img, mnt = tmp_path / "tiny.img", tmp_path / "tiny"
    subprocess.run(["truncate", "-s", "8M", str(img)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True)
    mnt.mkdir()
    loop = subprocess.run(["losetup", "--find", "--show", str(img)], check=True, capture_output=True,
                          text=True).stdout.strip()
    try:
        subprocess.run(["mount", loop, str(mnt)], check=True)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)


@pytest.mark.root
@pytest.mark.parametrize("where", ["layout", "registry"])
def test_full_disk_is_a_clear_error_and_leaves_nothing(tiny_filesystem: Path, tmp_path: Path, where: str,
                                                       monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """From a registry the blobs are kept as the check reads them; a blob the full disk refused there is
    fetched again to write the entry, which reports the full disk all the same."""
    monkeypatch.setenv("NBC_TUI_CACHE_ROOT", str(tiny_filesystem / "cache"))
    noise = TarBuilder().dir("usr").file("usr/noise.bin", os.urandom(12 << 20)).bytes()  # does not compress
    write_layout(tmp_path / "huge", [ImageSpec([Layer(base_layer()), Layer(noise, "gzip")], tag="t")])
    ref = f"oci:{tmp_path / 'huge'}:t"
    if where == "registry":
        ref = request.getfixturevalue("registry").push(ref, "nbc/huge:t")
    rc, out, err = run_cmd(capsys, "download", "-i", ref, "--for-install", "--json")
    assert rc == 1
    data = json.loads(out)
    assert data["error"] is True and "is full" in data["details"] and ref in data["details"]
    assert "Error: The disk holding" in err
    assert leftovers(CacheKind.INSTALL) == []


class _NoManifestSource(ImageSource):
    """Like a docker-archive from a daemon: a config and layers, no manifest; blobs are only the layers."""

    def __init__(self, inner: OciLayoutSource) -> None:
        self._inner = inner
        self.ref, self.index_digest = "localhost/test:1", None
        self.config_bytes = inner.blob_path(inner.config_digest).read_bytes()
        self.manifest_digest = inner.config_digest  # what a daemon calls the image id
        self.config, self.layers = inner.config, inner.layers

    def open_blob(self, desc: Descriptor) -> BlobStream:
        assert desc in self.layers, "only layers are blobs here"
        return self._inner.open_blob(desc)


def test_source_without_a_manifest_gets_one_written(images: dict[str, str]) -> None:
    inner = open_image(images["one"])
    assert isinstance(inner, OciLayoutSource)
    entry = download(_NoManifestSource(inner), CacheKind.INSTALL, ref_text="localhost/test:1")
    back = entry.open_source()
    assert entry.image_digest == back.manifest_digest != inner.config_digest
    assert back.config_digest == inner.config_digest and back.layers == inner.layers
    assert entry.dir_name == entry.path.name and entry.os_release_id == "synthetic"  # type: ignore[union-attr]


# -- the download operation: an update's image and whether it is new --------------------------------------

def _installed(root: Path, ref: str, digest: str) -> Path:
    """A running system's nbc state under ``root`` that names ``ref`` at ``digest``."""
    write_system_config(root, SystemConfig(image_ref=ref, image_digest=digest, device="/dev/vda",
                                           install_date="2026-01-01T00:00:00+00:00", kernel_args=[],
                                           bootloader_type="systemd-boot", filesystem_type="ext4"))
    return root


def _stage(request: DownloadRequest, *, dry_run: bool = False) -> tuple[StagedImage, list[Event]]:
    events: list[Event] = []
    return stage_image(request, ctx=RunContext(dry_run=dry_run), emit=events.append), events


def test_an_update_without_image_takes_the_installed_systems(images: dict[str, str], tmp_path: Path) -> None:
    root = _installed(tmp_path / "sys", images["one"], "sha256:" + "0" * 64)  # an older build of the same name
    staged, events = _stage(DownloadRequest(CacheKind.UPDATE, None, system_root=root))
    assert staged.ref == images["one"] and staged.entry is not None and staged.entry.image_ref == images["one"]
    assert f"Using the installed system's image: {images['one']}" in [e.message for e in events]
    assert single_staged(CacheKind.UPDATE) is not None

    with pytest.raises(InputError, match="no nbc configuration"):
        _stage(DownloadRequest(CacheKind.UPDATE, None, system_root=tmp_path / "not-installed"))


@pytest.mark.parametrize("dry_run", [False, True])
def test_the_image_the_system_runs_is_no_update_and_nothing_is_staged(images: dict[str, str], tmp_path: Path,
                                                                     dry_run: bool) -> None:
    digest = open_image(images["two"]).manifest_digest
    root = _installed(tmp_path / "sys", images["two"], digest)
    with pytest.raises(NbcError, match=f"no update available: image digest matches installed version "
                                       f"\\({digest[:19]}"):
        _stage(DownloadRequest(CacheKind.UPDATE, images["two"], system_root=root), dry_run=dry_run)
    assert leftovers(CacheKind.UPDATE) == []
    staged, _ = _stage(DownloadRequest(CacheKind.INSTALL, images["two"], system_root=root), dry_run=dry_run)
    assert staged.digest == digest and (staged.entry is None) is dry_run  # an install takes it all the same


def test_a_download_cancelled_midway_stages_nothing(images: dict[str, str]) -> None:
    """Ctrl-C and SIGTERM set the run's cancel flag (the step driver); the download stops at its next chunk."""
    ctx = RunContext()
    events: list[Event] = []

    def emit(event: Event) -> None:
        events.append(event)
        if isinstance(event, ProgressEvent):
            ctx.cancel.set()

    with pytest.raises(Cancelled):
        stage_image(DownloadRequest(CacheKind.INSTALL, images["two"]), ctx=ctx, emit=emit)
    assert any(isinstance(e, ProgressEvent) for e in events)
    assert leftovers(CacheKind.INSTALL) == []

"""The staged image cache, laid out as nbc lays it out (reference §7), so either tool reads the other's.

::

    /var/cache/nbc/staged-install/sha256-<hex>/   one OCI image layout per image + metadata.json
    /var/cache/nbc/staged-update/sha256-<hex>/    at most one
    /var/cache/nbc/staged-*/.download-XXXX/       a download in progress (never an entry)

Only dot-less directories with readable metadata are entries. A download is written into a staging dir
inside the cache dir (same filesystem), checked, and renamed into place under the exclusive cache lock,
so nothing half-written ever looks like an entry. ``NBC_TUI_CACHE_ROOT`` moves the cache (tests).

Like nbc, an install onto a real disk empties ``staged-install`` afterwards, except on the nbc-tui live
ISO, whose staged images are part of its read-only medium (see ``install.finish`` and :mod:`..live`).

Unlike nbc, metadata values are true: os-release comes from the image's own os-release file and
``size_bytes`` is the uncompressed size (see :func:`_metadata`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..atomic import write_atomically
from ..errors import Cancelled, InputError, NbcError
from ..locks import CACHE_LOCK_WAIT, cache_locked
from ..provenance import Verification
from .layout import OciLayoutSource
from .oci import MANIFEST_TYPES, MT_OCI_INDEX, MT_OCI_MANIFEST, REF_NAME
from .reference import OciLayoutRef
from .scan import ImageInventory, scan_image
from .source import BLOB_BUFFER, Descriptor, ImageSource, verify_bytes
from .spool import SpooledSource

CACHE_ROOT = Path("/var/cache/nbc")
ENV_CACHE_ROOT = "NBC_TUI_CACHE_ROOT"
METADATA = "metadata.json"
STAGING_PREFIX = ".download-"
REMOVING_PREFIX = ".removing-"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LABEL_TITLE = "org.opencontainers.image.title"
LABEL_VERSION = "org.opencontainers.image.version"

Progress = Callable[[int, int], None]
Message = Callable[[str], None]


class CacheKind(StrEnum):
    """Which staged cache: images for a fresh install, or the one update waiting to be applied."""

    INSTALL = "install"
    UPDATE = "update"

    @property
    def dir_name(self) -> str:
        return f"staged-{self.value}"


def cache_root() -> Path:
    return Path(os.environ.get(ENV_CACHE_ROOT) or CACHE_ROOT)


def cache_dir(kind: CacheKind) -> Path:
    return cache_root() / kind.dir_name


def digest_to_dir(digest: str) -> str:
    """``sha256:<hex>`` -> ``sha256-<hex>`` (nbc replaces every ':' when it names a directory)."""
    return digest.replace(":", "-")


def dir_to_digest(name: str) -> str:
    """The inverse nbc uses: only the first '-' becomes ':'."""
    return name.replace("-", ":", 1)


class CachedImage(BaseModel):
    """One cache entry: metadata.json's keys in nbc's order (§7.2), then ours; ``path`` is not stored."""

    model_config = ConfigDict(extra="ignore")

    image_ref: str
    """The reference as the user gave it."""
    image_digest: str
    """The platform manifest digest (what the entry's directory is named after)."""
    download_date: str = ""
    """RFC 3339, UTC, whole seconds."""
    architecture: str = ""
    labels: dict[str, str] | None = None
    """The image config's labels; omitted from the file when there are none."""
    os_release_pretty_name: str = ""
    os_release_version_id: str = ""
    os_release_id: str = ""
    size_bytes: int = 0
    """Uncompressed: bytes of regular files in the image's final tree (nbc wrote the compressed size)."""
    # ours, after nbc's keys
    index_digest: str | None = None
    """The image index the reference resolved to, when it was multi-platform."""
    compressed_size_bytes: int | None = None
    """Sum of the layer blobs as stored."""
    verification: Verification | None = None
    """Whether and by what the download was verified (trust/); None for entries staged before it was recorded."""
    path: Path | None = Field(default=None, exclude=True)
    """The entry's directory (an OCI image layout)."""
    already_cached: bool = Field(default=False, exclude=True)
    """Set by download() when an identical entry was already there and was kept."""

    def metadata_json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        for optional in ("labels", "index_digest", "compressed_size_bytes", "verification"):
            if data.get(optional) is None:
                data.pop(optional, None)
        return data

    @property
    def dir_name(self) -> str:
        return digest_to_dir(self.image_digest)

    @property
    def layout_ref(self) -> str:
        """``oci:<path>``: the entry as an image reference for the engine."""
        return f"oci:{self.path}"

    def open_source(self) -> OciLayoutSource:
        """The entry as an image source (its index.json holds exactly one manifest): the manifest its metadata
        names, or NbcError (a damaged or mixed-up entry is not installed under another image's name and
        signature verdict)."""
        if self.path is None:
            raise NbcError(f"The cached image {self.image_digest} has no directory")
        source = OciLayoutSource(OciLayoutRef(self.path, None))
        if source.manifest_digest != self.image_digest:
            raise NbcError(f"The cached image in {self.path} holds the manifest {source.manifest_digest}, not "
                           f"{self.image_digest} as its metadata says",
                           hint=f"Remove it (nbc-tui cache remove {self.image_digest[:19]}) and download it again")
        return source


# -- reading -------------------------------------------------------------------------------------------

def recorded_digest(source: ImageSource, staged: CachedImage | None) -> str:
    """The digest an installed system records for an image (and an update compares with the registry's): the
    index digest of a multi-platform image, else the manifest's; a staged image's as it was staged."""
    if staged is not None:
        return staged.index_digest or staged.image_digest
    return source.index_digest or source.manifest_digest


def read_entry(path: Path) -> CachedImage | None:
    """The entry at ``path``, or None when its metadata is missing or unreadable."""
    try:
        entry = CachedImage.model_validate_json((path / METADATA).read_bytes())
    except (OSError, ValueError, ValidationError):
        return None
    entry.path = path
    return entry


def _entry_dirs(root: Path) -> list[Path]:
    try:
        children = sorted(root.iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise NbcError(f"Cannot read the image cache {root}: {exc.strerror}") from None
    return [p for p in children if not p.name.startswith(".") and p.is_dir() and not p.is_symlink()]


def _list(kind: CacheKind, skipped: list[str] | None) -> list[CachedImage]:
    found = []
    for d in _entry_dirs(cache_dir(kind)):
        entry = read_entry(d)
        if entry is None:
            if skipped is not None:
                skipped.append(f"{d}: no readable {METADATA}")
            continue
        found.append(entry)
    return found


def list_cached(kind: CacheKind, *, skipped: list[str] | None = None,
                lock_wait: float = CACHE_LOCK_WAIT) -> list[CachedImage]:
    """The entries of one cache, by directory name; entries without readable metadata are appended to
    ``skipped`` (as messages) when given, and otherwise ignored."""
    with cache_locked(shared=True, wait=lock_wait):
        return _list(kind, skipped)


def _matches(kind: CacheKind, key: str) -> list[CachedImage]:
    """§7.4: the exact directory, else every entry whose directory name starts with the key (':' -> '-')
    or whose image_ref equals it."""
    if not key.strip():
        raise InputError("No image given to look up in the cache", hint="Give a digest, a prefix or a reference")
    wanted = digest_to_dir(key)
    exact = cache_dir(kind) / wanted
    if "/" not in wanted and wanted not in (".", ".."):
        entry = read_entry(exact) if exact.is_dir() else None
        if entry is not None:
            return [entry]
    return [e for e in _list(kind, None)
            if (e.path is not None and e.path.name.startswith(wanted)) or e.image_ref == key]


def _find(kind: CacheKind, key: str) -> CachedImage:
    found = _matches(kind, key)
    if not found:
        raise NbcError("image not found in cache",
                       hint=f"No image matching {key!r} in {cache_dir(kind)}; "
                            f"see `nbc-tui cache list --{kind.value}-images`",
                       details={"key": key, "cache_dir": str(cache_dir(kind))})
    if len(found) > 1:
        raise InputError("ambiguous reference, multiple matches found",
                         hint=f"{key!r} matches " + ", ".join(f"{e.image_digest} ({e.image_ref})" for e in found)
                              + "; give more digits",
                         details={"key": key, "matches": [e.image_digest for e in found]})
    return found[0]


def find_cached(kind: CacheKind, key: str, *, lock_wait: float = CACHE_LOCK_WAIT) -> CachedImage:
    """The one entry ``key`` names: a digest, a unique digest prefix (``sha256:ab`` or ``sha256-ab``), or
    the exact reference it was downloaded as. NbcError when none, InputError when several."""
    with cache_locked(shared=True, wait=lock_wait):
        return _find(kind, key)


def single_staged(kind: CacheKind, *, lock_wait: float = CACHE_LOCK_WAIT) -> CachedImage | None:
    """None when the cache is empty, its entry when it holds one; InputError listing them when several."""
    entries = list_cached(kind, lock_wait=lock_wait)
    if len(entries) <= 1:
        return entries[0] if entries else None
    listing = "\n".join(f"  {e.image_digest} ({e.image_ref})" for e in entries)
    raise InputError(f"{len(entries)} staged images found in {cache_dir(kind)}; choose one:\n{listing}",
                     hint="Pick one with --local-image DIGEST (a unique prefix is enough)",
                     details={"images": [e.image_digest for e in entries]})


# -- removing ------------------------------------------------------------------------------------------

def _discard(path: Path) -> None:
    """Rename first (atomic), then delete: a half-deleted directory never looks like an entry."""
    doomed = Path(tempfile.mkdtemp(prefix=REMOVING_PREFIX, dir=path.parent))
    try:
        os.rename(path, doomed / path.name)
    finally:
        shutil.rmtree(doomed)


def remove_cached(kind: CacheKind | None, key: str, *, lock_wait: float = CACHE_LOCK_WAIT) -> str:
    """Remove the one entry ``key`` names (see find_cached) from ``kind``'s cache, or with None from the
    install cache, else the update cache. Returns the removed image's digest."""
    kinds = [kind] if kind is not None else [CacheKind.INSTALL, CacheKind.UPDATE]
    with cache_locked(shared=False, wait=lock_wait):
        found_in = [k for k in kinds if _matches(k, key)]
        if not found_in:
            raise NbcError("image not found in cache",
                           hint=f"No image matching {key!r} in "
                                + " or ".join(str(cache_dir(k)) for k in kinds),
                           details={"key": key})
        entry = _find(found_in[0], key)  # the install cache first, as nbc does; InputError if ambiguous
        assert entry.path is not None
        try:
            _discard(entry.path)
        except OSError as exc:
            raise NbcError("failed to remove cached image", hint=f"{entry.path}: {exc.strerror}") from None
        return entry.image_digest


def clear_cache(kind: CacheKind, *, lock_wait: float = CACHE_LOCK_WAIT) -> None:
    """Remove every entry of one cache, and leftovers of downloads or removals that died."""
    root = cache_dir(kind)
    with cache_locked(shared=False, wait=lock_wait):
        _clear(root)


def _clear(root: Path, *, keep: str | None = None) -> None:
    try:
        children = list(root.iterdir())
    except FileNotFoundError:
        return
    for child in children:
        if child.name == keep or not child.is_dir() or child.is_symlink():
            continue
        if child.name.startswith(STAGING_PREFIX) and _staging_in_use(child):
            continue  # another process is downloading into it right now
        try:
            if child.name.startswith("."):
                shutil.rmtree(child)
            else:
                _discard(child)
        except OSError as exc:
            raise NbcError(f"failed to clear the cache: cannot remove {child}: {exc.strerror}") from None


def _staging_in_use(path: Path) -> bool:
    """A download holds a flock on its staging directory for as long as it runs."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


# -- downloading ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def _staging_dir(root: Path) -> Iterator[Path]:
    """A fresh ``.download-XXXX`` in ``root``, flocked while in use, removed unless it was committed."""
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
    fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield staging
    finally:
        os.close(fd)
        shutil.rmtree(staging, ignore_errors=True)  # gone already when it was renamed into place


def download(source: ImageSource, kind: CacheKind, *, ref_text: str, on_progress: Progress | None = None,
             cancel: threading.Event | None = None, parallel: int = 3, on_message: Message | None = None,
             lock_wait: float = CACHE_LOCK_WAIT, verification: Verification | None = None) -> CachedImage:
    """Save ``source`` into the ``kind`` cache as ``sha256-<hex>/`` and return its entry.

    Blobs stream from ``source.open_blob`` (verified while read), ``parallel`` at a time, into a staging
    dir; the written layout is then scanned like an install would (real os-release, uncompressed size)
    and committed under the exclusive cache lock. An entry already there with readable metadata is kept
    (``already_cached``). For the update cache the commit also drops any other staged update: it holds
    one image. on_progress(done, total) counts blob bytes and is called from this thread only.
    ``verification`` (the pull's signature verdict, trust/) is recorded in metadata.json.
    Raises NbcError (disk full, damaged blob, ...), InputError (an image the install would refuse),
    Cancelled; in every case the staging dir is gone.
    """
    say = on_message or (lambda _m: None)
    root = cache_dir(kind)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _staging_dir(root) as staging:
            if source.remote:
                # Checked while it arrives: the scan reads each layer as the registry sends it, the later
                # layers are fetched meanwhile, and every verified blob lands in the entry's layout.
                say("Downloading and checking image...")
                inventory = _scan_into(source, staging / "blobs" / "sha256", on_progress=on_progress,
                                       cancel=cancel, parallel=parallel)
                digest = _write_layout(source, staging, ref_text=ref_text, on_progress=None, cancel=cancel,
                                       parallel=parallel)
            else:
                say("Downloading image...")
                digest = _write_layout(source, staging, ref_text=ref_text, on_progress=on_progress,
                                       cancel=cancel, parallel=parallel)
                say("Checking the downloaded image...")
                inventory = None
            written = OciLayoutSource(OciLayoutRef(staging, None))
            if written.manifest_digest != digest:
                raise NbcError(f"The cached copy of {ref_text} resolves to {written.manifest_digest}, not {digest}")
            if inventory is None:
                inventory = scan_image(written, cancel=cancel, list_initramfs=False)
            entry = _metadata(source, inventory, ref_text=ref_text, digest=digest)
            entry.verification = verification
            _write_json(staging / METADATA, entry.metadata_json())
            say(f"Saving image to cache: {entry.image_digest}")
            return _commit(staging, root, entry, replace_others=kind is CacheKind.UPDATE, lock_wait=lock_wait,
                           say=say)
    except OSError as exc:
        # Only filesystem errors are ours to word here; a source's own OSErrors (sockets) pass through.
        if exc.errno == errno.ENOSPC:
            raise NbcError(f"The disk holding {root} is full: {ref_text} does not fit "
                           f"({source.compressed_size / 1e6:.1f} MB of layers to store)",
                           hint="Free some space (e.g. `nbc-tui cache clear --install`) and download again",
                           details={"cache_dir": str(root), "errno": "ENOSPC"}) from None
        if exc.filename is None:
            raise
        raise NbcError(f"Cannot save {ref_text} into {root}: {exc.filename}: {exc.strerror or exc}",
                       details={"cache_dir": str(root)}) from None


def _scan_into(source: ImageSource, blobs: Path, *, on_progress: Progress | None, cancel: threading.Event | None,
               parallel: int) -> ImageInventory:
    """Scan ``source`` as an install would, keeping each layer blob it reads, once verified, in ``blobs``. A
    blob the directory could not take (a full disk) is simply missing there: writing the layout fetches it
    again and reports the full disk."""
    blobs.mkdir(parents=True)
    spooled = SpooledSource(source, blobs, prefetch=parallel, layout=True)
    try:
        # Whether its initramfs suits a slot is the install's question (it scans the entry again).
        return scan_image(spooled, on_progress=on_progress, cancel=cancel, list_initramfs=False)
    finally:
        spooled.stop()


def _commit(staging: Path, root: Path, entry: CachedImage, *, replace_others: bool, lock_wait: float,
            say: Message) -> CachedImage:
    final = root / entry.dir_name
    with cache_locked(shared=False, wait=lock_wait):
        if replace_others:
            _clear(root, keep=final.name)
        existing = read_entry(final) if final.is_dir() else None
        if existing is not None:
            say(f"Image already cached: {entry.image_digest}")
            existing.already_cached = True
            merged = _merged_verdict(existing.verification, entry.verification)
            if merged is not existing.verification:  # the same bytes, now also checked by this download
                existing.verification = merged
                write_atomically(final / METADATA, json.dumps(existing.metadata_json(), indent=2).encode())
                say(f"Recorded this download's signature check: {merged.describe()}")
            return existing
        if final.is_symlink() or final.is_file():
            final.unlink()
        elif final.exists():
            _discard(final)  # an entry without readable metadata: replace it
        os.rename(staging, final)
        _fsync_dir(root)
    say(f"Image cached successfully: {entry.image_digest}")
    entry.path = final
    return entry


def _merged_verdict(kept: Verification | None, new: Verification | None) -> Verification | None:
    """What an entry records when the image is downloaded again: its signature verdicts are about the same
    digest, so a verified download adds its signatures to the entry's (an entry staged unverified, or by
    another key, can then be installed with the key this download checked). Returns ``kept`` itself when
    nothing is added."""
    if new is None or not new.verified:
        return kept
    if kept is None or not kept.verified:
        return new
    added = [s for s in new.signatures if s not in kept.signatures]
    if not added:
        return kept
    return kept.model_copy(update={"signatures": [*kept.signatures, *added], "by": f"{kept.by}; {new.by}"})


def _metadata(source: ImageSource, inventory: ImageInventory, *, ref_text: str, digest: str) -> CachedImage:
    labels = (source.config.get("config") or {}).get("Labels") or None
    osr = inventory.os_release
    return CachedImage(
        image_ref=ref_text,
        image_digest=digest,
        download_date=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        architecture=str(source.config.get("architecture") or ""),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else None,
        # The image's own os-release (nbc took OCI labels here); labels only when it has none.
        os_release_pretty_name=osr.get("PRETTY_NAME") or osr.get("NAME") or _label(labels, LABEL_TITLE),
        os_release_version_id=osr.get("VERSION_ID") or _label(labels, LABEL_VERSION),
        os_release_id=osr.get("ID", ""),
        # The uncompressed size as the scan counted it: bytes of regular files in the final tree after
        # every layer (whiteouts applied, hard links once). That is what the image takes on a root slot.
        size_bytes=inventory.uncompressed_bytes,
        index_digest=source.index_digest,
        compressed_size_bytes=source.compressed_size,
    )


def _label(labels: object, key: str) -> str:
    return str(labels.get(key, "")) if isinstance(labels, dict) else ""


# -- writing the OCI layout ----------------------------------------------------------------------------

def _write_layout(source: ImageSource, staging: Path, *, ref_text: str, on_progress: Progress | None,
                  cancel: threading.Event | None, parallel: int) -> str:
    """Write ``source`` as an OCI layout into ``staging``; returns the digest of the manifest written."""
    blobs = staging / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    manifest_raw, config_raw = _manifest_and_config(source)
    manifest_digest = "sha256:" + hashlib.sha256(manifest_raw).hexdigest()
    manifest = json.loads(manifest_raw)
    config_desc = Descriptor.from_json(manifest.get("config"), what="image config")
    wanted: dict[str, Descriptor] = {config_desc.digest: config_desc}
    for desc in source.layers:
        wanted.setdefault(desc.digest, desc)
    for digest in wanted:
        if not digest.startswith("sha256:"):
            raise NbcError(f"Blob {digest} uses a digest the cache layout cannot hold (sha256 only)")
    if config_raw is not None:
        _write_file(blobs / _hex(config_desc.digest), verify_bytes(config_raw, config_desc, label="Image config"))
        wanted.pop(config_desc.digest)
    for digest in list(wanted):
        if (blobs / _hex(digest)).is_file():  # kept, verified and synced, while the image was scanned (_scan_into)
            wanted.pop(digest)
    _fetch_blobs(source, list(wanted.values()), blobs, on_progress=on_progress, cancel=cancel, parallel=parallel)
    _write_file(blobs / _hex(manifest_digest), manifest_raw)
    media_type = str(manifest.get("mediaType") or "")
    entry: dict[str, Any] = {
        "mediaType": media_type if media_type in MANIFEST_TYPES else MT_OCI_MANIFEST,
        "digest": manifest_digest,
        "size": len(manifest_raw),
        "annotations": {REF_NAME: ref_text},
    }
    arch, os_ = source.config.get("architecture"), source.config.get("os")
    if arch and os_:
        entry["platform"] = {"architecture": str(arch), "os": str(os_)}
    _write_json(staging / "index.json", {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [entry]})
    _write_json(staging / "oci-layout", {"imageLayoutVersion": "1.0.0"})
    return manifest_digest


def _manifest_and_config(source: ImageSource) -> tuple[bytes, bytes | None]:
    """The platform manifest exactly as stored (its bytes are what the digest names, so they are copied,
    never re-serialised) and, when the source holds it in memory, the config's bytes (else the config is
    fetched as a blob). Sources expose ``manifest_bytes`` / ``config_bytes``; an OCI layout or archive
    reads the manifest as a blob. A source with no manifest at all (a docker-archive from a daemon) gets
    an OCI manifest written for its config and layers: the entry is then named by that manifest."""
    config_raw = getattr(source, "config_bytes", None)
    config_raw = config_raw if isinstance(config_raw, bytes) else None
    raw = getattr(source, "manifest_bytes", None)
    # A layout Podman saved names the image by its ID (the config's digest) as the API path does; its manifest
    # blob is the one its index names.
    stored = str(getattr(source, "layout_manifest_digest", None) or source.manifest_digest)
    if not isinstance(raw, bytes) and isinstance(source, OciLayoutSource):
        raw = source._blob_bytes(Descriptor(MT_OCI_MANIFEST, stored, 0))
    if isinstance(raw, bytes):
        return verify_bytes(raw, Descriptor(MT_OCI_MANIFEST, stored, len(raw)), label="Manifest"), config_raw
    if config_raw is None:
        raise NbcError(f"The image source {source.ref} cannot be saved to the cache (it exposes neither its "
                       "manifest nor its config as stored)")
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": "sha256:" + hashlib.sha256(config_raw).hexdigest(),
                   "size": len(config_raw)},
        "layers": [{"mediaType": d.media_type, "digest": d.digest, "size": d.size} for d in source.layers],
    }
    return json.dumps(manifest, indent=2).encode(), config_raw


def _hex(digest: str) -> str:
    return digest.partition(":")[2]


def _fetch_blobs(source: ImageSource, descs: list[Descriptor], blobs: Path, *, on_progress: Progress | None,
                 cancel: threading.Event | None, parallel: int) -> None:
    """Several blobs at once; progress is reported from the calling thread; the first failure (or a
    cancel, or Ctrl-C here) stops every worker between two chunks."""
    total = sum(d.size for d in descs)
    counts = dict.fromkeys((d.digest for d in descs), 0)
    stop = threading.Event()

    def fetch(desc: Descriptor) -> None:
        dest = blobs / _hex(desc.digest)
        tmp = blobs / f".tmp-{_hex(desc.digest)}"
        with source.open_blob(desc) as stream, tmp.open("wb") as out:
            while chunk := stream.read(BLOB_BUFFER):
                if stop.is_set() or (cancel is not None and cancel.is_set()):
                    raise Cancelled("Download interrupted", hint="Nothing was added to the cache")
                out.write(chunk)
                counts[desc.digest] += len(chunk)  # one writer per key: no lock needed
            out.flush()
            os.fsync(out.fileno())
        os.rename(tmp, dest)

    reported = -1
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel),
                                               thread_name_prefix="nbc-download") as pool:
        futures = [pool.submit(fetch, d) for d in sorted(descs, key=lambda d: -d.size)]
        try:
            pending = set(futures)
            while pending:
                _done, pending = concurrent.futures.wait(pending, timeout=0.2,
                                                         return_when=concurrent.futures.FIRST_EXCEPTION)
                for f in _done:
                    f.result()  # re-raise the first failure here
                if cancel is not None and cancel.is_set():
                    raise Cancelled("Download interrupted", hint="Nothing was added to the cache")
                done = sum(counts.values())
                if on_progress is not None and done != reported:
                    reported = done
                    on_progress(done, total)
        except BaseException:
            stop.set()
            for f in futures:
                f.cancel()
            raise


def _write_file(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_json(path: Path, data: Any) -> None:
    _write_file(path, json.dumps(data, indent=2).encode())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

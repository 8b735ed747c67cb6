"""``localhost/NAME[:TAG]`` images from a local Podman or Docker daemon.

The daemons are asked, in order, through the Docker API (the ``docker`` SDK): the socket in
``$NBC_TUI_PODMAN_SOCKET`` (for tests and odd setups), ``$DOCKER_HOST``, ``/run/podman/podman.sock``,
``/var/run/docker.sock``. The first one that has the image streams it as a docker-archive (``save``), which
is spooled to a file in a disk-backed directory (never RAM: an image can be gigabytes) and read in place as
an :class:`ImageSource`. When no socket has it, ``podman image save --format oci-dir`` (Podman reads its
store without a service) writes an OCI layout into the spool directory instead.

Integrity: a docker-archive carries the config and uncompressed layer tars but no blob digests. The config
must hash to the image ID the daemon reported; each layer must decompress to the ``diff_id`` the config
lists; the layer digests computed while indexing then guard every later read. ``manifest_digest`` is the
image ID (``sha256:`` of the config, as ``podman images --no-trunc`` shows it): a local image has no
registry manifest, its ID is what identifies it (nbc records ""). ``index_digest`` is None.

The spool is removed by :meth:`close` (also on ``with`` exit and, as a last resort, on garbage collection).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..bytestreams import RawReader
from ..errors import NbcError
from ..mounts import filesystem_type
from ..runner import RunContext, run, which
from .archive import TarMembers
from .layers import decompressed
from .layout import OciLayoutSource
from .source import BlobStream, Descriptor, ImageSource, verified_stream

if TYPE_CHECKING:
    from .reference import RegistryRef

log = logging.getLogger("nbc_tui")

SOCKET_ENV = "NBC_TUI_PODMAN_SOCKET"
DEFAULT_SOCKETS = ("unix:///run/podman/podman.sock", "unix:///var/run/docker.sock")
DEFAULT_SPOOL_DIR = Path("/var/tmp/nbc-tui")
# Podman's own configuration, passed through to `podman image save` (the runner's env is an allowlist).
_PODMAN_ENV = ("CONTAINERS_STORAGE_CONF", "CONTAINERS_CONF", "CONTAINERS_REGISTRIES_CONF", "XDG_RUNTIME_DIR")
_RAM_FILESYSTEMS = {"tmpfs", "ramfs"}
_PROBE_TIMEOUT = 10  # seconds for a daemon to answer /_ping
_SAVE_TIMEOUT = 1800  # seconds between two chunks of `save` (Podman writes the whole archive first)
_CHUNK = 1 << 20
_MAX_JSON = 8 << 20
MT_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
GZIP_MAGIC, ZSTD_MAGIC = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"


def daemon_endpoints() -> list[str]:
    """The Docker-API endpoints to ask, in order, without duplicates."""
    found = [os.environ.get(SOCKET_ENV, ""), os.environ.get("DOCKER_HOST", ""), *DEFAULT_SOCKETS]
    out: list[str] = []
    for endpoint in filter(None, found):
        url = endpoint if "://" in endpoint else f"unix://{endpoint}"
        if url not in out:
            out.append(url)
    return out


def open_daemon_image(
    ref: RegistryRef,
    text: str,
    *,
    ctx: RunContext | None = None,
    spool_dir: Path | None = None,
    endpoints: Sequence[str] | None = None,
    use_podman_cli: bool = True,
) -> ImageSource:
    """Open ``text`` (a ``localhost/`` reference as the user wrote it) from a local daemon.

    ``endpoints`` replaces :func:`daemon_endpoints` (tests); ``spool_dir`` (default /var/tmp/nbc-tui) must
    be disk-backed. The returned source owns a spool: call its ``close()`` when done with the image.
    Raises NbcError when no daemon has the image, none runs, or the spool cannot be written.
    """
    del ref  # the daemon resolves names itself; the text is what `podman images` shows
    ctx = ctx or RunContext()
    spool_root = prepare_spool_dir(spool_dir or DEFAULT_SPOOL_DIR)
    asked: list[str] = []
    export_failed: NbcError | None = None
    for url in endpoints if endpoints is not None else daemon_endpoints():
        ctx.check_cancelled()
        client = _connect(url)
        if client is None:
            asked.append(f"{url} (not running)")
            continue
        with contextlib.closing(client):
            engine = _engine_name(client)
            image = _find_image(client, text)
        if image is None:
            asked.append(f"{engine} at {url} (no such image)")
            continue
        log.info("image %s found in %s at %s (id %s)", text, engine, url, image.id)
        try:
            return _spool_from_api(url, image, text, spool_root, ctx)
        except _ExportFailed as exc:
            # e.g. Podman 4.3 cannot write a docker-archive of zstd layers; its CLI can write oci-dir.
            log.warning("%s", exc.message)
            asked.append(f"{engine} at {url} (export failed)")
            export_failed = export_failed or exc
    if use_podman_cli and which("podman"):
        source = _save_with_podman_cli(text, spool_root, ctx)
        if source is not None:
            return source
        asked.append("the podman command (no such image)")
    else:
        asked.append("the podman command (not installed)" if use_podman_cli else "")
    asked = [a for a in asked if a]
    if export_failed is not None:
        raise export_failed
    if any("no such image" in a for a in asked):
        raise NbcError(
            f"Unknown image {text}: neither Podman nor Docker has it",
            hint="Asked " + "; ".join(asked) + ". Check the name with `podman images` or `docker images`"
                 " (local images are named localhost/NAME:TAG)",
            details={"image": text, "asked": asked},
        )
    raise NbcError(
        f"Cannot read the local image {text}: no Podman or Docker daemon is running",
        hint="Asked " + "; ".join(asked) + ". Start one (`systemctl start podman.socket`) or set DOCKER_HOST",
        details={"image": text, "asked": asked},
    )


# -- the spool directory --------------------------------------------------------------------------------

def prepare_spool_dir(path: Path) -> Path:
    """Create ``path`` (0700) and refuse it when it lives in RAM (tmpfs, ramfs)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise NbcError(f"Cannot create the spool directory {path}: {exc.strerror or exc}") from None
    fstype = filesystem_type(path)
    if fstype in _RAM_FILESYSTEMS:
        raise NbcError(
            f"{path} is in memory ({fstype}); a local image is spooled to disk before it is installed",
            hint="Give a directory on a disk-backed filesystem",
        )
    return path


def _new_spool(spool_root: Path, need: int) -> Path:
    free = shutil.disk_usage(spool_root).free
    if need and free < need:
        raise NbcError(
            f"Not enough space in {spool_root} to spool the image: it needs about {need >> 20} MiB, "
            f"{free >> 20} MiB are free",
            hint="Free some space or give another spool directory",
        )
    return Path(tempfile.mkdtemp(prefix="local-image-", dir=spool_root))


# -- through the Docker API ------------------------------------------------------------------------------

class _ExportFailed(NbcError):
    """A daemon has the image but could not stream it."""


def _connect(url: str) -> Any:
    """A client for ``url`` if a daemon answers there, else None."""
    import docker  # the SDK pulls in requests; only local images need it
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    if url.startswith("unix://") and not Path(url[len("unix://"):]).exists():
        return None
    try:
        client = docker.DockerClient(base_url=url, timeout=_PROBE_TIMEOUT)
        client.ping()
    except (DockerException, RequestException, OSError) as exc:
        log.info("no daemon answers at %s: %s", url, exc)
        return None
    return client


def _engine_name(client: Any) -> str:
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    try:
        components = client.version().get("Components") or []
    except (DockerException, RequestException):
        return "a daemon"
    names = {str(c.get("Name", "")) for c in components}
    return "Podman" if "Podman Engine" in names else "Docker"


def _find_image(client: Any, name: str) -> Any:
    from docker.errors import ImageNotFound, NotFound

    try:
        return client.images.get(name)
    except (ImageNotFound, NotFound):
        return None


def _spool_from_api(url: str, image: Any, text: str, spool_root: Path, ctx: RunContext) -> DockerArchiveSource:
    import docker
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    spool = _new_spool(spool_root, int(image.attrs.get("Size") or 0))
    archive = spool / "image.tar"
    try:
        # A fresh client: a save may be silent for minutes while the daemon writes the archive.
        with contextlib.closing(docker.DockerClient(base_url=url, timeout=_SAVE_TIMEOUT)) as client, \
                archive.open("wb") as out:
            for chunk in client.api.get_image(image.id, chunk_size=_CHUNK):
                ctx.check_cancelled()
                out.write(chunk)
        return DockerArchiveSource(archive, ref=text, image_id=image.id, spool=spool)
    except (DockerException, RequestException) as exc:
        shutil.rmtree(spool, ignore_errors=True)
        raise _ExportFailed(f"The daemon at {url} failed to export {text}: {exc}",
                            hint="Check the daemon's log; run the command again") from None
    except OSError as exc:
        shutil.rmtree(spool, ignore_errors=True)
        raise NbcError(f"Cannot spool {text} into {spool_root}: {exc.strerror or exc}",
                       hint="Free some space or give another spool directory") from None
    except BaseException:
        shutil.rmtree(spool, ignore_errors=True)
        raise


# -- through the podman command ----------------------------------------------------------------------------

def _save_with_podman_cli(text: str, spool_root: Path, ctx: RunContext) -> SpooledLayoutSource | None:
    """``podman image save --format oci-dir`` into a spool; None when podman does not know the image."""
    env = {k: os.environ[k] for k in _PODMAN_ENV if k in os.environ}
    podman_ctx = dataclasses.replace(ctx, env_extra={**ctx.env_extra, **env})
    spool = _new_spool(spool_root, 0)
    layout = spool / "layout"
    try:
        done = run(["podman", "image", "save", "--format", "oci-dir", "-o", layout, text], ctx=podman_ctx,
                   ok=(0, 125), changes_system=False, timeout=None, what=f"export {text} from Podman")
        if done.returncode != 0:
            stderr = done.stderr.decode(errors="replace")
            if "image not known" in stderr or "no such image" in stderr.lower():
                shutil.rmtree(spool, ignore_errors=True)
                return None
            raise NbcError(f"`podman image save` failed for {text}: {stderr.strip()[-400:]}",
                           hint="Check `podman images`; run the command again")
        return SpooledLayoutSource(layout, ref=text, spool=spool)
    except BaseException:
        shutil.rmtree(spool, ignore_errors=True)
        raise


class SpooledLayoutSource(OciLayoutSource):
    """The OCI layout ``podman image save --format oci-dir`` wrote into a spool, removed on close."""

    def __init__(self, layout: Path, *, ref: str, spool: Path) -> None:
        from .reference import OciLayoutRef

        self._spool: Path | None = spool
        super().__init__(OciLayoutRef(layout, None))
        self.ref = ref
        self.layout_manifest_digest = self.manifest_digest
        self.manifest_digest = self.config_digest  # the image ID, as with the API path

    def close(self) -> None:
        """Remove the spooled layout (idempotent)."""
        spool, self._spool = self._spool, None
        if spool is not None:
            shutil.rmtree(spool, ignore_errors=True)

    def __enter__(self) -> SpooledLayoutSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


# -- reading a docker-archive -----------------------------------------------------------------------------

class DockerArchiveSource(ImageSource):
    """A docker-archive (``docker save``, Podman's ``/images/NAME/get``) on disk, read in place.

    ``spool`` is a directory removed by :meth:`close`; None keeps the file (an archive the user gave).
    """

    def __init__(self, archive: Path, *, ref: str, image_id: str | None = None,
                 spool: Path | None = None) -> None:
        self._spool = spool
        self.ref = ref
        self.archive = archive
        self.index_digest = None
        self._members = TarMembers(archive, what="image archive")
        entry = self._manifest_entry()
        config_name = str(entry.get("Config") or "")
        if config_name not in self._members:
            raise self._damaged(f"its config {config_name!r} is missing")
        config_bytes = self._members.read_bytes(config_name, limit=_MAX_JSON)
        self.config_bytes = config_bytes  # the staged cache writes an OCI manifest around these bytes
        self.config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        if image_id and image_id != self.config_digest:
            raise self._damaged(f"its config hashes to {self.config_digest[:19]}…, the daemon said {image_id}")
        self.manifest_digest = self.config_digest
        try:
            config = json.loads(config_bytes)
        except ValueError as exc:
            raise self._damaged(f"its config is not JSON ({exc})") from None
        if not isinstance(config, dict):
            raise self._damaged("its config is not a JSON object")
        self.config: dict[str, Any] = config
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        names = entry.get("Layers") or []
        if not names or len(names) != len(diff_ids):
            raise self._damaged(f"it lists {len(names)} layers, its config {len(diff_ids)}")
        self._names: dict[str, str] = {}
        self.layers: list[Descriptor] = []
        for name, diff_id in zip(names, diff_ids, strict=True):
            desc = self._index_layer(str(name), str(diff_id))
            self._names[desc.digest] = str(name)
            self.layers.append(desc)

    def _damaged(self, why: str) -> NbcError:
        return NbcError(f"The archive of {self.ref} is damaged: {why}",
                        hint="Export the image again (the daemon or the disk may be at fault)")

    def _manifest_entry(self) -> dict[str, Any]:
        if "manifest.json" not in self._members:
            raise self._damaged("it has no manifest.json")
        try:
            entries = json.loads(self._members.read_bytes("manifest.json", limit=_MAX_JSON))
        except ValueError as exc:
            raise self._damaged(f"its manifest.json is not JSON ({exc})") from None
        if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
            raise self._damaged("its manifest.json lists no image")
        if len(entries) == 1:
            return entries[0]
        named = [e for e in entries if self.ref in (e.get("RepoTags") or [])]
        if len(named) != 1:
            raise self._damaged(f"it holds {len(entries)} images and none is tagged {self.ref}")
        return named[0]

    def _index_layer(self, name: str, diff_id: str) -> Descriptor:
        """Hash a layer member as stored and as a tar; the tar must be the config's ``diff_id``."""
        if name not in self._members:
            raise self._damaged(f"its layer {name!r} is missing")
        stored = hashlib.sha256()
        tar = hashlib.sha256()
        with self._members.open(name) as raw:
            hashing = _Hashing(raw, stored)
            reader = io.BufferedReader(hashing, _CHUNK)
            head = bytes(reader.peek(4)[:4])
            stream = decompressed(reader, "")
            while chunk := stream.read(_CHUNK):
                tar.update(chunk)
        if f"sha256:{tar.hexdigest()}" != diff_id:
            raise self._damaged(f"its layer {name!r} is not the layer {diff_id[:19]}… the config lists")
        media_type = MT_LAYER_TAR + ("+gzip" if head.startswith(GZIP_MAGIC) else
                                     "+zstd" if head.startswith(ZSTD_MAGIC) else "")
        return Descriptor(media_type, f"sha256:{stored.hexdigest()}", self._members.size(name))

    def open_blob(self, desc: Descriptor) -> BlobStream:
        name = self._names.get(desc.digest)
        if name is None:
            raise NbcError(f"Layer {desc.digest} is not part of {self.ref}")
        if not self.archive.exists():
            raise NbcError(f"The spooled image {self.ref} was already released", hint="Open the image again")
        return verified_stream(self._members.open(name), desc, label="Layer blob")

    def close(self) -> None:
        """Remove the spool (idempotent); the source is unusable afterwards."""
        spool, self._spool = getattr(self, "_spool", None), None
        if spool is not None:
            shutil.rmtree(spool, ignore_errors=True)

    def __enter__(self) -> DockerArchiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class _Hashing(io.RawIOBase):
    """Feeds every byte read from ``inner`` to ``hasher``."""

    def __init__(self, inner: RawReader, hasher: Any) -> None:
        super().__init__()
        self._inner = inner
        self._hasher = hasher

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._inner.readinto(buffer) or 0
        self._hasher.update(memoryview(buffer)[:n])
        return n


def iter_spools(spool_root: Path = DEFAULT_SPOOL_DIR) -> Iterator[Path]:
    """Spools left in ``spool_root`` (e.g. by a killed process), for a cleanup at startup."""
    if spool_root.is_dir():
        yield from sorted(spool_root.glob("local-image-*"))

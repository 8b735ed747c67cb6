"""An OCI image layout directory (``oci:PATH[:TAG]``) as an image source.

The manifest is picked by tag (the ``org.opencontainers.image.ref.name`` annotation) or is the only one;
an image index inside resolves to the host's platform, skipping attestation manifests. Manifest, index and
config are checked against their digests when read; layers are checked while they stream.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import InputError
from .oci import INDEX_TYPES, MANIFEST_TYPES, REF_NAME, choose_platform, host_platform
from .reference import OciLayoutRef, parse_image_ref
from .source import BlobStream, Descriptor, ImageSource, verified_stream, verify_bytes

_MAX_NESTING = 4
_MAX_JSON = 8 << 20


class OciLayoutSource(ImageSource):
    """An image read from an OCI layout directory.

    Choosing the manifest (by tag, then by platform) and checking manifest and config is shared with
    other containers of a layout (an ``oci-archive`` tar): they override the three storage primitives
    :meth:`_read_top_index`, :meth:`_blob_bytes` and :meth:`open_blob`, and call :meth:`_load`.
    """

    kind = "OCI layout"  # how messages name the container, e.g. "The OCI layout DIR has no image tagged"

    def __init__(self, ref: OciLayoutRef | str, *, host: tuple[str, str] | None = None) -> None:
        self.layout_ref = parse_image_ref(ref) if isinstance(ref, str) else ref
        self.ref = str(self.layout_ref)
        self.root = self.layout_ref.path
        self._load(self.layout_ref.tag, host)

    def _load(self, tag: str | None, host: tuple[str, str] | None) -> None:
        """Pick the manifest for ``tag`` and this machine, read and check its config, list its layers."""
        self._tag = tag
        self._host = host or host_platform()
        self.index_digest: str | None = None
        top = self._read_top_index()
        chosen = self._pick_by_tag(top)
        manifest_desc, manifest = self._resolve(chosen, depth=0)
        self.manifest_digest = manifest_desc.digest
        self.manifest = manifest
        config_desc = Descriptor.from_json(manifest.get("config"), what="image config")
        self.config_digest = config_desc.digest
        config = self._read_json(config_desc, label="Image config")
        if not isinstance(config, dict):
            raise InputError(f"The image config {config_desc.digest} is not a JSON object")
        self.config: dict[str, Any] = config
        layers = manifest.get("layers")
        if not isinstance(layers, list) or not layers:
            raise InputError(f"The manifest {manifest_desc.digest} in {self.root} lists no layers")
        self.layers = [Descriptor.from_json(d, what="layer") for d in layers]

    # -- reading ------------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        algorithm, _, hexpart = digest.partition(":")
        return self.root / "blobs" / algorithm / hexpart

    def open_blob(self, desc: Descriptor) -> BlobStream:
        path = self.blob_path(desc.digest)
        try:
            f = path.open("rb", buffering=0)
        except FileNotFoundError:
            raise self._missing(desc) from None
        except OSError as exc:
            raise self._unreadable(desc, exc) from None
        return verified_stream(f, desc, label="Layer blob")

    def _missing(self, desc: Descriptor) -> InputError:
        return InputError(
            f"Blob {desc.digest} is missing from the {self.kind} {self.root}",
            hint="The layout is incomplete; copy or download the image again",
            details={"digest": desc.digest},
        )

    def _unreadable(self, desc: Descriptor, exc: OSError) -> InputError:
        """A blob there but not readable as a file (permissions, a directory in its place)."""
        return InputError(f"Blob {desc.digest} of the {self.kind} {self.root} cannot be read: {exc.strerror}",
                          hint="Check the layout's files (readable regular files), or copy the image again",
                          details={"digest": desc.digest})

    def _read_json(self, desc: Descriptor, *, label: str) -> Any:
        if desc.size > _MAX_JSON:
            raise InputError(f"{label} {desc.digest} is implausibly large ({desc.size} bytes)")
        data = self._blob_bytes(desc)
        verify_bytes(data, desc, label=label)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise InputError(f"{label} {desc.digest} is not valid JSON: {exc}") from None

    def _blob_bytes(self, desc: Descriptor) -> bytes:
        """A small blob (manifest, index, config) read whole, not yet verified."""
        try:
            return self.blob_path(desc.digest).read_bytes()
        except FileNotFoundError:
            raise self._missing(desc) from None
        except OSError as exc:
            raise self._unreadable(desc, exc) from None

    def _read_top_index(self) -> dict[str, Any]:
        if not self.root.is_dir():
            raise InputError(f"{self.root} is not a directory", hint="Give oci:PATH of an OCI image layout")
        marker, index = self.root / "oci-layout", self.root / "index.json"
        if not marker.is_file() or not index.is_file():
            raise InputError(
                f"{self.root} is not an OCI image layout (no oci-layout or index.json)",
                hint="Create one with `skopeo copy ... oci:DIR:TAG` or `podman save --format oci-dir`",
            )
        try:
            data = index.read_bytes()
        except OSError as exc:
            raise InputError(f"Cannot read {index}: {exc.strerror}", hint="Check the layout's files") from None
        return parse_top_index(data, str(index))

    # -- choosing the manifest ----------------------------------------------------------------------

    def _pick_by_tag(self, index: dict[str, Any]) -> Descriptor:
        descs = [Descriptor.from_json(d, what="index.json entry") for d in index["manifests"]]
        if not descs:
            raise InputError(f"The {self.kind} {self.root} holds no image")
        tag = self._tag
        tags = sorted({_tag_of(d) for d in descs if _tag_of(d)})
        if tag is None:
            if len(descs) == 1:
                return descs[0]
            raise InputError(
                f"The {self.kind} {self.root} holds {len(descs)} images; say which one",
                hint="Add :TAG to the reference; tags here: " + (", ".join(tags) or "(none)"),
            )
        matches = [d for d in descs if _tag_of(d) == tag]
        if not matches:
            raise InputError(
                f"The {self.kind} {self.root} has no image tagged {tag!r}",
                hint="Tags here: " + (", ".join(tags) or "(none: use oci:PATH without a tag)"),
                details={"tags": tags},
            )
        return matches[0]

    def _resolve(self, desc: Descriptor, *, depth: int) -> tuple[Descriptor, dict[str, Any]]:
        """Follow index -> platform manifest; return the manifest's descriptor and its parsed JSON."""
        if depth > _MAX_NESTING:
            raise InputError(f"Image indexes nest too deeply in {self.root}")
        data = self._read_json(desc, label="Manifest")
        if not isinstance(data, dict):
            raise InputError(f"Manifest {desc.digest} is not a JSON object")
        media_type = desc.media_type or str(data.get("mediaType") or "")
        is_index = media_type in INDEX_TYPES or (media_type not in MANIFEST_TYPES and "manifests" in data)
        if not is_index:
            return desc, data
        if self.index_digest is None:
            self.index_digest = desc.digest  # the outermost index is what a tag resolves to
        return self._resolve(self._pick_platform(desc, data), depth=depth + 1)

    def _pick_platform(self, index_desc: Descriptor, index: dict[str, Any]) -> Descriptor:
        chosen, seen = choose_platform(index, self._host)
        if chosen is None:
            raise InputError(
                f"The image index {index_desc.digest} has no image for this machine ({'/'.join(self._host)})",
                hint="Platforms in the image: " + (", ".join(seen) or "(none)"),
            )
        return chosen


def parse_top_index(data: bytes, name: str) -> dict[str, Any]:
    """A layout's index.json (``name`` says where it was, for messages): a JSON object listing manifests."""
    try:
        index = json.loads(data)
    except ValueError as exc:
        raise InputError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise InputError(f"{name} lists no manifests")
    return index


def _tag_of(desc: Descriptor) -> str:
    """The tag a layout entry carries; a full reference (``name:tag``) counts by its tag part."""
    name = desc.annotations.get(REF_NAME, "")
    head, sep, tail = name.rpartition(":")
    return tail if sep and "/" not in tail and head else name

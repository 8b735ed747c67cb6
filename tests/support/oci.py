"""Test helper: write an OCI image layout from layer tarballs (no external tool needed).

Used by the synthetic-image fixtures and by the Debian VM image builder.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = {
    "tar": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


def _blob(layout: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"sha256:{digest}", len(data)


def _blob_from_file(layout: Path, src: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    with src.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    dest = layout / "blobs" / "sha256" / h.hexdigest()
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return f"sha256:{h.hexdigest()}", dest.stat().st_size


def compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data, compresslevel=1)
    if how == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


def diff_id(tar_bytes: bytes) -> str:
    return "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


@dataclass
class Layer:
    tar: bytes | Path
    """Uncompressed tar bytes, or a path to an already compressed/uncompressed blob file."""
    compression: str = "gzip"
    diff_id: str | None = None


@dataclass
class ImageSpec:
    layers: list[Layer]
    tag: str = "latest"
    architecture: str = "amd64"
    labels: dict[str, str] = field(default_factory=dict)


def write_layout(layout: Path, images: list[ImageSpec]) -> dict[str, str]:
    """Write one OCI layout holding ``images``; returns {tag: manifest digest}."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    manifests = []
    result = {}
    for spec in images:
        layer_descs, diff_ids = [], []
        for layer in spec.layers:
            if isinstance(layer.tar, Path):
                digest, size = _blob_from_file(layout, layer.tar)
                assert layer.diff_id, "a layer given as a file needs its diff_id"
                did = layer.diff_id
            else:
                digest, size = _blob(layout, compress(layer.tar, layer.compression))
                did = diff_id(layer.tar)
            layer_descs.append({"mediaType": MT_LAYER[layer.compression], "digest": digest, "size": size})
            diff_ids.append(did)
        config = {
            "architecture": spec.architecture,
            "os": "linux",
            "config": {"Labels": spec.labels} if spec.labels else {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        cdigest, csize = _blob(layout, json.dumps(config).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": cdigest, "size": csize},
            "layers": layer_descs,
        }
        mdigest, msize = _blob(layout, json.dumps(manifest).encode())
        manifests.append({
            "mediaType": MT_MANIFEST, "digest": mdigest, "size": msize,
            "annotations": {"org.opencontainers.image.ref.name": spec.tag},
            "platform": {"architecture": spec.architecture, "os": "linux"},
        })
        result[spec.tag] = mdigest
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": MT_INDEX,
                                                   "manifests": manifests}))
    return result


class TarBuilder:
    """Build a layer tar in memory entry by entry, with PAX xattrs."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115 (closed in bytes())

    def _info(self, name: str, type_: bytes, mode: int, uid: int, gid: int, mtime: int,
              xattrs: dict[str, bytes] | None) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = type_, mode, uid, gid, mtime
        if xattrs:
            ti.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                              for k, v in xattrs.items()}
        return ti

    def dir(self, name: str, mode: int = 0o755, uid: int = 0, gid: int = 0, mtime: int = 1_600_000_000,
            xattrs: dict[str, bytes] | None = None) -> TarBuilder:
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode, uid, gid, mtime, xattrs))
        return self

    def file(self, name: str, data: bytes = b"", mode: int = 0o644, uid: int = 0, gid: int = 0,
             mtime: int = 1_600_000_000, xattrs: dict[str, bytes] | None = None) -> TarBuilder:
        ti = self._info(name, tarfile.REGTYPE, mode, uid, gid, mtime, xattrs)
        ti.size = len(data)
        self.tar.addfile(ti, io.BytesIO(data))
        return self

    def symlink(self, name: str, target: str, uid: int = 0, gid: int = 0,
                mtime: int = 1_600_000_000) -> TarBuilder:
        ti = self._info(name, tarfile.SYMTYPE, 0o777, uid, gid, mtime, None)
        ti.linkname = target
        self.tar.addfile(ti)
        return self

    def hardlink(self, name: str, target: str) -> TarBuilder:
        ti = self._info(name, tarfile.LNKTYPE, 0o644, 0, 0, 1_600_000_000, None)
        ti.linkname = target
        self.tar.addfile(ti)
        return self

    def device(self, name: str, kind: str, major: int, minor: int, mode: int = 0o600) -> TarBuilder:
        ti = self._info(name, tarfile.CHRTYPE if kind == "char" else tarfile.BLKTYPE, mode, 0, 0,
                        1_600_000_000, None)
        ti.devmajor, ti.devminor = major, minor
        self.tar.addfile(ti)
        return self

    def fifo(self, name: str, mode: int = 0o644) -> TarBuilder:
        self.tar.addfile(self._info(name, tarfile.FIFOTYPE, mode, 0, 0, 1_600_000_000, None))
        return self

    def whiteout(self, name: str) -> TarBuilder:
        parent, _, base = name.rstrip("/").rpartition("/")
        return self.file(f"{parent}/.wh.{base}" if parent else f".wh.{base}")

    def opaque(self, directory: str) -> TarBuilder:
        return self.file(f"{directory.rstrip('/')}/.wh..wh..opq")

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


# -- appended for the image-source tests: multi-platform layouts and damaged blobs --------------------

def write_multiarch_layout(layout: Path, images: dict[str, list[Layer]], *, tag: str = "latest",
                           attestation: bool = True) -> dict[str, str]:
    """Write a layout whose index.json holds one image index (tagged ``tag``) with one manifest per
    architecture in ``images`` (plus, by default, a BuildKit-style attestation manifest first in the
    index). Returns {"index": index digest, <arch>: manifest digest, ...}."""
    staging = layout / ".staging"
    result: dict[str, str] = {}
    entries = []
    if attestation:
        att = json.dumps({"schemaVersion": 2, "mediaType": MT_MANIFEST,
                          "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                                     "digest": _blob(layout, b"{}")[0], "size": 2},
                          "layers": []}).encode()
        adigest, asize = _blob(layout, att)
        entries.append({"mediaType": MT_MANIFEST, "digest": adigest, "size": asize,
                        "platform": {"architecture": "unknown", "os": "unknown"},
                        "annotations": {"vnd.docker.reference.type": "attestation-manifest"}})
    for arch, layers in images.items():
        digests = write_layout(staging, [ImageSpec(layers, tag=arch, architecture=arch)])
        mdigest = digests[arch]
        for blob in (staging / "blobs" / "sha256").iterdir():
            dest = layout / "blobs" / "sha256" / blob.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                shutil.copyfile(blob, dest)
        msize = (layout / "blobs" / "sha256" / mdigest.split(":")[1]).stat().st_size
        entries.append({"mediaType": MT_MANIFEST, "digest": mdigest, "size": msize,
                        "platform": {"architecture": arch, "os": "linux"}})
        result[arch] = mdigest
        shutil.rmtree(staging)
    index = json.dumps({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": entries}).encode()
    idigest, isize = _blob(layout, index)
    result["index"] = idigest
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_text(json.dumps({
        "schemaVersion": 2, "mediaType": MT_INDEX,
        "manifests": [{"mediaType": MT_INDEX, "digest": idigest, "size": isize,
                       "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return result


def flip_byte(layout: Path, digest: str, offset: int = -1) -> None:
    """Corrupt one blob of a layout in place by inverting one byte (the last by default)."""
    path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def newc_cpio(members: dict[str, bytes]) -> bytes:
    """A newc cpio archive (as an initramfs holds), padded to 512 bytes; every member a regular file."""
    out = io.BytesIO()
    for ino, (name, data) in enumerate([*members.items(), ("TRAILER!!!", b"")], start=1):
        mode = 0o100644 if name != "TRAILER!!!" else 0
        encoded = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        out.write(b"\0" * (-out.tell() % 4))
        out.write(data)
        out.write(b"\0" * (-out.tell() % 4))
    out.write(b"\0" * (-out.tell() % 512))
    return out.getvalue()

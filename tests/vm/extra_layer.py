"""A test image with one more layer on top: the base layout's blobs copied, not rebuilt (the signed chain of
tests/vm/signed_image.py, the keymaps of tests/vm/test_identity.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.oci import ImageSpec, Layer, write_layout


def image_plus_layer(base_layout: Path, dest: Path, layer: bytes, *, tag: str = "latest",
                     new_tag: str = "extra") -> str:
    """``tag`` of ``base_layout`` plus ``layer`` (a tar, gzip-compressed here), as ``oci:<dest>/layout:<new_tag>``."""
    index = json.loads((base_layout / "index.json").read_text())
    entry = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag)
    manifest = json.loads(_blob(base_layout, entry["digest"]))
    config = json.loads(_blob(base_layout, manifest["config"]["digest"]))
    layers = [Layer(tar=base_layout / "blobs/sha256" / item["digest"].split(":", 1)[1],
                    compression="zstd" if "zstd" in item["mediaType"] else "gzip", diff_id=diff_id)
              for item, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True)]
    labels = config.get("config", {}).get("Labels") or {}
    layout = dest / "layout"
    write_layout(layout, [ImageSpec(layers=[*layers, Layer(tar=layer, compression="gzip")], tag=new_tag,
                                    labels=labels)])
    return f"oci:{layout}:{new_tag}"


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs/sha256" / digest.split(":", 1)[1]).read_bytes()

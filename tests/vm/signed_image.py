"""The Debian test image with Debian's Secure Boot chain on top, for the boots with Secure Boot enforced.

The test image's kernel is already Debian's signed one (linux-image-<kver>-amd64); one small layer adds the rest
of the chain from Debian's packages (downloaded once, tests/support/debs.py): shim (shim-signed), the MOK
manager (shim-helpers-amd64-signed) and the signed GRUB (grub-efi-amd64-signed). Written next to the test that
uses it (the base layer's blob is copied, not rebuilt).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.debs import unpacked
from tests.support.oci import ImageSpec, Layer, TarBuilder, write_layout

CHAIN_FILES = ("usr/lib/shim/shimx64.efi.signed", "usr/lib/shim/mmx64.efi.signed",
               "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed")
PACKAGES = ("shim-signed", "shim-helpers-amd64-signed", "grub-efi-amd64-signed")


def chain_layer(work: Path) -> bytes:
    tree = work / "debs"
    for package in PACKAGES:
        unpacked(package, tree)
    tar = TarBuilder()
    for d in ("usr", "usr/lib", "usr/lib/shim", "usr/lib/grub", "usr/lib/grub/x86_64-efi-signed"):
        tar.dir(d)
    for rel in CHAIN_FILES:
        tar.file(rel, (tree / rel).read_bytes())
    return tar.bytes()


def signed_chain_image(base_layout: Path, dest: Path, tag: str = "latest") -> str:
    """``tag`` of ``base_layout`` plus the chain layer, as ``oci:<dest>/layout:signed``."""
    index = json.loads((base_layout / "index.json").read_text())
    entry = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag)
    manifest = json.loads(_blob(base_layout, entry["digest"]))
    config = json.loads(_blob(base_layout, manifest["config"]["digest"]))
    layers = [Layer(tar=base_layout / "blobs/sha256" / layer["digest"].split(":", 1)[1],
                    compression="zstd" if "zstd" in layer["mediaType"] else "gzip", diff_id=diff_id)
              for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True)]
    labels = config.get("config", {}).get("Labels") or {}
    layout = dest / "layout"
    write_layout(layout, [ImageSpec(layers=[*layers, Layer(tar=chain_layer(dest), compression="gzip")],
                                    tag="signed", labels=labels)])
    return f"oci:{layout}:signed"


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs/sha256" / digest.split(":", 1)[1]).read_bytes()

"""The Debian test image with Debian's Secure Boot chain on top, for the boots with Secure Boot enforced.

The test image's kernel is already Debian's signed one (linux-image-<kver>-amd64); one small layer adds the rest
of the chain from Debian's packages (downloaded once, tests/support/debs.py): shim (shim-signed), the MOK
manager (shim-helpers-amd64-signed) and the signed GRUB (grub-efi-amd64-signed). Written next to the test that
uses it (tests/vm/extra_layer.py).
"""

from __future__ import annotations

from pathlib import Path

from tests.support.debs import unpacked
from tests.support.oci import TarBuilder
from tests.vm.extra_layer import image_plus_layer

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
    return image_plus_layer(base_layout, dest, chain_layer(dest), tag=tag, new_tag="signed")

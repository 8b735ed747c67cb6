"""OCI facts every source shares: media types, the ref-name annotation, and which manifest of an index is
this machine's (its platform, attestation manifests skipped)."""

from __future__ import annotations

import platform
from typing import Any

from .source import Descriptor

REF_NAME = "org.opencontainers.image.ref.name"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = {MT_OCI_INDEX, MT_DOCKER_LIST}
MANIFEST_TYPES = {MT_OCI_MANIFEST, MT_DOCKER_MANIFEST}
# A manifest attached to an index that describes another one (BuildKit provenance, SBOMs).
_ATTESTATION = ("vnd.docker.reference.type", "attestation-manifest")
_MACHINE_TO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def host_platform() -> tuple[str, str]:
    """(os, architecture) in OCI terms for this machine: linux plus amd64 or arm64."""
    machine = platform.machine().lower()
    return "linux", _MACHINE_TO_ARCH.get(machine, machine)


def choose_platform(index: dict[str, Any], host: tuple[str, str]) -> tuple[Descriptor | None, list[str]]:
    """The index entry for ``host`` (os, architecture), skipping attestation manifests; with the platforms
    seen, for the message when there is none. Shared by every source that reads an index."""
    seen: list[str] = []
    for entry in index.get("manifests") or []:
        desc = Descriptor.from_json(entry, what="index entry")
        plat = entry.get("platform")  # a dict: from_json checked
        plat = plat if isinstance(plat, dict) else {}  # a malformed platform names none
        os_, arch = str(plat.get("os", "")), str(plat.get("architecture", ""))
        if desc.annotations.get(_ATTESTATION[0]) == _ATTESTATION[1] or (os_, arch) == ("unknown", "unknown"):
            continue
        seen.append(f"{os_}/{arch}" + (f"/{plat['variant']}" if plat.get("variant") else ""))
        if (os_, arch) == host:
            return desc, seen
    return None, seen

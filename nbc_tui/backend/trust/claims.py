"""The payload both signature formats sign (containers' "simple signing" JSON): which manifest digest and
which image name the signer vouches for, and whether that name fits the image being pulled (the policy's
``signedIdentity``)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import InputError
from ..image.reference import RegistryRef, parse_registry_ref

ATOMIC_TYPE = "atomic container signature"
"""What ``skopeo copy --sign-by`` and ``podman push --sign-by`` (GPG) write as ``critical.type``."""
COSIGN_TYPE = "cosign container image signature"
"""What cosign (and containers' sigstore signing) writes as ``critical.type``."""


class ClaimError(ValueError):
    """The payload is not a signature of the expected form (why, in words)."""


@dataclass(frozen=True)
class Claim:
    manifest_digest: str
    docker_reference: str
    """The image name the signer gave (may be empty in cosign payloads)."""


def read_claim(payload: bytes, *, expected_type: str) -> Claim:
    """The digest and name a payload vouches for; ClaimError when it is not a signature of this type."""
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise ClaimError(f"the signed payload is not JSON ({exc})") from None
    critical = data.get("critical") if isinstance(data, dict) else None
    if not isinstance(critical, dict):
        raise ClaimError("the signed payload has no 'critical' section")
    if critical.get("type") != expected_type:
        raise ClaimError(f"the signed payload is of type {critical.get('type')!r}, not {expected_type!r}")
    image, identity = critical.get("image"), critical.get("identity")
    digest = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    if not isinstance(digest, str) or not digest:
        raise ClaimError("the signed payload names no manifest digest")
    reference = identity.get("docker-reference", "") if isinstance(identity, dict) else ""
    if not isinstance(reference, str):
        raise ClaimError("the signed payload's docker-reference is not a string")
    return Claim(digest, reference)


@dataclass(frozen=True)
class SignedIdentity:
    """A policy's ``signedIdentity``: which names in a signature are accepted for the pulled image."""

    kind: str = "matchRepoDigestOrExact"
    value: str = ""
    """The reference or repository that ``exactReference`` / ``exactRepository`` name."""

    KINDS = ("matchExact", "matchRepoDigestOrExact", "matchRepository", "exactReference", "exactRepository")


def _repo(ref: RegistryRef) -> tuple[str, str]:
    return ref.display_registry, ref.repository


def identity_matches(identity: SignedIdentity, pulled: RegistryRef, claimed: str) -> bool:
    """Whether the name a signature gives (``claimed``) is accepted for ``pulled`` (containers' rules)."""
    try:
        signed = parse_registry_ref(claimed)
    except InputError:
        return False
    if identity.kind == "matchRepository":
        return _repo(signed) == _repo(pulled)
    if identity.kind == "exactRepository":
        return _repo(signed) == _repo(parse_registry_ref(identity.value))
    if identity.kind == "exactReference":
        return str(signed) == str(parse_registry_ref(identity.value))
    if identity.kind == "matchRepoDigestOrExact" and pulled.digest and not pulled.tag:
        return _repo(signed) == _repo(pulled)
    return str(signed) == str(pulled)  # matchExact, and matchRepoDigestOrExact for a tag

"""Key-based cosign signatures (nbc's scheme, reference §6.6): the signature image at tag
``sha256-<hex>.sig`` of the same repository, whose layers carry the signed payload as a blob and the
base64 ECDSA signature in the ``dev.cosignproject.cosign/signature`` annotation. Layers that carry a
certificate (keyless signing) are not key-based and are skipped. ECDSA is checked with ``cryptography``."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import InputError, NbcError
from ..image.registry import RegistrySource
from ..image.source import Descriptor
from .policy import TrustedKey

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
MAX_PAYLOAD = 1 << 20
"""A signed payload larger than this is refused unread (nbc's limit)."""


@dataclass(frozen=True)
class CosignKey:
    label: str
    public_key: ec.EllipticCurvePublicKey
    fingerprint: str
    """``sha256:<hex>`` of the key's DER SubjectPublicKeyInfo."""


def load_key(key: TrustedKey) -> CosignKey:
    """An ECDSA public key in PEM (what ``cosign generate-key-pair`` writes as cosign.pub)."""
    try:
        public = serialization.load_pem_public_key(key.data)
    except ValueError:
        raise InputError(f"The cosign key {key.label} is not a PEM public key",
                         hint="Give cosign.pub as `cosign generate-key-pair` writes it") from None
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise InputError(f"The cosign key {key.label} is not an ECDSA key", hint="cosign keys are ECDSA (P-256)")
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return CosignKey(key.label, public, "sha256:" + hashlib.sha256(der).hexdigest())


@dataclass(frozen=True)
class CosignSignature:
    payload: bytes
    signature: bytes


def signature_tag(digest: str) -> str:
    algorithm, _, hex_digest = digest.partition(":")
    return f"{algorithm}-{hex_digest}.sig"


def read_signatures(source: RegistrySource, digest: str) -> list[CosignSignature]:
    """The key-based signatures stored for ``digest`` in the image's repository (none: an empty list)."""
    data = source.manifest_at(signature_tag(digest))
    if data is None:
        return []
    try:
        manifest = json.loads(data)
        layers = manifest.get("layers") or []
    except (ValueError, AttributeError):
        raise NbcError(f"The signature image {signature_tag(digest)} of {source.ref} is not a manifest") from None
    found = []
    for item in layers:
        desc = Descriptor.from_json(item, what="signature layer")
        encoded = desc.annotations.get(SIGNATURE_ANNOTATION)
        if not encoded or CERTIFICATE_ANNOTATION in desc.annotations:
            continue
        try:
            signature = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
        payload = source.small_blob(desc, label="Signature payload", limit=MAX_PAYLOAD)
        found.append(CosignSignature(payload, signature))
    return found


def signed_by(signature: CosignSignature, key: CosignKey) -> bool:
    """Whether ``key`` made ``signature`` over its payload (ECDSA with SHA-256, ASN.1 DER)."""
    try:
        key.public_key.verify(signature.signature, signature.payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True

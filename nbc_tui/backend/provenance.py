"""Whether and by what an image was verified before it was used: what the staged cache, the installed
system's state and ``status`` record and show. ``trust/`` decides it; this module only holds the record, so
that the cache (image/) and the state (system/) can keep it without depending on the verifier."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class SignatureCheck(BaseModel):
    """One signature that verified."""

    model_config = ConfigDict(extra="ignore")

    method: Literal["cosign", "gpg"]
    """``cosign``: a key-based cosign (sigstore) signature in the registry; ``gpg``: containers' simple
    signing (OpenPGP), from the lookaside storage registries.d names."""
    signer: str
    """The key that made it: ``sha256:<hex>`` of a public key's DER form (cosign), or an OpenPGP fingerprint."""
    key: str = ""
    """Where the trusted key came from (a file, or ``keyData`` of the policy)."""
    signed_digest: str
    """The digest the signature names: the platform manifest's, or the index's for a multi-platform image."""


class Verification(BaseModel):
    """The verdict on one image: verified (by every signature the policy asked for) or not, and why."""

    model_config = ConfigDict(extra="ignore")

    verified: bool
    by: str
    """What decided: ``--cosign-key FILE``, ``policy FILE (scope "...")``, ``--insecure-skip-verify``..."""
    signatures: list[SignatureCheck] = []
    note: str = ""
    """Why the image was not verified, when it was not."""

    def describe(self) -> str:
        """One line for people, e.g. ``verified: cosign signature of sha256:0123… by key sha256:abcd…``."""
        if not self.verified:
            return f"not verified: {self.note or self.by}"
        signed = "; ".join(f"{s.method} signature of {s.signed_digest[:19]}… by key {_short(s.signer)}"
                           for s in self.signatures)
        return f"verified: {signed} ({self.by})"


def _short(signer: str) -> str:
    return signer[:19] + "…" if signer.startswith("sha256:") else signer[-16:]


def not_verified(by: str, note: str) -> Verification:
    return Verification(verified=False, by=by, note=note)

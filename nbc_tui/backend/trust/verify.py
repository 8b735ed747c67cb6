"""The decision for one registry pull: which signatures the policy (or ``--cosign-key``) asks for, whether
the image carries them, and the record of it. Called once the image's digests are known and before any
layer is read or any disk touched; a missing or wrong signature is refused with the key and the digest.

- ``--insecure-skip-verify``: nothing is checked; a warning says so.
- ``--cosign-key FILE``: a key-based cosign signature by that key, of the platform manifest or of the index,
  is required (nbc's rule: the payload's digest must match; the policy is not consulted).
- Otherwise containers' policy.json (``--signature-policy``, else ``~/.config/containers/policy.json``, else
  ``/etc/containers/policy.json``) decides; with none at all the image is not verified and a warning says so.
- Images not pulled from a registry (a layout, an archive, the local daemon) are not verified here: staged
  cache entries carry the record of their download.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from ..image.cache import CachedImage
from ..image.registry import RegistrySource
from ..image.source import ImageSource
from ..provenance import SignatureCheck, Verification, not_verified
from ..runner import RunContext
from ..system.state import SystemConfig

# cosign (cryptography) and lookaside (yaml) are imported in the functions that check a signature: at the
# top they would add tens of milliseconds to the start of every command that pulls an image, signed or not.
from . import gpg
from .claims import ATOMIC_TYPE, COSIGN_TYPE, ClaimError, identity_matches, read_claim
from .policy import Policy, Requirement, ScopedRequirements, TrustedKey, default_policy_path

if TYPE_CHECKING:
    from ..plan import ImageSpec

SKIPPED = "Skipping image signature verification (--insecure-skip-verify)"
"""nbc's words for the warning (reference §6.6)."""
REFUSAL_HINT = {
    "cosign": "Use --cosign-key to trust a different key, or fix the signature policy; --insecure-skip-verify "
              "skips the check (not recommended). Nothing was written",
    "GPG": "Trust the signer's key in the policy (signedBy keyPath), or check registries.d's lookaside; "
           "--insecure-skip-verify skips the check (not recommended). Nothing was written",
}


@dataclass(frozen=True)
class TrustSettings:
    """How a pull is verified: the flags and answer-file keys of install, update and download."""

    cosign_key: Path | None = None
    insecure_skip_verify: bool = False
    signature_policy: Path | None = None
    """policy.json to follow instead of containers' default lookup."""
    registries_d: Path | None = None
    """registries.d directory to read lookaside storage from instead of /etc/containers/registries.d."""

    def __post_init__(self) -> None:
        if self.cosign_key and self.insecure_skip_verify:
            raise InputError("--cosign-key and --insecure-skip-verify contradict each other",
                             hint="Give one of them")

    @classmethod
    def from_spec(cls, spec: ImageSpec) -> TrustSettings:
        return cls(spec.cosign_key, spec.insecure_skip_verify, spec.signature_policy, spec.registries_d)


class UntrustedImage(InputError):
    """The policy asks for a signature the image does not carry (or forbids the image): nothing is written."""


def verify_pull(source: ImageSource, settings: TrustSettings, *, ctx: RunContext,
                warn: Callable[[str], None]) -> Verification:
    """Check ``source`` as ``settings`` say; UntrustedImage (exit 2) when it must not be used."""
    if not isinstance(source, RegistrySource):
        return not_verified("local image", "not pulled from a registry (signatures are checked on registry pulls)")
    if settings.insecure_skip_verify:
        warn(SKIPPED)
        return not_verified("--insecure-skip-verify", "signature verification skipped (--insecure-skip-verify)")
    if settings.cosign_key:
        key = _read_key(settings.cosign_key)
        scoped = ScopedRequirements(f"--cosign-key {settings.cosign_key}", (Requirement("sigstoreSigned", (key,)),))
        return _check(source, scoped, settings, ctx=ctx, warn=warn, check_identity=False)
    path = settings.signature_policy or default_policy_path()
    if path is None:
        warn(f"{source.ref} is not verified: there is no signature policy (/etc/containers/policy.json)")
        return not_verified("no signature policy", "there is no signature policy (/etc/containers/policy.json)")
    return _check(source, Policy(path).for_image(source.registry_ref), settings, ctx=ctx, warn=warn,
                  check_identity=True)


def verify_opened(source: ImageSource, staged: CachedImage | None, settings: TrustSettings, *, ctx: RunContext,
                  warn: Callable[[str], None]) -> Verification:
    """As :func:`verify_pull`; a staged cache entry carries the verdict of its download instead (its signatures
    were checked then, the layout holds no signature)."""
    if staged is None:
        return verify_pull(source, settings, ctx=ctx, warn=warn)
    record = staged.verification or not_verified("staged cache", "staged without a record of its verification")
    if settings.signature_policy and not record.by.startswith(f"policy {settings.signature_policy} ("):
        # The layout holds no signature to check against another policy: only that policy's own verdict will do.
        raise UntrustedImage(
            f"The staged image {staged.image_ref} ({staged.image_digest}) was not checked against the signature "
            f"policy {settings.signature_policy} when it was downloaded: {record.describe()}",
            hint=f"Download it again with --signature-policy {settings.signature_policy}, or use the image from "
                 "its registry (--image). Nothing was written",
            details={"reason": "signature", "image": staged.image_ref, "digests": [staged.image_digest]})
    if settings.cosign_key:
        # Asked for a key, offline: only a download that this key verified will do.
        from . import cosign
        key = cosign.load_key(_read_key(settings.cosign_key))
        if not any(s.signer == key.fingerprint for s in record.signatures):
            raise UntrustedImage(
                f"The staged image {staged.image_ref} ({staged.image_digest}) was not verified with the cosign key "
                f"{settings.cosign_key} ({key.fingerprint[:19]}…) when it was downloaded: {record.describe()}",
                hint="Download it again with --cosign-key, or install it without --cosign-key. Nothing was written",
                details={"reason": "signature", "image": staged.image_ref, "digests": [staged.image_digest]})
    return record


def settings_for_update(given: TrustSettings, config: SystemConfig, root: Path = Path("/")) -> TrustSettings:
    """An update keeps trusting the key its install was told to trust (``cosign_key`` in config.json) unless
    the flags say how to verify this time."""
    if given.cosign_key or given.insecure_skip_verify or given.signature_policy or not config.cosign_key:
        return given
    key = root / config.cosign_key.lstrip("/")
    if not key.is_file():
        raise InputError(f"The cosign key this system trusts ({config.cosign_key}) is missing",
                         hint="Give --cosign-key FILE, or --signature-policy FILE to follow a policy instead")
    return TrustSettings(key, False, None, given.registries_d)


def _read_key(path: Path) -> TrustedKey:
    try:
        return TrustedKey(str(path), path.read_bytes())
    except OSError as exc:
        raise InputError(f"Cannot read the cosign key {path}: {exc.strerror or exc}") from None


def _check(source: RegistrySource, scoped: ScopedRequirements, settings: TrustSettings, *, ctx: RunContext,
           warn: Callable[[str], None], check_identity: bool) -> Verification:
    checks = []
    for requirement in scoped.requirements:
        if requirement.type == "reject":
            raise UntrustedImage(f"The signature policy forbids {source.ref}: {scoped.source} says reject",
                                 hint="Use an image the policy allows. Nothing was written",
                                 details={"reason": "rejected", "policy": scoped.source})
        if requirement.type == "signedBy":
            checks.append(_gpg_signature(source, requirement, scoped, settings, ctx=ctx))
        elif requirement.type == "sigstoreSigned":
            checks.append(_cosign_signature(source, requirement, scoped, check_identity=check_identity))
    if not checks:
        warn(f"{source.ref} is not verified: {scoped.source} accepts any image (insecureAcceptAnything)")
        return not_verified(scoped.source, "the policy accepts any image (insecureAcceptAnything)")
    return Verification(verified=True, by=scoped.source, signatures=checks)


def _digests(source: RegistrySource) -> list[str]:
    """What a signature may name: the platform manifest, or the index the reference resolved to."""
    return [source.manifest_digest] + ([source.index_digest] if source.index_digest else [])


def _claim_problem(payload: bytes, *, kind: str, digest: str, source: RegistrySource, requirement: Requirement,
                   check_identity: bool) -> str:
    """Why a verified payload does not vouch for this image ("" when it does)."""
    try:
        claim = read_claim(payload, expected_type=kind)
    except ClaimError as exc:
        return str(exc)
    if claim.manifest_digest != digest:
        return f"it signs another digest ({claim.manifest_digest[:19]}…)"
    if check_identity and not identity_matches(requirement.identity, source.registry_ref, claim.docker_reference):
        return f"it names another image ({claim.docker_reference!r}; {requirement.identity.kind})"
    return ""


def _cosign_signature(source: RegistrySource, requirement: Requirement, scoped: ScopedRequirements, *,
                      check_identity: bool) -> SignatureCheck:
    from . import cosign
    keys = [cosign.load_key(k) for k in requirement.keys]
    problems = []
    for digest in _digests(source):
        for n, signature in enumerate(cosign.read_signatures(source, digest), 1):
            key = next((k for k in keys if cosign.signed_by(signature, k)), None)
            if key is None:
                problems.append(f"signature {n} of {digest[:19]}… was made by another key")
                continue
            why = _claim_problem(signature.payload, kind=COSIGN_TYPE, digest=digest, source=source,
                                 requirement=requirement, check_identity=check_identity)
            if not why:
                return SignatureCheck(method="cosign", signer=key.fingerprint, key=key.label, signed_digest=digest)
            problems.append(f"signature {n} of {digest[:19]}…: {why}")
    if not problems:
        tags = " or ".join(cosign.signature_tag(d) for d in _digests(source))
        problems.append(f"there is no cosign signature (no tag {tags} in {source.registry_ref.repository})")
    raise _refusal(source, scoped, "cosign", [f"{k.label} ({k.fingerprint[:19]}…)" for k in keys], problems)


def _gpg_signature(source: RegistrySource, requirement: Requirement, scoped: ScopedRequirements,
                   settings: TrustSettings, *, ctx: RunContext) -> SignatureCheck:
    from .lookaside import lookaside_for, read_signatures
    keys = [k.label for k in requirement.keys]
    store = lookaside_for(source.registry_ref, settings.registries_d)
    if store is None:
        raise _refusal(source, scoped, "GPG", keys, ["registries.d names no lookaside storage for this image"])
    problems = []
    for digest in _digests(source):
        for n, signature in enumerate(read_signatures(store, source.registry_ref, digest), 1):
            verdict = gpg.verify_signed_message(signature, requirement.keys, ctx=ctx)
            if not verdict.fingerprint:
                problems.append(f"signature {n} of {digest[:19]}…: {verdict.problem}")
                continue
            why = _claim_problem(verdict.payload, kind=ATOMIC_TYPE, digest=digest, source=source,
                                 requirement=requirement, check_identity=True)
            if not why:
                return SignatureCheck(method="gpg", signer=verdict.fingerprint, key=", ".join(keys),
                                      signed_digest=digest)
            problems.append(f"signature {n} of {digest[:19]}… by {verdict.fingerprint}: {why}")
    if not problems:
        problems.append(f"no signature in {store.url} ({store.source})")
    raise _refusal(source, scoped, "GPG", keys, problems)


def _refusal(source: RegistrySource, scoped: ScopedRequirements, kind: str, keys: list[str],
             problems: list[str]) -> UntrustedImage:
    digests = " or ".join(_digests(source))
    found = "; ".join(problems) if problems else "there is no signature"
    return UntrustedImage(
        f"{source.ref} ({digests}) has no valid {kind} signature by {', '.join(keys)}, as {scoped.source} "
        f"requires: {found}",
        hint=REFUSAL_HINT[kind],
        details={"reason": "signature", "image": source.ref, "digests": _digests(source), "keys": keys,
                 "policy": scoped.source, "problems": problems},
    )

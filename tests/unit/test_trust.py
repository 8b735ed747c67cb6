"""Image trust, the pure parts: policy.json and registries.d scopes and parsing, signed identities, payloads,
keys, the record's words and which settings an update uses. The real signatures are tested against real
signers in tests/integration/test_signatures.py."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nbc_tui.backend.errors import InputError
from nbc_tui.backend.image.reference import parse_registry_ref
from nbc_tui.backend.provenance import SignatureCheck, Verification, not_verified
from nbc_tui.backend.system.state import SystemConfig
from nbc_tui.backend.trust.claims import (
    ATOMIC_TYPE,
    COSIGN_TYPE,
    ClaimError,
    SignedIdentity,
    identity_matches,
    read_claim,
)
from nbc_tui.backend.trust.cosign import load_key, signature_tag
from nbc_tui.backend.trust.lookaside import BUILTIN_LOOKASIDE, lookaside_for, signature_urls
from nbc_tui.backend.trust.policy import Policy, TrustedKey
from nbc_tui.backend.trust.scopes import docker_scopes
from nbc_tui.backend.trust.verify import TrustSettings, settings_for_update

DIGEST = "sha256:" + "ab" * 32


def test_scopes_go_from_the_image_to_the_host_then_wildcards() -> None:
    assert docker_scopes(parse_registry_ref("quay.io/org/team/os:41")) == [
        "quay.io/org/team/os:41", "quay.io/org/team/os", "quay.io/org/team", "quay.io/org", "quay.io", "*.io"]
    assert docker_scopes(parse_registry_ref(f"registry.example.com:5000/os@{DIGEST}"))[:3] == [
        f"registry.example.com:5000/os@{DIGEST}", "registry.example.com:5000/os", "registry.example.com:5000"]
    assert "*.example.com" in docker_scopes(parse_registry_ref("registry.example.com:5000/os"))
    # Docker Hub under its usual name; an IP address has no parent domains.
    assert docker_scopes(parse_registry_ref("debian:12"))[0] == "docker.io/library/debian:12"
    assert docker_scopes(parse_registry_ref("127.0.0.1:5000/os:1")) == [
        "127.0.0.1:5000/os:1", "127.0.0.1:5000/os", "127.0.0.1:5000"]


def write(tmp_path: Path, data: object, name: str = "policy.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_the_most_specific_scope_applies_then_the_transport_default_then_the_default(tmp_path: Path) -> None:
    key = tmp_path / "key.pub"
    key.write_text("key")
    policy = Policy(write(tmp_path, {
        "default": [{"type": "reject"}],
        "transports": {"docker": {
            "quay.io/org": [{"type": "sigstoreSigned", "keyPath": str(key),
                             "signedIdentity": {"type": "matchRepository"}}],
            "quay.io/org/os:dev": [{"type": "insecureAcceptAnything"}],
            "*.example.com": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": base64.b64encode(b"k").decode()}],
        }}}))
    scoped = policy.for_image(parse_registry_ref("quay.io/org/os:41"))
    assert scoped.source.endswith('(scope "quay.io/org")')
    [req] = scoped.requirements
    assert (req.type, req.keys, req.identity.kind) == ("sigstoreSigned", (TrustedKey(str(key), b"key"),),
                                                       "matchRepository")
    assert policy.for_image(parse_registry_ref("quay.io/org/os:dev")).requirements[0].type == "insecureAcceptAnything"
    [gpg] = policy.for_image(parse_registry_ref("registry.example.com/os")).requirements
    assert (gpg.type, gpg.keys[0].data, gpg.identity.kind) == ("signedBy", b"k", "matchRepoDigestOrExact")
    assert policy.for_image(parse_registry_ref("ghcr.io/x/y")).source.endswith("(default)")
    anything = [{"type": "insecureAcceptAnything"}]
    with_transport_default = Policy(write(tmp_path, {"default": [{"type": "reject"}],
                                                     "transports": {"docker": {"": anything}}}, "p2.json"))
    assert with_transport_default.for_image(parse_registry_ref("ghcr.io/x/y")).requirements[0].type == \
        "insecureAcceptAnything"


@pytest.mark.parametrize(("policy", "words"), [
    ({"transports": {}}, 'no "default"'),
    ({"default": []}, "default: must be a non-empty list"),
    ({"default": [{"type": "signedBy"}]}, "default[0]: give exactly one of keyPath"),
    ({"default": [{"type": "signedByX"}]}, "unknown requirement type 'signedByX'"),
    ({"default": [{"type": "signedBy", "keyType": "X509Certificates", "keyPath": "/k"}]}, "keyType"),
    ({"default": [{"type": "sigstoreSigned", "fulcio": {}}]}, "'fulcio' is not supported"),
    ({"default": [{"type": "sigstoreSigned", "keyPath": "/no/such/key"}]}, "cannot read the key /no/such/key"),
    ({"default": [{"type": "sigstoreSigned", "keyData": "%%%"}]}, "keyData is not base64"),
    ({"default": [{"type": "reject"}], "transports": {"docker": {"q.io": [
        {"type": "sigstoreSigned", "keyData": "aw==", "signedIdentity": {"type": "remapIdentity"}}]}}},
     'transports.docker["q.io"][0]: signedIdentity type \'remapIdentity\' is not supported'),
    ({"default": [{"type": "sigstoreSigned", "keyData": "aw==", "signedIdentity": {"type": "exactReference"}}]},
     "needs dockerReference"),
])
def test_a_policy_it_cannot_follow_is_refused_with_its_place(tmp_path: Path, policy: dict, words: str) -> None:
    with pytest.raises(InputError) as err:
        Policy(write(tmp_path, policy)).for_image(parse_registry_ref("ghcr.io/x/y"))  # the default's keys are read
    assert words in err.value.message and str(tmp_path / "policy.json") in err.value.message


def test_a_key_missing_for_another_registrys_scope_does_not_stop_this_pull(tmp_path: Path) -> None:
    """A distribution's policy names keys for registries it may not ship (Red Hat's for registry.redhat.io):
    they are read for that scope only. Its form is checked for every scope at once."""
    policy = Policy(write(tmp_path, {"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": {
        "registry.redhat.io": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/no/such/rh-key"}]}}}))
    assert policy.for_image(parse_registry_ref("quay.io/org/os:1")).requirements[0].type == "insecureAcceptAnything"
    with pytest.raises(InputError, match="cannot read the key /no/such/rh-key"):
        policy.for_image(parse_registry_ref("registry.redhat.io/ubi9/ubi:latest"))
    with pytest.raises(InputError) as err:
        Policy(write(tmp_path, {"default": [{"type": "reject"}],
                                "transports": {"docker": {"q.io": [{"type": "signedBy"}]}}}, "p3.json"))
    assert 'transports.docker["q.io"][0]: give exactly one of keyPath' in err.value.message


def test_a_policy_that_is_not_json_or_missing_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        Policy(tmp_path / "bad.json")
    with pytest.raises(InputError, match="Cannot read"):
        Policy(tmp_path / "missing.json")


@pytest.mark.parametrize(("kind", "value", "pulled", "claimed", "ok"), [
    ("matchRepoDigestOrExact", "", "quay.io/org/os:41", "quay.io/org/os:41", True),
    ("matchRepoDigestOrExact", "", "quay.io/org/os:41", "quay.io/org/os:42", False),
    ("matchRepoDigestOrExact", "", f"quay.io/org/os@{DIGEST}", "quay.io/org/os:anything", True),
    ("matchExact", "", f"quay.io/org/os@{DIGEST}", "quay.io/org/os:anything", False),
    ("matchRepository", "", "quay.io/org/os:41", "quay.io/org/os:1", True),
    ("matchRepository", "", "quay.io/org/os:41", "quay.io/org/other:41", False),
    ("exactRepository", "quay.io/org/os", "mirror.example.com/os:41", "quay.io/org/os:1", True),
    ("exactReference", "quay.io/org/os:41", "mirror.example.com/os:41", "quay.io/org/os:41", True),
    ("exactReference", "quay.io/org/os:41", "mirror.example.com/os:41", "quay.io/org/os:40", False),
    ("matchRepository", "", "debian:12", "docker.io/library/debian:11", True),
    ("matchRepository", "", "quay.io/org/os:41", "not a reference", False),
])
def test_signed_identities_follow_containers_rules(kind: str, value: str, pulled: str, claimed: str,
                                                   ok: bool) -> None:
    assert identity_matches(SignedIdentity(kind, value), parse_registry_ref(pulled), claimed) is ok


def payload(kind: str = COSIGN_TYPE, digest: object = DIGEST, reference: object = "quay.io/org/os") -> bytes:
    return json.dumps({"critical": {"identity": {"docker-reference": reference},
                                    "image": {"docker-manifest-digest": digest}, "type": kind},
                       "optional": None}).encode()


def test_claims_are_read_strictly() -> None:
    claim = read_claim(payload(), expected_type=COSIGN_TYPE)
    assert (claim.manifest_digest, claim.docker_reference) == (DIGEST, "quay.io/org/os")
    for bad, words in [(payload(ATOMIC_TYPE), "of type 'atomic container signature'"), (b"{", "not JSON"),
                       (b"[]", "no 'critical'"), (payload(digest=""), "names no manifest digest"),
                       (payload(reference=7), "not a string")]:
        with pytest.raises(ClaimError, match=words):
            read_claim(bad, expected_type=COSIGN_TYPE)


def test_cosign_keys_must_be_pem_ecdsa_and_are_named_by_their_der_digest(tmp_path: Path) -> None:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    key = load_key(TrustedKey("cosign.pub", pem))
    assert key.fingerprint.startswith("sha256:") and len(key.fingerprint) == 71
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(InputError, match="not an ECDSA key"):
        load_key(TrustedKey("rsa.pub", rsa_pem))
    with pytest.raises(InputError, match="not a PEM public key"):
        load_key(TrustedKey("junk", b"junk"))
    assert signature_tag(DIGEST) == f"sha256-{'ab' * 32}.sig"


def test_lookaside_comes_from_the_most_specific_registries_d_section(tmp_path: Path) -> None:
    d = tmp_path / "registries.d"
    d.mkdir()
    (d / "a.yaml").write_text("default-docker:\n  lookaside: https://sigs.example.com\n")
    (d / "b.yaml").write_text("docker:\n  quay.io/org:\n    sigstore: file:///srv/sigs\n"
                              "  quay.io/org/nosigs:\n    use-sigstore-attachments: true\n")
    (d / "ignored.txt").write_text("not: yaml: at all")
    store = lookaside_for(parse_registry_ref("quay.io/org/os:1"), d)
    assert store is not None and store.url == "file:///srv/sigs" and "b.yaml" in store.source
    assert lookaside_for(parse_registry_ref("ghcr.io/x/y"), d).url == "https://sigs.example.com"  # type: ignore[union-attr]
    assert lookaside_for(parse_registry_ref("quay.io/org/nosigs"), d) is None
    assert lookaside_for(parse_registry_ref("ghcr.io/x/y"), tmp_path / "none").url == BUILTIN_LOOKASIDE  # type: ignore[union-attr]
    assert signature_urls("file:///srv/sigs/", parse_registry_ref("quay.io/org/os:1"), DIGEST)[:2] == [
        f"file:///srv/sigs/org/os@sha256={'ab' * 32}/signature-1",
        f"file:///srv/sigs/org/os@sha256={'ab' * 32}/signature-2"]
    (d / "c.yaml").write_text("docker: [")
    with pytest.raises(InputError, match=r"c\.yaml"):
        lookaside_for(parse_registry_ref("quay.io/org/os:1"), d)


def test_the_record_says_what_verified_it_or_why_not() -> None:
    good = Verification(verified=True, by="--cosign-key /k.pub", signatures=[
        SignatureCheck(method="cosign", signer="sha256:" + "cd" * 32, key="/k.pub", signed_digest=DIGEST)])
    assert good.describe() == (f"verified: cosign signature of {DIGEST[:19]}… by key sha256:cdcdcdcdcdcd… "
                               "(--cosign-key /k.pub)")
    gpg = SignatureCheck(method="gpg", signer="0123456789ABCDEF0123456789ABCDEF01234567", signed_digest=DIGEST)
    assert "by key 89ABCDEF01234567" in Verification(verified=True, by="policy", signatures=[gpg]).describe()
    assert not_verified("--insecure-skip-verify", "skipped").describe() == "not verified: skipped"


def config(**extra: object) -> SystemConfig:
    return SystemConfig(image_ref="quay.io/org/os:1", image_digest=DIGEST, device="/dev/vda", install_date="now",
                        kernel_args=[], bootloader_type="grub2", filesystem_type="ext4", **extra)


def test_an_update_keeps_the_key_of_the_install_unless_told_otherwise(tmp_path: Path) -> None:
    key = tmp_path / "var/lib/nbc/state/cosign.pub"
    key.parent.mkdir(parents=True)
    key.write_text("pem")
    recorded = config(cosign_key="/var/lib/nbc/state/cosign.pub")
    regd = Path("/etc/regd")
    assert settings_for_update(TrustSettings(registries_d=regd), recorded, tmp_path) == TrustSettings(
        cosign_key=key, registries_d=regd)
    for given in (TrustSettings(insecure_skip_verify=True), TrustSettings(signature_policy=Path("/p.json")),
                  TrustSettings(cosign_key=Path("/other.pub"))):
        assert settings_for_update(given, recorded, tmp_path) == given
    assert settings_for_update(TrustSettings(), config(), tmp_path) == TrustSettings()
    key.unlink()
    with pytest.raises(InputError, match="is missing"):
        settings_for_update(TrustSettings(), recorded, tmp_path)
    with pytest.raises(InputError, match="contradict"):
        TrustSettings(cosign_key=key, insecure_skip_verify=True)
    assert "cosign_key" not in json.loads(config().to_json())

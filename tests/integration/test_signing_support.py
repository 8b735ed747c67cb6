"""The signing test support makes signatures a real verifier accepts: gpgv and skopeo's policy for the simple
signing one, the ``cryptography`` package (and the registry's own view of the tag) for the cosign one."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.registry_fixtures import RegistryServer
from tests.support.signing import (
    COSIGN_SIGNATURE_ANNOTATION,
    MT_COSIGN_PAYLOAD,
    MT_OCI_MANIFEST,
    CosignSigner,
    GpgSigner,
    signature_path,
    write_policy,
    write_registries_d,
)


@pytest.fixture
def gpg_signer(tmp_path: Path) -> Iterator[GpgSigner]:
    signer = GpgSigner.create(tmp_path / "gpg")
    yield signer
    signer.close()


def gpgv_payload(signer: GpgSigner, signature: Path, work: Path) -> dict:
    """Verify with gpgv against only the signer's public key (dearmored: gpgv takes no armored keyring)."""
    keyring = work / "keyring.gpg"
    subprocess.run(["gpg", "--batch", "--yes", "--dearmor", "--output", str(keyring), str(signer.public_key)],
                   check=True, capture_output=True)
    out = subprocess.run(["gpgv", "--keyring", str(keyring), "--output", "-", str(signature)],
                         check=True, capture_output=True).stdout
    return json.loads(out)


def manifest_digest(registry: RegistryServer, repository: str, reference: str, media_type: str) -> str:
    r = requests.head(f"{registry.url}/v2/{repository}/manifests/{reference}", headers={"Accept": media_type},
                      timeout=10)
    r.raise_for_status()
    return r.headers["Docker-Content-Digest"]


def test_push_signed_writes_a_gpgv_verifiable_signature_to_the_lookaside(
        registry: RegistryServer, synthetic_image: str, gpg_signer: GpgSigner, tmp_path: Path) -> None:
    assert len(gpg_signer.fingerprint) == 40 and gpg_signer.fingerprint == gpg_signer.fingerprint.upper()
    assert gpg_signer.home.stat().st_mode & 0o777 == 0o700
    assert gpg_signer.public_key.read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    lookaside = tmp_path / "lookaside"

    digest = gpg_signer.push_signed(registry.host, synthetic_image, "sys/img:v1", lookaside)

    assert digest == manifest_digest(registry, "sys/img", "v1", MT_OCI_MANIFEST)
    signature = lookaside / f"sys/img@sha256={digest.removeprefix('sha256:')}" / "signature-1"
    assert signature_path(lookaside, "sys/img", digest) == signature
    assert [p for p in lookaside.rglob("*") if p.is_file()] == [signature]
    payload = gpgv_payload(gpg_signer, signature, tmp_path)
    assert payload["critical"] == {"type": "atomic container signature",
                                   "image": {"docker-manifest-digest": digest},
                                   "identity": {"docker-reference": f"{registry.host}/sys/img:v1"}}

    other = "sha256:" + "ab" * 32
    made = gpg_signer.sign_digest(f"{registry.host}/sys/img:v1", other, tmp_path / "other" / "signature-1")
    payload = gpgv_payload(gpg_signer, made, tmp_path)
    assert payload["critical"]["image"] == {"docker-manifest-digest": other}
    assert payload["optional"]["creator"] == "nbc-tui tests"
    stranger = GpgSigner.create(tmp_path / "stranger")
    try:
        with pytest.raises(subprocess.CalledProcessError):
            gpgv_payload(stranger, made, tmp_path)
    finally:
        stranger.close()


def test_cosign_signature_is_pushed_under_the_sig_tag_and_verifies(
        registry: RegistryServer, synthetic_image: str, tmp_path: Path) -> None:
    registry.push(synthetic_image, "sys/img:v1")
    digest = manifest_digest(registry, "sys/img", "v1", MT_OCI_MANIFEST)
    signer = CosignSigner.create(tmp_path / "cosign")
    public = serialization.load_pem_public_key(signer.public_pem.read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    tag = f"sha256-{digest.removeprefix('sha256:')}.sig"
    reference = f"{registry.host}/sys/img:v1"

    sig_digest = signer.push_signature(registry.host, "sys/img", digest, docker_reference=reference)

    r = requests.get(f"{registry.url}/v2/sys/img/manifests/{tag}", headers={"Accept": MT_OCI_MANIFEST},
                     timeout=10)
    r.raise_for_status()
    assert r.headers["Docker-Content-Digest"] == sig_digest
    manifest = r.json()
    assert manifest["mediaType"] == MT_OCI_MANIFEST
    [layer] = manifest["layers"]
    assert layer["mediaType"] == MT_COSIGN_PAYLOAD
    blob = requests.get(f"{registry.url}/v2/sys/img/blobs/{layer['digest']}", timeout=10).content
    assert blob == signer.payload(reference, digest)
    public.verify(base64.b64decode(layer["annotations"][COSIGN_SIGNATURE_ANNOTATION]), blob,
                  ec.ECDSA(hashes.SHA256()))
    assert json.loads(blob) == {"critical": {"identity": {"docker-reference": reference},
                                             "image": {"docker-manifest-digest": digest},
                                             "type": "cosign container image signature"},
                                "optional": None}

    # a second push replaces the first; the payload may claim another digest; extra layers come first
    other = "sha256:" + "cd" * 32
    again = signer.push_signature(registry.host, "sys/img", digest, docker_reference=reference,
                                  claimed_digest=other, extra_layers=2)
    assert again != sig_digest
    manifest = requests.get(f"{registry.url}/v2/sys/img/manifests/{tag}", headers={"Accept": MT_OCI_MANIFEST},
                            timeout=10).json()
    assert len(manifest["layers"]) == 3
    last = manifest["layers"][-1]
    blob = requests.get(f"{registry.url}/v2/sys/img/blobs/{last['digest']}", timeout=10).content
    assert json.loads(blob)["critical"]["image"] == {"docker-manifest-digest": other}
    public.verify(base64.b64decode(last["annotations"][COSIGN_SIGNATURE_ANNOTATION]), blob,
                  ec.ECDSA(hashes.SHA256()))


def skopeo_pull(registry: RegistryServer, ref: str, policy: Path, registries_d: Path, dest: Path) -> None:
    """What a real verifier (containers-image's policy, through skopeo) says: raises if it rejects."""
    subprocess.run(["skopeo", "--policy", str(policy), "--registries.d", str(registries_d), "copy", "--quiet",
                    "--src-tls-verify=false", f"docker://{registry.host}/{ref}", f"dir:{dest}"],
                   check=True, capture_output=True, text=True, timeout=60)


def test_skopeo_policy_accepts_the_gpg_signature_from_the_registries_d_lookaside(
        registry: RegistryServer, synthetic_image: str, gpg_signer: GpgSigner, tmp_path: Path) -> None:
    # Only the simple signing one: Debian's skopeo refuses any sigstoreSigned requirement ("Debian-local
    # change: sigstore disabled"), so it cannot judge the cosign signature here.
    lookaside = tmp_path / "lookaside"
    gpg_signer.push_signed(registry.host, synthetic_image, "sys/img:v1", lookaside)
    registries_d = write_registries_d(tmp_path / "registries.d", lookaside)
    assert (registries_d / "default.yaml").read_text() == f"default-docker:\n  lookaside: file://{lookaside}\n"
    stranger = GpgSigner.create(tmp_path / "stranger")
    stranger.close()

    def policy(key: Path) -> Path:
        return write_policy(tmp_path / f"{key.parent.name}.json", {
            "default": [{"type": "reject"}],
            "transports": {"docker": {registry.host: [{"type": "signedBy", "keyType": "GPGKeys",
                                                       "keyPath": str(key)}]}}})

    skopeo_pull(registry, "sys/img:v1", policy(gpg_signer.public_key), registries_d, tmp_path / "pulled")
    with pytest.raises(subprocess.CalledProcessError) as refused:
        skopeo_pull(registry, "sys/img:v1", policy(stranger.public_key), registries_d, tmp_path / "refused")
    assert "rejected" in refused.value.stderr

"""Signed images against real signers: GPG simple signing written by ``skopeo copy --sign-by`` (lookaside on a
local directory) and cosign-format signatures pushed to a real registry (tests/support/signing.py), checked by
install, update and download under containers' policy.json, ``--cosign-key`` and ``--insecure-skip-verify``.
Keys and signatures are made here, never committed. A refusal writes nothing: no disk-image file, no cache
entry."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.disk_image import mounted_partition
from tests.integration.registry_fixtures import RegistryServer
from tests.support.oci import Layer, write_multiarch_layout
from tests.support.signing import CosignSigner, GpgSigner, signature_path, write_policy, write_registries_d
from tests.support.synthetic import base_layer, second_layer

pytestmark = pytest.mark.root

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SMALL = ["--image-size", "3", "--esp-size", "100M", "--root-size", "1G", "--var-min-size", "256M",
         "--filesystem", "ext4", "--yes"]


@pytest.fixture
def gpg_signer(tmp_path: Path) -> Iterator[GpgSigner]:
    signer = GpgSigner.create(tmp_path / "gpg")
    yield signer
    signer.close()


@pytest.fixture
def other_gpg(tmp_path: Path) -> Iterator[GpgSigner]:
    signer = GpgSigner.create(tmp_path / "gpg-other", name="someone else")
    yield signer
    signer.close()


def manifest_digest(ref: str) -> str:
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                         capture_output=True, check=True).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def tampered_copy(registry: RegistryServer, repository: str, tag: str, new_tag: str, mark: str = "yes") -> str:
    """The manifest at ``tag`` with one annotation (``mark``) added, stored at ``new_tag``: the same layers
    under a manifest nobody signed. Returns the new manifest's digest."""
    url = f"{registry.url}/v2/{repository}/manifests"
    manifest = requests.get(f"{url}/{tag}", headers={"Accept": OCI_MANIFEST}, timeout=30).json()
    manifest.setdefault("annotations", {})["org.example.tampered"] = mark
    body = json.dumps(manifest).encode()
    resp = requests.put(f"{url}/{new_tag}", data=body, headers={"Content-Type": OCI_MANIFEST}, timeout=30)
    assert resp.status_code == 201, resp.text
    return "sha256:" + hashlib.sha256(body).hexdigest()


def cached(isolated: Path) -> list[Path]:
    return [p for p in (isolated / "cache").glob("staged-*/*") if not p.name.startswith(".")]


def assert_refused(r, disk: Path | None, *needles: str) -> None:
    """Exit 2, each needle in the message, and nothing written: no disk-image file, no cache entry."""
    assert r.returncode == 2, r.stdout + r.stderr
    for needle in needles:
        assert needle in r.stderr, r.stderr
    if disk is not None:
        assert not disk.exists()


def installed_state(disk: Path, where: Path) -> tuple[dict, bytes | None]:
    with mounted_partition(disk, 4, where) as var:
        key = var / "lib/nbc/state/cosign.pub"
        return (json.loads((var / "lib/nbc/state/config.json").read_text()),
                key.read_bytes() if key.exists() else None)


# -- GPG simple signing ------------------------------------------------------------------------------------

def test_gpg_signed_image_installs_under_signed_by_and_other_keys_or_digests_are_refused(
        nbc, registry: RegistryServer, synthetic_image: str, gpg_signer: GpgSigner, other_gpg: GpgSigner,
        isolated: Path) -> None:
    lookaside = isolated / "lookaside"
    digest = gpg_signer.push_signed(registry.host, synthetic_image, "sys/gpg:1", lookaside)
    ref = f"{registry.host}/sys/gpg:1"
    regd = write_registries_d(isolated / "registries.d", lookaside)
    ours = write_policy(isolated / "policy.json", {
        "default": [{"type": "reject"}],
        "transports": {"docker": {registry.host: [{"type": "signedBy", "keyType": "GPGKeys",
                                                   "keyPath": str(gpg_signer.public_key)}]}}})
    trust = ["--signature-policy", str(ours), "--registries.d", str(regd)]

    disk = isolated / "disk.img"
    r = nbc("install", "--image", ref, "--via-loopback", str(disk), *SMALL, *trust)
    assert r.returncode == 0, r.stderr
    assert f"Signature: verified: gpg signature of {digest[:19]}" in r.stdout
    config, kept_key = installed_state(disk, isolated / "var")
    verification = config["image_verification"]
    assert verification["verified"] is True
    assert verification["signatures"] == [{"method": "gpg", "signer": gpg_signer.fingerprint,
                                           "key": str(gpg_signer.public_key), "signed_digest": digest}]
    assert f'scope "{registry.host}"' in verification["by"]
    assert kept_key is None and "cosign_key" not in config
    status = nbc("status", "--device", str(disk), "--offline")
    assert status.returncode == 0, status.stderr
    assert "Signature:    verified: gpg signature" in status.stdout
    assert "  Signature:  verified: gpg signature" in status.stdout  # slot A's record

    # Another key: the policy trusts only someone else.
    theirs = write_policy(isolated / "theirs.json", {
        "default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(other_gpg.public_key)}]})
    other_disk = isolated / "other.img"
    r = nbc("install", "--image", ref, "--via-loopback", str(other_disk), *SMALL, "--signature-policy", str(theirs),
            "--registries.d", str(regd))
    assert_refused(r, other_disk, "has no valid GPG signature", str(other_gpg.public_key), digest,
                   "not one of the trusted keys")

    # A good signature by the right key, but of another digest.
    other_digest = "sha256:" + "ab" * 32
    signature = signature_path(lookaside, "sys/gpg", digest)
    gpg_signer.sign_digest(ref, other_digest, signature)
    r = nbc("download", "--image", ref, "--for-install", *trust)
    assert_refused(r, None, "it signs another digest", digest)
    assert cached(isolated) == []


# -- cosign ------------------------------------------------------------------------------------------------

def test_cosign_key_install_records_the_key_and_updates_keep_requiring_it(
        nbc, registry: RegistryServer, synthetic_image: str, isolated: Path) -> None:
    signer = CosignSigner.create(isolated / "cosign")
    ref = registry.push(synthetic_image, "sys/cosign:1")
    digest = manifest_digest(ref)
    signer.push_signature(registry.host, "sys/cosign", digest, docker_reference=f"{registry.host}/sys/cosign")

    disk = isolated / "disk.img"
    r = nbc("install", "--image", ref, "--via-loopback", str(disk), *SMALL, "--cosign-key", str(signer.public_pem),
            "--json")
    assert r.returncode == 0, r.stderr
    config, kept_key = installed_state(disk, isolated / "var")
    assert r.events[-1]["details"]["verification"] == config["image_verification"]
    assert kept_key == signer.public_pem.read_bytes()
    assert config["cosign_key"] == "/var/lib/nbc/state/cosign.pub"
    check = config["image_verification"]["signatures"][0]
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(signer.public_pem), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    assert check == {"method": "cosign", "signer": "sha256:" + hashlib.sha256(der).hexdigest(),
                     "key": str(signer.public_pem), "signed_digest": digest}
    status = json.loads(nbc("status", "--device", str(disk), "--offline", "--json").stdout)
    assert status["verification"]["verified"] is True and status["cosign_key"] == config["cosign_key"]
    assert status["slots"][0]["verification"]["signatures"][0]["method"] == "cosign"

    # An update to an image nobody signed is refused with the key the install was given, slot B untouched;
    # --check says so too rather than announcing it as an update. A new image signed by that key is one.
    unsigned = f"{registry.host}/sys/cosign:2"
    tampered_copy(registry, "sys/cosign", "1", "2")
    r = nbc("update", "--device", str(disk), "--image", unsigned, "--check", "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    answer = json.loads(r.stdout)
    assert answer["error"] is True and "has no valid cosign signature by" in answer["details"], answer
    signed = f"{registry.host}/sys/cosign:3"
    signer.push_signature(registry.host, "sys/cosign", tampered_copy(registry, "sys/cosign", "1", "3", "signed"),
                          docker_reference=f"{registry.host}/sys/cosign")
    r = nbc("update", "--device", str(disk), "--image", signed, "--check", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["update_needed"] is True, r.stdout + r.stderr
    r = nbc("update", "--device", str(disk), "--image", unsigned, "--yes")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "has no valid cosign signature by" in r.stderr and "/var/lib/nbc/state/cosign.pub" in r.stderr
    assert "there is no cosign signature" in r.stderr
    after = json.loads(nbc("status", "--device", str(disk), "--offline", "--json").stdout)
    assert after["slots"][1]["state"] == "empty" and after["slots"][1]["image"] is None

    # status's update check, like update --check, announces no image the update would refuse: the reference the
    # install recorded now names the unsigned image, then the signed one.
    unsigned_digest = tampered_copy(registry, "sys/cosign", "2", "1")
    r = nbc("status", "--device", str(disk), "--json")
    assert r.returncode == 0, r.stderr
    check = json.loads(r.stdout)["update_check"]
    assert check["available"] is False and check["remote_digest"] == unsigned_digest, check
    assert "has no valid cosign signature by" in check["error"], check
    r = nbc("status", "--device", str(disk), "-v")
    assert r.returncode == 0 and "Update check: refused (" in r.stdout, r.stdout + r.stderr
    signed_digest = tampered_copy(registry, "sys/cosign", "3", "1", "signed")
    check = json.loads(nbc("status", "--device", str(disk), "--json").stdout)["update_check"]
    assert check == {"available": True, "remote_digest": signed_digest, "current_digest": digest, "error": None}


def test_cosign_signatures_under_policy_and_flag_refuse_every_wrong_case(
        nbc, registry: RegistryServer, synthetic_image: str, isolated: Path) -> None:
    signer = CosignSigner.create(isolated / "cosign")
    other = CosignSigner.create(isolated / "other")
    ref = registry.push(synthetic_image, "sys/signed:1")
    digest = manifest_digest(ref)
    # Two layers before the good one that do not verify: the verifier must look at every layer.
    signer.push_signature(registry.host, "sys/signed", digest, docker_reference=f"{registry.host}/sys/signed",
                          extra_layers=2)
    policy = write_policy(isolated / "policy.json", {
        "default": [{"type": "reject"}],
        "transports": {"docker": {
            f"{registry.host}/sys": [{"type": "sigstoreSigned", "keyPath": str(signer.public_pem),
                                      "signedIdentity": {"type": "matchRepository"}}],
            f"{registry.host}/sys/rejected": [{"type": "reject"}],
        }}})
    trust = ["--signature-policy", str(policy)]

    r = nbc("download", "--image", ref, "--for-install", "--json", *trust)
    assert r.returncode == 0, r.stderr
    recorded = json.loads(r.stdout)["verification"]
    assert recorded["verified"] is True and recorded["signatures"][0]["signed_digest"] == digest
    assert f'scope "{registry.host}/sys"' in recorded["by"]
    [entry] = cached(isolated)
    assert json.loads((entry / "metadata.json").read_text())["verification"] == recorded
    listed = nbc("cache", "list", "--install-images")
    assert "Signature:    verified: cosign signature" in listed.stdout
    # The staged entry installs offline with the verdict of its download.
    disk = isolated / "staged.img"
    r = nbc("install", "--local-image", digest[:19], "--via-loopback", str(disk), *SMALL)
    assert r.returncode == 0, r.stderr
    assert installed_state(disk, isolated / "var")[0]["image_verification"] == recorded
    # Offline with --cosign-key: only a download that key verified will do.
    r = nbc("install", "--local-image", digest[:19], "--via-loopback", str(isolated / "other.img"), *SMALL,
            "--cosign-key", str(other.public_pem))
    assert_refused(r, isolated / "other.img", "was not verified with the cosign key", str(other.public_pem))
    # Offline with --signature-policy: only that policy's verdict at the download will do.
    r = nbc("install", "--local-image", digest[:19], "--via-loopback", str(isolated / "same.img"), *SMALL, *trust)
    assert r.returncode == 0, r.stderr
    stricter = write_policy(isolated / "stricter.json", {"default": [{"type": "reject"}]})
    r = nbc("install", "--local-image", digest[:19], "--via-loopback", str(isolated / "stricter.img"), *SMALL,
            "--signature-policy", str(stricter))
    assert_refused(r, isolated / "stricter.img", f"was not checked against the signature policy {stricter}")
    nbc("cache", "clear", "--install")

    disk = isolated / "disk.img"
    # --cosign-key with another key: the signature is there, by someone else.
    r = nbc("install", "--image", ref, "--via-loopback", str(disk), *SMALL, "--cosign-key", str(other.public_pem))
    assert_refused(r, disk, "made by another key", str(other.public_pem), digest)
    # A signature that names another digest.
    ref2 = registry.push(synthetic_image, "sys/claims:1")
    signer.push_signature(registry.host, "sys/claims", manifest_digest(ref2),
                          docker_reference=f"{registry.host}/sys/claims", claimed_digest="sha256:" + "cd" * 32)
    r = nbc("install", "--image", ref2, "--via-loopback", str(disk), *SMALL, *trust)
    assert_refused(r, disk, "it signs another digest", manifest_digest(ref2))
    # The tag moved to a manifest nobody signed (same layers, another manifest).
    tampered = tampered_copy(registry, "sys/signed", "1", "1")
    r = nbc("install", "--image", ref, "--via-loopback", str(disk), *SMALL, *trust)
    assert_refused(r, disk, "there is no cosign signature", tampered, str(signer.public_pem))
    # No signature at all where the policy asks for one.
    unsigned = registry.push(synthetic_image, "sys/unsigned:1")
    r = nbc("install", "--image", unsigned, "--via-loopback", str(disk), *SMALL, *trust)
    assert_refused(r, disk, "there is no cosign signature")
    # A scope the policy rejects, and the global default (another registry name for the same server).
    rejected = registry.push(synthetic_image, "sys/rejected:1")
    r = nbc("install", "--image", rejected, "--via-loopback", str(disk), *SMALL, *trust)
    assert_refused(r, disk, "forbids", f'scope "{registry.host}/sys/rejected"')
    r = nbc("download", "--image", f"localhost:{registry.port}/sys/signed:1", "--for-install", *trust)
    assert_refused(r, None, "forbids", "(default)")
    assert cached(isolated) == []


def test_a_signature_of_the_index_verifies_a_multi_platform_image(nbc, registry: RegistryServer,
                                                                isolated: Path) -> None:
    layout = isolated / "multi"
    digests = write_multiarch_layout(layout, {"amd64": [Layer(base_layer()), Layer(second_layer(), "zstd")],
                                              "arm64": [Layer(base_layer(kernel=False))]})
    ref = registry.push(f"oci:{layout}:latest", "sys/multi:1")
    signer = CosignSigner.create(isolated / "cosign")
    signer.push_signature(registry.host, "sys/multi", digests["index"], docker_reference=f"{registry.host}/sys/multi")
    r = nbc("download", "--image", ref, "--for-install", "--json", "--cosign-key", str(signer.public_pem))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["image_digest"] == digests["amd64"]
    assert out["verification"]["signatures"][0]["signed_digest"] == digests["index"]


# -- accepting without a signature ---------------------------------------------------------------------------

def test_accept_anything_and_skip_verify_go_on_with_a_warning(nbc, registry: RegistryServer, synthetic_image: str,
                                                              isolated: Path, tmp_path: Path) -> None:
    ref = registry.push(synthetic_image, "sys/plain:1")
    anything = write_policy(isolated / "policy.json", {"default": [{"type": "insecureAcceptAnything"}]})
    disk = isolated / "disk.img"
    r = nbc("install", "--image", ref, "--via-loopback", str(disk), *SMALL, "--signature-policy", str(anything),
            "--json")
    assert r.returncode == 0, r.stderr
    warnings = [e["message"] for e in r.events if e["type"] == "warning"]
    assert any("accepts any image (insecureAcceptAnything)" in w for w in warnings), warnings
    config, _ = installed_state(disk, isolated / "var")
    assert config["image_verification"]["verified"] is False

    r = nbc("download", "--image", ref, "--for-install", "--insecure-skip-verify", "--json")
    assert r.returncode == 0, r.stderr
    assert "Skipping image signature verification (--insecure-skip-verify)" in r.stderr
    assert json.loads(r.stdout)["verification"]["by"] == "--insecure-skip-verify"

    r = nbc("install", "--image", ref, "--via-loopback", str(tmp_path / "x.img"), *SMALL, "--insecure-skip-verify",
            "--cosign-key", str(anything))
    assert_refused(r, tmp_path / "x.img", "contradict")
    broken = isolated / "broken.json"
    broken.write_text('{"default": [{"type": "signedBy", "keyType": "GPGKeys"}]}')
    r = nbc("install", "--image", ref, "--via-loopback", str(tmp_path / "x.img"), *SMALL, "--signature-policy",
            str(broken))
    assert_refused(r, tmp_path / "x.img", str(broken), "default[0]", "keyPath")

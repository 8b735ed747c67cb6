"""Sign container images in a real local registry, in the two formats a verifier meets in the wild.

Keys are made at test time (never committed), and no crypto is done by hand: gpg makes the OpenPGP keys and
signatures, the ``cryptography`` package the ECDSA ones.

**Simple signing** (``GpgSigner``): ``skopeo copy --sign-by`` pushes an image and writes an "atomic container
signature" (an OpenPGP signed message, binary, compressed, not detached) to a *lookaside* store. With a
registries.d that says ``default-docker: {lookaside-staging: file://<lookaside>}`` skopeo 1.9 writes it to::

    <lookaside>/<repository>@sha256=<hex of the manifest digest>/signature-1

where ``<repository>`` is the path in the registry without the host (``127.0.0.1:5000/sys/img:v1`` ->
``<lookaside>/sys/img@sha256=<hex>/signature-1``); a second signature of the same digest would be
``signature-2``. A reader finds it through ``write_registries_d`` (``lookaside:`` instead of
``lookaside-staging:``), and ``signature_path`` gives the path. ``gpgv --keyring <dearmored key> --output -
<file>`` prints its JSON payload.

**Cosign** (``CosignSigner``): a signature image at tag ``sha256-<hex>.sig`` in the image's repository, whose
layer is the simple-signing payload and whose ``dev.cosignproject.cosign/signature`` annotation is the
base64 ECDSA-P256-SHA256 (ASN.1 DER) signature of the payload bytes. Pushed with plain registry API calls,
so tests can also make wrong ones (a payload naming another digest, extra layers).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIMPLE_SIGNING_TYPE = "atomic container signature"
COSIGN_TYPE = "cosign container image signature"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_COSIGN_PAYLOAD = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
GPG_SOCKET_ROOM = 108 - len("/S.gpg-agent.browser") - 1
"""A gpg home longer than this leaves no room for the agent's socket names (sun_path is 108 bytes; there is
no /run/user/<uid> for gpg to put them in instead when tests run as root)."""


def _compact(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def signature_path(lookaside: Path, repository: str, manifest_digest: str, index: int = 1) -> Path:
    """Where a file lookaside keeps simple signature ``index`` of ``repository`` (no host) at a digest."""
    algo, hexpart = manifest_digest.split(":", 1)
    return lookaside / f"{repository}@{algo}={hexpart}" / f"signature-{index}"


@dataclass
class GpgSigner:
    """An OpenPGP key (ed25519, no passphrase) in its own GNUPGHOME; call ``close()`` to stop its agent."""

    home: Path
    fingerprint: str
    public_key: Path
    _owned_home: bool = field(default=False, repr=False)

    @classmethod
    def create(cls, d: Path, name: str = "nbc-tui test signer") -> GpgSigner:
        """Generate the key in ``d/gnupg`` (or a short temp dir if that path is too long for gpg's sockets).

        ed25519 because it is quick to make and skopeo (through gpgme) signs with it."""
        d.mkdir(parents=True, exist_ok=True)
        home, owned = d / "gnupg", False
        if len(str(home)) > GPG_SOCKET_ROOM:
            home, owned = Path(tempfile.mkdtemp(prefix="gpg-")), True
        home.mkdir(mode=0o700, exist_ok=True)
        home.chmod(0o700)  # gpg warns about (and skopeo's gpgme may refuse) a home others can read
        params = (f"%no-protection\nKey-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\nName-Real: {name}\n"
                  "Name-Email: signer@nbc-tui.invalid\nExpire-Date: 0\n%commit\n")
        out = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--status-fd", "1", "--gen-key"],
                             input=params, capture_output=True, text=True, check=True).stdout
        created = [line.split()[3] for line in out.splitlines() if line.startswith("[GNUPG:] KEY_CREATED ")]
        assert created, f"gpg reported no KEY_CREATED: {out}"
        fingerprint = created[0].upper()
        public_key = d / "signer.pub.asc"
        armored = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--armor", "--export", fingerprint],
                                 capture_output=True, check=True).stdout
        public_key.write_bytes(armored)
        return cls(home, fingerprint, public_key, owned)

    def _env(self) -> dict[str, str]:
        return {**os.environ, "GNUPGHOME": str(self.home)}

    def push_signed(self, registry_host: str, src: str, dest: str, lookaside: Path) -> str:
        """Push ``src`` to ``docker://registry_host/dest`` signed by this key; the signature goes to the file
        lookaside ``lookaside`` (see the module docstring for where). Returns the pushed manifest digest."""
        lookaside.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="signing-") as tmp:
            registries_d = Path(tmp, "registries.d")
            registries_d.mkdir()
            (registries_d / "lookaside.yaml").write_text(
                f"default-docker:\n  lookaside-staging: file://{lookaside.resolve()}\n")
            digestfile = Path(tmp, "digest")
            subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--sign-by", self.fingerprint,
                            "--registries.d", str(registries_d), "--digestfile", str(digestfile),
                            src, f"docker://{registry_host}/{dest}"],
                           env=self._env(), check=True, capture_output=True, timeout=300)
            return digestfile.read_text().strip()

    def sign_digest(self, docker_reference: str, manifest_digest: str, out: Path) -> Path:
        """Write, with ``gpg --sign``, the signature skopeo would make for ``docker_reference`` at
        ``manifest_digest``: lets a test sign a digest that is not the one pushed. Returns ``out``."""
        payload = _compact({
            "critical": {"type": SIMPLE_SIGNING_TYPE, "image": {"docker-manifest-digest": manifest_digest},
                         "identity": {"docker-reference": docker_reference}},
            "optional": {"creator": "nbc-tui tests", "timestamp": int(time.time())},
        })
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--yes", "--local-user", self.fingerprint,
                        "--output", str(out), "--sign"], input=payload, capture_output=True, check=True)
        return out

    def close(self) -> None:
        """Stop the gpg-agent that gpg and skopeo started for this home (it outlives them otherwise)."""
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], capture_output=True)
        if self._owned_home:
            shutil.rmtree(self.home, ignore_errors=True)


@dataclass
class CosignSigner:
    """A P-256 key signing cosign-style: the verifier is given ``public_pem`` (a SubjectPublicKeyInfo PEM)."""

    private_key: ec.EllipticCurvePrivateKey
    public_pem: Path

    @classmethod
    def create(cls, d: Path) -> CosignSigner:
        """Generate the key; only its public half is written (to ``d/cosign.pub``)."""
        d.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        public_pem = d / "cosign.pub"
        public_pem.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))
        return cls(key, public_pem)

    def payload(self, docker_reference: str, manifest_digest: str) -> bytes:
        """The payload cosign signs (compact JSON, keys in cosign's order)."""
        return _compact({
            "critical": {"identity": {"docker-reference": docker_reference},
                         "image": {"docker-manifest-digest": manifest_digest},
                         "type": COSIGN_TYPE},
            "optional": None,
        })

    def _layer(self, payload: bytes, key: ec.EllipticCurvePrivateKey) -> tuple[dict, bytes]:
        signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
        return ({"mediaType": MT_COSIGN_PAYLOAD, "size": len(payload),
                 "digest": "sha256:" + hashlib.sha256(payload).hexdigest(),
                 "annotations": {COSIGN_SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()}}, payload)

    def push_signature(self, registry_host: str, repository: str, signed_digest: str, *,
                       docker_reference: str, claimed_digest: str | None = None, extra_layers: int = 0) -> str:
        """Push the signature image of ``signed_digest`` (tag ``sha256-<hex>.sig`` in ``repository``, replacing
        any there) and return its manifest digest.

        Its payload names ``claimed_digest`` if given (a signature moved to another image), else
        ``signed_digest``. ``extra_layers`` adds that many well-formed signature layers *before* the real
        one, each over a payload with ``"optional": {"nbc-tui-extra": i}`` and signed by a throwaway key, so
        a verifier that trusts only the first layer, or accepts any number of layers, shows."""
        base = f"http://{registry_host}/v2/{repository}"
        layers: list[tuple[dict, bytes]] = []
        for i in range(extra_layers):
            extra = json.loads(self.payload(docker_reference, claimed_digest or signed_digest))
            extra["optional"] = {"nbc-tui-extra": i}
            layers.append(self._layer(_compact(extra), ec.generate_private_key(ec.SECP256R1())))
        layers.append(self._layer(self.payload(docker_reference, claimed_digest or signed_digest),
                                  self.private_key))
        config = _compact({"architecture": "", "created": "0001-01-01T00:00:00Z",
                           "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
                           "rootfs": {"type": "layers", "diff_ids": [desc["digest"] for desc, _ in layers]},
                           "config": {}})
        config_digest = _upload_blob(base, config)
        for _, blob in layers:
            _upload_blob(base, blob)
        manifest = _compact({
            "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, "size": len(config), "digest": config_digest},
            "layers": [desc for desc, _ in layers],
        })
        tag = signed_digest.replace(":", "-", 1) + ".sig"
        r = requests.put(f"{base}/manifests/{tag}", data=manifest, headers={"Content-Type": MT_OCI_MANIFEST},
                         timeout=30)
        r.raise_for_status()
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        assert r.headers.get("Docker-Content-Digest", digest) == digest, r.headers
        return digest


def _upload_blob(base: str, data: bytes) -> str:
    """A monolithic blob upload (POST, then PUT ?digest=); returns the blob's digest."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = requests.post(f"{base}/blobs/uploads/", timeout=30)
    r.raise_for_status()
    location = urlsplit(urljoin(base, r.headers["Location"]))
    query = f"{location.query}&{urlencode({'digest': digest})}" if location.query else urlencode({"digest": digest})
    r = requests.put(urlunsplit(location._replace(query=query)), data=data,
                     headers={"Content-Type": "application/octet-stream"}, timeout=30)
    r.raise_for_status()
    return digest


def write_policy(path: Path, policy: dict) -> Path:
    """Write a containers-policy.json(5) file (the verifier reads it like skopeo does)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        json.dump(policy, f, indent=2)
    return path


def write_registries_d(d: Path, lookaside: Path, *, sigstore_attachments: bool = False) -> Path:
    """A registries.d directory that reads simple signatures from the file lookaside ``lookaside``.

    ``sigstore_attachments`` adds ``use-sigstore-attachments: true``, without which skopeo/containers-image
    never looks for ``sha256-<hex>.sig`` cosign signatures (so a ``sigstoreSigned`` policy rejects)."""
    d.mkdir(parents=True, exist_ok=True)
    text = f"default-docker:\n  lookaside: file://{lookaside.resolve()}\n"
    if sigstore_attachments:
        text += "  use-sigstore-attachments: true\n"
    (d / "default.yaml").write_text(text)
    return d

"""An image in a registry (the OCI distribution API) as an image source.

The tag is resolved once to a digest; everything after is fetched by digest and checked against it. An
index resolves to the host's platform (attestation entries skipped); ``index_digest`` and
``manifest_digest`` are both recorded. Layers stream through the verifier of source.py, over a transfer
that retries transient failures and resumes a broken blob with ``Range``.

oras-py's ``Registry`` provider is not used for the HTTP exchange: it keeps one bearer token for every
repository, sets no timeouts and has no resume; a plain ``requests`` session with our own challenge
handling is smaller than the code needed to write around it. From oras-py we use the challenge parser
(``oras.auth.utils.parse_auth_header``) and the basic-auth encoder (auth.py).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import ssl
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests
import urllib3
from oras.auth.utils import parse_auth_header
from requests.adapters import HTTPAdapter

from ..errors import Cancelled, InputError, NbcError
from ..runner import RunContext
from .auth import Credential, find_credentials
from .oci import INDEX_TYPES, MANIFEST_TYPES, choose_platform, host_platform
from .reference import RegistryRef, parse_registry_ref
from .source import BlobStream, Descriptor, ImageSource, verified_stream, verify_bytes
from .transfer import STREAM_ERRORS, TRANSIENT_STATUS, ResumingRaw, RetryPolicy, skip_bytes, sleep_or_cancel

log = logging.getLogger("nbc_tui")

CA_ENV = "NBC_TUI_REGISTRY_CA"
INSECURE_ENV = "NBC_TUI_INSECURE_REGISTRIES"  # comma-separated hosts (host or host:port)
ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
USER_AGENT = "nbc-tui"
_MAX_JSON = 8 << 20
_MAX_NESTING = 4


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost, with or without a port."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def insecure_hosts_from_env() -> set[str]:
    return {h.strip() for h in os.environ.get(INSECURE_ENV, "").split(",") if h.strip()}


class _TlsAdapter(HTTPAdapter):
    """Verifies with the system CAs plus the user's bundle (requests alone would use certifi's only)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)


class RegistryClient:
    """HTTP to one repository of one registry: scheme choice, TLS, auth challenges, retries, errors."""

    def __init__(self, ref: RegistryRef, *, ctx: RunContext, insecure: Iterable[str] = (),
                 ca_file: Path | None = None, policy: RetryPolicy | None = None,
                 cancel: threading.Event | None = None) -> None:
        self.ref = ref
        self.name = str(ref)
        self.ctx = ctx
        self.policy = policy or RetryPolicy()
        self.cancel = cancel or ctx.cancel
        self.insecure = ref.registry in set(insecure) | insecure_hosts_from_env()
        self.plain_http_allowed = self.insecure or is_loopback(ref.registry)
        ca = ca_file or (Path(os.environ[CA_ENV]) if os.environ.get(CA_ENV) else None)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        context = ssl.create_default_context()
        if ca is not None:
            try:
                context.load_verify_locations(cafile=str(ca))
            except (OSError, ssl.SSLError) as exc:
                raise InputError(f"Cannot use the CA bundle {ca}: {exc}",
                                 hint="Give a PEM file with the registry's CA certificate") from None
        if self.insecure:  # its certificate is not checked (verify=False below); urllib3 refuses a context
            context.check_hostname = False  # that would still check the host name (ValueError)
            context.verify_mode = ssl.CERT_NONE
            # Asked for by name: urllib3's warning on every request would only clutter stderr (and the TUI).
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
            log.info("%s: TLS certificate not checked (an insecure registry)", ref.registry)
        self.session.mount("https://", _TlsAdapter(context))
        self.verify = not self.insecure
        self._base: str | None = None
        self._auth: str | None = None
        self._credential: Credential | None = None
        self._credential_loaded = False

    # -- connection -------------------------------------------------------------------------------

    def base_url(self) -> str:
        """https, or plain http for loopback / insecure hosts whose server does not speak TLS."""
        if self._base is None:
            self._base = f"https://{self.ref.registry}"
            if self.plain_http_allowed:
                try:
                    self._send("GET", f"{self._base}/v2/", {}, stream=False).close()
                except requests.exceptions.SSLError as exc:
                    if _is_untrusted(exc) and not self.insecure:
                        raise self._tls_error(exc) from None
                    self._base = f"http://{self.ref.registry}"
                except requests.ConnectionError:
                    self._base = f"http://{self.ref.registry}"
                except STREAM_ERRORS as exc:  # it answers TLS but too slowly: not a reason to try http
                    raise self._unreachable(exc) from None
            log.info("registry %s at %s", self.ref.registry, self._base)
        return self._base

    def _send(self, method: str, url: str, headers: dict[str, str], *, stream: bool) -> requests.Response:
        return self.session.request(method, url, headers=headers, stream=stream, timeout=self.policy.timeout,
                                    verify=self.verify, allow_redirects=True)

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                stream: bool = False) -> requests.Response:
        """One API request with auth (a 401 fetches a fresh token once) and retries of transient failures.
        Returns the response whatever its status once retries are spent; raises for TLS, unreachable."""
        url = self.base_url() + path
        authenticated = False
        attempt = 0
        while True:
            if self.cancel.is_set():
                raise Cancelled("Interrupted while downloading the image", hint="Nothing was written to the disk")
            sent = dict(headers or {})
            if self._auth:
                sent["Authorization"] = self._auth
            try:
                resp = self._send(method, url, sent, stream=stream)
            except requests.exceptions.SSLError as exc:
                raise self._tls_error(exc) from None
            except STREAM_ERRORS as exc:
                attempt += 1
                if attempt >= self.policy.attempts:
                    raise self._unreachable(exc) from None
                log.warning("%s %s failed (%s); retrying", method, url, exc)
                sleep_or_cancel(self.policy.delay(attempt - 1), self.cancel)
                continue
            if resp.status_code == 401 and not authenticated:
                challenge = resp.headers.get("WWW-Authenticate", "")
                resp.close()
                self._authenticate(challenge)
                authenticated = True
                continue
            if resp.status_code in TRANSIENT_STATUS and attempt + 1 < self.policy.attempts:
                retry_after = resp.headers.get("Retry-After")
                resp.close()
                log.warning("%s %s: HTTP %d; retrying", method, url, resp.status_code)
                sleep_or_cancel(self.policy.delay(attempt, retry_after), self.cancel)
                attempt += 1
                continue
            return resp

    # -- auth ---------------------------------------------------------------------------------------

    def credential(self) -> Credential | None:
        if not self._credential_loaded:
            self._credential = find_credentials(self.ref.registry, ctx=self.ctx, repository=self.ref.repository)
            self._credential_loaded = True
        return self._credential

    def _authenticate(self, challenge: str) -> None:
        scheme = challenge.split(" ", 1)[0].lower()
        cred = self.credential()
        if scheme == "basic":
            if cred is None or cred.identity_token:
                raise self._refused("the registry wants a user name and password and none is configured")
            self._auth = cred.basic_header()
            return
        if scheme != "bearer":
            raise self._refused(f"the registry asks for an unsupported authentication ({challenge[:60]!r})")
        parts = parse_auth_header(challenge)
        if not parts.realm:
            raise self._refused("the registry's token challenge names no token server")
        realm = urlparse(parts.realm)
        if realm.scheme != "https" and not (self.plain_http_allowed or is_loopback(realm.netloc)):
            raise self._refused(f"the token server {parts.realm} is not HTTPS")
        params = {"scope": f"repository:{self.ref.repository}:pull"}
        if parts.service:
            params["service"] = parts.service
        try:
            if cred is not None and cred.identity_token:
                resp = self.session.post(parts.realm, data={
                    **params, "grant_type": "refresh_token", "client_id": USER_AGENT,
                    "refresh_token": cred.secret.get_secret_value()}, timeout=self.policy.timeout,
                    verify=self.verify)
            else:
                auth = {"Authorization": cred.basic_header()} if cred is not None else {}
                resp = self.session.get(parts.realm, params=params, headers=auth, timeout=self.policy.timeout,
                                        verify=self.verify)
        except requests.exceptions.SSLError as exc:
            raise self._tls_error(exc, host=realm.netloc) from None
        except STREAM_ERRORS as exc:
            raise self._unreachable(exc, host=realm.netloc) from None
        with resp:
            if resp.status_code in (401, 403):
                raise self._refused("the token server refused " + (
                    f"the credentials from {cred.source}" if cred else "an anonymous token"))
            if resp.status_code != 200:
                raise NbcError(f"The token server {parts.realm} answered HTTP {resp.status_code} for {self.name}",
                               hint="The registry may be down; try again later")
            try:
                body = resp.json()
                token = str(body.get("token") or body.get("access_token") or "")
            except ValueError:
                token = ""
        if not token:
            raise NbcError(f"The token server {parts.realm} gave no token for {self.name}")
        self.ctx.redactor.add(token)
        self._auth = f"Bearer {token}"

    # -- errors in words ----------------------------------------------------------------------------

    def _refused(self, why: str) -> NbcError:
        cred = self.credential() if self._credential_loaded else None
        hint = (f"Check the user and password for {self.ref.display_registry} in {cred.source}, or log in again "
                "(`podman login` / `docker login`)" if cred else
                f"Log in first (`podman login {self.ref.display_registry}` or `docker login`), or check the name")
        return NbcError(f"Access to the image {self.name} was refused: {why}", hint=hint,
                        details={"image": self.name, "reason": "auth-refused"})

    def _tls_error(self, exc: BaseException, host: str | None = None) -> NbcError:
        host = host or self.ref.registry
        if _is_untrusted(exc):
            why = "its certificate is not signed by a trusted authority or does not name this host"
        else:
            why = "the secure connection could not be set up"
        return NbcError(
            f"TLS failure talking to {host} for {self.name}: {why}",
            hint=(f"If the registry uses a private CA, give its certificate with {CA_ENV}=FILE.pem; name the host "
                  f"in {INSECURE_ENV} only if you trust the network"),
            details={"image": self.name, "reason": "tls", "error": str(exc)[:300]},
        )

    def _unreachable(self, exc: BaseException, host: str | None = None) -> NbcError:
        host = host or self.ref.registry
        text = str(exc)
        if "Name or service not known" in text or "name resolution" in text or "nodename nor servname" in text:
            why = "its name does not resolve (DNS)"
        elif "refused" in text.lower():
            why = "the connection was refused (nothing listens there)"
        elif "timed out" in text.lower() or isinstance(exc, requests.Timeout):
            why = "the connection timed out"
        else:
            why = "the connection failed"
        return NbcError(f"Cannot reach the registry {host} for {self.name}: {why}",
                        hint="Check the network, the host name and the port, then try again",
                        details={"image": self.name, "reason": "unreachable", "error": text[:300]})


def _is_untrusted(exc: BaseException) -> bool:
    text = str(exc)
    return "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text or "hostname" in text


class RegistrySource(ImageSource):
    """An image pulled from a registry by digest, its tag resolved once when it is opened."""

    remote = True

    def __init__(self, ref: RegistryRef | str, *, ctx: RunContext | None = None, insecure: Iterable[str] = (),
                 ca_file: Path | None = None, policy: RetryPolicy | None = None,
                 cancel: threading.Event | None = None, host: tuple[str, str] | None = None) -> None:
        self.registry_ref = parse_registry_ref(ref) if isinstance(ref, str) else ref
        self.ref = str(self.registry_ref)
        self.client = RegistryClient(self.registry_ref, ctx=ctx or RunContext(), insecure=insecure,
                                     ca_file=ca_file, policy=policy, cancel=cancel)
        self._host = host or host_platform()
        self.resumes: dict[str, list[int]] = {}
        """Per blob digest, the offsets each ``Range`` resume started from (diagnostics and tests)."""
        self.index_digest: str | None = None
        self._manifests_seen: dict[str, bytes] = {}
        top_desc, top = self._fetch_by_tag()
        manifest_desc, manifest = self._resolve(top_desc, top, depth=0)
        self.manifest_digest = manifest_desc.digest
        # The platform manifest exactly as the registry stored it (the staged cache writes these bytes).
        self.manifest_bytes = self._manifests_seen[manifest_desc.digest]
        self.manifest = manifest
        config_desc = Descriptor.from_json(manifest.get("config"), what="image config")
        self.config_digest = config_desc.digest
        # Kept as stored: the staged cache writes these bytes (fetching the config again would be a second time).
        self.config_bytes = self._small_blob(config_desc, "Image config")
        config = self._json(self.config_bytes, config_desc, "Image config")
        if not isinstance(config, dict):
            raise NbcError(f"The image config {config_desc.digest} of {self.ref} is not a JSON object")
        self.config: dict[str, Any] = config
        layers = manifest.get("layers")
        if not isinstance(layers, list) or not layers:
            raise NbcError(f"The manifest {manifest_desc.digest} of {self.ref} lists no layers",
                           hint="This is not a container image with a filesystem")
        self.layers = [Descriptor.from_json(d, what="layer") for d in layers]

    # -- manifests ----------------------------------------------------------------------------------

    def _manifest_bytes(self, reference: str) -> tuple[bytes, str, str | None]:
        repo = self.registry_ref.repository
        resp = self.client.request("GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": ACCEPT},
                                   stream=True)
        with resp:
            if resp.status_code == 404:
                raise self._not_found(resp, reference)
            if resp.status_code in (401, 403):
                raise self.client._refused(
                    f"HTTP {resp.status_code} on the manifest (the image may not exist, or this account "
                    "may not read it)")
            if resp.status_code != 200:
                raise NbcError(f"The registry answered HTTP {resp.status_code} for the manifest of {self.ref}",
                               hint="The registry may be down; try again later")
            data = resp.raw.read(_MAX_JSON + 1, decode_content=True)
            if len(data) > _MAX_JSON:
                raise NbcError(f"The manifest of {self.ref} is implausibly large")
            media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
            return data, media_type, resp.headers.get("Docker-Content-Digest")

    def _not_found(self, resp: requests.Response, reference: str) -> NbcError:
        name = f"{self.registry_ref.display_registry}/{self.registry_ref.repository}"
        unknown = NbcError(f"The image {name} does not exist in the registry",
                           hint="Check the image name (and the registry host) for typos",
                           details={"image": self.ref, "reason": "unknown-image"})
        if "NAME_UNKNOWN" in _error_codes(resp):
            return unknown
        # Many registries say MANIFEST_UNKNOWN for an unknown repository too: the tag list tells them apart.
        tags = self._tags()
        if tags is None:
            return unknown
        what = "digest" if reference.startswith("sha256:") else "tag"
        shown = ", ".join(sorted(tags)[:20]) + (" …" if len(tags) > 20 else "")
        return NbcError(f"The image {name} has no {what} {reference}",
                        hint=f"Check the {what}; tags there: {shown or '(none)'}",
                        details={"image": self.ref, "reason": "unknown-tag"})

    def _tags(self) -> list[str] | None:
        """The repository's tags, or None when the registry does not know the repository."""
        try:
            resp = self.client.request("GET", f"/v2/{self.registry_ref.repository}/tags/list?n=100")
        except NbcError:
            return []
        with resp:
            if resp.status_code == 404:
                return None
            try:
                tags = resp.json().get("tags") if resp.status_code == 200 else []
            except ValueError:
                tags = []
        return [str(t) for t in tags or []]

    def _fetch_by_tag(self) -> tuple[Descriptor, dict[str, Any]]:
        """The one resolution of the tag (or the pinned digest) to a digest, checked against the content."""
        data, media_type, header_digest = self._manifest_bytes(self.registry_ref.reference)
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        expected = self.registry_ref.digest or (header_digest if header_digest and
                                                header_digest.startswith("sha256:") else None)
        if expected and expected != actual:
            raise NbcError(f"The manifest of {self.ref} does not match its digest {expected} "
                           f"(content hashes to {actual[:19]}…)",
                           hint="The registry or something between it and you altered the image; try again",
                           details={"image": self.ref, "reason": "digest-mismatch"})
        desc = Descriptor(media_type, actual, len(data))
        self._manifests_seen[actual] = data
        log.info("resolved %s to %s", self.ref, actual)
        return desc, self._json(data, desc, "Manifest")

    def _resolve(self, desc: Descriptor, data: dict[str, Any], *, depth: int) -> tuple[Descriptor, dict[str, Any]]:
        if depth > _MAX_NESTING:
            raise NbcError(f"Image indexes nest too deeply in {self.ref}")
        media_type = desc.media_type or str(data.get("mediaType") or "")
        if media_type in MANIFEST_TYPES or (media_type not in INDEX_TYPES and "manifests" not in data):
            return desc, data
        if self.index_digest is None:
            self.index_digest = desc.digest
        chosen = self._pick_platform(desc, data)
        raw, media, _ = self._manifest_bytes(chosen.digest)
        verify_bytes(raw, chosen, label="Manifest")
        self._manifests_seen[chosen.digest] = raw
        child = Descriptor(chosen.media_type or media, chosen.digest, chosen.size)
        return self._resolve(child, self._json(raw, child, "Manifest"), depth=depth + 1)

    def _pick_platform(self, index_desc: Descriptor, index: dict[str, Any]) -> Descriptor:
        chosen, seen = choose_platform(index, self._host)
        if chosen is None:
            raise NbcError(
                f"The image {self.ref} has no variant for this machine ({'/'.join(self._host)})",
                hint="Platforms in the image: " + (", ".join(seen) or "(none)") + "; use an image built for this one",
                details={"image": self.ref, "reason": "no-platform", "index": index_desc.digest},
            )
        return chosen

    def _json(self, data: bytes, desc: Descriptor, label: str) -> Any:
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise NbcError(f"{label} {desc.digest} of {self.ref} is not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise NbcError(f"{label} {desc.digest} of {self.ref} is not a JSON object")
        return parsed

    # -- blobs --------------------------------------------------------------------------------------

    def _blob_response(self, desc: Descriptor, offset: int = 0) -> requests.Response:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self.client.request("GET", f"/v2/{self.registry_ref.repository}/blobs/{desc.digest}",
                                   headers=headers, stream=True)
        status = resp.status_code
        if status == 200 or (status == 206 and offset):
            if status == 206 and not resp.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                resp.close()
                raise NbcError(f"The registry resumed blob {desc.short} at the wrong offset "
                               f"({resp.headers.get('Content-Range')!r}, wanted {offset})")
            if status == 200 and offset:
                try:
                    skip_bytes(resp, offset)  # the server ignored Range: drop what we already have
                except EOFError as exc:
                    resp.close()
                    raise NbcError(f"Blob {desc.short}: {exc}") from None
            return resp
        resp.close()
        if status == 404:
            raise NbcError(f"Blob {desc.digest} of {self.ref} is missing from the registry",
                           hint="The image in the registry is incomplete; push it again",
                           details={"image": self.ref, "digest": desc.digest})
        if status in (401, 403):
            raise self.client._refused(f"HTTP {status} on blob {desc.short}")
        raise NbcError(f"The registry answered HTTP {status} for blob {desc.short} of {self.ref}",
                       hint="The registry may be down; try again later")

    # -- signatures (trust/cosign.py reads cosign's signature images through these) -------------------

    def manifest_at(self, reference: str) -> bytes | None:
        """The manifest stored at a tag or digest of this repository, or None when there is none there. A
        digest reference is checked against the bytes."""
        try:
            data, _, _ = self._manifest_bytes(reference)
        except NbcError as exc:
            if exc.details.get("reason") in ("unknown-tag", "unknown-image"):
                return None
            raise
        if reference.startswith("sha256:") and "sha256:" + hashlib.sha256(data).hexdigest() != reference:
            raise NbcError(f"The manifest {reference} of {self.ref} does not match its digest")
        return data

    def small_blob(self, desc: Descriptor, *, label: str, limit: int) -> bytes:
        """A blob of at most ``limit`` bytes (its descriptor says so before any byte is read), verified."""
        if desc.size > limit:
            raise NbcError(f"{label} {desc.digest} of {self.ref} is larger than {limit} bytes ({desc.size})")
        with self.open_blob(desc, label=label) as stream:
            return stream.read()

    def _small_blob(self, desc: Descriptor, label: str) -> bytes:
        if desc.size > _MAX_JSON:
            raise NbcError(f"{label} {desc.digest} of {self.ref} is implausibly large ({desc.size} bytes)")
        with self.open_blob(desc, label=label) as stream:
            return stream.read()

    def open_blob(self, desc: Descriptor, *, label: str = "Layer blob") -> BlobStream:
        raw = ResumingRaw(self._blob_response(desc), desc.size, label=f"{label} {desc.short} of {self.ref}",
                          policy=self.client.policy, reopen=lambda offset: self._blob_response(desc, offset),
                          cancel=self.client.cancel)
        self.resumes[desc.digest] = raw.resumes
        return verified_stream(raw, desc, label=label)


def _error_codes(resp: requests.Response) -> set[str]:
    try:
        body = json.loads(resp.raw.read(1 << 16, decode_content=True) or b"{}")
        return {str(e.get("code")) for e in body.get("errors") or [] if isinstance(e, dict)}
    except (ValueError, AttributeError, *STREAM_ERRORS):
        return set()

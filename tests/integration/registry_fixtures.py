"""Pytest plugin: a real ``docker-registry`` on 127.0.0.1, a test CA, basic-auth and token-auth setups.

Loaded for every test by ``pytest_plugins`` in tests/conftest.py. Fixtures (names
are stable; other tests rely on them):

- ``registry_factory(**options) -> RegistryServer``: start a registry (function scope, stopped at teardown).
  Options: ``tls: TestCA | None``, ``htpasswd: dict[str, str] | None`` (user -> password), ``token:
  TokenServer | None``, ``root: Path | None`` (storage, shared to keep pushed images), ``port``.
- ``registry``: a plain-HTTP registry without auth (``registry.host`` is ``127.0.0.1:PORT``).
- ``test_ca``: a CA and a server certificate for 127.0.0.1/localhost (``.ca_pem``, ``.cert``, ``.key``).
- ``token_server``: a token server thread issuing RS256 JWTs the registry trusts (``.expiry`` seconds,
  ``.issued`` count, ``.users`` for basic auth to the realm).
- ``docker_config(tmp_path) -> fn(host, user, password) -> Path``: writes ``config.json`` with ``auths``.

``RegistryServer``: ``.host``, ``.root`` (storage dir), ``push(oci_ref, "name:tag")`` (skopeo), ``blob_path
(digest)``, ``stop()``, ``kill()``, ``start()`` (same port and storage), ``restart(**options)``.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

REGISTRY_BIN = "/usr/bin/docker-registry"
ISSUER = "nbc-tui-test-issuer"
SERVICE = "nbc-tui-test-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass
class TestCA:
    """A CA (``ca_pem``) and a server certificate it signed for 127.0.0.1 and localhost."""

    __test__ = False
    ca_pem: Path
    cert: Path
    key: Path

    @classmethod
    def create(cls, d: Path) -> TestCA:
        d.mkdir(parents=True, exist_ok=True)
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=nbc-tui test CA",
                 "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
                 "-out", "server.csr", cwd=d)
        (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem", cwd=d)
        return cls(d / "ca.pem", d / "server.pem", d / "server.key")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues registry JWTs (RS256, signed with ``openssl dgst``; the cert travels in the x5c header).

    ``expiry`` is the token's useful life in seconds: the registry allows 60 s of clock skew past ``exp``,
    so ``exp`` is set that much earlier. ``users`` (user -> password) are required when not empty.
    """

    LEEWAY = 60

    def __init__(self, d: Path, *, expiry: float = 300) -> None:
        d.mkdir(parents=True, exist_ok=True)
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=token signer",
                 "-keyout", "signer.key", "-out", "signer.pem", cwd=d)
        self.dir = d
        self.cert_pem = d / "signer.pem"
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert_pem), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self._x5c = base64.b64encode(der).decode()
        self.expiry = expiry
        self.users: dict[str, str] = {}
        self.issued = 0
        self.requests: list[dict[str, str]] = []
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def sign(self, claims: dict) -> str:
        header = {"alg": "RS256", "typ": "JWT", "x5c": [self._x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.dir / "signer.key")],
                             input=signing_input.encode(), check=True, capture_output=True).stdout
        return f"{signing_input}.{_b64url(sig)}"

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(self.path).query))
                server.requests.append(query)
                if server.users:
                    auth = self.headers.get("Authorization", "")
                    user, _, password = (base64.b64decode(auth[6:]).decode().partition(":")
                                         if auth.startswith("Basic ") else ("", "", ""))
                    if server.users.get(user) != password or not user:
                        self.send_response(401)
                        self.end_headers()
                        return
                access = []
                scope = query.get("scope", "")
                if scope.startswith("repository:"):
                    _, name, actions = scope.split(":", 2)
                    access.append({"type": "repository", "name": name, "actions": actions.split(",")})
                now = int(time.time())
                token = server.sign({"iss": ISSUER, "sub": "test", "aud": query.get("service", SERVICE),
                                     "exp": now - server.LEEWAY + int(server.expiry), "nbf": now - 5,
                                     "iat": now, "jti": secrets.token_hex(8), "access": access})
                server.issued += 1
                body = json.dumps({"token": token, "expires_in": int(server.expiry)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


ACCESS_LINE = re.compile(r'"GET /v2/\S+/blobs/(?P<digest>sha256:[0-9a-f]{64}) HTTP/[\d.]+" 20[06] (?P<bytes>\d+)')
"""A blob served, in the registry's access log (combined log format)."""


@dataclass
class RegistryServer:
    """One docker-registry process; restartable on the same port and storage."""

    workdir: Path
    root: Path
    port: int
    tls: TestCA | None = None
    htpasswd: dict[str, str] | None = None
    token: TokenServer | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def _config(self) -> Path:
        # The access log (combined format) says what each request was served: served_blob_bytes().
        lines = ["version: 0.1", "log:", "  level: error", "  accesslog:", "    disabled: false", "storage:",
                 "  filesystem:",
                 f"    rootdirectory: {self.root}", "  delete:", "    enabled: true", "http:",
                 f"  addr: {self.host}", f"  secret: {secrets.token_hex(8)}"]
        if self.tls:
            lines += ["  tls:", f"    certificate: {self.tls.cert}", f"    key: {self.tls.key}"]
        if self.htpasswd:
            pw = self.workdir / "htpasswd"
            pw.write_text("".join(subprocess.run(["htpasswd", "-Bbn", u, p], check=True, capture_output=True,
                                                 text=True).stdout.strip() + "\n"
                                  for u, p in self.htpasswd.items()))
            lines += ["auth:", "  htpasswd:", "    realm: nbc-tui-test", f"    path: {pw}"]
        elif self.token:
            lines += ["auth:", "  token:", f"    realm: {self.token.realm}", f"    service: {SERVICE}",
                      f"    issuer: {ISSUER}", f"    rootcertbundle: {self.token.cert_pem}"]
        config = self.workdir / "config.yml"
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self) -> None:
        config = self._config()
        log = (self.workdir / "registry.log").open("ab")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=log,
                                     start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(self.workdir / 'registry.log').read_text()[-2000:]}")
            with contextlib.suppress(requests.RequestException):
                requests.get(f"{self.url}/v2/", timeout=1, verify=str(self.tls.ca_pem) if self.tls else False)
                return
            time.sleep(0.1)
        raise RuntimeError("docker-registry did not answer /v2/ within 20 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash or a lost connection: open transfers break mid-stream."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self, **options: object) -> None:
        """Stop, change options (tls, htpasswd, token), start on the same port and storage."""
        self.stop()
        for key, value in options.items():
            setattr(self, key, value)
        self.start()

    def push(self, oci_ref: str, name: str) -> str:
        """Push an ``oci:DIR:TAG`` image (all platforms of an index) as ``name`` (``repo:tag``); the
        registry must be plain HTTP without auth while pushing. Returns ``host/name``."""
        assert not (self.tls or self.htpasswd or self.token), "push before turning on TLS or auth"
        subprocess.run(["skopeo", "copy", "--quiet", "--all", "--preserve-digests", "--dest-tls-verify=false",
                        oci_ref, f"docker://{self.host}/{name}"], check=True, capture_output=True, timeout=300)
        return f"{self.host}/{name}"

    def served_blob_bytes(self) -> dict[str, int]:
        """Bytes served per blob digest since the registry was first started (its access log)."""
        served: dict[str, int] = {}
        for line in (self.workdir / "registry.log").read_text(errors="replace").splitlines():
            if m := ACCESS_LINE.search(line):
                served[m["digest"]] = served.get(m["digest"], 0) + int(m["bytes"])
        return served

    def blob_path(self, digest: str) -> Path:
        hexpart = digest.split(":", 1)[1]
        return self.root / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexpart[:2] / hexpart / "data"


@pytest.fixture
def registry_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RegistryServer]]:
    started: list[RegistryServer] = []

    def start(*, tls: TestCA | None = None, htpasswd: dict[str, str] | None = None,
              token: TokenServer | None = None, root: Path | None = None, port: int | None = None) -> RegistryServer:
        workdir = tmp_path_factory.mktemp("registry")
        server = RegistryServer(workdir, root or workdir / "storage", port or free_port(), tls, htpasswd, token)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def registry(registry_factory: Callable[..., RegistryServer]) -> RegistryServer:
    return registry_factory()


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    server = TokenServer(tmp_path_factory.mktemp("token"))
    yield server
    server.close()


@pytest.fixture
def docker_config(tmp_path: Path) -> Callable[[str, str, str], Path]:
    def write(host: str, user: str, password: str) -> Path:
        d = tmp_path / "docker-config"
        d.mkdir(exist_ok=True)
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        path = d / "config.json"
        path.write_text(json.dumps({"auths": {f"https://{host}": {"auth": auth}}}))
        return path

    return write

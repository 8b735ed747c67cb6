"""Transient registry faults, injected by a small fake registry on 127.0.0.1 (the real docker-registry cannot be
made to answer 503 or to ignore Range on demand): 5xx and 429 are retried with backoff and Retry-After, a server
that ignores Range still yields a verified blob, and a permanent 404 is not retried."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nbc_tui.backend.errors import NbcError
from nbc_tui.backend.image.registry import RegistrySource
from nbc_tui.backend.image.transfer import RetryPolicy

LAYER = bytes(range(256)) * 4096  # 1 MiB
CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(CONFIG), "size": len(CONFIG)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(LAYER), "size": len(LAYER)}],
}).encode()


class Faults:
    def __init__(self) -> None:
        self.fail_blob = 0  # answer this many blob GETs with `status` first
        self.status = 503
        self.retry_after: str | None = None
        self.cut_after: int | None = None  # break the first blob body after this many bytes
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []


@pytest.fixture
def fake_registry() -> Iterator[tuple[str, Faults]]:
    faults = Faults()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            faults.requests.append((self.path, self.headers.get("Range")))
            if self.path == "/v2/":
                return self._send(200, b"{}")
            if self.path == "/v2/fake/manifests/1":
                return self._send(200, MANIFEST, {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                                                  "Docker-Content-Digest": digest(MANIFEST)})
            if self.path == f"/v2/fake/blobs/{digest(CONFIG)}":
                return self._send(200, CONFIG)
            if self.path == f"/v2/fake/blobs/{digest(LAYER)}":
                if faults.fail_blob:
                    faults.fail_blob -= 1
                    return self._send(faults.status, b"busy", {"Retry-After": faults.retry_after}
                                      if faults.retry_after else {})
                start = 0
                rng = self.headers.get("Range")
                if rng and not faults.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                body = LAYER[start:]
                status = 206 if start else 200
                headers = {"Content-Range": f"bytes {start}-{len(LAYER) - 1}/{len(LAYER)}"} if start else {}
                if faults.cut_after is not None:
                    cut, faults.cut_after = faults.cut_after, None
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                return self._send(status, body, headers)
            return self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", faults
    finally:
        server.shutdown()
        server.server_close()


FAST = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05, connect_timeout=2, read_timeout=5)


def read_layer(host: str) -> bytes:
    source = RegistrySource(f"{host}/fake:1", policy=FAST)
    with source.open_blob(source.layers[0]) as blob:
        return blob.read()


@pytest.mark.parametrize(("status", "retry_after"), [(503, None), (500, None), (429, "0"), (502, None)])
def test_transient_statuses_are_retried(fake_registry, status: int, retry_after: str | None) -> None:
    host, faults = fake_registry
    faults.fail_blob, faults.status, faults.retry_after = 2, status, retry_after
    assert read_layer(host) == LAYER
    assert [p for p, _ in faults.requests].count(f"/v2/fake/blobs/{digest(LAYER)}") == 3


def test_too_many_failures_give_up_in_words(fake_registry) -> None:
    host, faults = fake_registry
    faults.fail_blob = 10
    with pytest.raises(NbcError) as exc:
        read_layer(host)
    assert "fake" in exc.value.message


def test_broken_body_resumes_with_range(fake_registry) -> None:
    host, faults = fake_registry
    faults.cut_after = 300_000
    assert read_layer(host) == LAYER
    ranges = [r for p, r in faults.requests if r]
    assert ranges and ranges[0].startswith("bytes=")


def test_server_ignoring_range_still_gives_the_verified_blob(fake_registry) -> None:
    host, faults = fake_registry
    faults.cut_after, faults.ignore_range = 300_000, True
    assert read_layer(host) == LAYER


def test_permanent_errors_are_not_retried(fake_registry) -> None:
    host, faults = fake_registry
    with pytest.raises(NbcError):
        RegistrySource(f"{host}/fake:2", policy=FAST)
    assert [p for p, _ in faults.requests].count("/v2/fake/manifests/2") == 1

"""RegistrySource against a real docker-registry on 127.0.0.1: index resolution, TLS, auth, tokens,
corruption, a registry killed mid-blob, and the errors users see."""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from nbc_tui.backend.errors import InputError, NbcError
from nbc_tui.backend.image.layout import OciLayoutSource
from nbc_tui.backend.image.opener import open_image
from nbc_tui.backend.image.registry import RegistrySource
from nbc_tui.backend.image.scan import scan_image
from nbc_tui.backend.image.transfer import RetryPolicy
from nbc_tui.backend.runner import RunContext
from tests.support.oci import Layer, TarBuilder, write_multiarch_layout
from tests.support.synthetic import base_layer, second_layer

if TYPE_CHECKING:
    from tests.integration.registry_fixtures import RegistryServer, TestCA, TokenServer


FAST = RetryPolicy(attempts=6, backoff=0.3, max_backoff=2.0, connect_timeout=3, read_timeout=10)


@pytest.fixture(scope="module")
def multiarch(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """An index with amd64 + arm64 images (gzip base, zstd upper) and an attestation entry."""
    d = tmp_path_factory.mktemp("multiarch") / "layout"
    digests = write_multiarch_layout(d, {
        "amd64": [Layer(base_layer(), "gzip"), Layer(second_layer(), "zstd")],
        "arm64": [Layer(base_layer(kernel=False), "gzip"), Layer(second_layer(), "zstd")],
    })
    return f"oci:{d}:latest", digests


@pytest.fixture(scope="module")
def big_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One image with a ~24 MiB layer of incompressible bytes, so a transfer can be cut mid-way."""
    d = tmp_path_factory.mktemp("big") / "layout"
    noise = TarBuilder().dir("srv").file("srv/noise.bin", os.urandom(24 << 20)).bytes()
    write_multiarch_layout(d, {"amd64": [Layer(base_layer(), "gzip"), Layer(noise, "gzip"),
                                         Layer(second_layer(), "zstd")]}, attestation=False)
    return f"oci:{d}:latest"


def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "NBC_TUI_REGISTRY_CA", "NBC_TUI_INSECURE_REGISTRIES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))


@pytest.fixture(autouse=True)
def isolated_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clean_env(monkeypatch, tmp_path)
    if os.geteuid() == 0 and Path("/run/containers/0/auth.json").exists():
        pytest.skip("a root auth.json exists on this machine; these tests want no ambient credentials")


def _read_all(source: RegistrySource) -> dict[str, bytes]:
    out = {}
    for desc in source.layers:
        with source.open_blob(desc) as blob:
            out[desc.digest] = blob.read()
    return out


def test_multiarch_index_resolves_to_host_platform(registry: RegistryServer,
                                                   multiarch: tuple[str, dict[str, str]]) -> None:
    oci_ref, digests = multiarch
    name = registry.push(oci_ref, "synthetic/multi:v1")
    source = open_image(name, cancel=threading.Event())
    assert isinstance(source, RegistrySource)
    assert source.index_digest == digests["index"]
    assert source.manifest_digest == digests["amd64"]
    layout = OciLayoutSource(oci_ref)
    assert source.layers == layout.layers
    assert source.config == layout.config
    assert [d.media_type.rsplit("+", 1)[-1] for d in source.layers] == ["gzip", "zstd"]
    arm = RegistrySource(name, host=("linux", "arm64"))
    assert arm.manifest_digest == digests["arm64"]
    assert arm.index_digest == digests["index"]
    # pinned by digest: the same image, no tag involved
    pinned = open_image(f"{registry.host}/synthetic/multi@{digests['index']}")
    assert pinned.manifest_digest == digests["amd64"]
    inventory = scan_image(source)
    assert inventory == scan_image(layout)


def test_no_image_for_this_platform(registry: RegistryServer, multiarch: tuple[str, dict[str, str]]) -> None:
    name = registry.push(multiarch[0], "synthetic/multi:v1")
    with pytest.raises(NbcError) as info:
        RegistrySource(name, host=("linux", "riscv64"))
    assert info.value.exit_code == 1
    assert "no variant for this machine (linux/riscv64)" in info.value.message
    assert "linux/amd64, linux/arm64" in (info.value.hint or "")


@pytest.mark.root
def test_extract_from_registry_matches_layout(registry: RegistryServer, multiarch: tuple[str, dict[str, str]],
                                              tmp_path: Path) -> None:
    from nbc_tui.backend.image.extract import extract_image

    name = registry.push(multiarch[0], "synthetic/multi:v1")
    ctx = RunContext()
    a, b = tmp_path / "from-registry", tmp_path / "from-layout"
    a.mkdir()
    b.mkdir()
    extract_image(open_image(name), a, ctx=ctx)
    extract_image(OciLayoutSource(multiarch[0]), b, ctx=ctx)

    def tree(root: Path) -> dict[str, tuple[int, int, bytes | str]]:
        out = {}
        for p in sorted(root.rglob("*")):
            st = p.lstat()
            content: bytes | str = os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else b""
            out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, content)
        return out

    assert tree(a) == tree(b)
    assert (a / "etc" / "motd").exists() and not (a / "etc" / "hostname").exists()


def test_tls_with_test_ca_and_basic_auth(registry: RegistryServer, multiarch: tuple[str, dict[str, str]],
                                         test_ca: TestCA, docker_config: Callable[[str, str, str], Path],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    name = registry.push(multiarch[0], "private/img:v1")
    registry.restart(tls=test_ca, htpasswd={"alice": "s3cret-pw"})
    # no CA: refused in words, even on loopback (TLS is verified whenever the server speaks it)
    with pytest.raises(NbcError) as info:
        RegistrySource(name, policy=FAST)
    assert "TLS failure" in info.value.message and "not signed by a trusted authority" in info.value.message
    assert "NBC_TUI_REGISTRY_CA" in (info.value.hint or "")
    # CA but no credentials
    with pytest.raises(NbcError) as info:
        RegistrySource(name, ca_file=test_ca.ca_pem, policy=FAST)
    assert "was refused" in info.value.message and "Log in" in (info.value.hint or "")
    # the right password from a Docker config file
    config = docker_config(registry.host, "alice", "s3cret-pw")
    monkeypatch.setenv("DOCKER_CONFIG", str(config.parent))
    monkeypatch.setenv("NBC_TUI_REGISTRY_CA", str(test_ca.ca_pem))
    ctx = RunContext()
    source = RegistrySource(name, ctx=ctx, policy=FAST)
    assert source.manifest_digest == multiarch[1]["amd64"]
    assert all(data for data in _read_all(source).values())
    assert ctx.redactor("password s3cret-pw") == "password <redacted>"
    # a wrong password
    docker_config(registry.host, "alice", "wrong")
    with pytest.raises(NbcError) as info:
        RegistrySource(name, policy=FAST)
    assert "was refused" in info.value.message
    assert "Check the user and password" in (info.value.hint or "")
    assert info.value.details["reason"] == "auth-refused"


def test_an_insecure_registry_is_reached_over_tls_unchecked_or_plain_http(
        registry: RegistryServer, multiarch: tuple[str, dict[str, str]], test_ca: TestCA,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """NBC_TUI_INSECURE_REGISTRIES names hosts whose certificate is not checked, or that speak plain http."""
    name = registry.push(multiarch[0], "insecure/img:v1")
    monkeypatch.setenv("NBC_TUI_INSECURE_REGISTRIES", registry.host)
    assert RegistrySource(name, policy=FAST).manifest_digest == multiarch[1]["amd64"]  # plain http
    registry.restart(tls=test_ca)  # a certificate no CA given here vouches for
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("default")
        source = RegistrySource(name, policy=FAST)
        assert source.manifest_digest == multiarch[1]["amd64"]
        assert all(data for data in _read_all(source).values())
    assert not [w for w in warned if "Unverified HTTPS request" in str(w.message)]  # asked for: no noise


def test_bearer_token_flow_and_expiry_mid_pull(registry: RegistryServer, multiarch: tuple[str, dict[str, str]],
                                               token_server: TokenServer) -> None:
    name = registry.push(multiarch[0], "tok/img:v1")
    registry.restart(token=token_server)
    token_server.expiry = 3
    source = RegistrySource(name, policy=FAST)
    assert source.manifest_digest == multiarch[1]["amd64"]
    issued = token_server.issued
    assert issued >= 1
    assert token_server.requests[-1]["scope"] == "repository:tok/img:pull"
    assert token_server.requests[-1]["service"] == "nbc-tui-test-registry"
    time.sleep(4)  # the token has expired; the blob requests get 401 and fetch a fresh one
    blobs = _read_all(source)
    assert len(blobs) == 2
    assert token_server.issued > issued


def test_token_server_refusing_credentials(registry: RegistryServer, multiarch: tuple[str, dict[str, str]],
                                           token_server: TokenServer) -> None:
    name = registry.push(multiarch[0], "tok/img:v1")
    registry.restart(token=token_server)
    token_server.users = {"bob": "pw"}
    with pytest.raises(NbcError) as info:
        RegistrySource(name, policy=FAST)
    assert "token server refused an anonymous token" in info.value.message


def test_corrupted_blob_is_refused_by_the_scan(registry: RegistryServer,
                                               multiarch: tuple[str, dict[str, str]]) -> None:
    name = registry.push(multiarch[0], "synthetic/multi:v1")
    source = open_image(name)
    blob = registry.blob_path(source.layers[0].digest)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    seen: list[int] = []
    with pytest.raises(NbcError) as info:
        scan_image(source, on_progress=lambda done, total: seen.append(done))
    assert "does not match its digest" in info.value.message
    assert source.layers[0].digest in info.value.message


def test_registry_killed_mid_blob_resumes_with_range(registry: RegistryServer, big_image: str) -> None:
    name = registry.push(big_image, "big/img:v1")
    source = RegistrySource(name, policy=FAST)
    desc = max(source.layers, key=lambda d: d.size)
    assert desc.size > 20 << 20
    with source.open_blob(desc) as blob:
        first = blob.read(2 << 20)
        registry.kill()
        restarter = threading.Timer(1.0, registry.start)
        restarter.start()
        rest = blob.read()
        restarter.join()
    assert len(first) + len(rest) == desc.size  # and the verifier checked the digest across the resume
    assert source.resumes[desc.digest], "no Range resume happened"
    assert all(offset >= len(first) for offset in source.resumes[desc.digest])


def test_unknown_image_and_tag(registry: RegistryServer, multiarch: tuple[str, dict[str, str]]) -> None:
    registry.push(multiarch[0], "synthetic/multi:v1")
    with pytest.raises(NbcError) as info:
        open_image(f"{registry.host}/nothing/here:v1")
    assert f"The image {registry.host}/nothing/here does not exist" in info.value.message
    with pytest.raises(NbcError) as info:
        open_image(f"{registry.host}/synthetic/multi:v9")
    assert info.value.message == f"The image {registry.host}/synthetic/multi has no tag v9"
    assert "tags there: v1" in (info.value.hint or "")
    assert info.value.exit_code == 1


def test_unreachable_registry() -> None:
    from tests.integration.registry_fixtures import free_port

    with pytest.raises(NbcError) as info:
        RegistrySource(f"127.0.0.1:{free_port()}/x/y:1",
                       policy=RetryPolicy(attempts=2, backoff=0.1, connect_timeout=2))
    assert "Cannot reach the registry" in info.value.message
    assert "connection was refused" in info.value.message


def test_malformed_reference_is_input_error() -> None:
    with pytest.raises(InputError) as info:
        open_image("Quay.io/UPPER/Case:tag")
    assert info.value.exit_code == 2

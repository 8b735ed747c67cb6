"""Registry credentials: file order, host key forms, Docker Hub aliases, credential helpers, redaction."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from nbc_tui.backend.errors import InputError, NbcError
from nbc_tui.backend.image import auth
from nbc_tui.backend.image.auth import auth_files, find_credentials, namespace_keys, normalize_key
from nbc_tui.backend.runner import RunContext


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for var in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "DOCKER_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(auth.os, "geteuid", lambda: 1000)  # no /run/containers/0 from this machine
    return {"DOCKER_CONFIG": str(tmp_path / "docker"), "XDG_RUNTIME_DIR": str(tmp_path / "run"),
            "HOME": str(tmp_path / "home")}


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _b64(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_file_order(env: dict[str, str], tmp_path: Path) -> None:
    env["REGISTRY_AUTH_FILE"] = str(tmp_path / "a.json")
    assert auth_files(env) == [tmp_path / "a.json", tmp_path / "run/containers/auth.json",
                               tmp_path / "home/.config/containers/auth.json", tmp_path / "docker/config.json"]


def test_first_file_that_knows_the_host_wins(env: dict[str, str], tmp_path: Path) -> None:
    _write(tmp_path / "run/containers/auth.json", {"auths": {"quay.io": {"auth": _b64("podman", "pw1")}}})
    _write(tmp_path / "docker/config.json", {"auths": {"quay.io": {"auth": _b64("docker", "pw2")},
                                                      "ghcr.io": {"username": "u", "password": "pw3"}}})
    ctx = RunContext()
    assert find_credentials("quay.io", ctx=ctx, env=env).username == "podman"  # type: ignore[union-attr]
    cred = find_credentials("ghcr.io", ctx=ctx, env=env)
    assert cred is not None and cred.secret.get_secret_value() == "pw3"
    assert find_credentials("example.org", ctx=ctx, env=env) is None
    assert ctx.redactor("pw1 pw3") == "<redacted> <redacted>"


@pytest.mark.parametrize("key", ["https://index.docker.io/v1/", "docker.io", "index.docker.io"])
def test_docker_hub_aliases(env: dict[str, str], tmp_path: Path, key: str) -> None:
    _write(tmp_path / "docker/config.json", {"auths": {key: {"auth": _b64("hubuser", "hubpw")}}})
    cred = find_credentials("registry-1.docker.io", ctx=RunContext(), env=env)
    assert cred is not None and cred.username == "hubuser"


def test_keys_with_scheme_and_path(env: dict[str, str], tmp_path: Path) -> None:
    _write(tmp_path / "docker/config.json", {"auths": {"https://reg.example:5000/v2/": {"auth": _b64("u", "p1")}}})
    assert find_credentials("reg.example:5000", ctx=RunContext(), env=env) is not None
    assert normalize_key("http://quay.io/v1/") == "quay.io"


def test_malformed_auth_is_input_error(env: dict[str, str], tmp_path: Path) -> None:
    _write(tmp_path / "docker/config.json", {"auths": {"quay.io": {"auth": "!!!"}}})
    with pytest.raises(InputError):
        find_credentials("quay.io", ctx=RunContext(), env=env)


def _helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    tool = bindir / f"docker-credential-{name}"
    tool.write_text("#!/bin/sh\n" + body)
    tool.chmod(0o755)
    monkeypatch.setattr(auth, "which", lambda t: str(bindir / t) if (bindir / t).exists() else None)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")


def test_cred_helper_runs_through_the_runner_and_secret_never_logged(
        env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # The helper answers only for the host it is asked about on stdin.
    _helper(tmp_path, monkeypatch, "fake", 'read host\nif [ "$host" = quay.io ]; then\n'
            '  echo \'{"ServerURL":"quay.io","Username":"robot","Secret":"helper-secret-1"}\'\n'
            'else echo "credentials not found in native keychain"; exit 1; fi\n')
    _write(tmp_path / "docker/config.json", {"credHelpers": {"quay.io": "fake"}, "credsStore": "fake"})
    lines: list[str] = []
    ctx = RunContext(on_output=lines.append)
    with caplog.at_level(logging.DEBUG, logger="nbc_tui"):
        cred = find_credentials("quay.io", ctx=ctx, env=env)
        assert cred is not None and cred.username == "robot"
        assert cred.secret.get_secret_value() == "helper-secret-1"
        assert find_credentials("ghcr.io", ctx=ctx, env=env) is None  # credsStore: not found -> anonymous
    assert "helper-secret-1" not in caplog.text
    assert not any("helper-secret-1" in line for line in lines)


def test_missing_helper_is_explained(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "which", lambda t: None)
    _write(tmp_path / "docker/config.json", {"credsStore": "nosuch"})
    with pytest.raises(NbcError) as info:
        find_credentials("quay.io", ctx=RunContext(), env=env)
    assert "docker-credential-nosuch" in info.value.message and "not installed" in info.value.message


def test_the_most_specific_namespace_key_wins_and_another_namespaces_key_is_not_used(
        env: dict[str, str], tmp_path: Path) -> None:
    """containers-auth.json(5): keys may name a namespace or a repository; only those that contain the image
    apply, the most specific first."""
    _write(tmp_path / "run/containers/auth.json", {"auths": {
        "quay.io/other/app": {"auth": _b64("other", "pw-other")},
        "quay.io/team": {"auth": _b64("team", "pw-team")},
        "quay.io/team/app": {"auth": _b64("app", "pw-app")},
        "docker.io/library": {"auth": _b64("hub-library", "pw-hub")}}})
    ctx = RunContext()

    def user(host: str, repository: str) -> str | None:
        cred = find_credentials(host, ctx=ctx, env=env, repository=repository)
        return cred.username if cred else None

    assert user("quay.io", "team/app") == "app"
    assert user("quay.io", "team/tools") == "team"
    assert user("quay.io", "mine/app") is None  # another namespace's credentials are not sent
    assert user("registry-1.docker.io", "library/debian") == "hub-library"
    assert namespace_keys("quay.io", "team/app") == ["quay.io/team/app", "quay.io/team"]

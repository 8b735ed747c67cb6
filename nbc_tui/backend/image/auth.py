"""Registry credentials, found where Podman and Docker keep them.

Order (the first file that knows the host wins): ``$REGISTRY_AUTH_FILE``, the containers ``auth.json``
(``$XDG_RUNTIME_DIR/containers/auth.json``, ``/run/containers/0/auth.json`` for root), then the Docker
config (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``). In each: ``credHelpers`` for the
host, inline ``auths`` (base64 ``auth`` or ``username``/``password``, ``identitytoken``), then
``credsStore``. Helpers (``docker-credential-NAME get``, the host on stdin) run through the one runner;
every secret found is registered with the run context's redactor before anything can log it.

oras-py has the same lookup (``oras.auth.utils.load_configs``, ``AuthBackend._load_auth``) but reads only
``~/.docker/config.json``, matches host keys only exactly, and runs helpers with ``subprocess`` directly:
we keep its base64 helper only.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from oras.auth.utils import get_basic_auth
from pydantic import SecretStr

from ..errors import CommandFailed, InputError, NbcError
from ..runner import REDACTED, RunContext, run, which
from .reference import DOCKER_HUB, DOCKER_HUB_ALIASES

log = logging.getLogger("nbc_tui")

# Docker Hub is stored under its v1 URL by `docker login`; the helpers are asked with it too.
_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io",
             "registry.hub.docker.com")
IDENTITY_TOKEN_USER = "<token>"  # what credential helpers return as username for an identity token
_SECRET_FIELD = re.compile(r'("Secret"\s*:\s*)"(?:[^"\\]|\\.)*"')


@dataclass(frozen=True)
class Credential:
    """A user name and a secret for one registry; ``identity_token`` means the secret is an OAuth2
    refresh token (``docker login`` with an identity provider), not a password."""

    username: str
    secret: SecretStr
    source: str
    identity_token: bool = False

    def basic_header(self) -> str:
        return "Basic " + get_basic_auth(self.username, self.secret.get_secret_value())


def auth_files(env: Mapping[str, str] | None = None) -> list[Path]:
    """The credential files to read, most specific first (only those named; existence is checked later)."""
    env = os.environ if env is None else env
    files: list[Path] = []
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("XDG_RUNTIME_DIR"):
        files.append(Path(env["XDG_RUNTIME_DIR"], "containers", "auth.json"))
    if os.geteuid() == 0:
        files.append(Path("/run/containers/0/auth.json"))
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    files.append(home / ".config" / "containers" / "auth.json")  # containers-auth.json(5)'s fallback
    docker_dir = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else home / ".docker"
    files.append(docker_dir / "config.json")
    seen: set[Path] = set()
    return [f for f in files if not (f in seen or seen.add(f))]  # type: ignore[func-returns-value]


def host_keys(host: str) -> tuple[str, ...]:
    """The keys a config may store ``host`` under, in the order they are tried."""
    if host in DOCKER_HUB_ALIASES or host == DOCKER_HUB:
        return _HUB_KEYS
    return (host, f"https://{host}", f"http://{host}")


def normalize_key(key: str) -> str:
    """A config key as a bare host: ``https://quay.io/v1/`` -> ``quay.io``; Docker Hub -> its API host."""
    bare = key.split("://", 1)[-1].split("/", 1)[0]
    return DOCKER_HUB if bare in DOCKER_HUB_ALIASES else bare


def find_credentials(host: str, *, ctx: RunContext, env: Mapping[str, str] | None = None,
                     repository: str = "") -> Credential | None:
    """The credentials for ``repository`` on ``host`` from the first file that has any, or None (anonymous)."""
    for path in auth_files(env):
        config = _read_config(path)
        if config is None:
            continue
        found = _from_config(config, host, path, ctx, repository)
        if found is not None:
            ctx.redactor.add(found.secret)
            log.info("registry credentials for %s: user %s from %s", host, found.username, found.source)
            return found
    return None


def _read_config(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InputError(f"Cannot read the registry credentials file {path}: {exc}",
                         hint="Fix or remove the file, or log in again") from None
    if not isinstance(data, dict):
        raise InputError(f"The registry credentials file {path} is not a JSON object")
    return data


def namespace_keys(host: str, repository: str) -> list[str]:
    """containers-auth.json(5)'s keys for a repository, most specific first: ``host/ns/repo``, ``host/ns``."""
    registry = "docker.io" if host in DOCKER_HUB_ALIASES or host == DOCKER_HUB else host
    parts = [p for p in repository.split("/") if p]
    return [f"{registry}/{'/'.join(parts[:n])}" for n in range(len(parts), 0, -1)]


def _from_config(config: dict, host: str, path: Path, ctx: RunContext, repository: str = "") -> Credential | None:
    wanted = normalize_key(host)
    helpers = config.get("credHelpers") or {}
    for key, helper in helpers.items():
        if normalize_key(key) == wanted and helper:
            return _from_helper(str(helper), host, ctx)
    auths = config.get("auths") or {}
    for key in (*namespace_keys(host, repository), *host_keys(host)):  # the most specific key wins
        if isinstance(auths.get(key), dict):
            found = _from_entry(auths[key], key, path, ctx)
            if found:
                return found
    for key, entry in auths.items():  # a URL key (Docker's https://host/v1/); a bare key with a path is a namespace's
        if "://" in key and normalize_key(key) == wanted and isinstance(entry, dict):
            found = _from_entry(entry, key, path, ctx)
            if found:
                return found
    store = config.get("credsStore")
    if store:
        return _from_helper(str(store), host, ctx)
    return None


def _from_entry(entry: dict, key: str, path: Path, ctx: RunContext) -> Credential | None:
    source = f"{path} ({key})"
    if entry.get("identitytoken"):
        token = SecretStr(str(entry["identitytoken"]))
        ctx.redactor.add(token)
        return Credential(str(entry.get("username") or ""), token, source, identity_token=True)
    if entry.get("auth"):
        ctx.redactor.add(str(entry["auth"]))
        try:
            user, sep, password = base64.b64decode(str(entry["auth"]), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise InputError(f"The credentials for {key} in {path} are not valid base64 'user:password'",
                             hint="Log in again to rewrite them") from None
        if not sep:
            raise InputError(f"The credentials for {key} in {path} have no ':' between user and password")
        return Credential(user, SecretStr(password), source)
    if entry.get("username") and entry.get("password"):
        return Credential(str(entry["username"]), SecretStr(str(entry["password"])), source)
    return None


def _from_helper(helper: str, host: str, ctx: RunContext) -> Credential | None:
    tool = f"docker-credential-{helper}"
    if which(tool) is None:
        raise NbcError(f"The credential helper {tool} named in your Docker config is not installed",
                       hint=f"Install {tool}, or remove it from the config to pull anonymously")
    # A helper's reply is logged before we parse it: its "Secret" field is masked by shape.
    helper_ctx = ctx.masking(_SECRET_FIELD, rf'\1"{REDACTED}"', shown=True)
    for key in host_keys(host):
        try:
            done = run([tool, "get"], ctx=helper_ctx, stdin=SecretStr(key), changes_system=False, timeout=60,
                       ok=(0, 1), what=f"credential helper {tool}")
        except CommandFailed as exc:
            raise NbcError(f"The credential helper {tool} failed for {host}", hint=exc.message) from None
        if done.returncode != 0:  # "credentials not found in native keychain": try the next key
            continue
        try:
            data = json.loads(done.stdout)
            user, secret = str(data["Username"]), str(data["Secret"])
        except (ValueError, KeyError, TypeError):
            raise NbcError(f"The credential helper {tool} gave an answer that is not its JSON for {host}",
                           hint=f"Check `{tool} get` by hand") from None
        ctx.redactor.add(secret)
        return Credential(user, SecretStr(secret), f"{tool} ({key})", identity_token=user == IDENTITY_TOKEN_USER)
    return None

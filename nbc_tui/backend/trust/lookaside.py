"""Where an image's simple-signing (GPG) signatures live: the lookaside storage that containers'
``registries.d`` (containers-registries.d(5)) names, and reading them from there.

Each ``*.yaml`` file in the directory may have ``default-docker`` and ``docker: {SCOPE: ...}`` sections
whose ``lookaside`` (formerly ``sigstore``) is a ``file://``, ``http://`` or ``https://`` URL; the most
specific scope wins, then ``default-docker``, then containers' built-in ``/var/lib/containers/sigstore``.
A signature of manifest ``sha256:HEX`` of ``host/ns/repo`` is ``<URL>/ns/repo@sha256=HEX/signature-N``,
N counting from 1 until the first missing one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import requests
import yaml

from ..errors import InputError, NbcError
from ..image.reference import RegistryRef
from .scopes import most_specific

SYSTEM_REGISTRIES_D = Path("/etc/containers/registries.d")
BUILTIN_LOOKASIDE = "file:///var/lib/containers/sigstore"
MAX_SIGNATURES = 64
"""Signatures read per digest at most (containers reads until the first missing one)."""
MAX_SIGNATURE_BYTES = 4 << 20


@dataclass(frozen=True)
class Lookaside:
    url: str
    """The storage's base URL, as configured (``file:///srv/sigs``)."""
    source: str
    """Where it was configured (a file and scope, or "built-in default"), for messages."""


def _sections(directory: Path) -> tuple[dict[str, tuple[dict[str, Any], str]], tuple[dict[str, Any], str] | None]:
    scopes: dict[str, tuple[dict[str, Any], str]] = {}
    default: tuple[dict[str, Any], str] | None = None
    if not directory.is_dir():
        return scopes, default
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"Cannot read the registries.d file {path}: {exc}",
                             hint="See containers-registries.d(5)") from None
        if not isinstance(data, dict):
            raise InputError(f"The registries.d file {path} is not a YAML mapping")
        if isinstance(data.get("default-docker"), dict):
            default = (data["default-docker"], f"{path} (default-docker)")
        for scope, section in (data.get("docker") or {}).items():
            if isinstance(section, dict):
                scopes[str(scope)] = (section, f"{path} (docker: {scope})")
    return scopes, default


def lookaside_for(ref: RegistryRef, directory: Path | None = None) -> Lookaside | None:
    """The lookaside storage configured for ``ref`` (None when the matching section names none)."""
    scopes, default = _sections(directory or SYSTEM_REGISTRIES_D)
    scope = most_specific(dict(scopes), ref)
    section, source = scopes[scope] if scope is not None else default or ({}, "")
    if not source:
        return Lookaside(BUILTIN_LOOKASIDE, "containers' built-in default")
    url = section.get("lookaside") or section.get("sigstore")
    return Lookaside(str(url), source) if url else None


def signature_urls(base: str, ref: RegistryRef, digest: str) -> list[str]:
    algorithm, _, hex_digest = digest.partition(":")
    folder = f"{base.rstrip('/')}/{ref.repository}@{algorithm}={hex_digest}"
    return [f"{folder}/signature-{n}" for n in range(1, MAX_SIGNATURES + 1)]


def read_signatures(store: Lookaside, ref: RegistryRef, digest: str, *, timeout: float = 30) -> list[bytes]:
    """Every signature stored for ``digest`` of ``ref`` (none is an empty list, not an error)."""
    found = []
    for url in signature_urls(store.url, ref, digest):
        data = _read(url, store, timeout)
        if data is None:
            break
        found.append(data)
    return found


def _read(url: str, store: Lookaside, timeout: float) -> bytes | None:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        try:
            if path.stat().st_size > MAX_SIGNATURE_BYTES:
                raise NbcError(f"The signature {path} is implausibly large")
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise NbcError(f"Cannot read the signature {path}: {exc.strerror or exc}") from None
    if parsed.scheme in ("http", "https"):
        try:
            resp = requests.get(url, timeout=timeout, stream=True)
        except requests.RequestException as exc:
            raise NbcError(f"Cannot reach the signature storage {store.url} ({store.source}): {exc}",
                           hint="Check the lookaside URL in registries.d, or the network") from None
        with resp:
            if resp.status_code == 404:
                return None
            if resp.status_code != 200:
                raise NbcError(f"The signature storage answered HTTP {resp.status_code} for {url}")
            data = resp.raw.read(MAX_SIGNATURE_BYTES + 1, decode_content=True)
            if len(data) > MAX_SIGNATURE_BYTES:
                raise NbcError(f"The signature {url} is implausibly large")
            return data
    raise InputError(f"The lookaside URL {store.url} ({store.source}) is not file://, http:// or https://")

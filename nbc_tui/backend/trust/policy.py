"""containers' signature policy (``policy.json``, containers-policy.json(5)): for an image in a registry,
the requirements that apply (every one must hold).

Supported: ``insecureAcceptAnything``, ``reject``, ``signedBy`` (``GPGKeys`` from ``keyPath``,
``keyPaths`` or ``keyData``) and ``sigstoreSigned`` (a public key from ``keyPath``, ``keyPaths`` or
``keyData``), each with ``signedIdentity``. Scopes under ``transports.docker`` as containers matches them
(scopes.py), then the transport's ``""`` entry, then ``default``. What is not supported here (Fulcio or
Rekor requirements, ``remapIdentity``, an unknown type) is refused with its place in the file, never
treated as accepted.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..image.reference import RegistryRef
from .claims import SignedIdentity
from .scopes import most_specific

SYSTEM_POLICY = Path("/etc/containers/policy.json")


def default_policy_path() -> Path | None:
    """containers' lookup: the user's ``~/.config/containers/policy.json``, then the system's; None when
    neither exists."""
    home = os.environ.get("HOME")
    for path in ([Path(home) / ".config/containers/policy.json"] if home else []) + [SYSTEM_POLICY]:
        if path.is_file():
            return path
    return None


@dataclass(frozen=True)
class TrustedKey:
    """Key material a requirement trusts: read from ``path``, or given inline (``keyData``)."""

    label: str
    """The file's path, or ``keyData`` (for messages and the record)."""
    data: bytes


@dataclass(frozen=True)
class Requirement:
    type: str
    """``insecureAcceptAnything``, ``reject``, ``signedBy`` or ``sigstoreSigned``."""
    keys: tuple[TrustedKey, ...] = ()
    identity: SignedIdentity = field(default_factory=SignedIdentity)


@dataclass(frozen=True)
class ScopedRequirements:
    """What the policy asks of one image, and where in the policy that comes from."""

    source: str
    """``policy FILE (scope "SCOPE")`` or ``policy FILE (default)``, for messages and the record."""
    requirements: tuple[Requirement, ...]


def _where(scope: str) -> str:
    return f'transports.docker["{scope}"]'


class Policy:
    """A parsed policy.json: its global default and its ``docker`` transport's scopes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            data = json.loads(path.read_bytes())
        except OSError as exc:
            raise InputError(f"Cannot read the signature policy {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise InputError(f"The signature policy {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or "default" not in data:
            raise InputError(f"The signature policy {path} has no \"default\" requirements",
                             hint="containers-policy.json(5): {\"default\": [{\"type\": \"reject\"}], ...}")
        transports = data.get("transports") or {}
        docker = transports.get("docker") or {} if isinstance(transports, dict) else None
        if not isinstance(docker, dict):
            raise InputError(f"The signature policy {path}: transports.docker is not an object")
        # Every scope's form is checked now; key files are read only for the scope an image falls in (as
        # containers does: a key missing for another registry does not stop this pull).
        self._default = data["default"]
        self._docker = {str(scope): reqs for scope, reqs in docker.items()}
        self._requirements(self._default, "default", read_keys=False)
        for scope, reqs in self._docker.items():
            self._requirements(reqs, _where(scope), read_keys=False)

    def for_image(self, ref: RegistryRef) -> ScopedRequirements:
        """The requirements for ``ref``'s scope, their keys read (InputError when one cannot be)."""
        scope = most_specific(dict(self._docker), ref)
        if scope is not None:
            return ScopedRequirements(f'policy {self.path} (scope "{scope}")',
                                      self._requirements(self._docker[scope], _where(scope)))
        if "" in self._docker:
            return ScopedRequirements(f'policy {self.path} (transports.docker default)',
                                      self._requirements(self._docker[""], _where("")))
        return ScopedRequirements(f"policy {self.path} (default)", self._requirements(self._default, "default"))

    # -- parsing ----------------------------------------------------------------------------------------

    def _bad(self, where: str, why: str) -> InputError:
        return InputError(f"The signature policy {self.path}: {where}: {why}",
                          hint="See containers-policy.json(5); nothing was written")

    def _requirements(self, items: Any, where: str, *, read_keys: bool = True) -> tuple[Requirement, ...]:
        if not isinstance(items, list) or not items:
            raise self._bad(where, "must be a non-empty list of requirements")
        return tuple(self._requirement(item, f"{where}[{n}]", read_keys) for n, item in enumerate(items))

    def _requirement(self, item: Any, where: str, read_keys: bool) -> Requirement:
        if not isinstance(item, dict):
            raise self._bad(where, "a requirement must be an object")
        kind = item.get("type")
        if kind in ("insecureAcceptAnything", "reject"):
            return Requirement(kind)
        if kind == "signedBy":
            if item.get("keyType", "GPGKeys") != "GPGKeys":
                raise self._bad(where, f"keyType {item.get('keyType')!r} is not supported (only GPGKeys)")
            return Requirement(kind, self._keys(item, where, read_keys), self._identity(item, where))
        if kind == "sigstoreSigned":
            for unsupported in ("fulcio", "rekorPublicKeyPath", "rekorPublicKeyPaths", "rekorPublicKeyData",
                                "pki"):
                if unsupported in item:
                    raise self._bad(where, f"{unsupported!r} is not supported: give a public key (keyPath)")
            return Requirement(kind, self._keys(item, where, read_keys), self._identity(item, where))
        raise self._bad(where, f"unknown requirement type {kind!r}")

    def _keys(self, item: dict[str, Any], where: str, read_keys: bool) -> tuple[TrustedKey, ...]:
        given = [k for k in ("keyPath", "keyPaths", "keyData", "keyDatas") if k in item]
        if len(given) != 1:
            raise self._bad(where, "give exactly one of keyPath, keyPaths, keyData")
        field = given[0]
        value = item[field]
        values = value if field.endswith("s") else [value]
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            raise self._bad(where, f"{field} must be a non-empty string" + (" list" if field.endswith("s") else ""))
        if field.startswith("keyData"):
            try:
                return tuple(TrustedKey("keyData", base64.b64decode(v, validate=True)) for v in values)
            except binascii.Error:
                raise self._bad(where, f"{field} is not base64") from None
        if not read_keys:
            return ()
        keys = []
        for name in values:
            try:
                keys.append(TrustedKey(name, Path(name).read_bytes()))
            except OSError as exc:
                raise self._bad(where, f"cannot read the key {name}: {exc.strerror or exc}") from None
        return tuple(keys)

    def _identity(self, item: dict[str, Any], where: str) -> SignedIdentity:
        identity = item.get("signedIdentity")
        if identity is None:
            return SignedIdentity()
        kind = identity.get("type") if isinstance(identity, dict) else None
        if kind not in SignedIdentity.KINDS:
            raise self._bad(where, f"signedIdentity type {kind!r} is not supported")
        key = {"exactReference": "dockerReference", "exactRepository": "dockerRepository"}.get(kind)
        value = identity.get(key, "") if key else ""
        if key and not (isinstance(value, str) and value):
            raise self._bad(where, f"signedIdentity {kind} needs {key}")
        return SignedIdentity(kind, value)

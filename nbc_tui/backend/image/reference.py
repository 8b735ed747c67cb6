"""Image references as users write them: registry references as Docker reads them, ``localhost/`` images of
a local daemon, OCI layout directories (``oci:PATH[:TAG]``) and OCI archives (``oci-archive:FILE[:TAG]``)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

OCI_PREFIX = "oci:"
SUPPORTED_FORMS = "oci:PATH or oci:PATH:TAG (an OCI image layout directory)"


@dataclass(frozen=True)
class OciLayoutRef:
    """An OCI image layout on disk and, optionally, the tag (ref.name annotation) to pick in it."""

    path: Path
    tag: str | None

    def __str__(self) -> str:
        return f"{OCI_PREFIX}{self.path}" + (f":{self.tag}" if self.tag else "")


def parse_image_ref(text: str) -> OciLayoutRef:
    """Parse ``oci:PATH[:TAG]``. PATH may contain ':'; the tag is what follows the last ':' when that part
    has no '/'. Anything else is refused with the list of supported forms (registry references go
    through :func:`parse_reference`).
    """
    if not text.startswith(OCI_PREFIX):
        raise InputError(
            f"Unsupported image reference {text!r}",
            hint=f"Expected {SUPPORTED_FORMS}; registry references go through parse_reference",
        )
    rest = text[len(OCI_PREFIX):]
    path, sep, tag = rest.rpartition(":")
    if not sep or "/" in tag:
        path, tag = rest, ""
    elif not tag:
        raise InputError(f"Image reference {text!r} ends with ':' but names no tag",
                         hint=f"Write {SUPPORTED_FORMS}")
    if not path:
        raise InputError(f"Image reference {text!r} names no directory", hint=f"Write {SUPPORTED_FORMS}")
    return OciLayoutRef(Path(path), tag or None)


# -- every form a user can write --------------------------------------------------------------------------

OCI_ARCHIVE_PREFIX = "oci-archive:"


def absolute_local_ref(text: str, base: Path) -> str:
    """``oci:PATH[:TAG]`` and ``oci-archive:FILE[:TAG]`` with a relative path, resolved against ``base`` (the
    answer file's folder, or the folder a command was run from); every other reference as it is. The ref is
    recorded (the installed system's updates, a saved answer file), where a relative path would point
    elsewhere."""
    for prefix in (OCI_PREFIX, OCI_ARCHIVE_PREFIX):
        if text.startswith(prefix):
            rest = text[len(prefix):]
            path, sep, tag = rest.rpartition(":")
            if not sep or "/" in tag:
                path, sep, tag = rest, "", ""
            if not path or path.startswith("/"):
                return text
            return f"{prefix}{os.path.normpath(base / path)}{sep}{tag}"
    return text


DOCKER_TRANSPORT = "docker://"
DOCKER_HUB = "registry-1.docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})
LOCAL_DAEMON_HOST = "localhost"
VALID_FORMS = ("NAME[:TAG][@sha256:DIGEST] as Docker writes it (debian, docker.io/library/debian:12, "
               "quay.io/org/image:tag, registry.example:5000/image@sha256:...), localhost/NAME[:TAG] for a "
               "local Podman/Docker image, oci:DIR[:TAG] or oci-archive:FILE[:TAG]")

# Docker's grammar (distribution/reference): lowercase path components joined by '/', a tag of word
# characters, a digest of exact hex.
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                   r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")
_DIGEST_FORM = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class OciArchiveRef:
    """A tar archive of an OCI image layout and, optionally, the tag to pick in it."""

    path: Path
    tag: str | None

    def __str__(self) -> str:
        return f"{OCI_ARCHIVE_PREFIX}{self.path}" + (f":{self.tag}" if self.tag else "")


@dataclass(frozen=True)
class RegistryRef:
    """An image in a registry: the API host (Docker Hub is ``registry-1.docker.io``), the repository
    (``library/debian``), the tag (``latest`` unless a digest alone was given) and an optional digest."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def is_local_daemon(self) -> bool:
        """``localhost/NAME``: an image of the local Podman or Docker daemon, not a registry."""
        return self.registry == LOCAL_DAEMON_HOST

    @property
    def display_registry(self) -> str:
        return "docker.io" if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What the manifest endpoint is asked for: the digest when there is one (it pins), else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = f"{self.display_registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> OciLayoutRef | OciArchiveRef | RegistryRef:
    """Parse any image reference a user can give. Malformed ones raise InputError (exit 2) showing the
    valid forms."""
    if text.startswith(OCI_PREFIX):
        return parse_image_ref(text)
    if text.startswith(OCI_ARCHIVE_PREFIX):
        return _parse_archive(text)
    return parse_registry_ref(text)


def _parse_archive(text: str) -> OciArchiveRef:
    rest = text[len(OCI_ARCHIVE_PREFIX):]
    path, sep, tag = rest.rpartition(":")
    if not sep or "/" in tag:
        path, tag = rest, ""
    elif not tag:
        raise _malformed(text, "ends with ':' but names no tag")
    if not path:
        raise _malformed(text, "names no archive file")
    return OciArchiveRef(Path(path), tag or None)


def parse_registry_ref(text: str) -> RegistryRef:
    """Docker's rules: an optional host (the first component when it has a '.' or a ':' or is
    ``localhost``), Docker Hub otherwise with ``library/`` for one-component names, ``:latest`` unless a
    tag or a digest is given."""
    rest = text[len(DOCKER_TRANSPORT):] if text.startswith(DOCKER_TRANSPORT) else text
    if not rest or rest != rest.strip():
        raise _malformed(text, "is empty or has spaces around it")
    name, at, digest = rest.partition("@")
    if at and not _DIGEST_FORM.match(digest):
        raise _malformed(text, "has a digest that is not sha256: followed by 64 lowercase hex digits")
    tag = ""
    head, colon, tail = name.rpartition(":")
    if colon and "/" not in tail:
        name, tag = head, tail
        if not _TAG.match(tag):
            raise _malformed(text, f"has an invalid tag {tag!r}")
    first, slash, remainder = name.partition("/")
    if slash and ("." in first or ":" in first or first == LOCAL_DAEMON_HOST):
        if not _HOST.match(first):
            raise _malformed(text, f"has an invalid registry host {first!r}")
        host, repository = first, remainder
    else:
        host, repository = DOCKER_HUB, name
    if host.lower() in DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
        if "/" not in repository:
            repository = f"library/{repository}"
    elif host == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    components = repository.split("/")
    if not repository or not all(_COMPONENT.match(c) for c in components):
        why = "has uppercase letters in its name" if repository != repository.lower() else "has an invalid name"
        raise _malformed(text, why)
    if len(repository) > 255:
        raise _malformed(text, "has a name longer than 255 characters")
    return RegistryRef(host, repository, tag or (None if digest else "latest"), digest or None)


def _malformed(text: str, why: str) -> InputError:
    return InputError(f"The image reference {text!r} {why}", hint=f"Write {VALID_FORMS}")

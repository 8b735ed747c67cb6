"""Opening an image by reference: the one place that picks the source for ``oci:``, ``oci-archive:``,
``localhost/`` and registry references (each source module imports only the interface, never this one)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .archive import OciArchiveSource
from .daemon import open_daemon_image
from .layout import OciLayoutSource
from .reference import OciArchiveRef, OciLayoutRef, parse_reference
from .registry import RegistrySource
from .source import ImageSource

if TYPE_CHECKING:
    from ..runner import RunContext


def open_image(
    ref: str,
    *,
    ctx: RunContext | None = None,
    insecure: Iterable[str] = (),
    ca_file: Path | None = None,
    cancel: threading.Event | None = None,
) -> ImageSource:
    """Open an image by reference: ``oci:DIR[:TAG]`` a layout, ``oci-archive:FILE[:TAG]`` an archive,
    ``localhost/NAME[:TAG]`` the local Podman/Docker daemon, anything else a registry (``insecure`` names
    hosts allowed over plain HTTP or unverified TLS, ``ca_file`` adds a CA to the system ones). Malformed
    references raise InputError (exit 2)."""
    parsed = parse_reference(ref)
    if isinstance(parsed, OciLayoutRef):
        return OciLayoutSource(parsed)
    if isinstance(parsed, OciArchiveRef):
        return OciArchiveSource(parsed)
    if parsed.is_local_daemon:
        return open_daemon_image(parsed, ref)
    return RegistrySource(parsed, ctx=ctx, insecure=insecure, ca_file=ca_file, cancel=cancel)

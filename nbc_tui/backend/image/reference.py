"""Image references as users write them. For now only OCI layout directories: ``oci:PATH[:TAG]``."""

from __future__ import annotations

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
    has no '/'. Anything else is refused with the list of supported forms (registry references come later).
    """
    if not text.startswith(OCI_PREFIX):
        raise InputError(
            f"Unsupported image reference {text!r}",
            hint=f"Supported for now: {SUPPORTED_FORMS}; registry references come later",
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

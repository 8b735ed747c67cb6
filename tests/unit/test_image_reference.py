"""Image references: oci:PATH[:TAG] and nothing else, for now."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbc_tui.backend.errors import InputError
from nbc_tui.backend.image.reference import OciLayoutRef, parse_image_ref


@pytest.mark.parametrize(("text", "path", "tag"), [
    ("oci:/srv/images/debian", "/srv/images/debian", None),
    ("oci:/srv/images/debian:latest", "/srv/images/debian", "latest"),
    ("oci:relative/dir:v1.2", "relative/dir", "v1.2"),
    ("oci:/odd:name/with:colons:stable", "/odd:name/with:colons", "stable"),
    ("oci:/odd:name/with:colons/dir", "/odd:name/with:colons/dir", None),
    ("oci:dir", "dir", None),
])
def test_oci_layout_references(text: str, path: str, tag: str | None) -> None:
    assert parse_image_ref(text) == OciLayoutRef(Path(path), tag)


def test_reference_round_trips_through_str() -> None:
    assert str(parse_image_ref("oci:/a/b:t")) == "oci:/a/b:t"
    assert str(parse_image_ref("oci:/a/b")) == "oci:/a/b"


@pytest.mark.parametrize("text", [
    "ghcr.io/frostyard/snow:latest",
    "localhost/myimage",
    "docker://quay.io/x/y",
    "/srv/images/debian",
])
def test_other_forms_are_refused_naming_the_supported_ones(text: str) -> None:
    with pytest.raises(InputError) as info:
        parse_image_ref(text)
    assert info.value.exit_code == 2
    assert text in info.value.message
    assert "oci:PATH" in (info.value.hint or "")
    assert "registry" in (info.value.hint or "")


@pytest.mark.parametrize("text", ["oci:", "oci::tag", "oci:/dir:"])
def test_incomplete_oci_references_are_refused(text: str) -> None:
    with pytest.raises(InputError):
        parse_image_ref(text)

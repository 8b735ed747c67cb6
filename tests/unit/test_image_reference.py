"""Image references: oci:PATH[:TAG], oci-archive:FILE[:TAG] and registry references as Docker reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbc_tui.backend.errors import InputError
from nbc_tui.backend.image.reference import (
    OciArchiveRef,
    OciLayoutRef,
    RegistryRef,
    parse_image_ref,
    parse_reference,
)


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
    assert "parse_reference" in (info.value.hint or "")


@pytest.mark.parametrize("text", ["oci:", "oci::tag", "oci:/dir:"])
def test_incomplete_oci_references_are_refused(text: str) -> None:
    with pytest.raises(InputError):
        parse_image_ref(text)


D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("text", "expected"), [
    ("debian", RegistryRef("registry-1.docker.io", "library/debian", "latest", None)),
    ("debian:12", RegistryRef("registry-1.docker.io", "library/debian", "12", None)),
    ("docker.io/debian", RegistryRef("registry-1.docker.io", "library/debian", "latest", None)),
    ("docker.io/x/y", RegistryRef("registry-1.docker.io", "x/y", "latest", None)),
    ("index.docker.io/x/y:t", RegistryRef("registry-1.docker.io", "x/y", "t", None)),
    ("frostyard/snow", RegistryRef("registry-1.docker.io", "frostyard/snow", "latest", None)),
    (f"localhost:5000/a/b@{D}", RegistryRef("localhost:5000", "a/b", None, D)),
    (f"quay.io/a/b:tag@{D}", RegistryRef("quay.io", "a/b", "tag", D)),
    ("quay.io/a/b:tag", RegistryRef("quay.io", "a/b", "tag", None)),
    ("127.0.0.1:5000/name:tag", RegistryRef("127.0.0.1:5000", "name", "tag", None)),
    ("ghcr.io/frostyard/snow:latest", RegistryRef("ghcr.io", "frostyard/snow", "latest", None)),
    ("docker://quay.io/x/y", RegistryRef("quay.io", "x/y", "latest", None)),
    ("localhost/myimage", RegistryRef("localhost", "myimage", "latest", None)),
    ("[::1]:5000/x:1", RegistryRef("[::1]:5000", "x", "1", None)),
    ("reg.example/a__b/c-d.e:v1.2_3", RegistryRef("reg.example", "a__b/c-d.e", "v1.2_3", None)),
])
def test_registry_references_follow_docker(text: str, expected: RegistryRef) -> None:
    assert parse_reference(text) == expected


def test_local_daemon_and_display() -> None:
    assert parse_reference("localhost/myimage:dev").is_local_daemon  # type: ignore[union-attr]
    assert not parse_reference("localhost:5000/myimage").is_local_daemon  # type: ignore[union-attr]
    assert str(parse_reference("debian")) == "docker.io/library/debian:latest"
    assert str(parse_reference(f"quay.io/a/b@{D}")) == f"quay.io/a/b@{D}"


@pytest.mark.parametrize(("text", "expected"), [
    ("oci-archive:/tmp/img.tar", OciArchiveRef(Path("/tmp/img.tar"), None)),
    ("oci-archive:/tmp/img.tar:v1", OciArchiveRef(Path("/tmp/img.tar"), "v1")),
    ("oci:/srv/x:v1", OciLayoutRef(Path("/srv/x"), "v1")),
])
def test_file_references(text: str, expected: object) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize("text", [
    "", " debian", "Debian", "quay.io/A/b", "debian:", "debian:-bad", "debian@sha256:abc", "a//b",
    "quay.io/", "debian@md5:" + "a" * 32, "oci-archive:", "oci-archive:/x.tar:", "bad_host:5000x/y",
])
def test_malformed_references_say_what_is_valid(text: str) -> None:
    with pytest.raises(InputError) as info:
        parse_reference(text)
    assert info.value.exit_code == 2
    assert "NAME[:TAG]" in (info.value.hint or "")

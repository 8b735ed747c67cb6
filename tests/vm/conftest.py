"""Fixtures of the VM tier: the cached Debian test image, its variants, the live ISO, and skips where the
tier cannot run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.vm.image_builder import DEFAULT_CACHE_ROOT, build_debian_image
from tests.vm.image_variants import ImageVariants
from tests.vm.image_variants import image_variants as build_variants
from tests.vm.iso_builder import LiveIso, build_iso
from tests.vm.qemu import OVMF_CODE, QEMU

CACHE_ENV = "NBC_TUI_TEST_CACHE"
"""Overrides where the built image is cached (default /var/cache/nbc-tui-tests)."""


@pytest.fixture(autouse=True)
def _vm_tier_can_run(request: pytest.FixtureRequest) -> None:
    """Building and booting need root, debootstrap, QEMU and OVMF: say which is missing instead of failing."""
    if request.node.get_closest_marker("vm") is None and request.node.get_closest_marker("root") is None:
        return
    if os.geteuid() != 0:
        pytest.skip("needs root (debootstrap, chroot, loop devices)")
    missing = [tool for tool in ("debootstrap", QEMU, "mke2fs", "tar") if shutil.which(tool) is None]
    if not OVMF_CODE.exists():
        missing.append(str(OVMF_CODE))
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: run tools/install-deps.sh")


@pytest.fixture(scope="session")
def debian_image() -> Path:
    """The OCI layout of the Debian 12 test image (``oci:<dir>:latest``), built once and cached."""
    if os.geteuid() != 0:
        pytest.skip("building the test image needs root")
    return build_debian_image(Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE_ROOT)))


@pytest.fixture(scope="session")
def image_variants(debian_image: Path) -> ImageVariants:
    """The test image as built (``latest``) and with a preloaded initramfs (``preloaded``), in one layout."""
    return build_variants(debian_image)


@pytest.fixture(scope="session")
def live_iso(image_variants: ImageVariants) -> LiveIso:
    """The live ISO with the preloaded test image staged for offline installs (built once, cached)."""
    return build_iso(stage=[image_variants.preloaded_ref])

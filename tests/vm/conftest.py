"""Fixtures of the VM tier: the cached Debian test image, its variants, the update images and their disk, the
live ISO, and skips where the tier cannot run.

Every image is built once and cached under /var/cache/nbc-tui-tests (or $NBC_TUI_TEST_CACHE):

- ``debian_image``: the base layout, tag ``latest`` (tests/vm/image_builder.py).
- ``image_variants``: ``latest`` and ``preloaded`` in one layout (tests/vm/image_variants.py).
- ``update_images``: :class:`~tests.vm.update_images.UpdateImages`, the tags ``v1`` (preloaded + nbc-tui in
  /usr/lib/nbc-tui, /usr/bin/nbc-tui and /usr/bin/nbc), ``v2`` (v1 + the system user ``nbc-v2``),
  ``v3-health`` (v1 + a check required by boot-complete.target that fails and reboots) and ``v3-noinit`` (v1
  whose init exits at once: the kernel panics right after the initramfs switches root). Host references in
  ``.refs[tag]`` (``oci:<layout>:<tag>``), manifest digests in ``.digests[tag]``, the ``version=`` each
  prints on its NBC-REPORT line in ``.versions[tag]``.
- ``images_disk``: ``update_images.disk``, an :class:`~tests.vm.update_images.ImagesDisk`: ``.path`` (raw
  ext4, give it to ``booted(disk, readonly_disks=[images_disk.path])``), and for inside the VM
  ``.mount_command`` (read-only at /mnt/images; the directory exists in every tag), ``.refs[tag]``
  (``oci:/mnt/images/layout:<tag>``), ``.device`` (/dev/vdb), ``.label`` (nbc-images).

A scenario: install ``update_images.refs["v1"]`` on the host, boot the disk with the images disk attached,
log in, ``images_disk.mount_command``, ``nbc-tui update --image images_disk.refs["v2"]``, reboot, read
``version=2`` on the NBC-REPORT line (``tests.vm.image_builder.read_report``).
"""

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
from tests.vm.update_images import ImagesDisk, UpdateImages, build_update_images

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
    return build_variants(debian_image, debian_image.parent.parent)


@pytest.fixture(scope="session")
def update_images(debian_image: Path, image_variants: ImageVariants) -> UpdateImages:
    """The update test images v1, v2, v3-health, v3-noinit in one layout, and the images disk holding them
    (see this module's docstring and tests/vm/update_images.py); rebuilt when nbc_tui/ changes (about 20 s)."""
    return build_update_images(image_variants, debian_image.parent.parent)


@pytest.fixture(scope="session")
def images_disk(update_images: UpdateImages) -> ImagesDisk:
    """The raw ext4 disk with the update images' layout, and its paths and references inside a VM."""
    return update_images.disk


@pytest.fixture(scope="session")
def live_iso(image_variants: ImageVariants) -> LiveIso:
    """The live ISO with the preloaded test image staged for offline installs (built once, cached)."""
    return build_iso(stage=[image_variants.preloaded_ref])


@pytest.fixture(scope="session")
def live_iso_with_v1(image_variants: ImageVariants, update_images: UpdateImages) -> LiveIso:
    """The live ISO with the preloaded image and the update scenarios' ``v1`` (which carries nbc-tui) staged:
    the encrypted scenario installs v1 from it, then updates the installed system from inside."""
    return build_iso(stage=[image_variants.preloaded_ref, update_images.refs["v1"]])

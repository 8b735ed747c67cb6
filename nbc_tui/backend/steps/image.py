"""The image, opened and checked whole before anything is written (install and update alike).

Every blob is verified while the scan streams it, every entry that extraction would refuse is refused here,
and the final tree must boot the slot it is meant for: a kernel with an initramfs, the etc-overlay module (or
dracut to add it), unlock support for an encrypted disk, the bootloader asked for, and room in the slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..engine import StepContext
from ..errors import InputError
from ..image.cache import CachedImage, CacheKind, find_cached
from ..image.opener import open_image
from ..image.scan import ImageInventory, scan_image
from ..image.source import ImageSource
from ..osrelease import os_name
from ..plan import Bootloader, ImageSpec
from ..sizes import human
from ..system.initramfs_needs import image_tpm2_problem, initramfs_gaps, unlock_support_problem

ROOT_HEADROOM = 1.15
"""Room over the image's own size that a root slot must have (filesystem metadata, a new initramfs)."""


@dataclass(frozen=True)
class SlotNeeds:
    """What the slot being written asks of the image."""

    encrypted: bool
    tpm2: bool
    bootloader: Bootloader
    slot_size: int
    """Bytes of the root slot the image goes into."""


@dataclass(frozen=True)
class CheckedImage:
    """An image that was opened, verified whole and found to boot the slot (what preflight hands on)."""

    ref: str
    source: ImageSource
    inventory: ImageInventory
    staged: CachedImage | None
    """The staged cache entry it comes from, for offline installs."""

    @property
    def kernel_version(self) -> str:
        return self.inventory.boot_kernel

    @property
    def needed_bytes(self) -> int:
        """What the extracted image takes in a slot, with headroom."""
        return int(self.inventory.uncompressed_bytes * ROOT_HEADROOM)

    @property
    def recorded_digest(self) -> str:
        """What the installed system records and an update compares with the registry: the index digest of a
        multi-platform image, else the manifest's."""
        if self.staged is not None:
            return self.staged.index_digest or self.staged.image_digest
        return self.source.index_digest or self.source.manifest_digest


def open_checked_image(spec: ImageSpec, needs: SlotNeeds, io: StepContext) -> CheckedImage:
    """Open the image (a staged entry or any reference), scan it with progress, and check it; the source is
    closed by the run's cleanup stack (a daemon's spooled export is removed then)."""
    io.message(f"Image: {spec.ref}")
    staged = find_cached(CacheKind.INSTALL, spec.staged_digest) if spec.staged_digest else None
    source = staged.open_source() if staged is not None else open_image(spec.ref)
    io.stack.callback(source.close)
    io.message(f"Digest: {source.manifest_digest}", verbose=True)
    inventory = scan_image(source, on_progress=io.progress("Checking image"), cancel=io.ctx.cancel)
    image = CheckedImage(spec.ref, source, inventory, staged)
    check_image(image, needs)
    io.message(f"Operating system: {os_name(inventory.os_release)}, kernel {image.kernel_version}")
    return image


def check_image(image: CheckedImage, needs: SlotNeeds) -> None:
    """Refuse (InputError, nothing written) an image that cannot boot the slot."""
    inv, ref = image.inventory, image.ref
    if not inv.kernels:
        raise InputError(f"the image {ref} has no kernel",
                         hint="a bootable image carries /usr/lib/modules/<version>/vmlinuz")
    kver = image.kernel_version
    if not any(k.initramfs for k in inv.kernels if k.version == kver):
        raise InputError(f"the image {ref} has no initramfs for kernel {kver}",
                         hint=f"a bootable image carries /usr/lib/modules/{kver}/initramfs.img")
    if not inv.initramfs_has_etc_overlay.get(kver) and not inv.has_dracut:
        raise InputError(
            f"the image {ref} cannot mount /etc as an overlay: its initramfs lacks the etc-overlay module "
            "and it has no dracut to add it", hint="install dracut in the image")
    if needs.encrypted:
        check_unlock_support(inv, needs)
    if needs.bootloader == "systemd-boot" and not inv.has_systemd_boot_efi:
        raise InputError(f"the image {ref} has no systemd-boot EFI binary",
                         hint="choose --bootloader grub, or add systemd-boot (systemd-boot-efi) to the image")
    if image.needed_bytes > needs.slot_size:
        raise InputError(
            f"the image needs about {human(image.needed_bytes)} but a root slot is {human(needs.slot_size)}",
            hint="give a larger --root-size")


def check_unlock_support(inventory: ImageInventory, needs: SlotNeeds) -> None:
    """Refuse an image that cannot unlock its encrypted root at boot (or, with TPM2, reach the TPM), judged on
    the scan's inventory. The shipped initramfs counts only when it is kept (it lacks nothing the slot needs);
    otherwise what boots is the one dracut rebuilds from the image."""
    members = inventory.initramfs_members.get(inventory.boot_kernel, frozenset())
    gaps = initramfs_gaps(members, encrypted=needs.encrypted, tpm2=needs.tpm2)
    shipped = None if gaps else members
    problems = [unlock_support_problem(inventory.exists, inventory.matches, initramfs_members=shipped)]
    if needs.tpm2:
        problems.append(image_tpm2_problem(inventory.exists, inventory.matches, initramfs_members=shipped))
    problem = "; ".join(p for p in problems if p)
    if problem and gaps:
        problem += f" (its initramfs must be rebuilt: it lacks {' and '.join(gaps)})"
    if not problem and gaps and not inventory.has_dracut:
        problem = f"its initramfs lacks {' and '.join(gaps)}, and the image has no dracut to rebuild it"
    if problem:
        raise InputError(f"the image cannot boot an encrypted disk: {problem}",
                         hint="add cryptsetup (and for TPM2 tpm2-tools and libtss2) to the image, or install "
                              "without encryption")

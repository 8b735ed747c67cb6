"""The image, opened and checked whole before anything is written (install and update alike).

Every blob is verified while the scan streams it, every entry that extraction would refuse is refused here,
and the final tree must boot the slot it is meant for: a kernel with an initramfs, the etc-overlay module (or
dracut to add it), unlock support for an encrypted disk, the bootloader asked for, and room in the slot.

Each check reports a typed :class:`ImageProblem` instead of raising, over :class:`ImageFacts` (what the scan's
inventory knows, or a real root directory answers), so `lint` runs these very checks; :func:`check_image`
raises the first problem that refuses the install.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from ..boot.secure_boot import ChainFacts, secure_boot_gaps, signed_chain
from ..engine import StepContext
from ..errors import InputError
from ..image.cache import CachedImage, CacheKind, find_cached, recorded_digest
from ..image.opener import open_image
from ..image.scan import ImageInventory, KernelInfo, scan_image
from ..image.source import ImageSource
from ..image.spool import SpooledSource, make_spool, spool_problem
from ..osrelease import os_name
from ..plan import Bootloader, ImageSpec, SecureBootMode
from ..provenance import Verification
from ..sizes import MiB, human, short_size
from ..system.dracut import HOOK_SCRIPT
from ..system.initramfs import names_contain
from ..system.initramfs_hook import append_blocker
from ..system.initramfs_needs import (
    ETC_OVERLAY_GAP,
    image_tpm2_problem,
    initramfs_gaps,
    unlock_support_problem,
)
from ..trust.verify import TrustSettings, verify_opened

ROOT_HEADROOM = 1.15
"""Room over the image's own size that a root slot must have (filesystem metadata, a new initramfs)."""


@dataclass(frozen=True)
class SlotNeeds:
    """What the slot being written asks of the image."""

    encrypted: bool
    tpm2: bool
    bootloader: Bootloader | None
    """The bootloader the install puts on the ESP; None for an update, which keeps the installed one."""
    slot_size: int
    """Bytes of the root slot the image goes into."""
    bigger_slot_hint: str = "give a larger --root-size"
    """What to do when the image does not fit."""
    secure_boot: SecureBootMode = "off"
    """Whether the image must boot with Secure Boot on (``require``), or is warned about (``auto``)."""
    machine_secure_boot: bool | None = None
    """Whether this machine boots with Secure Boot on (None: not known, not UEFI)."""
    esp_size: int | None = None
    """Bytes of the ESP that will hold both slots' kernel files (an install); None: not checked (an update, lint)."""


class ImageFacts(ChainFacts, Protocol):
    """What the image checks read of a final tree: the pre-install scan's
    :class:`~nbc_tui.backend.image.scan.ImageInventory` for an image, or a real root directory (lint --local).
    Paths are relative to the tree's root, symlinks followed inside it. What it ships of the Secure Boot chain
    comes from :class:`~nbc_tui.backend.boot.secure_boot.ChainFacts`."""

    @property
    def kernels(self) -> Sequence[KernelInfo]:
        """Newest version first (the first one boots)."""
        ...

    @property
    def initramfs_members(self) -> Mapping[str, frozenset[str]]:
        """Per kernel version: the member names of its initramfs (empty when it has none)."""
        ...

    @property
    def has_dracut(self) -> bool: ...

    @property
    def has_systemd_boot_efi(self) -> bool: ...

    @property
    def has_grub_efi_modules(self) -> bool: ...

    def exists(self, path: str) -> bool: ...

    def matches(self, glob: str) -> bool: ...


class ImageCheck(StrEnum):
    """The image checks, by the id lint reports them under."""

    KERNEL = "kernel"
    INITRAMFS = "initramfs"
    ETC_OVERLAY = "etc-overlay"
    UNLOCK = "unlock-support"
    BOOTLOADER = "bootloader"
    SECURE_BOOT = "secure-boot"
    ROOM = "slot-size"
    ESP_ROOM = "esp-size"


@dataclass(frozen=True)
class ImageProblem:
    """One finding of an image check: a reason the install refuses the image (``refuses``), or a fact it
    works around and lint warns about."""

    check: ImageCheck
    message: str
    """A whole sentence, the InputError's message when it refuses."""
    hint: str
    path: str | None = None
    """The path in the image it concerns, absolute (``/usr/lib/modules``), when there is one."""
    refuses: bool = True

    def error(self) -> InputError:
        return InputError(self.message, hint=self.hint)


@dataclass(frozen=True)
class CheckedImage:
    """An image that was opened, verified whole and found to boot the slot (what preflight hands on)."""

    ref: str
    source: ImageSource
    inventory: ImageInventory
    staged: CachedImage | None
    """The staged cache entry it comes from, for offline installs."""
    verification: Verification
    """Whether and by what its signatures were verified (recorded on the installed system)."""

    @property
    def kernel_version(self) -> str:
        return self.inventory.boot_kernel

    @property
    def needed_bytes(self) -> int:
        """What the extracted image takes in a slot, with headroom."""
        return int(self.inventory.uncompressed_bytes * ROOT_HEADROOM)

    @property
    def recorded_digest(self) -> str:
        """What the installed system records and an update compares with the registry."""
        return recorded_digest(self.source, self.staged)


def open_checked_image(spec: ImageSpec, needs: SlotNeeds, io: StepContext) -> CheckedImage:
    """Open the image (a staged entry or any reference), scan it with progress, and check it; the source is
    closed by the run's cleanup stack (a daemon's spooled export is removed then)."""
    io.message(f"Image: {spec.ref}")
    staged = find_cached(CacheKind.INSTALL, spec.staged_digest) if spec.staged_digest else None
    source = staged.open_source() if staged is not None else open_image(spec.ref)
    io.stack.callback(source.close)
    verification = verified(source, staged, TrustSettings.from_spec(spec), io)
    return check_opened_image(spec.ref, source, staged, needs, io, verification=verification)


def verified(source: ImageSource, staged: CachedImage | None, settings: TrustSettings,
             io: StepContext) -> Verification:
    """The image's signatures checked as ``settings`` say, before any layer is read (trust/verify.py);
    UntrustedImage refuses it."""
    verification = verify_opened(source, staged, settings, ctx=io.ctx, warn=io.warn)
    io.message(f"Signature: {verification.describe()}")
    return verification


def check_opened_image(ref: str, source: ImageSource, staged: CachedImage | None, needs: SlotNeeds,
                       io: StepContext, *, verification: Verification) -> CheckedImage:
    """Scan an opened image with progress (every blob verified) and check it for the slot."""
    io.message(f"Digest: {source.manifest_digest}", verbose=True)
    source = fetched_once(source, io)
    inventory = scan_image(source, on_progress=io.progress("Checking image"), cancel=io.ctx.cancel)
    image = CheckedImage(ref, source, inventory, staged, verification)
    check_image(image, needs)
    for problem in image_problems(image, needs):
        if problem.check == ImageCheck.SECURE_BOOT:
            io.warn(f"{problem.message} ({problem.hint})")
    io.message(f"Operating system: {os_name(inventory.os_release)}, kernel {image.kernel_version}")
    return image


def fetched_once(source: ImageSource, io: StepContext) -> ImageSource:
    """A remote image whose blobs the scan keeps in a spool for the extraction (image/spool.py), when there is
    room for them; otherwise the image itself, read twice, as the message says."""
    if not source.remote or io.ctx.dry_run:
        return source
    problem = spool_problem(source.compressed_size)
    if problem is not None:
        io.message(f"The image's layers will be downloaded twice, to check and to extract them: {problem}")
        return source
    spooled = SpooledSource(source, make_spool())
    io.stack.callback(spooled.close)
    io.message(f"Layers checked are kept in {spooled.directory} for the extraction (each downloaded once)",
               verbose=True)
    return spooled


def check_image(image: CheckedImage, needs: SlotNeeds) -> None:
    """Refuse (InputError, nothing written) an image that cannot boot the slot: the first problem that refuses."""
    refusal = next((p for p in image_problems(image, needs) if p.refuses), None)
    if refusal is not None:
        raise refusal.error()


def image_problems(image: CheckedImage, needs: SlotNeeds) -> list[ImageProblem]:
    """Every problem of the image for this slot, in the order the install reports them."""
    facts, what = image.inventory, f"the image {image.ref}"
    problems = boot_file_problems(facts, what=what)
    if needs.encrypted:
        problems += _present(unlock_problem(facts, tpm2=needs.tpm2))
    if needs.bootloader is not None:
        problems += _present(bootloader_problem(facts, needs.bootloader, what=what))
    problems += _present(secure_boot_problem(facts, needs, what=what))
    problems += _present(room_problem(image, needs))
    problems += _present(esp_room_problem(image.inventory, needs))
    return problems


def boot_file_problems(facts: ImageFacts, *, what: str) -> list[ImageProblem]:
    """The kernel, its initramfs, and the etc-overlay capability (the hook in that initramfs, or dracut to add
    it). ``what`` names the tree in the messages ("the image REF"). The last two need a kernel to ask about."""
    if not facts.kernels:
        return [ImageProblem(ImageCheck.KERNEL, f"{what} has no kernel",
                             "a bootable image carries /usr/lib/modules/<version>/vmlinuz", path="/usr/lib/modules")]
    kernel = facts.kernels[0]
    kver = kernel.version
    if not any(k.initramfs for k in facts.kernels if k.version == kver):
        return [ImageProblem(ImageCheck.INITRAMFS, f"{what} has no initramfs for kernel {kver}",
                             f"a bootable image carries /usr/lib/modules/{kver}/initramfs.img",
                             path=f"/usr/lib/modules/{kver}")]
    members = facts.initramfs_members.get(kver, frozenset())
    if not names_contain(members, HOOK_SCRIPT) and not facts.has_dracut:
        blocker = append_blocker(members, kver)
        if blocker is not None:
            return [ImageProblem(
                ImageCheck.ETC_OVERLAY,
                f"{what} cannot mount /etc as an overlay: its initramfs lacks the etc-overlay module, cannot "
                f"take it as an added archive ({blocker}), and the image has no dracut to rebuild it",
                "install dracut in the image", path=f"/{kernel.initramfs}")]
    return []


def unlock_problem(facts: ImageFacts, *, tpm2: bool) -> ImageProblem | None:
    """Why the image cannot unlock its encrypted root at boot (or, with TPM2, reach the TPM), or None. The
    shipped initramfs counts when it is kept (it lacks nothing the slot needs, or only the etc-overlay hook,
    which is appended to it); otherwise what boots is the one dracut rebuilds from the image."""
    kver = facts.kernels[0].version if facts.kernels else ""
    members = facts.initramfs_members.get(kver, frozenset())
    gaps = initramfs_gaps(members, encrypted=True, tpm2=tpm2)
    kept = initramfs_kept(facts, encrypted=True, tpm2=tpm2)
    shipped = members if kept else None
    problems = [unlock_support_problem(facts.exists, facts.matches, initramfs_members=shipped)]
    if tpm2:
        problems.append(image_tpm2_problem(facts.exists, facts.matches, initramfs_members=shipped))
    problem = "; ".join(p for p in problems if p)
    if problem and not kept:
        problem += f" (its initramfs must be rebuilt: it lacks {' and '.join(gaps)})"
    if not problem and not kept and not facts.has_dracut:
        problem = f"its initramfs lacks {' and '.join(gaps)}, and the image has no dracut to rebuild it"
    if not problem:
        return None
    return ImageProblem(ImageCheck.UNLOCK, f"the image cannot boot an encrypted disk: {problem}",
                        "add cryptsetup (and for TPM2 tpm2-tools and libtss2) to the image, or install "
                        "without encryption")


def check_unlock_support(inventory: ImageFacts, needs: SlotNeeds) -> None:
    """Refuse an image that cannot unlock its encrypted root at boot (see :func:`unlock_problem`)."""
    problem = unlock_problem(inventory, tpm2=needs.tpm2)
    if problem is not None:
        raise problem.error()


def bootloader_problem(facts: ImageFacts, choice: Bootloader, *, what: str) -> ImageProblem | None:
    """systemd-boot asked for and missing refuses; GRUB chosen (or fallen back to) without the image's own
    x86_64-efi modules is built from the installing machine's modules, which only a warning says."""
    if choice == "systemd-boot":
        if facts.has_systemd_boot_efi:
            return None
        return ImageProblem(ImageCheck.BOOTLOADER, f"{what} has no systemd-boot EFI binary",
                            "choose --bootloader grub, or add systemd-boot (systemd-boot-efi) to the image")
    if facts.has_grub_efi_modules or (choice == "auto" and facts.has_systemd_boot_efi):
        return None
    has = "no GRUB x86_64-efi modules" if choice == "grub" else (
        "neither a systemd-boot EFI binary nor GRUB x86_64-efi modules")
    return ImageProblem(
        ImageCheck.BOOTLOADER,
        f"{what} has {has}: the install falls back to the installing machine's GRUB (and fails on a machine "
        "without grub-mkimage and x86_64-efi modules)",
        "add systemd-boot (systemd-boot-efi) or GRUB's EFI modules (grub-efi-amd64-bin) to the image",
        refuses=False)


def secure_boot_problem(facts: ImageFacts, needs: SlotNeeds, *, what: str) -> ImageProblem | None:
    """``require``: an image that cannot boot with Secure Boot on is refused. ``auto``: on a machine that has
    it on, the same is a warning (the disk would be refused by this machine's firmware). An update keeps the
    installed bootloader, so only the kernel is asked about then."""
    if needs.secure_boot == "off" or (needs.secure_boot == "auto" and needs.machine_secure_boot is not True):
        return None
    gaps = secure_boot_gaps(signed_chain(facts), needs.bootloader)
    if not gaps:
        return None
    reasons = "; ".join(gaps)
    if needs.secure_boot == "require":
        return ImageProblem(ImageCheck.SECURE_BOOT, f"{what} cannot boot with Secure Boot on: {reasons}",
                            "use an image that ships the signed chain (shim, a signed GRUB, a signed kernel), or "
                            "--secure-boot auto")
    return ImageProblem(
        ImageCheck.SECURE_BOOT,
        f"This machine boots with Secure Boot on, and {what} cannot: {reasons}",
        "the installed system will not start until Secure Boot is turned off in the firmware setup; "
        "--secure-boot require refuses such an image", refuses=False)


def room_problem(image: CheckedImage, needs: SlotNeeds) -> ImageProblem | None:
    """The extracted image, with headroom, must fit the root slot."""
    if image.needed_bytes <= needs.slot_size:
        return None
    return ImageProblem(
        ImageCheck.ROOM,
        f"the image needs about {human(image.needed_bytes)} but a root slot is {human(needs.slot_size)}",
        needs.bigger_slot_hint)


ESP_LOADER_ROOM = 16 * MiB
"""What the ESP holds besides the slots' kernel files: the loader (shim, GRUB or systemd-boot), its
configuration, and FAT's own tables, with room to spare."""


def esp_room_problem(facts: ImageFacts, needs: SlotNeeds) -> ImageProblem | None:
    """The ESP must hold each slot's kernel and initramfs (an update writes the other slot's next to the
    running one's): the image's own, or a dracut rebuild estimated at twice its size (a generic image, a fast
    compressor)."""
    if needs.esp_size is None or not facts.kernels:
        return None
    kernel = facts.kernels[0]
    kept = initramfs_kept(facts, encrypted=needs.encrypted, tpm2=needs.tpm2)
    initramfs = kernel.initramfs_size * (1 if kept else 2)
    per_slot = kernel.vmlinuz_size + initramfs
    needed = 2 * per_slot + ESP_LOADER_ROOM
    if needed <= needs.esp_size:
        return None
    return ImageProblem(
        ImageCheck.ESP_ROOM,
        f"the ESP ({human(needs.esp_size)}) is too small for the image's kernel files: each slot's kernel and "
        f"initramfs take about {human(per_slot)} on it, about {human(needed)} for both slots and the loader",
        f"give a larger ESP (--esp-size {short_size(needed)} or more; nbc's default is 2G)")


def initramfs_kept(facts: ImageFacts, *, encrypted: bool, tpm2: bool) -> bool:
    """Whether the slot boots the image's own initramfs (as it is, or with the etc-overlay hook appended), as
    the initramfs step decides (steps/slot.build_initramfs); else dracut rebuilds it."""
    kver = facts.kernels[0].version if facts.kernels else ""
    members = facts.initramfs_members.get(kver, frozenset())
    gaps = initramfs_gaps(members, encrypted=encrypted, tpm2=tpm2)
    return not gaps or (gaps == [ETC_OVERLAY_GAP] and append_blocker(members, kver) is None)


def _present(problem: ImageProblem | None) -> list[ImageProblem]:
    return [] if problem is None else [problem]

"""What an image is, in words people read: a typed reference described, and an image looked up (OS, version,
architecture, size, digest, whether its signatures verified, whether it boots with Secure Boot, the time zones
and console keymaps it ships) by opening and scanning it, or from a staged entry's metadata. Above image/,
boot/, trust/ and system/: it speaks for all four."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from .boot.secure_boot import machine_secure_boot, secure_boot_gaps, signed_chain
from .image.cache import CachedImage
from .image.opener import open_image
from .image.reference import OciArchiveRef, OciLayoutRef, parse_reference
from .image.scan import ImageInventory, scan_image
from .provenance import Verification
from .runner import RunContext
from .sizes import human
from .system import identity
from .trust.verify import TrustSettings, verify_pull


@dataclass(frozen=True)
class ImageFacts:
    """What a look-up found, in the words the review shows."""

    ref: str
    os_name: str
    version: str
    architecture: str
    size: int
    """Uncompressed bytes of the image's files."""
    compressed_size: int
    digest: str
    staged_digest: str | None = None
    """Set when the image comes from the staged-install cache (an offline install)."""
    secure_boot_gaps: tuple[str, ...] | None = None
    """What the image lacks to boot with Secure Boot on (empty: nothing); None when not looked at (staged)."""
    machine_secure_boot: bool | None = None
    """Whether this machine boots with Secure Boot on (None: not known)."""
    verification: Verification | None = None
    """Whether and by what its signatures verified (the install checks them again); None: not recorded."""
    trust_warnings: tuple[str, ...] = ()
    """What the check warned about (an image the policy accepts unsigned)."""
    time_zones: tuple[str, ...] = ()
    """The time zones the image ships (``Europe/Berlin``), sorted; empty when it ships none or it is not known
    (a staged image: its metadata does not list them)."""
    keymaps: tuple[str, ...] = ()
    """The console keymaps the image ships (``de-latin1``), sorted; empty as for :attr:`time_zones`."""

    def summary(self) -> str:
        staged = " (staged, offline)" if self.staged_digest else ""
        lines = [f"{self.os_name}" + (f", version {self.version}" if self.version else "") + staged,
                 f"Architecture {self.architecture or 'unknown'}, {human(self.size)} of files"
                 + (f" ({human(self.compressed_size)} to fetch)" if self.compressed_size else ""),
                 f"Digest {self.digest}",
                 "Signature: " + (self.verification.describe() if self.verification else "(not recorded)")]
        lines += [f"Warning: {w}" for w in self.trust_warnings]
        if self.secure_boot_gaps is not None:
            lines.append(secure_boot_words(self.secure_boot_gaps, self.machine_secure_boot))
        return "\n".join(lines)


def secure_boot_words(gaps: tuple[str, ...], machine_on: bool | None) -> str:
    """The image against Secure Boot, in the words of the install's own warning when this machine has it on."""
    if not gaps:
        return "Secure Boot: can boot with it on (shim, a signed loader, a signed kernel)"
    if machine_on:
        return (f"Warning: this machine boots with Secure Boot on, and the image cannot: {'; '.join(gaps)}. "
                "The installed system will not start until Secure Boot is turned off in the firmware setup.")
    return f"Secure Boot: cannot boot with it on ({'; '.join(gaps)})"


def describe_reference(text: str) -> str:
    """What a typed reference names, in words. Raises InputError for a malformed one."""
    parsed = parse_reference(text)
    if isinstance(parsed, OciLayoutRef):
        return f"An OCI image layout directory: {parsed.path}" + (f", tag {parsed.tag}" if parsed.tag else "")
    if isinstance(parsed, OciArchiveRef):
        return f"An OCI archive file: {parsed.path}" + (f", tag {parsed.tag}" if parsed.tag else "")
    if parsed.is_local_daemon:
        return f"An image of the local Podman or Docker daemon: {parsed}"
    return (f"A registry image: {parsed}. Looking it up reads the whole image once to check it "
            "(for a registry that is a full download).")


def look_up_image(ref: str, *, cancel: threading.Event | None = None,
                  on_progress: Callable[[int, int], None] | None = None) -> ImageFacts:
    """Open the image, check its signatures as the install will (the signature policy; UntrustedImage refuses
    it) and scan it (every layer verified): what it is and how big. Blocking."""
    with open_image(ref, cancel=cancel) as source:
        warnings: list[str] = []
        verification = verify_pull(source, TrustSettings(), ctx=RunContext(), warn=warnings.append)
        inventory = scan_image(source, on_progress=on_progress, cancel=cancel)
        release = inventory.os_release
        return ImageFacts(
            ref=ref,
            os_name=release.get("PRETTY_NAME") or release.get("NAME") or "An unnamed Linux system",
            version=release.get("VERSION_ID", ""),
            architecture=str(source.config.get("architecture") or ""),
            size=inventory.uncompressed_bytes,
            compressed_size=source.compressed_size,
            digest=source.manifest_digest,
            secure_boot_gaps=tuple(secure_boot_gaps(signed_chain(inventory), "auto")),
            machine_secure_boot=machine_secure_boot(),
            verification=verification,
            trust_warnings=tuple(warnings),
            time_zones=image_time_zones(inventory),
            keymaps=image_keymaps(inventory),
        )


def image_time_zones(inventory: ImageInventory) -> tuple[str, ...]:
    """The zones of the scan's zoneinfo listing, sorted."""
    return tuple(sorted(identity.zone_names(p for g in identity.ZONE_GLOBS for p in inventory.matching(g))))


def image_keymaps(inventory: ImageInventory) -> tuple[str, ...]:
    """The console keymaps of the scan's keymap listing, by name (``de-latin1``)."""
    return tuple(sorted(identity.keymap_names(p for g in identity.KEYMAP_GLOBS for p in inventory.matching(g))))


def staged_facts(entry: CachedImage) -> ImageFacts:
    """A staged entry's facts come from its metadata: no scan needed (it was checked when staged)."""
    return ImageFacts(
        ref=entry.image_ref, os_name=entry.os_release_pretty_name or entry.image_ref,
        version=entry.os_release_version_id, architecture=entry.architecture, size=entry.size_bytes,
        compressed_size=entry.compressed_size_bytes or 0, digest=entry.image_digest,
        staged_digest=entry.image_digest, verification=entry.verification)

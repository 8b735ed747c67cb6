"""Which image an update goes to, and whether it is needed: the staged update or the image named (by
``--image``, else the installed system's), opened; and the verdict on it, from the per-slot records."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..boot.entries import EntryState
from ..engine import StepContext
from ..errors import InputError
from ..image.cache import CachedImage, CacheKind, cache_dir, recorded_digest, single_staged
from ..image.opener import open_image
from ..image.source import ImageSource
from ..installed import InstalledSystem
from ..system.slots import Slot
from ..system.state import SystemConfig

NO_UPDATE_NEEDED = "No update needed - system is already running the latest version."
"""nbc's words (reference §13.3), which scripts may match."""


class StagedUse(StrEnum):
    """Whether the image comes from the staged-update cache (``nbc-tui download --for-update``)."""

    NEVER = "never"
    """``--image`` or the installed system's image, from where it lives."""
    ONLY = "only"
    """``--local-image``: the staged update; an error when there is none."""
    FIRST = "first"
    """``--auto``: the staged update when there is one, else the image from where it lives."""


@dataclass(frozen=True)
class ChosenImage:
    """The image the update goes to, opened (manifest read, no layer yet)."""

    ref: str
    source: ImageSource
    staged: CachedImage | None

    @property
    def digests(self) -> set[str]:
        """Every digest that names it: the manifest's, and the index's for a multi-platform image."""
        found = {self.source.manifest_digest, self.source.index_digest}
        if self.staged is not None:
            found |= {self.staged.image_digest, self.staged.index_digest}
        return {d for d in found if d}

    @property
    def digest(self) -> str:
        """What the installed system records and an update compares with (image/cache.recorded_digest)."""
        return recorded_digest(self.source, self.staged)


@dataclass(frozen=True)
class Verdict:
    """Whether an update is needed, in words (``--check`` prints it, the update acts on it)."""

    needed: bool
    message: str
    current_digest: str
    refused: bool = False
    """An update needs --force: the image failed to boot from the target slot before, or the slot that runs is
    on trial itself (the target is the last slot known to boot)."""
    hint: str = "fix the image, or run again with --force to try it again"
    """What to do about a refusal."""
    waiting: bool = False
    """The target slot holds the image and boots next already (on trial, or after a rollback): a reboot starts
    it."""


def choose_image(image: str | None, use: StagedUse, config: SystemConfig, io: StepContext) -> ChosenImage:
    """The staged update (as ``use`` says) or ``image`` (else the installed system's), opened; the source is
    closed by the run's cleanup stack."""
    staged = None
    if use is not StagedUse.NEVER:
        staged = single_staged(CacheKind.UPDATE)
        if staged is None and use is StagedUse.ONLY:
            raise InputError(f"no staged update found in {cache_dir(CacheKind.UPDATE)}",
                             hint="stage one with: nbc-tui download --for-update (or run without --local-image)")
    if staged is not None:
        io.message(f"Using the staged update: {staged.image_ref} ({staged.image_digest[:19]}...)")
        source: ImageSource = staged.open_source()
        ref = staged.image_ref
    else:
        ref = image or config.image_ref
        if image is None:
            io.message(f"Using image from system config: {ref}")
        source = open_image(ref)
    io.stack.callback(source.close)
    return ChosenImage(ref, source, staged)


def judge(system: InstalledSystem, current: Slot, image: ChosenImage) -> Verdict:
    """Needed unless the current slot runs the image, or the target slot holds it and boots next already (on
    trial after an update, or good after a rollback); refused when the target slot held it and it never booted
    to the end (the loader gave up on it), or when the current slot runs on trial (not yet marked good): the
    target is then the last slot known to boot, and an update would overwrite it."""
    # The current slot's record; a disk nbc wrote has none, and its config.json names the image that runs.
    has = system.record(current) or system.config
    running = has.digests
    current_digest = has.image_digest
    if running & image.digests:
        return Verdict(False, NO_UPDATE_NEEDED, current_digest)
    target = current.other
    held = system.record(target)
    item = system.menu.item(target)
    if held is not None and held.digests & image.digests and item is not None:
        if item.state is EntryState.BAD:
            return Verdict(False, f"{image.ref} ({image.digest[:19]}...) failed to boot from slot {target.value}: "
                                  f"the loader gave up on it and went back to slot {current.value}",
                           current_digest, refused=True)
        if item.state is EntryState.TRIAL:
            return Verdict(False, f"Slot {target.value} already holds {image.ref}, on trial: reboot to start it",
                           current_digest, waiting=True)
        if system.default_slot is target:  # a rollback made it the default, and the system has not rebooted
            return Verdict(False, f"Slot {target.value} already holds {image.ref} and boots next: reboot to "
                                  "start it", current_digest, waiting=True)
    running_item = system.menu.item(current)
    if running_item is not None and running_item.state is EntryState.TRIAL:
        return Verdict(False, f"Slot {current.value} runs on trial: it has not been marked good yet (its boot has "
                              f"not reached boot-complete.target), and an update would overwrite slot "
                              f"{target.value}, the last slot known to boot", current_digest, refused=True,
                       hint=f"wait until the boot completes (systemctl status boot-complete.target) or roll back "
                            f"to slot {target.value}; --force updates anyway")
    return Verdict(True, "Update available", current_digest)

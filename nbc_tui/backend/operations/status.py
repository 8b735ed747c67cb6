"""The installed system's status: nbc's fields (reference §1.4, §14.4) and both root slots, each with its image,
kernel, when it was written, its state in boot assessment, whether it runs and whether it boots next; whether
the last boot fell back; the staged update; a reboot pending.

Reading only: the state on var, the boot menu on the ESP, /run's marker. Optionally the registry (``check``):
the digest the image's reference names now, and whether an update would take it (update_image.judge, then
its signatures).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from ..boot.entries import EntryState
from ..engine import Step, StepContext, When, run_steps
from ..errors import Cancelled, NbcError
from ..events import CompleteEvent, Emit
from ..image.cache import CachedImage, CacheKind, single_staged
from ..image.opener import open_image
from ..installed import InstalledSystem, other_disk, running_system
from ..runner import RunContext
from ..system.slots import Slot
from ..system.state import REBOOT_MARKER, RebootMarker, SlotRecord, SystemConfig
from ..trust.verify import TrustSettings, UntrustedImage, settings_for_update, verify_pull
from .update_image import ChosenImage, Verdict, judge


class SlotState(StrEnum):
    GOOD = "good"
    """Boots, and booted to boot-complete.target (or was installed or rolled back to)."""
    TRIAL = "trial"
    """Written by an update, not yet booted to the end: the loader counts its tries."""
    BAD = "bad"
    """Out of tries: the loader gave up on it and boots the other slot."""
    INCOMPLETE = "incomplete"
    """Recorded but without a boot entry: an update that was cut short (the entry goes in last)."""
    EMPTY = "empty"
    """Holds nothing that boots: never written (slot B until the first update), or being written."""


@dataclass(frozen=True)
class SlotStatus:
    slot: Slot
    partition: str
    state: SlotState
    tries_left: int | None
    running: bool
    boots_next: bool
    record: SlotRecord | None
    """What the install or update that wrote it recorded; None on a disk nbc wrote (see image_ref)."""
    image_ref: str | None
    image_digest: str | None
    kernel: str | None
    written: str | None
    """When the slot was written (install or update), local time with offset."""
    operation: str | None

    @property
    def label(self) -> str:
        """nbc's words: ``A (root1)``."""
        return f"{self.slot.value} ({self.slot.role})"


@dataclass(frozen=True)
class UpdateCheckResult:
    """nbc's ``update_check``: what the image's reference names now."""

    available: bool
    remote_digest: str | None
    current_digest: str | None
    error: str | None = None
    """Why there is no update to take: the update would refuse the image (``refused``), or the check could not
    be made (a registry down)."""
    refused: bool = False
    note: str | None = None
    """Why there is none when the update would find nothing to do for another reason than an image the system
    runs already (the other slot holds it on trial). Said in words only: nbc's JSON has no such key."""


@dataclass(frozen=True)
class SystemStatus:
    config: SystemConfig
    device: str
    running: bool
    """Read from the system that runs (else a disk given with --device)."""
    active_root: str | None
    booted: Slot | None
    root_mount_mode: str | None
    bootloader: str
    slots: tuple[SlotStatus, ...]
    fell_back: bool
    """The slot that boots by default was given up by the loader, which booted the other one instead."""
    staged_update: CachedImage | None
    staged_ready: bool
    """``update --auto`` would apply the staged update (update_image.judge)."""
    staged_note: str | None
    """Why the staged update is not ready, unless it is the image the system runs."""
    reboot_pending: RebootMarker | None
    update_check: UpdateCheckResult | None

    def slot(self, slot: Slot) -> SlotStatus:
        return next(s for s in self.slots if s.slot is slot)


def read_status(*, ctx: RunContext, emit: Emit, device: Path | None = None, check: bool = False) -> SystemStatus:
    """The status of the running system (or of the nbc disk ``device``); ``check`` also asks where the image
    lives for its digest now. Raises InputError when the system is not managed by nbc or nbc-tui."""
    found: list[SystemStatus] = []

    def read(_state: None, io: StepContext) -> None:
        system = other_disk(device, io) if device is not None else running_system(io)
        found.append(_status(system, io, check=check))

    run_steps([Step("status", "Reading the system's state", read, when=When.ALWAYS)], None,
              ctx=_reading(ctx), emit=emit, failed="failed to read system status",
              interrupted=Cancelled("Interrupted"), complete=lambda _s, _t: CompleteEvent(message=""))
    return found[0]


def _reading(ctx: RunContext) -> RunContext:
    """Status writes nothing: run as a dry run (a disk given with --device is then mounted read-only)."""
    return replace(ctx, dry_run=True)


def _status(system: InstalledSystem, io: StepContext, *, check: bool) -> SystemStatus:
    default = system.default_slot
    slots = tuple(_slot_status(system, slot, default) for slot in Slot)
    # A slot out of tries is one the loader gave up on: it booted the other slot instead. (By slot, not by any
    # entry: a stray counted entry beside a slot's good one does not make the slot bad.)
    fell_back = any(s.state is SlotState.BAD for s in slots)
    staged = _staged_update()
    staged_verdict = _judge_staged(system, staged) if staged is not None else None
    active = system.where(system.booted.role) if system.booted else None
    return SystemStatus(
        config=system.config, device=str(system.disk), running=system.running,
        active_root=str(active) if active else None, booted=system.booted,
        root_mount_mode=_root_mount_mode() if system.running else None, bootloader=system.bootloader,
        slots=slots, fell_back=fell_back, staged_update=staged,
        staged_ready=staged_verdict is not None and staged_verdict.needed,
        staged_note=_why_not(staged_verdict) if staged_verdict is not None else None,
        reboot_pending=_reboot_marker() if system.running else None,
        update_check=_check(system, io) if check else None)


def _slot_status(system: InstalledSystem, slot: Slot, default: Slot | None) -> SlotStatus:
    item = system.menu.item(slot)
    record = system.record(slot)
    partition = system.where(slot.role)
    if item is not None:
        state = {EntryState.GOOD: SlotState.GOOD, EntryState.TRIAL: SlotState.TRIAL,
                 EntryState.BAD: SlotState.BAD}[item.state]
    elif record is not None:
        state = SlotState.INCOMPLETE
    else:
        state = SlotState.EMPTY
    image_ref = image_digest = kernel = written = operation = None
    if record is not None:
        image_ref, image_digest, kernel = record.image_ref, record.image_digest, record.kernel or None
        written, operation = record.written, record.operation
    elif slot is default and state is not SlotState.EMPTY:
        # A disk nbc wrote keeps no per-slot record: config.json names the image of the slot that boots.
        image_ref, image_digest = system.config.image_ref, system.config.image_digest
        written, operation = system.config.install_date, None
    return SlotStatus(slot=slot, partition=str(partition), state=state,
                      tries_left=item.tries_left if item is not None else None,
                      running=system.booted is slot, boots_next=default is slot, record=record,
                      image_ref=image_ref, image_digest=image_digest, kernel=kernel, written=written,
                      operation=operation)


def _staged_update() -> CachedImage | None:
    with contextlib.suppress(NbcError, OSError):
        return single_staged(CacheKind.UPDATE)
    return None


def _root_mount_mode() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 4 and fields[1] == "/":
                return "ro" if "ro" in fields[3].split(",") else "rw"
    return None


def _reboot_marker() -> RebootMarker | None:
    with contextlib.suppress(OSError, ValueError):
        return RebootMarker.model_validate_json(REBOOT_MARKER.read_bytes())
    return None


def _check(system: InstalledSystem, io: StepContext) -> UpdateCheckResult:
    """What the image's reference names now, judged as ``update`` would judge it: no update when the slot the
    update keeps has it, when the other slot holds it on trial already, or (with the reason in ``error``)
    when it failed to boot from there before or its signatures would be refused."""
    config = system.config
    current = config.image_digest or None
    remote: str | None = None
    try:
        with open_image(config.image_ref) as source:
            remote = source.index_digest or source.manifest_digest
            verdict = _judge(system, ChosenImage(config.image_ref, source, None))
            if verdict.refused:
                return UpdateCheckResult(available=False, remote_digest=remote, current_digest=current,
                                         error=verdict.message, refused=True)
            available = bool(current) and verdict.needed
            if available:
                settings = settings_for_update(TrustSettings(), config, system.shared_root)
                verify_pull(source, settings, ctx=io.ctx, warn=io.warn)
    except UntrustedImage as exc:
        return UpdateCheckResult(available=False, remote_digest=remote, current_digest=current, error=exc.message,
                                 refused=True)
    except NbcError as exc:
        return UpdateCheckResult(available=False, remote_digest=remote, current_digest=current, error=exc.message)
    return UpdateCheckResult(available=available, remote_digest=remote, current_digest=current,
                             note=_why_not(verdict))


def _why_not(verdict: Verdict) -> str | None:
    """Why an update would not take the image, unless it is simply the image the system runs."""
    return verdict.message if verdict.refused or verdict.waiting else None


def _judge_staged(system: InstalledSystem, staged: CachedImage) -> Verdict:
    """Whether ``update --auto`` would take the staged update, and if not why."""
    try:
        with staged.open_source() as source:
            return _judge(system, ChosenImage(staged.image_ref, source, staged))
    except NbcError as exc:
        return Verdict(False, f"the staged update cannot be read: {exc.message}", system.config.image_digest,
                       refused=True)


def _judge(system: InstalledSystem, image: ChosenImage) -> Verdict:
    """The update's verdict on ``image`` for this system (refused when no slot is one an update would keep)."""
    keeper = system.keeper
    if keeper is None:
        return Verdict(False, f"the boot menu of {system.disk} has no good entry: an update would not know which "
                              "slot to keep", system.config.image_digest, refused=True)
    return judge(system, keeper, image)

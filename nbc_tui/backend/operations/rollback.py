"""The rollback: the other root slot boots next, and stays the default. Run again, it swaps back.

"The other slot" is the one that does not boot by default (normally the one that does not run). It must be
whole: a boot entry, its kernel files on the ESP, not given up by the loader. Refused otherwise, with
nothing changed. An update waiting for its first boot is cancelled the same way: the slot that runs stays
the default, and the updated one is kept as the previous entry.

What a rollback does not revert: /var, and the /etc overlay's upper layer, which both slots share (files
changed in /etc since the update stay changed). config.json switches to the other slot's image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..boot.entries import BootEntry, EntryState
from ..boot.menu import make_default
from ..engine import Step, StepContext, Timings, When, run_steps, system_lock_step
from ..errors import Cancelled, InputError
from ..events import CompleteEvent, Emit
from ..installed import InstalledSystem, other_disk, running_system
from ..runner import RunContext
from ..system.slots import Slot
from ..system.state import (
    CONFIG_PATH,
    REBOOT_MARKER,
    RebootMarker,
    keep_record_of,
    slot_config,
    write_reboot_marker,
    write_system_config,
)


@dataclass(frozen=True)
class RollbackRequest:
    device: Path | None = None
    """An nbc disk that is not running; None: the running system."""


class RollbackRun:
    system: InstalledSystem
    default: Slot
    """The slot that boots by default now."""
    primary: BootEntry
    """The other slot's entry, to become the default."""
    previous: BootEntry
    """The default slot's entry, to become the previous one."""

    def __init__(self, request: RollbackRequest) -> None:
        self.request = request

    @property
    def other(self) -> Slot:
        return self.default.other


def find_slots(run: RollbackRun, io: StepContext) -> None:
    """The slot that boots by default and the other one, which must be whole (else InputError, nothing
    changed)."""
    if not io.ctx.dry_run and os.geteuid() != 0:
        raise InputError("nbc-tui rollback must run as root", hint="run it with sudo, or as root")
    device = run.request.device
    system = other_disk(device, io) if device is not None else running_system(io)
    run.system = system
    default = system.default_slot
    if default is None:
        raise InputError(f"the boot menu of {system.disk} boots no slot: nothing to roll back from")
    run.default, other = default, default.other
    current = system.menu.item(default)
    item = system.menu.item(other)
    if item is None:
        raise InputError(f"slot {other.value} ({other.role}) is empty: it has no boot entry, so there is nothing "
                         "to roll back to", hint="a slot is filled by nbc-tui update")
    if item.state is EntryState.BAD:
        raise InputError(f"slot {other.value} ({other.role}) failed to boot: the loader gave up on it after its "
                         "tries, so it is not rolled back to", hint="update it again with an image that boots")
    esp_files = {f.casefold() for f in system.esp.files()}
    missing = [p for p in (item.entry.linux, item.entry.initrd) if p.lstrip("/").casefold() not in esp_files]
    if missing:
        raise InputError(f"slot {other.value}'s boot entry names files the ESP lacks: {', '.join(missing)}",
                         hint="update the slot again")
    assert current is not None  # the default slot is an item of the menu
    run.primary = item.entry.titled(item.entry.title.removesuffix(" (Previous)"))
    run.previous = current.entry.as_previous()
    if current.state is EntryState.TRIAL:
        io.message(f"Slot {default.value} holds an update waiting for its first good boot: it is cancelled, "
                   f"slot {other.value} stays the default")
    io.message(f"Boots by default now: slot {default.value} ({default.role}); after the rollback: slot "
               f"{other.value} ({other.role})")


def say_what_would_happen(run: RollbackRun, io: StepContext) -> None:
    io.message(f"[DRY RUN] Would make slot {run.other.value} ({run.primary.title}) boot by default, slot "
               f"{run.default.value} the previous entry")


def switch_default(run: RollbackRun, io: StepContext) -> None:
    """The other slot's entry becomes the default, both good; the menu offers both at every moment."""
    make_default(run.system.esp, run.system.bootloader, run.primary, run.previous)
    io.message(f"Slot {run.other.value} boots by default")


def switch_state(run: RollbackRun, io: StepContext) -> None:
    """config.json names the other slot's image (nbc's meaning: the slot that boots by default). A disk nbc
    wrote has no per-slot records: the default slot's is made from config.json first, so that a rollback
    back finds it."""
    system, root = run.system, run.system.shared_root
    system.make_writable(io)
    keep_record_of(root, run.default, system.config)
    target = slot_config(root, run.other)
    if target is None:
        io.warn(f"slot {run.other.value}'s image is not recorded (written by nbc): /{CONFIG_PATH} still names "
                f"{system.config.image_ref}")
        return
    write_system_config(root, target)
    io.message(f"/{CONFIG_PATH}: {target.image_ref}", verbose=True)


def finish(run: RollbackRun, io: StepContext) -> None:
    """On the running system, nbc's reboot marker names what the next boot starts; none is pending when that is
    the slot that runs (an update on trial cancelled before its reboot)."""
    if not run.system.running:
        return
    if run.other is run.system.booted:
        REBOOT_MARKER.unlink(missing_ok=True)
        io.message(f"Slot {run.other.value} runs already: no reboot is needed")
        return
    target = slot_config(run.system.shared_root, run.other)
    write_reboot_marker(RebootMarker(
        pending_image_ref=target.image_ref if target else "", pending_image_digest=target.image_digest if target
        else "", update_time=datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        target_partition=str(run.system.partitions[run.other.role])), REBOOT_MARKER)


STEPS: list[Step[RollbackRun]] = [
    Step("find", "Checking the other slot", find_slots, when=When.ALWAYS),
    Step("summary", "Saying what a real rollback would do", say_what_would_happen, when=When.DRY_RUN, shown=False),
    system_lock_step(),
    # The state first: should the menu's write fail (a full or read-only ESP), the default is unchanged and
    # running the rollback again completes it; the other way round, it would swap the default back.
    Step("state", "Switching the system state", switch_state),
    Step("menu", "Switching the default boot entry", switch_default),
    Step("finish", "Finishing", finish, shown=False),
]


def run_rollback(request: RollbackRequest, *, emit: Emit, ctx: RunContext) -> Slot | None:
    """Run the rollback; returns the slot that boots by default now (None for a dry run). Emits events and
    ends with ``complete`` or ``error`` (InputError when refused: nothing was changed)."""
    run = RollbackRun(request)
    run_steps(STEPS, run, ctx=ctx, emit=emit, failed="Rollback failed",
              interrupted=Cancelled("Interrupted: the rollback was stopped",
                                    hint="both slots stay in the boot menu; run it again"),
              complete=_complete)
    return None if ctx.dry_run else run.other


def _complete(run: RollbackRun, timings: Timings) -> CompleteEvent:
    when = ("It runs already: no reboot is needed." if run.other is run.system.booted else
            "Reboot to start it." if run.system.running else "It starts when the disk boots.")
    target = slot_config(run.system.shared_root, run.other)
    return CompleteEvent(
        message=f"Rolled back: slot {run.other.value} ({run.other.role}) boots by default. {when}",
        details={"slot": run.other.value, "previous_slot": run.default.value, "device": str(run.system.disk),
                 "image": target.image_ref if target else None,
                 "image_digest": target.image_digest if target else None,
                 "step_seconds": {k: round(v, 2) for k, v in timings.items()}})

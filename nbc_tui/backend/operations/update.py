"""The update: a new image into the root slot that is not running, then on trial for a few boots.

A list of steps over one :class:`UpdateRun`, run by the step driver like the install. What it keeps that nbc's
update did not (reference §13, update-anchors.md):

- the running slot is found by the device of ``/`` (a LUKS mapper's name when encrypted), never guessed; with
  ``--device`` (a disk that is not running) its first good slot in the boot menu plays its part;
- the image is opened, verified whole and checked for this slot before the target slot is touched;
- the crash-safe order: the target slot's entry leaves the menu first, the slot is made from scratch (mkfs),
  the new entry goes on trial last (boot/menu.py), so a half-written slot is never offered;
- the running slot's entry is kept verbatim as the previous one (its own kernel files, in its own ESP folder);
- config.json keeps nbc's meaning: it switches only when the new slot's first boot is good (the slot's record
  waits in ``slots/<slot>.config.json``); ``/var`` is never written, except nbc's own state and the log;
- /etc carries over (system/etc_carry.py): the overlay's upper layer stays, machine-id and SSH host keys live
  in it, account files are merged, conflicts are named;
- encrypted: the target root is opened with its TPM2 token when enrolled, else the passphrase; its crypttab and
  command line name the target as the slot that boots.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from ... import __version__
from ..boot.entries import BootEntry, EntryState
from ..boot.menu import retire_slot, start_trial
from ..boot.secure_boot import machine_secure_boot
from ..disks.blockdevices import SYSTEM, Machine
from ..engine import Finished, Step, StepContext, Timings, When, run_steps, system_lock_step
from ..errors import Cancelled, InputError, NbcError
from ..events import CompleteEvent, Emit
from ..image.cache import CachedImage, CacheKind, clear_cache, download
from ..installed import InstalledSystem, other_disk, running_system
from ..machine import require_tools, update_tools
from ..mounts import RUN_DIR, bound_alone, mounted
from ..plan import kernel_arg_problem, kernel_arg_quoting_problem
from ..provenance import Verification
from ..runner import RunContext
from ..steps import slot
from ..steps.image import CheckedImage, SlotNeeds, check_opened_image, verified
from ..steps.slot import SlotBoot, SlotLuks, SlotTarget
from ..storage import luks, partition
from ..storage.filesystems import make_filesystem
from ..system.etc_carry import OVERLAY_UPPER, EtcLayers, carry_runtime_files, etc_conflicts, merge_account_files
from ..system.rootfs import ETC_LOWER, carry_root_keys
from ..system.slots import VAR, Slot
from ..system.state import (
    CONFIG_PATH,
    REBOOT_MARKER,
    RebootMarker,
    SlotRecord,
    forget_slot,
    keep_record_of,
    local_now_rfc3339,
    write_reboot_marker,
)
from ..trust.verify import TrustSettings, settings_for_update
from .update_image import ChosenImage, StagedUse, Verdict, choose_image, judge

DEFAULT_TRIES = 3
"""Boots a new slot gets to reach boot-complete.target before the loader goes back to the previous one."""
MAX_TRIES = 9
"""GRUB's counter is a ladder in grub.cfg (boot/grub.py); systemd-boot would take more."""
CONFLICTS_SHOWN = 20


@dataclass(frozen=True)
class UpdateRequest:
    """What the update was asked to do (the flags, whatever the face)."""

    image: str | None = None
    """The image reference; None: the installed system's (config.json's ``image_ref``)."""
    staged: StagedUse = StagedUse.NEVER
    device: Path | None = None
    """A disk (or disk-image file) that is not running; None: the running system."""
    extra_kernel_args: tuple[str, ...] = ()
    """Appended after the stored kernel arguments, for this update's slot only (nbc's ``--karg``)."""
    force: bool = False
    """Write the slot even when the system already runs the image, or the image failed to boot before."""
    tries: int = DEFAULT_TRIES
    trust: TrustSettings = field(default_factory=TrustSettings)
    """How a registry pull is verified; by default as the install was (its cosign key), else the policy."""

    def __post_init__(self) -> None:
        if not 1 <= self.tries <= MAX_TRIES:
            raise InputError(f"--tries {self.tries}: give 1 to {MAX_TRIES} boots")
        for arg in self.extra_kernel_args:  # new ones, as the install's plan checks them
            if problem := kernel_arg_problem(arg) or kernel_arg_quoting_problem(arg):
                raise InputError(problem, hint="give each kernel argument as one --karg")


PassphraseReader = Callable[[], SecretStr]
"""Reads the LUKS passphrase when one is needed (a file, stdin, or a prompt: the face decides)."""
Confirm = Callable[[str], bool]


class UpdateRun:
    """One update as it goes. A phase's attribute is set by its step and read only by later steps."""

    system: InstalledSystem
    current: Slot
    """The slot the update keeps (the booted one; with --device, the first good one in the boot menu)."""
    previous: BootEntry
    """The current slot's menu entry, kept verbatim as the one to go back to."""
    image: ChosenImage
    verdict: Verdict
    checked: CheckedImage
    device: Path
    """The target slot's block device: its partition, or its opened LUKS mapper."""
    root_uuid: str
    slot: SlotTarget
    boot: SlotBoot

    def __init__(self, request: UpdateRequest, *, confirm: Confirm | None = None,
                 read_passphrase: PassphraseReader | None = None,
                 log_snapshot: Callable[[], bytes] | None = None) -> None:
        self.request = request
        self.confirm = confirm
        self.read_passphrase = read_passphrase
        self.log_snapshot = log_snapshot
        self.passphrase: SecretStr | None = None

    @property
    def target(self) -> Slot:
        return self.current.other

    @property
    def target_partition(self) -> Path:
        return self.system.partitions[self.target.role]


@dataclass
class UpdateResult:
    image_ref: str
    image_digest: str
    device: str
    slot: str
    target_partition: str
    tries: int
    step_seconds: dict[str, float] = field(default_factory=dict)


# -- finding the system and the image -------------------------------------------------------------------

def find_system_and_image(run: UpdateRun, io: StepContext) -> None:
    """The installed system, the slot that keeps running and the one to write, the image, opened, and the
    verdict on it (reading only)."""
    request = run.request
    if not io.ctx.dry_run and os.geteuid() != 0:
        raise InputError("nbc-tui update must run as root", hint="run it with sudo, or as root")
    system = other_disk(request.device, io) if request.device is not None else running_system(io)
    run.system = system
    require_tools(update_tools(system.config.filesystem_type, encrypted=system.encrypted,
                               esp_through_mtools=not system.running))
    current = system.keeper
    if current is None:
        raise InputError(f"the boot menu of {system.disk} has no good entry: nothing tells which slot to keep",
                         hint="install the disk again")
    run.current = current
    previous = system.entry(current)
    if previous is None:
        raise InputError(f"no boot entry boots slot {current.value} ({current.role}), the one that runs: after "
                         "the update nothing could go back to it", hint="roll back or reinstall first")
    run.previous = previous
    _refuse_target_in_use(run, io)
    io.message(f"{'Currently booted from' if system.running else 'Keeps'}: "
               f"{system.where(current.role)} ({current.role}, slot {current.value})")
    io.message(f"Update target: {system.where(run.target.role)} ({run.target.role}, slot {run.target.value})")
    run.image = choose_image(request.image, request.staged, system.config, io)
    run.verdict = judge(system, current, run.image)


def find_and_decide(run: UpdateRun, io: StepContext) -> None:
    """The update's first step: find, then stop when the system already has the image (unless forced)."""
    find_system_and_image(run, io)
    request = run.request
    if run.verdict.refused and not request.force:
        raise InputError(run.verdict.message, hint=run.verdict.hint)
    if not run.verdict.needed and not request.force:
        io.message("Use --force to reinstall anyway.")
        raise Finished(run.verdict.message, details={"update_needed": False, "image": run.image.ref,
                                                     "current_digest": run.verdict.current_digest})
    if not run.verdict.needed:
        io.message(f"{run.verdict.message} Updating anyway (--force).")


def _refuse_target_in_use(run: UpdateRun, io: StepContext) -> None:
    """Nothing may have the target slot mounted (it is formatted next), nor be the slot that runs."""
    if run.system.booted is run.target:
        raise NbcError(f"slot {run.target.value} is both the target and the running slot (a bug in nbc-tui)")
    machine = Machine.read(SYSTEM, io.ctx)
    mounts = machine.mounts_of(run.target_partition.name)
    if mounts:
        raise InputError(f"{run.target_partition} (slot {run.target.value}) is mounted at {', '.join(mounts)}",
                         hint="unmount it first: the update formats it")


# -- checking the image ----------------------------------------------------------------------------------

def check_new_image(run: UpdateRun, io: StepContext) -> None:
    """The whole image, verified and checked for the target slot; the passphrase when it will be needed."""
    system = run.system
    enc = system.config.encryption if system.encrypted else None
    needs = SlotNeeds(encrypted=enc is not None, tpm2=bool(enc and enc.tpm2), bootloader=None,
                      slot_size=_size_of(run.target_partition),
                      bigger_slot_hint="root slots are sized at install: a bigger image needs a new install "
                                       "with a larger --root-size",
                      # the running system's firmware is the one that will start the new kernel
                      secure_boot="auto", machine_secure_boot=machine_secure_boot() if system.running else None)
    run.checked = check_opened_image(run.image.ref, run.image.source, run.image.staged, needs, io,
                                     verification=_verification(run, io))
    if enc is not None and not enc.tpm2:
        run.passphrase = _read_passphrase(run, io)
        luks.check_passphrase(run.target_partition, run.passphrase, ctx=io.ctx)


def _verification(run: UpdateRun, io: StepContext) -> Verification:
    """The new image's signatures, checked as the flags say or else as the install was told to."""
    settings = settings_for_update(run.request.trust, run.system.config, run.system.shared_root)
    return verified(run.image.source, run.image.staged, settings, io)


def _read_passphrase(run: UpdateRun, io: StepContext) -> SecretStr:
    if run.read_passphrase is None:
        raise InputError(f"slot {run.target.value} is encrypted and no passphrase was given",
                         hint="give --passphrase-file FILE, or pipe the passphrase on stdin")
    passphrase = run.read_passphrase()
    io.ctx.redactor.add(passphrase)
    return passphrase


def _size_of(device: Path) -> int:
    with device.open("rb") as f:
        return f.seek(0, os.SEEK_END)


def say_what_would_happen(run: UpdateRun, io: StepContext) -> None:
    io.message(f"[DRY RUN] Would update to partition: {run.system.where(run.target.role)} (slot {run.target.value})")
    io.message(f"[DRY RUN]   {run.image.ref} ({run.image.digest[:19]}...), kernel {run.checked.kernel_version}; "
               f"slot {run.current.value} stays as it is")
    io.message(f"[DRY RUN]   slot {run.target.value} would boot on trial {run.request.tries} time(s), then "
               f"slot {run.current.value} again unless a boot reaches boot-complete.target")


def confirm_update(run: UpdateRun, io: StepContext) -> None:
    if run.confirm is None:
        return
    what = (f"This will update the system to a new root filesystem.\nTarget partition: "
            f"{run.system.where(run.target.role)} "
            f"(slot {run.target.value}); slot {run.current.value} stays as it is")
    if not run.confirm(what):  # a "no" is an answer, not an interruption: exit 2, as the install's
        raise InputError("not confirmed: nothing was changed", hint="answer yes, or pass --force")


# -- writing the target slot --------------------------------------------------------------------------

def open_target(run: UpdateRun, io: StepContext) -> None:
    """The target slot's block device: the partition, or its LUKS container opened (TPM2 first, when
    enrolled, then the passphrase). Nothing is written yet: a failure here changes nothing."""
    partition = run.target_partition
    if not run.system.encrypted:
        run.device = partition
        return
    enc = run.system.config.encryption
    assert enc is not None  # encrypted
    name = run.target.mapper
    if run.system.running and luks.idle_mapping_of(name, partition):
        # Opened by the boot (nbc's crypttab has no noauto for the other root) and unused: closed, then opened
        # again below as any target is, so the update holds it and closes it when done.
        luks.close(name, ctx=io.ctx)
        io.message(f"Closed /dev/mapper/{name}: the boot had opened slot {run.target.value}, which is not in use",
                   verbose=True)
    if enc.tpm2 and run.passphrase is None:
        try:
            run.device = io.hold(luks.opened_by_tpm2(partition, name, ctx=io.ctx))
            io.message(f"Opened {partition} as /dev/mapper/{name} with the TPM2")
            return
        except NbcError as exc:
            io.warn(f"the TPM2 did not open {partition}: {exc.message}; the passphrase is needed")
            run.passphrase = _read_passphrase(run, io)
    assert run.passphrase is not None
    run.device = io.hold(luks.opened(partition, name, run.passphrase, ctx=io.ctx))
    io.message(f"Opened {partition} as /dev/mapper/{name}")


def retire_target(run: UpdateRun, io: StepContext) -> None:
    """The target slot leaves the boot menu before a byte of it is written."""
    run.system.make_writable(io)
    menu = run.system.reread_menu()
    item = menu.item(run.target)
    retire_slot(run.system.esp, menu, run.target)
    forget_slot(run.system.shared_root, run.target)  # what it held is about to go
    io.message(f"Removed slot {run.target.value}'s boot entry" if item else
               f"Slot {run.target.value} had no boot entry", verbose=True)


def format_target(run: UpdateRun, io: StepContext) -> None:
    """A fresh filesystem (nbc emptied the old one file by file): nothing of the old slot survives."""
    run.root_uuid = str(uuid.uuid4())
    filesystem = run.system.config.filesystem_type
    with contextlib.ExitStack() as stack:
        device = run.device
        if filesystem == "btrfs" and run.system.disk.is_file():
            # mkfs.btrfs refuses a loop device whose backing file also backs a mounted filesystem (var, from
            # the same disk-image file at another offset): it compares backing files, not offsets. A loop
            # device over the partition's loop device has a backing of its own.
            device = partition.attach_loop(run.device, ctx=io.ctx)
            stack.callback(partition.detach_loop, device, ctx=io.ctx)
        make_filesystem(device, filesystem, run.target.role, run.root_uuid, ctx=io.ctx)
    io.message(f"Made {run.system.config.filesystem_type} on {run.device} (UUID {run.root_uuid})", verbose=True)


def mount_target(run: UpdateRun, io: StepContext) -> None:
    """The target root alone: var stays where it is (the running system's /var, or the disk's var mount), so the
    image's own /var stays inside the slot and the shared one is never written."""
    system = run.system
    root = io.hold(mounted(run.device, RUN_DIR / f"update-{os.getpid()}-{run.target.role}", ctx=io.ctx))
    enc = system.config.encryption if system.encrypted else None
    luks_side = (SlotLuks({"root1": enc.root1_luks_uuid, "root2": enc.root2_luks_uuid, VAR: enc.var_luks_uuid},
                          tpm2=enc.tpm2) if enc is not None else None)
    run.slot = SlotTarget(slot=run.target, root=root, shared_root=system.shared_root, esp=system.esp,
                          esp_uuid=system.esp_uuid, root_uuid=run.root_uuid, var_uuid=system.var_uuid,
                          filesystem=system.config.filesystem_type,
                          kernel_args=(*system.config.kernel_args, *run.request.extra_kernel_args), luks=luks_side)


def extract(run: UpdateRun, io: StepContext) -> None:
    slot.extract(run.slot, run.checked.source, io)


def configure(run: UpdateRun, io: StepContext) -> None:
    """The slot's root for nbc's model, /etc carried over from the current slot, sealed, and the slot's record
    (config.json itself switches only at the slot's first good boot)."""
    kind = run.system.bootloader
    run.boot = slot.prepare_root(run.slot, run.checked.inventory, lambda _root: kind, io)
    with _current_slot(run, io) as (current_root, layers):
        carried = carry_runtime_files(layers)
        if carried:
            io.message(f"Kept in the /etc overlay: {', '.join(carried)}", verbose=True)
        if carry_root_keys(current_root, run.slot.root):
            io.message("Kept root's SSH keys (/root/.ssh/authorized_keys)", verbose=True)
        for note in merge_account_files(layers, run.slot.root / "etc"):
            io.warn(note)
        conflicts = etc_conflicts(layers, run.slot.root / "etc")
    if conflicts:
        shown = ", ".join(f"/etc/{c}" for c in conflicts[:CONFLICTS_SHOWN])
        more = f" and {len(conflicts) - CONFLICTS_SHOWN} more" if len(conflicts) > CONFLICTS_SHOWN else ""
        io.warn(f"{len(conflicts)} file(s) changed on this system are changed by the new image too; this "
                f"system's version is kept (the image's is under /var/lib/nbc/etc.pristine): {shown}{more}")
    slot.seal_etc(run.slot, io)
    record_state(run, io)


@contextlib.contextmanager
def _current_slot(run: UpdateRun, io: StepContext) -> Iterator[tuple[Path, EtcLayers]]:
    """The current slot's root, read-only, and its /etc: the live overlay on the running system; on another
    disk its layers. On the running system the etc-overlay hook hides /.etc.lower under an empty tmpfs, so the
    root is a bind of / alone."""
    system = run.system
    upper = system.shared_root / OVERLAY_UPPER
    where = RUN_DIR / f"update-{os.getpid()}-{run.current.role}"
    if system.running:
        with bound_alone(Path("/"), where, ctx=io.ctx) as current_root:
            yield current_root, EtcLayers(lower=current_root / ETC_LOWER, upper=upper, live=Path("/etc"))
        return
    with mounted(system.partitions[run.current.role], where, ctx=io.ctx, options=["ro"]) as current_root:
        yield current_root, EtcLayers(lower=current_root / ETC_LOWER, upper=upper)


def record_state(run: UpdateRun, io: StepContext) -> None:
    """The target slot's record and config, after the current slot's own when it has none (a disk nbc wrote):
    config.json names the current slot's image until the target's good boot, never after."""
    system, checked = run.system, run.checked
    if keep_record_of(system.shared_root, run.current, system.config):
        io.message(f"Recorded slot {run.current.value} from /{CONFIG_PATH}: {system.config.image_ref}", verbose=True)
    config = system.config.model_copy(update={
        "image_ref": run.image.ref, "image_digest": checked.recorded_digest,
        "image_manifest_digest": checked.source.manifest_digest, "image_verification": checked.verification})
    record = SlotRecord(slot=run.target.value, image_ref=run.image.ref, image_digest=config.image_digest,
                        image_manifest_digest=config.image_manifest_digest, kernel=run.boot.kernel.version,
                        kernel_args=list(run.slot.kernel_args), written=local_now_rfc3339(),
                        written_by=f"nbc-tui {__version__}", operation="update", verification=checked.verification)
    slot.record_slot(run.slot, record, config, io)


def build_initramfs(run: UpdateRun, io: StepContext) -> None:
    run.boot = slot.build_initramfs(run.slot, run.boot, run.checked.inventory, io)


def write_entries(run: UpdateRun, io: StepContext) -> None:
    """The slot's kernel files in its own ESP folder, then its entry on trial, after the current slot's entry
    as the previous one (written first: at no point is the menu without a slot that boots)."""
    entry = slot.boot_entry(run.slot, run.boot, io)
    start_trial(run.system.esp, run.system.bootloader, entry, run.previous.as_previous(), run.request.tries)
    io.message(f"Slot {run.target.value} boots next, on trial: {run.request.tries} tries to reach "
               f"boot-complete.target, then slot {run.current.value} again")


def verify(run: UpdateRun, io: StepContext) -> None:
    """Read back: the target's filesystem, its kernel files, and the menu: the target on trial, first."""
    slot.verify_filesystems({run.target.role: run.device}, {run.target.role: run.root_uuid}, io)
    esp_files = {f.lower() for f in run.system.esp.files()}
    for needed in run.target.kernel_paths(run.boot.kernel.version):
        if needed.lower() not in esp_files:
            raise NbcError(f"the ESP lacks {needed} after writing it")
    menu = run.system.reread_menu()
    first = menu.default
    if first is None or first.entry.slot is not run.target or first.state is not EntryState.TRIAL:
        raise NbcError(f"the boot menu read back does not boot slot {run.target.value} on trial next")
    if menu.item(run.current) is None:
        raise NbcError(f"the boot menu read back has no entry for slot {run.current.value}")


def finish(run: UpdateRun, io: StepContext) -> None:
    slot.leave_log(run.slot, run.log_snapshot, "update.log", io)
    if run.system.running:
        write_reboot_marker(RebootMarker(
            pending_image_ref=run.image.ref, pending_image_digest=run.checked.recorded_digest,
            update_time=datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            target_partition=run.system.where(run.target.role)), REBOOT_MARKER)
    if run.image.staged is not None:
        try:
            clear_cache(CacheKind.UPDATE)
        except NbcError as exc:
            io.warn(f"could not empty the staged-update cache: {exc}")


# -- the list -----------------------------------------------------------------------------------------

STEPS: list[Step[UpdateRun]] = [
    Step("find", "Finding the installed system and the image", find_and_decide, when=When.ALWAYS),
    Step("check-image", "Checking the image", check_new_image, when=When.ALWAYS),
    Step("summary", "Saying what a real update would do", say_what_would_happen, when=When.DRY_RUN, shown=False),
    system_lock_step(),
    Step("confirm", "Asking before the update", confirm_update, shown=False),
    Step("open", "Opening the target partition", open_target, shown=False),  # only an encrypted one
    Step("retire", "Removing the target slot's boot entry", retire_target),
    Step("format", "Formatting the target partition", format_target),
    Step("mount", "Mounting target partition", mount_target),
    Step("extract", "Extracting new container filesystem", extract),
    Step("configure", "Setting up target system", configure),
    Step("initramfs", "Building the initramfs", build_initramfs),
    Step("bootloader", "Updating bootloader configuration", write_entries),
    Step("verify", "Verifying the update", verify),
    Step("finish", "Finishing", finish),
]


def run_update(request: UpdateRequest, *, emit: Emit, ctx: RunContext, confirm: Confirm | None = None,
               read_passphrase: PassphraseReader | None = None,
               log_snapshot: Callable[[], bytes] | None = None) -> UpdateResult | None:
    """Run the update. Emits step/progress/message/warning events and ends with ``complete`` (also when no
    update is needed: its details say ``update_needed: false``) or ``error``. Returns the result of a real
    update, else None."""
    run = UpdateRun(request, confirm=confirm, read_passphrase=read_passphrase, log_snapshot=log_snapshot)
    interrupted = Cancelled("Interrupted: the update was stopped",
                            hint="the slot that runs was not touched; run the update again")
    timings = run_steps(STEPS, run, ctx=ctx, emit=emit, failed="Update failed", interrupted=interrupted,
                        complete=_complete)
    if ctx.dry_run or not hasattr(run, "boot") or "finish" not in timings:
        return None
    return _result(run, timings)


def _result(run: UpdateRun, timings: Timings) -> UpdateResult:
    return UpdateResult(image_ref=run.image.ref, image_digest=run.checked.recorded_digest,
                        device=str(run.system.disk), slot=run.target.value,
                        target_partition=run.system.where(run.target.role), tries=run.request.tries,
                        step_seconds=timings)


def _complete(run: UpdateRun, timings: Timings) -> CompleteEvent:
    result = _result(run, timings)
    details: dict[str, Any] = {"image": result.image_ref, "device": result.device, "target": result.target_partition,
                               "image_digest": result.image_digest, "slot": result.slot, "tries": result.tries,
                               "step_seconds": {k: round(v, 2) for k, v in timings.items()}}
    reboot = "Reboot to activate the new version." if run.system.running else "Boot the disk to start it."
    return CompleteEvent(message=f"System update complete! {reboot}", details=details)


# -- --check and --download-only -----------------------------------------------------------------------

@dataclass(frozen=True)
class UpdateCheck:
    """nbc's ``update --check`` answer (its JSON keys)."""

    update_needed: bool
    image: str
    device: str
    current_digest: str
    new_digest: str
    message: str


def _answer(run: UpdateRun) -> UpdateCheck:
    return UpdateCheck(update_needed=run.verdict.needed, image=run.image.ref, device=str(run.system.disk),
                       current_digest=run.verdict.current_digest, new_digest=run.image.digest,
                       message=run.verdict.message)


def check_for_update(request: UpdateRequest, *, ctx: RunContext, emit: Emit) -> UpdateCheck:
    """Whether an update is available, reading only: the system, the image's manifest (no layer) and, when
    the image is new, its signatures, which the update would check too: an image it would refuse is refused
    here (UntrustedImage), never announced as an update."""
    run = UpdateRun(request)
    steps = [Step("find", "Checking for an update", find_system_and_image, when=When.ALWAYS),
             Step("trust", "Checking the update's signatures", _trust_new_image, when=When.ALWAYS)]
    run_steps(steps, run, ctx=replace(ctx, dry_run=True), emit=emit, failed="Update check failed",
              interrupted=Cancelled("Interrupted"), complete=lambda _run, _t: CompleteEvent(message=""))
    return _answer(run)


def _trust_new_image(run: UpdateRun, io: StepContext) -> None:
    if run.verdict.needed:
        _verification(run, io)


def download_update(request: UpdateRequest, *, ctx: RunContext, emit: Emit,
                    on_message: Callable[[str], None] | None = None) -> tuple[UpdateCheck, CachedImage | None]:
    """Stage the update in the staged-update cache (replacing any staged one) when one is needed (or
    forced); returns the check's answer and the staged entry (None when nothing was downloaded, or in a dry
    run, which downloads nothing). An image that failed to boot from the other slot is refused (InputError)
    unless forced, as the update refuses it."""
    if request.device is not None:
        raise InputError("--download-only stages an update for the running system; it takes no --device")
    if request.staged is not StagedUse.NEVER:
        raise InputError("--download-only fetches the image; --local-image and --auto apply a staged one")
    run = UpdateRun(request)
    staged: list[CachedImage] = []

    def stage(state: UpdateRun, io: StepContext) -> None:
        if state.verdict.refused and not request.force:  # as the update would refuse it
            raise InputError(state.verdict.message, hint=state.verdict.hint)
        if not state.verdict.needed and not request.force:
            return
        verification = _verification(state, io)
        staged.append(download(state.image.source, CacheKind.UPDATE, ref_text=state.image.ref,
                               on_progress=io.progress("Downloading"), cancel=io.ctx.cancel,
                               on_message=on_message, verification=verification))

    steps = [Step("find", "Checking for an update", find_system_and_image, when=When.ALWAYS),
             Step("download", "Downloading the update", stage)]
    run_steps(steps, run, ctx=ctx, emit=emit, failed="failed to download update", interrupted=Cancelled("Interrupted"),
              complete=lambda _run, _t: CompleteEvent(message=""))
    return _answer(run), (staged[0] if staged else None)

"""The install: a list of steps over one :class:`InstallRun`, run by the step driver (:mod:`.engine`).

Preflight checks the machine, the target and the whole image before a byte is written; then, under nbc's system
lock and after the wipe is confirmed, the disk steps (:mod:`.steps.disk`) make nbc's layout and mount slot A,
and the slot steps (:mod:`.steps.slot`, shared with updates) write it. Each phase hands on what it produced:
preflight the checked target, image and passphrase; the disk steps the partitions, LUKS containers and
filesystems; mounting the :class:`~.steps.slot.SlotTarget`; configure the slot's boot files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import SecretStr

from ... import __version__
from ..atomic import write_atomically
from ..boot.bootloader import install_loader, resolve_bootloader
from ..boot.efivars import register_efi_boot_entry
from ..boot.menu import write_menu
from ..boot.secure_boot import machine_secure_boot, prefers_signed_grub
from ..describe import creation_lines, identity_lines
from ..disks import disk_id
from ..engine import Step, StepContext, Timings, When, run_steps, system_lock_step
from ..errors import Cancelled, InputError, NbcError
from ..events import CompleteEvent, Emit
from ..image.cache import CacheKind, clear_cache
from ..machine import check_tools, on_live_system
from ..plan import InstallPlan, System
from ..runner import RunContext
from ..secret_files import read_secret_file
from ..sizes import human
from ..steps import disk, slot
from ..steps.disk import CheckedTarget, Confirm, Encrypted, Filesystems, Partitions
from ..steps.identity import check_identity, firstboot_note, set_identity
from ..steps.image import CheckedImage, SlotNeeds, open_checked_image
from ..steps.slot import SlotBoot, SlotLuks, SlotTarget
from ..storage import partition
from ..storage.luks import luks_uuid
from ..storage.partition import ESP
from ..storage.tpm import RecoveryKeyHandler
from ..system import rootfs
from ..system.slots import ENCRYPTED_ROLES, VAR, Slot
from ..system.state import (
    COSIGN_KEY_PATH,
    EncryptionState,
    SlotRecord,
    SystemConfig,
    local_now_rfc3339,
    write_system_config,
)

SLOT = Slot.A
"""An install writes slot A; slot B stays empty until the first update."""


@dataclass(frozen=True)
class Preflight:
    """What the checks before anything is written hand on."""

    target: CheckedTarget
    image: CheckedImage
    passphrase: SecretStr | None
    """The LUKS passphrase (read here and registered with the redactor at once); None without encryption."""
    root_password: SecretStr | None
    """Root's password when given as text or in a file (read here, registered with the redactor at once)."""


class InstallRun:
    """One install as it goes: the plan, the faces' hooks, and each phase's result. A phase's attribute is set by
    its step and read only by later steps (read earlier, it is a bug: AttributeError)."""

    preflight: Preflight
    partitions: Partitions
    filesystems: Filesystems
    slot: SlotTarget
    boot: SlotBoot
    """The slot's kernel, initramfs and bootloader (configure finds them, the initramfs step may replace it)."""

    def __init__(self, plan: InstallPlan, *, confirm: Confirm | None = None,
                 log_snapshot: Callable[[], bytes] | None = None,
                 on_recovery_key: RecoveryKeyHandler | None = None) -> None:
        self.plan = plan
        self.confirm = confirm
        self.log_snapshot = log_snapshot
        self.on_recovery_key = on_recovery_key
        self.encrypted: Encrypted | None = None
        """The opened LUKS containers; None without encryption."""


@dataclass
class InstallResult:
    device: str
    image_ref: str
    image_digest: str
    bootloader: str
    filesystem: str
    step_seconds: dict[str, float]


# -- the steps ----------------------------------------------------------------------------------------

def check_everything(run: InstallRun, io: StepContext) -> None:
    """Preflight: everything that can be checked before a single byte is written."""
    plan = run.plan
    if not io.ctx.dry_run and os.geteuid() != 0:
        raise InputError("nbc-tui install must run as root", hint="run it with sudo, or as root")
    for secret in plan.secrets():  # first: no line of the run, from any face, may show one
        io.ctx.redactor.add(secret)
    check_tools(plan)
    root_password = root_password_given(plan.system, io)
    enc = plan.encryption
    passphrase = (disk.check_encryption(enc, recovery_key_shown=run.on_recovery_key is not None, after=plan.after,
                                        image_file=plan.target.is_image_file, io=io)
                  if enc is not None else None)
    target = disk.check_target(plan, io)
    needs = SlotNeeds(encrypted=enc is not None, tpm2=bool(enc and enc.tpm2), bootloader=plan.boot.bootloader,
                      slot_size=plan.layout.root_size, esp_size=plan.layout.esp_size,
                      secure_boot=plan.boot.secure_boot,
                      machine_secure_boot=machine_secure_boot())
    image = open_checked_image(plan.image, needs, io)
    check_identity(plan.system, image.inventory)
    if note := firstboot_note(plan.system, image.inventory):
        io.warn(note)
    if target.disk is None:
        disk.check_room_for_image_file(target, image.needed_bytes)
    io.message(f"Layout: {plan.layout.describe()}")
    run.preflight = Preflight(target, image, passphrase, root_password)


def say_what_would_happen(run: InstallRun, io: StepContext) -> None:
    """A dry run's summary: what a real run would write, in the words the review screen uses."""
    plan, target = run.plan, run.preflight.target
    where = (f"a new disk-image file {target.path} ({human(plan.target.image_size)})" if target.disk is None
             else str(target.path))
    io.message(f"[DRY RUN] Would install {plan.image.ref} to {where}")
    for line in [*creation_lines(plan), *identity_lines(plan.system)]:
        io.message(f"[DRY RUN]   {line}")


def confirm_wipe(run: InstallRun, io: StepContext) -> None:
    disk.confirm_wipe(run.preflight.target, run.plan, run.confirm)


def wipe(run: InstallRun, io: StepContext) -> None:
    disk.wipe(run.preflight.target, run.plan.target.image_size, io)


def create_partitions(run: InstallRun, io: StepContext) -> None:
    run.partitions = disk.create_partitions(run.preflight.target, run.plan.layout, io)


def encrypt_partitions(run: InstallRun, io: StepContext) -> None:
    run.encrypted = disk.encrypt(run.partitions, _passphrase(run), io)


def enroll_tpm(run: InstallRun, io: StepContext) -> None:
    assert run.plan.encryption is not None  # the step runs only for encrypted plans
    disk.enroll_tpm(run.partitions, run.plan.encryption, _passphrase(run), run.on_recovery_key, io)


def _passphrase(run: InstallRun) -> SecretStr:
    passphrase = run.preflight.passphrase
    if passphrase is None:
        raise NbcError("the encryption steps ran without a passphrase (a bug in nbc-tui)")
    return passphrase


def format_partitions(run: InstallRun, io: StepContext) -> None:
    run.filesystems = disk.make_filesystems(run.partitions, run.encrypted, run.plan.layout, io)


def mount_partitions(run: InstallRun, io: StepContext) -> None:
    fs, plan, enc = run.filesystems, run.plan, run.encrypted
    root = disk.mount_slot(fs, SLOT, io)
    luks = SlotLuks(enc.uuids, tpm2=bool(plan.encryption and plan.encryption.tpm2)) if enc else None
    run.slot = SlotTarget(slot=SLOT, root=root, shared_root=root, esp=fs.esp, esp_uuid=fs.uuids[ESP],
                          root_uuid=fs.uuids[SLOT.role],
                          var_uuid=fs.uuids[VAR], filesystem=plan.layout.filesystem,
                          kernel_args=plan.boot.kernel_args, luks=luks)


def extract(run: InstallRun, io: StepContext) -> None:
    slot.extract(run.slot, run.preflight.image.source, io)


def configure(run: InstallRun, io: StepContext) -> None:
    """The slot's root for nbc's model; root's password and SSH keys, the machine's identity and its users
    before /etc is sealed into the overlay's lower layer (nbc set the password after that copy, so it was
    lost); then the system's state file."""
    choice, signed = run.plan.boot.bootloader, prefers_signed_grub(run.plan.boot.secure_boot, machine_secure_boot())
    run.boot = slot.prepare_root(run.slot, run.preflight.image.inventory,
                                 lambda root: resolve_bootloader(choice, root, prefer_signed=signed), io)
    set_root_access(run, io)
    set_identity(run.slot.root, run.slot.shared_root, run.plan.system, run.preflight.image.inventory, io)
    slot.seal_etc(run.slot, io)
    record_state(run, io)


def root_password_given(system: System, io: StepContext) -> SecretStr | None:
    """Root's password as typed or from its file (refused now when the file is unreadable or not one line: the
    disk is not touched yet); None when none was given or only its hash."""
    if system.root_password_file is None:
        return system.root_password
    try:
        password = read_secret_file(system.root_password_file, "root password")
    except InputError as exc:
        raise InputError(f"{exc.message}: nothing was written", hint=exc.hint,
                         details={"answer_key": ["system", "root_password_file"]}) from None
    io.ctx.redactor.add(password)
    return password


def set_root_access(run: InstallRun, io: StepContext) -> None:
    system, root = run.plan.system, run.slot.root
    hashed = rootfs.password_hash(run.preflight.root_password, None, system.root_password_hash,
                                  what="root password", ctx=io.ctx)
    if hashed is not None:
        rootfs.set_root_password_hash(root, hashed)
        io.message("Root password set" + (" (from its hash)" if system.root_password_hash else ""))
    if system.ssh_authorized_keys:
        keys_at = rootfs.write_authorized_keys(root, system.ssh_authorized_keys)
        io.message(f"{len(system.ssh_authorized_keys)} SSH key(s) for root in /{keys_at.relative_to(root)}")


def record_state(run: InstallRun, io: StepContext) -> None:
    """/var/lib/nbc/state/config.json: what an update needs to know (nbc's keys, then ours)."""
    plan, pre, enc = run.plan, run.preflight, run.encrypted
    encryption = None
    if enc is not None and plan.encryption is not None:
        encryption = EncryptionState(enabled=True, tpm2=plan.encryption.tpm2,
                                     root1_luks_uuid=enc.uuids[Slot.A.role], root2_luks_uuid=enc.uuids[Slot.B.role],
                                     var_luks_uuid=enc.uuids[VAR])
    config = SystemConfig(
        image_ref=plan.image.ref, image_digest=pre.image.recorded_digest, device=str(pre.target.path),
        disk_id=(disk_id(pre.target.disk) or "") if pre.target.disk else "", install_date=local_now_rfc3339(),
        kernel_args=list(plan.boot.kernel_args), bootloader_type=run.boot.bootloader,
        filesystem_type=plan.layout.filesystem, encryption=encryption,
        image_manifest_digest=pre.image.source.manifest_digest, installed_by=f"nbc-tui {__version__}",
        image_verification=pre.image.verification, cosign_key=_keep_cosign_key(run, io),
    )
    path = write_system_config(run.slot.root, config)
    io.message(f"Wrote {path.relative_to(run.slot.root)}", verbose=True)
    record = SlotRecord(slot=SLOT.value, image_ref=config.image_ref, image_digest=config.image_digest,
                        image_manifest_digest=config.image_manifest_digest, kernel=run.boot.kernel.version,
                        kernel_args=config.kernel_args, written=config.install_date, written_by=config.installed_by,
                        operation="install", verification=pre.image.verification)
    slot.record_slot(run.slot, record, config, io)


def _keep_cosign_key(run: InstallRun, io: StepContext) -> str:
    """The key given by --cosign-key, kept on var for the system's updates; its path there ("" for none)."""
    key = run.plan.image.cosign_key
    if key is None:
        return ""
    write_atomically(run.slot.root / COSIGN_KEY_PATH, key.read_bytes())
    io.message(f"Updates will require signatures by the cosign key {key} (kept as /{COSIGN_KEY_PATH})")
    return f"/{COSIGN_KEY_PATH}"


def build_initramfs(run: InstallRun, io: StepContext) -> None:
    run.boot = slot.build_initramfs(run.slot, run.boot, run.preflight.image.inventory, io)


def install_bootloader(run: InstallRun, io: StepContext) -> None:
    """The slot's kernel files, the loader (binaries, loader.conf or the early config) and its one entry."""
    entry = slot.boot_entry(run.slot, run.boot, io)
    install_loader(run.boot.bootloader, target_root=run.slot.root, esp=run.slot.esp, esp_uuid=run.slot.esp_uuid,
                   ctx=io.ctx, warn=io.warn)
    write_menu(run.slot.esp, run.boot.bootloader, entry)
    target = run.preflight.target
    not_registered = register_efi_boot_entry(target.path, 1, entry.title, is_image_file=target.disk is None,
                                             ctx=io.ctx)
    # The removable-media path EFI/BOOT/BOOTX64.EFI boots the disk either way.
    io.message(f"EFI boot entry: {not_registered or 'created'}", verbose=not_registered is not None)


def verify(run: InstallRun, io: StepContext) -> None:
    """Read back what was written: the table, every filesystem's label and UUID, the LUKS UUIDs, the slot's
    boot files on the ESP."""
    target, fs = run.preflight.target, run.filesystems
    table = partition.read_partition_table(target.path, ctx=io.ctx)
    names = [p.name for p in table]
    expected = [spec.name for spec in partition.nbc_layout(run.plan.layout)]
    if names != expected:
        raise NbcError(f"partition names read back as {names}")
    slot.verify_slot(run.slot, fs.devices, run.boot, io)
    slot.verify_filesystems(fs.devices, {SLOT.other.role: fs.uuids[SLOT.other.role]}, io)  # made, still empty
    if run.encrypted is not None:
        for role in ENCRYPTED_ROLES:
            read_back = luks_uuid(run.partitions.nodes[role], ctx=io.ctx)
            if read_back != run.encrypted.uuids[role]:
                raise NbcError(f"{role}: LUKS UUID {read_back} read back, expected {run.encrypted.uuids[role]}")
    io.message(f"Found {len(table)} partitions: " + ", ".join(f"{p.number} {p.name}" for p in table))


def finish(run: InstallRun, io: StepContext) -> None:
    slot.leave_log(run.slot, run.log_snapshot, "install.log", io)
    staged = run.preflight.image.staged
    if staged is None or run.preflight.target.disk is None:
        return
    # nbc empties the staged-install cache after installing a real disk from it (reference §7.5). Not on the
    # live ISO: its staged images are on the read-only medium, so clearing them frees nothing and every later
    # install in this boot ("Install again", a second disk) would lack them.
    if on_live_system():
        io.message("Kept the staged images: they are part of the live medium and stay available for another "
                   "install")
        return
    try:
        clear_cache(CacheKind.INSTALL)
    except NbcError as exc:
        io.warn(f"could not empty the staged-install cache: {exc}")


# -- the list -----------------------------------------------------------------------------------------

STEPS: list[Step[InstallRun]] = [
    Step("preflight", "Checking the machine, the disk and the image", check_everything, when=When.ALWAYS),
    Step("summary", "Saying what a real install would do", say_what_would_happen, when=When.DRY_RUN, shown=False),
    system_lock_step(),  # from here on one install or update at a time (the checks only read)
    Step("confirm", "Asking before the wipe", confirm_wipe, shown=False),
    Step("wipe", "Wiping the disk", wipe),
    Step("partition", "Creating partitions", create_partitions),
    Step("encrypt", "Encrypting partitions", encrypt_partitions),
    Step("enroll-tpm", "Enrolling the TPM2", enroll_tpm),
    Step("format", "Formatting partitions", format_partitions),
    Step("mount", "Mounting partitions", mount_partitions),
    Step("extract", "Extracting container filesystem", extract),
    Step("configure", "Configuring system", configure),
    Step("initramfs", "Building the initramfs", build_initramfs),
    Step("bootloader", "Installing bootloader", install_bootloader),
    Step("verify", "Verifying the installation", verify),
    Step("finish", "Finishing", finish),
]


def steps_for(plan: InstallPlan) -> list[Step[InstallRun]]:
    """The steps this plan runs: the encryption steps only when it encrypts (TPM2 only with tpm2)."""
    enc = plan.encryption
    skipped = set() if enc is not None and enc.tpm2 else {"enroll-tpm"}
    if enc is None:
        skipped.add("encrypt")
    return [step for step in STEPS if step.key not in skipped]


def step_titles(plan: InstallPlan) -> list[str]:
    """The titles of the shown steps this plan runs, in order (the progress screen lists them)."""
    return [step.title for step in steps_for(plan) if step.shown]


# -- running it ---------------------------------------------------------------------------------------

def run_install(plan: InstallPlan, *, emit: Emit, ctx: RunContext, confirm: Confirm | None = None,
                log_snapshot: Callable[[], bytes] | None = None,
                on_recovery_key: RecoveryKeyHandler | None = None) -> InstallResult | None:
    """Run the plan. Emits step/progress/message/warning events and ends with ``complete`` or ``error``.

    Returns the result, or None for a dry run. Raises the NbcError after emitting its ``error`` event.
    ``confirm`` is asked before a real disk is wiped; without it a real disk is never wiped.
    ``on_recovery_key`` is called once with the TPM2 recovery key (the TUI shows it).
    """
    run = InstallRun(plan, confirm=confirm, log_snapshot=log_snapshot, on_recovery_key=on_recovery_key)
    interrupted = Cancelled("Interrupted: the install was stopped", hint="nothing is left mounted; run it again")
    timings = run_steps(steps_for(plan), run, ctx=ctx, emit=emit, failed="Installation failed",
                        interrupted=interrupted, complete=_complete)
    return None if ctx.dry_run else _result(run, timings)


def _result(run: InstallRun, timings: Timings) -> InstallResult:
    return InstallResult(device=str(run.preflight.target.path), image_ref=run.plan.image.ref,
                         image_digest=run.preflight.image.source.manifest_digest, bootloader=run.boot.bootloader,
                         filesystem=run.plan.layout.filesystem, step_seconds=timings)


def _complete(run: InstallRun, timings: Timings) -> CompleteEvent:
    result, enc = _result(run, timings), run.plan.encryption
    return CompleteEvent(
        message="Installation complete! You can now boot from this disk.",
        details={"image": result.image_ref, "device": result.device, "image_digest": result.image_digest,
                 "bootloader": result.bootloader, "filesystem": result.filesystem, "slot": SLOT.value,
                 **({"encryption": {"luks2": True, "tpm2": enc.tpm2}} if enc else {}),
                 "verification": run.preflight.image.verification.model_dump(mode="json"),
                 "step_seconds": {k: round(v, 2) for k, v in timings.items()}},
    )


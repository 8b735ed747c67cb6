"""The steps that make a whole disk (or a disk-image file) into nbc's layout: only an install does these.

Check the target and the encryption before anything is written; ask before the wipe and make sure the disk is
still the one that was checked; wipe; partition; LUKS2 and TPM2 enrolment; filesystems; and mount the first
slot with var under it for the slot steps (:mod:`.slot`).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from ..disks import (
    Disk,
    check_image_file_path,
    destruction_warning,
    disk_line,
    identity_changed,
    refusals,
    resolve_disk,
)
from ..engine import StepContext
from ..errors import InputError, NbcError
from ..image.reference import OciArchiveRef, OciLayoutRef, parse_reference
from ..machine import on_live_system
from ..mounts import RUN_DIR, mounted
from ..plan import MIN_PASSPHRASE, AfterInstall, Encryption, InstallPlan, Layout, Target
from ..secret_files import key_file, read_secret_file
from ..sizes import MiB, human
from ..storage import luks, partition, tpm
from ..storage.esp import Esp, esp_uuid, new_volume_id
from ..storage.filesystems import make_filesystem
from ..storage.partition import ESP
from ..system.slots import ENCRYPTED_ROLES, MAPPER_NAMES, VAR, Slot

Confirm = Callable[[str], bool]
"""Asked with the words of what will be destroyed; True goes on with the wipe."""
IMAGE_FILE_SPARE = 512 * MiB
"""Free space a disk-image file's folder needs beyond what the image takes."""


@dataclass(frozen=True)
class CheckedTarget:
    """The target as preflight found it."""

    path: Path
    """The whole disk's device, or the disk-image file."""
    disk: Disk | None
    """The disk as it was checked (identity and contents); None for a disk-image file."""


@dataclass(frozen=True)
class Partitions:
    """nbc's four partitions of the new table, by role (esp, root1, root2, var)."""

    nodes: dict[str, Path]


@dataclass(frozen=True)
class Encrypted:
    """The LUKS2 containers on root1, root2 and var, opened under nbc's mapper names."""

    uuids: dict[str, str]
    mappers: dict[str, Path]


@dataclass(frozen=True)
class Filesystems:
    """The filesystems made: on which device each role's lives, and its UUID (the ESP's as blkid writes it)."""

    devices: dict[str, Path]
    uuids: dict[str, str]
    esp: Esp


# -- before anything is written ---------------------------------------------------------------------

def check_target(plan: InstallPlan, io: StepContext) -> CheckedTarget:
    """The disk-image file's path, or the disk: resolved, pinned serial matched, eligible (never the live
    medium, the running system, a mounted or too small disk)."""
    target = plan.target
    if target.image_file is not None:
        check_image_file_path(target.image_file, overwrite=target.overwrite)
        _not_the_image(target.image_file, plan.image.ref)
        return CheckedTarget(target.image_file.absolute(), None)
    if target.device is None:
        raise InputError("the target is given by disk rules that were not resolved to one disk",
                         hint="resolve the plan first (nbc-tui answers validate FILE shows the disk it picks)")
    disk = _eligible(resolve_disk(target.device), target, plan.layout)
    io.message(f"Disk: {disk_line(disk)}")
    return CheckedTarget(Path(disk.device), disk)


def _not_the_image(path: Path, ref: str) -> None:
    """The disk-image file is made anew over its path: never over the archive or layout being installed."""
    try:
        parsed = parse_reference(ref)
    except NbcError:
        return  # the image's own check says what is wrong with the reference
    if not isinstance(parsed, OciLayoutRef | OciArchiveRef):
        return
    target, image = path.resolve(), parsed.path.resolve()
    if target == image or target.is_relative_to(image):
        raise InputError(f"the disk-image file {path} would overwrite the image being installed ({ref})",
                         hint="choose another path for the disk-image file")


def _eligible(disk: Disk, target: Target, layout: Layout) -> Disk:
    if target.serial is not None and disk.serial != target.serial:
        raise InputError(
            f"{disk.device} has serial {disk.serial or '(none)'}, but the plan is pinned to serial {target.serial}:"
            " nothing was written", hint="check that this is the machine and disk the plan was made for")
    problems = refusals(disk, min_size=layout.min_disk_size)
    if problems:
        raise InputError(
            f"{disk.device} cannot be installed to: " + "; ".join(p.message for p in problems),
            details={"device": disk.device, "refusals": [p.model_dump(mode="json") for p in problems]},
        )
    return disk


def check_room_for_image_file(target: CheckedTarget, needed: int) -> None:
    """A disk-image file grows as the image is written: its folder must have room for it."""
    free = shutil.disk_usage(target.path.parent).free
    if free < needed + IMAGE_FILE_SPARE:
        raise InputError(f"not enough free space in {target.path.parent} for the image file "
                         f"(about {human(needed)} needed, {human(free)} free)")


TPM2_IN_IMAGE_FILE = ("the TPM2 key of a disk-image file is sealed to this machine's TPM: the file unlocks by "
                      "itself only when it boots on this machine; anywhere else (a VM, another computer) it asks "
                      "for the passphrase")


def check_encryption(enc: Encryption, *, recovery_key_shown: bool, after: AfterInstall, image_file: bool,
                     io: StepContext) -> SecretStr:
    """Read the passphrase (registered with the redactor at once), and refuse before anything is written when
    this machine cannot encrypt, or the recovery key would not outlive the install (``after`` is what the
    machine does next; ``image_file`` says the target is a disk-image file). A dry run only warns about what
    this machine lacks."""
    passphrase = enc.passphrase if enc.passphrase_file is None else read_secret_file(enc.passphrase_file,
                                                                                      "LUKS passphrase")
    if passphrase is None:
        raise InputError("encryption needs a passphrase: nothing was written")
    io.ctx.redactor.add(passphrase)
    if len(passphrase.get_secret_value()) < MIN_PASSPHRASE:
        raise InputError(f"the LUKS passphrase must be at least {MIN_PASSPHRASE} characters: nothing was written")
    try:
        luks.check_can_encrypt(ctx=None if io.ctx.dry_run else io.ctx)
        if enc.tpm2:
            tpm.check_can_enroll()
    except InputError as exc:
        if not io.ctx.dry_run:
            raise
        io.warn(f"a real install would be refused on this machine: {exc.message}")
    if enc.tpm2 and enc.recovery_key_file is None and not recovery_key_shown:
        raise InputError("TPM2 unlock needs somewhere to put the recovery key: nothing was written",
                         hint="give a recovery key file (--recovery-key-file FILE)")
    if enc.recovery_key_file is not None and (problem := tpm.recovery_key_file_problem(enc.recovery_key_file)):
        raise InputError(f"{problem}: nothing was written", hint=tpm.RECOVERY_KEY_HINT,
                         details={"answer_key": ["encryption", "recovery_key_file"]})
    if (enc.recovery_key_file is not None and after != "none" and on_live_system()
            and tpm.recovery_key_in_ram(enc.recovery_key_file)):
        raise InputError(
            f"the recovery key would be written to {enc.recovery_key_file}, in the live system's memory, and lost "
            f"at the {after} the answers ask for: nothing was written",
            hint='give a recovery key file on a disk that stays (a USB stick mounted read-write), or after = '
                 '"none" and copy the key off before restarting',
            details={"answer_key": ["encryption", "recovery_key_file"]})
    if enc.tpm2 and image_file:
        io.warn(TPM2_IN_IMAGE_FILE)
    if luks.fast_pbkdf_requested():
        io.warn(f"TEST ONLY: {luks.FAST_PBKDF_ENV}=1 makes weak LUKS keyslots (PBKDF2, 1000 iterations); "
                "never use it for a real disk")
    return passphrase


def confirm_wipe(target: CheckedTarget, plan: InstallPlan, confirm: Confirm | None) -> None:
    """A real disk is erased only after an explicit yes, and only if it is still the disk that was checked (not
    swapped for another at the same path, still eligible)."""
    if target.disk is None:
        return
    if confirm is None or not confirm(destruction_warning(target.disk)):
        raise InputError("not confirmed: nothing was written", hint="answer yes, or pass --yes")
    now = resolve_disk(target.path)
    changed = identity_changed(target.disk, now)
    if changed:
        raise InputError(f"{target.path} changed since it was checked: {changed}",
                         hint="check the disk and start again")
    _eligible(now, plan.target, plan.layout)


# -- writing ----------------------------------------------------------------------------------------

def wipe(target: CheckedTarget, image_size: int, io: StepContext) -> None:
    """Erase a disk's old signatures, or create the disk-image file (sparse; a failed install leaves it half
    written, like nbc's). The file is its owner's alone (0600): it will hold the system's password hashes. It
    is made anew, never through a link put in its place."""
    path = target.path
    if target.disk is None:
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, image_size)
        finally:
            os.close(fd)
        io.message(f"Created {path} ({human(image_size)}, sparse, readable by its owner only)")
        return
    partition.wipe_disk(path, ctx=io.ctx, partition_nodes=partition.existing_partition_nodes(path))


def create_partitions(target: CheckedTarget, layout: Layout, io: StepContext) -> Partitions:
    specs = partition.nbc_layout(layout)
    partition.create_partitions(target.path, specs, ctx=io.ctx)
    table = partition.read_partition_table(target.path, ctx=io.ctx)
    if [p.number for p in table] != [spec.number for spec in specs]:
        raise NbcError(f"the new partition table has partitions {[p.number for p in table]}, not 1-4")
    numbered = io.hold(partition.partition_devices(target.path, table, ctx=io.ctx))
    nodes = {spec.role: numbered[spec.number] for spec in specs}
    for role, node in nodes.items():
        io.message(f"{role}: {node}", verbose=True)
    return Partitions(nodes)


def encrypt(partitions: Partitions, passphrase: SecretStr, io: StepContext) -> Encrypted:
    """LUKS2 on root1, root2 and var, then open them as nbc's mappers (closed again by the stack)."""
    uuids = {}
    for role in ENCRYPTED_ROLES:
        raw = partitions.nodes[role]
        io.message(f"Encrypting {role} ({raw}) with LUKS2")
        luks.luks_format(raw, passphrase, ctx=io.ctx)
        uuids[role] = luks.luks_uuid(raw, ctx=io.ctx)
    mappers = {}
    for role in ENCRYPTED_ROLES:
        mappers[role] = io.hold(luks.opened(partitions.nodes[role], MAPPER_NAMES[role], passphrase, ctx=io.ctx))
        io.message(f"{role}: LUKS {uuids[role]} open as {mappers[role]}", verbose=True)
    return Encrypted(uuids, mappers)


def enroll_tpm(partitions: Partitions, enc: Encryption, passphrase: SecretStr,
               on_recovery_key: tpm.RecoveryKeyHandler | None, io: StepContext) -> None:
    """TPM2 keyslots and one recovery key, before the image is written (nbc enrolled after the bootloader)."""
    pcrs = "no PCRs" if not enc.tpm2_pcrs else "PCR " + "+".join(str(p) for p in enc.tpm2_pcrs)
    raws = [partitions.nodes[role] for role in ENCRYPTED_ROLES]
    with key_file(passphrase, name="luks") as unlock:
        for index, (role, raw) in enumerate(zip(ENCRYPTED_ROLES, raws, strict=True), start=1):
            io.message(f"  [{index}/{len(raws)}] Enrolling TPM2 for {role} ({raw}), {pcrs}")
            tpm.enroll_tpm2(raw, unlock_key_file=unlock, pcrs=enc.tpm2_pcrs, ctx=io.ctx)
        recovery = tpm.enroll_recovery_key(raws, unlock_key_file=unlock, ctx=io.ctx)
    for role, raw in zip(ENCRYPTED_ROLES, raws, strict=True):
        if not tpm.has_tpm2_token(raw, ctx=io.ctx):
            raise NbcError(f"{role}: no systemd-tpm2 token in the LUKS header after enrolling the TPM2")
    if enc.recovery_key_file is not None:
        tpm.write_recovery_key(enc.recovery_key_file, recovery)
        io.message(f"Recovery key written to {enc.recovery_key_file} (keep it apart from this machine)")
    if on_recovery_key is not None:
        on_recovery_key(recovery)


def make_filesystems(partitions: Partitions, encrypted: Encrypted | None, layout: Layout,
                     io: StepContext) -> Filesystems:
    """The ESP (FAT32, label UEFI) and nbc's filesystems on root1, root2 and var (on their mappers when
    encrypted), each with a UUID chosen here."""
    devices = {**partitions.nodes, **(encrypted.mappers if encrypted else {})}
    volume_id = new_volume_id()
    esp = Esp(devices[ESP], ctx=io.ctx)
    esp.format(volume_id)
    uuids = {ESP: esp_uuid(volume_id)}
    for role in ENCRYPTED_ROLES:  # every role but the ESP
        uuids[role] = str(uuid.uuid4())
        make_filesystem(devices[role], layout.filesystem, role, uuids[role], ctx=io.ctx)
    return Filesystems(devices, uuids, esp)


def mount_slot(filesystems: Filesystems, slot: Slot, io: StepContext) -> Path:
    """The slot's root at a fresh mount point under /run/nbc-tui, with var mounted inside it."""
    root = io.hold(mounted(filesystems.devices[slot.role], RUN_DIR / f"install-{os.getpid()}", ctx=io.ctx))
    (root / "var").mkdir(mode=0o755, exist_ok=True)
    io.hold(mounted(filesystems.devices[VAR], root / "var", ctx=io.ctx))
    return root

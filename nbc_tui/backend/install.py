"""The install: an ordered list of steps over one cleanup stack and one event stream.

Every step that acquires something (a loop device, a mount, a lock) pushes its release onto the stack
right after it succeeds; the stack unwinds on success, failure and Ctrl-C alike, so a failed install
leaves nothing mounted or attached and the same command can simply be run again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import SecretStr

from .. import __version__
from . import disks
from .atomic import write_atomically
from .boot import bootloader as boot
from .boot.cmdline import LuksCmdline, kernel_cmdline
from .boot.efivars import register_efi_boot_entry
from .boot.kernel import SlotKernel, find_kernel
from .errors import Cancelled, InputError, NbcError
from .events import (
    CompleteEvent,
    Emit,
    ErrorEvent,
    MessageEvent,
    StepEvent,
    WarningEvent,
    progress_event,
)
from .image.cache import CachedImage
from .image.extract import extract_image
from .image.opener import open_image
from .image.scan import ImageInventory, scan_image
from .image.source import ImageSource
from .locks import SYSTEM_LOCK, locked
from .logfile import TARGET_LOG_FILE
from .machine import on_live_system
from .mounts import mounted
from .plan import MIN_PASSPHRASE, InstallPlan
from .runner import RunContext, run, which
from .secret_files import key_file, read_secret_file
from .sizes import human
from .storage import luks, partition, tpm
from .storage.esp import Esp, esp_uuid, new_volume_id
from .storage.filesystems import make_filesystem, read_fs_label, read_fs_uuid
from .system import dracut
from .system import rootfs as target
from .system.initramfs_needs import image_tpm2_problem, initramfs_gaps, initramfs_member_names, unlock_support_problem
from .system.slots import ENCRYPTED_ROLES, MAPPER_NAMES, Slot
from .system.state import EncryptionState, SystemConfig, local_now_rfc3339, write_system_config

log = logging.getLogger("nbc_tui")
T = TypeVar("T")

MOUNT_BASE = Path("/run/nbc-tui")
# Tools every install runs; more are added by the plan (mkfs of its filesystem, openssl for a password).
BASE_TOOLS = ("sgdisk", "sfdisk", "wipefs", "losetup", "blkid", "mount", "umount", "cp", "chroot",
              "mkfs.vfat", "mmd", "mcopy", "mdir", "mtype")
# Headroom over the image's own size that the root slot must have (metadata, the new initramfs).
ROOT_HEADROOM = 1.15


@dataclass
class InstallResult:
    device: str
    image_ref: str
    image_digest: str
    bootloader: str
    filesystem: str
    step_seconds: dict[str, float]


# Called with a plain-words description of what will be destroyed; returns True to go on.
Confirm = Callable[[str], bool]


@dataclass
class Install:
    """The state of one install as it goes, shared by the steps."""

    plan: InstallPlan
    ctx: RunContext
    emit: Emit
    confirm: Confirm | None
    stack: contextlib.ExitStack
    source: ImageSource | None = None
    inventory: ImageInventory | None = None
    disk_path: Path | None = None
    checked_disk: disks.Disk | None = None
    devices: dict[str, Path] = field(default_factory=dict)
    fs_uuids: dict[str, str] = field(default_factory=dict)
    esp_volume_id: str = ""
    root: Path | None = None
    kernel: SlotKernel | None = None
    bootloader_kind: str = ""
    log_snapshot: Callable[[], bytes] | None = None
    staged: CachedImage | None = None
    """The staged-install cache entry the image comes from, for offline installs."""
    passphrase: SecretStr | None = None
    """The LUKS passphrase (read in preflight, registered with the redactor at once)."""
    partitions: dict[str, Path] = field(default_factory=dict)
    """The raw partitions of root1, root2 and var when encrypted (``devices`` then holds the mappers)."""
    luks_uuids: dict[str, str] = field(default_factory=dict)
    on_recovery_key: tpm.RecoveryKeyHandler | None = None

    # -- helpers ---------------------------------------------------------------------------------
    def message(self, text: str, *, verbose: bool = False) -> None:
        log.info("%s", text)
        self.emit(MessageEvent(message=text, details={"verbose": True} if verbose else None))

    def warn(self, text: str) -> None:
        log.warning("%s", text)
        self.emit(WarningEvent(message=text))

    def hold(self, cm: contextlib.AbstractContextManager[T]) -> T:
        """Enter ``cm`` and push its exit onto the stack. A failing release becomes a warning: it never
        masks the error that made the stack unwind."""
        value = cm.__enter__()

        def release(*exc_info: object) -> bool:
            try:
                cm.__exit__(*exc_info)  # type: ignore[arg-type]
            except Exception as exc:
                self.warn(f"cleanup: {exc}")
            return False

        self.stack.push(release)
        return value

    def progress(self, label: str) -> Callable[[int, int], None]:
        started = time.monotonic()
        last = [0.0]

        def report(done: int, total: int) -> None:
            self.ctx.check_cancelled()
            now = time.monotonic()
            if now - last[0] < 0.5 and done < total:
                return
            last[0] = now
            self.emit(progress_event(label, done, total, done / max(now - started, 1e-6)))

        return report


# -- steps ---------------------------------------------------------------------------------------

def preflight(inst: Install) -> None:
    """Check everything that can be checked before a single byte is written."""
    plan = inst.plan
    if os.geteuid() != 0 and not inst.ctx.dry_run:
        raise InputError("nbc-tui install must run as root", hint="run it with sudo, or as root")
    _check_tools(plan)
    if plan.encryption is not None:
        _check_encryption(inst)
    if plan.target.is_image_file:
        _check_image_file(inst)
    else:
        _check_disk(inst)
    inst.message(f"Image: {plan.image.ref}")
    inst.source = _open_source(inst)
    # A daemon's export is spooled to disk: closing the source removes it.
    inst.stack.callback(inst.source.close)
    inst.message(f"Digest: {inst.source.manifest_digest}", verbose=True)
    inst.inventory = inv = scan_image(inst.source, on_progress=inst.progress("Checking image"),
                                      cancel=inst.ctx.cancel)
    _check_image(inst, inv)
    pretty = inv.os_release.get("PRETTY_NAME") or inv.os_release.get("NAME") or "Linux"
    inst.message(f"Operating system: {pretty}, kernel {_newest_kernel(inv)}")
    inst.message(f"Layout: {plan.layout.describe()}")


def _check_encryption(inst: Install) -> None:
    """Read the passphrase, and refuse before anything is written when this machine cannot encrypt."""
    enc = inst.plan.encryption
    assert enc is not None
    passphrase = enc.passphrase
    if enc.passphrase_file is not None:
        passphrase = read_secret_file(enc.passphrase_file, "LUKS passphrase")
    assert passphrase is not None
    inst.ctx.redactor.add(passphrase)
    if len(passphrase.get_secret_value()) < MIN_PASSPHRASE:
        raise InputError(f"the LUKS passphrase must be at least {MIN_PASSPHRASE} characters: nothing was written")
    inst.passphrase = passphrase
    try:
        luks.check_can_encrypt(ctx=None if inst.ctx.dry_run else inst.ctx)
        if enc.tpm2:
            tpm.check_can_enroll()
    except InputError as exc:
        if not inst.ctx.dry_run:
            raise
        inst.warn(f"a real install would be refused on this machine: {exc.message}")
    if enc.tpm2 and enc.recovery_key_file is None and inst.on_recovery_key is None:
        raise InputError("TPM2 unlock needs somewhere to put the recovery key: nothing was written",
                         hint="give a recovery key file (--recovery-key-file FILE)")
    if enc.recovery_key_file is not None and not enc.recovery_key_file.absolute().parent.is_dir():
        raise InputError(f"the directory of the recovery key file {enc.recovery_key_file} does not exist")
    if luks.fast_pbkdf_requested():
        inst.warn(f"TEST ONLY: {luks.FAST_PBKDF_ENV}=1 makes weak LUKS keyslots (PBKDF2, 1000 iterations); "
                  "never use it for a real disk")


def _open_source(inst: Install) -> ImageSource:
    if inst.plan.image.staged_digest:
        from .image.cache import CacheKind, find_cached

        inst.staged = find_cached(CacheKind.INSTALL, inst.plan.image.staged_digest)
        return inst.staged.open_source()
    return open_image(inst.plan.image.ref)


def _newest_kernel(inv: ImageInventory) -> str:
    return inv.kernels[0].version  # the scan lists kernels newest first (the one find_kernel picks)


def _check_tools(plan: InstallPlan) -> None:
    tools = [*BASE_TOOLS, "mkfs.ext4" if plan.layout.filesystem == "ext4" else "mkfs.btrfs"]
    if plan.encryption is not None:
        tools.append("cryptsetup")
        if plan.encryption.tpm2:
            tools.append("systemd-cryptenroll")
    if plan.system.root_password_file or plan.system.root_password:
        tools.append("openssl")
    missing = [t for t in tools if which(t) is None]
    if missing:
        raise InputError(f"missing tools: {', '.join(missing)}",
                         hint="install them (on Debian: tools/install-deps.sh lists the packages)")


def _check_image_file(inst: Install) -> None:
    t = inst.plan.target
    path = t.image_file.absolute()  # type: ignore[union-attr]
    if path.exists() or path.is_symlink():
        if not path.is_file() or path.is_symlink():
            raise InputError(f"{path} exists and is not a regular file")
        if not t.overwrite:
            raise InputError(f"image file {path} already exists", hint="use --yes to overwrite it")
        users = partition.loop_devices_backed_by(path)
        if users:
            raise InputError(f"image file {path} is in use by {', '.join(users)}",
                             hint="detach those loop devices (losetup -d) first")
    if not path.parent.is_dir():
        raise InputError(f"the directory {path.parent} does not exist")
    inst.disk_path = path


def _check_disk(inst: Install) -> None:
    plan = inst.plan
    if not plan.target.is_resolved:
        raise InputError("the target is given by disk rules that were not resolved to one disk",
                         hint="resolve the plan first (nbc-tui answers validate FILE shows the disk it picks)")
    disk = disks.resolve_disk(plan.target.device)  # type: ignore[arg-type]
    _check_serial_pin(plan, disk)
    problems = disks.refusals(disk, min_size=plan.layout.min_disk_size)
    if problems:
        raise InputError(
            f"{disk.device} cannot be installed to: " + "; ".join(p.message for p in problems),
            details={"device": disk.device, "refusals": [p.model_dump(mode="json") for p in problems]},
        )
    inst.disk_path = Path(disk.device)
    inst.checked_disk = disk
    inst.message(f"Disk: {disk.device} {disk.model or ''} {disk.serial or ''} {human(disk.size)}".replace("  ", " "))


def _check_serial_pin(plan: InstallPlan, disk: disks.Disk) -> None:
    pin = plan.target.serial
    if pin is not None and disk.serial != pin:
        raise InputError(
            f"{disk.device} has serial {disk.serial or '(none)'}, but the plan is pinned to serial {pin}: "
            "nothing was written", hint="check that this is the machine and disk the plan was made for")


def _check_image(inst: Install, inv: ImageInventory) -> None:
    plan, ref = inst.plan, inst.plan.image.ref
    if not inv.kernels:
        raise InputError(f"the image {ref} has no kernel",
                         hint="a bootable image carries /usr/lib/modules/<version>/vmlinuz")
    kver = _newest_kernel(inv)
    if not any(k.initramfs for k in inv.kernels if k.version == kver):
        raise InputError(f"the image {ref} has no initramfs for kernel {kver}",
                         hint=f"a bootable image carries /usr/lib/modules/{kver}/initramfs.img")
    if not inv.initramfs_has_etc_overlay.get(kver) and not inv.has_dracut:
        raise InputError(
            f"the image {ref} cannot mount /etc as an overlay: its initramfs lacks the etc-overlay module "
            "and it has no dracut to add it", hint="install dracut in the image")
    if plan.encryption is not None:
        _check_unlock_support(plan, inv)
    if plan.boot.bootloader == "systemd-boot" and not inv.has_systemd_boot_efi:
        raise InputError(f"the image {ref} has no systemd-boot EFI binary",
                         hint="choose --bootloader grub, or add systemd-boot (systemd-boot-efi) to the image")
    need = int(inv.uncompressed_bytes * ROOT_HEADROOM)
    if need > plan.layout.root_size:
        raise InputError(
            f"the image needs about {human(need)} but a root slot is {human(plan.layout.root_size)}",
            hint="give a larger --root-size")
    if plan.target.is_image_file:
        free = shutil.disk_usage(inst.disk_path.parent).free  # type: ignore[union-attr]
        if free < need + 512 * 1024 * 1024:
            raise InputError(f"not enough free space in {inst.disk_path.parent} for the image file "
                             f"(about {human(need)} needed, {human(free)} free)")


def _check_unlock_support(plan: InstallPlan, inv: ImageInventory) -> None:
    """The image must be able to unlock its encrypted root at boot, and with TPM2 reach the TPM: checked on
    the scan's inventory, before the wipe. The shipped initramfs counts only when it is kept (it lacks
    nothing the plan needs); otherwise what boots is the one dracut rebuilds from the image."""
    assert plan.encryption is not None
    members = inv.initramfs_members.get(_newest_kernel(inv), frozenset())
    gaps = _gaps(plan, members)
    shipped = None if gaps else members
    problems = [unlock_support_problem(inv.exists, inv.matches, initramfs_members=shipped)]
    if plan.encryption.tpm2:
        problems.append(image_tpm2_problem(inv.exists, inv.matches, initramfs_members=shipped))
    problem = "; ".join(p for p in problems if p)
    if problem and gaps:
        problem += f" (its initramfs must be rebuilt: it lacks {' and '.join(gaps)})"
    if not problem and gaps and not inv.has_dracut:
        problem = f"its initramfs lacks {' and '.join(gaps)}, and the image has no dracut to rebuild it"
    if problem:
        raise InputError(f"the image cannot boot an encrypted disk: {problem}",
                         hint="add cryptsetup (and for TPM2 tpm2-tools and libtss2) to the image, or install "
                              "without encryption")


def _gaps(plan: InstallPlan, members: AbstractSet[str]) -> list[str]:
    enc = plan.encryption
    return initramfs_gaps(members, encrypted=enc is not None, tpm2=bool(enc and enc.tpm2))


def confirm_wipe(inst: Install) -> None:
    """A real disk is erased only after an explicit yes, and only if it is still the disk that was checked."""
    if inst.plan.target.is_image_file:
        return
    assert inst.disk_path and inst.checked_disk
    what = describe_destruction(inst.checked_disk)
    if inst.confirm is None or not inst.confirm(what):
        raise InputError("not confirmed: nothing was written", hint="answer yes, or pass --yes")
    # Right before the wipe: the same disk (not swapped for another at the same path), still eligible.
    now = disks.resolve_disk(inst.disk_path)
    _check_serial_pin(inst.plan, now)
    changed = disks.identity_changed(inst.checked_disk, now)
    if changed:
        raise InputError(f"{inst.disk_path} changed since it was checked: {changed}",
                         hint="check the disk and start again")
    problems = disks.refusals(now, min_size=inst.plan.layout.min_disk_size)
    if problems:
        raise InputError("; ".join(p.message for p in problems))


def describe_destruction(disk: disks.Disk) -> str:
    """What is on the disk now, in plain words, for the confirmation question."""
    lines = [f"ALL DATA on {disk.device} ({disk.model or 'unknown model'}, serial {disk.serial or 'unknown'}, "
             f"{human(disk.size)}) will be erased."]
    if disk.os_hint:
        lines.append(f"  It holds: {disk.os_hint}")
    if disk.fstype:
        lines.append(f"  {disk.device}: a {disk.fstype} filesystem" + (f" labelled {disk.label!r}" if disk.label
                                                                     else ""))
    for p in disk.partitions:
        desc = " ".join(x for x in (p.fstype, repr(p.label) if p.label else "", p.partlabel or "") if x)
        lines.append(f"  {p.device}: {human(p.size)} {desc}".rstrip())
    return "\n".join(lines)


def wipe(inst: Install) -> None:
    path = inst.disk_path
    assert path is not None
    if inst.plan.target.is_image_file:
        if path.exists():
            path.unlink()
        # A sparse file; if the install fails it stays (as a half-written image), like nbc's.
        with path.open("wb") as f:
            f.truncate(inst.plan.target.image_size)
        inst.message(f"Created {path} ({human(inst.plan.target.image_size)}, sparse)")
        return
    partition.wipe_disk(path, ctx=inst.ctx, partition_nodes=partition.existing_partition_nodes(path))


def create_partitions(inst: Install) -> None:
    assert inst.disk_path is not None
    specs = partition.nbc_layout(inst.plan.layout)
    partition.create_partitions(inst.disk_path, specs, ctx=inst.ctx)
    table = partition.read_partition_table(inst.disk_path, ctx=inst.ctx)
    if [p.number for p in table] != [1, 2, 3, 4]:
        raise NbcError(f"the new partition table has partitions {[p.number for p in table]}, not 1-4")
    nodes = inst.hold(partition.partition_devices(inst.disk_path, table, ctx=inst.ctx))
    for spec in specs:
        inst.devices[spec.role] = nodes[spec.number]
        inst.message(f"{spec.role}: {nodes[spec.number]}", verbose=True)


def encrypt_partitions(inst: Install) -> None:
    """LUKS2 on root1, root2 and var, then open them as nbc's mappers (closed again by the stack)."""
    assert inst.passphrase is not None
    for role in ENCRYPTED_ROLES:
        raw = inst.devices[role]
        inst.partitions[role] = raw
        inst.message(f"Encrypting {role} ({raw}) with LUKS2")
        luks.luks_format(raw, inst.passphrase, ctx=inst.ctx)
        inst.luks_uuids[role] = luks.luks_uuid(raw, ctx=inst.ctx)
    for role in ENCRYPTED_ROLES:
        name = MAPPER_NAMES[role]
        inst.devices[role] = inst.hold(luks.opened(inst.partitions[role], name, inst.passphrase, ctx=inst.ctx))
        inst.message(f"{role}: LUKS {inst.luks_uuids[role]} open as {inst.devices[role]}", verbose=True)


def enroll_tpm(inst: Install) -> None:
    """TPM2 keyslots and one recovery key, before the image is written (nbc enrolled after the bootloader)."""
    enc = inst.plan.encryption
    assert enc is not None and inst.passphrase is not None
    pcrs = "no PCRs" if not enc.tpm2_pcrs else "PCR " + "+".join(str(p) for p in enc.tpm2_pcrs)
    raws = [inst.partitions[role] for role in ENCRYPTED_ROLES]
    with key_file(inst.passphrase, name="luks") as unlock:
        for index, role in enumerate(ENCRYPTED_ROLES, start=1):
            inst.message(f"  [{index}/{len(raws)}] Enrolling TPM2 for {role} ({inst.partitions[role]}), {pcrs}")
            tpm.enroll_tpm2(inst.partitions[role], unlock_key_file=unlock, pcrs=enc.tpm2_pcrs, ctx=inst.ctx)
        recovery = tpm.enroll_recovery_key(raws, unlock_key_file=unlock, ctx=inst.ctx)
    for role in ENCRYPTED_ROLES:
        if not tpm.has_tpm2_token(inst.partitions[role], ctx=inst.ctx):
            raise NbcError(f"{role}: no systemd-tpm2 token in the LUKS header after enrolling the TPM2")
    if enc.recovery_key_file is not None:
        tpm.write_recovery_key(enc.recovery_key_file, recovery)
        inst.message(f"Recovery key written to {enc.recovery_key_file} (keep it apart from this machine)")
    if inst.on_recovery_key is not None:
        inst.on_recovery_key(recovery)


def format_partitions(inst: Install) -> None:
    fs = inst.plan.layout.filesystem
    inst.esp_volume_id = new_volume_id()
    Esp(inst.devices["esp"], ctx=inst.ctx).format(inst.esp_volume_id)
    inst.fs_uuids["esp"] = esp_uuid(inst.esp_volume_id)
    for role in ("root1", "root2", "var"):
        fs_uuid = str(uuid.uuid4())
        make_filesystem(inst.devices[role], fs, role, fs_uuid, ctx=inst.ctx)
        inst.fs_uuids[role] = fs_uuid


def mount_partitions(inst: Install) -> None:
    base = MOUNT_BASE / f"install-{os.getpid()}"
    root = inst.hold(mounted(inst.devices["root1"], base, ctx=inst.ctx))
    (root / "var").mkdir(mode=0o755, exist_ok=True)
    inst.hold(mounted(inst.devices["var"], root / "var", ctx=inst.ctx))
    inst.root = root


def extract(inst: Install) -> None:
    assert inst.source and inst.root
    stats = extract_image(inst.source, inst.root, ctx=inst.ctx, on_progress=inst.progress("Extracting"))
    inst.message(f"Extracted {stats.entries} entries, {human(stats.bytes_out)} in {stats.seconds:.1f} s")


def configure(inst: Install) -> None:
    assert inst.root and inst.inventory
    root, plan, inv = inst.root, inst.plan, inst.inventory
    target.verify_extraction(root)
    inst.kernel = find_kernel(root)
    inst.bootloader_kind = boot.resolve_bootloader(plan.boot.bootloader, root)
    target.ensure_system_dirs(root)
    target.write_fstab(root, target.fstab_text(
        esp_uuid=inst.fs_uuids["esp"], var_uuid=inst.fs_uuids["var"],
        filesystem=plan.layout.filesystem, systemd_version=inv.systemd_version))
    target.reset_machine_id(root, inst.warn)
    password = plan.system.root_password
    if plan.system.root_password_file:
        password = read_secret_file(plan.system.root_password_file, "root password")
    if password is not None:
        inst.ctx.redactor.add(password)
        target.set_root_password(root, password, ctx=inst.ctx)
        inst.message("Root password set")
    elif plan.system.root_password_hash:
        target.set_root_password_hash(root, plan.system.root_password_hash)
        inst.message("Root password set (from its hash)")
    if plan.system.ssh_authorized_keys:
        keys_at = target.write_authorized_keys(root, plan.system.ssh_authorized_keys)
        inst.message(f"{len(plan.system.ssh_authorized_keys)} SSH key(s) for root in "
                     f"/{keys_at.relative_to(root)}")
    target.write_tmpfiles_marker(root)
    if plan.encryption is not None:
        luks.write_crypttab(root, luks.crypttab_text(inst.luks_uuids, active=Slot.A,
                                                     tpm2=plan.encryption.tpm2))
        inst.message("Wrote /etc/crypttab (root2 noauto)", verbose=True)
    # /etc is final from here on: the overlay's lower layer is a copy of it.
    target.populate_etc_lower(root, ctx=inst.ctx)
    target.create_overlay_dirs(root, inst.warn)
    target.save_pristine_etc(root, ctx=inst.ctx)
    # What an update compares with the registry: the index digest of a multi-platform image.
    if inst.staged:
        digest = inst.staged.index_digest or inst.staged.image_digest
    else:
        digest = inst.source.index_digest or inst.source.manifest_digest  # type: ignore[union-attr]
    config = SystemConfig(
        image_ref=plan.image.ref, image_digest=digest, device=str(inst.disk_path), disk_id=_disk_id(inst),
        install_date=local_now_rfc3339(), kernel_args=list(plan.boot.kernel_args),
        bootloader_type=inst.bootloader_kind,  # type: ignore[arg-type]
        filesystem_type=plan.layout.filesystem,
        encryption=_encryption_state(inst),
        image_manifest_digest=inst.source.manifest_digest,  # type: ignore[union-attr]
        installed_by=f"nbc-tui {__version__}",
    )
    path = write_system_config(root, config)
    inst.message(f"Wrote {path.relative_to(root)}", verbose=True)


def _encryption_state(inst: Install) -> EncryptionState | None:
    enc = inst.plan.encryption
    if enc is None:
        return None
    return EncryptionState(enabled=True, tpm2=enc.tpm2, root1_luks_uuid=inst.luks_uuids["root1"],
                           root2_luks_uuid=inst.luks_uuids["root2"], var_luks_uuid=inst.luks_uuids["var"])


def _disk_id(inst: Install) -> str:
    if inst.plan.target.is_image_file:
        return ""
    return disks.disk_id(inst.checked_disk) or "" if inst.checked_disk else ""


def build_initramfs(inst: Install) -> None:
    assert inst.root and inst.kernel and inst.inventory
    plan, kver = inst.plan, inst.kernel.version
    # The scan read the very file extraction wrote (same verified layers, same final tree).
    missing = _gaps(plan, inst.inventory.initramfs_members.get(kver, frozenset()))
    if not missing:
        inst.message("The image's initramfs already has the etc-overlay module"
                     + (" and can unlock LUKS" if plan.encryption else ""))
        return
    inst.message(f"The image's initramfs lacks {' and '.join(missing)}", verbose=True)
    if not (inst.root / dracut.MODULE_DIR / "module-setup.sh").exists():
        dracut.install_etc_overlay_module(inst.root)
    enc = plan.encryption
    modules = dracut.modules_to_add(crypt=enc is not None, tpm2=enc is not None and enc.tpm2,
                                    image_matches=inst.inventory.matches)
    inst.message(f"Regenerating the initramfs of kernel {kver} with dracut modules {', '.join(modules)}")
    initramfs = dracut.regenerate_initramfs(inst.root, kver, ctx=inst.ctx, modules=modules)
    if not inst.ctx.dry_run:
        still = _gaps(plan, initramfs_member_names(initramfs))
        if still:
            raise NbcError(f"the regenerated initramfs of kernel {kver} still lacks {' and '.join(still)}",
                           hint="check the image's dracut modules (crypt, tpm2-tss) and their requirements")
    inst.kernel = SlotKernel(kver, inst.kernel.vmlinuz, initramfs)


def install_bootloader(inst: Install) -> None:
    assert inst.root and inst.kernel
    plan = inst.plan
    encryption = None
    if plan.encryption is not None:
        encryption = LuksCmdline(root_luks_uuid=inst.luks_uuids["root1"], slot=Slot.A,
                                 var_luks_uuid=inst.luks_uuids["var"], tpm2=plan.encryption.tpm2)
    options = kernel_cmdline(root_uuid=inst.fs_uuids["root1"], esp_uuid=inst.fs_uuids["esp"],
                             var_uuid=inst.fs_uuids["var"], filesystem=plan.layout.filesystem,
                             kernel_args=plan.boot.kernel_args, encryption=encryption)
    title = boot.os_title(inst.root)
    inst.message(f"Bootloader: {inst.bootloader_kind}; kernel command line: {' '.join(options)}")
    boot.install_bootloader(inst.bootloader_kind, target_root=inst.root,  # type: ignore[arg-type]
                            esp=Esp(inst.devices["esp"], ctx=inst.ctx), esp_uuid=inst.fs_uuids["esp"],
                            slot=Slot.A, kernel=inst.kernel, options=options, title=title, ctx=inst.ctx,
                            warn=inst.warn)
    not_registered = register_efi_boot_entry(inst.disk_path, 1, title,  # type: ignore[arg-type]
                                             is_image_file=plan.target.is_image_file, ctx=inst.ctx)
    # The removable-media path EFI/BOOT/BOOTX64.EFI boots the disk either way.
    inst.message(f"EFI boot entry: {not_registered or 'created'}", verbose=not_registered is not None)


def verify(inst: Install) -> None:
    """Read back what was written: the table, the labels and UUIDs, the ESP's boot files, the state."""
    assert inst.disk_path and inst.root and inst.kernel
    table = partition.read_partition_table(inst.disk_path, ctx=inst.ctx)
    names = [p.name for p in table]
    if names != ["boot", "root1", "root2", "var"]:
        raise NbcError(f"partition names read back as {names}")
    for role in ("root1", "root2", "var"):
        label = read_fs_label(inst.devices[role], ctx=inst.ctx)
        fs_uuid = read_fs_uuid(inst.devices[role], ctx=inst.ctx)
        if label != role or fs_uuid != inst.fs_uuids[role]:
            raise NbcError(f"{role}: label {label!r} and UUID {fs_uuid} read back, expected {role} and "
                           f"{inst.fs_uuids[role]}")
        if role in inst.luks_uuids:
            read_back = luks.luks_uuid(inst.partitions[role], ctx=inst.ctx)
            if read_back != inst.luks_uuids[role]:
                raise NbcError(f"{role}: LUKS UUID {read_back} read back, expected {inst.luks_uuids[role]}")
    esp_files = {f.lower() for f in Esp(inst.devices["esp"], ctx=inst.ctx).files()}
    kver = inst.kernel.version
    for needed in ("EFI/BOOT/BOOTX64.EFI", *Slot.A.kernel_paths(kver)):
        if needed.lower() not in esp_files:
            raise NbcError(f"the ESP lacks {needed} after installing the bootloader")
    inst.message(f"Found {len(table)} partitions: " + ", ".join(f"{p.number} {p.name}" for p in table))


def finish(inst: Install) -> None:
    assert inst.root
    if inst.log_snapshot:
        write_atomically(inst.root / TARGET_LOG_FILE, inst.log_snapshot(), mode=0o600)
    run(["sync"], ctx=inst.ctx)
    if inst.staged and not inst.plan.target.is_image_file:
        # nbc empties the staged-install cache after installing a real disk from it (reference §7.5).
        # Not on the live ISO: its staged images are on the read-only medium, so clearing them frees
        # nothing and every later install in this boot ("Install again", a second disk) would lack them.
        from .image.cache import CacheKind, clear_cache

        if on_live_system():
            inst.message("Kept the staged images: they are part of the live medium and stay available for "
                         "another install")
            return
        try:
            clear_cache(CacheKind.INSTALL)
        except NbcError as exc:
            inst.warn(f"could not empty the staged-install cache: {exc}")


ALL_STEPS: list[tuple[str, str, Callable[[Install], None]]] = [
    ("preflight", "Checking the machine, the disk and the image", preflight),
    ("wipe", "Wiping the disk", wipe),
    ("partition", "Creating partitions", create_partitions),
    ("encrypt", "Encrypting partitions", encrypt_partitions),
    ("enroll-tpm", "Enrolling the TPM2", enroll_tpm),
    ("format", "Formatting partitions", format_partitions),
    ("mount", "Mounting partitions", mount_partitions),
    ("extract", "Extracting container filesystem", extract),
    ("configure", "Configuring system", configure),
    ("initramfs", "Building the initramfs", build_initramfs),
    ("bootloader", "Installing bootloader", install_bootloader),
    ("verify", "Verifying the installation", verify),
    ("finish", "Finishing", finish),
]
# The steps of an install without encryption (what the progress screen lists for such a plan).
STEPS = [s for s in ALL_STEPS if s[0] not in ("encrypt", "enroll-tpm")]


ENCRYPTION_STEPS = ("encrypt", "enroll-tpm")


def steps_for(plan: InstallPlan) -> list[tuple[str, str, Callable[[Install], None]]]:
    """The steps this plan runs: the encryption steps only when it encrypts (TPM2 only with tpm2)."""
    enc = plan.encryption
    return [s for s in ALL_STEPS
            if s[0] not in ENCRYPTION_STEPS
            or (enc is not None and (s[0] == "encrypt" or enc.tpm2))]


def step_titles(plan: InstallPlan) -> list[str]:
    """The titles of the steps this plan runs, in order (the progress screen lists them)."""
    return [title for _key, title, _step in steps_for(plan)]


def run_install(plan: InstallPlan, *, emit: Emit, ctx: RunContext, confirm: Confirm | None = None,
                log_snapshot: Callable[[], bytes] | None = None,
                on_recovery_key: tpm.RecoveryKeyHandler | None = None) -> InstallResult | None:
    """Run the plan. Emits step/progress/message/warning events and ends with ``complete`` or ``error``.

    Returns the result, or None for a dry run. Raises the NbcError after emitting its ``error`` event.
    ``confirm`` is asked before a real disk is wiped; without it a real disk is never wiped.
    ``on_recovery_key`` is called once with the TPM2 recovery key (the TUI shows it).
    """
    timings: dict[str, float] = {}
    steps = steps_for(plan)
    total = len(steps)
    try:
        with _interrupts_become_cancel(ctx), _cleanup_stack(ctx) as stack:
            inst = Install(plan, ctx, emit, confirm, stack, log_snapshot=log_snapshot,
                           on_recovery_key=on_recovery_key)
            for number, (key, title, step) in enumerate(steps, start=1):
                ctx.check_cancelled()
                emit(StepEvent(step=number, total_steps=total, step_name=title))
                started = time.monotonic()
                log.info("step %d/%d: %s", number, total, title)
                step(inst)
                timings[key] = time.monotonic() - started
                if key == "preflight":
                    if ctx.dry_run:
                        _dry_run_summary(inst)
                        break
                    # Preflight only reads; from here on one install or update at a time.
                    inst.hold(locked(SYSTEM_LOCK, what="an install or update"))
                    confirm_wipe(inst)
    except NbcError as exc:
        _emit_error(emit, exc)
        raise
    except KeyboardInterrupt as exc:
        err = Cancelled("Interrupted: the install was stopped", hint="nothing is left mounted; run it again")
        _emit_error(emit, err)
        raise err from exc
    if ctx.dry_run:
        emit(CompleteEvent(message="Dry run complete: nothing was written", details={"dry_run": True}))
        return None
    result = InstallResult(device=str(inst.disk_path), image_ref=plan.image.ref,
                           image_digest=inst.source.manifest_digest,  # type: ignore[union-attr]
                           bootloader=inst.bootloader_kind, filesystem=plan.layout.filesystem,
                           step_seconds=timings)
    emit(CompleteEvent(
        message="Installation complete! You can now boot from this disk.",
        details={"image": result.image_ref, "device": result.device, "image_digest": result.image_digest,
                 "bootloader": result.bootloader, "filesystem": result.filesystem, "slot": Slot.A.value,
                 **({"encryption": {"luks2": True, "tpm2": plan.encryption.tpm2}} if plan.encryption else {}),
                 "step_seconds": {k: round(v, 2) for k, v in timings.items()}},
    ))
    return result


def _dry_run_summary(inst: Install) -> None:
    plan = inst.plan
    target_desc = (f"a new disk-image file {inst.disk_path} ({human(plan.target.image_size)})"
                   if plan.target.is_image_file else f"{inst.disk_path}")
    inst.message(f"[DRY RUN] Would install {plan.image.ref} to {target_desc}")
    for p in partition.nbc_layout(plan.layout):
        size = human(p.size) if p.size else "the rest"
        inst.message(f"[DRY RUN]   p{p.number} {p.name}: {size}")
    inst.message(f"[DRY RUN] Bootloader: {plan.boot.bootloader}; filesystem: {plan.layout.filesystem}")
    enc = plan.encryption
    if enc is not None:
        names = ", ".join(f"p{n} {role} as /dev/mapper/{MAPPER_NAMES[role]}"
                          for n, role in zip((2, 3, 4), ENCRYPTED_ROLES, strict=True))
        inst.message(f"[DRY RUN] LUKS2 encryption of {names} (the ESP stays unencrypted)")
        if enc.tpm2:
            pcrs = "+".join(str(p) for p in enc.tpm2_pcrs) or "none"
            where = enc.recovery_key_file or "shown once"
            inst.message(f"[DRY RUN] TPM2 unlock (PCRs: {pcrs}); recovery key: {where}")
    if plan.boot.kernel_args:
        inst.message(f"[DRY RUN] With kernel arguments: {' '.join(plan.boot.kernel_args)}")


def _emit_error(emit: Emit, exc: NbcError) -> None:
    with contextlib.suppress(Exception):
        emit(ErrorEvent.from_error("Installation failed", exc))


@contextlib.contextmanager
def _interrupts_become_cancel(ctx: RunContext) -> Iterator[None]:
    """SIGTERM is treated like Ctrl-C (KeyboardInterrupt) so that the cleanup stack always runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: object) -> None:
        ctx.cancel.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _cleanup_stack(ctx: RunContext) -> Iterator[contextlib.ExitStack]:
    """The one cleanup stack. While it unwinds, a second Ctrl-C is ignored so cleanup is never cut short."""
    stack = contextlib.ExitStack()
    try:
        yield stack
    finally:
        # The releases run commands too (umount, losetup -d): a cancel request has done its job once the
        # stack unwinds, and must not stop them.
        ctx.cancel.clear()
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            stack.close()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

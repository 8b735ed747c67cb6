"""The steps that write one root slot, shared by every operation that writes one (install; update next): put
the image into the slot, configure its root for nbc's model, make its initramfs boot it, write its boot entry,
read it all back, and leave the run's log on it.

Each step takes the :class:`SlotTarget` (the slot, mounted, with what its boot entry needs) and what earlier
steps produced, never an operation's whole state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_atomically
from ..boot import bootloader as boot
from ..boot.cmdline import LuksCmdline, kernel_cmdline
from ..boot.entries import BootEntry, BootloaderKind
from ..boot.kernel import SlotKernel, find_kernel
from ..engine import StepContext
from ..errors import NbcError
from ..image.extract import extract_image
from ..image.scan import ImageInventory
from ..image.source import ImageSource
from ..logfile import TARGET_LOG_DIR
from ..plan import Filesystem
from ..runner import run
from ..sizes import human
from ..storage import luks
from ..storage.esp import EspFiles
from ..storage.filesystems import read_fs_label, read_fs_uuid
from ..system import dracut, initramfs_hook, rootfs
from ..system.boot_assessment import install_boot_assessment
from ..system.initramfs_needs import ETC_OVERLAY_GAP, initramfs_gaps, initramfs_member_names
from ..system.slots import VAR, Slot
from ..system.state import SlotRecord, SystemConfig, write_slot_record

REMOVABLE_LOADER = "EFI/BOOT/BOOTX64.EFI"


@dataclass(frozen=True)
class SlotLuks:
    """The LUKS side of an encrypted system, as a slot's boot entry and crypttab name it."""

    uuids: dict[str, str]
    """LUKS UUIDs by role: root1, root2, var."""
    tpm2: bool


@dataclass(frozen=True)
class SlotTarget:
    """The root slot being written, mounted at ``root``, and what its boot entry needs."""

    slot: Slot
    root: Path
    shared_root: Path
    """Where the shared var partition is reachable as ``shared_root/var``: ``root`` itself at install (var is
    mounted inside it), ``/`` on the running system an update runs on."""
    esp: EspFiles
    esp_uuid: str
    root_uuid: str
    """Filesystem UUID of the slot's root (on its LUKS mapper when encrypted)."""
    var_uuid: str
    filesystem: Filesystem
    kernel_args: tuple[str, ...]
    luks: SlotLuks | None = None

    def cmdline(self) -> list[str]:
        """The base kernel command line of this slot's boot entry (systemd-boot uses it as is)."""
        encryption = None
        if self.luks is not None:
            encryption = LuksCmdline(root_luks_uuid=self.luks.uuids[self.slot.role], slot=self.slot,
                                     var_luks_uuid=self.luks.uuids[VAR], tpm2=self.luks.tpm2)
        return kernel_cmdline(root_uuid=self.root_uuid, esp_uuid=self.esp_uuid, var_uuid=self.var_uuid,
                              filesystem=self.filesystem, kernel_args=self.kernel_args, encryption=encryption)


@dataclass(frozen=True)
class SlotBoot:
    """What boots the slot: its kernel (and the initramfs that goes with it) and the bootloader kind."""

    kernel: SlotKernel
    bootloader: BootloaderKind


# -- extract ----------------------------------------------------------------------------------------

def extract(slot: SlotTarget, source: ImageSource, io: StepContext) -> None:
    stats = extract_image(source, slot.root, ctx=io.ctx, on_progress=io.progress("Extracting"))
    io.message(f"Extracted {stats.entries} entries, {human(stats.bytes_out)} in {stats.seconds:.1f} s")
    for warning in stats.warnings:  # an xattr the filesystem refused, /var emptied rather than removed
        io.warn(f"extraction: {warning}")


# -- configure --------------------------------------------------------------------------------------

def prepare_root(slot: SlotTarget, inventory: ImageInventory, loader: Callable[[Path], BootloaderKind],
                 io: StepContext) -> SlotBoot:
    """Check that the extracted tree is an OS, pick its kernel and (``loader``, given the root) its bootloader,
    and give it nbc's mounts (fstab), a fresh machine-id and the unit that marks a good boot. What changes the
    slot's /etc comes next, before :func:`seal_etc`."""
    root = slot.root
    rootfs.verify_extraction(root)
    boot_with = SlotBoot(find_kernel(root), loader(root))
    rootfs.ensure_system_dirs(root)
    rootfs.write_fstab(root, rootfs.fstab_text(esp_uuid=slot.esp_uuid, var_uuid=slot.var_uuid,
                                               filesystem=slot.filesystem, systemd_version=inventory.systemd_version,
                                               tmp_tmpfs=not rootfs.mounts_tmp_itself(root)))
    rootfs.reset_machine_id(root, io.warn)
    install_boot_assessment(root)
    return boot_with


def seal_etc(slot: SlotTarget, io: StepContext) -> None:
    """The last changes to the slot's /etc (the tmpfiles marker, crypttab), then its copy as the /etc overlay's
    lower layer, the overlay's directories on var and nbc's pristine copy."""
    root = slot.root
    rootfs.write_tmpfiles_marker(root)
    if slot.luks is not None:
        luks.write_crypttab(root, luks.crypttab_text(slot.luks.uuids, active=slot.slot, tpm2=slot.luks.tpm2))
        io.message(f"Wrote /etc/crypttab ({slot.slot.other.role} noauto)", verbose=True)
    # /etc is final from here on: the overlay's lower layer is a copy of it.
    rootfs.populate_etc_lower(root, ctx=io.ctx)
    rootfs.warn_missing_etc_files(root, io.warn)
    rootfs.create_overlay_dirs(slot.shared_root)
    rootfs.save_pristine_etc(root, slot.shared_root, ctx=io.ctx)


# -- initramfs --------------------------------------------------------------------------------------

def build_initramfs(slot: SlotTarget, boot_with: SlotBoot, inventory: ImageInventory, io: StepContext) -> SlotBoot:
    """Keep the image's initramfs when it lacks nothing this slot needs; when it lacks only the etc-overlay
    hook and can take it, append the hook to it; otherwise rebuild it with the image's dracut, adding what is
    missing. Either way the result is read back."""
    kver, tpm2 = boot_with.kernel.version, slot.luks is not None and slot.luks.tpm2
    encrypted = slot.luks is not None
    # The scan read the very file extraction wrote (same verified layers, same final tree).
    members = inventory.initramfs_members.get(kver, frozenset())
    missing = initramfs_gaps(members, encrypted=encrypted, tpm2=tpm2)
    if not missing:
        io.message("The image's initramfs already has the etc-overlay module"
                   + (" and can unlock LUKS" if encrypted else ""))
        return boot_with
    io.message(f"The image's initramfs lacks {' and '.join(missing)}", verbose=True)
    if inventory.has_dracut and not (slot.root / dracut.MODULE_DIR / "module-setup.sh").exists():
        dracut.install_etc_overlay_module(slot.root)  # a later dracut run on the system keeps the hook
    blocker = initramfs_hook.append_blocker(members, kver)
    if missing == [ETC_OVERLAY_GAP] and blocker is None:
        initramfs = boot_with.kernel.initramfs
        io.message(f"Adding the etc-overlay hook to the initramfs of kernel {kver} (an appended archive, "
                   "no dracut run)")
        if not io.ctx.dry_run:
            initramfs_hook.append_archive(initramfs, initramfs_hook.hook_archive(members))
            _check_initramfs(initramfs, kver, encrypted=encrypted, tpm2=tpm2, how="with the appended hook")
        return boot_with
    if missing == [ETC_OVERLAY_GAP]:
        io.message(f"The hook cannot be appended to the image's initramfs: {blocker}", verbose=True)
    modules = dracut.modules_to_add(crypt=encrypted, tpm2=tpm2, image_matches=inventory.matches)
    io.message(f"Regenerating the initramfs of kernel {kver} with dracut modules {', '.join(modules)}")
    initramfs = dracut.regenerate_initramfs(slot.root, kver, ctx=io.ctx, modules=modules)
    if not io.ctx.dry_run:
        _check_initramfs(initramfs, kver, encrypted=encrypted, tpm2=tpm2, how="regenerated")
    return SlotBoot(SlotKernel(kver, boot_with.kernel.vmlinuz, initramfs), boot_with.bootloader)


def _check_initramfs(initramfs: Path, kver: str, *, encrypted: bool, tpm2: bool, how: str) -> None:
    still = initramfs_gaps(initramfs_member_names(initramfs), encrypted=encrypted, tpm2=tpm2)
    if still:
        raise NbcError(f"the initramfs of kernel {kver} {how} still lacks {' and '.join(still)}",
                       hint="check the image's dracut modules (crypt, tpm2-tss) and their requirements")


# -- the boot entry ---------------------------------------------------------------------------------

def boot_entry(slot: SlotTarget, boot_with: SlotBoot, io: StepContext) -> BootEntry:
    """The slot's kernel and initramfs in its own folder on the ESP, and the menu entry that boots them (not
    written yet: boot/menu.py decides where it goes)."""
    boot.put_kernel_files(slot.esp, slot.slot, boot_with.kernel, dry_run=io.ctx.dry_run)
    cmdline = slot.cmdline()
    io.message(f"Bootloader: {boot_with.bootloader}; kernel command line: {' '.join(cmdline)}")
    return boot.slot_entry(boot_with.bootloader, slot.slot, boot_with.kernel, cmdline=cmdline,
                           title=boot.os_title(slot.root))


def record_slot(slot: SlotTarget, record: SlotRecord, config: SystemConfig, io: StepContext) -> None:
    """The slot's record on var, and config.json as it is to be once the slot boots by default."""
    write_slot_record(slot.shared_root, record, config)
    io.message(f"Recorded slot {slot.slot.value}: {record.image_ref} ({record.image_digest[:19]})", verbose=True)


# -- verify -----------------------------------------------------------------------------------------

def verify_slot(slot: SlotTarget, devices: dict[str, Path], boot_with: SlotBoot, io: StepContext) -> None:
    """Read back the slot's root and var filesystems (on ``devices`` by role) and its boot files on the ESP."""
    verify_filesystems(devices, {slot.slot.role: slot.root_uuid, VAR: slot.var_uuid}, io)
    esp_files = {f.lower() for f in slot.esp.files()}
    for needed in (REMOVABLE_LOADER, *slot.slot.kernel_paths(boot_with.kernel.version)):
        if needed.lower() not in esp_files:
            raise NbcError(f"the ESP lacks {needed} after installing the bootloader")


def verify_filesystems(devices: dict[str, Path], uuids: dict[str, str], io: StepContext) -> None:
    """Each role's filesystem read back: its label is the role (nbc's), its UUID the one it was made with."""
    for role, fs_uuid in uuids.items():
        label = read_fs_label(devices[role], ctx=io.ctx)
        read_uuid = read_fs_uuid(devices[role], ctx=io.ctx)
        if label != role or read_uuid != fs_uuid:
            raise NbcError(f"{role}: label {label!r} and UUID {read_uuid} read back, expected {role} and {fs_uuid}")


# -- finish -----------------------------------------------------------------------------------------

def leave_log(slot: SlotTarget, log_snapshot: Callable[[], bytes] | None, name: str, io: StepContext) -> None:
    """The run's log on the shared var (``/var/log/nbc-tui/<name>``, 0600), then everything on disk (sync)."""
    if log_snapshot is not None:
        write_atomically(slot.shared_root / TARGET_LOG_DIR / name, log_snapshot(), mode=0o600)
    run(["sync"], ctx=io.ctx)

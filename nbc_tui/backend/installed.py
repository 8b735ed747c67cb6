"""An installed nbc system, found: its disk and partitions, its state, its ESP and boot menu, which slot runs
and which one boots next. Update, status and rollback all start here.

Two ways to find one:

- :func:`running_system`: the system this process runs on. The disk is the one under ``/`` (through a LUKS
  mapper and its partition when encrypted), the booted slot is found by the device of ``/``
  (:func:`~.disks.booted_slot`), the ESP is written through its mount (``/boot``), the state is read under
  ``/``.
- :func:`other_disk` (``--device``): an nbc disk this system does not run from (from a live ISO, or a host
  updating a disk-image file). Its partitions are reached through partition nodes or loop devices, its var
  partition is mounted, and the ESP is written with mtools. No slot is running there; the first good slot in
  the boot menu plays that part (:attr:`InstalledSystem.keeper`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from .boot.entries import BootEntry, BootloaderKind, EntryState, slot_by_paths
from .boot.menu import BootMenu, read_menu
from .disks import booted_slot, partition_name, resolve_disk
from .disks.blockdevices import SYSTEM, Machine
from .engine import StepContext
from .errors import InputError, NbcError
from .mounts import RUN_DIR, mounted
from .runner import RunContext, run
from .storage import partition
from .storage.esp import Esp, EspFiles, MountedEsp
from .storage.filesystems import read_fs_uuid
from .storage.luks import MAPPER_DIR
from .system.rootfs import ETC_LOWER
from .system.slots import ESP_PARTITION, MAPPER_NAMES, VAR, VAR_PARTITION, Slot
from .system.state import (
    CONFIG_PATH,
    LEGACY_CONFIG_PATH,
    SlotRecord,
    SystemConfig,
    read_slot_record,
    read_system_config,
)

ROLES = {ESP_PARTITION: "esp", Slot.A.partition: Slot.A.role, Slot.B.partition: Slot.B.role,
         VAR_PARTITION: VAR}
LEGACY_IN_UPPER = Path("var/lib/nbc/etc-overlay/upper/nbc/config.json")
"""Where nbc's legacy /etc/nbc/config.json lands once the running system wrote it (the overlay's upper)."""


@dataclass(frozen=True)
class InstalledSystem:
    disk: Path
    """The whole disk."""
    partitions: dict[str, Path]
    """Partition devices by role: esp, root1, root2, var (the raw partitions, under any LUKS mapper)."""
    config: SystemConfig
    shared_root: Path
    """Where the var partition is reachable as ``shared_root/var``: ``/`` on the running system."""
    esp: EspFiles
    esp_uuid: str
    var_uuid: str
    """The var filesystem's UUID (what fstab mounts; on its LUKS mapper when encrypted)."""
    menu: BootMenu
    root_uuids: dict[str, Slot]
    """Filesystem UUID of each root slot's filesystem (what ``root=UUID=`` names), for reading the menu."""
    booted: Slot | None
    """The slot running now; None on a disk this system does not run from."""

    @property
    def running(self) -> bool:
        return self.booted is not None

    @property
    def bootloader(self) -> BootloaderKind:
        return self.menu.kind

    @property
    def default_slot(self) -> Slot | None:
        """The slot that boots next by default (the first entry that is not out of tries)."""
        item = self.menu.default
        return item.entry.slot if item is not None else None

    @property
    def keeper(self) -> Slot | None:
        """The slot an update keeps: the one that runs; on a disk that is not running, the first good one in
        the loader's order (the default, unless the default is an update still on trial)."""
        if self.booted is not None:
            return self.booted
        return next((i.entry.slot for i in self.menu.items if i.state is EntryState.GOOD), None)

    @property
    def encrypted(self) -> bool:
        return self.config.encryption is not None and self.config.encryption.enabled

    def make_writable(self, io: StepContext) -> None:
        """Before the first write: another disk's var is mounted read-only until then (the running system's
        /var is writable already)."""
        if not self.running:
            run(["mount", "-o", "remount,rw", self.shared_root / VAR], ctx=io.ctx)

    def where(self, role: str) -> str:
        """A partition as people know it: its device node, or for a disk-image file the file and number (its
        loop devices are gone once the run ends)."""
        if self.disk.is_file():
            number = next(n for n, r in ROLES.items() if r == role)
            return f"{self.disk} partition {number}"
        return str(self.partitions[role])

    def record(self, slot: Slot) -> SlotRecord | None:
        return read_slot_record(self.shared_root, slot)

    def entry(self, slot: Slot) -> BootEntry | None:
        item = self.menu.item(slot)
        return item.entry if item is not None else None

    def reread_menu(self) -> BootMenu:
        return read_menu(self.esp, self.bootloader, lambda e: slot_by_paths(e, self.root_uuids))


# -- the running system --------------------------------------------------------------------------------

def running_system(io: StepContext, *, root: Path = Path("/")) -> InstalledSystem:
    """The nbc system this process runs on. InputError when it is none (a live ISO, another OS)."""
    config = _read_config(root)
    slot = booted_slot(ctx=io.ctx)
    if slot is None:
        raise InputError("this system does not run from an nbc root slot (/ is neither root1 nor root2)",
                         hint="on a live system or another OS, update an nbc disk with --device DISK")
    disk = _disk_under_root(io.ctx)
    partitions = _partition_nodes(disk)
    esp = _esp_of_running(partitions["esp"], io)
    esp_uuid = read_fs_uuid(partitions["esp"], ctx=io.ctx)
    kind = _bootloader(config, esp)
    uuids = _root_uuids(config, partitions, io.ctx)
    menu = read_menu(esp, kind, lambda e: slot_by_paths(e, uuids))
    var_device = MAPPER_DIR / MAPPER_NAMES[VAR] if config.encryption and config.encryption.enabled else partitions[VAR]
    var_uuid = read_fs_uuid(var_device, ctx=io.ctx)
    return InstalledSystem(disk, partitions, config, root, esp, esp_uuid, var_uuid, menu, uuids, slot)


def _read_config(root: Path) -> SystemConfig:
    try:
        return read_system_config(root)
    except FileNotFoundError:
        raise InputError(f"this system is not managed by nbc or nbc-tui: no /{CONFIG_PATH} or "
                         f"/{LEGACY_CONFIG_PATH}", hint="install it with nbc-tui install first") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"the system state /{CONFIG_PATH} cannot be read: {exc}") from None


def _disk_under_root(ctx: RunContext) -> Path:
    m = Machine.read(SYSTEM, ctx)
    disks = {disk for name in m.devices_mounted_at("/") for disk in m.disks_under(name)}
    if len(disks) != 1:
        raise NbcError(f"cannot tell which disk / is on (found {sorted(disks) or 'none'})")
    return Path("/dev", disks.pop())


def _partition_nodes(disk: Path) -> dict[str, Path]:
    nodes = {}
    for number, role in ROLES.items():
        node = Path("/dev", partition_name(disk.name, number))
        if not node.exists():
            raise NbcError(f"{disk} has no partition {number} ({node}): it is not an nbc disk")
        nodes[role] = node
    return nodes


ESP_MOUNT = Path("/boot")


def _esp_of_running(esp_partition: Path, io: StepContext) -> EspFiles:
    """The ESP through its mount (/boot on an nbc system); with mtools only while nothing mounts it."""
    # systemd may have made /boot an automount (systemd-gpt-auto-generator, when the loader names the ESP):
    # looking inside mounts it, so that it is written through the mount and never behind its back.
    with contextlib.suppress(OSError):
        os.listdir(ESP_MOUNT)
    m = Machine.read(SYSTEM, io.ctx)
    mounts = m.mounts_of(esp_partition.name)
    if mounts:
        return MountedEsp(Path(mounts[0]), dry_run=io.ctx.dry_run)
    return Esp(esp_partition, ctx=io.ctx)


def _bootloader(config: SystemConfig, esp: EspFiles) -> BootloaderKind:
    if esp.exists("loader/loader.conf"):
        return "systemd-boot"
    if esp.exists("grub/grub.cfg") or esp.exists("grub2/grub.cfg"):
        return "grub2"
    return config.bootloader_type


def _root_uuids(config: SystemConfig, partitions: dict[str, Path], ctx: RunContext) -> dict[str, Slot]:
    """root= of an entry names a filesystem UUID (plain) or a mapper (encrypted, no lookup needed)."""
    if config.encryption is not None and config.encryption.enabled:
        return {}
    uuids = {}
    for slot in Slot:
        with contextlib.suppress(NbcError):
            found = read_fs_uuid(partitions[slot.role], ctx=ctx)
            if found:
                uuids[found] = slot
    return uuids


# -- another disk --------------------------------------------------------------------------------------

def other_disk(device: Path, io: StepContext) -> InstalledSystem:
    """An nbc disk this system does not run from: its partitions attached (loop devices when the kernel has no
    partition nodes for it) and its var partition mounted, both until the run ends; read-only in a dry run. A
    disk-image file is locked for the run (QEMU locks the images it runs, so a running VM's disk is refused).
    An encrypted disk is not supported here."""
    if device.is_file():
        path = device.absolute()
        io.hold(_locked_file(path))
    else:
        disk = resolve_disk(device)
        path = Path(disk.device)
        _refuse_in_use(path, io)
    # A dry run reads the disk for real (mounting var read-only): what it says depends on the state there.
    reading = replace(io.ctx, dry_run=False) if io.ctx.dry_run else io.ctx
    table = partition.read_partition_table(path, ctx=io.ctx)
    if [p.number for p in table] != sorted(ROLES) or [p.name for p in table] != ["boot", "root1", "root2", "var"]:
        raise InputError(f"{device} is not an nbc disk: its partitions are {[(p.number, p.name) for p in table]}",
                         hint="an nbc disk has p1 boot, p2 root1, p3 root2 and p4 var")
    numbered = io.hold(partition.partition_devices(path, table, ctx=reading, read_only=io.ctx.dry_run))
    partitions = {ROLES[number]: node for number, node in numbered.items()}
    base = RUN_DIR / f"disk-{os.getpid()}"
    io.stack.callback(_rmdir_quietly, base)  # pushed first, so it runs once var is unmounted
    # Read-only until an operation starts writing (make_writable): checks that refuse, and "no update
    # needed", leave the disk byte for byte as it was (a read-write mount alone writes the superblock).
    io.hold(mounted(partitions[VAR], base / "var", ctx=reading, options=["ro"]))
    config = _read_config_of_disk(base, partitions, reading)
    if config.encryption is not None and config.encryption.enabled:
        raise InputError(f"{device} is encrypted: updating an encrypted disk from another system is not supported",
                         hint="boot the disk and run nbc-tui update there")
    # Reads only in a dry run (the steps that write do not run), so it reads for real.
    esp = Esp(partitions["esp"], ctx=reading)
    esp_uuid = read_fs_uuid(partitions["esp"], ctx=io.ctx)
    kind = _bootloader(config, esp)
    uuids = _root_uuids(config, partitions, io.ctx)
    menu = read_menu(esp, kind, lambda e: slot_by_paths(e, uuids))
    var_uuid = read_fs_uuid(partitions[VAR], ctx=io.ctx)
    return InstalledSystem(path, partitions, config, base, esp, esp_uuid, var_uuid, menu, uuids, None)


@contextlib.contextmanager
def _locked_file(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(f"{path} is in use (a virtual machine running it?)",
                             hint="stop what uses it, then run the command again") from None
        yield
    finally:
        os.close(fd)


def _refuse_in_use(disk: Path, io: StepContext) -> None:
    """A disk this system runs from, or one with anything mounted, is not "another disk"."""
    m = Machine.read(SYSTEM, io.ctx)
    mounts = m.mounts_of(disk.name)
    if mounts:
        raise InputError(f"{disk} is in use: mounted at {', '.join(mounts)}",
                         hint="to update the system that runs, leave out --device; else unmount it first")


def _read_config_of_disk(base: Path, partitions: dict[str, Path], ctx: RunContext) -> SystemConfig:
    """config.json on var; else nbc's legacy /etc/nbc/config.json as the system last wrote it (the overlay's
    upper layer), else as a slot's image /etc holds it (each root slot mounted read-only to look)."""
    for path in (base / CONFIG_PATH, base / LEGACY_IN_UPPER):
        with contextlib.suppress(OSError, ValueError):
            return SystemConfig.model_validate_json(path.read_bytes())
    for slot in Slot:
        where = base / slot.role
        with contextlib.suppress(NbcError), mounted(partitions[slot.role], where, ctx=ctx, options=["ro"]):
            for path in (where / ETC_LOWER / "nbc/config.json", where / LEGACY_CONFIG_PATH):
                with contextlib.suppress(OSError, ValueError):
                    return SystemConfig.model_validate_json(path.read_bytes())
    raise InputError("the disk is not managed by nbc or nbc-tui: its var partition has no state "
                     f"(/{CONFIG_PATH}) and no slot has nbc's legacy /{LEGACY_CONFIG_PATH}")


def _rmdir_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()  # only ever rmdir a mount point's parent: never a recursive delete

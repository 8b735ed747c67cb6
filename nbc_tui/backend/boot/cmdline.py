"""The kernel command line, token for token as nbc assembles it (reference §12), and GRUB's variant."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InputError
from ..plan import kernel_arg_problem
from ..system.slots import VAR, Slot

# Keeps NVMe device names stable (nbc's documented hack, reference §12.1); kept for compatibility.
NVME_MULTIPATH_OFF = "nvme_core.multipath=N"
# A boot that fails must end in a reboot, so that the loader counts the try and, once a slot on trial has none
# left, boots the previous slot: the kernel reboots 10 s after a panic; dracut reboots instead of dropping to
# an emergency shell (initramfs-tools honours panic= alone). Ours, after nbc's tokens and before the user's.
FAILURE_REBOOTS = ("panic=10", "rd.shell=0", "rd.emergency=reboot")
GRUB_CONSOLE = "console=tty0"


@dataclass(frozen=True)
class LuksCmdline:
    """What the command line of an encrypted install needs: the LUKS (not filesystem) UUIDs."""

    root_luks_uuid: str
    """LUKS UUID of the root slot this entry boots (cryptsetup luksUUID)."""
    slot: Slot
    """The slot this entry boots: its root is opened as the slot's mapper (root1 for A, root2 for B)."""
    var_luks_uuid: str
    """LUKS UUID of the var partition (p4), opened as /dev/mapper/var."""
    tpm2: bool = False
    """Add rd.luks.options=<uuid>=tpm2-device=auto for root and var."""


def kernel_cmdline(
    *,
    root_uuid: str,
    esp_uuid: str,
    var_uuid: str,
    filesystem: str,
    kernel_args: Sequence[str],
    encryption: LuksCmdline | None = None,
) -> list[str]:
    """The base command line (systemd-boot uses it unchanged), in nbc's exact token order.

    ``root_uuid`` and ``var_uuid`` are filesystem UUIDs; with ``encryption`` they are not used (the
    root and var devices are then the opened mappers). ``filesystem`` "" means ext4, as in nbc.
    """
    check_kernel_args(kernel_args)
    fs = filesystem or "ext4"
    boot_mount = f"systemd.mount-extra=UUID={esp_uuid}:/boot:vfat:defaults"
    if encryption is None:
        _require(root_uuid=root_uuid, esp_uuid=esp_uuid, var_uuid=var_uuid)
        return [
            f"root=UUID={root_uuid}",
            "ro",
            boot_mount,
            f"systemd.mount-extra=UUID={var_uuid}:/var:{fs}:defaults",
            "rd.etc.overlay=1",
            f"rd.etc.overlay.var=UUID={var_uuid}",
            NVME_MULTIPATH_OFF,
            *FAILURE_REBOOTS,
            *kernel_args,
        ]
    enc = encryption
    _require(esp_uuid=esp_uuid, root_luks_uuid=enc.root_luks_uuid, var_luks_uuid=enc.var_luks_uuid)
    args = [
        f"root=/dev/mapper/{enc.slot.mapper}",
        "ro",
        f"rd.luks.uuid={enc.root_luks_uuid}",
        f"rd.luks.name={enc.root_luks_uuid}={enc.slot.mapper}",
        f"rd.luks.uuid={enc.var_luks_uuid}",
        f"rd.luks.name={enc.var_luks_uuid}={VAR}",
    ]
    if enc.tpm2:
        args += [
            f"rd.luks.options={enc.root_luks_uuid}=tpm2-device=auto",
            f"rd.luks.options={enc.var_luks_uuid}=tpm2-device=auto",
        ]
    return [
        *args,
        boot_mount,
        f"systemd.mount-extra=/dev/mapper/{VAR}:/var:{fs}:defaults",
        "rd.etc.overlay=1",
        f"rd.etc.overlay.var=/dev/mapper/{VAR}",
        NVME_MULTIPATH_OFF,
        *FAILURE_REBOOTS,
        *kernel_args,
    ]


def grub_cmdline(base: Sequence[str]) -> list[str]:
    """GRUB's install-time line (reference §12.2): root, ro, console=tty0, then the rest minus ro/rw.

    A user ``rw`` is dropped, as nbc does: the root is read-only by design. Empty in, empty out.
    """
    if not base:
        return []
    root, *rest = base
    if not root.startswith("root="):
        raise ValueError(f"the command line must start with root=, not {root!r}")
    return [root, "ro", GRUB_CONSOLE, *(t for t in rest if t not in ("ro", "rw"))]


def check_kernel_args(kernel_args: Sequence[str]) -> None:
    """Refuse arguments that would break out of a boot entry line (the plan refuses them first; an update's
    come from the installed system's state file)."""
    for arg in kernel_args:
        if problem := kernel_arg_problem(arg):
            raise InputError(problem, hint="give each kernel argument as one line of printable text")


def _require(**values: str) -> None:
    for name, value in values.items():
        if not value or any(c.isspace() for c in value):
            raise ValueError(f"{name} must be a non-empty UUID without spaces, not {value!r}")

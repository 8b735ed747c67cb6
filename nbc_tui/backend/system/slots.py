"""The two root slots of nbc's layout as one type (which one is booted: ``disks.booted_slot()``).

nbc finds partitions by number (reference §3): p1 the ESP, p2 ``root1`` (slot A), p3 ``root2`` (slot B), p4
``var``, shared by both. A root slot's GPT name, filesystem label and LUKS mapper name are all its role,
``root1`` or ``root2``; nbc-tui keeps each slot's kernel and initramfs in a directory of its own on the ESP
(``/A``, ``/B``), so that the two never share a boot file.
"""

from __future__ import annotations

from enum import Enum

ESP_PARTITION = 1
VAR_PARTITION = 4
VAR = "var"
"""The shared partition's GPT name, filesystem label and LUKS mapper name."""


class Slot(Enum):
    """A root slot: ``Slot.A`` (p2, root1) or ``Slot.B`` (p3, root2)."""

    A = "A"
    B = "B"

    @property
    def partition(self) -> int:
        """Its partition number: 2 for A, 3 for B."""
        return 2 if self is Slot.A else 3

    @property
    def role(self) -> str:
        """``root1`` or ``root2``: its GPT partition name, filesystem label and LUKS mapper name (nbc's)."""
        return f"root{self.partition - 1}"

    @property
    def mapper(self) -> str:
        """The device-mapper name its LUKS container is opened as (``/dev/mapper/root1``)."""
        return self.role

    @property
    def esp_dir(self) -> str:
        """The ESP directory holding its kernel and initramfs."""
        return self.value

    @property
    def other(self) -> Slot:
        return Slot.B if self is Slot.A else Slot.A

    def kernel_paths(self, version: str) -> tuple[str, str]:
        """ESP paths (no leading slash) of its boot entry's kernel and initramfs: ``A/vmlinuz-<kver>``, ..."""
        if not version or "/" in version:
            raise ValueError(f"bad kernel version {version!r}")
        return f"{self.esp_dir}/vmlinuz-{version}", f"{self.esp_dir}/initramfs-{version}.img"

    @classmethod
    def of_role(cls, role: str) -> Slot:
        """The slot whose role (partition name, label, mapper) is ``root1`` or ``root2``."""
        for slot in cls:
            if slot.role == role:
                return slot
        raise ValueError(f"{role!r} is not a root slot (root1 or root2)")


ENCRYPTED_ROLES = (Slot.A.role, Slot.B.role, VAR)
"""The partitions that are encrypted (the ESP never is), in the order they are set up."""
MAPPER_NAMES = {Slot.A.role: Slot.A.mapper, Slot.B.role: Slot.B.mapper, VAR: VAR}

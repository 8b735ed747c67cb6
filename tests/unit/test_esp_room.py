"""The ESP must hold both slots' kernel files: checked before the wipe from the image's kernel and initramfs
sizes (pure logic over an inventory; the install runs the same check in its preflight)."""

from __future__ import annotations

import pytest

from nbc_tui.backend.image.scan import ImageInventory, KernelInfo
from nbc_tui.backend.sizes import MiB
from nbc_tui.backend.steps.image import ESP_LOADER_ROOM, ImageCheck, SlotNeeds, esp_room_problem

HOOK = "usr/lib/dracut/hooks/pre-pivot/50-etc-overlay-mount.sh"
KERNEL, INITRAMFS = 8 * MiB, 45 * MiB


def inventory(members: set[str]) -> ImageInventory:
    return ImageInventory(kernels=[KernelInfo("6.1", "usr/lib/modules/6.1/vmlinuz", "usr/lib/modules/6.1/i.img",
                                              KERNEL, INITRAMFS)], initramfs_members={"6.1": frozenset(members)})


def needs(esp_size: int | None) -> SlotNeeds:
    return SlotNeeds(encrypted=False, tpm2=False, bootloader="auto", slot_size=1 << 40, esp_size=esp_size)


@pytest.mark.parametrize(("members", "per_slot"), [
    ({HOOK}, KERNEL + INITRAMFS),  # the image's initramfs, kept as it is
    (set(), KERNEL + 2 * INITRAMFS),  # not a dracut initramfs: rebuilt, estimated at twice its size
])
def test_the_esp_holds_both_slots_kernel_files_and_the_loader(members: set[str], per_slot: int) -> None:
    facts = inventory(members)
    enough = 2 * per_slot + ESP_LOADER_ROOM
    assert esp_room_problem(facts, needs(enough)) is None
    problem = esp_room_problem(facts, needs(enough - 1))
    assert problem is not None and problem.check is ImageCheck.ESP_ROOM and problem.refuses
    assert problem.message.startswith("the ESP (") and "each slot's kernel and initramfs take about" in problem.message
    assert "--esp-size" in problem.hint
    assert esp_room_problem(facts, needs(None)) is None  # an update or lint: not asked


def test_the_default_esp_holds_any_ordinary_image() -> None:
    assert esp_room_problem(inventory(set()), needs(2 << 30)) is None
    assert esp_room_problem(inventory({HOOK}), needs(512 * MiB)) is None

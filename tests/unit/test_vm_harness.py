"""The VM harness's decision about a silent guest (tests/vm/qemu.py): pure logic, so tested without QEMU.

The harness itself is proven with QEMU in tests/vm/test_image_builder.py (a reset, then a new QEMU)."""

from tests.vm.qemu import stall_remedy

REBOOTING = "[   56.714019] reboot: Restarting system\n"
GRUB_FROZEN = "BdsDxe: starting Boot0001\n\x1b[0m\x1b[30m\x1b[47mWelcome to GRUB!\n\n\x1b[0m\x1b[37m\x1b[40m"


def test_a_reset_request_followed_by_silence_is_reset_then_relaunched() -> None:
    assert stall_remedy(REBOOTING, 59, 60, reset_tried=False) is None
    assert stall_remedy(REBOOTING, 60, 60, reset_tried=False) == "reset"
    # The reset was pressed and no kernel has started since: only a new QEMU helps.
    assert stall_remedy(REBOOTING, 60, 60, reset_tried=True) == "relaunch"


def test_a_loader_frozen_after_its_first_words_gets_a_new_qemu_at_once() -> None:
    """On 2026-12-07 two resets from the monitor each came back to the same frozen GRUB."""
    assert stall_remedy(GRUB_FROZEN, 59, 60, reset_tried=False) is None
    assert stall_remedy(GRUB_FROZEN, 60, 60, reset_tried=False) == "relaunch"


def test_a_guest_that_is_merely_quiet_is_left_alone() -> None:
    assert stall_remedy("Welcome to GRUB!\nGNU GRUB  version 2.06\n", 3600, 60, reset_tried=False) is None
    assert stall_remedy("debian login: ", 3600, 60, reset_tried=True) is None

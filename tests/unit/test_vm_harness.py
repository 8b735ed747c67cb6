"""The VM harness's reading of a console tail: when silence means a machine QEMU left stuck, and what it does
about it (pure logic; the reset and the new QEMU are proven on a real guest in tests/vm/test_image_builder.py)."""

from __future__ import annotations

from tests.vm.qemu import LOADER_STARTED, RESET_REQUEST, stall_remedy

GRUB_TAIL = ('BdsDxe: starting Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x2,0x0)\n'
             "\x1b[0m\x1b[30m\x1b[47mWelcome to GRUB!\n\n\x1b[0m\x1b[37m\x1b[40m")
"""How the console ended in the CI runs where GRUB froze (2026-12-06, 2026-12-07)."""
REBOOTING = "[   88.626579] reboot: Restarting system\n"


def test_a_reset_request_or_grubs_first_words_with_nothing_after_them() -> None:
    assert RESET_REQUEST.search(REBOOTING)
    assert LOADER_STARTED.search(GRUB_TAIL)
    assert not LOADER_STARTED.search(GRUB_TAIL + "[    0.000000] Linux version 6.1.0-50-amd64")
    assert not RESET_REQUEST.search(GRUB_TAIL)


def test_a_reset_request_followed_by_silence_is_reset_then_relaunched() -> None:
    assert stall_remedy(REBOOTING, 59, 60, reset_tried=False) is None
    assert stall_remedy(REBOOTING, 60, 60, reset_tried=False) == "reset"
    # The reset was pressed and no kernel has started since: only a new QEMU helps.
    assert stall_remedy(REBOOTING, 60, 60, reset_tried=True) == "relaunch"


def test_a_loader_frozen_after_its_first_words_gets_a_new_qemu_at_once() -> None:
    """On 2026-12-07 two resets from the monitor each came back to the same frozen GRUB."""
    assert stall_remedy(GRUB_TAIL, 59, 60, reset_tried=False) is None
    assert stall_remedy(GRUB_TAIL, 60, 60, reset_tried=False) == "relaunch"


def test_a_guest_that_is_merely_quiet_is_left_alone() -> None:
    assert stall_remedy("Welcome to GRUB!\nGNU GRUB  version 2.06\n", 3600, 60, reset_tried=False) is None
    assert stall_remedy("debian login: ", 3600, 60, reset_tried=True) is None

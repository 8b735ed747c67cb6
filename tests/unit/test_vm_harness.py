"""The VM harness's reading of a console tail: when silence means a machine QEMU left stuck (pure logic; the
reset itself is proven on a real guest in tests/vm/test_image_builder.py)."""

from __future__ import annotations

from tests.vm.qemu import LOADER_STARTED, RESET_REQUEST

GRUB_TAIL = ('BdsDxe: starting Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x2,0x0)\n'
             "\x1b[0m\x1b[30m\x1b[47mWelcome to GRUB!\n\n\x1b[0m\x1b[37m\x1b[40m")
"""How the console ended in the CI run where GRUB froze (2026-12-06)."""


def test_a_reset_request_or_grubs_first_words_with_nothing_after_them() -> None:
    assert RESET_REQUEST.search("[   88.626579] reboot: Restarting system\n")
    assert LOADER_STARTED.search(GRUB_TAIL)
    assert not LOADER_STARTED.search(GRUB_TAIL + "[    0.000000] Linux version 6.1.0-50-amd64")
    assert not RESET_REQUEST.search(GRUB_TAIL)

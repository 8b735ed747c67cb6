"""VM tier: a real Debian 12 image installed by nbc-tui and booted in QEMU (TCG) with OVMF."""

"""Booting a slot: the kernel command line (:mod:`.cmdline`), which kernel boots (:mod:`.kernel`), GRUB
(:mod:`.grub`) or systemd-boot (:mod:`.systemd_boot`) behind shim when the image is signed (:mod:`.shim`),
chosen and installed by :mod:`.bootloader`, and the firmware's boot entry (:mod:`.efivars`)."""

"""The installed system on its disk: the two root slots (:mod:`.slots`), configuring an extracted root for nbc's
model (:mod:`.rootfs`), its state file (:mod:`.state`), and its initramfs: the etc-overlay dracut module and
regeneration (:mod:`.dracut`), listing one (:mod:`.initramfs`) and what it must hold (:mod:`.initramfs_needs`)."""

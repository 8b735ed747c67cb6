"""Steps shared by the operations, each a verb over what the phase before it produced: the image opened and
checked whole (:mod:`.image`), a whole disk made into nbc's layout (:mod:`.disk`, install only), and one root slot
written, configured, made bootable and read back (:mod:`.slot`, install and update)."""

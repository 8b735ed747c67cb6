"""The target disk's storage: nbc's partitions (:mod:`.partition`), LUKS2 (:mod:`.luks`) and TPM2 enrolment
(:mod:`.tpm`), the root and var filesystems (:mod:`.filesystems`) and the ESP written without mounting it
(:mod:`.esp`)."""

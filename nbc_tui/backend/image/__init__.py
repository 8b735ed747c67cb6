"""Images: every source yields the same verified manifest, config and layer streams (:mod:`.source`, opened by
reference with :mod:`.opener`): an OCI layout (:mod:`.layout`) or archive (:mod:`.archive`), a Podman or Docker
daemon (:mod:`.daemon`), a registry (:mod:`.registry`, with :mod:`.reference`, :mod:`.auth`, :mod:`.transfer`);
OCI facts in :mod:`.oci`. Then the pre-install scan (:mod:`.scan`), the extraction (:mod:`.extract`) under the
same layer rules (:mod:`.layers`, :mod:`.layer_rules`, :mod:`.resolve`), and the staged cache (:mod:`.cache`)."""

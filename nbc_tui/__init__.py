"""nbc-tui: install a bootable OCI container image onto a disk (A/B roots, nbc-compatible)."""

__version__ = "0.1.0"

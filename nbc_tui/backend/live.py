"""Whether this is the nbc-tui live system (the ISO built by iso/build.sh).

Only what the live ISO changes about an install is decided here; which disk it booted from is
:mod:`.system_disks`'s job (any live system, found by its mounts and kernel command line).
"""

from __future__ import annotations

import os
from pathlib import Path

LIVE_SYSTEM_MARKER = Path("/etc/nbc-tui-live")
"""iso/build.sh writes this file (NBC_TUI_LIVE_BUILD=... lines) into the live root; only its existence counts.

``NBC_TUI_LIVE_MARKER`` names another path instead (tests)."""
ENV_LIVE_MARKER = "NBC_TUI_LIVE_MARKER"


def live_system_marker() -> Path:
    return Path(os.environ.get(ENV_LIVE_MARKER) or LIVE_SYSTEM_MARKER)


def on_live_system() -> bool:
    """True on the nbc-tui live ISO, whose staged images are part of the read-only medium."""
    return live_system_marker().exists()

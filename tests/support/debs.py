"""Debian packages the tests take real binaries from (signed EFI images, systemd-boot), downloaded once with
``apt-get download`` into a cache shared by every run and unpacked per test session."""

from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

CACHE = Path("/var/cache/nbc-tui-tests/debs")


def package_deb(package: str) -> Path:
    """The cached .deb of ``package`` (the candidate version of this machine's apt sources)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel sessions share the cache
        debs = sorted(CACHE.glob(f"{package}_*.deb"))
        if not debs:
            subprocess.run(["apt-get", "download", package], cwd=CACHE, check=True, capture_output=True)
            debs = sorted(CACHE.glob(f"{package}_*.deb"))
    return debs[-1]


def unpacked(package: str, dest: Path) -> Path:
    """``package``'s files under ``dest`` (dpkg-deb -x)."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(package_deb(package)), str(dest)], check=True)
    return dest

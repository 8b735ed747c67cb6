"""A Secure Boot chain for tests: Debian's real signed shim and GRUB (from their packages), and EFI images
signed here with ``sbsign`` by a key made for the session (a kernel stand-in that is a real PE image, so its
Authenticode signature is a real one; only which firmware trusts it differs)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from .debs import unpacked
from .oci import TarBuilder
from .synthetic import KVER

HOST_GRUB_MODULES = Path("/usr/lib/grub/x86_64-efi")
SHIM = "usr/lib/shim/shimx64.efi.signed"
SIGNED_GRUB = "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"


@dataclass(frozen=True)
class SignedChain:
    shim: bytes
    signed_grub: bytes
    """Debian's grubx64.efi.signed: its built-in prefix is /EFI/debian."""
    signed_kernel: bytes
    unsigned_kernel: bytes


def pe_image(path: Path, prefix: str = "/EFI/test") -> Path:
    """A small real EFI (PE) image: a GRUB core made by the host's grub-mkimage."""
    subprocess.run(["grub-mkimage", "-O", "x86_64-efi", "-d", str(HOST_GRUB_MODULES), "-p", prefix,
                    "-o", str(path), "normal"], check=True)
    return path


def sign(unsigned: Path, work: Path) -> Path:
    """``unsigned`` signed with sbsign by a throwaway key (made once per directory)."""
    key, cert = work / "db.key", work / "db.crt"
    if not key.exists():
        subprocess.run(["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=nbc-tui test signer/", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
    signed = unsigned.with_suffix(".signed")
    subprocess.run(["sbsign", "--key", str(key), "--cert", str(cert), "--output", str(signed), str(unsigned)],
                   check=True, capture_output=True)
    return signed


def signed_chain(work: Path) -> SignedChain:
    tree = unpacked("shim-signed", work / "debs")
    unpacked("grub-efi-amd64-signed", tree)
    kernel = pe_image(work / "vmlinuz")
    return SignedChain(shim=(tree / SHIM).read_bytes(), signed_grub=(tree / SIGNED_GRUB).read_bytes(),
                       signed_kernel=sign(kernel, work).read_bytes(), unsigned_kernel=kernel.read_bytes())


def chain_layer(chain: SignedChain, *, kernel_signed: bool = True) -> bytes:
    """A layer over the synthetic image's base: shim, the signed GRUB and a kernel that is a real EFI image
    (signed or not) in place of the stand-in."""
    t = TarBuilder()
    for d in ("usr", "usr/lib", "usr/lib/shim", "usr/lib/grub", "usr/lib/grub/x86_64-efi-signed",
              "usr/lib/modules", f"usr/lib/modules/{KVER}"):
        t.dir(d)
    t.file(SHIM, chain.shim)
    t.file(SIGNED_GRUB, chain.signed_grub)
    t.file(f"usr/lib/modules/{KVER}/vmlinuz", chain.signed_kernel if kernel_signed else chain.unsigned_kernel)
    return t.bytes()

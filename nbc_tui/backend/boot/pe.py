"""Reading the few facts Secure Boot depends on from an EFI binary (a PE/COFF image), without running it.

Whether it carries an Authenticode signature (the certificate table, data directory 4, is not empty: what
``sbverify --list`` lists and ``sbattach --remove`` strips), and the prefix a GRUB image was built with (the
directory it reads its config from first: ``/EFI/debian`` for Debian's signed GRUB). Whether a signature is
one the firmware trusts only the firmware can tell; these facts say whether it can boot at all.
"""

from __future__ import annotations

import struct

PE_HEAD_BYTES = 4096
"""Enough of a kernel or loader to hold its PE headers (the data directories sit in the first page)."""

_SECURITY_DIRECTORY = 4
_PE32, _PE32_PLUS = 0x10B, 0x20B
_GRUB_MODULES_MAGIC = b"mimg"
_GRUB_OBJ_PREFIX = 3  # grub/kernel.h: ELF, MEMDISK, CONFIG, PREFIX, PUBKEY, ...


class PeError(ValueError):
    """Not a PE image, or one cut short where a header should be."""


def _optional_header(data: bytes) -> tuple[int, int, int, int]:
    """(offset of the optional header, its size, its magic, the number of sections)."""
    if len(data) < 0x40 or data[:2] != b"MZ":
        raise PeError("not a PE image (no MZ header)")
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    if len(data) < pe + 24 or data[pe:pe + 4] != b"PE\0\0":
        raise PeError("not a PE image (no PE signature)")
    sections, opt_size = struct.unpack_from("<H12xH", data, pe + 6)
    opt = pe + 24
    if len(data) < opt + 2:
        raise PeError("PE optional header cut short")
    magic = struct.unpack_from("<H", data, opt)[0]
    if magic not in (_PE32, _PE32_PLUS):
        raise PeError(f"unknown PE optional header magic {magic:#x}")
    return opt, opt_size, magic, sections


def authenticode_signed(head: bytes) -> bool:
    """Whether the PE image whose first bytes are ``head`` (PE_HEAD_BYTES are enough) has an Authenticode
    signature: a non-empty certificate table. PeError when it is not a PE image at all."""
    opt, _, magic, _ = _optional_header(head)
    count_at, dirs_at = (opt + 108, opt + 112) if magic == _PE32_PLUS else (opt + 92, opt + 96)
    entry = dirs_at + 8 * _SECURITY_DIRECTORY
    if len(head) < entry + 8:
        raise PeError("PE data directories cut short")
    if struct.unpack_from("<I", head, count_at)[0] <= _SECURITY_DIRECTORY:
        return False
    offset, size = struct.unpack_from("<II", head, entry)
    return offset != 0 and size != 0


def pe_section(data: bytes, name: str) -> bytes | None:
    """The raw bytes of the section called ``name`` (at most 8 characters), or None."""
    opt, opt_size, _, count = _optional_header(data)
    table = opt + opt_size
    wanted = name.encode().ljust(8, b"\0")
    for i in range(count):
        at = table + 40 * i
        if len(data) < at + 40:
            raise PeError("PE section table cut short")
        if data[at:at + 8] == wanted:
            size, start = struct.unpack_from("<II", data, at + 16)
            return data[start:start + size]
    return None


def grub_prefix(image: bytes) -> str | None:
    """The prefix a GRUB EFI image was built with (``grub-mkimage -p``), as written: ``/EFI/debian`` or
    ``(hd0,gpt1)/EFI/debian``; None when the image has no modules section or no prefix."""
    mods = pe_section(image, "mods")
    if mods is None or mods[:4] != _GRUB_MODULES_MAGIC or len(mods) < 24:
        return None
    offset, size = struct.unpack_from("<QQ", mods, 8)
    pos, end = offset, min(size, len(mods))
    while pos + 8 <= end:
        kind, length = struct.unpack_from("<II", mods, pos)
        if length < 8:
            break
        if kind == _GRUB_OBJ_PREFIX:
            return mods[pos + 8:pos + length].split(b"\0", 1)[0].decode(errors="replace") or None
        pos += length
    return None


def prefix_directory(prefix: str) -> str | None:
    """The ESP directory a GRUB prefix names, relative (``EFI/debian``), or None when it names none that
    can be made safely: no device part is kept, and ``..`` or an empty path is refused."""
    path = prefix.rpartition(")")[2] if prefix.startswith("(") else prefix
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        return None
    return "/".join(parts)

"""A small synthetic bootable-looking image (fake kernel) for integration tests, written as an OCI layout."""

from __future__ import annotations

import gzip
import os
import subprocess
import tempfile
from pathlib import Path

from .oci import ImageSpec, Layer, TarBuilder, write_layout

KVER = "6.1.0-test"
OS_RELEASE = 'PRETTY_NAME="Synthetic Linux 1 (test)"\nNAME="Synthetic Linux"\nID=synthetic\nVERSION_ID=1\n'
SHADOW = "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"
V2_USER = "_v2svc:x:998:998:added by version 2:/nonexistent:/usr/sbin/nologin\n"
FAKE_KERNEL = b"MZ" + bytes(range(256)) * 64  # a few KiB standing in for vmlinuz
# What makes an initramfs able to unlock LUKS, and with the TPM2 (stand-ins, like the hook).
INITRAMFS_UNLOCKER = "usr/lib/systemd/systemd-cryptsetup"
INITRAMFS_TCTI = "usr/lib/x86_64-linux-gnu/libtss2-tcti-device.so.0"


def cpio_gz(files: dict[str, bytes]) -> bytes:
    """A gzip'd newc cpio made by the real cpio tool (what dracut produces, in miniature)."""
    with tempfile.TemporaryDirectory() as d:
        for name, data in files.items():
            p = Path(d, name)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        dirs = {str(parent) for name in files for parent in Path(name).parents if str(parent) != "."}
        names = "\n".join(sorted({*files, *dirs})) + "\n"  # directories too, as dracut lists them
        raw = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], input=names.encode(), cwd=d,
                             capture_output=True, check=True).stdout
    return gzip.compress(raw)


def base_layer(*, kernel: bool = True, initramfs_has_module: bool = True, shadow: bool = True,
               systemd_boot: bool = True, padding: int = 0, initramfs_unlocks: bool = True, version: int = 1,
               initramfs_takes_hook: bool = False, kernel_padding: int = 0) -> bytes:
    """The image's one big layer. By default its initramfs has the etc-overlay hook and can unlock LUKS
    with the TPM2 (so encrypted dry runs pass preflight); the image itself has no dracut or cryptsetup.
    ``initramfs_takes_hook``: the initramfs has what the hook runs in (dracut's hook directory and library,
    mount, umount, mkdir, overlay.ko), so a missing hook is appended to it.
    ``version`` 2 and later (an update) name themselves so and add a system user, ``_v2svc``, and change
    /etc/issue. ``kernel_padding``: zero bytes after the fake kernel (a kernel file of a real size, which the
    layer compresses to nothing)."""
    t = TarBuilder()
    v2 = version >= 2
    for d in ("etc", "usr", "usr/bin", "usr/lib", "usr/lib/systemd", "usr/lib/modules", "var", "var/lib",
              "boot", "root"):
        t.dir(d, mode=0o700 if d == "root" else 0o755)
    t.symlink("bin", "usr/bin")
    t.file("usr/lib/os-release", OS_RELEASE.replace("1", str(version)).encode())
    t.symlink("etc/os-release", "../usr/lib/os-release")
    t.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1::/:/usr/sbin/nologin\n"
           + (V2_USER.encode() if v2 else b""))
    t.file("etc/group", b"root:x:0:\ndaemon:x:1:\nshadow:x:42:\n" + (b"_v2svc:x:998:\n" if v2 else b""))
    t.file("etc/issue", f"Synthetic Linux {version}\n".encode())
    if shadow:
        t.file("etc/shadow", (SHADOW + ("_v2svc:!:19500::::::\n" if v2 else "")).encode(), mode=0o640, gid=42)
    t.file("etc/hostname", b"synthetic\n")
    t.file("etc/machine-id", b"")
    t.file("usr/bin/sh", b"#!fake shell\n", mode=0o755)
    t.file("usr/bin/passwd", b"fake setuid\n", mode=0o4755)
    t.file("usr/lib/systemd/libsystemd-shared-252.so", b"\x7fELF fake")
    if systemd_boot:
        t.dir("usr/lib/systemd/boot").dir("usr/lib/systemd/boot/efi")
        t.file("usr/lib/systemd/boot/efi/systemd-bootx64.efi", b"MZ fake systemd-boot")
    t.dir("var/lib/dpkg").file("var/lib/dpkg/status", b"Package: synthetic\n")
    if kernel:
        t.dir(f"usr/lib/modules/{KVER}")
        t.file(f"usr/lib/modules/{KVER}/vmlinuz", FAKE_KERNEL + bytes(kernel_padding))
        files = {"init": b"#!/bin/sh\n"}
        if initramfs_has_module:
            files["usr/lib/dracut/hooks/pre-pivot/50-etc-overlay-mount.sh"] = b"# stand-in\n"
            files["var/lib/dracut/hooks/pre-pivot/etc-overlay-mount.sh"] = b"# stand-in\n"
        if initramfs_takes_hook:
            for name in ("usr/lib/dracut-lib.sh", "usr/lib/dracut/hooks/pre-pivot/10-overlay-mount.sh",
                         "usr/bin/mount", "usr/bin/umount", "usr/bin/mkdir",
                         f"usr/lib/modules/{KVER}/kernel/fs/overlayfs/overlay.ko"):
                files[name] = b"stand-in\n"
        if initramfs_unlocks:
            files[INITRAMFS_UNLOCKER] = b"\x7fELF stand-in\n"
            files[INITRAMFS_TCTI] = b"\x7fELF stand-in\n"
        t.file(f"usr/lib/modules/{KVER}/initramfs.img", cpio_gz(files))
    if padding:
        t.file("usr/lib/padding.bin", os.urandom(1024) * (padding // 1024))
    return t.bytes()


def second_layer() -> bytes:
    """A small upper layer: a whiteout and a new file, so installs go through layering."""
    return TarBuilder().dir("etc").file("etc/motd", b"installed by nbc-tui tests\n").whiteout(
        "etc/hostname").bytes()


def make_image(dest: Path, *, tag: str = "latest", compression: str = "gzip", **kwargs: object) -> str:
    """Write the image and return its reference ``oci:DIR:TAG``."""
    write_layout(dest, [ImageSpec(layers=[Layer(base_layer(**kwargs), compression),  # type: ignore[arg-type]
                                          Layer(second_layer(), "zstd")], tag=tag)])
    return f"oci:{dest}:{tag}"


def make_versions(dest: Path, versions: dict[str, dict[str, object]]) -> dict[str, str]:
    """One layout holding several tagged images (``{"v1": {}, "v2": {"version": 2}}``): their references."""
    write_layout(dest, [ImageSpec(layers=[Layer(base_layer(**kw), "gzip"),  # type: ignore[arg-type]
                                          Layer(second_layer(), "zstd")], tag=tag) for tag, kw in versions.items()])
    return {tag: f"oci:{dest}:{tag}" for tag in versions}

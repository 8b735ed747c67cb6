"""The pre-install scan: the virtual tree, the inventory, and every hostile entry refused by name."""

from __future__ import annotations

import gzip
import io
import re
import threading
from pathlib import Path

import pytest

from nbc_tui.backend.boot.kernel import version_key
from nbc_tui.backend.errors import Cancelled, InputError, NbcError
from nbc_tui.backend.image.layer_rules import LayerApplier, simple_name
from nbc_tui.backend.image.layers import TarReader
from nbc_tui.backend.image.opener import open_image
from nbc_tui.backend.image.resolve import DIR, LINK, MISSING, OTHER, Refused, clean_name, resolve
from nbc_tui.backend.image.scan import (
    PROBED_GLOBS,
    PROBED_PATHS,
    KernelInfo,
    VirtualTree,
    parse_os_release,
    scan_image,
)
from nbc_tui.backend.system.initramfs_needs import (
    DRACUT_CRYPT_MODULE,
    DRACUT_TPM2_MODULE,
    initramfs_can_unlock,
    initramfs_has_tpm2,
    unlock_support_problem,
)
from tests.support.oci import ImageSpec, Layer, TarBuilder, flip_byte, newc_cpio, write_layout

EARLY = newc_cpio({"kernel/x86/microcode/GenuineIntel.bin": b"\x01" * 3000})
HOOK = "var/lib/dracut/hooks/pre-pivot/50etc-overlay-mount.sh"
WITH_HOOK = EARLY + gzip.compress(newc_cpio({"init": b"x", HOOK: b"#"}))
WITHOUT_HOOK = gzip.compress(newc_cpio({"init": b"x"}))
OS_RELEASE = b'# comment\nNAME="Snow Linux"\nID=snow\nPRETTY_NAME=\'Snow 1 (frost)\'\nVERSION_ID="1"\n'


def _image(tmp_path: Path, *layers: bytes, compression: str = "gzip") -> str:
    write_layout(tmp_path / "layout", [ImageSpec([Layer(t, compression) for t in layers])])
    return f"oci:{tmp_path / 'layout'}"


def _base() -> TarBuilder:
    return (TarBuilder().dir("usr").dir("usr/lib").dir("usr/bin").dir("usr/sbin").dir("etc")
            .symlink("lib", "usr/lib").symlink("sbin", "usr/sbin"))


def test_inventory_of_a_synthetic_image(tmp_path: Path) -> None:
    k1, k2, k3 = "usr/lib/modules/6.1.0-18-amd64", "usr/lib/modules/6.10.2", "usr/lib/modules/5.0-extra"
    layer1 = (_base().dir("usr/lib/modules").dir(k1).dir(k2).dir(k3)
              .file(f"{k1}/vmlinuz", b"k" * 1000).file(f"{k1}/initramfs.img", WITH_HOOK)
              .file(f"{k2}/vmlinuz-6.10.2", b"k" * 2000).file(f"{k2}/initrd.img-6.10.2", WITHOUT_HOOK)
              .file(f"{k3}/modules.dep", b"")  # modules only, no kernel: not listed
              .file("usr/lib/os-release", b"NAME=old\n").symlink("etc/os-release", "../usr/lib/os-release")
              .file("usr/lib/systemd/boot/efi/systemd-bootx64.efi", b"MZ")
              .file("usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so", b"\x7fELF")
              .file("usr/lib/grub/x86_64-efi/normal.mod", b"mod")
              .file("usr/lib/shim/shimx64.efi.signed", b"MZ")
              .file("usr/sbin/dracut", b"#!/bin/bash\n", mode=0o755)
              .file("usr/lib/dracut/modules.d/95etc-overlay/module-setup.sh", b"#!/bin/bash\n")
              .bytes())
    layer2 = (TarBuilder().file("usr/lib/os-release", OS_RELEASE)  # replaces the old one
              .whiteout("usr/lib/grub/x86_64-efi")                 # GRUB modules gone
              .bytes())
    progress: list[tuple[int, int]] = []
    inv = scan_image(open_image(_image(tmp_path, layer1, layer2)), on_progress=lambda d, t: progress.append((d, t)))
    assert inv.kernels == [  # with their sizes: what each slot's boot files take on the ESP
        KernelInfo("6.10.2", f"{k2}/vmlinuz-6.10.2", f"{k2}/initrd.img-6.10.2", 2000, len(WITHOUT_HOOK)),
        KernelInfo("6.1.0-18-amd64", f"{k1}/vmlinuz", f"{k1}/initramfs.img", 1000, len(WITH_HOOK)),
    ]
    assert inv.initramfs_has_etc_overlay == {"6.10.2": False, "6.1.0-18-amd64": True}
    assert inv.os_release == {"NAME": "Snow Linux", "ID": "snow", "PRETTY_NAME": "Snow 1 (frost)",
                              "VERSION_ID": "1"}
    assert inv.has_systemd_boot_efi and inv.has_shim and inv.has_dracut and inv.has_etc_overlay_module
    assert not inv.has_grub_efi_modules
    assert inv.systemd_version == 252
    assert inv.uncompressed_bytes == (1000 + len(WITH_HOOK) + 2000 + len(WITHOUT_HOOK) + len(OS_RELEASE)
                                      + 2 + 4 + 2 + 12 + 12)
    assert progress[-1][0] == progress[-1][1] > 0


def test_inventory_follows_symlinks_inside_the_image(tmp_path: Path) -> None:
    layer = (TarBuilder().dir("usr").dir("usr/lib").dir("usr/lib64").dir("etc")
             .file("etc/os-release", b"ID=fedora\n")
             .symlink("usr/lib/os-release", "/etc/os-release")  # absolute: resolved inside the image
             .file("usr/lib64/systemd/libsystemd-shared-255.6-1.fc40.so", b"")
             .file("usr/lib64/systemd/libsystemd-core-255.6-1.fc40.so", b"")
             .dir("boot").symlink("usr/bin", "../bin").dir("bin").file("bin/dracut", b"")
             .bytes())
    inv = scan_image(open_image(_image(tmp_path, layer, compression="zstd")))
    assert inv.os_release == {"ID": "fedora"}
    assert inv.systemd_version == 255
    assert inv.has_dracut  # usr/bin/dracut through usr/bin -> ../bin
    assert inv.kernels == [] and not inv.has_systemd_boot_efi and not inv.has_shim


UNLOCKER, TCTI = "usr/lib/systemd/systemd-cryptsetup", "usr/lib/x86_64-linux-gnu/libtss2-tcti-device.so.0"
CRYPT_DIR, TPM2_DIR = "usr/lib/dracut/modules.d/90crypt", "usr/lib/dracut/modules.d/91tpm2-tss"


def _kernel(t: TarBuilder, kver: str, initramfs: bytes) -> TarBuilder:
    return (t.dir(f"usr/lib/modules/{kver}").file(f"usr/lib/modules/{kver}/vmlinuz", b"k")
            .file(f"usr/lib/modules/{kver}/initramfs.img", initramfs))


def test_inventory_keeps_initramfs_member_names_and_unlock_facts(tmp_path: Path) -> None:
    """Each initramfs's names, read while the layer streams by, and what the encryption checks ask of the
    final tree: an upper layer's whiteout of 90crypt counts, and so does a symlinked TCTI library."""
    unlocks = gzip.compress(newc_cpio({"init": b"x", HOOK: b"#", UNLOCKER: b"\x7fELF", TCTI: b"\x7fELF"}))
    layer1 = _base().dir("usr/lib/modules").dir("usr/lib/dracut").dir("usr/lib/dracut/modules.d")
    _kernel(layer1, "6.1", unlocks)
    _kernel(layer1, "6.2", WITHOUT_HOOK)
    _kernel(layer1, "6.3", b"\x1f\x8b not really gzip")  # unreadable: counts as empty
    (layer1.file(UNLOCKER, b"\x7fELF", mode=0o755)
     .file("usr/lib/x86_64-linux-gnu/libtss2-tcti-device.so.0.0.0", b"\x7fELF")
     .symlink(TCTI, "libtss2-tcti-device.so.0.0.0")
     .dir(CRYPT_DIR).file(f"{CRYPT_DIR}/module-setup.sh", b"#!/bin/bash\n")
     .dir(TPM2_DIR).file(f"{TPM2_DIR}/module-setup.sh", b"#!/bin/bash\n")
     .file("usr/bin/tpm2", b"\x7fELF", mode=0o755))
    layer2 = TarBuilder().whiteout(CRYPT_DIR).bytes()
    inv = scan_image(open_image(_image(tmp_path, layer1.bytes(), layer2)))
    assert {UNLOCKER, TCTI, HOOK, "init"} <= inv.initramfs_members["6.1"]
    assert inv.initramfs_members["6.2"] == {"init"} and inv.initramfs_members["6.3"] == frozenset()
    assert inv.initramfs_has_etc_overlay == {"6.1": True, "6.2": False, "6.3": False}
    assert initramfs_can_unlock(inv.initramfs_members["6.1"])
    assert initramfs_has_tpm2(inv.initramfs_members["6.1"])
    assert not initramfs_can_unlock(inv.initramfs_members["6.2"])
    assert inv.exists(UNLOCKER) and inv.exists("usr/bin/tpm2") and not inv.exists("sbin/tpm2")
    assert not inv.exists("usr/sbin/cryptsetup")
    assert not inv.matches(DRACUT_CRYPT_MODULE)  # whited out by the upper layer
    assert inv.matches(DRACUT_TPM2_MODULE)
    assert inv.matches("usr/lib/*/libtss2-tcti-device.so*") and not inv.matches("usr/lib64/libtss2-tcti-device.so*")
    assert set(inv.probed_paths) == set(PROBED_PATHS) and set(inv.probed_globs) == set(PROBED_GLOBS)
    with pytest.raises(KeyError):
        inv.exists("etc/crypttab")  # not probed: the scan cannot be asked afterwards


def test_unlock_facts_are_found_through_symlinked_directories(tmp_path: Path) -> None:
    """/usr merged the other way round (usr/lib -> ../lib, absolute links resolved inside the image), a
    module under a newer number (dracut-ng's 70crypt), a dangling cryptsetup link, and files written
    through the lib -> usr/lib link of a merged /usr."""
    layer = (TarBuilder().dir("usr").dir("lib").symlink("usr/lib", "../lib").dir("usr/sbin").dir("usr/lib64")
             .file("lib/systemd/systemd-cryptsetup", b"\x7fELF")
             .dir("lib/dracut").dir("lib/dracut/modules.d").dir("lib/dracut/modules.d/70crypt")
             .symlink("usr/sbin/cryptsetup", "/nonexistent/cryptsetup")
             .file("lib/x86_64-linux-gnu/libtss2-tcti-device.so.0.0.0", b"")
             .symlink("usr/lib64/libtss2-tcti-device.so.0", "/lib/x86_64-linux-gnu/gone.so")  # a name counts
             .bytes())
    inv = scan_image(open_image(_image(tmp_path, layer)))
    assert inv.exists("usr/lib/systemd/systemd-cryptsetup") and not inv.exists("usr/sbin/cryptsetup")
    assert inv.matches(DRACUT_CRYPT_MODULE) and not inv.matches(DRACUT_TPM2_MODULE)
    assert inv.matches("usr/lib/*/libtss2-tcti-device.so*") and inv.matches("usr/lib64/libtss2-tcti-device.so*")
    assert unlock_support_problem(inv.exists, inv.matches) is None

    merged = (_base().file("lib/systemd/systemd-cryptsetup", b"\x7fELF")  # lands in usr/lib/systemd
              .dir("usr/lib/dracut").dir("usr/lib/dracut/modules.d").dir("lib/dracut/modules.d/90crypt")
              .bytes())
    inv = scan_image(open_image(_image(tmp_path / "merged", merged)))
    assert inv.exists(UNLOCKER) and inv.matches(DRACUT_CRYPT_MODULE)


def _apply(tree: VirtualTree, data: bytes) -> None:
    reader = TarReader(io.BytesIO(data).read)
    applier = LayerApplier(tree)
    for entry in reader:
        applier.apply(entry, reader)


def test_whiteouts_and_opaque_directories_in_the_virtual_tree() -> None:
    tree = VirtualTree()
    _apply(tree, (TarBuilder().dir("opt").dir("opt/app").file("opt/app/old").dir("opt/app/sub")
                  .file("opt/app/sub/old2").file("opt/keep").file("gone").dir("gonedir").file("gonedir/x")
                  .symlink("link", "opt").bytes()))
    _apply(tree, (TarBuilder()
                  .file("opt/app/new-before")      # same layer, before the marker: survives
                  .file("opt/app/sub/new2")        # keeps sub, but not sub's lower content
                  .opaque("opt/app")
                  .file("opt/app/new-after")
                  .whiteout("gone").whiteout("gonedir")
                  .whiteout("link")                # the symlink goes, not its target
                  .file("fresh").whiteout("fresh")  # a whiteout never hides its own layer's files
                  .bytes()))
    assert sorted(tree.nodes) == ["", "fresh", "opt", "opt/app", "opt/app/new-after", "opt/app/new-before",
                                  "opt/app/sub", "opt/app/sub/new2", "opt/keep"]


def test_replacements_in_the_virtual_tree() -> None:
    tree = VirtualTree()
    _apply(tree, TarBuilder().dir("d2f").file("d2f/x").file("f2d").dir("d2l").symlink("l2d", "d2l")
           .dir("keep").file("keep/inner").bytes())
    _apply(tree, TarBuilder().file("d2f").dir("f2d").file("f2d/y").symlink("d2l", "f2d").dir("l2d")
           .dir("keep", mode=0o700).bytes())
    kinds = {p: n.kind for p, n in tree.nodes.items()}
    assert kinds == {"": DIR, "d2f": OTHER, "f2d": DIR, "f2d/y": OTHER, "d2l": LINK, "l2d": DIR,
                     "keep": DIR, "keep/inner": OTHER}


def test_clean_name_and_resolve() -> None:
    assert clean_name("./usr//bin/./ls") == ["usr", "bin", "ls"]
    assert clean_name("a/b/../c") == ["a", "c"]
    assert clean_name("./") == []
    links = {"lib": "usr/lib", "abs": "/usr/share", "loop": "loop", "esc": "../x", "up": "/../x"}
    dirs = {"", "usr", "usr/lib", "usr/share"}

    def lookup(path: str) -> tuple[int, str | None]:
        if path in links:
            return LINK, links[path]
        return (DIR, None) if path in dirs else (MISSING, None)

    assert resolve(["lib", "modules"], lookup, name="n") == "usr/lib/modules"
    assert resolve(["abs", "doc"], lookup, name="n", follow_absolute=True) == "usr/share/doc"
    assert resolve(["usr", "lib", "..", "..", "usr"], lookup, name="n") == "usr"
    for parts, why in ((["loop", "x"], "too many symlinks"), (["esc", "y"], "outside the image root"),
                       (["abs", "doc"], "through the absolute symlink /abs -> /usr/share")):
        with pytest.raises(Refused, match=why):
            resolve(parts, lookup, name="n")
    with pytest.raises(Refused, match=re.escape("through the symlink /up -> /../x")):
        resolve(["up"], lookup, name="n", follow_absolute=True)


HOSTILE = {
    "absolute name": (TarBuilder().file("/etc/evil", b"x"), "/etc/evil", "absolute path"),
    "dot-dot": (TarBuilder().file("../evil", b"x"), "../evil", "with '..'"),
    "inner dot-dot": (TarBuilder().file("a/../../evil", b"x"), "a/../../evil", "with '..'"),
    "relative symlink": (TarBuilder().symlink("esc", "../../outside").file("esc/pwned", b"x"),
                         "esc/pwned", "through the symlink /esc -> ../../outside"),
    "absolute symlink": (TarBuilder().symlink("esc", "/tmp").file("esc/pwned", b"x"),
                         "esc/pwned", "through the absolute symlink /esc -> /tmp"),
    "absolute symlink deep down": (TarBuilder().dir("usr").symlink("usr/alt", "/usr").dir("usr/alt/lib"),
                                   "usr/alt/lib/", "through the absolute symlink /usr/alt -> /usr"),
    "hardlink via an absolute symlink": (TarBuilder().symlink("esc", "/etc").hardlink("hl", "esc/passwd"),
                                         "hl", "absolute symlink /esc -> /etc"),
    "chained symlinks": (TarBuilder().dir("d").symlink("d/up", "..").symlink("d/up2", "up/..")
                         .file("d/up2/pwned", b"x"), "d/up2/pwned", "outside the image root"),
    "hardlink outside": (TarBuilder().hardlink("hl", "../../etc/passwd"), "hl", "which climbs out"),
    "hardlink via symlink": (TarBuilder().symlink("esc", "..").hardlink("hl", "esc/etc/passwd"), "hl",
                             "outside the image root"),
    "hardlink to nothing": (TarBuilder().hardlink("hl", "no/such/file"), "hl", "does not exist"),
    "hardlink to a directory": (TarBuilder().dir("d").hardlink("hl", "d"), "hl", "is a directory"),
    "file as a directory": (TarBuilder().file("f", b"x").file("f/g", b"y"), "f/g", "/f is not a directory"),
    "symlink loop": (TarBuilder().symlink("a", "b").symlink("b", "a").file("a/x", b"y"), "a/x",
                     "too many symlinks"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_entries_are_refused_naming_entry_and_layer(tmp_path: Path, case: str) -> None:
    builder, entry, why = HOSTILE[case]
    ref = _image(tmp_path, _base().bytes(), builder.bytes())
    source = open_image(ref)
    with pytest.raises(InputError) as info:
        scan_image(source)
    message = info.value.message
    assert f"entry {entry!r}" in message
    assert why in message
    assert source.layers[1].digest[:19] in message
    assert info.value.details["layer"] == source.layers[1].digest
    assert info.value.exit_code == 2


def test_relative_symlinks_that_stay_inside_are_followed(tmp_path: Path) -> None:
    layer = _base().symlink("etc/alt", "../usr/lib").file("etc/alt/thing", b"x").file("lib/other", b"yz").bytes()
    inv = scan_image(open_image(_image(tmp_path, layer)))
    assert inv.entries == 10  # usr usr/lib usr/bin usr/sbin etc lib sbin etc/alt usr/lib/thing usr/lib/other
    assert inv.uncompressed_bytes == 3


def test_a_corrupt_blob_is_refused(tmp_path: Path) -> None:
    ref = _image(tmp_path, _base().bytes(), TarBuilder().file("a", b"x" * 100_000).bytes())
    source = open_image(ref)
    flip_byte(tmp_path / "layout", source.layers[1].digest, 30)
    with pytest.raises(NbcError) as info:
        scan_image(source)
    assert source.layers[1].digest in info.value.message
    assert info.value.exit_code == 1


def test_cancel_stops_the_scan(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        scan_image(open_image(_image(tmp_path, _base().bytes())), cancel=cancel)


def test_os_release_parsing_and_version_order() -> None:
    assert parse_os_release(OS_RELEASE.decode() + 'BAD LINE\nX="a \\"quoted\\" word"\n') == {
        "NAME": "Snow Linux", "ID": "snow", "PRETTY_NAME": "Snow 1 (frost)", "VERSION_ID": "1",
        "X": 'a "quoted" word'}
    versions = ["6.9.1", "6.10.0", "5.15.0-91-generic", "6.10.0-rc1"]
    assert sorted(versions, key=version_key) == ["5.15.0-91-generic", "6.9.1", "6.10.0", "6.10.0-rc1"]


@pytest.mark.parametrize(("compression", "why"), [("tar", "not a tar archive"),
                                                  ("gzip", "not a tar archive")])
def test_a_layer_that_is_not_a_tar_archive_is_named(tmp_path: Path, compression: str, why: str) -> None:
    ref = _image(tmp_path, _base().bytes(), b"this is not a tar archive" * 100, compression=compression)
    source = open_image(ref)
    with pytest.raises(NbcError, match=why) as info:
        scan_image(source)
    assert source.layers[1].digest[:19] in info.value.message
    assert info.value.exit_code == 1


def test_only_a_simple_name_in_a_known_directory_skips_the_rules() -> None:
    """What the extraction child may create without weighing the rules (LayerApplier.simple_dir, simple_name)."""
    tree = VirtualTree()
    _apply(tree, TarBuilder().dir("etc").symlink("lib", "usr/lib").bytes())
    applier = LayerApplier(tree)
    for directory, canonical in (("etc", "etc"), ("", ""), ("./etc/", "etc"), ("etc//", "etc"), ("x/../etc", "etc"),
                                 (".", "")):
        assert applier.simple_dir(directory) == canonical, directory
    for directory in ("lib", "usr", "usr/lib", "etc/x", "/etc", "../etc", "etc/a\0b"):
        assert applier.simple_dir(directory) is None, directory
    for name in ("hostname", "...", "..a", ".a", "x.wh.", "\udcff"):
        assert simple_name(name), name
    for name in ("", ".", "..", ".wh.hostname", ".wh..wh..opq", ".wh..wh.plnk", "a/b", "a\0b"):
        assert not simple_name(name), name

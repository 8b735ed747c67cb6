"""Both bootloaders installed for real onto a FAT ESP on a loop device, from a small synthetic target.

systemd-boot is Debian's real EFI binary (package systemd-boot-efi, downloaded once and cached); GRUB is
a real grub-mkimage build from the host's modules, the image's modules, or the image's own grub-mkimage
run in a chroot. Shim chains use stand-in binaries: only which file lands where matters there.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbc_tui.backend.boot.bootloader import install_loader, os_title, put_kernel_files, resolve_bootloader, slot_entry
from nbc_tui.backend.boot.cmdline import kernel_cmdline
from nbc_tui.backend.boot.kernel import find_kernel
from nbc_tui.backend.boot.menu import write_menu
from nbc_tui.backend.runner import RunContext
from nbc_tui.backend.storage.esp import Esp, esp_uuid
from nbc_tui.backend.system.slots import Slot
from tests.support.debs import unpacked
from tests.support.loopdev import attached_loop

pytestmark = pytest.mark.root

KVER = "6.1.0-99-test"
VOLUME_ID = "C0FFEE42"
UUID = esp_uuid(VOLUME_ID)
HOST_GRUB = Path("/usr/lib/grub/x86_64-efi")
TITLE = "Test OS 1 (it's here)"


@pytest.fixture(scope="session")
def systemd_boot_efi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian's systemd-boot EFI binary, from the systemd-boot-efi package (cached across runs)."""
    tree = unpacked("systemd-boot-efi", tmp_path_factory.mktemp("systemd-boot-efi"))
    binary = tree / "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
    assert is_pe(binary.read_bytes())
    return binary


@pytest.fixture
def esp(tmp_path: Path) -> Iterator[Esp]:
    with attached_loop(tmp_path / "esp.img", size=128 * 1024 * 1024) as dev:
        part = Esp(dev, ctx=RunContext())
        part.format(VOLUME_ID)
        yield part


@pytest.fixture
def target(tmp_path: Path) -> Path:
    root = tmp_path / "target"
    mods = root / "usr/lib/modules" / KVER
    mods.mkdir(parents=True)
    (mods / "vmlinuz").write_bytes(b"MZ fake kernel " * 100)
    (mods / "initramfs.img").write_bytes(b"070701 fake initramfs " * 100)
    (root / "usr/lib/os-release").write_text(f'NAME="Test"\nPRETTY_NAME="{TITLE}"\n')
    (root / "var/tmp").mkdir(parents=True)
    return root


def put(root: Path, rel: str, data: bytes | Path) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, Path):
        shutil.copyfile(data, p)
    else:
        p.write_bytes(data)
    return p


def is_pe(data: bytes) -> bool:
    if data[:2] != b"MZ":
        return False
    (pe_offset,) = struct.unpack_from("<I", data, 0x3C)
    return data[pe_offset:pe_offset + 4] == b"PE\0\0"


def install(kind: str, target: Path, esp: Esp, warnings: list[str], kargs: tuple[str, ...] = ()) -> list[str]:
    options = kernel_cmdline(root_uuid="root-uuid", esp_uuid=UUID, var_uuid="var-uuid", filesystem="btrfs",
                             kernel_args=("console=ttyS0", *kargs))
    kernel = find_kernel(target)
    put_kernel_files(esp, Slot.A, kernel, dry_run=False)
    install_loader(kind, target_root=target, esp=esp, esp_uuid=UUID, ctx=RunContext(),  # type: ignore[arg-type]
                   warn=warnings.append)
    write_menu(esp, kind, slot_entry(kind, Slot.A, kernel, cmdline=options, title=os_title(target)))  # type: ignore[arg-type]
    return options


def check_kernel_files(esp: Esp, target: Path) -> None:
    mods = target / "usr/lib/modules" / KVER
    assert esp.read(f"A/vmlinuz-{KVER}") == (mods / "vmlinuz").read_bytes()
    assert esp.read(f"A/initramfs-{KVER}.img") == (mods / "initramfs.img").read_bytes()


def test_systemd_boot(target: Path, esp: Esp, systemd_boot_efi: Path) -> None:
    put(target, "usr/lib/systemd/boot/efi/systemd-bootx64.efi", systemd_boot_efi)
    assert resolve_bootloader("auto", target) == "systemd-boot"
    esp.put_text("title stale\n", "loader/entries/from-the-image.conf")
    warnings: list[str] = []
    options = install("systemd-boot", target, esp, warnings)
    assert warnings == []
    assert esp.files() == [
        f"A/initramfs-{KVER}.img",
        f"A/vmlinuz-{KVER}",
        "EFI/BOOT/BOOTX64.EFI",
        "EFI/systemd/systemd-bootx64.efi",
        "loader/entries/bootc.conf",
        "loader/loader.conf",
    ]
    check_kernel_files(esp, target)
    binary = systemd_boot_efi.read_bytes()
    assert esp.read("EFI/BOOT/BOOTX64.EFI") == binary
    assert esp.read("EFI/systemd/systemd-bootx64.efi") == binary
    assert esp.read("loader/loader.conf").decode() == (
        "timeout 5\nconsole-mode keep\neditor no\n")
    assert esp.read("loader/entries/bootc.conf").decode() == (
        f"title   {TITLE}\n"
        f"linux   /A/vmlinuz-{KVER}\n"
        f"initrd  /A/initramfs-{KVER}.img\n"
        f"options {' '.join(options)}\n"
    )
    assert options[0] == "root=UUID=root-uuid" and options[-1] == "console=ttyS0"


def test_systemd_boot_behind_shim(target: Path, esp: Esp, systemd_boot_efi: Path) -> None:
    put(target, "usr/lib/systemd/boot/efi/systemd-bootx64.efi", systemd_boot_efi)
    put(target, "usr/lib/shim/shimx64.efi.signed", b"MZ shim")
    put(target, "usr/lib/shim/mmx64.efi.signed", b"MZ mok")
    put(target, "usr/lib/shim/fbx64.efi.signed", b"MZ fallback")
    warnings: list[str] = []
    install("systemd-boot", target, esp, warnings)
    assert "no signed systemd-boot" in warnings[0]
    assert esp.read("EFI/BOOT/BOOTX64.EFI") == systemd_boot_efi.read_bytes()  # booted directly
    assert not esp.exists("EFI/BOOT/grubx64.efi")

    put(target, "usr/lib/systemd/boot/efi/systemd-bootx64.efi.signed", b"MZ signed sd-boot")
    warnings.clear()
    install("systemd-boot", target, esp, warnings)
    assert warnings == []
    assert esp.read("EFI/BOOT/BOOTX64.EFI") == b"MZ shim"
    assert esp.read("EFI/BOOT/grubx64.efi") == b"MZ signed sd-boot"
    assert esp.read("EFI/BOOT/mmx64.efi") == b"MZ mok"
    assert esp.read("EFI/systemd/systemd-bootx64.efi") == b"MZ signed sd-boot"
    assert not any("fbx64" in f.lower() for f in esp.files())


def grub_cfg_text(options: list[str]) -> str:
    grub_line = ["root=UUID=root-uuid", "ro", "console=tty0", *options[2:]]
    return (
        "set timeout=5\n"
        "set default=0\n"
        "\n"
        "menuentry 'Test OS 1 (it'\\''s here)' {\n"
        f"    linux /A/vmlinuz-{KVER} {' '.join(grub_line)}\n"
        f"    initrd /A/initramfs-{KVER}.img\n"
        "}\n"
    )


def check_grub_efi(data: bytes) -> None:
    assert is_pe(data)
    assert f"search --no-floppy --fs-uuid --set=root {UUID}".encode() in data
    assert b"configfile ($root)/grub/grub.cfg" in data


def test_grub_from_host_modules(target: Path, esp: Esp) -> None:
    assert resolve_bootloader("auto", target) == "grub2"
    warnings: list[str] = []
    options = install("grub2", target, esp, warnings)
    assert warnings == []
    assert esp.files() == [f"A/initramfs-{KVER}.img", f"A/vmlinuz-{KVER}", "EFI/BOOT/BOOTX64.EFI",
                           "grub/grub.cfg", "grub/grubenv"]
    check_kernel_files(esp, target)
    check_grub_efi(esp.read("EFI/BOOT/BOOTX64.EFI"))
    assert esp.read("grub/grub.cfg").decode() == grub_cfg_text(options)


def test_grub_from_the_images_modules(target: Path, esp: Esp) -> None:
    shutil.copytree(HOST_GRUB, target / "usr/lib/grub/x86_64-efi")
    # Drop an optional module: the build goes on without it and says so.
    (target / "usr/lib/grub/x86_64-efi/btrfs.mod").unlink()
    warnings: list[str] = []
    install("grub2", target, esp, warnings)
    assert warnings == ["GRUB modules not available, built without them: btrfs"]
    check_grub_efi(esp.read("EFI/BOOT/BOOTX64.EFI"))


def test_grub_built_by_the_images_own_grub_mkimage(target: Path, esp: Esp) -> None:
    # A minimal chroot: grub-mkimage, the libraries it links and the modules.
    tool = Path("/usr/bin/grub-mkimage")
    put(target, "usr/bin/grub-mkimage", tool).chmod(0o755)
    ldd = subprocess.run(["ldd", str(tool)], capture_output=True, text=True, check=True).stdout
    for line in ldd.splitlines():
        lib = next((w for w in line.split() if w.startswith("/")), None)
        if lib:
            put(target, lib.lstrip("/"), Path(lib).resolve()).chmod(0o755)
    shutil.copytree(HOST_GRUB, target / "usr/lib/grub/x86_64-efi")
    warnings: list[str] = []
    install("grub2", target, esp, warnings)
    assert warnings == []
    check_grub_efi(esp.read("EFI/BOOT/BOOTX64.EFI"))
    assert list((target / "var/tmp").iterdir()) == []  # the scratch dir is gone


def test_grub_behind_shim_with_a_signed_grub(target: Path, esp: Esp) -> None:
    """A signed GRUB whose prefix cannot be read (a stand-in): the early config also goes to EFI/<os-release ID>,
    the directory distributions build their GRUB's prefix with."""
    put(target, "usr/lib/shim/shimx64.efi.signed", b"MZ shim")
    put(target, "usr/lib/shim/mmx64.efi.signed", b"MZ mok")
    put(target, "usr/lib/shim/fbx64.efi.signed", b"MZ fallback")
    put(target, "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", b"MZ signed grub")
    with (target / "usr/lib/os-release").open("a") as f:
        f.write("ID=testos\n")
    warnings: list[str] = []
    options = install("grub2", target, esp, warnings)
    assert warnings == []
    assert esp.files() == [f"A/initramfs-{KVER}.img", f"A/vmlinuz-{KVER}", "EFI/BOOT/BOOTX64.EFI",
                           "EFI/BOOT/grub.cfg", "EFI/BOOT/grubx64.efi", "EFI/BOOT/mmx64.efi",
                           "EFI/testos/grub.cfg", "grub/grub.cfg", "grub/grubenv"]
    assert esp.read("EFI/BOOT/BOOTX64.EFI") == b"MZ shim"
    assert esp.read("EFI/BOOT/grubx64.efi") == b"MZ signed grub"
    assert esp.read("EFI/BOOT/mmx64.efi") == b"MZ mok"
    early = (f"search --no-floppy --fs-uuid --set=root {UUID}\n"
             "set prefix=($root)/grub\n"
             "configfile ($root)/grub/grub.cfg\n")
    assert esp.read("EFI/BOOT/grub.cfg").decode() == early
    assert esp.read("EFI/testos/grub.cfg").decode() == early
    assert esp.read("grub/grub.cfg").decode() == grub_cfg_text(options)


def test_a_signed_grub_without_a_known_prefix_is_said(target: Path, esp: Esp) -> None:
    put(target, "usr/lib/shim/shimx64.efi.signed", b"MZ shim")
    put(target, "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", b"MZ signed grub")
    warnings: list[str] = []
    install("grub2", target, esp, warnings)
    assert warnings == ["Could not tell where the image's signed GRUB looks for its config first: only "
                        "EFI/BOOT/grub.cfg was written (another attached medium may take over the boot)"]
    assert not esp.exists("EFI/testos/grub.cfg") and esp.exists("EFI/BOOT/grub.cfg")


def test_grub_with_shim_but_no_signed_grub_boots_directly(target: Path, esp: Esp) -> None:
    put(target, "usr/lib/shim/shimx64.efi.signed", b"MZ shim")
    warnings: list[str] = []
    install("grub2", target, esp, warnings)
    assert "no signed GRUB" in warnings[0]
    bootx64 = esp.read("EFI/BOOT/BOOTX64.EFI")
    assert bootx64 != b"MZ shim"
    check_grub_efi(bootx64)
    assert not esp.exists("EFI/BOOT/grubx64.efi")

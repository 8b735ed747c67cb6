"""lint's checks over fake trees, a real root directory and the scan's inventory; --fix and its refusal; and the
install's image checks, which lint shares, still raising the same first problem."""

from __future__ import annotations

import fnmatch
import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nbc_tui.backend.errors import InputError, NbcError
from nbc_tui.backend.image.opener import open_image
from nbc_tui.backend.image.scan import SMALL_FILE_MAX, ImageInventory, KernelInfo, scan_image
from nbc_tui.backend.lint import (
    LintIssue,
    LintReport,
    RootTree,
    image_issues,
    lint_image,
    lint_root,
    lint_tree,
    machine_id_issues,
    random_seed_issues,
    running_in_container,
    ssh_host_key_issues,
)
from nbc_tui.backend.provenance import not_verified
from nbc_tui.backend.steps.image import CheckedImage, SlotNeeds, check_image, image_problems
from tests.support.oci import ImageSpec, Layer, TarBuilder, flip_byte, newc_cpio, write_layout

KVER = "6.1.0-test"
HOOK = "usr/lib/dracut/hooks/pre-pivot/50-etc-overlay-mount.sh"
UNLOCKER, TCTI = "usr/lib/systemd/systemd-cryptsetup", "usr/lib/x86_64-linux-gnu/libtss2-tcti-device.so.0"
MACHINE_ID = "3d1219c7c4c5404aaa1f6d2a48adfda4\n"
SD_BOOT = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
GRUB_MOD = "usr/lib/grub/x86_64-efi/normal.mod"


@dataclass
class FakeTree:
    """A tree as a dict of files (path -> content), with the image facts given outright."""

    files: dict[str, bytes] = field(default_factory=dict)
    kernels: list[KernelInfo] = field(default_factory=lambda: [
        KernelInfo(KVER, f"usr/lib/modules/{KVER}/vmlinuz", f"usr/lib/modules/{KVER}/initramfs.img")])
    initramfs_members: dict[str, frozenset[str]] = field(
        default_factory=lambda: {KVER: frozenset({HOOK, UNLOCKER, TCTI})})
    has_dracut: bool = False
    has_systemd_boot_efi: bool = True
    has_grub_efi_modules: bool = False

    def exists(self, path: str) -> bool:
        return path in self.files or any(f.startswith(path + "/") for f in self.files)

    def matching(self, glob: str) -> list[str]:
        parts = glob.split("/")
        return sorted(f for f in self.files if len(f.split("/")) == len(parts)
                      and all(fnmatch.fnmatch(n, p) for n, p in zip(f.split("/"), parts, strict=True)))

    def matches(self, glob: str) -> bool:
        return bool(self.matching(glob)) or any(self.matching("/".join(glob.split("/")[:i + 1]))
                                                for i in range(glob.count("/")))

    def size(self, path: str) -> int | None:
        return len(self.files[path]) if path in self.files else None

    def small_content(self, path: str) -> bytes | None:
        data = self.files.get(path)
        return data if data is not None and len(data) <= 4096 else None


def checks(issues: list[LintIssue]) -> list[tuple[str, str, str | None]]:
    return [(i.check, i.severity, i.path) for i in issues]


# -- nbc's three checks -----------------------------------------------------------------------------------

def test_ssh_host_keys_each_an_error_private_keys_first() -> None:
    tree = FakeTree({"etc/ssh/ssh_host_rsa_key": b"k", "etc/ssh/ssh_host_rsa_key.pub": b"p",
                     "etc/ssh/ssh_host_ed25519_key": b"k", "etc/ssh/sshd_config": b"",
                     "etc/ssh/ssh_host_rsa_key-cert.pub": b"c"})
    assert checks(ssh_host_key_issues(tree)) == [
        ("ssh-host-keys", "error", "/etc/ssh/ssh_host_ed25519_key"),
        ("ssh-host-keys", "error", "/etc/ssh/ssh_host_rsa_key"),
        ("ssh-host-keys", "error", "/etc/ssh/ssh_host_rsa_key.pub"),
    ]
    assert ssh_host_key_issues(FakeTree({"etc/ssh/sshd_config": b""})) == []


@pytest.mark.parametrize(("content", "shown"), [
    (None, None), (b"", None), (b"uninitialized\n", None), (b" \n\t", None),
    (MACHINE_ID.encode(), "(3d1219c7...)"), (b"abc", "(abc...)"), (b"x" * 5000, "(5000 bytes)"),
])
def test_machine_id_is_an_error_unless_missing_empty_or_uninitialized(content: bytes | None, shown: str | None) -> None:
    tree = FakeTree({} if content is None else {"etc/machine-id": content})
    issues = machine_id_issues(tree)
    if shown is None:
        assert issues == []
        return
    assert checks(issues) == [("machine-id", "error", "/etc/machine-id")]
    assert shown in issues[0].message and "should be empty or 'uninitialized'" in issues[0].message


def test_random_seeds_are_warnings_when_not_empty() -> None:
    tree = FakeTree({"var/lib/systemd/random-seed": b"\x01" * 512, "var/lib/random-seed": b""})
    assert checks(random_seed_issues(tree)) == [("random-seed", "warning", "/var/lib/systemd/random-seed")]
    tree.files["var/lib/random-seed"] = b"\x02"
    assert [i.path for i in random_seed_issues(tree)] == ["/var/lib/systemd/random-seed", "/var/lib/random-seed"]


# -- the install's image checks, as lint issues ------------------------------------------------------------

def test_a_bootable_image_has_no_image_issue() -> None:
    assert image_issues(FakeTree(), what="the image x") == []


def test_no_kernel_is_one_error_without_unlock_noise() -> None:
    issues = image_issues(FakeTree(kernels=[], initramfs_members={}), what="the image x")
    assert checks(issues) == [("kernel", "error", "/usr/lib/modules")]
    assert issues[0].message == "the image x has no kernel"


def test_no_initramfs_is_an_error() -> None:
    tree = FakeTree(kernels=[KernelInfo(KVER, f"usr/lib/modules/{KVER}/vmlinuz", None)], initramfs_members={})
    issues = image_issues(tree, what="the image x")
    assert checks(issues)[0] == ("initramfs", "error", f"/usr/lib/modules/{KVER}")
    assert issues[0].message == f"the image x has no initramfs for kernel {KVER}"


def test_etc_overlay_needs_the_hook_or_dracut() -> None:
    without_hook = {KVER: frozenset({UNLOCKER, TCTI})}
    issues = image_issues(FakeTree(initramfs_members=without_hook), what="the image x")
    assert checks(issues)[0] == ("etc-overlay", "error", f"/usr/lib/modules/{KVER}/initramfs.img")
    assert "cannot mount /etc as an overlay" in issues[0].message and issues[0].hint == "install dracut in the image"
    # dracut adds the module at install: then only a rebuilt initramfs must still unlock (a warning here)
    with_dracut = image_issues(FakeTree(initramfs_members=without_hook, has_dracut=True), what="the image x")
    assert [i.severity for i in with_dracut] == ["warning"]


def test_unlock_support_is_a_warning_naming_what_it_affects() -> None:
    plain = image_issues(FakeTree(initramfs_members={KVER: frozenset({HOOK})}), what="the image x")
    assert checks(plain) == [("unlock-support", "warning", None)]
    assert plain[0].message.startswith("the image cannot boot an encrypted disk: the image has neither")
    assert plain[0].message.endswith("an install with --encrypt would be refused, one without is fine")
    no_tpm2 = image_issues(FakeTree(initramfs_members={KVER: frozenset({HOOK, UNLOCKER})}), what="the image x")
    assert checks(no_tpm2) == [("unlock-support", "warning", None)]
    assert no_tpm2[0].message.startswith("with TPM2 unlock, the image cannot boot an encrypted disk")
    assert "--tpm2 would be refused" in no_tpm2[0].message


@pytest.mark.parametrize(("sd_boot", "grub", "warned"), [
    (True, False, False), (False, True, False), (True, True, False), (False, False, True)])
def test_no_bootloader_binary_warns_of_the_host_grub_fallback(sd_boot: bool, grub: bool, warned: bool) -> None:
    issues = image_issues(FakeTree(has_systemd_boot_efi=sd_boot, has_grub_efi_modules=grub), what="the image x")
    assert checks(issues) == ([("bootloader", "warning", None)] if warned else [])
    if warned:
        assert "falls back to the installing machine's GRUB" in issues[0].message


def test_lint_tree_runs_nbc_checks_first() -> None:
    tree = FakeTree({"etc/ssh/ssh_host_rsa_key": b"k", "etc/machine-id": b"abc\n",
                     "var/lib/systemd/random-seed": b"s"}, kernels=[], initramfs_members={})
    assert [i.check for i in lint_tree(tree, what="x")] == ["ssh-host-keys", "machine-id", "random-seed", "kernel"]


def test_report_counts_leave_fixed_issues_out() -> None:
    report = LintReport((LintIssue("ssh-host-keys", "error", "m", fixed=True), LintIssue("kernel", "error", "k"),
                         LintIssue("random-seed", "warning", "w"), LintIssue("bootloader", "warning", "b")))
    assert (report.error_count, report.warning_count, report.fixed_count) == (1, 2, 1)
    assert not report.success and report.fixable  # the random seed is still there
    assert not LintReport((LintIssue("kernel", "error", "k"),)).fixable
    assert LintReport(()).success


# -- the install still refuses with the same words, first problem first ----------------------------------------

def _checked(tree: FakeTree, *, size: int = 1000) -> CheckedImage:
    inv = ImageInventory(kernels=tree.kernels, initramfs_members=tree.initramfs_members, has_dracut=tree.has_dracut,
                         has_systemd_boot_efi=tree.has_systemd_boot_efi,
                         has_grub_efi_modules=tree.has_grub_efi_modules, uncompressed_bytes=size)
    inv.exists, inv.matches = tree.exists, tree.matches  # type: ignore[method-assign]
    return CheckedImage("oci:/img", source=None, inventory=inv, staged=None,
                        verification=not_verified("local image", "a fake tree"))  # type: ignore[arg-type]


def test_check_image_raises_the_first_refusal_and_never_a_warning() -> None:
    needs = SlotNeeds(encrypted=False, tpm2=False, bootloader="auto", slot_size=1 << 30)
    check_image(_checked(FakeTree(has_systemd_boot_efi=False)), needs)  # GRUB fallback: not a refusal
    broken = _checked(FakeTree(kernels=[], initramfs_members={}, has_systemd_boot_efi=False), size=2 << 30)
    sd_boot = SlotNeeds(encrypted=True, tpm2=True, bootloader="systemd-boot", slot_size=1 << 30)
    assert [p.check.value for p in image_problems(broken, sd_boot)] == ["kernel", "unlock-support", "bootloader",
                                                                         "slot-size"]
    with pytest.raises(InputError) as info:
        check_image(broken, sd_boot)
    assert info.value.message == "the image oci:/img has no kernel"
    assert info.value.hint == "a bootable image carries /usr/lib/modules/<version>/vmlinuz"
    with pytest.raises(InputError, match="has no systemd-boot EFI binary"):
        check_image(_checked(FakeTree(has_systemd_boot_efi=False)),
                    SlotNeeds(encrypted=False, tpm2=False, bootloader="systemd-boot", slot_size=1 << 30))
    with pytest.raises(InputError) as info:
        check_image(_checked(FakeTree(), size=2 << 30), needs)
    assert info.value.message == "the image needs about 2.3 GB but a root slot is 1.0 GB"
    assert info.value.hint == "give a larger --root-size"


# -- a real root directory ----------------------------------------------------------------------------------

def _write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _bootable(root: Path, *, hook: bool = True) -> None:
    members = {"init": b"x", UNLOCKER: b"\x7fELF", TCTI: b"\x7fELF"} | ({HOOK: b"#"} if hook else {})
    _write(root, {f"usr/lib/modules/{KVER}/vmlinuz": b"MZ", f"usr/lib/modules/{KVER}/initramfs.img":
                  gzip.compress(newc_cpio(members)), SD_BOOT: b"MZ"})


FIRST_BOOT = {"etc/ssh/ssh_host_ed25519_key": b"secret", "etc/ssh/ssh_host_ed25519_key.pub": b"public",
              "etc/machine-id": MACHINE_ID.encode(), "var/lib/systemd/random-seed": os.urandom(512)}


def test_a_root_directory_answers_like_the_image(tmp_path: Path) -> None:
    _bootable(tmp_path)
    tree = RootTree(tmp_path)
    assert [k.version for k in tree.kernels] == [KVER] and tree.kernels[0].initramfs
    assert HOOK in tree.initramfs_members[KVER] and tree.has_systemd_boot_efi and not tree.has_grub_efi_modules
    assert not tree.has_dracut
    assert not tree.has_shim and not tree.has_signed_grub and not tree.has_signed_systemd_boot
    assert tree.kernel_signed == {KVER: None}  # the stand-in kernel is no EFI image
    assert lint_root(tmp_path).issues == ()
    # an absolute symlink leads inside the root, never to this machine's files
    (tmp_path / "var/lib/dbus").mkdir(parents=True)
    (tmp_path / "var/lib/dbus/machine-id").write_text(MACHINE_ID)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/machine-id").symlink_to("/var/lib/dbus/machine-id")
    assert tree.small_content("etc/machine-id") == MACHINE_ID.encode()
    assert checks(machine_id_issues(tree)) == [("machine-id", "error", "/etc/machine-id")]


def test_no_kernel_in_a_root_directory(tmp_path: Path) -> None:
    report = lint_root(tmp_path)
    assert checks(list(report.issues)) == [("kernel", "error", "/usr/lib/modules"), ("bootloader", "warning", None)]
    assert report.issues[0].message == f"the image at {tmp_path} has no kernel"


def test_fix_removes_and_empties_inside_a_container_only(tmp_path: Path) -> None:
    _bootable(tmp_path)
    _write(tmp_path, FIRST_BOOT)
    outside = tmp_path / "outside-key"
    outside.write_bytes(b"not the image's")
    (tmp_path / "etc/ssh/ssh_host_rsa_key").symlink_to("/outside-key")  # a link: removed, its target kept
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(InputError, match="only inside a container") as info:
        lint_root(tmp_path, fix=True, in_container=False)
    assert info.value.exit_code == 2
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before

    report = lint_root(tmp_path, fix=True, in_container=True)
    assert [(i.check, i.path, i.fixed) for i in report.issues] == [
        ("ssh-host-keys", "/etc/ssh/ssh_host_ed25519_key", True),
        ("ssh-host-keys", "/etc/ssh/ssh_host_rsa_key", True),
        ("ssh-host-keys", "/etc/ssh/ssh_host_ed25519_key.pub", True),
        ("machine-id", "/etc/machine-id", True),
        ("random-seed", "/var/lib/systemd/random-seed", True),
    ]
    assert report.issues[0].message == "SSH host key removed (will be regenerated at first boot)"
    assert report.issues[3].message == "machine-id truncated to empty (will be regenerated at first boot)"
    assert report.issues[4].message == "Random seed file removed (will be regenerated at boot)"
    assert (report.error_count, report.warning_count, report.fixed_count, report.success) == (0, 0, 5, True)
    assert sorted(p.name for p in (tmp_path / "etc/ssh").iterdir()) == []
    assert (tmp_path / "etc/machine-id").read_bytes() == b""
    assert not (tmp_path / "var/lib/systemd/random-seed").exists()
    assert outside.read_bytes() == b"not the image's"
    assert lint_root(tmp_path).issues == ()


def test_container_markers(tmp_path: Path) -> None:
    assert not running_in_container(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run/.containerenv").touch()
    assert running_in_container(tmp_path)
    (tmp_path / "run/.containerenv").unlink()
    (tmp_path / ".dockerenv").touch()
    assert running_in_container(tmp_path)


# -- the scan's inventory: the same checks, the same findings ----------------------------------------------

def _layer_of(root: Path) -> bytes:
    t = TarBuilder()
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            t.symlink(rel, os.readlink(path))
        elif path.is_dir():
            t.dir(rel)
        else:
            t.file(rel, path.read_bytes())
    return t.bytes()


def _image_of(root: Path, dest: Path, *upper: bytes) -> str:
    write_layout(dest, [ImageSpec([Layer(_layer_of(root)), *(Layer(u, "tar") for u in upper)])])
    return f"oci:{dest}"


@pytest.mark.parametrize("case", ["clean", "first-boot files", "no hook", "no kernel", "no bootloader"])
def test_an_image_and_its_root_directory_get_the_same_issues(tmp_path: Path, case: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    if case != "no kernel":
        _bootable(root, hook=case != "no hook")
    if case == "first-boot files":
        _write(root, FIRST_BOOT | {"var/lib/random-seed": b"s"})
    if case == "no bootloader":
        (root / SD_BOOT).unlink()
    image = lint_image(_image_of(root, tmp_path / "layout"))
    local = lint_root(root)

    def comparable(report: LintReport, what: str) -> list[tuple[object, ...]]:
        return [(i.check, i.severity, i.path, i.message.replace(what, "IMAGE"), i.hint) for i in report.issues]

    assert comparable(image, f"the image {image.image}") == comparable(local, f"the image at {root}")
    assert bool(image.issues) == (case != "clean")


def test_the_scan_reads_what_lint_asks(tmp_path: Path) -> None:
    """Keys found through a symlinked directory, a whited-out seed, a machine-id replaced by an upper layer,
    and a machine-id too large to keep (its size is still known)."""
    base = (TarBuilder().dir("etc").dir("etc/ssh").file("etc/ssh/ssh_host_rsa_key", b"k")
            .file("etc/machine-id", b"old-id\n").dir("var").dir("var/lib").dir("var/lib/systemd")
            .file("var/lib/systemd/random-seed", b"s" * 512).file("var/lib/random-seed", b"t").bytes())
    upper = (TarBuilder().file("etc/machine-id", b"uninitialized\n").whiteout("var/lib/random-seed")
             .file("etc/ssh/ssh_host_ecdsa_key.pub", b"p").bytes())
    write_layout(tmp_path / "a", [ImageSpec([Layer(base), Layer(upper, "zstd")])])
    inv = scan_image(open_image(f"oci:{tmp_path / 'a'}"))
    assert inv.matching("etc/ssh/ssh_host_*_key") == ["etc/ssh/ssh_host_rsa_key"]
    assert inv.matching("etc/ssh/ssh_host_*_key.pub") == ["etc/ssh/ssh_host_ecdsa_key.pub"]
    assert inv.small_content("etc/machine-id") == b"uninitialized\n" and inv.size("etc/machine-id") == 14
    assert inv.size("var/lib/systemd/random-seed") == 512 and inv.size("var/lib/random-seed") is None
    with pytest.raises(KeyError):
        inv.size("etc/passwd")  # not asked for: the scan cannot be asked afterwards

    big = TarBuilder().dir("etc").symlink("etc/ssh", "../keys").dir("keys").file("keys/ssh_host_dsa_key", b"k") \
        .file("etc/machine-id", b"9" * (SMALL_FILE_MAX + 1)).bytes()
    write_layout(tmp_path / "b", [ImageSpec([Layer(big)])])
    inv = scan_image(open_image(f"oci:{tmp_path / 'b'}"))
    assert inv.matching("etc/ssh/ssh_host_*_key") == ["keys/ssh_host_dsa_key"]
    assert inv.small_content("etc/machine-id") is None and inv.size("etc/machine-id") == SMALL_FILE_MAX + 1
    assert f"({SMALL_FILE_MAX + 1} bytes)" in machine_id_issues(inv)[0].message


def test_an_unreadable_image_is_the_image_s_fault(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _bootable(root)
    ref = _image_of(root, tmp_path / "layout", TarBuilder().symlink("esc", "/tmp").file("esc/x", b"x").bytes())
    with pytest.raises(NbcError, match=r"through the absolute symlink /esc -> /tmp") as info:
        lint_image(ref)
    assert info.value.exit_code == 1  # the install's refusal is an InputError (2): here it is a finding
    ok = _image_of(root, tmp_path / "ok")
    flip_byte(tmp_path / "ok", open_image(ok).layers[0].digest)
    with pytest.raises(NbcError) as info:
        lint_image(ok)
    assert info.value.exit_code == 1
    with pytest.raises(InputError):
        lint_image(f"oci:{tmp_path / 'missing'}")  # a reference that names nothing: the request's fault

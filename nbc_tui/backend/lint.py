"""`lint`: what an image, or the root of an image build, ships that an install would refuse or warn about.

nbc's three checks (reference §16: SSH host keys, machine-id, random seed, each fixable with --fix inside a
container) come first, then the install's own image checks from :mod:`.steps.image` (kernel, initramfs,
etc-overlay capability, unlock support, bootloader binaries), run as they are, never copied. Every check reads
a :class:`LintTree`: the pre-install scan's inventory for an image (nothing is extracted), or
:class:`RootTree` for a real directory (``--local``). Only a real root is ever fixed.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Literal, Protocol

from .boot.kernel import SlotKernel, find_kernel
from .boot.pe import PE_HEAD_BYTES, PeError, authenticode_signed
from .boot.shim import find_shim, find_signed_grub, find_signed_systemd_boot
from .boot.systemd_boot import find_systemd_boot
from .errors import Cancelled, InputError, NbcError
from .image.opener import open_image
from .image.scan import (
    GRUB_EFI_MODULE,
    MACHINE_ID,
    RANDOM_SEEDS,
    SMALL_FILE_MAX,
    SSH_HOST_KEY_GLOBS,
    KernelInfo,
    scan_image,
)
from .inroot import path_in_target, resolve_in_target
from .steps.image import ImageFacts, ImageProblem, boot_file_problems, bootloader_problem, unlock_problem
from .system.dracut import find_dracut
from .system.initramfs_needs import initramfs_member_names

log = logging.getLogger(__name__)

Severity = Literal["error", "warning"]

# nbc's check ids (reference §16), kept so that scripts written for nbc read our JSON unchanged.
SSH_HOST_KEYS = "ssh-host-keys"
MACHINE_ID_CHECK = "machine-id"
RANDOM_SEED = "random-seed"
IMAGE_UNREADABLE = "extraction"
"""The one issue of an image that cannot be read whole: nbc's id, though nothing is extracted here."""

UNSET_MACHINE_IDS = ("", "uninitialized")
"""What etc/machine-id may hold in an image: systemd writes the machine's own at first boot."""
CONTAINER_MARKERS = (".dockerenv", "run/.containerenv")
"""Files Docker and Podman create in a container's root: --fix runs only where one exists."""


@dataclass(frozen=True)
class LintIssue:
    """One finding, in nbc's shape (reference §14.4) plus a hint."""

    check: str
    severity: Severity
    message: str
    path: str | None = None
    """Absolute inside the image, e.g. /etc/machine-id."""
    fixed: bool = False
    """--fix removed the problem; the issue is listed but counts only as fixed."""
    hint: str | None = None


@dataclass(frozen=True)
class LintReport:
    """Every issue of one lint run and nbc's counts."""

    issues: tuple[LintIssue, ...]
    image: str | None = None
    """The reference linted, or None for --local."""
    local: bool = False

    @property
    def error_count(self) -> int:
        return sum(1 for i in self.issues if not i.fixed and i.severity == "error")

    @property
    def warning_count(self) -> int:
        return sum(1 for i in self.issues if not i.fixed and i.severity == "warning")

    @property
    def fixed_count(self) -> int:
        return sum(1 for i in self.issues if i.fixed)

    @property
    def success(self) -> bool:
        return self.error_count == 0

    @property
    def fixable(self) -> bool:
        """Some issue left that --fix would remove."""
        return any(not i.fixed and i.check in _FIXES for i in self.issues)


class LintTree(ImageFacts, Protocol):
    """What the lint checks read of a tree, on top of what the image checks read. Paths are relative to the
    tree's root; symlinks are followed inside it."""

    def matching(self, glob: str) -> list[str]:
        """The paths matching ``glob`` (fnmatch per component), sorted."""
        ...

    def size(self, path: str) -> int | None:
        """The size of the file ``path`` leads to, None when there is no such file."""
        ...

    def small_content(self, path: str) -> bytes | None:
        """The content of a regular file of at most SMALL_FILE_MAX bytes, else None."""
        ...


# -- the checks ------------------------------------------------------------------------------------------

def lint_tree(tree: LintTree, *, what: str) -> list[LintIssue]:
    """Every check over ``tree``, nbc's first and in nbc's order; ``what`` names the tree in messages
    ("the image REF")."""
    return [*ssh_host_key_issues(tree), *machine_id_issues(tree), *random_seed_issues(tree),
            *image_issues(tree, what=what)]


def ssh_host_key_issues(tree: LintTree) -> list[LintIssue]:
    """Host keys baked into an image are shared by every machine installed from it."""
    return [LintIssue(SSH_HOST_KEYS, "error", "SSH host key found in image - these should be generated at first "
                      "boot, not baked into the image", path=f"/{path}",
                      hint="remove /etc/ssh/ssh_host_* at the end of the image build and let each machine make "
                           "its own at first boot (ssh-keygen -A)")
            for glob in SSH_HOST_KEY_GLOBS for path in tree.matching(glob)]


def machine_id_issues(tree: LintTree) -> list[LintIssue]:
    """A machine-id in an image makes every installed machine the same one (journal, DHCP, D-Bus)."""
    if not tree.size(MACHINE_ID):
        return []  # missing or empty: systemd makes one at first boot
    content = tree.small_content(MACHINE_ID)
    value = None if content is None else content.decode("utf-8", "replace").strip()
    if value in UNSET_MACHINE_IDS:
        return []
    shown = f"{value[:8]}..." if value is not None else f"{tree.size(MACHINE_ID)} bytes"
    return [LintIssue(MACHINE_ID_CHECK, "error", f"machine-id contains a value ({shown}) - should be empty or "
                      "'uninitialized' for container images", path=f"/{MACHINE_ID}",
                      hint="empty it as the last step of the image build: truncate -s 0 /etc/machine-id")]


def random_seed_issues(tree: LintTree) -> list[LintIssue]:
    """A random seed shared by every machine weakens their first boot's entropy."""
    return [LintIssue(RANDOM_SEED, "warning", "Random seed file found - this should not be shared across systems",
                      path=f"/{path}", hint=f"delete /{path} in the image build")
            for path in RANDOM_SEEDS if (tree.size(path) or 0) > 0]


def image_issues(tree: ImageFacts, *, what: str) -> list[LintIssue]:
    """The install's image checks as lint issues: what refuses a plain install is an error. An encrypted
    install needs more (unlock support), and GRUB without the image's own modules is built from the installing
    machine's: warnings, since a plain install, or a machine with GRUB, still works."""
    issues = [_issue(p) for p in boot_file_problems(tree, what=what)]
    if tree.kernels:  # unlock support is judged on the boot kernel's initramfs: without one it only repeats that
        issues += _unlock_issues(tree)
    bootloader = bootloader_problem(tree, "auto", what=what)
    if bootloader is not None:
        issues.append(_issue(bootloader))
    return issues


def _unlock_issues(tree: ImageFacts) -> list[LintIssue]:
    """What --encrypt needs, else what --encrypt --tpm2 needs: one warning at most, saying which install it stops."""
    luks = unlock_problem(tree, tpm2=False)
    if luks is not None:
        return [_issue(luks, severity="warning",
                       suffix="; an install with --encrypt would be refused, one without is fine")]
    tpm2 = unlock_problem(tree, tpm2=True)
    if tpm2 is not None:
        return [_issue(tpm2, severity="warning", prefix="with TPM2 unlock, ",
                       suffix="; an install with --tpm2 would be refused, one with a passphrase only is fine")]
    return []


def _issue(problem: ImageProblem, *, severity: Severity | None = None, prefix: str = "", suffix: str = "") -> LintIssue:
    return LintIssue(problem.check.value, severity or ("error" if problem.refuses else "warning"),
                     prefix + problem.message + suffix, path=problem.path, hint=problem.hint)


# -- an image, scanned ------------------------------------------------------------------------------------

def lint_image(ref: str, *, on_progress: Callable[[int, int], None] | None = None,
               cancel: threading.Event | None = None) -> LintReport:
    """Lint an image by reference (every source open_image takes) from the pre-install scan: every layer
    streamed and verified once, nothing extracted.

    A reference that cannot be opened raises as opening does (a malformed one InputError, exit 2); an image
    that cannot be read whole (a damaged blob, an entry extraction would refuse) is the image's fault, not
    the request's: NbcError, exit 1.
    """
    with open_image(ref, cancel=cancel) as source:
        try:
            inventory = scan_image(source, on_progress=on_progress, cancel=cancel)
        except Cancelled:
            raise
        except NbcError as exc:
            raise NbcError(exc.message, hint=exc.hint, details=exc.details) from exc
    return LintReport(tuple(lint_tree(inventory, what=f"the image {ref}")), image=ref)


# -- a real root ------------------------------------------------------------------------------------------

def running_in_container(root: Path = Path("/")) -> bool:
    """Whether ``root`` is a container's root (Docker's or Podman's marker file is there)."""
    return any((root / marker).exists() for marker in CONTAINER_MARKERS)


def lint_root(root: Path, *, fix: bool = False, in_container: bool = False) -> LintReport:
    """Lint a real root directory (``/`` in an image build); with ``fix``, remove what nbc's checks find. Fixing
    is refused (InputError, nothing changed) unless ``in_container``: it deletes files of a running system."""
    if fix and not in_container:
        raise InputError(
            "--fix runs only inside a container (there is no /.dockerenv or /run/.containerenv here): it deletes "
            "SSH host keys and empties the machine-id, which would harm a running system",
            hint="run it as a step of the image build (RUN nbc-tui lint --local --fix), or lint without --fix")
    issues = lint_tree(RootTree(root), what=f"the image at {root}")
    if fix:
        issues = [_fixed(root, issue) for issue in issues]
    return LintReport(tuple(issues), local=True)


def _unlink(root: Path, rel: str) -> None:
    parent, _, name = rel.rpartition("/")
    os.unlink(path_in_target(root, parent) / name)  # the name itself, even a symlink: never what it points to


def _truncate(root: Path, rel: str) -> None:
    found = resolve_in_target(root, rel)
    if found is None:
        raise FileNotFoundError(rel)
    os.truncate(found, 0)


_FIXES: dict[str, tuple[Callable[[Path, str], None], str]] = {
    SSH_HOST_KEYS: (_unlink, "SSH host key removed (will be regenerated at first boot)"),
    MACHINE_ID_CHECK: (_truncate, "machine-id truncated to empty (will be regenerated at first boot)"),
    RANDOM_SEED: (_unlink, "Random seed file removed (will be regenerated at boot)"),
}


def _fixed(root: Path, issue: LintIssue) -> LintIssue:
    """The issue fixed (nbc's message), or unchanged when it is not fixable or the fix fails."""
    fix = _FIXES.get(issue.check)
    if fix is None or issue.path is None:
        return issue
    action, message = fix
    try:
        action(root, issue.path.lstrip("/"))
    except OSError as exc:
        log.warning("lint --fix: cannot fix %s: %s", issue.path, exc)
        return issue
    return replace(issue, fixed=True, message=message, hint=None)


class RootTree:
    """A real root directory answering :class:`LintTree`, every path resolved as that system sees it (an
    absolute symlink leads inside ``root``, never to the host's files)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def exists(self, path: str) -> bool:
        return resolve_in_target(self.root, path) is not None

    def matches(self, glob: str) -> bool:
        return bool(self.matching(glob))

    def matching(self, glob: str) -> list[str]:
        parts = glob.split("/")
        dirs, found = [""], []
        for depth, part in enumerate(parts):
            deeper: list[str] = []
            for d in dirs:
                for name in fnmatch.filter(self._names(d), part):
                    path = f"{d}/{name}" if d else name
                    if depth == len(parts) - 1:
                        found.append(path)
                    elif self._is_dir(path):
                        deeper.append(path)
            dirs = deeper
        return sorted(found)

    def size(self, path: str) -> int | None:
        found = self._regular(path)
        return None if found is None else found.stat().st_size

    def small_content(self, path: str) -> bytes | None:
        found = self._regular(path)
        if found is None or found.stat().st_size > SMALL_FILE_MAX:
            return None
        return found.read_bytes()

    @cached_property
    def _kernel(self) -> SlotKernel | None:
        try:
            return find_kernel(self.root)
        except InputError:
            return None

    @property
    def kernels(self) -> list[KernelInfo]:
        kernel = self._kernel
        if kernel is None:
            return []
        initramfs = self._relative(kernel.initramfs) if kernel.initramfs.is_file() else None
        return [KernelInfo(kernel.version, self._relative(kernel.vmlinuz), initramfs)]

    @cached_property
    def initramfs_members(self) -> dict[str, frozenset[str]]:
        kernel = self._kernel
        if kernel is None or not kernel.initramfs.is_file():
            return {}
        return {kernel.version: frozenset(initramfs_member_names(kernel.initramfs))}

    @property
    def has_dracut(self) -> bool:
        return find_dracut(self.root) is not None

    @property
    def has_systemd_boot_efi(self) -> bool:
        return find_systemd_boot(self.root) is not None

    @property
    def has_grub_efi_modules(self) -> bool:
        return self._regular(GRUB_EFI_MODULE) is not None

    @property
    def has_shim(self) -> bool:
        return find_shim(self.root) is not None

    @property
    def has_signed_grub(self) -> bool:
        return find_signed_grub(self.root) is not None

    @property
    def has_signed_systemd_boot(self) -> bool:
        return find_signed_systemd_boot(self.root) is not None

    @cached_property
    def kernel_signed(self) -> dict[str, bool | None]:
        kernel = self._kernel
        if kernel is None:
            return {}
        try:
            with kernel.vmlinuz.open("rb") as f:
                return {kernel.version: authenticode_signed(f.read(PE_HEAD_BYTES))}
        except (OSError, PeError):
            return {kernel.version: None}

    def _names(self, path: str) -> list[str]:
        found = resolve_in_target(self.root, path) if path else self.root
        try:
            return sorted(os.listdir(found)) if found is not None else []
        except OSError:  # not a directory, or unreadable
            return []

    def _is_dir(self, path: str) -> bool:
        found = resolve_in_target(self.root, path)
        return found is not None and found.is_dir()

    def _regular(self, path: str) -> Path | None:
        found = resolve_in_target(self.root, path)
        return found if found is not None and found.is_file() else None

    def _relative(self, host_path: Path) -> str:
        return str(host_path.relative_to(self.root.resolve()))

"""The pre-install scan: every layer streamed once, before the disk is wiped.

It verifies every blob (digest and size), applies the layers to a virtual tree with the same rules the
extraction uses (so an entry extraction would refuse is refused here first, with nothing written), and
reads what the install needs to know about the final tree: kernels and the member names of their
initramfs images, os-release, bootloader files, dracut and the etc-overlay module, what an encrypted disk
needs (LUKS and TPM2 unlock), the systemd version, the uncompressed size; and for `lint`, the files each
machine must make for itself (SSH host keys, machine-id, random seeds).
"""

from __future__ import annotations

import fnmatch
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..boot.grub import IMAGE_MODULE_DIR
from ..boot.kernel import INITRAMFS_NAMES, KERNEL_NAMES, MODULES_DIR, version_key
from ..boot.pe import PE_HEAD_BYTES, PeError, authenticode_signed
from ..boot.shim import SHIM_CANDIDATES, SIGNED_GRUB_CANDIDATES, SIGNED_SYSTEMD_BOOT_CANDIDATES
from ..boot.systemd_boot import EFI_BINARY_CANDIDATES
from ..errors import Cancelled, InputError, NbcError
from ..osrelease import OS_RELEASE_PATHS, parse_os_release
from ..system import identity
from ..system.dracut import DRACUT_CANDIDATES, HOOK_SCRIPT, MODULE_DIR
from ..system.initramfs import InitramfsError, initramfs_names, names_contain
from ..system.initramfs_needs import (
    DRACUT_CRYPT_MODULE,
    DRACUT_TPM2_MODULE,
    IMAGE_UNLOCKERS,
    TCTI_DEVICE_GLOBS,
    TPM2_TOOLS,
)
from .layer_rules import LayerApplier, find
from .layers import BLK, CHR, DIR, FIFO, REG, SYM, TarEntry, TarError, TarReader, decompressed_ahead
from .readahead import HandOff
from .resolve import DIR as K_DIR
from .resolve import LINK as K_LINK
from .resolve import MISSING as K_MISSING
from .resolve import OTHER as K_OTHER
from .resolve import Refused
from .source import Descriptor, ImageSource

# What the encryption checks (initramfs_needs.unlock_support_problem, image_tpm2_problem) ask of the final
# tree: ImageInventory.exists() and matches() answer these and nothing else.
# And what the identity checks (steps/identity.py) ask: the tools, zones, keymaps, locales and account files.
PROBED_PATHS = (*IMAGE_UNLOCKERS, *TPM2_TOOLS, identity.FIRSTBOOT, identity.USERADD, identity.CHPASSWD,
                identity.LOCALE_ARCHIVE)
PROBED_GLOBS = (DRACUT_CRYPT_MODULE, DRACUT_TPM2_MODULE, *TCTI_DEVICE_GLOBS)
# What lint asks of the final tree (reference §16): files each machine makes for itself at first boot, which an
# image must not ship. ImageInventory.matching(), size() and small_content() answer these and nothing else.
SSH_HOST_KEY_GLOBS = ("etc/ssh/ssh_host_*_key", "etc/ssh/ssh_host_*_key.pub")
MACHINE_ID = "etc/machine-id"
RANDOM_SEEDS = ("var/lib/systemd/random-seed", "var/lib/random-seed")
LISTED_GLOBS = (*SSH_HOST_KEY_GLOBS, *identity.ZONE_GLOBS, *identity.KEYMAP_GLOBS, identity.LOCALE_DIRS_GLOB)
SIZED_PATHS = (MACHINE_ID, *RANDOM_SEEDS)
READ_PATHS = (MACHINE_ID, *identity.ACCOUNT_READS)
SMALL_FILE_MAX = 256 << 10
"""The largest file of READ_PATHS whose content the scan keeps (Debian's /etc/locale.gen is about 10 KiB)."""
ETC_OVERLAY_MODULE = f"{MODULE_DIR}/module-setup.sh"
GRUB_EFI_MODULE = f"{IMAGE_MODULE_DIR}/normal.mod"
_INITRAMFS_FILE = re.compile(
    r"(?:^|/)modules/[^/]+/(?:initramfs\.img|initrd\.img|initramfs-[^/]+\.img|initrd\.img-[^/]+)$")
_KERNEL_FILE = re.compile(r"(?:^|/)(?:modules/[^/]+/|boot/)vmlinuz(?:-[^/]+)?$")  # boot/: a vmlinuz symlink's target
_SYSTEMD_SHARED = re.compile(r"^libsystemd-shared-(\d+)[.\-].*so")
_OS_RELEASE_MAX = 64 << 10
_PROGRESS_STEP = 1 << 20


@dataclass
class KernelInfo:
    """A kernel of the image; paths are relative to the image root."""

    version: str
    vmlinuz: str
    initramfs: str | None
    vmlinuz_size: int = 0
    initramfs_size: int = 0
    """Bytes, as the files are in the image (0 when not known): what the slot's boot files take on the ESP."""


@dataclass
class ImageInventory:
    """What the scan learned about the image's final tree."""

    kernels: list[KernelInfo] = field(default_factory=list)
    """Newest version first."""
    os_release: dict[str, str] = field(default_factory=dict)
    has_systemd_boot_efi: bool = False
    has_grub_efi_modules: bool = False
    has_shim: bool = False
    has_signed_grub: bool = False
    has_signed_systemd_boot: bool = False
    kernel_signed: dict[str, bool | None] = field(default_factory=dict)
    """Per kernel version: whether its vmlinuz has an Authenticode signature (None: not an EFI image)."""
    has_dracut: bool = False
    has_etc_overlay_module: bool = False
    initramfs_members: dict[str, frozenset[str]] = field(default_factory=dict)
    """Per kernel version: the member names of its initramfs (empty when it has none or it cannot be read,
    which counts as lacking everything)."""
    initramfs_has_etc_overlay: dict[str, bool] = field(default_factory=dict)
    """Per kernel version: its initramfs already holds the etc-overlay hook."""
    probed_paths: dict[str, bool] = field(default_factory=dict)
    """Each of PROBED_PATHS: whether it exists (symlinks followed inside the image)."""
    probed_globs: dict[str, bool] = field(default_factory=dict)
    """Each of PROBED_GLOBS: whether some path matches it."""
    listed_globs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Each of LISTED_GLOBS: the paths matching it, sorted."""
    sized_paths: dict[str, int | None] = field(default_factory=dict)
    """Each of SIZED_PATHS: the size of what it leads to (symlinks followed), None when nothing is there."""
    small_files: dict[str, bytes | None] = field(default_factory=dict)
    """Each of READ_PATHS: its content when it is a regular file of at most SMALL_FILE_MAX bytes, else None."""
    systemd_version: int | None = None
    uncompressed_bytes: int = 0
    """Bytes of regular files in the final tree (hard-linked files once)."""
    entries: int = 0
    """Entries in the final tree (the root excluded)."""

    @property
    def boot_kernel(self) -> str:
        """The version of the kernel that boots: the newest (the one find_kernel picks in the extracted tree)."""
        return self.kernels[0].version

    def exists(self, path: str) -> bool:
        """Whether one of PROBED_PATHS exists in the final tree (KeyError for a path the scan did not probe:
        the scan streams each layer once, so it cannot be asked afterwards)."""
        return self.probed_paths[path]

    def matches(self, glob: str) -> bool:
        """Whether some path of the final tree matches one of PROBED_GLOBS (KeyError for another glob)."""
        return self.probed_globs[glob]

    def matching(self, glob: str) -> list[str]:
        """The paths of the final tree matching one of LISTED_GLOBS, sorted (KeyError for another glob)."""
        return list(self.listed_globs[glob])

    def size(self, path: str) -> int | None:
        """The size of one of SIZED_PATHS, None when it does not exist (KeyError for another path)."""
        return self.sized_paths[path]

    def small_content(self, path: str) -> bytes | None:
        """The content of one of READ_PATHS when it is a small regular file, else None (KeyError for another)."""
        return self.small_files[path]


class _Node:
    __slots__ = ("children", "data", "kind", "members", "size", "target")

    def __init__(self, kind: int, *, target: str | None = None, size: int = 0) -> None:
        self.kind = kind
        self.target = target
        self.size = size
        self.children: set[str] | None = set() if kind == K_DIR else None
        self.data: bytes | None = None        # content kept for os-release files, READ_PATHS, kernel heads
        # For initramfs images: their member names, being listed in a thread until the inventory is taken.
        self.members: frozenset[str] | HandOff[frozenset[str]] | None = None


class VirtualTree:
    """The final tree of an image as names and kinds only, keyed by canonical path ("" is the root)."""

    def __init__(self, *, list_initramfs: bool = True) -> None:
        self.nodes: dict[str, _Node] = {"": _Node(K_DIR)}
        self._list_initramfs = list_initramfs
        self._listings: list[HandOff[frozenset[str]]] = []

    # -- the Tree protocol of layer_rules -------------------------------------------------------------

    def lookup(self, path: str) -> tuple[int, str | None]:
        node = self.nodes.get(path)
        return (K_MISSING, None) if node is None else (node.kind, node.target)

    def known_dir(self, path: str) -> bool:
        node = self.nodes.get(path)
        return node is not None and node.kind == K_DIR

    def make_dirs(self, path: str) -> None:
        missing = []  # a loop, not recursion: symlinks can make a path deeper than any one name
        while path not in self.nodes:
            missing.append(path)
            path = path.rpartition("/")[0]
        for folder in reversed(missing):
            self._put(folder, _Node(K_DIR))

    def remove(self, path: str) -> None:
        node = self.nodes.pop(path)
        parent, _, name = path.rpartition("/")
        children = self.nodes[parent].children
        if children is not None:
            children.discard(name)
        if node.children:
            stack = [f"{path}/{c}" for c in node.children]
            while stack:
                p = stack.pop()
                n = self.nodes.pop(p, None)
                if n is not None and n.children:
                    stack.extend(f"{p}/{c}" for c in n.children)

    def children(self, path: str) -> list[str]:
        return sorted(self.nodes[path].children or ())

    def update_dir(self, path: str, entry: TarEntry) -> None:
        pass  # metadata does not matter to the scan

    def create(self, path: str, entry: TarEntry, content: TarReader) -> bool:
        if path in self.nodes:
            return False
        kind = entry.kind
        if kind == DIR:
            node = _Node(K_DIR)
        elif kind == SYM:
            node = _Node(K_LINK, target=entry.linkname)
        elif kind == REG:
            node = _Node(K_OTHER, size=entry.size)
            self._read_facts(path, node, content)
        elif kind in (CHR, BLK, FIFO):
            node = _Node(K_OTHER)
        else:  # pragma: no cover - the tar reader maps every type to one of the above
            raise Refused(entry.name, f"has an unknown type {kind!r}")
        self._put(path, node)
        return True

    def hardlink(self, path: str, target: str, entry: TarEntry) -> bool:
        if path in self.nodes:
            return False
        self._put(path, self.nodes[target])  # one node, two names: like an inode
        return True

    # -- helpers --------------------------------------------------------------------------------------

    def _put(self, path: str, node: _Node) -> None:
        self.nodes[path] = node
        parent, _, name = path.rpartition("/")
        children = self.nodes[parent].children
        assert children is not None
        children.add(name)

    def _read_facts(self, path: str, node: _Node, content: TarReader) -> None:
        if (path.endswith("os-release") and node.size <= _OS_RELEASE_MAX) or (
                path in READ_PATHS and node.size <= SMALL_FILE_MAX):
            node.data = content.read()
        elif _KERNEL_FILE.search(path):
            node.data = content.read_exactly(min(node.size, PE_HEAD_BYTES))  # its PE headers: signed or not
        elif self._list_initramfs and _INITRAMFS_FILE.search(path):
            # Names only (a few thousand for a distribution's initramfs); the contents stream by, to a thread
            # that decompresses and lists them while this one goes on with the layer. Up to 48 MiB wait for it
            # (a distribution's whole initramfs, often): the walk is faster than the listing.
            listing = HandOff(lambda stream: frozenset(initramfs_names(stream)), depth=48, name="initramfs-names")
            self._listings.append(listing)
            for piece in content.chunks():
                listing.write(piece)
            node.members = listing

    def members(self, node: _Node) -> frozenset[str]:
        """An initramfs node's member names (empty when it cannot be read: treated as "needs regenerating")."""
        if isinstance(node.members, HandOff):
            try:
                node.members = node.members.result()
            except InitramfsError:
                node.members = frozenset()
        return node.members or frozenset()

    def stop_listing(self) -> None:
        """Abandon the initramfs listings nobody asked for (a file a later layer replaced, a scan that failed)."""
        for listing in self._listings:
            listing.stop()
        self._listings.clear()

    def node(self, path: str) -> _Node | None:
        """The node ``path`` leads to (symlinks followed inside the root), if any."""
        canonical = find(self, path)
        return None if canonical is None else self.nodes[canonical]

    def exists(self, path: str, *, kind: int = K_OTHER) -> bool:
        node = self.node(path)
        return node is not None and node.kind == kind

    def matches(self, pattern: str) -> bool:
        """Whether some path matches ``pattern`` (see :meth:`glob`)."""
        return next(self.glob(pattern), None) is not None

    def glob(self, pattern: str) -> Iterator[str]:
        """The paths matching ``pattern`` (fnmatch per component, like Path.glob): directories are followed
        through symlinks inside the root (a match is named by the canonical directory it was found in), and a
        symlink counts as a match by its own name."""
        parts = pattern.split("/")
        dirs = [""]
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            found: list[str] = []
            for d in dirs:
                for name in fnmatch.filter(self.children(d), part):
                    path = f"{d}/{name}" if d else name
                    if last:
                        yield path
                        continue
                    canonical = find(self, path)
                    if canonical is not None and self.nodes[canonical].kind == K_DIR:
                        found.append(canonical)
            dirs = found


def scan_image(
    source: ImageSource,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    list_initramfs: bool = True,
) -> ImageInventory:
    """Stream every layer once, verify it, refuse what extraction would refuse, and take inventory.

    Raises InputError (exit 2) naming the entry and layer for an entry extraction would refuse; NbcError
    (exit 1) naming the blob or layer for a damaged image (digest, size, compression, tar format);
    Cancelled when ``cancel`` is set. on_progress(done, total) counts compressed bytes. Without
    ``list_initramfs`` the initramfs images are not opened (``initramfs_members`` stays empty): for a caller
    that only wants what the image is (a download's metadata), not whether it boots a slot as it is.
    """
    tree = VirtualTree(list_initramfs=list_initramfs)
    total = source.compressed_size
    done_before = 0
    try:
        for desc in source.layers:
            _scan_layer(source, desc, tree, lambda n, base=done_before: _report(on_progress, base + n, total),
                        cancel)
            done_before += desc.size
            _report(on_progress, done_before, total)
        return _inventory(tree)
    finally:
        tree.stop_listing()


def _report(on_progress: Callable[[int, int], None] | None, done: int, total: int) -> None:
    if on_progress is not None:
        on_progress(done, total)


def _scan_layer(source: ImageSource, desc: Descriptor, tree: VirtualTree,
                progress: Callable[[int], None], cancel: threading.Event | None) -> None:
    applier = LayerApplier(tree)
    # Fetched (or read) and verified in one thread, decompressed in another, while this one walks the entries.
    with source.open_blob(desc) as blob, decompressed_ahead(blob, desc.media_type) as tar:
        reader = TarReader(tar.read)
        reported = 0
        try:
            for entry in reader:
                applier.apply(entry, reader)
                if blob.bytes_read - reported >= _PROGRESS_STEP:
                    reported = blob.bytes_read
                    progress(reported)
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("Interrupted while checking the image",
                                        hint="Nothing was written to the disk")
        except Refused as exc:
            raise refusal_error(desc, exc) from None
        except TarError as exc:
            raise NbcError(f"Layer {desc.short}: {exc.message}", hint="The image is corrupt; download it again",
                           details={"layer": desc.digest}) from None
    if cancel is not None and cancel.is_set():
        raise Cancelled("Interrupted while checking the image", hint="Nothing was written to the disk")


def refusal_error(desc: Descriptor | str, exc: Refused) -> InputError:
    """The user-facing error for a refused entry (used by the scan and the extraction alike)."""
    digest = desc.digest if isinstance(desc, Descriptor) else desc
    return InputError(
        f"The image cannot be installed: in layer {digest[:19]}, {exc}",
        hint="The image is broken or hostile; nothing outside the target was touched",
        details={"layer": digest, "entry": exc.name, "reason": exc.reason},
    )


# -- inventory ----------------------------------------------------------------------------------------

def _inventory(tree: VirtualTree) -> ImageInventory:
    inv = ImageInventory()
    inv.kernels, inv.initramfs_members = _kernels(tree)
    inv.initramfs_has_etc_overlay = {k: names_contain(m, HOOK_SCRIPT) for k, m in inv.initramfs_members.items()}
    inv.os_release = _os_release(tree)
    inv.has_systemd_boot_efi = any(tree.exists(p) for p in EFI_BINARY_CANDIDATES)
    inv.has_grub_efi_modules = tree.exists(GRUB_EFI_MODULE)
    inv.has_shim = any(tree.exists(p) for p in SHIM_CANDIDATES)
    inv.has_signed_grub = any(tree.exists(p) for p in SIGNED_GRUB_CANDIDATES)
    inv.has_signed_systemd_boot = any(tree.exists(p) for p in SIGNED_SYSTEMD_BOOT_CANDIDATES)
    inv.kernel_signed = {k.version: _signed(tree, k.vmlinuz) for k in inv.kernels}
    inv.has_dracut = any(tree.exists(p) for p in DRACUT_CANDIDATES)
    inv.has_etc_overlay_module = tree.exists(ETC_OVERLAY_MODULE)
    inv.probed_paths = {p: tree.node(p) is not None for p in PROBED_PATHS}
    inv.probed_globs = {g: tree.matches(g) for g in PROBED_GLOBS}
    inv.listed_globs = {g: tuple(sorted(tree.glob(g))) for g in LISTED_GLOBS}
    inv.sized_paths = {p: _size(tree, p) for p in SIZED_PATHS}
    inv.small_files = {p: _small_content(tree, p) for p in READ_PATHS}
    inv.systemd_version = _systemd_version(tree)
    seen: set[int] = set()
    for node in tree.nodes.values():
        if node.kind == K_OTHER and id(node) not in seen:
            seen.add(id(node))
            inv.uncompressed_bytes += node.size
    inv.entries = len(tree.nodes) - 1
    return inv


def _kernels(tree: VirtualTree) -> tuple[list[KernelInfo], dict[str, frozenset[str]]]:
    modules = find(tree, MODULES_DIR)
    if modules is None or tree.nodes[modules].kind != K_DIR:
        return [], {}
    kernels: list[KernelInfo] = []
    members: dict[str, frozenset[str]] = {}
    for kver in tree.children(modules):
        base = f"{MODULES_DIR}/{kver}"
        if not tree.exists(base, kind=K_DIR):
            continue
        vmlinuz = next((f"{base}/{n.format(kver=kver)}" for n in KERNEL_NAMES
                        if tree.exists(f"{base}/{n.format(kver=kver)}")), None)
        if vmlinuz is None:
            continue
        initramfs = next((f"{base}/{n.format(kver=kver)}" for n in INITRAMFS_NAMES
                          if tree.exists(f"{base}/{n.format(kver=kver)}")), None)
        kernels.append(KernelInfo(kver, vmlinuz, initramfs, _size(tree, vmlinuz) or 0,
                                  (_size(tree, initramfs) or 0) if initramfs else 0))
        node = tree.node(initramfs) if initramfs else None
        members[kver] = tree.members(node) if node is not None else frozenset()
    kernels.sort(key=lambda k: version_key(k.version), reverse=True)
    return kernels, members


def _signed(tree: VirtualTree, path: str) -> bool | None:
    node = tree.node(path)
    try:
        return authenticode_signed(node.data or b"") if node is not None else None
    except PeError:
        return None


def _size(tree: VirtualTree, path: str) -> int | None:
    node = tree.node(path)
    return None if node is None or node.kind != K_OTHER else node.size


def _small_content(tree: VirtualTree, path: str) -> bytes | None:
    node = tree.node(path)
    return node.data if node is not None and node.kind == K_OTHER else None


def _os_release(tree: VirtualTree) -> dict[str, str]:
    for path in OS_RELEASE_PATHS:
        node = tree.node(path)
        if node is not None and node.kind == K_OTHER and node.data is not None:
            return parse_os_release(node.data.decode("utf-8", "replace"))
    return {}


def _systemd_version(tree: VirtualTree) -> int | None:
    dirs = ["usr/lib/systemd", "usr/lib64/systemd"]
    lib = find(tree, "usr/lib")
    if lib is not None and tree.nodes[lib].kind == K_DIR:
        dirs += [f"usr/lib/{d}/systemd" for d in tree.children(lib) if "-linux-" in d]
    versions: list[int] = []
    for d in dirs:
        canonical = find(tree, d)
        if canonical is None or tree.nodes[canonical].kind != K_DIR:
            continue
        for name in tree.children(canonical):
            m = _SYSTEMD_SHARED.match(name)
            if m:
                versions.append(int(m.group(1)))
    return max(versions) if versions else None

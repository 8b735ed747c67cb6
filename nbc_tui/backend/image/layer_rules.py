"""How one layer changes a tree: whiteouts, opaque directories, replacements and refusals, decided once.

:class:`LayerApplier` holds the OCI rules; a :class:`Tree` does the work. The scan gives it a virtual
tree (nothing written, before the disk is wiped), the extraction child gives it the real filesystem, so
both make the same decisions and refuse the same entries.

OCI semantics, as container runtimes apply them:
- ``.wh.NAME`` removes NAME from lower layers (the leaf is not followed: a symlink goes, not its target);
- ``.wh..wh..opq`` hides the lower layers' content of its directory; entries of the same layer survive,
  even those that come before the marker in the tar (nbc deleted those too);
- a directory over a directory keeps the content and takes the new metadata; anything else over an
  existing entry replaces it (a file over a directory removes the directory first, and so on);
- other ``.wh..wh.*`` names (aufs bookkeeping) are ignored.
"""

from __future__ import annotations

import re
from typing import Protocol

from .layers import DIR as T_DIR
from .layers import LNK, TarEntry
from .resolve import DIR, LINK, MISSING, Refused, clean_name, join, normalize, resolve, resolve_parent

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"

simple_name = re.compile(r"(?!\.wh\.)(?!\.\.?\Z)[^/\0]+").fullmatch
"""Whether a base name needs no rule: not empty, ".", ".." or a whiteout, no slash, no NUL byte."""


class EntryContent(Protocol):
    """A regular file's content, in the form its tree reads it: the scan's :class:`TarReader` (read, chunks),
    the extraction child's ``FramedContent`` (copy_to). The layer rules only pass it on."""


class Tree(Protocol):
    """A filesystem tree addressed by canonical paths relative to its root ("" is the root)."""

    def lookup(self, path: str) -> tuple[int, str | None]:
        """(MISSING|DIR|LINK|OTHER, link target) of path; the leaf is not followed."""
        ...

    def known_dir(self, path: str) -> bool:
        """True when path is known, cheaply, to be a canonical existing directory (a fast path only)."""
        ...

    def make_dirs(self, path: str) -> None:
        """Create the missing directories of a canonical path (mode 0755, root-owned)."""
        ...

    def remove(self, path: str) -> None:
        """Remove path and everything below it (the leaf is not followed)."""
        ...

    def children(self, path: str) -> list[str]:
        """The names in the directory path."""
        ...

    def update_dir(self, path: str, entry: TarEntry) -> None:
        """Give an existing directory the entry's metadata (owner, mode, xattrs, mtime)."""
        ...

    def create(self, path: str, entry: TarEntry, content: EntryContent) -> bool:
        """Create the entry (dir, file, symlink, device, FIFO) at path; False, with nothing done and no
        content read, when something already exists there."""
        ...

    def hardlink(self, path: str, target: str, entry: TarEntry) -> bool:
        """Create path as a hard link to the existing non-directory target; False when path exists."""
        ...


class LayerApplier:
    """Applies the entries of one layer to a tree, in tar order."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        # Canonical paths this layer created or went through: whiteouts and opaque markers only reach
        # what lower layers left, never these.
        self.touched: set[str] = {""}
        self.entries = 0

    def simple_dir(self, directory: str) -> str | None:
        """Where entries named ``directory/<base>`` go without weighing any rule, for a base that
        :func:`simple_name` accepts: the directory's canonical path when the tree knows it (its name cleaned
        as :meth:`apply` cleans it); None when each entry must take :meth:`apply`. The caller creates such
        an entry directly (its tree's fast way), records it with :meth:`applied_in`, and gives :meth:`apply`
        whatever is in the way."""
        try:
            clean = normalize(directory)
        except Refused:
            return None  # apply() refuses each entry, naming it
        return clean if self.tree.known_dir(clean) else None

    def applied_in(self, parent: str, names: list[str]) -> None:
        """Entries ``names`` were created in the directory ``parent`` the fast way (see :meth:`simple_dir`)."""
        if names:
            self._touch(parent)
            prefix = f"{parent}/" if parent else ""
            self.touched.update([prefix + name for name in names])
            self.entries += len(names)

    def apply(self, entry: TarEntry, content: EntryContent) -> None:
        clean = normalize(entry.name)
        if not clean:
            return  # "./": the root's own metadata stays the mounted filesystem's (0755 root)
        parent, _, base = clean.rpartition("/")
        if base.startswith(WHITEOUT):
            self._whiteout(entry, clean.split("/"))
            return
        tree = self.tree
        path = clean
        if not tree.known_dir(parent):
            parent = resolve_parent(clean.split("/"), tree.lookup, name=entry.name)
            tree.make_dirs(parent)
            path = join(parent, base)
        self._touch(path)
        self.entries += 1
        if entry.kind == LNK:
            self._hardlink(entry, path)
            return
        # Create first: on a fresh target nothing is in the way, and a lookup per entry would cost.
        if tree.create(path, entry, content):
            return
        if entry.kind == T_DIR and tree.lookup(path)[0] == DIR:
            tree.update_dir(path, entry)
            return
        tree.remove(path)
        if not tree.create(path, entry, content):
            raise Refused(entry.name, f"cannot replace /{path} (a mount point stays a directory)")

    def _hardlink(self, entry: TarEntry, path: str) -> None:
        tree = self.tree
        try:
            tparts = clean_name(entry.linkname)
        except Refused as exc:
            raise Refused(entry.name, f"is a hard link to {entry.linkname!r}, which {exc.reason}") from None
        if not tparts:
            raise Refused(entry.name, "is a hard link to the image root")
        try:
            tparent = resolve_parent(tparts, tree.lookup, name=entry.linkname)
        except Refused as exc:
            raise Refused(entry.name, f"is a hard link to {entry.linkname!r}, which {exc.reason}") from None
        target = join(tparent, tparts[-1])
        kind, _ = tree.lookup(target)
        if kind == MISSING:
            raise Refused(entry.name, f"is a hard link to {entry.linkname!r}, which does not exist")
        if kind == DIR:
            raise Refused(entry.name, f"is a hard link to {entry.linkname!r}, which is a directory")
        if target == path:
            return  # a link to itself: nothing to do
        if target.startswith(path + "/"):
            raise Refused(entry.name, f"is a hard link to {entry.linkname!r}, inside what it would replace")
        if not tree.hardlink(path, target, entry):
            tree.remove(path)
            if not tree.hardlink(path, target, entry):
                raise Refused(entry.name, f"cannot replace /{path} (a mount point stays a directory)")

    def _whiteout(self, entry: TarEntry, parts: list[str]) -> None:
        tree = self.tree
        base = parts[-1]
        if base != OPAQUE and base.startswith(WHITEOUT + WHITEOUT):
            return  # aufs metadata (.wh..wh.plnk and friends): not part of the image
        parent = resolve_parent(parts, tree.lookup, name=entry.name)
        if base == OPAQUE:
            tree.make_dirs(parent)
            self._touch(parent)
            self._prune(parent)
            return
        victim = base[len(WHITEOUT):]
        if victim in ("", ".", ".."):
            raise Refused(entry.name, "is a whiteout that names no file")
        if tree.lookup(parent)[0] != DIR:
            return  # nothing below a missing directory to hide
        path = join(parent, victim)
        if path not in self.touched and tree.lookup(path)[0] != MISSING:
            tree.remove(path)

    def _prune(self, directory: str) -> None:
        """Remove from directory what lower layers put there, keeping what this layer wrote."""
        tree = self.tree
        for name in tree.children(directory):
            path = join(directory, name)
            if path not in self.touched:
                tree.remove(path)
            elif tree.lookup(path)[0] == DIR:
                self._prune(path)

    def _touch(self, path: str) -> None:
        touched = self.touched
        while path not in touched:
            touched.add(path)
            path = path.rpartition("/")[0]


def find(tree: Tree, path: str) -> str | None:
    """The canonical path that ``path`` (following symlinks, inside the root) leads to, if it exists."""
    try:
        canonical = resolve(clean_name(path), tree.lookup, name=path, want_dir=False, follow_absolute=True)
    except Refused:
        return None
    return canonical if tree.lookup(canonical)[0] != MISSING else None


__all__ = ["DIR", "LINK", "MISSING", "OPAQUE", "WHITEOUT", "LayerApplier", "Tree", "find"]

"""Where a layer entry lands: its name cleaned lexically, its directories resolved through symlinks inside
the image root, and a refusal for anything that would leave the root.

The same functions serve the scan (on a virtual tree, before the disk is wiped) and the extraction child
(on the real filesystem, chrooted into the target), so both refuse exactly the same entries:
- an absolute name, or a ``..`` that climbs above the root (in a name or a link target): refused, not
  clamped;
- an entry placed through an absolute symlink ("escape -> /tmp", then "escape/owned"): refused. Outside a
  chroot such a path leaves the target (GNU tar follows it), and layers made by diffing a tree never go
  through symlinks at all; relative symlinks that stay inside are followed.
Looking things up in the finished tree (os-release, kernels) follows absolute symlinks from the image
root, as the installed system will.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

MISSING, DIR, LINK, OTHER = 0, 1, 2, 3
MAX_LINKS = 40  # as the kernel's limit on symlinks followed in one lookup

# lookup(canonical path) -> (kind, link target or None); "" is the root. The leaf is not followed.
Lookup = Callable[[str], tuple[int, str | None]]


class Refused(Exception):
    """An entry the extraction will not apply; ``reason`` completes the sentence "entry NAME ..."."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"entry {name!r} {reason}")
        self.name = name
        self.reason = reason


def normalize(name: str) -> str:
    """An entry name as a clean relative path ("./usr//bin/" -> "usr/bin", the root -> "").

    Refuses what :func:`clean_name` refuses; most names are already clean and take a quick path.
    """
    clean = name[2:] if name.startswith("./") else name
    clean = clean.rstrip("/")
    if (clean and "//" not in clean and ".." not in clean and "/./" not in clean and "\0" not in clean
            and clean[0] not in "/." and not clean.endswith("/.") and clean.count("/") < MAX_DEPTH):
        return clean
    return "/".join(clean_name(name))


MAX_DEPTH = 256
"""The deepest entry name an image may have (an OS has a few dozen levels): deeper ones are a hostile layer's,
which would exhaust the walks over the tree."""


def clean_name(name: str) -> list[str]:
    """The components of an entry name below the root ("./usr//bin/" -> ["usr", "bin"]).

    Refuses absolute names and any '..' that climbs above the root; an inner '..' ("a/../b") is resolved
    lexically. The root itself gives [].
    """
    if name.startswith("/"):
        raise Refused(name, "has an absolute path")
    if "\0" in name:
        raise Refused(name, "has a NUL byte in its name")
    parts: list[str] = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                raise Refused(name, "climbs out of the image root with '..'")
            parts.pop()
        else:
            parts.append(comp)
    if len(parts) > MAX_DEPTH:
        raise Refused(name, f"is nested more than {MAX_DEPTH} directories deep")
    return parts


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def resolve(parts: Sequence[str], lookup: Lookup, *, name: str, want_dir: bool = True,
            follow_absolute: bool = False) -> str:
    """The canonical path (no symlink in it, "" for the root) that ``parts`` names inside the root,
    following every symlink on the way, the last component's too.

    Components must be directories or symlinks leading to one, or be missing (they will be created); with
    ``want_dir=False`` the last may also be a file. Absolute symlinks are refused unless
    ``follow_absolute`` (then they start again from the root). Raises :class:`Refused` when a '..' climbs
    above the root, when a component is a file, or on a symlink loop.
    """
    resolved: list[str] = []
    current = ""
    pending = list(reversed(parts))  # a stack: symlink targets are pushed in front of what is left
    links = 0
    via: str | None = None  # the last symlink followed, for the message
    while pending:
        comp = pending.pop()
        if comp in ("", "."):
            continue
        if comp == "..":
            if not resolved:
                how = f"through the symlink {via}" if via else "with '..'"
                raise Refused(name, f"would land outside the image root {how}")
            resolved.pop()
            current = "/".join(resolved)
            continue
        path = join(current, comp)
        kind, target = lookup(path)
        if kind == LINK:
            links += 1
            if links > MAX_LINKS:
                raise Refused(name, "goes through too many symlinks (a symlink loop?)")
            if not target:
                raise Refused(name, f"goes through the empty symlink /{path}")
            via = f"/{path} -> {target}"
            if target.startswith("/"):
                if not follow_absolute:
                    raise Refused(name, f"would be written through the absolute symlink {via}, "
                                        "which leaves the image root outside a chroot")
                resolved, current = [], ""
            pending.extend(reversed(target.split("/")))
            continue
        if kind == OTHER and (want_dir or pending):
            raise Refused(name, f"cannot be placed: /{path} is not a directory")
        resolved.append(comp)
        current = path
    return current


def resolve_parent(parts: Sequence[str], lookup: Lookup, *, name: str) -> str:
    """The canonical directory an entry named by ``parts`` goes into (its leaf is never followed)."""
    return resolve(parts[:-1], lookup, name=name) if len(parts) > 1 else ""

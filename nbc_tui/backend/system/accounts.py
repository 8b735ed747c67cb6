"""The account files across an update: the new image's entries and the installed system's own, merged.

/etc is an overlay: a file the running system changed lives whole in the overlay's upper layer and hides the
image's file of the same name. For ``passwd``, ``group``, ``shadow``, ``gshadow``, ``subuid`` and ``subgid``
hiding is wrong both ways: an upper copy hides the system users a new image adds, and a file only in the old
slot's lower layer (the root password set at install, a user's subordinate IDs) is gone once the new slot
brings the new image's /etc. So an update merges them, entry by entry (the entry's first field names it; in
``subuid`` and ``subgid``, where one user may hold several ranges, the whole line is the entry):

- an entry only the image has is added (a new system user, a new group), unless the image the system runs
  had it too: then the system removed it (``userdel`` of an image's default account), and it stays removed;
- an entry only the installed system has is kept (people, their groups, users added later);
- an entry both have keeps the installed system's line (its password hash, shell, home, and its UID and GID:
  the upper layer is shared by both slots and the files on /var carry those numbers), except group members:
  the image's members join the installed ones, but not those the running image had and the system removed.
  When the image numbers an account differently, a note says so: the new slot's own files of that account
  carry the image's number. Images that number their system accounts the same way in every build (static
  IDs, or systemd-sysusers) never see that note.

The image's order comes first, then the installed system's own entries in their order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ACCOUNT_FILES = ("passwd", "group", "shadow", "gshadow", "subuid", "subgid")
# A user may hold several subordinate ID ranges (rootless containers): there the whole line is the entry.
_WHOLE_LINE = ("subuid", "subgid")
# Fields by file (0-based): the numbers that own files, and the member list of a group.
_ID_FIELDS = {"passwd": (2, 3), "group": (2,)}
_MEMBERS = {"group": 3, "gshadow": 3}


@dataclass
class MergedAccounts:
    text: str
    notes: list[str] = field(default_factory=list)
    """What people should know: renumbered accounts, numbers used twice."""


def merge_accounts(name: str, installed: str, image: str, running_image: str | None = None) -> MergedAccounts:
    """``name`` (passwd, group, shadow or gshadow) merged from the installed system's text and the new image's.
    ``running_image`` is the file of the image the system runs (its slot's lower layer), None when unknown:
    what it had and the installed text lacks was removed on this system."""
    whole = name in _WHOLE_LINE
    mine = _entries(installed, whole_line=whole)
    before = _entries(running_image, whole_line=whole) if running_image is not None else {}
    result: list[str] = []
    notes: list[str] = []
    seen: set[str] = set()
    for key, line in _entries(image, whole_line=whole).items():
        seen.add(key)
        ours = mine.get(key)
        if ours is None and key in before:
            continue  # removed here
        result.append(line if ours is None else _keep(name, key, ours, line, running=before.get(key), notes=notes))
    result += [line for key, line in mine.items() if key not in seen]
    notes += _numbers_used_twice(name, result)
    return MergedAccounts("".join(f"{line}\n" for line in result), notes)


def _entries(text: str, *, whole_line: bool = False) -> dict[str, str]:
    """Lines by the name in their first field (or by the whole line); blank lines and comments are dropped, a
    repeated name keeps its first line (as the C library reads these files)."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        entries.setdefault(line if whole_line else line.split(":", 1)[0], line)
    return entries


def _keep(name: str, key: str, ours: str, theirs: str, *, running: str | None, notes: list[str]) -> str:
    mine, new = ours.split(":"), theirs.split(":")
    for index in _ID_FIELDS.get(name, ()):
        if len(mine) > index and len(new) > index and mine[index] != new[index]:
            what = "UID" if (name, index) == ("passwd", 2) else "GID"
            notes.append(f"/etc/{name}: the new image gives {key} {what} {new[index]}, this system keeps "
                         f"{mine[index]}; files of the new image owned by {what} {new[index]} are not {key}'s")
    members = _MEMBERS.get(name)
    if members is not None and len(mine) > members and len(new) > members:
        names = [m for m in mine[members].split(",") if m]
        removed = set(_members(running, members)) - set(names)
        names += [m for m in new[members].split(",") if m and m not in names and m not in removed]
        mine[members] = ",".join(names)
    return ":".join(mine)


def _members(line: str | None, index: int) -> list[str]:
    fields = line.split(":") if line is not None else []
    return [m for m in fields[index].split(",") if m] if len(fields) > index else []


def _numbers_used_twice(name: str, lines: list[str]) -> list[str]:
    fields = _ID_FIELDS.get(name)
    if fields is None:
        return []
    owners: dict[str, list[str]] = {}
    for line in lines:
        parts = line.split(":")
        if len(parts) > fields[0]:
            owners.setdefault(parts[fields[0]], []).append(parts[0])
    what = "UID" if name == "passwd" else "GID"
    return [f"/etc/{name}: {what} {number} now belongs to both {' and '.join(names)}"
            for number, names in owners.items() if len(names) > 1]

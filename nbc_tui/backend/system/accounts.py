"""The account files across an update: the new image's entries and the installed system's own, merged.

/etc is an overlay: a file the running system changed lives whole in the overlay's upper layer and hides the
image's file of the same name. For ``passwd``, ``group``, ``shadow`` and ``gshadow`` hiding is wrong both
ways: an upper copy hides the system users a new image adds, and a file only in the old slot's lower layer
(the root password set at install) is gone once the new slot brings the new image's /etc. So an update merges
them, entry by entry (the entry's first field names it):

- an entry only the image has is added (a new system user, a new group);
- an entry only the installed system has is kept (people, their groups, users added later);
- an entry both have keeps the installed system's fields (its UIDs own files on /var, its password hashes are
  the ones people type), except group members, which are the union of both.

The image's order comes first, then the installed system's own entries in their order.
"""

from __future__ import annotations

ACCOUNT_FILES = ("passwd", "group", "shadow", "gshadow")
# The field that lists a group's members (0-based): group has name:password:GID:members, gshadow
# name:password:admins:members.
_MEMBERS = {"group": 3, "gshadow": 3}


def merge_accounts(name: str, installed: str, image: str) -> str:
    """``name`` (passwd, group, shadow or gshadow) merged from the installed system's text and the image's."""
    mine = _entries(installed)
    result: list[str] = []
    seen: set[str] = set()
    for key, line in _entries(image).items():
        seen.add(key)
        ours = mine.get(key)
        result.append(line if ours is None else _keep(name, ours, line))
    result += [line for key, line in mine.items() if key not in seen]
    return "".join(f"{line}\n" for line in result)


def _entries(text: str) -> dict[str, str]:
    """Lines by the name in their first field; blank lines and comments are dropped, a repeated name keeps its
    first line (as the C library reads these files)."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        entries.setdefault(line.split(":", 1)[0], line)
    return entries


def _keep(name: str, ours: str, theirs: str) -> str:
    field = _MEMBERS.get(name)
    if field is None:
        return ours
    mine, new = ours.split(":"), theirs.split(":")
    if len(mine) <= field or len(new) <= field:
        return ours
    members = [m for m in mine[field].split(",") if m]
    members += [m for m in new[field].split(",") if m and m not in members]
    mine[field] = ",".join(members)
    return ":".join(mine)

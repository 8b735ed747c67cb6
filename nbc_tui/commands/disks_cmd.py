"""`nbc-tui list` and `nbc-tui validate`: the disks of this machine and whether one can be installed to.

Text follows nbc's layout (reference §1.5) with serial, transport, holders and one "Ineligible:" line
per reason; JSON keeps nbc's keys (§14.4) and adds ours. Unlike nbc, `validate` exits 2 for an
ineligible disk in both modes.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..backend.disks import Disk, Refusal, list_disks, refusals, resolve_disk
from ..backend.errors import InputError
from ..backend.plan import Layout
from ..backend.runner import RunContext
from ..backend.sizes import human, parse_size

VALID_MESSAGE = "Device is valid for bootc installation"


def _min_size(text: str) -> int:
    try:
        return parse_size(text, default_unit="G")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("-v", "--verbose", action="store_true", help="show filesystems, labels and by-id names")
    p.add_argument("-n", "--dry-run", action="store_true", help="accepted for nbc compatibility; changes nothing")
    p.add_argument("--min-size", type=_min_size, default=None, metavar="SIZE",
                   help="smallest acceptable disk, e.g. 40G (default: what the default layout needs, "
                        f"{human(Layout().min_disk_size)})")


def add_list_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("list", aliases=["ls", "disks"], help="list the disks of this machine",
                              description="List whole disks with their partitions, what uses them, and "
                                          "every reason one cannot be installed to.")
    p.add_argument("--all", action="store_true", help="include loop devices attached to files")
    _add_common(p)
    p.set_defaults(func=cmd_list)


def add_validate_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("validate", help="check that a disk can be installed to",
                              description="Check a disk for installation without changing anything. "
                                          "Exit 0 when it is eligible, 2 when it is not.")
    p.add_argument("-d", "--device", required=True, metavar="DISK",
                   help="the whole disk: /dev/sdb, /dev/disk/by-id/...")
    _add_common(p)
    p.set_defaults(func=cmd_validate)


def _wanted_min_size(args: argparse.Namespace) -> int:
    value = getattr(args, "min_size", None)
    return value if value is not None else Layout().min_disk_size


def _ctx(args: argparse.Namespace) -> RunContext:
    # list and validate only read: dry-run changes nothing for them (reads run in a dry run too).
    return getattr(args, "run_context", None) or RunContext()


def _refusals_json(found: list[Refusal]) -> list[dict[str, str]]:
    return [{"reason": r.reason.value, "message": r.message} for r in found]


def disk_json(disk: Disk, found: list[Refusal]) -> dict[str, Any]:
    """nbc's keys for one disk (omitting empty model, mount point and filesystem as nbc does), then ours."""
    out: dict[str, Any] = {"device": disk.device, "size": disk.size, "size_human": human(disk.size)}
    if disk.model:
        out["model"] = disk.model
    out["is_removable"] = disk.removable
    parts = []
    for p in disk.partitions:
        part: dict[str, Any] = {"device": p.device, "size": p.size, "size_human": human(p.size)}
        if p.mountpoints:
            part["mount_point"] = p.mountpoints[0]
        if p.fstype:
            part["filesystem"] = p.fstype
        part.update(number=p.number, label=p.label, partlabel=p.partlabel, uuid=p.uuid,
                    mountpoints=p.mountpoints, holders=p.holders)
        parts.append(part)
    out["partitions"] = parts
    out.update(
        name=disk.name, serial=disk.serial, wwid=disk.wwid, transport=disk.transport,
        read_only=disk.read_only, rotational=disk.rotational, by_id=disk.by_id, holders=disk.holders,
        mountpoints=disk.mountpoints, backing_file=disk.backing_file, filesystem=disk.fstype,
        label=disk.label, partition_table=disk.pttype, os_hint=disk.os_hint,
        eligible=not found, refusals=_refusals_json(found),
    )
    return out


def disk_text(disk: Disk, found: list[Refusal], *, verbose: bool) -> str:
    lines = [f"Device: {disk.device}", f"  Size:      {human(disk.size)} ({disk.size} bytes)"]
    if disk.model:
        lines.append(f"  Model:     {disk.model}")
    if disk.serial:
        lines.append(f"  Serial:    {disk.serial}")
    if disk.transport:
        lines.append(f"  Transport: {disk.transport}")
    lines.append(f"  Removable: {str(disk.removable).lower()}")
    if disk.read_only:
        lines.append("  Read-only: true")
    if disk.backing_file:
        lines.append(f"  File:      {disk.backing_file}")
    if disk.os_hint:
        lines.append(f"  Contains:  {disk.os_hint}")
    if verbose:
        lines += [f"  By-id:     {link}" for link in disk.by_id]
    if disk.mountpoints:
        lines.append(f"  Mounted:   {', '.join(disk.mountpoints)}")
    if disk.holders:
        lines.append(f"  Holders:   {', '.join(disk.holders)}")
    if not disk.partitions:
        lines.append("  Partitions: none")
    else:
        lines.append("  Partitions:")
        for p in disk.partitions:
            line = f"    - {p.device} ({human(p.size)})"
            if p.mountpoints:
                line += f" mounted at {', '.join(p.mountpoints)}"
            if p.holders:
                line += f" used by {', '.join(p.holders)}"
            if verbose and p.fstype:
                line += f" [{p.fstype}]"
            if verbose and p.label:
                line += f" label {p.label}"
            lines.append(line)
    lines += [f"  Ineligible: {r.message}" for r in found]
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    ctx = _ctx(args)
    min_size = _wanted_min_size(args)
    disks = list_disks(include_loop=getattr(args, "all", False), ctx=ctx)
    judged = [(disk, refusals(disk, min_size=min_size, ctx=ctx)) for disk in disks]
    if getattr(args, "json", False):
        print(json.dumps({"disks": [disk_json(d, r) for d, r in judged]}, indent=2))
        return 0
    if not judged:
        print("No disks found.")
        return 0
    print("\n\n".join(disk_text(d, r, verbose=getattr(args, "verbose", False)) for d, r in judged))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    as_json = getattr(args, "json", False)
    min_size = _wanted_min_size(args)
    ctx = _ctx(args)
    try:
        disk = resolve_disk(args.device, ctx=ctx)
    except InputError as exc:
        if as_json:
            print(json.dumps({"device": str(args.device), "valid": False, "error": exc.message,
                              "hint": exc.hint, "refusals": []}, indent=2))
        else:
            print(f"❌ Validation failed: {exc}", file=sys.stderr)
        return 2
    found = refusals(disk, min_size=min_size, ctx=ctx)
    if as_json:
        out: dict[str, Any] = {"device": disk.device, "valid": not found}
        if found:
            out["error"] = "; ".join(r.message for r in found)
        else:
            out["message"] = VALID_MESSAGE
        out.update(size=disk.size, size_human=human(disk.size), min_size=min_size,
                   min_size_human=human(min_size), refusals=_refusals_json(found))
        print(json.dumps(out, indent=2))
        return 2 if found else 0
    if not found:
        print(f"✓ Device {disk.device} is valid for bootc installation")
        return 0
    if len(found) == 1:
        print(f"❌ Validation failed: {found[0].message}", file=sys.stderr)
    else:
        print(f"❌ Validation failed: {disk.device} cannot be installed to:", file=sys.stderr)
        for r in found:
            print(f"  - {r.message}", file=sys.stderr)
    return 2

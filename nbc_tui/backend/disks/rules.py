"""Finding the target disk of a plan on this machine: ``target.match`` rules or ``target.device``.

Rules are tried in order. Only eligible disks are candidates (never the live medium, a mounted disk, or
one too small for the layout): the first rule that matches exactly one of them picks it; a rule that
matches two or more is an error listing them (never a guess); when no rule matches, the error lists the
eligible disks, and the disks a rule did match but that cannot be installed to, with the reason.

Errors are InputErrors whose ``details["loc"]`` is the key they are about (``["target", "match", 1]``),
so that an answer file can point at its line.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..plan import DiskRule, InstallPlan, Target
from ..runner import RunContext
from ..sizes import human
from .blockdevices import SYSTEM, SystemView
from .discovery import list_disks, resolve_disk
from .eligibility import refusals
from .model import Disk, Refusal
from .words import disk_line

# Loop devices count as disks only when asked (tests and demos attach them); the TUI's disk screen reads
# the same variable.
SHOW_LOOP_ENV = "NBC_TUI_SHOW_LOOP"
BY_ID = "/dev/disk/by-id/"


@dataclass(frozen=True)
class Resolved:
    """The plan with its target resolved: ``target.device`` set, no rules left, the serial pinned."""

    plan: InstallPlan
    disk: Disk | None
    """The disk picked; None for a disk-image file."""
    rule: int | None
    """Index in ``target.match`` of the rule that picked it; None when the plan named the device."""


def loops_wanted() -> bool:
    return os.environ.get(SHOW_LOOP_ENV) == "1"


def describe_rule(rule: DiskRule) -> str:
    """``transport=nvme, min_size=200.0 GB``: the rule as written, sizes for people."""
    parts = []
    for name, value in rule.model_dump(exclude_none=True).items():
        parts.append(f"{name}={human(value)}" if name.endswith("_size") else f"{name}={value}")
    return ", ".join(parts)


def rule_matches(rule: DiskRule, disk: Disk) -> bool:
    """Every field the rule gives holds for the disk (``size`` chooses among matches, see below)."""
    if rule.path is not None and not _path_matches(rule.path, disk):
        return False
    if rule.serial is not None and disk.serial != rule.serial:
        return False
    if rule.model is not None and not fnmatch.fnmatchcase((disk.model or "").lower(), rule.model.lower()):
        return False
    if rule.transport is not None and (disk.transport or "").lower() != rule.transport.lower():
        return False
    if rule.min_size is not None and disk.size < rule.min_size:
        return False
    return rule.max_size is None or disk.size <= rule.max_size


def _path_matches(path: str, disk: Disk) -> bool:
    if "/" not in path:  # a bare /dev/disk/by-id name
        path = BY_ID + path
    if path == disk.device or path in disk.by_id:
        return True
    # Any other link to the disk's node (/dev/disk/by-path/..., a by-id link udev made after we looked).
    return os.path.realpath(path) == disk.device


def _choose(rule: DiskRule, found: list[Disk]) -> list[Disk]:
    """``size = largest|smallest`` keeps the extreme ones (two of the same size stay ambiguous)."""
    if rule.size is None or len(found) < 2:
        return found
    best = max(d.size for d in found) if rule.size == "largest" else min(d.size for d in found)
    return [d for d in found if d.size == best]


def resolve_target(plan: InstallPlan, *, include_loop: bool | None = None, view: SystemView = SYSTEM,
                   ctx: RunContext | None = None) -> Resolved:
    """Find the plan's disk here and check it. Reads only. Raises InputError (with ``details["loc"]``)."""
    target = plan.target
    if target.is_image_file:
        return Resolved(plan, None, None)
    min_size = plan.layout.min_disk_size
    if target.device is not None:
        try:
            disk = resolve_disk(target.device, view=view, ctx=ctx)
        except InputError as exc:
            raise _at(exc, "target", "device") from None
        found = refusals(disk, min_size=min_size, view=view, ctx=ctx)
        if found:
            raise InputError(f"{disk.device} cannot be installed to: " + "; ".join(r.message for r in found),
                             hint="choose another disk (nbc-tui list shows why each one can or cannot be used)",
                             details={"loc": ["target", "device"], "refusals": _refusals_json(found)})
        rule = None
    else:
        disk, rule = _by_rules(target.match, min_size=min_size,
                               include_loop=loops_wanted() if include_loop is None else include_loop,
                               view=view, ctx=ctx)
    _check_pin(target, disk)
    pinned = Target(device=Path(disk.device) if rule is not None else target.device,
                    serial=disk.serial or target.serial, wipe=target.wipe)
    return Resolved(plan.model_copy(update={"target": pinned}), disk, rule)


def _by_rules(rules: tuple[DiskRule, ...], *, min_size: int, include_loop: bool, view: SystemView,
              ctx: RunContext | None) -> tuple[Disk, int]:
    judged = [(d, refusals(d, min_size=min_size, view=view, ctx=ctx))
              for d in list_disks(include_loop=include_loop, view=view, ctx=ctx)]
    eligible = [d for d, found in judged if not found]
    for index, rule in enumerate(rules):
        found = _choose(rule, [d for d in eligible if rule_matches(rule, d)])
        if len(found) == 1:
            return found[0], index
        if found:
            raise InputError(
                f"disk rule {index} ({describe_rule(rule)}) matches {len(found)} disks: "
                + "; ".join(disk_line(d) for d in found),
                hint="make the rule narrower so that it picks one, e.g. with serial = \"...\" "
                     "(never a guess: nothing was written)",
                details={"loc": ["target", "match", index], "disks": [d.device for d in found]})
    # Nothing matched: say what the rules did match but cannot use, and what could be used.
    refused = [f"{disk_line(d)} matches rule {i} but cannot be used: {'; '.join(r.message for r in found)}"
               for d, found in judged if found for i, rule in enumerate(rules) if rule_matches(rule, d)]
    listing = "; ".join(disk_line(d) for d in eligible) or "none"
    loops = "" if include_loop else f" (loop devices count only with {SHOW_LOOP_ENV}=1)"
    message = "no disk rule matches an eligible disk on this machine"
    if refused:
        message += ": " + "; ".join(dict.fromkeys(refused))
    raise InputError(message, hint=f"eligible disks here{loops}: {listing}",
                     details={"loc": ["target", "match"], "eligible": [d.device for d in eligible]})


def _check_pin(target: Target, disk: Disk) -> None:
    if target.serial is not None and disk.serial != target.serial:
        raise InputError(
            f"{disk.device} has serial {disk.serial or '(none)'}, but the plan is pinned to serial "
            f"{target.serial}", hint="check that this is the machine and disk the answers were made for",
            details={"loc": ["target", "serial"], "device": disk.device})


def _at(exc: InputError, *loc: str) -> InputError:
    return InputError(exc.message, hint=exc.hint, details={**exc.details, "loc": list(loc)})


def _refusals_json(found: list[Refusal]) -> list[dict[str, str]]:
    return [r.model_dump(mode="json") for r in found]

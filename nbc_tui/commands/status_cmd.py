"""`nbc-tui status` (aliases `stat`, `info`): nbc's text layout and JSON keys (reference §1.4, §14.4), plus
both root slots, the fallback and what is pending."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..backend.errors import NbcError
from ..backend.events import ErrorEvent, Event, TextWriter, WarningEvent
from ..backend.operations.status import SlotState, SlotStatus, SystemStatus, read_status
from ..backend.provenance import Verification
from ..backend.runner import RunContext


def add_status_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("status", aliases=["stat", "info"], help="show the installed system's state and both slots",
                       description="Show the image, disk and bootloader of the installed system, and for each root "
                                   "slot its image, kernel, when it was written and its state (good, on trial with "
                                   "N tries left, bad, empty), which runs and which boots next, whether the last "
                                   "boot fell back, a staged update and a pending reboot.")
    p.add_argument("-d", "--device", type=Path, metavar="DISK",
                   help="an nbc disk or disk-image file instead of the running system (read-only)")
    p.add_argument("--json", action="store_true", help="print one JSON object (nbc's keys, plus slots)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="full digests, install date and kernel arguments, and ask where the image lives whether "
                        "it changed")
    p.add_argument("--offline", action="store_true", help="never ask where the image lives (--json asks by default)")
    p.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    errors = TextWriter(stream=sys.stderr)

    def emit(event: Event) -> None:
        if isinstance(event, WarningEvent) or (isinstance(event, ErrorEvent) and not args.json):
            errors(event)

    try:
        status = read_status(ctx=RunContext(), emit=emit, device=args.device.absolute() if args.device else None,
                             check=(args.json or args.verbose) and not args.offline)
    except NbcError as exc:
        if args.json:
            _print_json({"error": True, "message": "failed to read system config", "details": exc.message})
        else:
            print("\nIs this system installed with nbc or nbc-tui?", file=sys.stderr)
        return exc.exit_code
    if args.json:
        _print_json(status_json(status))
    else:
        print(status_text(status, verbose=args.verbose))
    return 0


# -- JSON ---------------------------------------------------------------------------------------------

def status_json(status: SystemStatus) -> dict[str, Any]:
    """nbc's keys in nbc's order (omitempty as nbc), then ours."""
    config = status.config
    out: dict[str, Any] = {"image": config.image_ref}
    if config.image_digest:
        out["digest"] = config.image_digest
    out["device"] = config.device or status.device
    if status.active_root:
        out["active_root"] = status.active_root
    if status.booted is not None:
        out["active_slot"] = f"{status.booted.value} ({status.booted.role})"
    if status.root_mount_mode:
        out["root_mount_mode"] = status.root_mount_mode
    out["bootloader_type"] = status.bootloader
    out["filesystem_type"] = config.filesystem_type or "ext4"
    if config.install_date:
        out["install_date"] = config.install_date
    if config.kernel_args:
        out["kernel_args"] = list(config.kernel_args)
    if status.update_check is not None:
        check = status.update_check
        out["update_check"] = {"available": check.available, "remote_digest": check.remote_digest,
                               "current_digest": check.current_digest, "error": check.error}
    if status.staged_update is not None:
        staged = status.staged_update
        out["staged_update"] = {"image_ref": staged.image_ref, "image_digest": staged.image_digest,
                                "size_bytes": staged.size_bytes, "ready": status.staged_ready}
    if status.reboot_pending is not None:
        out["reboot_pending"] = status.reboot_pending.model_dump()
    # ours
    verification = config.image_verification
    out["verification"] = verification.model_dump(mode="json") if verification else None
    if config.cosign_key:
        out["cosign_key"] = config.cosign_key
    out["slots"] = [_slot_json(s) for s in status.slots]
    out["booted_slot"] = status.booted.value if status.booted else None
    out["default_slot"] = next((s.slot.value for s in status.slots if s.boots_next), None)
    out["fell_back"] = status.fell_back
    return out


def _slot_json(slot: SlotStatus) -> dict[str, Any]:
    return {"slot": slot.slot.value, "role": slot.slot.role, "partition": slot.partition, "state": slot.state.value,
            "tries_left": slot.tries_left, "running": slot.running, "boots_next": slot.boots_next,
            "image": slot.image_ref, "digest": slot.image_digest, "kernel": slot.kernel, "written": slot.written,
            "operation": slot.operation,
            "verification": slot.record.verification.model_dump(mode="json")
            if slot.record is not None and slot.record.verification else None}


# -- text ---------------------------------------------------------------------------------------------

def status_text(status: SystemStatus, *, verbose: bool = False) -> str:
    config = status.config
    lines = ["nbc System Status", "=" * 50,
             f"Image:        {config.image_ref}",
             f"Digest:       {_digest(config.image_digest, verbose)}",
             f"Device:       {config.device or status.device}"]
    if status.booted is not None:
        lines.append(f"Active Root:  {status.active_root} [Slot {status.booted.value} ({status.booted.role})]")
    else:
        lines.append(f"Active Root:  (not running: read from {status.device})")
    if status.root_mount_mode:
        lines.append(f"Root Mount:   {'read-only' if status.root_mount_mode == 'ro' else 'read-write'}")
    lines += [f"Bootloader:   {status.bootloader}", f"Filesystem:   {config.filesystem_type or 'ext4 (default)'}",
              f"Signature:    {_verification(config.image_verification)}"]
    if config.cosign_key:
        lines.append(f"Trusted key:  {config.cosign_key} (cosign: updates require its signature)")
    if verbose:
        lines.append(f"Installed:    {config.install_date}")
        lines.append(f"Kernel Args:  {' '.join(config.kernel_args) or '(none)'}")
    lines.append("")
    lines += [line for slot in status.slots for line in _slot_lines(slot, verbose)]
    if status.fell_back:
        bad = next(s for s in status.slots if s.state is SlotState.BAD)
        lines += ["", f"** FELL BACK: slot {bad.slot.value} never booted to the end; the loader gave up on it after "
                      f"its tries and boots slot {bad.slot.other.value} **"]
    if status.reboot_pending is not None:
        marker = status.reboot_pending
        lines += ["", "** REBOOT REQUIRED **", f"  Pending image: {marker.pending_image_ref}",
                  f"  Digest:        {_digest(marker.pending_image_digest, verbose)}",
                  f"  Changed:       {marker.update_time}", f"  Partition:     {marker.target_partition}"]
    if status.staged_update is not None:
        staged = status.staged_update
        state = ("ready to apply" if status.staged_ready else
                 "not ready" if status.staged_note else "matches installed version")
        lines += ["", f"Update staged ({state}): {staged.image_ref} ({_digest(staged.image_digest, verbose)})"]
        if status.staged_note:
            lines.append(f"  {status.staged_note}")
    if status.update_check is not None:
        check = status.update_check
        if check.error:
            lines += ["", f"Update check: {'refused' if check.refused else 'failed'} ({check.error})"]
        elif check.note:
            lines += ["", f"Update check: {check.note}"]
        else:
            lines += ["", "Update check: " + (f"update available ({_digest(check.remote_digest or '', verbose)})"
                                              if check.available else "up to date")]
    return "\n".join(lines)


def _slot_lines(slot: SlotStatus, verbose: bool) -> list[str]:
    state = {SlotState.GOOD: "good", SlotState.BAD: "bad (out of tries)", SlotState.EMPTY: "empty",
             SlotState.INCOMPLETE: "incomplete (no boot entry: an update was cut short)",
             SlotState.TRIAL: f"on trial, {slot.tries_left} {'try' if slot.tries_left == 1 else 'tries'} left"}
    roles = [r for r, yes in (("running", slot.running), ("boots next", slot.boots_next)) if yes]
    lines = [f"Slot {slot.label} {slot.partition}: {state[slot.state]}" + (f", {', '.join(roles)}" if roles else "")]
    if slot.image_ref:
        lines.append(f"  Image:      {slot.image_ref}")
        lines.append(f"  Digest:     {_digest(slot.image_digest or '', verbose)}")
        if slot.record is not None:
            lines.append(f"  Signature:  {_verification(slot.record.verification)}")
    if slot.kernel:
        lines.append(f"  Kernel:     {slot.kernel}")
    if slot.written:
        lines.append(f"  Written:    {slot.written}" + (f" ({slot.operation})" if slot.operation else ""))
    return lines


def _verification(verification: Verification | None) -> str:
    return verification.describe() if verification is not None else "(not recorded)"


def _digest(digest: str, verbose: bool) -> str:
    if not digest:
        return "(not recorded)"
    return digest if verbose or len(digest) <= 19 else digest[:19] + "..."


def _print_json(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()

"""`nbc-tui lint IMAGE | --local [--fix] [--json]`: what an image ships that an install would refuse or warn
about, for image authors' CI (reference §1.9, §16).

Text follows nbc's layout on stdout (the issues, a summary, the --fix hint) with a hint under each issue;
--json prints nbc's one pretty object (§14.4, keys kept, a "hint" added per issue). Exit 1 when an error is
found (warnings alone exit 0), 2 for a bad argument, which reads and changes nothing. An image that cannot
be read whole is reported as nbc's one "extraction" issue under --json and an ``Error:`` line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..backend.errors import Cancelled, InputError, NbcError
from ..backend.lint import IMAGE_UNREADABLE, LintIssue, LintReport, lint_image, lint_root, running_in_container

FIX_COMMAND = "nbc-tui lint --local --fix"


def add_lint_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "lint", help="check an image for what an install would refuse",
        description="Check an image (without extracting it) or, with --local, the root of an image build for "
                    "what every machine must make for itself (SSH host keys, machine-id, random seeds) and for "
                    "what an install would refuse or work around (kernel, initramfs, the etc-overlay module or "
                    "dracut, unlock support for encrypted installs, bootloader binaries). Exit 1 when an error "
                    "is found, 0 for warnings alone, 2 for a bad argument.",
        epilog="In a Containerfile, as the last step: RUN nbc-tui lint --local --fix")
    p.add_argument("image", nargs="?", metavar="IMAGE",
                   help="oci:DIR[:TAG], oci-archive:FILE[:TAG], localhost/NAME[:TAG] or a registry reference")
    p.add_argument("--local", action="store_true",
                   help="lint this system's root (/) instead of an image, e.g. inside a container build")
    p.add_argument("--fix", action="store_true",
                   help="with --local, inside a container only: delete SSH host keys and random seeds, empty the "
                        "machine-id (fixed issues are listed as FIXED and are not errors)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_lint)


def cmd_lint(args: argparse.Namespace) -> int:
    problem = _argument_problem(args)
    if problem is not None:
        print(f"Error: {problem}", file=sys.stderr)
        return 2
    if args.local:
        try:
            report = lint_root(Path("/"), fix=args.fix, in_container=running_in_container())
        except InputError as exc:  # --fix outside a container: refused before anything changed
            _error(exc)
            return exc.exit_code
        if not args.json:
            print("Linting and fixing current filesystem..." if args.fix else "Linting current filesystem...")
    else:
        if not args.json:
            print(f"Linting container image: {args.image}", flush=True)
        try:
            report = lint_image(args.image)
        except Cancelled:
            raise
        except NbcError as exc:
            return _unreadable(args, exc)
    if args.json:
        _print_json(report_json(report))
    else:
        print(report_text(report, fixing=args.fix))
    return 0 if report.success else 1


def _argument_problem(args: argparse.Namespace) -> str | None:
    if args.local and args.image:
        return "give an IMAGE or --local, not both"
    if not args.local and not args.image:
        return "an IMAGE is required (or --local to lint this system's root)"
    if args.fix and not args.local:
        return "--fix works only with --local (an image is never changed)"
    return None


def _unreadable(args: argparse.Namespace, exc: NbcError) -> int:
    """The image could not be opened or read whole: nbc's single "extraction" issue under --json."""
    if args.json:
        issue = LintIssue(IMAGE_UNREADABLE, "error", exc.message, hint=exc.hint)
        _print_json(report_json(LintReport((issue,), image=args.image)))
    _error(exc)
    return exc.exit_code


def _error(exc: NbcError) -> None:
    print(f"Error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"  {exc.hint}", file=sys.stderr)


def _print_json(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def issue_json(issue: LintIssue) -> dict[str, Any]:
    """nbc's keys in nbc's order, empty ones omitted as nbc does, then our hint."""
    out: dict[str, Any] = {"check": issue.check, "severity": issue.severity, "message": issue.message}
    if issue.path:
        out["path"] = issue.path
    if issue.fixed:
        out["fixed"] = True
    if issue.hint:
        out["hint"] = issue.hint
    return out


def report_json(report: LintReport) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if report.image:
        out["image"] = report.image
    if report.local:
        out["local"] = True
    out["issues"] = [issue_json(i) for i in report.issues]
    out["error_count"] = report.error_count
    out["warning_count"] = report.warning_count
    if report.fixed_count:
        out["fixed_count"] = report.fixed_count
    out["success"] = report.success
    return out


def report_text(report: LintReport, *, fixing: bool) -> str:
    if not report.issues:
        return "\n✓ No issues found"
    lines = ["", "Issues found:"]
    for issue in report.issues:
        tag = "FIXED" if issue.fixed else "ERROR" if issue.severity == "error" else "WARN "
        lines.append(f"  [{tag}] {issue.path}: {issue.message}" if issue.path else f"  [{tag}] {issue.message}")
        if issue.hint and not issue.fixed:
            lines.append(f"          {issue.hint}")
    counts = [(report.error_count, "error(s)"), (report.warning_count, "warning(s)"), (report.fixed_count, "fixed")]
    summary = [f"{n} {what}" for n, what in counts if n]
    if summary:
        lines += ["", f"Summary: {', '.join(summary)}"]
    if report.error_count and report.fixable and not fixing:
        lines += ["", "To fix SSH host keys, the machine-id and random seeds, run as a step of the image build:",
                  f"  {FIX_COMMAND}"]
    return "\n".join(lines)

"""`nbc-tui answers validate FILE` and `nbc-tui answers schema`: answer files checked against this machine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..backend.answers import (
    AnswerFileError,
    Checked,
    answers_json_schema,
    check_answers,
    dump_answers,
    read_answers,
    schema_text,
)
from ..backend.disks import disk_line
from ..backend.events import events_json_schema
from ..backend.runner import RunContext


def add_answers_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("answers", help="answer files for unattended installs: validate one, print the schema",
                       description="Answer files drive `nbc-tui --headless --answers FILE` (docs/answers.md).")
    actions = p.add_subparsers(dest="answers_command", metavar="ACTION", required=True)
    v = actions.add_parser("validate", help="check an answer file here, and print the plan it resolves to",
                           description="Check the syntax and types, then resolve the file on this machine: the "
                                       "disk rules pick exactly one eligible disk, the wipe is consented to, the "
                                       "image is reachable and has a kernel, the layout fits, a TPM2 exists if "
                                       "asked for, secret files are readable. Reads only. Exit 0 when valid, "
                                       "2 when not.")
    v.add_argument("file", type=Path, metavar="FILE", help="the answer file (TOML, or JSON)")
    v.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    v.set_defaults(func=cmd_validate)
    s = actions.add_parser("schema", help="print the JSON Schema of answer files",
                           description="Print the JSON Schema of answer files (docs/answers.schema.json), or with "
                                       "--events that of the --json event stream (docs/events.schema.json).")
    s.add_argument("--events", action="store_true", help="the schema of one --json event line instead")
    s.set_defaults(func=cmd_schema)


def cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_text(events_json_schema() if args.events else answers_json_schema()))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    # Everything here only reads: the engine's checks run in a dry run.
    ctx = RunContext(dry_run=True)
    try:
        checked = check_answers(read_answers(args.file), ctx=ctx)
    except AnswerFileError as exc:
        if args.json:
            print(json.dumps({"file": str(args.file), "valid": False,
                              "problems": [p.as_dict() for p in exc.problems]}, indent=2))
        else:
            print(f"✗ {args.file} is not valid here:", file=sys.stderr)
            for problem in exc.problems:
                print("  " + problem.render(exc.source).replace("\n", "\n  "), file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(validated_json(checked), indent=2))
    else:
        print(f"✓ {args.file} is valid on this machine")
        print(f"  {target_line(checked)}")
        for warning in checked.warnings:
            print("  warning: " + warning.render(checked.answers.source).replace("\n", "\n  "))
        print("\nThe plan nbc-tui --headless runs with it:\n")
        print(dump_answers(checked.plan), end="")
    return 0


def target_line(checked: Checked) -> str:
    plan = checked.plan
    if checked.disk is None:
        return f"Target: the disk-image file {plan.target.image_file}"
    how = ""
    if checked.rule is not None:
        line = checked.answers.line(("target", "match", checked.rule))
        how = f", picked by target.match[{checked.rule}]" + (f" (line {line})" if line else "")
    return f"Target: {disk_line(checked.disk)}{how}; it will be erased"


def validated_json(checked: Checked) -> dict[str, Any]:
    out: dict[str, Any] = {"file": checked.answers.source, "valid": True,
                           "plan": checked.plan.model_dump(mode="json"),
                           "warnings": [w.as_dict() for w in checked.warnings]}
    if checked.disk is not None:
        out["disk"] = {"device": checked.disk.device, "model": checked.disk.model, "serial": checked.disk.serial,
                       "size": checked.disk.size, "transport": checked.disk.transport}
        out["rule"] = checked.rule
    return out

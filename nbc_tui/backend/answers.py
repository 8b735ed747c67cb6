"""Answer files: the :class:`InstallPlan` written in TOML (JSON accepted), read with errors that point at a
line, written back with comments, and checked against this machine before anything is touched.

The file is exactly the plan (``version = 1``, unknown keys refused). Two things are stricter than the
model: ``version`` must be written, and secrets are never inline (``passphrase``, ``root_password``): a
file that anyone may copy around must not carry them; it names a file holding them instead. Relative
paths in the file are taken relative to the file's own directory (so answers and their secret files can
travel together, e.g. on a labelled USB partition).
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .answer_format import ANSWERS_VERSION, INLINE_SECRETS, PATH_KEYS, answers_json_schema, schema_text
from .answer_lines import Loc, locate_json, locate_toml, strip_indices
from .answer_writer import dump_answers, save_answers
from .disk_rules import Resolved, resolve_target
from .disks import Disk
from .errors import InputError, NbcError
from .events import Emit, ErrorEvent, Event, MessageEvent, StepEvent
from .plan import MIN_PASSPHRASE, InstallPlan, error_text
from .runner import RunContext
from .sizes import human

# The answers API in one place; the format, the line finder and the writer live in answer_*.py.
__all__ = ["AnswerFile", "AnswerFileError", "Checked", "Problem", "answers_json_schema", "check_answers",
           "dump_answers", "keyed_engine_errors", "load_answers", "parse_answers", "preflight_loc", "read_answers",
           "save_answers", "schema_text"]


# ---------------------------------------------------------------------------------------------------
# Problems: one per thing wrong, each with the dotted key, its line, and what would fix it


def format_key(loc: Loc) -> str:
    """('target', 'match', 1, 'serial') -> 'target.match[1].serial'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass(frozen=True)
class Problem:
    key: str
    """Dotted key (``target.match[1].serial``); empty when the problem is the file as a whole."""
    line: int | None
    message: str
    hint: str | None = None

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        text = f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"
        return text + (f"\n    {self.hint}" if self.hint else "")  # the fix on its own, indented line

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "line": self.line, "message": self.message, "hint": self.hint}


class AnswerFileError(InputError):
    """The answer file is invalid, or does not fit this machine. Exit 2; nothing was written."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        rendered = "\n".join(p.render(source) for p in problems)
        super().__init__(rendered, details={"file": source, "problems": [p.as_dict() for p in problems]})


@dataclass
class AnswerFile:
    """A loaded answer file: the plan, where it came from, and the line of each of its keys."""

    plan: InstallPlan
    source: str
    lines: dict[Loc, int] = field(default_factory=dict)

    def line(self, loc: Loc) -> int | None:
        return _line(self.lines, loc)

    def problem(self, loc: Loc, message: str, hint: str | None = None) -> Problem:
        return Problem(format_key(loc), self.line(loc), message, hint)


def _line(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of ``loc``, or of its nearest parent that is in the file (a missing key's table)."""
    for i in range(len(loc), 0, -1):
        if loc[:i] in lines:
            return lines[loc[:i]]
    return None


# ---------------------------------------------------------------------------------------------------
# Loading


def load_answers(path: str | Path) -> InstallPlan:
    """Read an answer file (TOML, or JSON by suffix or content). Raises AnswerFileError (exit 2)."""
    return read_answers(path).plan


def read_answers(path: str | Path) -> AnswerFile:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise AnswerFileError(str(path), [Problem("", None, f"cannot read the answer file: {exc.strerror}",
                                                  "check the path")]) from None
    except UnicodeDecodeError:
        raise AnswerFileError(str(path), [Problem("", None, "the answer file is not UTF-8 text",
                                                  "save it as UTF-8")]) from None
    is_json = path.suffix.lower() == ".json" or (path.suffix.lower() != ".toml" and text.lstrip().startswith("{"))
    return parse_answers(text, source=str(path), base_dir=path.absolute().parent, is_json=is_json)


def parse_answers(text: str, *, source: str = "<answers>", base_dir: Path | None = None,
                  is_json: bool = False) -> AnswerFile:
    data = _parse_json(text, source) if is_json else _parse_toml(text, source)
    lines = locate_json(text) if is_json else locate_toml(text)
    problems = _file_rules(data, lines) + _loose_scalars(data, lines, ())
    if base_dir is not None:
        _resolve_relative_paths(data, base_dir)
    plan: InstallPlan | None = None
    try:
        plan = InstallPlan.model_validate(data)
    except ValidationError as exc:
        # Said once, in our words: a loose boolean; the table of a refused inline secret (which the model
        # would now find without its passphrase).
        reported = {p.key for p in problems} | {p.key.split(".")[0] for p in problems
                                                if tuple(p.key.split(".")) in INLINE_SECRETS}
        problems += [p for p in (_problem(err, lines) for err in exc.errors()) if p.key not in reported]
    if problems or plan is None:
        raise AnswerFileError(source, sorted(problems, key=lambda p: p.line or 0))
    return AnswerFile(plan, source, lines)


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(m.group(1)) if m else None
        raise AnswerFileError(source, [Problem(
            "", line, f"not valid TOML: {str(exc).split(' (at line')[0]}",
            'check the syntax there: text in "quotes", one key = value per line, tables as [name]')]) from None


def _parse_json(text: str, source: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnswerFileError(source, [Problem("", exc.lineno, f"not valid JSON: {exc.msg}",
                                               "check the syntax there")]) from None
    if not isinstance(data, dict):
        raise AnswerFileError(source, [Problem("", 1, "the answer file must be one JSON object",
                                               'start it with {"version": 1, ...}')])
    return data


def _file_rules(data: dict[str, Any], lines: dict[Loc, int]) -> list[Problem]:
    """What an answer file must do beyond the model: state its version, keep secrets out."""
    problems = []
    if "version" not in data:
        problems.append(Problem("version", None, "missing: the file does not say its format version",
                                f"add version = {ANSWERS_VERSION} as the first line"))
    for (section, key), instead in INLINE_SECRETS.items():
        part = data.get(section)
        if isinstance(part, dict) and key in part:
            alt = " (or root_password_hash, a crypt(3) hash)" if key == "root_password" else ""
            problems.append(Problem(
                f"{section}.{key}", _line(lines, (section, key)),
                "a secret written in the answer file is refused: anyone who can read or copy the file has it",
                f'put it in a file readable only by root (chmod 600) and use {instead} = "/path/to/file"{alt}'))
            del part[key]  # reported once, not again by the model's own checks
    return problems


def _loose_scalars(data: Any, lines: dict[Loc, int], loc: Loc) -> list[Problem]:
    """pydantic would read "yes" or 1 as true, and true as 1: a switch such as the consent to wipe must be a
    real boolean, and a size a real number."""
    out: list[Problem] = []
    if isinstance(data, list):
        for index, item in enumerate(data):
            out += _loose_scalars(item, lines, (*loc, index))
        return out
    model = _model_at(loc) if isinstance(data, dict) else None
    if model is None:
        return out
    for key, value in data.items():
        info = model.model_fields.get(key) if isinstance(key, str) else None
        if info is None:
            continue
        if info.annotation is bool and not isinstance(value, bool):
            out.append(Problem(format_key((*loc, key)), _line(lines, (*loc, key)),
                               f"must be true or false, not {value!r}", "write true or false, without quotes"))
        elif isinstance(value, bool) and int in _leaf_types(info.annotation):  # True would be read as 1
            out.append(Problem(format_key((*loc, key)), _line(lines, (*loc, key)),
                               f"must be a number, not {str(value).lower()}",
                               "write it like 512M or 2G" if key.endswith("_size") else "write a whole number"))
        elif isinstance(value, dict | list):
            out += _loose_scalars(value, lines, (*loc, key))
    return out


def _leaf_types(annotation: Any) -> set[Any]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated) and args:
        return set().union(*(_leaf_types(a) for a in args))
    return {annotation}


def _resolve_relative_paths(data: dict[str, Any], base_dir: Path) -> None:
    for section, key in PATH_KEYS:
        part = data.get(section)
        if isinstance(part, dict) and isinstance(part.get(key), str) and part[key] and not part[key].startswith("/"):
            part[key] = str(base_dir / part[key])


# -- turning pydantic's errors into problems --------------------------------------------------------------

_TYPE_HINTS = {
    "bool_type": "write true or false, without quotes",
    "bool_parsing": "write true or false, without quotes",
    "int_type": "write a whole number, without quotes",
    "int_parsing": "write a whole number, without quotes",
    "int_from_float": "write a whole number",
    "string_type": 'write text in quotes: key = "value"',
    "path_type": 'write the path in quotes: key = "/path"',
    "tuple_type": 'write a list: key = ["first", "second"]',
    "list_type": 'write a list: key = ["first", "second"]',
    "model_type": "write a table: its keys under a [section] header",
    "model_attributes_type": "write a table: its keys under a [section] header",
    "dict_type": "write a table: its keys under a [section] header",
}


def _problem(err: Any, lines: dict[Loc, int]) -> Problem:
    loc: Loc = tuple(err["loc"])
    kind, line = err["type"], _line(lines, loc)
    msg = error_text(err)
    key = format_key(loc)
    if kind == "extra_forbidden":
        parent, name = loc[:-1], str(loc[-1])
        known = _field_names(parent)
        what = "section" if isinstance(err.get("input"), dict) else "key"
        where = f" in [{format_key(parent)}]" if parent else ""
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        here = "the keys here are" if parent else "the sections and top-level keys are"
        hint = (f"did you mean {near[0]!r}?" if near else f"{here}: {', '.join(known)}" if known else "remove it")
        return Problem(key, line, f"unknown {what} {name!r}{where}", hint)
    if kind == "missing":
        parent = format_key(loc[:-1])
        desc = _description(loc)
        if parent:
            hint = f"add {loc[-1]} = ... under [{parent}]" + (f": {desc}" if desc else "")
        else:
            hint = f"add a [{loc[-1]}] table" + (f": {desc}" if desc else "")
        return Problem(key, line, "missing: this key is required", hint)
    if kind in ("greater_than_equal", "less_than_equal") and str(loc[-1]).endswith("_size"):
        bound = err.get("ctx", {}).get("ge" if kind == "greater_than_equal" else "le")
        word = "at least" if kind == "greater_than_equal" else "at most"
        return Problem(key, line, f"must be {word} {human(int(bound))}" if bound is not None else msg,
                       "write it like 512M or 2G")
    if kind == "literal_error" and loc == ("version",):
        return Problem(key, line, msg, f"this nbc-tui reads version {ANSWERS_VERSION} answer files")
    hint = _TYPE_HINTS.get(kind) or _description(loc)
    return Problem(key, line, msg, hint)


def _model_at(loc: Loc) -> type[BaseModel] | None:
    model: type[BaseModel] | None = InstallPlan
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        model = _inner_model(info.annotation)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, tuple, list, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


def _field_names(loc: Loc) -> list[str]:
    model = _model_at(loc)
    if model is None:
        return []
    hidden = {k for (s, k) in INLINE_SECRETS if (s,) == strip_indices(loc)}
    return [name for name in model.model_fields if name not in hidden]


def _description(loc: Loc) -> str | None:
    model = _model_at(loc[:-1])
    info = model.model_fields.get(str(loc[-1])) if model is not None else None
    if info is None or not info.description:
        return None
    return " ".join(info.description.split())


# ---------------------------------------------------------------------------------------------------
# Checking the answers against this machine


@dataclass
class Checked:
    """Answers resolved here: the plan the engine runs (a device, never rules), and the disk it picked."""

    answers: AnswerFile
    plan: InstallPlan
    disk: Disk | None
    rule: int | None
    problems: list[Problem] = field(default_factory=list)


def check_answers(answers: AnswerFile, *, ctx: RunContext, require_wipe: bool = True,
                  preflight: bool = True, include_loop: bool | None = None) -> Checked:
    """Resolve the answers on this machine, collecting every problem: the consent, the disk rules, the
    secret files; with ``preflight`` (validate) also what a real install would refuse here (no
    device-mapper, no TPM2) and the engine's own read-only dry-run checks of the image and the layout.
    Reads only; secrets read are registered with ``ctx.redactor`` at once. Raises AnswerFileError."""
    plan = answers.plan
    problems: list[Problem] = []
    # A crypt hash can be attacked offline: it stays out of logs like the password itself.
    ctx.redactor.add(plan.system.root_password_hash)
    if require_wipe and not plan.target.is_image_file and not plan.target.wipe:
        problems.append(answers.problem(
            ("target", "wipe"), "no consent to erase the disk: an unattended install erases it only with "
            "wipe = true", "add wipe = true under [target] (and pin the disk with serial = \"...\")"))
    resolved: Resolved | None = None
    try:
        resolved = resolve_target(plan, include_loop=include_loop, ctx=RunContext(redactor=ctx.redactor))
    except InputError as exc:
        problems.append(_keyed(answers, exc, ("target",)))
    problems += _secret_problems(answers, ctx)
    if preflight:
        problems += _encryption_problems(answers)
    checked = Checked(answers, resolved.plan if resolved else plan, resolved.disk if resolved else None,
                      resolved.rule if resolved else None, problems)
    if preflight and resolved is not None and not problems:
        problems += _engine_preflight(answers, checked.plan, ctx)
    if problems:
        raise AnswerFileError(answers.source, problems)
    return checked


def _keyed(answers: AnswerFile, exc: NbcError, default: Loc) -> Problem:
    loc = tuple(exc.details.get("loc") or default)
    return answers.problem(loc, exc.message, exc.hint)


def _secret_problems(answers: AnswerFile, ctx: RunContext) -> list[Problem]:
    plan, out = answers.plan, []
    files: list[tuple[Loc, Path | None, str, int]] = [
        (("system", "root_password_file"), plan.system.root_password_file, "root password", 1)]
    if plan.encryption is not None:
        files.append((("encryption", "passphrase_file"), plan.encryption.passphrase_file, "passphrase",
                      MIN_PASSPHRASE))
        key_file = plan.encryption.recovery_key_file
        if key_file is not None and not key_file.parent.is_dir():
            out.append(answers.problem(("encryption", "recovery_key_file"),
                                       f"the directory {key_file.parent} does not exist",
                                       "give a path in an existing directory"))
    for loc, path, what, minimum in files:
        if path is None:
            continue
        try:
            value = path.read_text().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            out.append(answers.problem(loc, f"cannot read the {what} file {path}: {reason}",
                                       f"create it, readable by root, holding the {what} on one line"))
            continue
        ctx.redactor.add(value)
        if len(value) < minimum:
            need = "is empty" if not value else f"holds fewer than {minimum} characters"
            out.append(answers.problem(loc, f"the {what} file {path} {need}",
                                       f"write the {what} into it (at least {minimum} characters)"))
    return out


def _encryption_problems(answers: AnswerFile) -> list[Problem]:
    """What a real install would refuse on this machine (the engine's dry run only warns about it)."""
    from . import luks, tpm

    enc, out = answers.plan.encryption, []
    if enc is None:
        return out
    checks: list[tuple[Loc, Callable[[], None]]] = [(("encryption",), luks.check_can_encrypt)]
    if enc.tpm2:
        checks.append((("encryption", "tpm2"), tpm.check_can_enroll))
    for loc, check in checks:
        try:
            check()
        except InputError as exc:
            out.append(answers.problem(loc, exc.message, exc.hint))
    return out


def _engine_preflight(answers: AnswerFile, plan: InstallPlan, ctx: RunContext) -> list[Problem]:
    """The engine's own checks (tools, image reachable, kernel, initramfs, bootloader, root size) in a dry
    run, which reads and writes nothing."""
    from .install import run_install  # the engine, only when an image is to be checked

    seen: list[Event] = []
    try:
        run_install(plan, emit=seen.append, ctx=RunContext(dry_run=True, redactor=ctx.redactor))
    except NbcError as exc:
        image_reached = any(e.type == "message" and (e.message or "").startswith("Image: ") for e in seen)
        return [answers.problem(preflight_loc(exc.message, image_reached=image_reached), exc.message, exc.hint)]
    return []


def preflight_loc(message: str, *, image_reached: bool) -> Loc:
    """The key an error of the engine's preflight is about. Its errors name no key: they are told apart by
    what they say, and by whether the image was being looked at (preflight checks the target first)."""
    for words, loc in (("pinned to serial", ("target", "serial")), ("changed since it was checked", ("target",)),
                       ("cannot be installed to", ("target",)), ("choose another disk", ("target",)),
                       ("root slot", ("layout", "root_size")), ("systemd-boot", ("boot", "bootloader")),
                       ("image file", ("target", "image_file")), ("free space", ("target", "image_file")),
                       ("in cache", ("image", "staged_digest")), ("multiple matches", ("image", "staged_digest")),
                       ("the image", ("image", "ref")),
                       ("recovery key", ("encryption", "recovery_key_file")),
                       ("LUKS passphrase", ("encryption", "passphrase_file")), ("TPM", ("encryption", "tpm2")),
                       ("device-mapper", ("encryption",)), ("cryptsetup", ("encryption",)),
                       ("root password", ("system", "root_password_file"))):
        if words in message:
            return loc
    return ("image", "ref") if image_reached else ()


def keyed_engine_errors(answers: AnswerFile, emit: Emit) -> Emit:
    """Pass the engine's events on; an error of its first step (the checks before anything is written) gets
    the answer-file key and line it is about, like every other answer-file error."""
    state = {"step": 0, "image": False}

    def forward(event: Event) -> None:
        if isinstance(event, StepEvent):
            state["step"] = event.step
        elif isinstance(event, MessageEvent) and (event.message or "").startswith("Image: "):
            state["image"] = True
        elif isinstance(event, ErrorEvent) and state["step"] <= 1:
            details = dict(event.details or {})
            error = str(details.get("error") or event.message or "")
            loc = preflight_loc(error, image_reached=bool(state["image"]))
            if loc:
                problem = answers.problem(loc, error)
                details.update(error=problem.render(answers.source), key=problem.key, line=problem.line)
                event = event.model_copy(update={"details": details})
        emit(event)

    return forward

"""Reading an answer file: the :class:`InstallPlan` written in TOML (JSON accepted), with every problem pointing
at its line.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..image.reference import absolute_local_ref
from ..plan import InstallPlan, error_loc, error_text
from ..sizes import human
from .format import ANSWERS_VERSION, INLINE_SECRETS, PATH_KEYS, USER_INLINE_SECRETS, USER_PATH_KEYS
from .lines import Loc, locate_json, locate_toml, strip_indices
from .problems import AnswerFileError, Problem, format_key, line_of


@dataclass
class AnswerFile:
    """A loaded answer file: the plan, where it came from, and the line of each of its keys."""

    plan: InstallPlan
    source: str
    lines: dict[Loc, int] = field(default_factory=dict)

    def line(self, loc: Loc) -> int | None:
        return line_of(self.lines, loc)

    def problem(self, loc: Loc, message: str, hint: str | None = None) -> Problem:
        return Problem(format_key(loc), self.line(loc), message, hint)


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
                f"{section}.{key}", line_of(lines, (section, key)),
                "a secret written in the answer file is refused: anyone who can read or copy the file has it",
                f'put it in a file readable only by root (chmod 600) and use {instead} = "/path/to/file"{alt}'))
            del part[key]  # reported once, not again by the model's own checks
    for n, user in enumerate(_users(data)):
        for key, instead in USER_INLINE_SECRETS.items():
            if key in user:
                problems.append(Problem(
                    format_key(("system", "users", n, key)), line_of(lines, ("system", "users", n, key)),
                    "a secret written in the answer file is refused: anyone who can read or copy the file has it",
                    f'put it in a file readable only by root (chmod 600) and use {instead} = "/path/to/file" '
                    "(or password_hash, a crypt(3) hash)"))
                del user[key]
    return problems


def _users(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The tables of [[system.users]] (those that are tables)."""
    system = data.get("system")
    users = system.get("users") if isinstance(system, dict) else None
    return [u for u in users if isinstance(u, dict)] if isinstance(users, list) else []


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
            out.append(Problem(format_key((*loc, key)), line_of(lines, (*loc, key)),
                               f"must be true or false, not {value!r}", "write true or false, without quotes"))
        elif isinstance(value, bool) and int in _leaf_types(info.annotation):  # True would be read as 1
            out.append(Problem(format_key((*loc, key)), line_of(lines, (*loc, key)),
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
    image = data.get("image")
    if isinstance(image, dict) and isinstance(image.get("ref"), str):
        image["ref"] = absolute_local_ref(image["ref"], base_dir)  # oci:layout beside the answer file
    tables = [(data.get(section), key) for section, key in PATH_KEYS]
    tables += [(user, key) for user in _users(data) for key in USER_PATH_KEYS]
    for part, key in tables:
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
    loc: Loc = error_loc(err)
    kind, line = err["type"], line_of(lines, loc)
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
    if kind == "plan_rule":  # a rule between sections: its own sentence and what to do
        return Problem(key, line, msg.removesuffix(f": {err['ctx']['hint']}"), err["ctx"]["hint"])
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
    if not loc:
        return None
    model = _model_at(loc[:-1])
    info = model.model_fields.get(str(loc[-1])) if model is not None else None
    if info is None or not info.description:
        return None
    return " ".join(info.description.split())



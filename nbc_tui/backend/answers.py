"""Answer files: the :class:`InstallPlan` written in TOML (JSON accepted), read with errors that point at a
line, written back with comments, and checked against this machine before anything is touched.

The file is exactly the plan (``version = 1``, unknown keys refused). Two things are stricter than the
model: ``version`` must be written, and secrets are never inline (``passphrase``, ``root_password``): a
file that anyone may copy around must not carry them; it names a file holding them instead. Relative
paths in the file are taken relative to the file's own directory (so answers and their secret files can
travel together, e.g. on a labelled USB partition).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .disk_rules import Resolved, resolve_target
from .disks import Disk
from .errors import InputError, NbcError
from .events import Emit, ErrorEvent, Event, MessageEvent, StepEvent
from .plan import MIN_PASSPHRASE, InstallPlan
from .runner import RunContext
from .sizes import GiB, MiB, human
from .state import write_atomically

ANSWERS_VERSION = 1
# (section, key) of every path in the plan: relative ones are resolved against the answer file's directory.
PATH_KEYS = (("target", "image_file"), ("encryption", "passphrase_file"), ("encryption", "recovery_key_file"),
             ("system", "root_password_file"))
# Secrets the model can hold (typed in the TUI) but an answer file must not: the key that replaces each.
INLINE_SECRETS = {("encryption", "passphrase"): "passphrase_file", ("system", "root_password"): "root_password_file"}
SECTIONS = ("image", "target", "layout", "encryption", "boot", "system")

Loc = tuple[str | int, ...]


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


# ---------------------------------------------------------------------------------------------------
# Locating a key's line in the raw text (tomllib and json keep no positions)


_PUNCT = set("[]{}=,.:")
_BARE_END = set("[]{}=,.:#\"' \t\r\n")


@dataclass
class _Tok:
    kind: str  # "str", "bare", "nl", or the punctuation character itself
    value: str
    line: int
    col: int


def _tokens(text: str) -> Iterator[_Tok]:
    """A lenient tokenizer for TOML and JSON: strings (all four TOML kinds), bare words, punctuation."""
    i, line, col0, n = 0, 1, 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            yield _Tok("nl", c, line, i - col0)
            line, i, col0 = line + 1, i + 1, i + 1
        elif c in " \t\r":
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith(('"""', "'''"), i):
            quote, start, start_line = text[i:i + 3], i, line
            end = text.find(quote, i + 3)
            while quote == '"""' and end > 0 and _escaped(text, end):
                end = text.find(quote, end + 1)
            end = n if end < 0 else end + 3
            while end < n and text[end] == quote[0]:  # up to two quotes may close the content
                end += 1
            line += text.count("\n", start, end)
            yield _Tok("str", text[start + 3:end - 3], start_line, start - col0)
            i = end
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if c == '"' and text[j] == "\\" else 1
            raw = text[i + 1:j]
            yield _Tok("str", _unescape(raw) if c == '"' else raw, line, i - col0)
            i = j + 1
        elif c in _PUNCT:
            yield _Tok(c, c, line, i - col0)
            i += 1
        else:
            j = i
            while j < n and text[j] not in _BARE_END:
                j += 1
            j = max(j, i + 1)
            yield _Tok("bare", text[i:j], line, i - col0)
            i = j


def _escaped(text: str, pos: int) -> bool:
    backslashes = 0
    while pos - 1 - backslashes >= 0 and text[pos - 1 - backslashes] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def _unescape(raw: str) -> str:
    if "\\" not in raw:
        return raw
    with contextlib.suppress(ValueError):
        return json.loads('"' + re.sub(r"\\U([0-9a-fA-F]{8})", lambda m: chr(int(m.group(1), 16)), raw) + '"')
    return raw


class _Parser:
    """Walks the tokens of an already-valid document and records the line where each key path starts."""

    def __init__(self, text: str) -> None:
        self.toks = list(_tokens(text))
        self.pos = 0
        self.lines: dict[Loc, int] = {}

    def peek(self, skip_nl: bool = False) -> _Tok | None:
        while skip_nl and self.pos < len(self.toks) and self.toks[self.pos].kind == "nl":
            self.pos += 1
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def mark(self, path: Loc, line: int) -> None:
        for i in range(1, len(path) + 1):
            self.lines.setdefault(path[:i], line)

    # -- TOML ----------------------------------------------------------------------------------------
    def toml(self) -> dict[Loc, int]:
        table: Loc = ()
        arrays: dict[Loc, int] = {}  # array-of-tables path -> index of its current element
        while (tok := self.peek(skip_nl=True)) is not None:
            if tok.kind == "[":
                self.take()
                nxt = self.peek()
                is_array = nxt is not None and nxt.kind == "[" and nxt.col == tok.col + 1
                if is_array:
                    self.take()
                keys = self.key()
                while (t := self.peek()) is not None and t.kind == "]":
                    self.take()
                path: Loc = ()
                for number, k in enumerate(keys, start=1):
                    path = (*path, k)
                    # [a.b] below [[a]] belongs to a's current element; [[a]] itself starts a new one.
                    if path in arrays and not (is_array and number == len(keys)):
                        path = (*path, arrays[path])
                if is_array:
                    arrays[path] = arrays.get(path, -1) + 1
                    self.mark(path, tok.line)
                    path = (*path, arrays[path])
                self.mark(path, tok.line)
                table = path
            else:
                start = tok.line
                keys = self.key()
                self.expect("=")
                full = (*table, *keys)
                self.mark(full, start)
                self.value(full)
        return self.lines

    def key(self) -> list[str]:
        keys: list[str] = []
        while (tok := self.peek()) is not None:
            if tok.kind in ("str", "bare"):
                keys.append(self.take().value)
            elif tok.kind == ".":
                self.take()
            else:
                break
        return keys

    def expect(self, kind: str) -> None:
        tok = self.peek()
        if tok is not None and tok.kind == kind:
            self.take()

    def value(self, path: Loc, *, json_mode: bool = False) -> None:
        tok = self.peek(skip_nl=True)
        if tok is None:
            return
        if tok.kind == "{":
            self.take()
            self.mark(path, tok.line)
            while (t := self.peek(skip_nl=True)) is not None and t.kind != "}":
                if t.kind == ",":
                    self.take()
                    continue
                keys = self.key()
                if not keys:
                    self.take()  # unexpected: skip rather than loop
                    continue
                self.expect(":" if json_mode else "=")
                self.mark((*path, *keys), t.line)
                self.value((*path, *keys), json_mode=json_mode)
            self.expect("}")
        elif tok.kind == "[":
            self.take()
            index = 0
            while (t := self.peek(skip_nl=True)) is not None and t.kind != "]":
                if t.kind == ",":
                    self.take()
                    continue
                self.mark((*path, index), t.line)
                self.value((*path, index), json_mode=json_mode)
                index += 1
            self.expect("]")
        elif tok.kind == "str":
            self.take()
        else:  # a number, boolean or date: every token up to the next delimiter
            while (t := self.peek()) is not None and t.kind not in (",", "]", "}", "nl"):
                self.take()

    # -- JSON ----------------------------------------------------------------------------------------
    def json(self) -> dict[Loc, int]:
        self.toks = [t for t in self.toks if t.kind != "nl"]
        self.value((), json_mode=True)
        return self.lines


def _strip_ints(path: Loc) -> Loc:
    return tuple(p for p in path if not isinstance(p, int))


def locate_toml(text: str) -> dict[Loc, int]:
    """Line of every key path in a TOML document (tables, dotted keys, inline tables, arrays of tables,
    array elements). Never raises: a path it cannot place is simply missing."""
    parser = _Parser(text)
    with contextlib.suppress(Exception):
        parser.toml()
    return parser.lines


def locate_json(text: str) -> dict[Loc, int]:
    parser = _Parser(text)
    with contextlib.suppress(Exception):
        parser.json()
    return parser.lines


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
    msg = str(err["msg"]).removeprefix("Value error, ")
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
    hidden = {k for (s, k) in INLINE_SECRETS if (s,) == _strip_ints(loc)}
    return [name for name in model.model_fields if name not in hidden]


def _description(loc: Loc) -> str | None:
    model = _model_at(loc[:-1])
    info = model.model_fields.get(str(loc[-1])) if model is not None else None
    if info is None or not info.description:
        return None
    return " ".join(info.description.split())


# ---------------------------------------------------------------------------------------------------
# Writing: a commented TOML file that loads back to the same plan (secrets left out)


def dump_answers(plan: InstallPlan) -> str:
    out = ["# nbc-tui answer file: run it with  nbc-tui --headless --answers FILE",
           "# Check it on the target machine first:  nbc-tui answers validate FILE",
           "# Format: docs/answers.md; schema: nbc-tui answers schema", ""]
    out += [*_doc(InstallPlan, "version"), f"version = {ANSWERS_VERSION}"]
    out += [*_doc(InstallPlan, "after"), f"after = {_toml(plan.after)}", ""]
    for section in SECTIONS:
        value = getattr(plan, section)
        if value is None:
            continue
        out += _table(section, value, plan)
    return "\n".join(out).rstrip("\n") + "\n"


def save_answers(plan: InstallPlan, path: str | Path) -> Path:
    """Write the plan as an answer file, readable only by its owner (it names secret files)."""
    path = Path(path)
    write_atomically(path, dump_answers(plan).encode(), mode=0o600)
    return path


# Always written, even at their defaults: what a reader of the file needs to see to know what happens.
_ALWAYS = {("layout", "filesystem"), ("layout", "esp_size"), ("layout", "root_size"), ("layout", "var_min_size"),
           ("boot", "bootloader")}


def _table(section: str, value: BaseModel, plan: InstallPlan) -> list[str]:
    out = [f"[{section}]"]
    doc = type(value).__doc__
    if not doc or doc == BaseModel.__doc__:
        doc = _SECTION_DOCS.get(type(value).__name__)
    if doc:
        out = [*_comment(doc), *out]
    later: list[str] = []
    header = len(out)
    for name, info in type(value).model_fields.items():
        current = getattr(value, name)
        if info.exclude:
            if current is not None:  # a typed secret: say how to give it, never write it
                out += _secret_note(section, name)
            continue
        if name == "match":
            for rule in current:
                later += ["", *(_comment(info.description or "") if not later else []), "[[target.match]]"]
                for rname, _rinfo in type(rule).model_fields.items():
                    rvalue = getattr(rule, rname)
                    if rvalue is not None:
                        later += [*_doc(type(rule), rname), f"{rname} = {_toml(rvalue, rname)}"]
            continue
        if section == "target" and name == "wipe" and not plan.target.is_image_file:
            out += _doc(type(value), name)
            if not current:
                out.append("# Not given: nbc-tui --headless refuses to erase the disk until this says true.")
            out.append(f"wipe = {_toml(current)}")
            continue
        if current is None or ((section, name) not in _ALWAYS and current == info.default):
            continue
        if section == "target" and name in ("image_size", "overwrite") and not plan.target.is_image_file:
            continue
        out += [*_doc(type(value), name), f"{name} = {_toml(current, name)}"]
    if not later and len(out) == header:
        return []  # nothing but defaults: an empty table says nothing
    return [*out, *later, ""]


def _secret_note(section: str, name: str) -> list[str]:
    what = "LUKS passphrase" if name == "passphrase" else "root password"
    return [f"# The {what} was typed in and is not saved in this file. For an unattended install, put it",
            "# in a file readable only by root (chmod 600) and uncomment:",
            f'# {name}_file = "/root/{name.replace("_", "-")}"']


def _doc(model: type[BaseModel], name: str) -> list[str]:
    info = model.model_fields[name]
    return _comment(info.description) if info.description else []


def _comment(text: str, width: int = 100) -> list[str]:
    words = " ".join(text.split()).split(" ")
    lines, current = [], "#"
    for word in words:
        if len(current) + 1 + len(word) > width and current != "#":
            lines.append(current)
            current = "#"
        current += " " + word
    if current != "#":
        lines.append(current)
    return lines


def _toml(value: Any, name: str = "") -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if name.endswith("_size"):
            for unit, factor in (("T", 1 << 40), ("G", GiB), ("M", MiB)):
                if value and value % factor == 0:
                    return _toml(f"{value // factor}{unit}")
        return str(value)
    if isinstance(value, Path):
        return _toml(str(value.absolute()))
    if isinstance(value, tuple | list):
        items = [_toml(v, name) for v in value]
        if sum(len(i) for i in items) > 80:
            return "[\n" + "".join(f"    {i},\n" for i in items) + "]"
        return "[" + ", ".join(items) + "]"
    return '"' + "".join(_escape_char(c) for c in str(value)) + '"'


def _escape_char(c: str) -> str:
    if c in '"\\':
        return "\\" + c
    if c == "\n":
        return "\\n"
    if c == "\t":
        return "\\t"
    if ord(c) < 0x20 or ord(c) == 0x7F:
        return f"\\u{ord(c):04x}"
    return c


# ---------------------------------------------------------------------------------------------------
# JSON Schema of the answer file


def answers_json_schema() -> dict[str, Any]:
    """The plan's schema as an answer file sees it: ``version`` required, no inline secrets, sizes as
    numbers or strings ("2G")."""
    schema = InstallPlan.model_json_schema(mode="validation")
    for (section, key), _instead in INLINE_SECRETS.items():
        definition = schema["$defs"][section.capitalize()]
        definition["properties"].pop(key, None)
    schema["required"] = sorted({*schema.get("required", []), "version"})
    for definition in [schema, *schema["$defs"].values()]:
        for name, prop in definition.get("properties", {}).items():
            if name.endswith("_size"):
                definition["properties"][name] = _size_schema(prop)
    # Every key described (editors show it): sections whose model has no docstring get one here.
    for name, text in _SECTION_DOCS.items():
        schema["$defs"][name].setdefault("description", text)
    schema.setdefault("description", "An unattended install: the plan nbc-tui runs (docs/answers.md).")
    for prop in schema["properties"].values():
        ref = prop.get("$ref", "").rsplit("/", 1)[-1]
        if ref and "description" not in prop:
            prop["description"] = schema["$defs"][ref]["description"]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "nbc-tui answer file", **{k: v for k, v in schema.items() if k != "title"}}


_SECTION_DOCS = {
    "ImageSpec": "The image to install, and where the installed system gets its updates from.",
    "Boot": "The bootloader and extra kernel arguments.",
    "System": "The installed system's root password (from a file or as a hash) and SSH keys for root.",
}
_SIZE_PATTERN = r"^\s*\d+(\.\d+)?\s*[KMGTkmgt]?([iI]?[bB])?\s*$"


def _size_schema(prop: dict[str, Any]) -> dict[str, Any]:
    def widen(node: dict[str, Any]) -> dict[str, Any]:
        if node.get("type") == "integer":
            return {"anyOf": [node, {"type": "string", "pattern": _SIZE_PATTERN}]}
        if "anyOf" in node:
            branches = []
            for branch in node["anyOf"]:
                widened = widen(branch)
                branches += widened["anyOf"] if "anyOf" in widened and "anyOf" not in branch else [widened]
            return {**node, "anyOf": branches}
        return node

    meta = {k: v for k, v in prop.items() if k in ("default", "description", "title")}
    body = {k: v for k, v in prop.items() if k not in meta}
    widened = widen(body)
    return {**widened, **meta}


def schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2) + "\n"


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

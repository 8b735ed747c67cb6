"""Writing a plan as an answer file: commented TOML that loads back to the same plan, secrets left out
(a typed secret becomes a comment naming the ``*_file`` key that would carry it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..atomic import write_atomically
from ..errors import InputError
from ..plan import InstallPlan
from ..sizes import GiB, MiB
from .format import ANSWERS_VERSION, SECTION_DOCS, SECTIONS


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
    """Write the plan as an answer file (its folder made when missing), readable only by its owner (it names
    secret files). A path that cannot be written is bad input, in words."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"Cannot save the answers to {path}: it is a folder", hint="give a file name")
    nearest = next((p for p in path.parents if p.exists()), None)
    if nearest is not None and not nearest.is_dir():
        raise InputError(f"Cannot save the answers to {path}: {nearest} is not a folder",
                         hint="give a path in a folder")
    try:
        write_atomically(path, dump_answers(plan).encode(), mode=0o600)
    except OSError as exc:
        raise InputError(f"Cannot save the answers to {path}: {exc.strerror or exc}",
                         hint="give a path in a folder you can write to") from None
    return path


# Always written, even at their defaults: what a reader of the file needs to see to know what happens.
_ALWAYS = {("layout", "filesystem"), ("layout", "esp_size"), ("layout", "root_size"), ("layout", "var_min_size"),
           ("boot", "bootloader")}


def _table(section: str, value: BaseModel, plan: InstallPlan) -> list[str]:
    out = [f"[{section}]"]
    doc = type(value).__doc__
    if not doc or doc == BaseModel.__doc__:
        doc = SECTION_DOCS.get(type(value).__name__)
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
        if (section, name) in _ARRAYS:
            for n, item in enumerate(current):
                later += ["", *(_comment(info.description or "") if not n else []), f"[[{section}.{name}]]"]
                later += _array_table(item)
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


_ARRAYS = {("target", "match"), ("system", "users")}
"""Lists of tables: written as [[section.name]] after the section's own keys."""


def _array_table(item: BaseModel) -> list[str]:
    """One [[...]] table: the keys not at their default, a typed secret as a note."""
    out = []
    for name, info in type(item).model_fields.items():
        value = getattr(item, name)
        if info.exclude:
            if value is not None:
                out += _secret_note("users", name, whose=str(getattr(item, "name", "")))
            continue
        if value is not None and value != info.default:
            out += [*_doc(type(item), name), f"{name} = {_toml(value, name)}"]
    return out


def _secret_note(section: str, name: str, whose: str = "") -> list[str]:
    what = {"passphrase": "LUKS passphrase", "root_password": "root password"}.get(name, f"password of {whose}")
    default = f"/root/{name.replace('_', '-')}" + (f"-{whose}" if whose else "")
    return [f"# The {what} was typed in and is not saved in this file. For an unattended install, put it",
            "# in a file readable only by root (chmod 600) and uncomment:",
            f'# {name}_file = "{default}"']


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

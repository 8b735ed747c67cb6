"""Where each key of an answer file is, by line: tomllib and json keep no positions, so errors could not
point at the line to fix without this small tokenizer. It never raises: a key it cannot place is missing.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

Loc = tuple[str | int, ...]
"""A key path as pydantic reports it: ('target', 'match', 1, 'serial')."""

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


def strip_indices(path: Loc) -> Loc:
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

"""What is wrong with an answer file: one :class:`Problem` per thing, with its dotted key, its line and what would
fix it, and the error that carries them all (exit 2, nothing written)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from .lines import Loc


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


def line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of ``loc``, or of its nearest parent that is in the file (a missing key's table)."""
    for i in range(len(loc), 0, -1):
        if loc[:i] in lines:
            return lines[loc[:i]]
    return None

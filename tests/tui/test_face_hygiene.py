"""The faces run no commands and read no environment variables: no module under nbc_tui/screens or
nbc_tui/widgets, nor nbc_tui/app.py, imports subprocess (in any form), takes ``run`` from the engine's
runner, or reads ``os.environ``/``os.getenv``. Commands and the environment are the engine's
(nbc_tui.backend), which the faces call. Checked on the parsed source (ast), so a comment or a string that
names them does not count and an aliased import does."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

NBC = Path(__file__).resolve().parents[2] / "nbc_tui"
FACES = [NBC / "app.py", *sorted((NBC / "screens").rglob("*.py")), *sorted((NBC / "widgets").rglob("*.py"))]
ENVIRONMENT = {"environ", "environb", "getenv", "getenvb"}


def _is_runner(module: str) -> bool:
    return module == "runner" or module.endswith(".runner")


def offences(source: str) -> list[str]:
    """Each way ``source`` runs a command or reads the environment, as "line N: what"."""
    found: list[str] = []
    runner_names: set[str] = set()  # names bound to the runner module itself
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "subprocess":
                    found.append(f"line {node.lineno}: import {alias.name}")
                if _is_runner(alias.name):
                    runner_names.add(alias.asname or alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = {alias.name for alias in node.names}
            if module.split(".")[0] == "subprocess":
                found.append(f"line {node.lineno}: from {module} import ...")
            if _is_runner(module) and "run" in names:
                found.append(f"line {node.lineno}: run from {module}")
            if module == "os" and names & ENVIRONMENT:
                found.append(f"line {node.lineno}: from os import {', '.join(sorted(names & ENVIRONMENT))}")
            runner_names |= {alias.asname or alias.name for alias in node.names if alias.name == "runner"}
        elif isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT:
            found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in ENVIRONMENT:
            found.append(f"line {node.lineno}: {node.id}")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and node.args[0].value == "subprocess":
            found.append(f"line {node.lineno}: a dynamic import of subprocess")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "run" and ast.unparse(node.value) in runner_names:
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("path", FACES, ids=lambda p: str(p.relative_to(NBC)))
def test_the_faces_run_no_command_and_read_no_environment(path: Path) -> None:
    assert offences(path.read_text(encoding="utf-8")) == []


def test_the_faces_are_all_checked() -> None:
    names = {str(p.relative_to(NBC)) for p in FACES}
    assert {"app.py", "screens/disk.py", "screens/wizard.py", "widgets/status_line.py"} <= names


@pytest.mark.parametrize("source", [
    "import subprocess",
    "import subprocess as sp",
    "from subprocess import run",
    "from subprocess import PIPE, Popen",
    "from ..backend.runner import run",
    "from nbc_tui.backend.runner import RunContext, run",
    "from ..backend import runner\nrunner.run(['true'])",
    "import nbc_tui.backend.runner as r\nr.run(['true'])",
    "import os\nos.environ['X']",
    "import os\nos.environ.get('X')",
    "import os\nos.getenv('X')",
    "from os import getenv\ngetenv('X')",
    "from os import environ",
    "__import__('subprocess')",
    "import importlib\nimportlib.import_module('subprocess')",
])
def test_every_form_is_caught(source: str) -> None:
    assert offences(source), source


def test_what_the_faces_may_do_passes() -> None:
    allowed = ("from ..backend.runner import RunContext\n"
               "from ..backend.machine import power\n"
               "import os\nos.access('/root', os.W_OK)\n"
               "'os.environ and subprocess are named in this string only'  # and import subprocess here\n")
    assert offences(allowed) == []

"""The house's rules, checked: the engine never imports Textual (in a fresh interpreter, which catches deferred and
transitive imports), the import-linter contracts hold and would catch an upward import or a cycle, and only
the runner starts processes."""

from __future__ import annotations

import ast
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import nbc_tui.backend

REPO = Path(__file__).resolve().parents[2]


def backend_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(nbc_tui.backend.__path__, "nbc_tui.backend."))


def test_backend_modules_do_not_load_textual() -> None:
    mods = backend_modules()
    assert "nbc_tui.backend.operations.install" in mods and "nbc_tui.backend.engine.steps" in mods
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('textual', 'rich'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "", f"the engine pulled in: {out}"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    linter = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(linter), "--config", str(cwd / "pyproject.toml"), "--no-cache"], capture_output=True,
                          text=True, cwd=cwd, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd)})


def test_import_linter_contracts_are_kept() -> None:
    r = lint_imports(REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 3 kept, 0 broken." in r.stdout


def test_the_contracts_catch_an_upward_import_and_a_cycle(tmp_path: Path) -> None:
    """On a copy of the package: storage importing an operation breaks the layers, the image interface importing
    the factory that imports it closes a cycle."""
    shutil.copytree(REPO / "nbc_tui", tmp_path / "nbc_tui", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    with (tmp_path / "nbc_tui/backend/storage/luks.py").open("a") as f:
        f.write("\nfrom ..operations.install import STEPS  # noqa\n")
    with (tmp_path / "nbc_tui/backend/image/source.py").open("a") as f:
        f.write("\nfrom .opener import open_image  # noqa\n")
    out = lint_imports(tmp_path).stdout
    assert "Contracts: 1 kept, 2 broken." in out, out
    assert "nbc_tui.backend.storage.luks -> nbc_tui.backend.operations.install" in out
    assert "No cycles are allowed in nbc_tui.backend.image." in out and "- .source -> .opener" in out


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, in any form (``import x.y``, ``from x import y``), at any depth."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_only_the_runner_imports_subprocess() -> None:
    root = Path(nbc_tui.backend.__file__).parent.parent
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if any(m.split(".")[0] == "subprocess" for m in imported_modules(p)) and p.name != "runner.py"]
    assert offenders == []


def test_the_subprocess_check_sees_every_form(tmp_path: Path) -> None:
    for text in ("import subprocess\n", "from subprocess import run\n", "def f():\n    import subprocess as s\n",
                 "import os, subprocess\n"):
        (tmp_path / "m.py").write_text(text)
        assert "subprocess" in imported_modules(tmp_path / "m.py"), text

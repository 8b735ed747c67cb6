"""The engine never imports Textual: checked in a fresh interpreter (catches deferred and transitive imports)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import nbc_tui.backend


def backend_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(nbc_tui.backend.__path__, "nbc_tui.backend."))


def test_backend_modules_do_not_load_textual() -> None:
    mods = backend_modules()
    assert "nbc_tui.backend.install" in mods
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('textual', 'rich'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "", f"the engine pulled in: {out}"


def test_import_linter_contract() -> None:
    r = subprocess.run([sys.executable, "-m", "importlinter.cli", "--config", "pyproject.toml"],
                       capture_output=True, text=True, cwd=__file__.rsplit("/tests/", 1)[0])
    if r.returncode != 0 and "No module named" in r.stderr:
        r = subprocess.run(["lint-imports"], capture_output=True, text=True,
                           cwd=__file__.rsplit("/tests/", 1)[0])
    assert r.returncode == 0, r.stdout + r.stderr


def test_only_the_runner_imports_subprocess() -> None:
    import pathlib

    root = pathlib.Path(nbc_tui.backend.__file__).parent.parent
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if "import subprocess" in p.read_text() and p.name != "runner.py"]
    assert offenders == []

#!/usr/bin/env bash
# The README's test command: installs what is needed (idempotent), then runs every check and every test
# tier (unit, integration as root, and the QEMU boot tier). `tools/test.sh -m "not vm"` skips the VM tier;
# `tools/test.sh -m vm` runs it alone. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
echo "== ruff"
.venv/bin/ruff check nbc_tui tests bench
echo "== import contract (the engine never imports the TUI)"
.venv/bin/lint-imports
echo "== pytest"
exec .venv/bin/python -m pytest "$@"

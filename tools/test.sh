#!/usr/bin/env bash
# The README's test command: installs what is needed (idempotent), then runs every check and every test
# tier (unit, integration as root, and the QEMU boot tier). Without arguments the VM tier runs last, two
# scenarios at a time (a QEMU under TCG keeps about one of the two cores busy; tests/vm/host_lock.py).
# With arguments they go to one pytest: `tools/test.sh -m "not vm"` skips the VM tier,
# `tools/test.sh -m vm -n 2 --dist loadgroup` runs it alone as CI does.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
echo "== ruff"
.venv/bin/ruff check nbc_tui tests bench
echo "== import contract (the engine never imports the TUI)"
.venv/bin/lint-imports
if (($#)); then
  echo "== pytest $*"
  exec .venv/bin/python -m pytest "$@"
fi
status=0
echo "== pytest: unit, integration and TUI tiers"
.venv/bin/python -m pytest -m "not vm" || status=$?
echo "== pytest: the VM tier, two scenarios at a time"
.venv/bin/python -m pytest -m vm -n 2 --dist loadgroup || status=$?
exit "$status"

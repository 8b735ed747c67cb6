#!/usr/bin/env bash
# The README's first command: installs what is needed, builds (or reuses) the Debian 12 demo image, and
# installs it with nbc-tui into a disk-image file (never a real disk), then says how to boot it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
ref=$(tools/build-test-image)
mkdir -p demo
echo "Installing $ref into demo/debian.img"
.venv/bin/nbc-tui install --image "$ref" --via-loopback demo/debian.img --image-size 10 \
  --esp-size 512M --root-size 3G --var-min-size 1G --filesystem btrfs --karg console=ttyS0 --yes "$@"

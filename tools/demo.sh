#!/usr/bin/env bash
# The README's first command: installs what is needed, builds (or reuses) the Debian 12 demo image, and
# starts the full-screen installer with the demo's answers filled in: the image, and a disk-image file
# (demo/debian.img, never a real disk) as the target, 8 GiB with a small layout (on the disk screen, Layout
# shows and changes it). Walk through the screens (Enter), confirm, and it
# installs. Without a terminal (a script, CI) the same answers run unattended (--headless).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
ref=$(tools/build-test-image)
demo=${NBC_TUI_DEMO_DIR:-demo}  # where the demo's answers, password and disk-image file go (tests move it)
mkdir -p "$demo"
# The installed demo system's root password: made once, kept only in this file (0600), read by the install
# from the file (never from the command line), and printed below so that you can log in.
if [ ! -s "$demo/root-password" ]; then
    (umask 077; openssl rand -base64 9 | tr -d '/+=\n' > "$demo/root-password")
fi
sed "s|@IMAGE_REF@|$ref|" tools/demo-answers.toml > "$demo/answers.toml"
if [ -t 0 ] && [ -t 1 ]; then
    .venv/bin/nbc-tui --answers "$demo/answers.toml" "$@"
else
    echo "No terminal: installing $ref into $demo/debian.img unattended"
    .venv/bin/nbc-tui --headless --answers "$demo/answers.toml" "$@"
fi
if [ -s "$demo/debian.img" ]; then
    echo "Boot it: qemu-system-x86_64 -accel tcg -m 2048 -bios /usr/share/ovmf/OVMF.fd \\"
    echo "         -drive file=$demo/debian.img,format=raw,if=virtio -serial mon:stdio -nographic"
    echo "Log in as root with the password in $demo/root-password: $(cat "$demo/root-password")"
    echo "(QEMU: Ctrl-A then X quits.)"
fi

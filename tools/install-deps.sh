#!/usr/bin/env bash
# Installs every system package nbc-tui and its tests need (Debian 12, as root), then a venv in .venv.
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  # the engine's tools
  gdisk fdisk util-linux dosfstools mtools e2fsprogs btrfs-progs rsync kmod cpio zstd
  efibootmgr grub-efi-amd64-bin grub-common openssl coreutils
  # encryption: LUKS2 (cryptsetup) and TPM2 enrolment (systemd-cryptenroll is part of systemd)
  cryptsetup-bin systemd
  # image signatures: gpgv checks GPG signatures, gpg reads armored keys (and signs in the tests)
  gpg gpgv
  # the console keyboard (welcome screen, F3): loadkeys and dumpkeys, and the keymaps they load
  kbd console-data
  # tests: VM tier and image building
  qemu-system-x86 ovmf debootstrap skopeo umoci
  # tests: a software TPM2 for enrolment and the VM's TPM
  swtpm swtpm-tools libtss2-tcti-swtpm0
  # systemd-cryptenroll loads the TPM2 stack at run time (dlopen), so nothing pulls these in by itself
  libtss2-esys-3.0.2-0 libtss2-rc0 libtss2-mu0
  # tests: a real registry, a real Podman API socket, htpasswd for basic auth
  docker-registry podman uidmap apache2-utils
  # tests: Authenticode signing of EFI images (the Secure Boot checks read real signatures)
  sbsigntool
  # benchmarks: GNU time for peak memory
  time
  # live ISO (iso/build.sh): the squashfs and the ISO image
  squashfs-tools xorriso
  # python
  python3 python3-venv python3-pip
  # `man nbc-tui` and nbc-tui's bash completion (tools/install-shell-files.sh installs both)
  man-db bash-completion
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "Installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
  echo "Installing nbc-tui and its Python dependencies into .venv"
  # The build backend's notes (an editable install's "be careful with folders...") are shown only on failure.
  if ! out=$(.venv/bin/pip install -q --upgrade pip 2>&1 && .venv/bin/pip install -q -e '.[test]' 2>&1); then
    echo "$out" >&2
    exit 1
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# Shell completions and the man page, generated from the CLI's parser: under /usr/local, or under ~/.local
# when not run as root (idempotent).
if [ "$(id -u)" = 0 ]; then
  bash tools/install-shell-files.sh
else
  bash tools/install-shell-files.sh "$HOME/.local"
fi

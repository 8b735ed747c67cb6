#!/usr/bin/env bash
# Builds the nbc-tui live ISO: Debian 12 (bookworm), UEFI, the installer on tty1 and the serial console.
#
#   sudo iso/build.sh [--stage REF]... [OUT.iso]
#
# The ISO is four squashfs layers that live-boot stacks (see iso/README.md):
#   00-base      debootstrap + iso/packages + kernel and live-boot initramfs   cached by packages + recipe
#   10-python    a venv with nbc-tui's Python dependencies (host venv's pins)  cached by the wheel set
#   20-nbc-tui   nbc-tui from this checkout + iso/rootfs (units, autologin)     rebuilt when they change
#   30-staged    images staged for offline installs (--stage REF, optional)     cached by the references
# Everything is cached under $NBC_ISO_CACHE (default /var/cache/nbc-tui-iso), never in the repo. A build
# whose inputs are all unchanged prints the cached ISO at once. The last line on stdout is the ISO's path;
# progress goes to stderr. Options:
#   --stage REF     stage this image (any nbc-tui image reference) in /var/cache/nbc/staged-install of the
#                   live system (repeatable; or NBC_ISO_STAGE="REF1 REF2")
#   --cache DIR     cache directory (or NBC_ISO_CACHE)
#   OUT.iso         also copy the ISO there
set -euo pipefail
umask 022

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ISO_SRC=$REPO/iso
CACHE=${NBC_ISO_CACHE:-/var/cache/nbc-tui-iso}
MIRROR=${NBC_ISO_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
VENV=$REPO/.venv
VOLID=NBC_TUI_LIVE
# live-boot; the last console= is /dev/console (systemd's messages, the headless marker's fallback).
KERNEL_ARGS="boot=live noeject quiet console=tty1 console=ttyS0,115200"
KERNEL_ARGS_VERBOSE="boot=live noeject console=tty1 console=ttyS0,115200"
# Kernel module trees a disk installer never needs (sound, cameras, radio, staging drivers).
PRUNED_MODULE_DIRS="sound drivers/media drivers/staging drivers/iio drivers/isdn drivers/comedi
  drivers/infiniband net/bluetooth drivers/bluetooth drivers/gpu/drm/amd drivers/gpu/drm/nouveau
  drivers/gpu/drm/radeon drivers/net/wireless net/wireless net/mac80211"
CHROOT_ENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root DEBIAN_FRONTEND=noninteractive
            INITRD=No)

out=""
stage_refs=()
read -r -a stage_refs <<< "${NBC_ISO_STAGE:-}"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
log() { printf '[iso %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'iso/build.sh: error: %s\n' "$*" >&2; exit 1; }

while (($#)); do
  case $1 in
    --stage) (($# >= 2)) || die "--stage needs an image reference"; stage_refs+=("$2"); shift 2 ;;
    --stage=*) stage_refs+=("${1#*=}"); shift ;;
    --cache) (($# >= 2)) || die "--cache needs a directory"; CACHE=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$out" ] || die "only one output path, got '$out' and '$1'"; out=$1; shift ;;
  esac
done

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, overlay mounts): sudo $0"
for tool in debootstrap mksquashfs xorriso mkfs.vfat mmd mcopy flock sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is missing: run tools/install-deps.sh"
done
[ -x "$VENV/bin/pip" ] || die "$VENV is missing: run tools/install-deps.sh (the wheels come from its pins)"
if [ -n "$out" ]; then
  out=$(realpath -m -- "$out")
  [ -d "$(dirname "$out")" ] || die "the directory of $out does not exist"
fi

mkdir -p "$CACHE"
CACHE=$(realpath "$CACHE")
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
  log "another build holds $CACHE/.lock: waiting"
  flock 9
fi

# --- cleanup: every mount is undone and the work dir removed, on success, failure and Ctrl-C -----------
MOUNTS=()
WORK=""
cleanup() {
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount -l "${MOUNTS[i]}" 2>/dev/null || true
  done
  MOUNTS=()
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    remove_tree "$WORK"
  fi
}
trap cleanup EXIT
trap 'log "interrupted: cleaning up"; exit 130' INT TERM

mounts_under() {  # mount points at or below $1, deepest first (mountinfo writes a space as \040)
  awk -v p="$1" '{ m = $5; gsub(/\\040/, " ", m); gsub(/\\011/, "\t", m) }
                 m == p || index(m, p "/") == 1 { print m }' /proc/self/mountinfo | sort -r
}
remove_tree() {
  local m
  while IFS= read -r m; do umount -l "$m" 2>/dev/null || true; done < <(mounts_under "$1")
  [ -z "$(mounts_under "$1")" ] || die "cannot remove $1: something is still mounted below it"
  rm -rf --one-file-system -- "$1"  # never into a mount the check above missed
}
do_mount() {  # do_mount TARGET MOUNT-ARGS...: mount and remember it for cleanup
  local target=$1; shift
  mkdir -p "$target"
  mount "$@" "$target"
  MOUNTS+=("$target")
}
undo_mounts_under() {  # unmount everything at or below $1 (in the remembered list too)
  local m keep=() i
  for m in $(mounts_under "$1"); do umount "$m" || umount -l "$m"; done
  for i in "${MOUNTS[@]}"; do [[ $i == "$1" || $i == "$1"/* ]] || keep+=("$i"); done
  MOUNTS=("${keep[@]}")
}
chroot_mounts() {  # /proc, /sys, /dev for apt, update-initramfs and pip inside $1
  do_mount "$1/proc" -t proc proc
  do_mount "$1/sys" -t sysfs sysfs
  do_mount "$1/dev" --bind /dev
  do_mount "$1/dev/pts" --bind /dev/pts
}
in_chroot() { local root=$1; shift; chroot "$root" "${CHROOT_ENV[@]}" "$@"; }
overlay() {  # overlay MERGED UPPER LOWER[:LOWER...]: a writable view whose changes land in UPPER
  mkdir -p "$2" "$2.work"
  do_mount "$1" -t overlay overlay -o "lowerdir=$3,upperdir=$2,workdir=$2.work"
}
squash() {  # squash DIR FILE [mksquashfs options]
  local dir=$1 file=$2; shift 2
  # The default 128 KiB blocks: a live system reads small files at random, and a bigger block means
  # decompressing more for each (1 MiB blocks made the boot under QEMU markedly slower).
  mksquashfs "$dir" "$file.tmp" -noappend -quiet -no-progress -xattrs "$@" >&2
  mv "$file.tmp" "$file"
}
key_of() { sha256sum | cut -c1-16; }
finished() { [ -e "$1/done" ] && touch "$1/done"; }  # an entry is complete once "done" exists
publish() {  # publish WORKDIR ENTRY: rename a finished build into place
  date -u +%FT%TZ > "$1/done"
  rm -rf -- "$2"
  mv "$1" "$2"
}
prune() {  # prune PREFIX KEEP MINUTES [MAX]: remove other entries unused for MINUTES, and those beyond the
  local old n=0 _  # MAX most recently used that are unused for 10 minutes (an ISO is 250-400 MB, and every
  # change to nbc-tui makes one; a test that is booting one uses it within minutes)
  while read -r _ old; do
    [ "$old" != "$2" ] || continue
    n=$((n + 1))
    if [ -z "$(find "$old/done" -mmin "-$3")" ] ||
        { [ "$n" -gt "${4:-1000}" ] && [ -z "$(find "$old/done" -mmin -10)" ]; }; then
      log "removing unused cache entry $old"
      remove_tree "$old"
    fi
  done < <(find "$CACHE" -mindepth 2 -maxdepth 2 -path "$CACHE/$1-*/done" -printf '%T@ %h\n' | sort -rn)
}
packages() { sed 's/#.*//' "$ISO_SRC/packages" | xargs; }

for stale in "$CACHE"/.build-*; do  # builds that were killed (we hold the lock: none is running)
  [ -e "$stale" ] || continue
  log "removing an interrupted build: $stale"
  remove_tree "$stale"
done
WORK=$(mktemp -d "$CACHE/.build-XXXXXX")
mkdir -p "$CACHE/apt-archives/partial"
started=$SECONDS

# --- 00-base: debootstrap, packages, kernel, live-boot initramfs ----------------------------------------
build_base() {  # build_base DIR: DIR/rootfs, DIR/00-base.squashfs, DIR/vmlinuz, DIR/initrd.img
  local dir=$1 root=$1/rootfs kver rel
  mkdir -p "$dir"
  log "debootstrap $SUITE (minbase) into $root"
  debootstrap --variant=minbase --arch=amd64 --cache-dir="$CACHE/apt-archives" "$SUITE" "$root" "$MIRROR" \
    > "$dir/debootstrap.log" 2>&1 || { tail -30 "$dir/debootstrap.log" >&2; die "debootstrap failed"; }
  # Build time only: no fsync, no service starts; docs and translations are left out of the image.
  printf '%s\n' force-unsafe-io 'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright' \
    'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/locale/*' 'path-exclude=/usr/share/info/*' \
    > "$root/etc/dpkg/dpkg.cfg.d/zz-nbc-iso-build"
  printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s-security %s-security main\n' \
    "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" > "$root/etc/apt/sources.list"
  # The initramfs: every storage driver (any machine), zstd; live-boot adds squashfs, overlay, iso9660.
  mkdir -p "$root/etc/initramfs-tools/conf.d"
  printf 'MODULES=most\nCOMPRESS=zstd\n' > "$root/etc/initramfs-tools/conf.d/nbc-tui-live"
  chroot_mounts "$root"
  do_mount "$root/var/cache/apt/archives" --bind "$CACHE/apt-archives"
  log "installing $(packages | wc -w) packages (log: $dir/apt.log)"
  # shellcheck disable=SC2046  # the package names are words
  { in_chroot "$root" apt-get update &&
    in_chroot "$root" apt-get install -y --no-install-recommends $(packages); } > "$dir/apt.log" 2>&1 \
    || { tail -30 "$dir/apt.log" >&2; die "apt-get in the chroot failed"; }
  kver=$(ls "$root/lib/modules")
  [ "$(wc -w <<< "$kver")" = 1 ] || die "expected one kernel in the live system, found: $kver"
  for rel in $PRUNED_MODULE_DIRS; do rm -rf "$root/lib/modules/$kver/kernel/$rel"; done
  in_chroot "$root" depmod -a "$kver"
  log "update-initramfs for $kver (live-boot)"
  in_chroot "$root" update-initramfs -c -k "$kver" > "$dir/initramfs.log" 2>&1 \
    || { tail -30 "$dir/initramfs.log" >&2; die "update-initramfs failed"; }
  # A live installer: root logs in without a password (autologin on tty1 and serial; tty2-6 ask for the
  # name only). Networking by systemd-networkd (DHCP, iso/rootfs/etc/systemd/network).
  in_chroot "$root" passwd -d root >/dev/null
  in_chroot "$root" systemctl enable systemd-networkd.service systemd-resolved.service >> "$dir/apt.log" 2>&1
  in_chroot "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
    e2scrub_reap.service >/dev/null 2>&1 || true
  undo_mounts_under "$root"
  cp "$root/boot/vmlinuz-$kver" "$dir/vmlinuz"
  cp "$root/boot/initrd.img-$kver" "$dir/initrd.img"
  rm -f "$root/etc/dpkg/dpkg.cfg.d/zz-nbc-iso-build" "$root/usr/sbin/policy-rc.d"
  # shellcheck disable=SC2115  # $root is "$1/rootfs": never empty
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/* "$root"/tmp/* \
    "$root"/var/tmp/* "$root"/boot/*
  mkdir -p "$root/var/lib/apt/lists/partial"
  : > "$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id"
  echo "$kver" > "$dir/kver"
  log "squashing the base ($(du -sh "$root" | cut -f1))"
  squash "$root" "$dir/00-base.squashfs" -comp zstd -Xcompression-level 15
}

# The recipe of a layer is part of its key: the function's own text (declare -f) and its inputs.
base_key=$( { declare -f build_base chroot_mounts in_chroot squash; echo "$SUITE $MIRROR $PRUNED_MODULE_DIRS";
              declare -p CHROOT_ENV; packages; } | key_of)
BASE=$CACHE/base-$base_key
if finished "$BASE"; then
  log "base layer cached: $BASE"
else
  build_base "$WORK/base"
  publish "$WORK/base" "$BASE"
  log "base layer built: $BASE"
fi

# --- the wheels: nbc-tui's dependencies at the host venv's versions, and nbc-tui from this checkout -----
app_src=$WORK/src
mkdir -p "$app_src"
cp -r "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/nbc_tui" "$app_src/"
find "$app_src" \( -name __pycache__ -o -name '*.pyc' -o -name '*.egg-info' \) -prune -exec rm -rf {} +
"$VENV/bin/pip" freeze --exclude-editable --all 2>/dev/null | grep -v '^nbc-tui' > "$WORK/constraints.txt"
pyproject_field() {  # pyproject_field SECTION KEY: a list from pyproject.toml, one item a line
  "$VENV/bin/python" -c 'import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))[sys.argv[2]][sys.argv[3]]))' "$REPO/pyproject.toml" "$@"
}
# build/: the build backend's wheels (setuptools), so that building nbc-tui's own wheel needs no network.
wheels_key=$( { echo "layout 2"; cat "$WORK/constraints.txt"; pyproject_field project dependencies
                pyproject_field build-system requires; } | key_of)
WHEELS=$CACHE/wheels-$wheels_key
if ! finished "$WHEELS"; then
  log "downloading nbc-tui's dependencies as wheels (pinned to $VENV's versions)"
  mkdir -p "$WORK/wheels"
  { "$VENV/bin/pip" wheel -q --wheel-dir "$WORK/wheels" --constraint "$WORK/constraints.txt" "$app_src" &&
    mapfile -t build_requires < <(pyproject_field build-system requires) &&
    "$VENV/bin/pip" download -q --only-binary :all: --dest "$WORK/wheels/build" "${build_requires[@]}" wheel
  } > "$WORK/pip-wheel.log" 2>&1 || { tail -30 "$WORK/pip-wheel.log" >&2
      die "pip wheel failed (PyPI reachable? versions in $VENV installable?)"; }
  rm -f "$WORK"/wheels/nbc_tui-*.whl
  (cd "$WORK/wheels" && printf '/wheels/%s\n' ./*.whl | sed 's|/\./|/|') > "$WORK/wheels/requirements.txt"
  publish "$WORK/wheels" "$WHEELS"
fi
log "building the nbc-tui wheel from $REPO"
"$VENV/bin/pip" wheel -q --no-deps --no-index --find-links "$WHEELS/build" --wheel-dir "$WORK/app-wheel" \
  "$app_src" > "$WORK/pip-wheel.log" 2>&1 \
  || { tail -30 "$WORK/pip-wheel.log" >&2; die "building the nbc-tui wheel failed"; }

# --- 10-python: the venv with the dependencies ----------------------------------------------------------
build_python() {  # build_python DIR
  local dir=$1 merged=$1/merged
  overlay "$merged" "$dir/upper" "$BASE/rootfs"
  chroot_mounts "$merged"
  do_mount "$merged/wheels" --bind "$WHEELS" -o ro
  log "python venv /opt/nbc-tui with $(wc -l < "$WHEELS/requirements.txt") wheels"
  { in_chroot "$merged" python3 -m venv /opt/nbc-tui &&
    in_chroot "$merged" /opt/nbc-tui/bin/pip install -q --no-index --no-cache-dir --find-links /wheels \
      -r /wheels/requirements.txt; } > "$dir/pip.log" 2>&1 || { tail -30 "$dir/pip.log" >&2; die "pip in the chroot failed"; }
  ln -sf /opt/nbc-tui/bin/nbc-tui "$merged/usr/local/bin/nbc-tui"
  undo_mounts_under "$merged"
  rmdir "$dir/upper/wheels" 2>/dev/null || true
  rm -rf "$dir/upper.work" "$dir/merged"
  squash "$dir/upper" "$dir/10-python.squashfs" -comp zstd -Xcompression-level 15
}
python_key=$( { echo "$base_key $wheels_key"; declare -f build_python overlay; } | key_of)
PYLAYER=$CACHE/python-$python_key
if finished "$PYLAYER"; then
  log "python layer cached: $PYLAYER"
else
  build_python "$WORK/python"
  publish "$WORK/python" "$PYLAYER"
fi

# --- 30-staged: images for offline installs -------------------------------------------------------------
STAGED=""
if ((${#stage_refs[@]})); then
  # A reference's content is its key where it can be read here (an OCI layout's index.json), else its
  # name: a registry tag is downloaded again only when the list of references changes.
  staged_key=$(for ref in "${stage_refs[@]}"; do
      echo "$ref"
      path=${ref#oci:}; path=${path%:*}
      if [[ $ref == oci:* && -f $path/index.json ]]; then sha256sum < "$path/index.json"; fi
    done | key_of)
  STAGED=$CACHE/staged-$staged_key
  if finished "$STAGED"; then
    log "staged images cached: $STAGED"
  else
    mkdir -p "$WORK/staged/root/var/cache/nbc" "$WORK/staged/locks"
    for ref in "${stage_refs[@]}"; do
      log "staging $ref"
      NBC_TUI_CACHE_ROOT=$WORK/staged/root/var/cache/nbc NBC_TUI_LOCK_DIR=$WORK/staged/locks \
        "$VENV/bin/nbc-tui" download --image "$ref" --for-install >&2 || die "staging $ref failed"
    done
    # The blobs are compressed already: store them as they are.
    squash "$WORK/staged/root" "$WORK/staged/30-staged.squashfs" -noD -noF
    rm -rf "$WORK/staged/root" "$WORK/staged/locks"
    publish "$WORK/staged" "$STAGED"
  fi
fi

# --- 20-nbc-tui and the ISO, cached by everything that goes into them -----------------------------------
build_app() {  # build_app DIR: nbc-tui into the venv, iso/rootfs on top, the headless unit enabled
  local dir=$1 merged=$1/merged
  overlay "$merged" "$dir/upper" "$PYLAYER/upper:$BASE/rootfs"
  chroot_mounts "$merged"
  do_mount "$merged/wheels" --bind "$WORK/app-wheel" -o ro
  { in_chroot "$merged" sh -c '/opt/nbc-tui/bin/pip install -q --no-index --no-deps --no-cache-dir /wheels/*.whl' &&
    in_chroot "$merged" /usr/local/bin/nbc-tui --version; } > "$dir/pip.log" 2>&1 \
    || { tail -30 "$dir/pip.log" >&2; die "installing nbc-tui in the chroot failed"; }
  # Shell completions and the man page, generated by the host venv's nbc-tui (this checkout, the wheel's
  # code) beside /usr/local/bin/nbc-tui. The live system has bash-completion but no man (iso/packages).
  bash "$REPO/tools/install-shell-files.sh" "$merged/usr/local" \
    || die "generating the shell completions and the man page failed"
  cp -R "$ISO_SRC/rootfs/." "$merged/"
  mkdir -p "$merged/usr/share/doc/nbc-tui-live" "$merged/etc/systemd/system/multi-user.target.wants"
  cp "$ISO_SRC/README.md" "$merged/usr/share/doc/nbc-tui-live/README.md"
  ln -sf /usr/lib/systemd/system/nbc-tui-headless.service \
    "$merged/etc/systemd/system/multi-user.target.wants/nbc-tui-headless.service"
  printf 'NBC_TUI_LIVE_BUILD=%s\nNBC_TUI_LIVE_COMMIT=%s\n' "$(date -u +%FT%TZ)" \
    "$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)" > "$merged/etc/nbc-tui-live"
  undo_mounts_under "$merged"
  rmdir "$dir/upper/wheels" 2>/dev/null || true
  rm -rf "$dir/upper.work" "$dir/merged"
  squash "$dir/upper" "$dir/20-nbc-tui.squashfs" -comp zstd -Xcompression-level 3
}
make_efi_image() {  # make_efi_image FILE: a FAT image with Debian's signed boot chain (no mount needed)
  # shim (signed by Microsoft's UEFI CA) starts grubx64.efi from its own directory: Debian's signed GRUB for
  # removable media, whose prefix is /boot/grub, so early.cfg sits there (a disk or stick reads it from this
  # image; a CD reads the ISO tree's /boot/grub directly). The same chain boots with Secure Boot off.
  local efi=$1 lib=$BASE/rootfs/usr/lib kib=512 f
  local -A files=([EFI/BOOT/BOOTX64.EFI]=$lib/shim/shimx64.efi.signed [EFI/BOOT/mmx64.efi]=$lib/shim/mmx64.efi.signed
                  [EFI/BOOT/grubx64.efi]=$lib/grub/x86_64-efi-signed/gcdx64.efi.signed
                  [boot/grub/grub.cfg]=$ISO_SRC/grub/early.cfg)
  for f in "${files[@]}"; do
    [ -f "$f" ] || die "$f is missing from the base layer (iso/packages: shim-signed, grub-efi-amd64-signed)"
    kib=$(( kib + $(stat -c %s "$f") / 1024 + 4 ))
  done
  rm -f "$efi"
  mkfs.vfat -C -n NBCTUIEFI "$efi" "$kib" >/dev/null
  mmd -i "$efi" ::/EFI ::/EFI/BOOT ::/boot ::/boot/grub
  for f in "${!files[@]}"; do mcopy -i "$efi" "${files[$f]}" "::/$f"; done
}
build_iso() {  # build_iso DIR
  local dir=$1 tree=$1/tree layer
  build_app "$dir"
  mkdir -p "$tree/live" "$tree/boot/grub"
  for layer in "$BASE/00-base.squashfs" "$PYLAYER/10-python.squashfs" "$dir/20-nbc-tui.squashfs" \
      ${STAGED:+"$STAGED/30-staged.squashfs"}; do
    ln "$layer" "$tree/live/" 2>/dev/null || cp "$layer" "$tree/live/"
  done
  cp "$BASE/vmlinuz" "$BASE/initrd.img" "$tree/live/"
  cp "$BASE/vmlinuz" "$BASE/initrd.img" "$dir/"
  echo "nbc-tui live $iso_key" > "$tree/live/nbc-tui-live.marker"
  sed -e "s|@KERNEL_ARGS@|$KERNEL_ARGS|" -e "s|@KERNEL_ARGS_VERBOSE@|$KERNEL_ARGS_VERBOSE|" \
    "$ISO_SRC/grub/grub.cfg" > "$tree/boot/grub/grub.cfg"
  make_efi_image "$dir/efi.img"
  log "writing the ISO"
  xorriso -as mkisofs -quiet -iso-level 3 -full-iso9660-filenames -joliet -joliet-long -rational-rock \
    -volid "$VOLID" -appid "nbc-tui live" -publisher "nbc-tui" \
    -append_partition 2 C12A7328-F81F-11D2-BA4B-00A0C93EC93B "$dir/efi.img" -appended_part_as_gpt \
    -e --interval:appended_partition_2:all:: -no-emul-boot \
    -output "$dir/nbc-tui-live.iso" "$tree" >&2 2>"$dir/xorriso.log" \
    || { tail -20 "$dir/xorriso.log" >&2; die "xorriso failed"; }
  rm -rf "$tree" "$dir/upper" "$dir/efi.img"
  echo "$KERNEL_ARGS" > "$dir/cmdline"
  printf '{"iso": "%s", "kernel": "%s", "initrd": "%s", "cmdline": "%s", "seconds": %s}\n' \
    "$ISO/nbc-tui-live.iso" "$ISO/vmlinuz" "$ISO/initrd.img" "$KERNEL_ARGS" "$((SECONDS - started))" \
    > "$dir/info.json"
}
app_files() {  # everything of this checkout that goes into 20-nbc-tui and the ISO tree
  (cd "$app_src" && find . -type f | LC_ALL=C sort | xargs sha256sum)
  (cd "$REPO" && sha256sum tools/install-shell-files.sh)
  (cd "$ISO_SRC" && find rootfs grub README.md -type f | LC_ALL=C sort | xargs sha256sum)
  find "$ISO_SRC/rootfs" -printf '%P %m\n' | LC_ALL=C sort
}
iso_key=$( { echo "$python_key ${STAGED##*/} $KERNEL_ARGS $KERNEL_ARGS_VERBOSE $VOLID";
             declare -f build_app make_efi_image build_iso; app_files; } | key_of)
ISO=$CACHE/iso-$iso_key
if finished "$ISO"; then
  log "ISO cached (nothing changed): $ISO"
else
  build_iso "$WORK/iso"
  publish "$WORK/iso" "$ISO"
  log "ISO built in $((SECONDS - started)) s: $ISO/nbc-tui-live.iso ($(du -h "$ISO/nbc-tui-live.iso" | cut -f1))"
fi
ln -sfn "iso-$iso_key" "$CACHE/latest"

# Old entries: ISOs unused for an hour, layers unused for a day (another checkout may still use them).
prune iso "$ISO" 60 6
prune base "$BASE" 1440
prune python "$PYLAYER" 1440
prune wheels "$WHEELS" 1440
prune staged "${STAGED:-none}" 1440

iso_path=$ISO/nbc-tui-live.iso
if [ -n "$out" ]; then
  cp --reflink=auto "$iso_path" "$out.tmp" && mv "$out.tmp" "$out"
  iso_path=$out
fi
echo "$iso_path"

#!/bin/bash
# dracut module "etc-overlay" (nbc-compatible): a pre-pivot hook that mounts /etc as an overlayfs whose
# lower layer is /.etc.lower on the read-only root and whose upper layer lives on the shared /var.
# Kernel parameters: rd.etc.overlay=1 and rd.etc.overlay.var=<UUID=...|PARTUUID=...|/dev/...>.

check() {
    # Always wanted: a generic (--no-hostonly) initramfs must carry it on every machine.
    return 0
}

# An encrypted /var is unlocked in the initramfs by dracut's crypt module. dracut rejects this whole
# module when a dependency cannot be installed, so crypt is only asked for when its tools are present.
etc_overlay_have_crypt_tools() {
    local root="${dracutsysrootdir-}" dir
    for dir in "${systemdutildir-}" /usr/lib/systemd /lib/systemd; do
        [ -n "$dir" ] && [ -x "$root$dir/systemd-cryptsetup" ] && return 0
    done
    for dir in /usr/sbin /sbin /usr/bin /bin; do
        [ -x "$root$dir/cryptsetup" ] && return 0
    done
    return 1
}

depends() {
    if etc_overlay_have_crypt_tools; then
        echo "crypt rootfs-block"
    else
        echo "rootfs-block"
    fi
    return 0
}

installkernel() {
    instmods overlay
}

install() {
    inst_hook pre-pivot 50 "$moddir/etc-overlay-mount.sh"
    inst_multiple mount umount mkdir grep
    # Helpful, not required: the hook falls back when they are missing.
    inst_multiple -o blkid udevadm modprobe mv rm rmdir sleep
}

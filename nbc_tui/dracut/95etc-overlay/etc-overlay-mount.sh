#!/bin/sh
# pre-pivot hook of the etc-overlay dracut module (nbc-compatible). dracut sources it after the root is
# mounted at $NEWROOT. It mounts the shared /var and then /etc as an overlayfs:
#   lower  $NEWROOT/.etc.lower                    (the image's /etc, copied at install or update)
#   upper  $NEWROOT/var/lib/nbc/etc-overlay/upper (only the changes made on this machine)
#   work   $NEWROOT/var/lib/nbc/etc-overlay/work
# It must never fail the boot: on any problem it warns and leaves /etc as the root's read-only /etc.

command -v getarg >/dev/null 2>&1 || . /lib/dracut-lib.sh

# Mount options of the last mount at path $1 (empty when nothing is mounted there).
eo_mount_options() {
    local _dev _where _type _opts _rest _last=""
    while read -r _dev _where _type _opts _rest; do
        [ "$_where" = "$1" ] && _last="$_opts"
    done < /proc/mounts
    echo "$_last"
}

eo_is_mounted() {
    [ -n "$(eo_mount_options "$1")" ]
}

eo_is_read_only() {
    case ",$(eo_mount_options "$1")," in
        *,ro,*) return 0 ;;
    esac
    return 1
}

# True when directory $1 is missing or has no entries at all (dot-files count as entries).
eo_is_empty() {
    local _entry
    for _entry in "$1"/* "$1"/.[!.]* "$1"/..?*; do
        { [ -e "$_entry" ] || [ -L "$_entry" ]; } && return 1
    done
    return 0
}

eo_cmdline() {
    if command -v getcmdline >/dev/null 2>&1; then
        getcmdline
    else
        cat /proc/cmdline 2>/dev/null
    fi
}

# The device named by rd.etc.overlay.var (UUID=, PARTUUID=, LABEL=, or a path such as /dev/mapper/var).
eo_var_device() {
    local _spec="$1" _dev="" _found
    case "$_spec" in
        "")
            # No parameter: the discoverable-partitions type for /var, as nbc looks for it.
            for _dev in /dev/disk/by-parttypeuuid/4d21b016-b534-45c2-a9fb-5c16e091fd2d*; do
                [ -b "$_dev" ] && { echo "$_dev"; return 0; }
            done
            return 1 ;;
        UUID=*) _dev="/dev/disk/by-uuid/${_spec#UUID=}" ;;
        PARTUUID=*) _dev="/dev/disk/by-partuuid/${_spec#PARTUUID=}" ;;
        LABEL=*) _dev="/dev/disk/by-label/${_spec#LABEL=}" ;;
        *) _dev="$_spec" ;;
    esac
    if [ ! -b "$_dev" ] && command -v blkid >/dev/null 2>&1; then
        # No udev link (yet): ask blkid to probe every device. Not its cache, and not -l: both can answer
        # from what a device held before (a re-used loop device, a disk just reformatted) and miss it.
        case "$_spec" in
            UUID=*|PARTUUID=*|LABEL=*)
                _dev=""
                for _found in $(blkid -c /dev/null -o device -t "$_spec" 2>/dev/null); do
                    _dev=$_found && break  # the first match (no head(1) in a minimal initramfs)
                done ;;
        esac
    fi
    [ -n "$_dev" ] && [ -b "$_dev" ] && { echo "$_dev"; return 0; }
    return 1
}

# The filesystem type of /var: blkid, else the systemd.mount-extra entry for /var (what:where:type:opts).
eo_var_fstype() {
    local _type="" _arg _rest
    if command -v blkid >/dev/null 2>&1; then
        _type=$(blkid -c /dev/null -o value -s TYPE "$1" 2>/dev/null) || _type=""
    fi
    if [ -z "$_type" ]; then
        for _arg in $(eo_cmdline); do
            case "$_arg" in
                systemd.mount-extra=*:/var:*)
                    _rest="${_arg#*:/var:}"
                    _type="${_rest%%:*}" ;;
            esac
        done
    fi
    echo "$_type"
}

eo_mount_var() {
    local _var="$1" _spec _dev _type
    eo_is_mounted "$_var" && return 0
    _spec=$(getarg rd.etc.overlay.var=)
    if ! _dev=$(eo_var_device "$_spec"); then
        if command -v udevadm >/dev/null 2>&1; then
            udevadm settle --timeout=30 >/dev/null 2>&1
        else
            sleep 5
        fi
        _dev=$(eo_var_device "$_spec") || {
            warn "etc-overlay: /var device '${_spec:-<discoverable var partition>}' not found"
            return 1
        }
    fi
    mkdir -p "$_var" 2>/dev/null
    _type=$(eo_var_fstype "$_dev")
    if [ -n "$_type" ] && mount -t "$_type" "$_dev" "$_var"; then
        return 0
    fi
    # Unknown or wrong type: the filesystems nbc formats /var with.
    mount -t ext4 "$_dev" "$_var" 2>/dev/null && return 0
    mount -t btrfs "$_dev" "$_var" 2>/dev/null && return 0
    warn "etc-overlay: could not mount $_dev on $_var"
    return 1
}

eo_main() {
    local _root="${NEWROOT:-/sysroot}"
    local _base="$_root/var/lib/nbc/etc-overlay"
    local _upper="$_base/upper" _work="$_base/work"
    local _lower="$_root/.etc.lower" _etc="$_root/etc"
    local _remounted="" _moved=""

    if ! getargbool 0 rd.etc.overlay; then
        info "etc-overlay: rd.etc.overlay is not set, /etc stays as it is"
        return 0
    fi
    if ! eo_mount_var "$_root/var"; then
        warn "etc-overlay: /var is not mounted, /etc stays read-only"
        return 0
    fi
    if ! mkdir -p "$_upper" "$_work"; then
        warn "etc-overlay: cannot create $_upper and $_work, /etc stays read-only"
        return 0
    fi
    modprobe overlay >/dev/null 2>&1
    if [ ! -d "$_etc" ]; then
        warn "etc-overlay: $_etc is not a directory, no overlay"
        return 0
    fi

    # The lower layer is normally filled at install/update time and used as it is. Only when it is
    # missing or empty is the root's own /etc moved there (never copied into upper: upper holds only
    # what this machine changed).
    if eo_is_empty "$_lower"; then
        if eo_is_read_only "$_root"; then
            mount -o remount,rw "$_root" || {
                warn "etc-overlay: cannot remount $_root read-write to create $_lower"
                return 0
            }
            _remounted=1
        fi
        rm -rf "$_lower"
        if mv "$_etc" "$_lower"; then
            _moved=1
        else
            warn "etc-overlay: cannot move $_etc to $_lower, no overlay"
            [ -n "$_remounted" ] && mount -o remount,ro "$_root"
            return 0
        fi
    fi

    mkdir -p "$_etc"
    if mount -t overlay overlay -o "lowerdir=$_lower,upperdir=$_upper,workdir=$_work" "$_etc"; then
        # Hide the lower layer so that nobody edits it behind the overlay's back.
        mount -t tmpfs -o size=0,mode=000 tmpfs "$_lower" >/dev/null 2>&1
        info "etc-overlay: /etc is an overlay (upper $_upper)"
    else
        warn "etc-overlay: overlay mount failed, /etc stays read-only"
        if [ -n "$_moved" ]; then
            rmdir "$_etc" 2>/dev/null
            mv "$_lower" "$_etc"
        fi
    fi
    [ -n "$_remounted" ] && mount -o remount,ro "$_root"
    return 0
}

eo_main

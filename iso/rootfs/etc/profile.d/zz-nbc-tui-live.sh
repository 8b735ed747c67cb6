# The live ISO: a root login on tty1 or a serial console starts the installer; when it exits, the shell
# prompt stays. Not in an unattended boot (nbc.answers= on the kernel command line: the
# nbc-tui-headless service runs the install), not in nested shells, not on other terminals.
if [ "$(id -u)" = 0 ] && [ -z "${NBC_TUI_LIVE_STARTED:-}" ]; then
    case "$(tty 2>/dev/null)" in
        /dev/tty1 | /dev/ttyS[0-9]* | /dev/ttyAMA[0-9]* | /dev/hvc[0-9]*)
            export NBC_TUI_LIVE_STARTED=1
            if grep -qE '(^| )nbc\.answers=' /proc/cmdline; then
                echo "Unattended install (nbc.answers= on the kernel command line): its output is above;"
                echo "the full log: journalctl -u nbc-tui-headless"
            else
                nbc-tui
                nbc_tui_live_rc=$?
                echo
                echo "nbc-tui exited (code $nbc_tui_live_rc). Type 'nbc-tui' to start the installer again,"
                echo "'nbc-tui --help' for its commands, 'poweroff' or 'reboot' to leave."
                unset nbc_tui_live_rc
            fi
            ;;
    esac
fi

#!/bin/sh
# /init of the hvdesk tiny test guest (busybox sh as PID 1).
# Template: tests/guest/build.py replaces the @...@ placeholders.

export PATH=/bin
/bin/busybox --install -s /bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=0755 tmpfs /run

say() { echo "$*" > /dev/ttyS0; }

for m in @MODULES@; do
    insmod /lib/modules/$m.ko || say "hvdesk: insmod $m failed"
done

# --- installer (hvdesk.install=1: the ISO of tests/guest/installer.py) -------
# The disk image rides in a second initramfs archive, so no CD driver is
# needed: copy it to /dev/vda, say so, and power off.
case " $(cat /proc/cmdline) " in
    *" hvdesk.install=1 "*)
        i=0
        while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        if dd if=/install/disk.img of=/dev/vda bs=1M conv=fsync 2>/dev/null; then
            sync
            say "@INSTALLER_MARKER@"
        else
            say "hvdesk: install to /dev/vda failed"
        fi
        poweroff -f ;;
esac

# --- commands (virtio-serial channel and hvdesk.* boot parameters) ----------

ALLOC_DIR=/run/hvdesk-alloc
BURN_PIDS=/run/hvdesk-burn.pids
mkdir -p $ALLOC_DIR
# Memory held by "alloc" lives in files here; tmpfs pages stay resident.
mount -t tmpfs -o size=90% tmpfs $ALLOC_DIR

is_num() { case $1 in ''|*[!0-9]*) return 1 ;; esac; }

# Reply on ttyS0, and on the channel when running as the channel reader.
reply() {
    say "$1"
    if [ -n "$port" ]; then echo "$1" >&3; fi
}

power_off() {
    say "@POWEROFF_MARKER@"
    sync
    poweroff -f
}

do_alloc() {
    is_num "$1" || return 1
    dd if=/dev/zero of="$(mktemp $ALLOC_DIR/blob.XXXXXX)" bs=1M count="$1" 2>/dev/null
}

do_burn() {
    is_num "$1" || return 1
    if [ "$1" -gt 0 ]; then
        # busybox timeout execs the loop in its own pid, so $! is the burner.
        timeout "$1" sh -c 'while :; do :; done' 3>&- &
    else
        sh -c 'while :; do :; done' 3>&- &
    fi
    echo $! >> $BURN_PIDS
}

do_stop() {
    if [ -f $BURN_PIDS ]; then kill $(cat $BURN_PIDS) 2>/dev/null; fi
    rm -f $BURN_PIDS
}

do_write() {
    is_num "$1" && [ -b /dev/vda ] || return 1
    dd if=/dev/zero of=/dev/vda bs=1M count="$1" oflag=direct conv=fsync 2>/dev/null
}

# $1 = a whole command line; answers with one ACK (or ERR) line.
run_command() {
    set -f
    set -- $1
    set +f
    cmd="$*"
    case $1 in
        alloc) do_alloc "$2" ;;
        free) rm -f $ALLOC_DIR/* ;;
        burn) do_burn "$2" ;;
        stop) do_stop ;;
        write) do_write "$2" ;;
        echo) true ;;
        poweroff) reply "@ACK_PREFIX@ $cmd"; power_off ;;
        *) false ;;
    esac
    if [ $? -eq 0 ]; then reply "@ACK_PREFIX@ $cmd"; else reply "@ERR_PREFIX@ $cmd"; fi
}

# Prints /dev/vportNpM of the named port.  Names arrive from QEMU a moment
# after the port appears, so poll for a while, but only if there is a
# virtio-serial device at all.
find_port() {
    i=0
    while [ $i -lt 100 ]; do
        for f in /sys/class/virtio-ports/*/name; do
            if [ "$(cat "$f" 2>/dev/null)" = "@CHANNEL_NAME@" ]; then
                d=${f%/name}
                echo "/dev/${d##*/}"
                return 0
            fi
        done
        ls /sys/bus/virtio/drivers/virtio_console 2>/dev/null | grep -q '^virtio' || return 1
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

channel() {
    port=$(find_port) || return 0
    # One read-write fd: a virtio port can be opened only once at a time.
    exec 3<>"$port"
    while :; do
        line=
        if read -r line <&3 || [ -n "$line" ]; then
            if [ -n "$line" ]; then run_command "$line"; fi
        else
            # Reads return EOF at once while no host client is connected.
            sleep 0.2
        fi
    done
}

# --- services -----------------------------------------------------------------

# ACPI power button -> /etc/acpi/PWRF/00000080 (prints the marker, powers off).
# acpid writes its pid file only after opening the input devices: wait for it
# so a power button press right after the ready marker is not lost.
# hvdesk.noacpi=1 leaves acpid out: a guest that ignores the power button.
if ! grep -q 'hvdesk.noacpi=1' /proc/cmdline; then
    acpid -l /run/acpid.log -p /run/acpid.pid
    i=0
    while [ ! -f /run/acpid.pid ] && [ $i -lt 200 ]; do sleep 0.01; i=$((i + 1)); done
fi

# A shell on the VGA text console, for tests that type through VNC.
# It says @SHELL_MARKER@ on ttyS0 once it holds tty1, so typing can start.
(while :; do
    setsid -c sh -c 'echo @SHELL_MARKER@ >/dev/ttyS0; exec sh' </dev/tty1 >/dev/tty1 2>&1
    sleep 1
done) &

channel &

say "@READY_MARKER@"

for arg in $(cat /proc/cmdline); do
    case $arg in
        hvdesk.alloc=*) run_command "alloc ${arg#*=}" ;;
        hvdesk.burn=*) run_command "burn ${arg#*=}" ;;
        hvdesk.installed=1) say "@INSTALLED_MARKER@" ;;
    esac
done

# PID 1 must never exit; sleeping in a loop also reaps orphaned children.
while :; do sleep 60; done

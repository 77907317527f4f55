#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0-only
# shellcheck shell=dash disable=SC2013
#
# /init of the TCG test guest (qemu/guest/build-guest.sh packs it with a
# static busybox and the virtio modules into the initramfs).
#
# What the harness (qemu/run-tests) relies on:
#
# * Progress through QMP, without the serial line: a background loop
#   increments a counter and stores it, as a 32-bit little-endian word,
#   at the guest-physical address given by rs.counter= on the kernel
#   command line, with busybox devmem (about every rs.tick= microseconds).
#   The kernel command line also carries memmap=4K$ADDR, which takes that
#   page out of System RAM, and iomem=relaxed, so /dev/mem may map it even
#   though the kernel is built with STRICT_DEVMEM and IO_STRICT_DEVMEM.  The
#   harness reads it with QMP human-monitor-command "xp /1wx ADDR": while
#   the VM is stopped it must not change, after a start it must grow.
#   Every 100 ticks the loop also prints "RS-TICK N" on the console.
# * The console is the first serial port (ttyS0).  Once set up, the guest
#   prints "RS-GUEST-READY ..." and then reads one command per line:
#     ping ARG   prints "RS-PONG ARG"
#     panic      writes 1 (PVPANIC_PANICKED) to the pvpanic port 0x505
#                through /dev/port, then prints "RS-PANIC-WRITTEN rc=N"
#     write      writes 4 KiB of zeros to /dev/vda with fsync, then prints
#                "RS-WRITE-DONE rc=N" (N is dd's exit status)
#     counter    prints "RS-COUNTER N"
#     run CMD    runs CMD with sh -c (diagnostics), then "RS-RUN-DONE rc=N"
#   and "RS-UNKNOWN CMD" for anything else.

/bin/busybox mkdir -p /bin /sbin /proc /sys /dev /tmp
/bin/busybox --install -s /bin
export PATH=/bin:/sbin

# The initramfs has no /dev/console node (it is packed without root), so
# the kernel started us with no stdio: mount devtmpfs first.
mount -t devtmpfs devtmpfs /dev
exec 0</dev/ttyS0 1>/dev/ttyS0 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

for m in $(cat /modules/order); do
	insmod "/modules/$m.ko" || echo "RS-INSMOD-FAILED $m"
done

counter=""
tick=10000
for w in $(cat /proc/cmdline); do
	case "$w" in
	rs.counter=*) counter=${w#rs.counter=} ;;
	rs.tick=*) tick=${w#rs.tick=} ;;
	esac
done

# Commands from the harness must not be echoed back into the log.
stty -echo 2>/dev/null

progress() {
	n=0
	while :; do
		n=$((n + 1))
		[ -n "$counter" ] && devmem "$counter" 32 "$n"
		[ $((n % 100)) -eq 0 ] && echo "RS-TICK $n"
		echo "$n" >/tmp/counter
		usleep "$tick"
	done
}

if [ -n "$counter" ] && ! devmem "$counter" 32 0; then
	echo "RS-COUNTER-FAILED $counter"
fi
progress &

echo "RS-GUEST-READY cpus=$(nproc) counter=${counter:-none} kernel=$(uname -r)"

while read -r cmd arg; do
	case "$cmd" in
	ping) echo "RS-PONG $arg" ;;
	panic)
		printf '\001' | dd of=/dev/port bs=1 seek=1285 count=1 conv=notrunc 2>/dev/null
		echo "RS-PANIC-WRITTEN rc=$?"
		;;
	write)
		dd if=/dev/zero of=/dev/vda bs=4096 count=1 conv=fsync 2>/dev/null
		echo "RS-WRITE-DONE rc=$?"
		;;
	counter) echo "RS-COUNTER $(cat /tmp/counter 2>/dev/null)" ;;
	run)
		sh -c "$arg"
		echo "RS-RUN-DONE rc=$?"
		;;
	"") ;;
	*) echo "RS-UNKNOWN $cmd" ;;
	esac
done

# PID 1 must never exit (the kernel would panic).
echo "RS-STDIN-EOF"
while :; do sleep 3600; done

#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0-only
# shellcheck shell=dash disable=SC2013
#
# /init of the nested KVM host (qemu/guest/build-guest.sh packs it with a
# static busybox and the kvm-amd, 9p and virtio modules into
# nest-initrd.gz; qemu/run-tests --nested-kvm boots it).
#
# Where the machine has no usable /dev/kvm, KVM can still run one level
# down: Debian's QEMU boots Debian's kernel under TCG with an AMD CPU whose
# SVM (and nested paging) TCG emulates, kvm-amd loads there, and the guest
# has a /dev/kvm.  The guest mounts the machine's root through virtio-9p,
# enters it with chroot, and runs the script that rs.nest= on the kernel
# command line names (a path on the machine), so the QEMU binaries, Python
# and the checkout are the machine's own.  The script's exit status comes
# back on the console as "RS-NEST-DONE rc=N"; anything else it has to say
# it writes to files on the machine.
#
# What is emulated is the CPU, not the code under test: KVM_RUN, SIG_IPI,
# immediate_exit and the kernel's signal delivery are the real ones, but
# every VM exit goes through TCG, so timings there are not those of real
# hardware (docs/qemu.md, "KVM without /dev/kvm").

/bin/busybox mkdir -p /bin /sbin /proc /sys /dev /host
/bin/busybox --install -s /bin
export PATH=/bin:/sbin

# No /dev/console node in the initramfs: devtmpfs first, then stdio.
mount -t devtmpfs devtmpfs /dev
exec 0</dev/ttyS0 1>/dev/ttyS0 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

done_rc() {
	echo "RS-NEST-DONE rc=$1"
	sync
	poweroff -f
}

for m in $(cat /modules/order); do
	insmod "/modules/$m.ko" || echo "RS-NEST-INSMOD-FAILED $m"
done
if [ ! -c /dev/kvm ]; then
	echo "RS-NEST-NO-KVM: kvm-amd gave no /dev/kvm (is svm in the -cpu?)"
	done_rc 125
fi

script=""
for w in $(cat /proc/cmdline); do
	case "$w" in
	rs.nest=*) script=${w#rs.nest=} ;;
	esac
done
[ -n "$script" ] || { echo "RS-NEST-NO-SCRIPT"; done_rc 125; }

# cache=loose: the tree is read far more than written, and nothing on the
# machine changes the files the guest reads while it runs.  The script
# mounts a tmpfs for its unix sockets (9p has none).
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose \
	host /host; then
	echo "RS-NEST-NO-9P"
	done_rc 125
fi
for d in dev proc sys; do
	mount --bind "/$d" "/host/$d"
done
echo "RS-NEST-READY"
chroot /host /bin/sh "$script"
done_rc $?

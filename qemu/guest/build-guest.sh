#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Build the two test guests of qemu/run-tests, cached, and print the
# directory that holds them on the last line of stdout:
#
#   vmlinuz, initrd.gz   the TCG guest: Debian's own kernel (the package
#                        linux-image-amd64 depends on today, fetched with
#                        apt-get download and unpacked, not installed) and
#                        an initramfs of busybox-static, the virtio-pci and
#                        virtio-blk modules, and guest/init.sh as /init.
#   loop.bin             the KVM guest (it runs under TCG too): a 64 KiB
#                        -bios image whose reset vector jumps to a real-mode
#                        loop that increments the dword at 0x500 forever.
#   nest-initrd.gz       the nested KVM host of run-tests --nested-kvm (the
#                        same kernel under TCG with emulated SVM): busybox,
#                        kvm-amd, virtio-9p, and guest/nest-init.sh as /init.
#   guest.json           paths, the kernel command line, the progress
#                        addresses, the markers.
#
# The cache key covers the kernel and busybox package versions and this
# directory's files.  Environment: RUNSTATE_QEMU_CACHE (default
# /var/cache/runstate-qemu); the guests go to $RUNSTATE_QEMU_CACHE/guest/.
set -eu -o pipefail
export LC_COLLATE=C

here=$(cd "$(dirname "$0")" && pwd)
cache=${RUNSTATE_QEMU_CACHE:-/var/cache/runstate-qemu}/guest
prog=build-guest.sh
die() { echo "$prog: error: $*" >&2; exit 1; }
say() { echo "$prog: $*" >&2; }

case "${1:-}" in
"") ;;
-h | --help)
	sed -n '3,23p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
*) die "unknown argument '$1' (--help)" ;;
esac

# The guest-physical address of the TCG guest's progress counter (see
# init.sh), and the RAM it needs to lie below.
counter_addr=0x8000000
tcg_mem_mb=256
loop_counter_addr=0x500

# Packages: the harness's own list (qemu/deps.sh, set "test").
# shellcheck source=../deps.sh disable=SC1091
RS_QEMU_DEPS_LIB=1 . "$here/../deps.sh"
rs_qemu_install test || die "could not install the packages qemu/deps.sh lists"

# The real kernel package behind the linux-image-amd64 metapackage.
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
	awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2 }' | awk 'NR == 1')
[ -n "$kpkg" ] || die "apt-cache depends linux-image-amd64 names no linux-image-N package (apt-get update?)"
kver=$(apt-cache show --no-all-versions "$kpkg" 2>/dev/null | awk '$1 == "Version:" { print $2 }' | awk 'NR == 1')
[ -n "$kver" ] || die "apt-cache show $kpkg gives no version"
bbver=$(dpkg-query -W -f='${Version}' busybox-static)

key=$({
	echo "recipe=1 kernel=$kpkg=$kver busybox=$bbver counter=$counter_addr"
	for f in "$here"/*; do
		[ -f "$f" ] && printf '%s %s\n' "${f##*/}" "$(sha256sum <"$f" | cut -d' ' -f1)"
	done
} | sha256sum | cut -c1-16)
out=$cache/$key

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock -w 600 9 || die "another build-guest.sh holds $cache/.lock"

if [ -f "$out/guest.json" ]; then
	say "cached: $out"
	echo "$out"
	exit 0
fi

say "building the guests ($kpkg $kver, busybox-static $bbver)"
rm -rf "$out.tmp"
mkdir -p "$out.tmp" "$cache/debs"

# The kernel package, downloaded once per version.
# apt-get download writes an epoch's ":" as "%3a".
deb=$cache/debs/${kpkg}_${kver/:/%3a}_amd64.deb
if [ ! -f "$deb" ]; then
	chmod 0755 "$cache/debs"
	(cd "$cache/debs" && apt-get download -q "$kpkg=$kver") >"$cache/debs/download.log" 2>&1 ||
		{ cat "$cache/debs/download.log" >&2; die "apt-get download $kpkg=$kver failed"; }
	[ -f "$deb" ] || die "apt-get download $kpkg=$kver did not write $deb"
fi
say "unpacking $(basename "$deb")"
x=$out.tmp/x
mkdir -p "$x"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$x" --wildcards './boot/vmlinuz-*' \
	'./lib/modules/*/kernel/drivers/virtio/*' './lib/modules/*/kernel/drivers/block/virtio_blk.ko' \
	'./lib/modules/*/kernel/arch/x86/kvm/*' './lib/modules/*/kernel/virt/lib/*' \
	'./lib/modules/*/kernel/drivers/crypto/ccp/*' './lib/modules/*/kernel/fs/9p/*' \
	'./lib/modules/*/kernel/net/9p/*' './lib/modules/*/kernel/fs/netfs/*' \
	'./lib/modules/*/kernel/fs/fscache/*'
cp "$x"/boot/vmlinuz-* "$out.tmp/vmlinuz"
kmods=$(echo "$x"/lib/modules/*/kernel)

# The initramfs: busybox, /init, and the modules for virtio-blk-pci, in
# dependency order (read from each module's .modinfo "depends=").
root=$out.tmp/root
mkdir -p "$root/bin" "$root/modules" "$root/dev" "$root/proc" "$root/sys" "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
magic=$(od -An -c -N 4 /bin/busybox | tr -d ' \n')
[ "$magic" = '177ELF' ] || die "/bin/busybox is not an ELF binary"
cp "$here/init.sh" "$root/init"
chmod 0755 "$root/init" "$root/bin/busybox"

declare -A seen=()
order=()
modpath() { find "$kmods" -name "$1.ko" | awk 'NR == 1'; }
# add_mod ROOT MODULE: MODULE and what it depends on, dependencies first.
add_mod() {
	local r=$1 m=$2 f deps d
	[ -n "${seen[$m]:-}" ] && return 0
	seen[$m]=1
	f=$(modpath "$m")
	[ -n "$f" ] || die "module $m not found in $kpkg"
	deps=$(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | tr ',' ' ')
	for d in $deps; do add_mod "$r" "$d"; done
	cp "$f" "$r/modules/$m.ko"
	order+=("$m")
}
add_mod "$root" virtio_pci
add_mod "$root" virtio_blk
printf '%s\n' "${order[@]}" >"$root/modules/order"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -9 >"$out.tmp/initrd.gz"
mods=${order[*]}

# The nested KVM host's initramfs (nest-init.sh): kvm-amd for a /dev/kvm
# under TCG's emulated SVM, virtio-9p for the machine's root.
nest=$out.tmp/nest
mkdir -p "$nest/bin" "$nest/modules"
cp /bin/busybox "$nest/bin/busybox"
cp "$here/nest-init.sh" "$nest/init"
chmod 0755 "$nest/init" "$nest/bin/busybox"
seen=()
order=()
for m in virtio_pci kvm-amd 9pnet_virtio 9p; do add_mod "$nest" "$m"; done
printf '%s\n' "${order[@]}" >"$nest/modules/order"
(cd "$nest" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -9 >"$out.tmp/nest-initrd.gz"
nest_mods=${order[*]}

# The real-mode loop, as a 64 KiB -bios image (QEMU wants a multiple of
# 64 KiB).  At reset CS:IP = f000:fff0 with CS base 0xffff0000, so offset
# 0xfff0 of the image runs first; it jumps back to offset 0xff00:
#   ff00: fa              cli
#   ff01: 31 c0           xor ax, ax
#   ff03: 8e d8           mov ds, ax
#   ff05: 66 ff 06 00 05  inc dword [0x0500]
#   ff0a: eb f9           jmp ff05
#   fff0: e9 0d ff        jmp ff00
# Guest progress is the dword at guest-physical 0x500 (QMP: xp /1wx 0x500).
python3 - "$out.tmp/loop.bin" <<'EOF'
import sys
img = bytearray(b"\xf4" * 65536)           # hlt everywhere else
code = bytes.fromhex("fa 31c0 8ed8 66ff060005 ebf9")
img[0xff00:0xff00 + len(code)] = code
img[0xfff0:0xfff3] = bytes.fromhex("e90dff")
open(sys.argv[1], "wb").write(img)
EOF

cmdline="console=ttyS0 quiet panic=-1 nokaslr iomem=relaxed memmap=4K\$$counter_addr rs.counter=$counter_addr rs.tick=10000"
python3 - "$out.tmp/guest.json" "$out" "$kpkg=$kver" "$bbver" "$cmdline" "$counter_addr" \
	"$tcg_mem_mb" "$loop_counter_addr" "$mods" "$nest_mods" <<'EOF'
import json, sys
path, out, kernel, bb, cmdline, ctr, mem, loopctr, mods, nest_mods = sys.argv[1:]
json.dump({
    "dir": out,
    "kernel_package": kernel,
    "busybox_static": bb,
    "linux": {
        "kernel": out + "/vmlinuz",
        "initrd": out + "/initrd.gz",
        "append": cmdline,
        "mem_mb": int(mem),
        "counter_addr": int(ctr, 16),
        "ready_marker": "RS-GUEST-READY",
        "modules": mods.split(),
    },
    "loop": {
        "bios": out + "/loop.bin",
        "counter_addr": int(loopctr, 16),
        "mem_mb": 16,
    },
    "nest": {
        "kernel": out + "/vmlinuz",
        "initrd": out + "/nest-initrd.gz",
        "append": "console=ttyS0 quiet panic=-1",
        "modules": nest_mods.split(),
        "done_marker": "RS-NEST-DONE",
    },
}, open(path, "w"), indent=2)
EOF
rm -rf "$x" "$root" "$nest"
mv "$out.tmp" "$out"
say "built $out"
# Keep the three newest guests (the names are hex keys).
# shellcheck disable=SC2012
for d in $(ls -1dt "$cache"/[0-9a-f]*[0-9a-f] 2>/dev/null | tail -n +4); do
	rm -rf "$d"
done
echo "$out"

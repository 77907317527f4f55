#!/bin/sh
# Install what building and testing runstate needs, on Debian 12, if missing.
#
# Every package that a build or test step uses is named here, even when
# another package on the list pulls it in today: apt-get runs with
# --no-install-recommends, so whatever a package only Recommends is not
# installed, and a minimal Debian 12 root (debootstrap --variant=minbase,
# what tests/fresh-debian.sh builds) has nothing beyond the essential set:
# no compiler, no C library headers, no python3, no pkg-config.
set -eu

# The build: meson (a python3 program) and ninja; the C compiler and the C
# library headers and start files (gcc only Recommends libc6-dev); the
# kernel headers for <linux/futex.h> (lib/os.c) and <linux/kvm.h>
# (stress/kvm); pkg-config and liburcu-dev for liburcu-bp (lib/listener.c).
pkgs="meson ninja-build python3 gcc libc6-dev linux-libc-dev pkg-config liburcu-dev"
# The tests: g++ (the header-cxx17 test, the benchmark shim), binutils
# (objdump in tests/abi/check-symbols.sh), python3 (tests/run-all reads
# meson's test log; tests/planted/plant.py), patch (plant.py applies the
# planted bugs to a copy of lib/), abigail-tools (abidiff, tests/abi/abi.sh),
# spin (the Promela model; it runs the C compiler above on its output).
# gcc's sanitizer runtimes (libasan8, libubsan1, libtsan2) are hard
# dependencies of gcc-12, so they come with gcc.
pkgs="$pkgs g++ binutils patch abigail-tools spin"
# runstate-bench: Concurrency Kit, Google Benchmark and liburcu-qsbr (in
# liburcu-dev, above).
pkgs="$pkgs libck-dev libbenchmark-dev"
# The libFuzzer tier: clang, and clang's runtime libraries (libFuzzer and
# clang's ASan and UBSan), which clang only Recommends.  libclang-rt-dev
# comes from the same source as clang (llvm-defaults) and depends on the
# runtime of that clang: libclang-rt-14-dev on Debian 12.
pkgs="$pkgs clang libclang-rt-dev"
# The arm64 code-generation check (tests/check-arm64.sh): the cross
# compiler, the cross binutils (objdump), and the arm64 C library headers
# and start files, which gcc-aarch64-linux-gnu only Recommends.
pkgs="$pkgs gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu libc6-dev-arm64-cross"

# missing_pkgs: the packages of $pkgs that are not installed.
missing_pkgs() {
	m=""
	for p in $pkgs; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || m="$m $p"
	done
	echo "$m"
}

missing=$(missing_pkgs)
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || {
		echo "deps.sh: not root and no sudo: install these as root:$missing" >&2
		exit 1
	}
	SUDO=sudo
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# apt-get writes its reasons (unmet dependencies, unknown packages) to
# stdout: keep it, and show it when apt-get fails.
if ! $SUDO apt-get update -qq >"$log" 2>&1; then
	cat "$log" >&2
	echo "deps.sh: apt-get update failed" >&2
	exit 1
fi
# shellcheck disable=SC2086
# env, not a plain assignment: sudo would drop DEBIAN_FRONTEND.
if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		$missing >"$log" 2>&1; then
	cat "$log" >&2
	echo "deps.sh: apt-get install failed:$missing" >&2
	exit 1
fi
# Check the result rather than trust apt-get's exit status.
still=$(missing_pkgs)
if [ -n "$still" ]; then
	echo "deps.sh: still not installed:$still" >&2
	exit 1
fi

#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# The Debian 12 packages that qemu/build.sh, qemu/guest/build-guest.sh,
# qemu/run-tests and qemu/run-qtests.sh need.
#
# Two ways to use it:
#
#   sh qemu/deps.sh [build|test|all]     install what is missing (default: all)
#   RS_QEMU_DEPS_LIB=1 . qemu/deps.sh    define the functions only, e.g. for
#   rs_qemu_pkgs all                     tests/deps.sh: print the list
#
# Sourced, it only defines functions (see the check at the end); it
# installs nothing.  Like tests/deps.sh, it names every package a step
# uses even when another package on the list pulls it in today, because
# apt-get runs with --no-install-recommends.

# rs_qemu_pkgs build|test|all: print the package names, one line.
rs_qemu_pkgs() {
	# Fetching the source: apt-get source runs dpkg-source (dpkg-dev),
	# which needs xz-utils for the Debian tarballs and patch (quilt 3.0
	# format).  build.sh applies qemu/patches/*.patch with patch(1) and
	# syncs the patched tree into its build tree with rsync.
	_b="dpkg-dev xz-utils patch rsync"
	# Configuring and building QEMU 7.2 (configure flags in build.sh).
	_b="$_b build-essential ninja-build pkg-config meson python3 python3-venv"
	_b="$_b libglib2.0-dev libpixman-1-dev libslirp-dev libfdt-dev zlib1g-dev"
	_b="$_b flex bison"
	# Running the suite: the stock reference binary of the same version
	# (qemu-system-x86), the firmware that Debian's source tarball lacks
	# (seabios; ipxe-qemu and qemu-system-data give the option ROMs such
	# as linuxboot_dma.bin for -kernel); the guest: busybox-static, cpio
	# and gzip for the initramfs (the kernel itself is fetched with
	# apt-get download, not installed); python3 for the harness;
	# qemu-utils for qemu-img (the qcow2 disk of the savevm/loadvm
	# scenario).
	_t="qemu-system-x86 qemu-system-data seabios ipxe-qemu qemu-utils busybox-static cpio gzip python3"
	case "${1:-all}" in
	build) echo "$_b" ;;
	test) echo "$_t" ;;
	all)
		_all=""
		for _p in $_b $_t; do
			case " $_all " in *" $_p "*) ;; *) _all="$_all $_p" ;; esac
		done
		echo "${_all# }"
		;;
	*) echo "rs_qemu_pkgs: unknown set '$1' (build, test, all)" >&2; return 2 ;;
	esac
}

# rs_qemu_missing LIST...: the packages of LIST that are not installed.
rs_qemu_missing() {
	_m=""
	for _p in "$@"; do
		# No "| grep -q": a caller may run with pipefail.
		case $(dpkg-query -W -f='${Status}' "$_p" 2>/dev/null) in
		*"install ok installed"*) ;;
		*) _m="$_m $_p" ;;
		esac
	done
	echo "$_m"
}

# rs_qemu_install build|test|all: install the missing packages quietly.
# Prints one line naming what it installs; fails with apt's output.
rs_qemu_install() {
	# shellcheck disable=SC2046
	_miss=$(rs_qemu_missing $(rs_qemu_pkgs "${1:-all}")) || return 1
	[ -z "$_miss" ] && return 0
	echo "qemu/deps.sh: installing:$_miss" >&2
	_sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || {
			echo "qemu/deps.sh: not root and no sudo: install as root:$_miss" >&2
			return 1
		}
		_sudo=sudo
	fi
	_log=$(mktemp)
	if ! $_sudo apt-get update -qq >"$_log" 2>&1; then
		cat "$_log" >&2; rm -f "$_log"
		echo "qemu/deps.sh: apt-get update failed" >&2
		return 1
	fi
	# shellcheck disable=SC2086
	if ! $_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $_miss >"$_log" 2>&1; then
		cat "$_log" >&2; rm -f "$_log"
		echo "qemu/deps.sh: apt-get install failed:$_miss" >&2
		return 1
	fi
	rm -f "$_log"
	# shellcheck disable=SC2086
	_still=$(rs_qemu_missing $_miss)
	if [ -n "$_still" ]; then
		echo "qemu/deps.sh: still not installed:$_still" >&2
		return 1
	fi
}

# Run as a program, not sourced: install.  A sourced file cannot see its
# own path, so main runs only when $0 is a deps.sh that sits beside
# build.sh (this directory) and RS_QEMU_DEPS_LIB is unset: sourcing it from
# tests/deps.sh, whose $0 is also a deps.sh, defines functions only.
if [ -z "${RS_QEMU_DEPS_LIB:-}" ] && [ "${0##*/}" = deps.sh ] &&
		[ -f "$(dirname "$0")/build.sh" ] && [ -d "$(dirname "$0")/guest" ]; then
	set -eu
	rs_qemu_install "${1:-all}"
fi

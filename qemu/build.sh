#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Build Debian 12's QEMU 7.2 (x86_64-softmmu) with the patch series in
# qemu/patches/*.patch, or without it (--reference), and print the path of
# the qemu-system-x86_64 binary on the last line of stdout.  Everything else
# goes to stderr.
#
# See qemu/README.md.  Run with --help for the options.
set -eu -o pipefail
# Patch order and every sort below: byte order, whatever the locale.
export LC_COLLATE=C

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")

cache=${RUNSTATE_QEMU_CACHE:-/var/cache/runstate-qemu}
nice_level=${RUNSTATE_QEMU_NICE:-19}
jobs=${RUNSTATE_QEMU_JOBS:-$(nproc)}
keep_outputs=${RUNSTATE_QEMU_KEEP:-4}

# The configure flags; part of the cache key.
configure_flags="--target-list=x86_64-softmmu --disable-docs --disable-werror --with-git-submodules=ignore"
# The ninja target: only the emulator, not the tools or the tests.
target=qemu-system-x86_64
# Bump when the recipe below changes in a way that must invalidate builds.
# 3: the patched build links the library (build_lib).
recipe=3

prog=build.sh
die() { echo "$prog: error: $*" >&2; exit 1; }
say() { echo "$prog: $*" >&2; }

usage() {
	cat <<EOF
usage: qemu/build.sh [--reference] [--print-key | --fetch] [--no-deps] [--help]

Fetches Debian's qemu source package with apt (adding a deb-src entry for
this release if none is configured), applies qemu/patches/*.patch in name
order, configures with
  $configure_flags
builds $target under nice -n $nice_level, and prints the binary's path on
the last line of stdout.  A rerun with nothing changed only prints the path.

  --reference   build the unpatched tree with the same flags
Both flavors get the timing-only trace points and marks of
qemu/patches-timing/ (after the series on the patched tree), so qemu/bench
reads the same points from both; each tree also gets
qemu/patches-timing/FLAVOR/ (marks of code only that tree has: the series'
own KVM kick, each binary's stopper on its way to its sleep).
  --print-key   print the cache key and what it is made of; build nothing
  --fetch       fetch and unpack the source only; print its directory
  --no-deps     do not check or install the apt packages (qemu/deps.sh)

Cache key: source version, configure flags, recipe version, and
  both:      sha256 of qemu/patches-timing/*.patch and of
             qemu/patches-timing/FLAVOR/*.patch
  patched:   sha256 of
             qemu/patches/*.patch (names and contents) and of the
             library sources (lib/, meson.build, meson_options.txt)

Environment:
  RUNSTATE_QEMU_CACHE    cache directory (default /var/cache/runstate-qemu)
  RUNSTATE_QEMU_VERSION  source version to use instead of apt's candidate
                         (e.g. 7.2+dfsg-7+deb12u18; offline reruns)
  RUNSTATE_QEMU_JOBS     ninja -j (default: nproc)
  RUNSTATE_QEMU_NICE     nice level of configure and ninja (default 19)
  RUNSTATE_QEMU_KEEP     finished binaries kept per flavor (default 4)

The patched build links the library: lib/ is built alone as a static
archive (meson -Ddefault_library=static -Dtests=false -Dbench=disabled,
target librunstate.a) from a snapshot of this checkout, cached under
\$RUNSTATE_QEMU_CACHE/lib/LIBHASH, and handed to QEMU's meson through a
pkg-config file (runstate.pc, which requires liburcu-bp).
EOF
}

flavor=patched
action=build
deps=yes
while [ $# -gt 0 ]; do
	case "$1" in
	--reference) flavor=reference ;;
	--print-key) action=key ;;
	--fetch) action=fetch ;;
	--no-deps) deps=no ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument '$1'" ;;
	esac
	shift
done

# ---------------------------------------------------------------------------
# Packages and the source

install_deps() {
	[ "$deps" = yes ] || return 0
	# shellcheck source=deps.sh disable=SC1091
	RS_QEMU_DEPS_LIB=1 . "$here/deps.sh"
	rs_qemu_install all || die "could not install the packages qemu/deps.sh lists"
}

# The release codename (bookworm on Debian 12).
codename() {
	# shellcheck disable=SC1091
	(. /etc/os-release && echo "${VERSION_CODENAME:-}")
}

have_qemu_src() {
	# Not "apt-cache | grep -q": with pipefail, grep -q quitting early
	# makes apt-cache die of SIGPIPE and the pipeline fail.
	local s
	s=$(apt-cache showsrc qemu 2>/dev/null) || return 1
	case "$s" in
	"Package: qemu
"* | *"
Package: qemu
"*) return 0 ;;
	esac
	return 1
}

# Add deb-src entries mirroring the enabled deb entries of this release
# (suite CODENAME, CODENAME-updates, CODENAME-security), keeping their
# URIs, components and Signed-By, then apt-get update.  Entries for other
# repositories are not copied: they may have no source index.
ensure_deb_src() {
	have_qemu_src && return 0
	local cn out list tmp
	cn=$(codename)
	[ -n "$cn" ] || die "cannot tell the release codename from /etc/os-release"
	out=/etc/apt/sources.list.d/runstate-qemu-src.sources
	list=/etc/apt/sources.list.d/runstate-qemu-src.list
	[ -w /etc/apt/sources.list.d ] ||
		die "no deb-src entry for qemu and /etc/apt/sources.list.d is not writable: add a deb-src entry for $cn (run as root)"
	say "no deb-src entry serves qemu: adding $out"
	tmp=$(mktemp)
	# deb822 files: copy each enabled stanza whose Types has deb and whose
	# Suites are this release's, with Types: deb-src.
	for f in /etc/apt/sources.list.d/*.sources; do
		if [ ! -f "$f" ] || [ "$f" = "$out" ]; then continue; fi
		awk -v cn="$cn" '
			function flush() {
				if (n && isdeb && enabled && suiteok) {
					for (i = 1; i <= n; i++) print lines[i]
					print ""
				}
				n = 0; isdeb = 0; enabled = 1; suiteok = 0
			}
			BEGIN { n = 0; isdeb = 0; enabled = 1; suiteok = 0 }
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			{
				line = $0
				if (tolower($1) == "types:") {
					for (i = 2; i <= NF; i++) if ($i == "deb") isdeb = 1
					line = "Types: deb-src"
				} else if (tolower($1) == "enabled:" && tolower($2) == "no") {
					enabled = 0
				} else if (tolower($1) == "suites:") {
					for (i = 2; i <= NF; i++)
						if ($i == cn || $i == cn "-updates" || $i == cn "-security") suiteok = 1
				}
				lines[++n] = line
			}
			END { flush() }' "$f" >>"$tmp"
	done
	if [ -s "$tmp" ]; then
		install -m 0644 "$tmp" "$out"
	fi
	# One-line format: /etc/apt/sources.list and *.list.
	: >"$tmp"
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		if [ ! -f "$f" ] || [ "$f" = "$list" ]; then continue; fi
		awk -v cn="$cn" '
			$1 == "deb" {
				# deb [options] uri suite components...
				s = 3; if ($2 ~ /^\[/) { while ($(s - 1) !~ /\]$/) s++; s++ }
				if ($s == cn || $s == cn "-updates" || $s == cn "-security") {
					sub(/^deb/, "deb-src"); print
				}
			}' "$f" >>"$tmp"
	done
	if [ -s "$tmp" ]; then
		install -m 0644 "$tmp" "$list"
	fi
	rm -f "$tmp"
	[ -f "$out" ] || [ -f "$list" ] ||
		die "found no enabled deb entry for $cn to mirror as deb-src: add one for qemu by hand"
	apt-get update -qq >&2 || die "apt-get update failed after adding the deb-src entry"
	have_qemu_src || die "still no source package qemu after adding deb-src entries ($out $list)"
}

# The version apt-get source would fetch, without the epoch, from the .dsc
# name (for example 7.2+dfsg-7+deb12u18).
resolve_version() {
	if [ -n "${RUNSTATE_QEMU_VERSION:-}" ]; then
		echo "$RUNSTATE_QEMU_VERSION"
		return
	fi
	ensure_deb_src
	local v
	v=$(cd /tmp && apt-get source -qq --print-uris qemu 2>/dev/null |
		awk '!done && match($2, /^qemu_.*\.dsc$/) { print substr($2, 6, RLENGTH - 9); done = 1 }')
	[ -n "$v" ] || die "apt-get source --print-uris qemu named no .dsc"
	echo "$v"
}

# Fetch and unpack the source into $cache/src/VERSION/tree (Debian's own
# patches applied by dpkg-source), once.
fetch_source() {
	local v=$1 d=$cache/src/$1 tmp got
	if [ -f "$d/.done" ]; then
		return 0
	fi
	say "fetching the qemu $v source with apt-get source"
	rm -rf "$d" "$cache/src/.tmp"
	mkdir -p "$cache/src/.tmp"
	# _apt downloads into the directory when it can; else apt warns.
	chmod 0755 "$cache/src/.tmp"
	if ! (cd "$cache/src/.tmp" && apt-get source -q qemu) >"$cache/src/fetch.log" 2>&1; then
		tail -n 20 "$cache/src/fetch.log" >&2
		die "apt-get source qemu failed (log: $cache/src/fetch.log)"
	fi
	got=$(find "$cache/src/.tmp" -mindepth 1 -maxdepth 1 -type d -name 'qemu-*' | awk 'NR == 1')
	[ -n "$got" ] || die "apt-get source qemu unpacked no qemu-* directory"
	# Check that apt fetched the version the key names.
	local cl
	cl=$(dpkg-parsechangelog -l "$got/debian/changelog" -S Version)
	case "$cl" in
	"$v" | *:"$v") ;;
	*) die "apt-get source fetched qemu $cl, not $v (set RUNSTATE_QEMU_VERSION=${cl#*:}?)" ;;
	esac
	mkdir -p "$d"
	mv "$got" "$d/tree"
	mv "$cache/src/.tmp"/*.dsc "$d/" 2>/dev/null || true
	rm -rf "$cache/src/.tmp"
	touch "$d/.done"
}

# ---------------------------------------------------------------------------
# The cache key

sha() { sha256sum | cut -d' ' -f1; }

# sha256 over "name sha256" lines of DIR/*.patch in name order; the empty
# series has a hash too.
series_hash() {
	local dir=$1
	local p
	for p in "$dir"/*.patch; do
		[ -f "$p" ] || continue
		printf '%s %s\n' "${p##*/}" "$(sha256sum <"$p" | cut -d' ' -f1)"
	done | sha
}

# The library sources the patched QEMU will link.
lib_hash() {
	(
		cd "$top"
		for f in meson.build meson_options.txt; do
			[ -f "$f" ] || die "library file $top/$f is missing"
		done
		find lib meson.build meson_options.txt -type f -print0 | LC_ALL=C sort -z |
			xargs -0 sha256sum
	) | sha
}

key_material() {
	local v=$1
	echo "recipe=$recipe"
	echo "flavor=$flavor"
	echo "version=$v"
	echo "configure=$configure_flags"
	echo "target=$target"
	echo "timing=$(series_hash "$here/patches-timing")"
	echo "timing_$flavor=$(series_hash "$here/patches-timing/$flavor")"
	if [ "$flavor" = patched ]; then
		echo "patches=$(series_hash "$here/patches")"
		echo "lib=$(lib_hash)"
	fi
}

# ---------------------------------------------------------------------------
# Patching

# apply_series DIR TREE VERSION: apply DIR/*.patch to TREE in name order,
# without fuzz (as dpkg-source does): a hunk whose context moved is an
# error, not a guess.
apply_series() {
	local dir=$1 tree=$2 v=$3 p out
	[ -d "$dir" ] || return 0
	for p in "$dir"/*.patch; do
		[ -f "$p" ] || continue
		say "applying ${p#"$top"/}"
		if ! out=$(cd "$tree" && patch -p1 --forward --batch --fuzz=0 --no-backup-if-mismatch \
				-r - <"$p" 2>&1); then
			echo "$out" >&2
			die "patch ${p#"$top"/} does not apply to qemu $v"
		fi
	done
}

# The timing-only instrumentation: qemu/patches-timing/*.patch go on both
# trees (after the series on the patched one), so the reference and the
# patched binary report the same trace points and timing marks (qemu/bench).
# They apply to both trees unchanged.  Their hash is in both keys.  Code
# that only one tree has is marked from qemu/patches-timing/FLAVOR/, on that
# tree only, after them (the series' own KVM kick; each binary's stopper on
# its way to its sleep): their hash is in that flavor's key.
timing_instrumentation_hook() {
	apply_series "$here/patches-timing" "$1" "$2"
	apply_series "$here/patches-timing/$flavor" "$1" "$2"
}

# ---------------------------------------------------------------------------
# The library, for the patched build

# build_lib HASH: build lib/ alone as a static archive, once per library
# hash, into $cache/lib/HASH/{include,lib}.  It builds from a snapshot of
# the checkout (without build directories and .git), so that edits made
# while it builds do not leak into a cached archive.  Only the library
# target is built: the project's meson.build also declares tools, stress
# programs and planted copies, which QEMU does not need.
build_lib() {
	local h=$1 d=$cache/lib/$1 log
	[ -f "$d/.done" ] && return 0
	say "building the runstate library (static, lib $h)"
	rm -rf "$d"
	mkdir -p "$d"
	log=$d/build.log
	rsync -a --exclude='/build*/' --exclude='/.git' --exclude='/subprojects/*/' "$top/" "$d/src/"
	if ! nice -n "$nice_level" meson setup "$d/build" "$d/src" \
			-Ddefault_library=static -Dtests=false -Dbench=disabled \
			--buildtype=debugoptimized -Db_ndebug=true >"$log" 2>&1 9>&-; then
		tail -n 20 "$log" >&2
		die "meson setup of the library failed (log: $log)"
	fi
	if ! nice -n "$nice_level" ninja -C "$d/build" librunstate.a >>"$log" 2>&1 9>&-; then
		grep -E -m 20 'error|FAILED' "$log" >&2 || true
		die "the library did not build (log: $log)"
	fi
	mkdir -p "$d/include" "$d/lib"
	cp "$d/src/lib/include/runstate.h" "$d/include/"
	cp "$d/build/librunstate.a" "$d/lib/"
	rm -rf "$d/src"
	touch "$d/.done"
}

# install_if_changed SRC DST: copy only when the contents differ, so that
# ninja sees a new mtime only when the library changed.
install_if_changed() {
	cmp -s "$1" "$2" 2>/dev/null || install -m 0644 "$1" "$2"
}

# stage_lib HASH WORKDIR: put the library where the patched tree's meson
# finds it, at a path that does not change with the hash (QEMU's build
# directory is configured once): WORKDIR/runstate/{include,lib}, and
# WORKDIR/runstate/lib/pkgconfig/runstate.pc.
stage_lib() {
	local d=$cache/lib/$1 p=$2/runstate tmp ver
	mkdir -p "$p/include" "$p/lib/pkgconfig"
	install_if_changed "$d/include/runstate.h" "$p/include/runstate.h"
	install_if_changed "$d/lib/librunstate.a" "$p/lib/librunstate.a"
	ver=$(awk -F"'" '/^  version:/ { print $2; exit }' "$top/meson.build")
	tmp=$(mktemp)
	# pkg-config variables: ${...} is for pkg-config, not for the shell.
	# shellcheck disable=SC2016
	{
		echo "prefix=$p"
		echo 'includedir=${prefix}/include'
		echo 'libdir=${prefix}/lib'
		echo
		echo 'Name: runstate'
		echo "Description: One atomic word that says whether a VM's vCPUs may run (static, for QEMU)"
		echo "Version: $ver"
		echo 'Requires: liburcu-bp'
		echo 'Cflags: -I${includedir}'
		echo 'Libs: -L${libdir} -lrunstate -pthread'
	} >"$tmp"
	install_if_changed "$tmp" "$p/lib/pkgconfig/runstate.pc"
	rm -f "$tmp"
}

# ---------------------------------------------------------------------------
# Build

prune_outputs() {
	local n=0 d
	# Newest first; keep $keep_outputs of this flavor.  (The names are
	# FLAVOR-HEXKEY: nothing for ls to mangle.)
	# shellcheck disable=SC2045
	for d in $(ls -1dt "$cache/out/$flavor-"* 2>/dev/null); do
		n=$((n + 1))
		[ "$n" -le "$keep_outputs" ] || rm -rf "$d"
	done
}

build() {
	local v=$1 key=$2 wd=$cache/work/$flavor-$1 out=$cache/out/$flavor-$2
	local stage=$wd/stage src=$wd/src bld=$wd/build log=$wd/build.log t0
	t0=$(date +%s)
	fetch_source "$v"
	mkdir -p "$wd"

	# A fresh copy of the pristine tree, patched.
	rm -rf "$stage"
	cp -a "$cache/src/$v/tree" "$stage"
	if [ "$flavor" = patched ]; then
		apply_series "$here/patches" "$stage" "$v"
		build_lib "$(lib_hash)"
		stage_lib "$(lib_hash)" "$wd"
		# QEMU's meson finds the library through this, at configure time
		# and when ninja re-runs meson after a patch changed meson.build.
		export PKG_CONFIG_PATH="$wd/runstate/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
	fi
	timing_instrumentation_hook "$stage" "$v"

	# Sync it into the tree that $bld was configured from, by content:
	# only files that differ get rewritten (and a new mtime), so ninja
	# rebuilds what a patch change touched, and nothing else.
	rsync -rlpc --delete "$stage/" "$src/"
	rm -rf "$stage"

	if [ ! -f "$bld/build.ninja" ] || [ "$(cat "$wd/configured" 2>/dev/null)" != "$configure_flags" ]; then
		say "configuring ($flavor, qemu $v)"
		rm -rf "$bld" "$wd/configured" "$wd/pkg-config-path"
		mkdir -p "$bld"
		# shellcheck disable=SC2086
		if ! (cd "$bld" && nice -n "$nice_level" "$src/configure" $configure_flags) >"$wd/configure.log" 2>&1 9>&-; then
			tail -n 30 "$wd/configure.log" >&2
			die "configure failed for qemu $v ($flavor; log: $wd/configure.log)"
		fi
		echo "$configure_flags" >"$wd/configured"
	fi
	# Meson keeps the pkg-config path of its first run (a run in a tree
	# configured before the series needed the library did not have it),
	# and its re-runs from ninja ignore the environment: set it as the
	# build directory's option, once.
	if [ "$flavor" = patched ] && [ "$(cat "$wd/pkg-config-path" 2>/dev/null)" != "$wd/runstate/lib/pkgconfig" ]; then
		if ! nice -n "$nice_level" meson configure "$bld" \
				-Dpkg_config_path="$wd/runstate/lib/pkgconfig" >>"$wd/configure.log" 2>&1 9>&-; then
			tail -n 20 "$wd/configure.log" >&2
			die "could not set the pkg-config path of $bld (log: $wd/configure.log)"
		fi
		echo "$wd/runstate/lib/pkgconfig" >"$wd/pkg-config-path"
	fi

	say "building $target ($flavor, qemu $v, -j$jobs; log: $log)"
	# 9>&-: the lock on fd 9 is this script's, not ninja's to keep.
	if ! nice -n "$nice_level" ninja -C "$bld" -j "$jobs" "$target" >"$log" 2>&1 9>&-; then
		grep -E -m 20 'error|FAILED' "$log" >&2 || true
		tail -n 20 "$log" >&2
		die "build failed for qemu $v ($flavor; log: $log)"
	fi

	rm -rf "$out.tmp"
	mkdir -p "$out.tmp"
	cp "$bld/$target" "$out.tmp/$target"
	{
		key_material "$v"
		echo "key=$key"
		echo "build_dir=$bld"
		echo "source_dir=$src"
		echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
		echo "seconds=$(($(date +%s) - t0))"
	} >"$out.tmp/info"
	rm -rf "$out"
	mv "$out.tmp" "$out"
	say "built in $(($(date +%s) - t0)) s"
	prune_outputs
}

main() {
	install_deps
	mkdir -p "$cache"
	exec 9>"$cache/.lock"
	flock -w 7200 9 || die "another build.sh holds $cache/.lock"

	local v key
	v=$(resolve_version)
	key=$(key_material "$v" | sha | cut -c1-16)

	if [ "$action" = key ]; then
		key_material "$v"
		echo "$key"
		return
	fi
	if [ "$action" = fetch ]; then
		fetch_source "$v"
		echo "$cache/src/$v/tree"
		return
	fi

	# The stock binary should be built from the same source version.
	local stock
	stock=$(dpkg-query -W -f='${source:Version}' qemu-system-x86 2>/dev/null || true)
	case "$stock" in
	"" | "$v" | *:"$v") ;;
	*) say "note: stock qemu-system-x86 comes from source $stock, the build from $v" ;;
	esac

	local out=$cache/out/$flavor-$key
	if [ -x "$out/$target" ] && [ -f "$out/info" ]; then
		touch "$out"
		say "cached: $flavor build $key (qemu $v)"
	else
		build "$v" "$key"
	fi
	echo "$out/$target"
}

# On one line: bash reads a script as it runs it, so an edit of this file
# during a long build must not make it run what now follows "main".
main; exit

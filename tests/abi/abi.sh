#!/bin/sh
# SPDX-License-Identifier: MIT
# ABI checks of the shared library (NEWS: what 0.x promises).
#
#   abi.sh grow      old binaries keep working when a field is added, and new
#                    binaries with an older library: builds today's library
#                    and a "grown" one (every size-carrying struct of
#                    runstate.h with a field added at its end), and runs
#                    abi_consumer.c built against each header with each
#                    library (tests/abi/abi_consumer.c says what it checks).
#   abi.sh abidiff   the library's ABI against the 0.9.0 baseline
#                    (librunstate-0.9.0.abi, abidw's XML): abidiff must
#                    find no incompatible change (additions are allowed).
#   abi.sh baseline  rewrite the baseline (only at a release, with NEWS).
#
# Both build the library themselves, with cc, from lib/ (or a grown copy),
# so that they mean the same in every tier of tests/run-all (a sanitizer
# build's library cannot be loaded into a plain binary).  Needs cc,
# pkg-config, liburcu-bp, patch-free sed/awk; abidiff needs abigail-tools.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cmd=${1:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CC=${CC:-cc}
urcu=$(pkg-config --cflags --libs liburcu-bp 2>/dev/null || echo -lurcu-bp)

# build_lib SRC OUTDIR: the shared library from SRC/lib, as librunstate.so.0
# (the soname the meson build gives it), with its version script.
build_lib() {
	mkdir -p "$2"
	# shellcheck disable=SC2086
	$CC -std=c11 -O2 -g -fPIC -shared -fvisibility=hidden -DRS_BUILDING_LIB=1 -D_GNU_SOURCE \
		-I"$1/lib/include" -I"$1/lib" "$1"/lib/*.c \
		-Wl,--version-script="$1/lib/runstate.map" -Wl,-soname,librunstate.so.0 \
		-pthread $urcu -o "$2/librunstate.so.0"
	ln -sf librunstate.so.0 "$2/librunstate.so"
}

case $cmd in
grow)
	# The grown source: a field `future` at the end of each struct.
	mkdir -p "$tmp/grown"
	cp -r "$root/lib" "$tmp/grown/lib"
	h=$tmp/grown/lib/include/runstate.h
	awk '/^struct rs_(config|stats|state|event) \{$/ { in_s = 1 }
	     in_s && /^};$/ { print "\tuint64_t future;   /* added by tests/abi/abi.sh grow */"; in_s = 0; n++ }
	     { print }
	     END { if (n != 4) exit 1 }' "$root/lib/include/runstate.h" >"$h" ||
		{ echo "abi.sh: could not grow the four structs of runstate.h (update this script)"; exit 1; }
	build_lib "$root" "$tmp/today"
	build_lib "$tmp/grown" "$tmp/grownlib"
	c=$root/tests/abi/abi_consumer.c
	$CC -std=c11 -O1 -I"$root/lib/include" "$c" -L"$tmp/today" -lrunstate -o "$tmp/old-binary"
	$CC -std=c11 -O1 -DGROWN -I"$tmp/grown/lib/include" "$c" -L"$tmp/grownlib" -lrunstate \
		-o "$tmp/new-binary"
	rc=0
	for run in "old-binary today" "old-binary grownlib" "new-binary today"; do
		set -- $run
		echo "== $1 with the $2 library"
		LD_LIBRARY_PATH=$tmp/$2 "$tmp/$1" || rc=1
	done
	exit $rc ;;
abidiff|baseline)
	command -v abidw >/dev/null && command -v abidiff >/dev/null ||
		{ echo "abi.sh: abidw/abidiff not found (apt-get install abigail-tools)"; exit 1; }
	build_lib "$root" "$tmp/today"
	base=$root/tests/abi/librunstate-0.9.0.abi
	if [ "$cmd" = baseline ]; then
		abidw --headers-dir "$root/lib/include" --no-corpus-path \
			--out-file "$base" "$tmp/today/librunstate.so.0"
		echo "wrote $base"
		exit 0
	fi
	rc=0
	abidiff --headers-dir2 "$root/lib/include" --no-added-syms "$base" \
		"$tmp/today/librunstate.so.0" || rc=$?
	# abidiff's status is a bit set: 1 error, 2 usage, 4 an ABI change
	# (a type's layout, a function's signature), 8 an incompatible one (a
	# symbol removed).  Added functions are not reported (--no-added-syms);
	# anything else fails, even a field appended to a size-carrying struct,
	# which old binaries survive (abi.sh grow) but which is a new ABI all
	# the same: it comes with a new baseline, a version and a NEWS entry.
	if [ "$rc" -ne 0 ]; then
		echo "abi.sh: abidiff status $rc: the ABI changed against the 0.9.0 baseline"
		exit 1
	fi
	echo "abi.sh: the ABI is the 0.9.0 baseline's (abidiff: no change but added functions)" ;;
*)
	echo "usage: abi.sh grow|abidiff|baseline"; exit 2 ;;
esac

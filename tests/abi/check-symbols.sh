#!/bin/sh
# The shared library's exports are exactly the headers' functions, each in
# its version node: runstate.h's in RUNSTATE_0.9, runstate-testing.h's in
# RUNSTATE_TESTING_0.9 (lib/runstate.map), all rs_*, nothing else; and every
# inline function of runstate.h has an exported twin NAME_func.
# Usage: check-symbols.sh LIB SOURCE-ROOT
set -eu
lib=$1 root=$2
pub=$root/lib/include/runstate.h
tst=$root/lib/include/runstate-testing.h
map=$root/lib/runstate.map
command -v objdump >/dev/null || { echo "objdump not found (binutils)"; exit 1; }

# NAME VERSION, one per defined dynamic symbol (versioned definitions only:
# the version nodes themselves are absolute symbols and left out).
syms=$(objdump -T "$lib" | awk '$2 == "g" && $4 != "*UND*" && $NF ~ /^[a-z_0-9]+$/ && $(NF-1) ~ /^RUNSTATE/ { print $NF, $(NF-1) }' | sort)
names=$(printf '%s\n' "$syms" | awk '{ print $1 }')
bad=$(printf '%s\n' "$names" | grep -v '^rs_' || true)
if [ -n "$bad" ]; then
	echo "exported symbols without the rs_ prefix:"; echo "$bad"; exit 1
fi
# Nothing that could clash with QEMU's runstate_* / vm_* names, and nothing
# exported without a version (the version script's local: * must hold).
if objdump -T "$lib" | awk '$2 == "g" && $4 != "*UND*"' | grep -v ' RUNSTATE' | grep -E ' (rs_|runstate_|vm_)'; then
	echo "unversioned or clashing exports above"; exit 1
fi

# header_fns HEADER: the RS_API functions it declares.
header_fns() {
	grep -v '#define' "$1" | grep -o 'RS_API [^(]*(' | sed 's/($//; s/.*[ *]//' | sort -u
}
want=$( (header_fns "$pub" | sed 's/$/ RUNSTATE_0.9/'; header_fns "$tst" | sed 's/$/ RUNSTATE_TESTING_0.9/') | sort)
if [ "$want" != "$syms" ]; then
	echo "headers and exports differ (< headers, > library):"
	tmp=$(mktemp -d)
	printf '%s\n' "$want" >"$tmp/headers"
	printf '%s\n' "$syms" >"$tmp/library"
	diff "$tmp/headers" "$tmp/library" || true
	rm -rf "$tmp"
	exit 1
fi
# The version script lists the same names (it is the source of the nodes;
# a name it lists that no source defines would be silently dropped).
listed=$(sed -n 's/^[[:space:]]*\(rs_[a-z_0-9]*\);$/\1/p' "$map" | sort)
if [ "$listed" != "$(printf '%s\n' "$names" | sort)" ]; then
	echo "lib/runstate.map and the exports differ"; exit 1
fi
# Every inline function of the header has an exported twin named NAME_func.
for f in $(grep -o 'static inline [a-z_ ]*[ *]rs_[a-z_]*(' "$pub" | sed 's/($//; s/.*[ *]//'); do
	printf '%s\n' "$names" | grep -qx "${f}_func" || { echo "inline $f has no exported twin"; exit 1; }
done
echo "ok: $(printf '%s\n' "$names" | wc -l) symbols, all rs_* and versioned; headers, version script and library agree"

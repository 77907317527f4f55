#!/bin/sh
# The shared library's exports are exactly the headers' functions, each in
# the version node lib/runstate.map gives it: runstate.h's in a RUNSTATE_0.N
# node (the version that added it: RUNSTATE_0.9, RUNSTATE_0.10, ...),
# runstate-testing.h's in a RUNSTATE_TESTING_ node; all rs_*, nothing else;
# and every inline function of runstate.h has an exported twin NAME_func.
# (abi.sh abidiff catches a symbol that moved out of its release's node.)
# An instrumented build (meson -Dinstrument=true, third argument
# "instrumented") also exports runstate-instrument.h's functions, in a
# RUNSTATE_INSTRUMENT_ node (lib/runstate-instrument.map, which meson appends
# to the map); a production build exports none of them and holds no counter
# code at all (nm: no symbol of lib/cost.c).
# Usage: check-symbols.sh LIB SOURCE-ROOT [instrumented]
set -eu
lib=$1 root=$2 kind=${3:-production}
pub=$root/lib/include/runstate.h
tst=$root/lib/include/runstate-testing.h
ins=$root/lib/include/runstate-instrument.h
map=$root/lib/runstate.map
command -v objdump >/dev/null || { echo "objdump not found (binutils)"; exit 1; }
command -v nm >/dev/null || { echo "nm not found (binutils)"; exit 1; }
tmpmap=$(mktemp)
trap 'rm -f "$tmpmap"' EXIT
if [ "$kind" = instrumented ]; then
	cat "$map" "$root/lib/runstate-instrument.map" >"$tmpmap"
	map=$tmpmap
fi
# The counters' code, by the names lib/cost.c defines (every symbol, local
# ones too: hidden functions stay in the symbol table as local).
cost_syms=$(nm "$lib" | awk '{ print $NF }' | grep -E '^(rs_cost_|tls_cost|next_stripe)' || true)
if [ "$kind" = instrumented ]; then
	[ -n "$cost_syms" ] || { echo "instrumented build without lib/cost.c's symbols"; exit 1; }
elif [ -n "$cost_syms" ]; then
	echo "counter code in a production build:"; echo "$cost_syms"; exit 1
fi

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
# NAME NODE for each name the version script lists, by the node it is in.
mapped=$(awk '/^[A-Z_0-9.]+ *\{/ { node = $1 } /^[[:space:]]*rs_[a-z_0-9]*;$/ { sub(/;$/, "", $1); print $1, node }' "$map" | sort)
node_of() { printf '%s\n' "$mapped" | awk -v n="$1" '$1 == n { print $2 }'; }
bad=
for f in $(header_fns "$pub"); do
	case $(node_of "$f") in RUNSTATE_0.*) ;; *) bad="$bad $f" ;; esac
done
for f in $(header_fns "$tst"); do
	case $(node_of "$f") in RUNSTATE_TESTING_*) ;; *) bad="$bad $f" ;; esac
done
ins_fns=
if [ "$kind" = instrumented ]; then
	ins_fns=$(header_fns "$ins")
	for f in $ins_fns; do
		case $(node_of "$f") in RUNSTATE_INSTRUMENT_*) ;; *) bad="$bad $f" ;; esac
	done
fi
if [ -n "$bad" ]; then
	echo "not in a version node of their header's kind in lib/runstate.map:$bad"; exit 1
fi
want=$( (header_fns "$pub"; header_fns "$tst"; [ -z "$ins_fns" ] || printf '%s\n' $ins_fns) | while read -r f; do echo "$f $(node_of "$f")"; done | sort)
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

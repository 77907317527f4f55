#!/bin/sh
# The shared library exports rs_* and nothing else, and everything the header
# declares with RS_API is exported.  Usage: check-symbols.sh LIB HEADER
set -eu
lib=$1 header=$2
syms=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ { print $3 }' | sort)
bad=$(printf '%s\n' "$syms" | grep -v '^rs_' || true)
if [ -n "$bad" ]; then
	echo "exported symbols without the rs_ prefix:"; echo "$bad"; exit 1
fi
# Nothing that could clash with QEMU's runstate_* / vm_* names.
if printf '%s\n' "$syms" | grep -E '^(runstate_|vm_)'; then exit 1; fi
# Every RS_API function of the header is exported.
want=$(grep -v '#define' "$header" | grep -o 'RS_API [^(]*(' | sed 's/($//; s/.*[ *]//' | sort -u)
missing=$(printf '%s\n' "$want" | while read -r f; do printf '%s\n' "$syms" | grep -qx "$f" || echo "$f"; done)
if [ -n "$missing" ]; then
	echo "declared but not exported:"; echo "$missing"; exit 1
fi
# Every inline function of the header has an exported twin named NAME_func.
for f in $(grep -o 'static inline [a-z_ ]*[ *]rs_[a-z_]*(' "$header" | sed 's/($//; s/.*[ *]//'); do
	printf '%s\n' "$syms" | grep -qx "${f}_func" || { echo "inline $f has no exported twin"; exit 1; }
done
echo "ok: $(printf '%s\n' "$syms" | wc -l) symbols, all rs_*, header and library agree"

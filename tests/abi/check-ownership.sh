#!/bin/sh
# SPDX-License-Identifier: MIT
# The library's shape (lib/instance.h): each module owns a part of the
# instance and is the only file that touches it, so that every pairing of
# memory accesses is read in one file.  Fails, naming file and line, when a
# file touches another module's part.  Also: no planted bug in lib/ (they
# are patches, tests/planted/), and no source file of lib/ over 800 lines.
# Usage: check-ownership.sh SOURCE-ROOT
set -eu
root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root/lib"
bad=0
# PART:OWNER: a field of the part, ri->PART.field, is touched only in the
# module OWNER (its .c and its .h; the .h may hold inline functions, which
# take the part as &ri->PART: passing the part along touches no field).
for rule in os:os reg:registry settle:settle ack:ack lockq:lockq ev:events \
	    lis:listener excl:exclusive cost:cost pub:instance; do
	part=${rule%%:*} owner=${rule#*:}
	hits=$(grep -n -- "->$part\." ./*.c ./*.h | grep -v -e "^\./$owner\.c:" -e "^\./$owner\.h:" || true)
	if [ -n "$hits" ]; then
		echo "ri->$part belongs to $owner.c, touched elsewhere:"
		echo "$hits" | sed 's/^/   /'
		bad=1
	fi
done
# The word itself: only through instance.h's accessors.
hits=$(grep -n 'word_private' ./*.c ./*.h | grep -v '^\./instance\.h:' || true)
if [ -n "$hits" ]; then
	echo "the word outside instance.h's accessors:"; echo "$hits" | sed 's/^/   /'; bad=1
fi
if grep -rn 'RS_PLANT' . ; then
	echo "a planted bug in lib/ (they belong in tests/planted/*.patch)"; bad=1
fi
for f in ./*.c ./*.h include/*.h; do
	n=$(wc -l <"$f")
	[ "$n" -le 800 ] || { echo "$f: $n lines (over 800)"; bad=1; }
done
[ $bad -eq 0 ] && echo "ok: every part of the instance touched only by its module"
exit $bad

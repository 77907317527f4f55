#!/bin/sh
# Succeeds exactly when the command fails with a checker's report of a
# difference (PATTERN in its output): a planted difference was caught, and
# not, say, a crash elsewhere.
# Usage: expect-mismatch.sh PATTERN COMMAND [ARGS...]
pattern=$1
shift
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
rc=0
"$@" >"$tmp" 2>&1 || rc=$?
if [ "$rc" -ne 0 ] && grep -q -- "$pattern" "$tmp"; then
	echo "caught (exit $rc):"
	grep -A12 -- "$pattern" "$tmp" | head -14
	exit 0
fi
echo "NOT caught: exit $rc"
tail -20 "$tmp"
exit 1

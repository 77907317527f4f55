#!/bin/sh
# Succeeds exactly when the command fails with the fuzz target's mismatch
# report: a planted difference was caught (and not, say, a crash elsewhere).
# Usage: expect-mismatch.sh COMMAND [ARGS...]
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
rc=0
"$@" >"$tmp" 2>&1 || rc=$?
if [ "$rc" -ne 0 ] && grep -q 'fuzz-semantics: MISMATCH' "$tmp"; then
	echo "caught (exit $rc):"
	grep -A12 'fuzz-semantics: MISMATCH' "$tmp" | head -14
	exit 0
fi
echo "NOT caught: exit $rc"
tail -20 "$tmp"
exit 1

#!/bin/sh
# Run one rsctl scenario script: each line `COMMAND => EXPECTED` feeds
# COMMAND to rsctl and expects exactly EXPECTED as its output line; a first
# line `#! OPTIONS` gives rsctl's options.  Usage: run-scenario.sh RSCTL FILE [EXTRA-OPTIONS...]
set -eu
rsctl=$1 file=$2
shift 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

opts=$(sed -n '1s/^#![[:space:]]*//p' "$file")
# Commands and expectations.  Lines with `#` in column 0 are the script's
# comments; a line ending in ` =>` is fed to rsctl and expects no output
# (rsctl's own comments, blank lines, lines after quit).
grep -v '^#' "$file" | grep -e ' => ' -e ' =>$' | sed -e 's/ => .*//' -e 's/ =>$//' >"$tmp/in"
grep -v '^#' "$file" | grep ' => ' | sed 's/^.* => //' >"$tmp/want"

rc=0
# shellcheck disable=SC2086
"$rsctl" $opts "$@" <"$tmp/in" >"$tmp/got" 2>"$tmp/err" || rc=$?
if ! diff -u "$tmp/want" "$tmp/got" >"$tmp/diff"; then
	echo "FAIL $file: output differs (expected vs got):"
	cat "$tmp/diff"
	cat "$tmp/err"
	exit 1
fi
if [ "$rc" -ne 0 ]; then
	echo "FAIL $file: rsctl exited $rc"
	cat "$tmp/err"
	exit 1
fi
echo "ok $file ($(wc -l <"$tmp/want") lines)"

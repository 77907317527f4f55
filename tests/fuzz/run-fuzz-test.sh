#!/bin/sh
# A fixed-length libFuzzer run for the test suite.  New inputs go to a
# temporary directory, never into the committed corpus; a crashing input is
# kept as ./fuzz-semantics-crash-* in the working directory.
# Usage: run-fuzz-test.sh FUZZER CORPUS RUNS
set -eu
fz=$1 corpus=$2 runs=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
exec_rc=0
"$fz" -runs="$runs" -seed=1 -max_len=512 -timeout=10 -print_final_stats=1 \
	-artifact_prefix="$PWD/fuzz-semantics-" "$work" "$corpus" 2>"$work/log" || exec_rc=$?
keep='^(INFO: seed|#[0-9]+[[:space:]]+(INITED|DONE)|stat::number_of_executed_units'
keep="$keep|stat::average_exec_per_sec|stat::new_units_added|Done [0-9]+ runs)"
grep -E "$keep" "$work/log" || true
if [ "$exec_rc" -ne 0 ]; then
	tail -40 "$work/log"
	exit 1
fi

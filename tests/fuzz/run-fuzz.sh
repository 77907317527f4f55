#!/bin/sh
# The long fuzzing run, one command:
#
#	tests/fuzz/run-fuzz.sh [SECONDS]        (default 600)
#
# Configures build-fuzz with clang if needed (BUILD=dir to use another),
# builds the libFuzzer target and runs it for SECONDS, growing a working
# corpus in BUILD/fuzz-corpus from the committed tests/fuzz/corpus.  A
# mismatch stops the run and leaves the input as BUILD/fuzz-semantics-crash-*;
# replay it with  BUILD/tests/fuzz/fuzz-semantics-replay FILE  (FUZZ_TRACE=1
# prints every command).  Planted bugs: tests/fuzz/plant-lib.sh.
set -eu
secs=${1:-600}
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-$root/build-fuzz}
if [ ! -f "$build/build.ninja" ]; then
	CC=clang meson setup "$build" "$root" -Dbench=disabled >/dev/null
fi
if ! ninja -C "$build" -t targets all | grep -q '^tests/fuzz/fuzz-semantics:'; then
	echo "$build has no libFuzzer target: configure it with CC=clang"
	exit 1
fi
ninja -C "$build" tests/fuzz/fuzz-semantics tests/fuzz/fuzz-semantics-replay
mkdir -p "$build/fuzz-corpus"
exec "$build/tests/fuzz/fuzz-semantics" -max_total_time="$secs" -max_len=512 -timeout=10 \
	-print_final_stats=1 -artifact_prefix="$build/fuzz-semantics-" \
	"$build/fuzz-corpus" "$root/tests/fuzz/corpus"

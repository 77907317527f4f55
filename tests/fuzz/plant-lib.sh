#!/bin/sh
# Show that the checkers catch a bug in the library itself: copy lib/ to a
# temporary directory (never touching the source tree), plant one wrong rule
# in the copy of transition.h, build a checker against the copy with the
# correct model, and run it until the mismatch.
#
#	tests/fuzz/plant-lib.sh [PLANT] [libfuzzer|replay|corpus|transition] [SEED]
#
# libfuzzer, replay: the fuzz target from an empty corpus (SEED: its seed);
# corpus: the replay driver on the committed corpus alone (no SEED);
# transition: tests/test_transition.c, up to its first failure (no SEED).
#
# PLANT:
#   retry-resumes      retry also clears the pause reason (the oVirt bug:
#                      an I/O-error retry resumes a VM the user paused)
#   unlock-pause-rank  unlock R P applies P without the rank rule
#   rank-equal         an equal rank replaces the current reason
#   coal-edge-plus-one a coalesced edge advances the edge counter by one,
#                      like an edge that joins the backlog (the rule: the
#                      backlog's last edge plus the run's parity)
#   coal-no-wrap       the coalesced count is not wrapped: its top value + 1
#                      carries into the edge counter
# Prints the number of inputs it took.  Exit 0 when caught, 1 when not,
# 2 when the plant no longer applies to lib/transition.h (update this script).
set -eu
plant=${1:-retry-resumes}
mode=${2:-libfuzzer}
seed=${3:-1}
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$root/lib" "$tmp/lib"
t=$tmp/lib/transition.h

case $plant in
retry-resumes)
	from='*out = w & ~RS_W_IO_ERROR;'
	to='*out = rs_with_pause(w, RS_PAUSE_NONE) \& ~RS_W_IO_ERROR;' ;;
unlock-pause-rank)
	from='rs_apply_pause(w, (unsigned)arg2)'
	to='rs_with_pause(w, (unsigned)arg2)' ;;
rank-equal)
	from='rs_rank_of(p) > rs_rank_of'
	to='rs_rank_of(p) >= rs_rank_of' ;;
coal-edge-plus-one)
	from='(uint64_t)(tail + (uint32_t)(coal & 1)) << RS_W_EDGE_SHIFT'
	to='(uint64_t)(rs_w_edge(old) + 1u) << RS_W_EDGE_SHIFT' ;;
coal-no-wrap)
	from='coal &= (1u << RS_W_COAL_BITS) - 1;'
	to='' ;;
*)
	echo "unknown plant $plant"; exit 2 ;;
esac
# A basic regular expression: only * needs escaping in these.
from_re=$(printf '%s' "$from" | sed 's/\*/\\*/g')
[ "$plant" = rank-equal ] && from_re=$from
if ! grep -q "$from_re" "$t"; then
	echo "plant $plant does not apply to lib/transition.h any more"
	exit 2
fi
sed -i "s/$from_re/$to/" "$t"
echo "planted $plant:"
diff "$root/lib/transition.h" "$t" | sed 's/^/   /' || true

urcu=$(pkg-config --cflags --libs liburcu-bp 2>/dev/null || echo -lurcu-bp)
src="$root/tests/fuzz/fuzz_semantics.c $root/tests/fuzz/model.c $tmp/lib/*.c"
defs="-DRS_BUILDING_LIB=1 -D_GNU_SOURCE -I$tmp/lib/include -I$root/tests/fuzz"
log=$tmp/log
case $mode in
libfuzzer)
	# shellcheck disable=SC2086
	clang -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined -DFUZZ_LIBFUZZER=1 \
		$defs $src -pthread $urcu -o "$tmp/fz"
	mkdir "$tmp/corpus"
	"$tmp/fz" -seed="$seed" -max_len=512 -runs=5000000 -artifact_prefix="$tmp/" \
		"$tmp/corpus" >"$log" 2>&1 || true ;;
replay|corpus)
	# shellcheck disable=SC2086
	${CC:-cc} -std=c11 -O2 $defs -I"$root/tests/util" $src "$root/tests/fuzz/replay.c" \
		"$root/tests/util/rsutil.c" -pthread $urcu -o "$tmp/fz"
	if [ "$mode" = replay ]; then
		"$tmp/fz" -n 5000000 -s "$seed" >"$log" 2>&1 || true
	else
		"$tmp/fz" -n 0 "$root/tests/fuzz/corpus" >"$log" 2>&1 || true
	fi ;;
transition)
	# shellcheck disable=SC2086
	${CC:-cc} -std=c11 -O2 $defs -I"$root/tests/util" "$root/tests/test_transition.c" \
		"$root/tests/fuzz/model.c" "$root/tests/util/rsutil.c" $tmp/lib/*.c -pthread \
		$urcu -o "$tmp/tt"
	"$tmp/tt" -x >"$log" 2>&1 || true
	if grep -q '^FAIL:' "$log"; then
		grep -m1 -A1 '^FAIL:' "$log"
		echo "CAUGHT by transition: $(sed -n 's/.*(-x), \([0-9]* checks\)$/\1/p' "$log")"
		exit 0
	fi ;;
*)
	echo "unknown mode $mode"; exit 2 ;;
esac
if grep -q 'fuzz-semantics: MISMATCH' "$log"; then
	grep -A10 'fuzz-semantics: MISMATCH' "$log" | head -12
	first=$(grep -o 'MISMATCH in input #[0-9]*' "$log" | head -n 1)
	echo "CAUGHT by $mode (seed $seed): ${first#MISMATCH in }"
	exit 0
fi
tail -5 "$log"
echo "NOT caught by $mode"
exit 1

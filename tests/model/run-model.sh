#!/bin/sh
# SPDX-License-Identifier: MIT
#
# run-model.sh: check the Promela model of runstate's stop/start protocol.
#
#   run-model.sh [bounded]        the quick exhaustive check (about 25 s)
#   run-model.sh full             the larger exhaustive checks (see README.md)
#   run-model.sh mutant NAME      a seeded bug, a..e: spin must find an error
#   run-model.sh design NAME      the protocol as first written, spec-kick or
#                                 spec-recheck: spin must find an error
#   run-model.sh one NAME FLAGS.. one run, NAME safety|liveness, any -D flags
#
# Exit status: 0 when every check of the mode passed (no error found), 1 when
# spin found an error (or a search was incomplete), 2 on a setup failure.
# So `mutant` and `design` exit 1 when the seeded bug is caught (meson:
# should_fail: true).
#
# Each run compiles pan with gcc -O2 in a temporary directory.  Environment:
#   SPIN, CC        programs (default spin, cc)
#   MODEL_MEMLIM    memory limit for one run, in MB (default 8192)
#   MODEL_KEEP=1    keep the temporary directories (with the trails)

set -u

here=$(cd "$(dirname "$0")" && pwd)
model="$here/runstate.pml"
SPIN=${SPIN:-spin}
CC=${CC:-cc}
MEMLIM=${MODEL_MEMLIM:-8192}

command -v "$SPIN" >/dev/null 2>&1 || { echo "run-model: $SPIN not found" >&2; exit 2; }
command -v "$CC" >/dev/null 2>&1 || { echo "run-model: $CC not found" >&2; exit 2; }

tmps=
cleanup() {
	[ "${MODEL_KEEP:-0}" = 1 ] && return
	for d in $tmps; do rm -rf "$d"; done
}
trap cleanup EXIT INT TERM

# run KIND LABEL HASHBITS FLAGS...
#   KIND safety: assertions and invalid end states (-DSAFETY)
#   KIND liveness: the LTL progress formula under weak fairness (-a -f)
# Prints one result line; returns 0 (no error), 1 (error or incomplete),
# 2 (setup failure).
run() {
	kind=$1 label=$2 wbits=$3
	shift 3
	d=$(mktemp -d "${TMPDIR:-/tmp}/rs-model.XXXXXX") || return 2
	tmps="$tmps $d"
	cp "$model" "$d/runstate.pml"
	case $kind in
	safety)   sflags= ; cflags="-DSAFETY" ; pflags= ;;
	liveness) sflags="-DLIVENESS" ; cflags="-DNFAIR=3" ; pflags="-a -f" ;;
	*) echo "run-model: bad kind $kind" >&2; return 2 ;;
	esac
	if ! (cd "$d" && "$SPIN" -a $sflags "$@" runstate.pml >spin.out 2>&1); then
		echo "run-model: spin -a failed for $label:" >&2
		cat "$d/spin.out" >&2
		return 2
	fi
	if ! (cd "$d" && "$CC" -O2 -w $cflags -DCOLLAPSE -DMEMLIM="$MEMLIM" \
			-o pan pan.c >cc.out 2>&1); then
		echo "run-model: compiling pan failed for $label:" >&2
		cat "$d/cc.out" >&2
		return 2
	fi
	t0=$(date +%s.%N)
	(cd "$d" && ./pan -m20000 -w"$wbits" $pflags >pan.out 2>&1)
	t1=$(date +%s.%N)
	out="$d/pan.out"
	secs=$(echo "$t1 $t0" | awk '{ printf "%.1f", $1 - $2 }')
	states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$out" | head -1)
	depth=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' "$out" | head -1)
	errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$out" | head -1)
	mem=$(sed -n 's/^ *\([0-9.]*\)[[:space:]]*total actual memory usage.*/\1/p' "$out" | head -1)
	printf '%-28s %-8s states %-12s depth %-5s %7s MB %7s s  errors %s\n' \
		"$label" "$kind" "${states:-?}" "${depth:-?}" "${mem:-?}" "$secs" "${errors:-?}"
	if grep -q -e 'max search depth too small' -e 'reached -DMEMLIM bound' \
			-e 'Search not completed' "$out" && [ "${errors:-1}" = 0 ]; then
		echo "  incomplete search:" ; grep -e 'too small' -e 'MEMLIM' -e 'not completed' "$out" | sed 's/^/  /'
		return 1
	fi
	if [ "${errors:-1}" != 0 ]; then
		grep -e '^pan:[0-9]*:' "$out" | head -3 | sed 's/^/  /'
		if [ -f "$d/runstate.pml.trail" ]; then
			echo "  trail (last steps; MODEL_KEEP=1 keeps $d):"
			(cd "$d" && "$SPIN" -t -p -k runstate.pml.trail $sflags "$@" runstate.pml 2>&1) |
				grep -E '^ *[0-9]+:.*proc' | tail -8 | sed 's/^/    /'
		fi
		return 1
	fi
	return 0
}

# Configurations (README.md, "Configurations").  BASE: 2 vCPUs, a
# synchronous stop, an asynchronous start, a lock holder, the finisher.
B="-DCOARSE -DSPURIOUS=0 -DLOSTKICKS=0"

bounded() {
	rc=0
	run safety   bounded-coarse        25 $B || rc=1
	run liveness bounded-live-nolock   22 $B -DHOLDER=0 || rc=1
	run liveness bounded-live-nostop   22 $B -DSTOPS=0 || rc=1
	return $rc
}

full() {
	rc=0
	run safety   full-fine             27 -DSPURIOUS=0 -DLOSTKICKS=0 || rc=1
	run safety   full-coarse-budgets   28 -DCOARSE -DSPURIOUS=1 -DLOSTKICKS=1 || rc=1
	run safety   full-fine-async1      26 -DASYNC_STOP=1 -DSPURIOUS=1 -DLOSTKICKS=1 -DHOLDER=0 || rc=1
	run safety   full-fine-async2      26 -DASYNC_STOP=2 -DSPURIOUS=1 -DLOSTKICKS=1 -DHOLDER=0 || rc=1
	run safety   full-coarse-3vcpu     27 -DCOARSE -DNV=3 -DSPURIOUS=0 -DLOSTKICKS=0 -DHOLDER=0 || rc=1
	run liveness full-live             27 $B || rc=1
	return $rc
}

mutant() {
	case ${1:-} in
	a|A) run safety mutant-a-no-wake        25 $B -DMUTANT_A ;;
	b|B) run safety mutant-b-wait-not-atomic 25 $B -DMUTANT_B ;;
	c|C) run safety mutant-c-stale-store    25 $B -DMUTANT_C ;;
	d|D) run safety mutant-d-early-ack      25 $B -DMUTANT_D ;;
	e|E) run safety mutant-e-no-fence       25 $B -DMUTANT_E ;;
	*) echo "run-model: mutant a|b|c|d|e" >&2; return 2 ;;
	esac
}

design() {
	case ${1:-} in
	spec-kick)
		run safety design-spec-kick 24 -DSPEC_KICK -DHOLDER=0 -DASYNC_STOP=2 \
			-DSPURIOUS=0 -DLOSTKICKS=0 ;;
	spec-recheck)
		run safety design-spec-recheck 24 -DRECHECK_SPEC -DCOARSE -DHOLDER=0 \
			-DSTOPS=0 -DASYNC_STOP=1 -DSPURIOUS=1 -DLOSTKICKS=0 ;;
	*) echo "run-model: design spec-kick|spec-recheck" >&2; return 2 ;;
	esac
}

mode=${1:-bounded}
[ $# -gt 0 ] && shift
case $mode in
bounded) bounded ;;
full)    full ;;
mutant)  mutant "$@" ;;
design)  design "$@" ;;
one)     k=${1:?kind}; shift; run "$k" "one-$k" 26 "$@" ;;
*) sed -n '4,12p' "$0" >&2; exit 2 ;;
esac

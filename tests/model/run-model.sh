#!/bin/sh
# SPDX-License-Identifier: MIT
#
# run-model.sh: check the Promela model of runstate's stop/start protocol.
#
#   run-model.sh [bounded]        the quick exhaustive checks (README.md)
#   run-model.sh full             the larger exhaustive checks (minutes)
#   run-model.sh sections [full]  the exclusive sections' checks (README.md)
#   run-model.sh mutant NAME      a seeded bug, a..p: spin must find an error
#   run-model.sh design NAME      the protocol as first written, spec-kick or
#                                 spec-recheck: spin must find an error
#   run-model.sh one KIND FLAGS.. one run; KIND safety|liveness; -D flags
#
# Exit status: 0 when every check passed (no error, every search complete);
# 1 when spin found an error (for mutant and design: the expected one) or a
# search was incomplete; 77 when spin or the C compiler is missing (meson:
# skipped); 99 on any other failure: a setup failure, or a mutant or design
# variant that spin did not catch, or caught for another reason than the
# expected one (meson: error, even with should_fail).
#
# Each run compiles pan in a temporary directory (-O2; -O0 for the small
# runs of `bounded`, where compiling takes longer than searching).
# Environment:
#   SPIN, CC        programs (default spin, cc)
#   MODEL_MEMLIM    memory limit of one run, in MB (default 8192)
#   MODEL_KEEP=1    keep the temporary directory (with the trails)

set -u
# shellcheck disable=SC2086 # flag lists are split on purpose

here=$(cd "$(dirname "$0")" && pwd)
model="$here/runstate.pml"
SPIN=${SPIN:-spin}
CC=${CC:-cc}
MEMLIM=${MODEL_MEMLIM:-8192}

command -v "$SPIN" >/dev/null 2>&1 || { echo "run-model: $SPIN not found: skipped" >&2; exit 77; }
command -v "$CC" >/dev/null 2>&1 || { echo "run-model: $CC not found: skipped" >&2; exit 77; }
[ -r "$model" ] || { echo "run-model: $model missing" >&2; exit 99; }

base=$(mktemp -d "${TMPDIR:-/tmp}/rs-model.XXXXXX") || exit 99
cleanup() {
	if [ "${MODEL_KEEP:-0}" = 1 ]; then
		echo "run-model: kept $base" >&2
	else
		rm -rf "$base"
	fi
}
trap cleanup EXIT
trap 'exit 99' HUP INT PIPE TERM

# Shared-state steps shown from a trail.
trail_filter='^ *[0-9]+:.*proc.*\[(S\[|word = |w = word|pending = |role = |settled = |slp|kick\[|inguest|holding = |owner = |qlen = |granted\[|sslp\[|sheld = |assert)'

# run KIND LABEL HASHBITS EXPECT FLAGS...
#   KIND safety: assertions and invalid end states (-DSAFETY)
#   KIND liveness: the LTL progress formula under weak fairness (-a -f)
#   EXPECT: empty, or an extended regular expression that spin's error
#   message must match (a seeded bug must fail for its own reason)
# Prints one result line.  Without EXPECT returns 0 (no error, search
# complete), 1 (an error, or an incomplete search), 99 (setup failure).
# With EXPECT returns 1 (the expected error) or 99 (anything else: no
# error, another error, an incomplete search without an error, a setup
# failure).
run() {
	kind=$1 label=$2 wbits=$3 expect=$4
	shift 4
	d=$(mktemp -d "$base/$label.XXXX") || return 99
	cp "$model" "$d/runstate.pml"
	case $kind in
	safety)   sflags= ; cflags="-DSAFETY" ; pflags= ;;
	liveness) sflags="-DLIVENESS" ; cflags="-DNFAIR=3" ; pflags="-a -f" ;;
	*) echo "run-model: bad kind $kind" >&2; return 99 ;;
	esac
	if ! (cd "$d" && "$SPIN" -a $sflags "$@" runstate.pml >spin.out 2>&1); then
		echo "run-model: spin -a failed for $label:" >&2
		cat "$d/spin.out" >&2
		return 99
	fi
	if ! (cd "$d" && "$CC" "$copt" -w $cflags -DCOLLAPSE -DMEMLIM="$MEMLIM" \
			-o pan pan.c >cc.out 2>&1); then
		echo "run-model: compiling pan failed for $label:" >&2
		cat "$d/cc.out" >&2
		return 99
	fi
	t0=$(date +%s.%N)
	(cd "$d" && ./pan -m100000 -w"$wbits" $pflags >pan.out 2>&1)
	t1=$(date +%s.%N)
	out="$d/pan.out"
	secs=$(echo "$t1 $t0" | awk '{ printf "%.1f", $1 - $2 }')
	states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$out" | head -1)
	depth=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' "$out" | head -1)
	errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$out" | head -1)
	mem=$(sed -n 's/^ *\([0-9.]*\)[[:space:]]*total actual memory usage.*/\1/p' "$out" | head -1)
	printf '%-24s %-8s states %-13s depth %-5s %8s MB %6s s  errors %s\n' \
		"$label" "$kind" "${states:-?}" "${depth:-?}" "${mem:-?}" "$secs" "${errors:-?}"
	if [ -z "${errors:-}" ]; then
		echo "run-model: no result from pan for $label:" >&2
		tail -5 "$out" >&2
		return 99
	fi
	if [ "$errors" = 0 ]; then
		incomplete=0
		if grep -q -e 'max search depth too small' -e 'reached -DMEMLIM bound' \
				-e 'Search not completed' "$out"; then
			incomplete=1
			echo "  incomplete search:"
			grep -e 'too small' -e 'MEMLIM' -e 'not completed' "$out" | sed 's/^/  /'
		fi
		if [ -n "$expect" ]; then
			echo "  UNEXPECTED: no error found: the seeded bug was not caught"
			return 99
		fi
		return $incomplete
	fi
	msg=$(grep -e '^pan:[0-9]*:' "$out" | head -1)
	echo "  ${msg:-(no pan:N: message)}"
	if [ -f "$d/runstate.pml.trail" ]; then
		echo "  trail, last shared-state steps:"
		(cd "$d" && "$SPIN" -t -p -k runstate.pml.trail $sflags "$@" runstate.pml 2>&1) |
			grep -E "$trail_filter" |
			grep -v -e 'assert(((nedge' -e 'assert((((w&' -e 'assert(((w&' |
			sed -E 's/runstate.pml:([0-9]+) \(state [0-9]+\)/line \1/' |
			tail -14 | sed 's/^/    /'
	fi
	if [ -n "$expect" ] && ! echo "$msg" | grep -q -E "$expect"; then
		echo "  UNEXPECTED: the error is not the one this seeded bug should cause"
		return 99
	fi
	return 1
}

# The base configuration: 2 vCPUs, a synchronous stop, an asynchronous
# start, a lock holder, the finisher; COARSE steps; no spurious wake-up, no
# lost kick (B), or one of each (F).  README.md, "Configurations and
# results".
B="-DCOARSE -DSPURIOUS=0 -DLOSTKICKS=0"
F="-DCOARSE -DSPURIOUS=1 -DLOSTKICKS=1"

copt=-O2	# the C compiler's optimization for pan (see `bounded`)

# Combine return codes: 99 wins, then 1.
worst() {
	if [ "$1" = 99 ] || [ "$2" = 99 ]; then echo 99
	elif [ "$1" != 0 ] || [ "$2" != 0 ]; then echo 1
	else echo 0; fi
}

# The bounded checks, run by the test suite (model-bounded): the three
# management threads together (the lock holder unlocks with a pause: the
# start after it then makes the edge and the early wake; the plain unlock
# is in `full`) with one vCPU, a spurious wake-up and a lost kick (with two
# vCPUs the same threads no longer complete within 12 GB since the active
# hint: README.md, "Configurations and results"), then an asynchronous
# stop/start pair before the start, which with a backlog of 1 coalesces
# edges and wraps the 2-bit counters, then each pair of the three threads
# with two vCPUs, a spurious wake-up and a lost kick, then progress.
# One run at a time: the machine is shared.
bounded() {
	rc=0
	run safety   bounded-safety-1vcpu  25 '' $F -DUNLOCKP=1 -DNV=1; rc=$(worst $rc $?)
	run safety   bounded-toggles       25 '' $B -DHOLDER=0 -DTOGGLES=1; rc=$(worst $rc $?)
	copt=-O0
	run safety   bounded-nolock-faults 22 '' $F -DHOLDER=0;   rc=$(worst $rc $?)
	run safety   bounded-nostop-faults 22 '' $F -DSTOPS=0;    rc=$(worst $rc $?)
	run safety   bounded-nostart-faults 22 '' $F -DSTARTS=0 -DUNLOCKP=1; rc=$(worst $rc $?)
	run liveness bounded-live-nolock   22 '' $B -DHOLDER=0;   rc=$(worst $rc $?)
	run liveness bounded-live-nostop   22 '' $B -DSTOPS=0;    rc=$(worst $rc $?)
	copt=-O2
	return $rc
}

# The larger checks (README.md): each a run of minutes, up to a few GB.
# U1: the lock holder unlocks with a pause (as in bounded-safety).
U1=-DUNLOCKP=1
full() {
	rc=0
	run safety   full-coarse          26 '' $B;                         rc=$(worst $rc $?)
	run safety   full-fine            26 '' -DSPURIOUS=0 -DLOSTKICKS=0 $U1
	rc=$(worst $rc $?)
	run safety   full-coarse-spurious 26 '' -DCOARSE -DSPURIOUS=1 -DLOSTKICKS=0 $U1
	rc=$(worst $rc $?)
	run safety   full-coarse-lostkick 26 '' -DCOARSE -DSPURIOUS=0 -DLOSTKICKS=1 $U1
	rc=$(worst $rc $?)
	run safety   full-fine-async1     26 '' -DHOLDER=0 -DASYNC_STOP=1 -DSPURIOUS=1 -DLOSTKICKS=1
	rc=$(worst $rc $?)
	run safety   full-coarse-async2   25 '' $F -DHOLDER=0 -DASYNC_STOP=2; rc=$(worst $rc $?)
	run safety   full-3vcpu-lock      25 '' $B -DNV=3 -DSTARTS=0;       rc=$(worst $rc $?)
	run safety   full-3vcpu-async     26 '' $B -DNV=3 -DHOLDER=0 -DASYNC_STOP=2
	rc=$(worst $rc $?)
	run liveness full-liveness        26 '' $B;                         rc=$(worst $rc $?)
	run safety   full-toggles-lostkick 26 '' -DCOARSE -DSPURIOUS=0 -DLOSTKICKS=1 -DHOLDER=0 -DTOGGLES=1
	rc=$(worst $rc $?)
	run safety   full-backlog2        26 '' $B -DBMAX=2 -DUNLOCKP=1;     rc=$(worst $rc $?)
	return $rc
}

# Exclusive sections (README.md, "Exclusive sections"): a configuration of
# their own, whose checks are the test suite's model-sections.  Two vCPU
# threads begin a section at once, mixed with a synchronous stop (and the
# final cont), with an asynchronous start (on a running VM: no edge), with
# the lock holder, with timeouts, in FINE steps, with an asynchronous start
# then stop, with a spurious wake-up and a lost kick; a vCPU thread and a
# management thread; all three at once; progress.  Each run is small (-O0
# where compiling takes longer than the search).
S2="-DSECT=2 -DHOLDER=0"
sections() {
	rc=0
	copt=-O0
	run safety   sect-two-stop        22 '' $B $S2 -DSTARTS=0;         rc=$(worst $rc $?)
	run safety   sect-two-start       22 '' $B $S2 -DSTOPS=0;          rc=$(worst $rc $?)
	run safety   sect-two-lock        22 '' $B -DSECT=2 -DSTOPS=0 -DSTARTS=0
	rc=$(worst $rc $?)
	run safety   sect-two-timeouts    22 '' $B $S2 -DSTARTS=0 -DSECT_TMO=1
	rc=$(worst $rc $?)
	run safety   sect-vcpu-mgmt-stop  22 '' $B -DSECT=1 -DSECT_MGMT=1 -DHOLDER=0 -DSTARTS=0
	rc=$(worst $rc $?)
	run safety   sect-two-fine        22 '' -DSPURIOUS=0 -DLOSTKICKS=0 $S2 -DSTARTS=0
	rc=$(worst $rc $?)
	run safety   sect-two-async       22 '' $B $S2 -DSTOPS=0 -DASYNC_STOP=2
	rc=$(worst $rc $?)
	run safety   sect-three-timeouts  22 '' $B $S2 -DSECT_MGMT=1 -DSTOPS=0 -DSTARTS=0 -DSECT_TMO=2
	rc=$(worst $rc $?)
	run liveness sect-live-stop       22 '' $B $S2 -DSTARTS=0;         rc=$(worst $rc $?)
	copt=-O2
	run safety   sect-two-faults      24 '' $F $S2 -DSTARTS=0;         rc=$(worst $rc $?)
	run safety   sect-three-stop      24 '' $B $S2 -DSECT_MGMT=1 -DSTARTS=0
	rc=$(worst $rc $?)
	return $rc
}

# The larger section checks (README.md): a stop and a start together, and
# more threads; about 11 minutes, up to 3.5 GB.
sections_full() {
	rc=0
	run safety   sect-two-stopstart   25 '' $B $S2;                    rc=$(worst $rc $?)
	run safety   sect-two-stopstart-timeouts 26 '' $B $S2 -DSECT_TMO=1
	rc=$(worst $rc $?)
	run safety   sect-mgmt-stopstart  25 '' $B -DSECT_MGMT=1 -DHOLDER=0; rc=$(worst $rc $?)
	run safety   sect-vcpu-mgmt-stopstart 26 '' $B -DSECT=1 -DSECT_MGMT=1 -DHOLDER=0
	rc=$(worst $rc $?)
	run safety   sect-3vcpu-stop      25 '' $B -DNV=3 $S2 -DSTARTS=0;  rc=$(worst $rc $?)
	run safety   sect-newrule         25 '' $B $S2 -DSECT_CMD_NEWRULE; rc=$(worst $rc $?)
	return $rc
}

# Each seeded bug, with the error it must cause (a pattern on pan's message).
mutant() {
	case ${1:-} in
	a|A) # a parked vCPU is never woken: deadlock
		run safety mutant-a-no-wake 25 'invalid end state' $B -DMUTANT_A ;;
	b|B) # lost wake-up: a vCPU sleeps although nobody will look for it
		run safety mutant-b-wait-not-atomic 25 \
			'invalid end state|slp\[i\]' $B -DMUTANT_B ;;
	c|C) # a clobbered PARKED (or pause, lock) bit: a vCPU parked on a
	     # runnable word, or guest code while stopped
		run safety mutant-c-stale-store 25 \
			'invalid end state|inguest|holding|slp\[i\]' $B -DMUTANT_C ;;
	d|D) # guest code after the acknowledgement
		run safety mutant-d-early-ack 25 'inguest|holding' $B -DMUTANT_D ;;
	e|E) # guest code entered after a stop's scan missed the vCPU
		run safety mutant-e-no-fence 25 'inguest|holding' $B -DMUTANT_E ;;
	f|F) # the early wake's wave before its CAS: a vCPU that re-parks in
	     # between sleeps on a runnable word, nobody wakes it
		run safety mutant-f-early-wave 25 'invalid end state|slp\[i\]' $B -DMUTANT_F ;;
	g|G) # no backlog bound (every edge joins the backlog, as before the
	     # bound): with a stop unsettled, toggles wrap the backlog and an
	     # edge makes the word runnable (or a stop returns early)
		run safety mutant-g-no-bound 24 'nw&\(\(\(1\|2\)\|4\)\|24\)|nsettled|inguest|holding' \
			$B -DHOLDER=0 -DTOGGLES=2 -DMUTANT_G ;;
	h|H) # a coalesced run counted by its makers' landed bumps alone: one
	     # still in flight is missed
		run safety mutant-h-count 25 'synth_n==gsn' $B -DUNLOCKP=1 -DMUTANT_H ;;
	# Sections (README.md, "Exclusive sections"): small, compiled at -O0.
	i|I) # the end hands the section over without FUTEX_WAKE: the next
	     # owner sleeps on its node forever
		copt=-O0
		run safety mutant-i-end-no-wake 22 'invalid end state' \
			$B $S2 -DSTARTS=0 -DMUTANT_I ;;
	j|J) # PARKED cleared only when the word may run, EX included: the
	     # owner's vCPU, parked by a stop, is never woken
		copt=-O0
		run safety mutant-j-old-parked-rule 22 'invalid end state|slp\[i\]' \
			$B $S2 -DSTARTS=0 -DMUTANT_J ;;
	k|K) # a start on a running VM clears PARKED (may run but for EX) and
	     # wakes nobody: a non-owner sleeps on after the end
		copt=-O0
		run safety mutant-k-cmd-no-wake 22 'inguest|invalid end state|slp\[i\]' \
			$B $S2 -DSTOPS=0 -DMUTANT_K ;;
	l|L) # the owner's rs_park() checks the plain may-run: it parks on a
	     # word that may run but for EX, and nobody wakes it
		copt=-O0
		run safety mutant-l-park-plain 22 'invalid end state|slp\[i\]' \
			$B $S2 -DMUTANT_L ;;
	m|M) # begin returns after the scan, without waiting for the vCPUs
		copt=-O0
		run safety mutant-m-no-wait 22 'inguest' $B $S2 -DSTARTS=0 -DMUTANT_M ;;
	n|N) # begin leaves its own vCPU active (the owner's scan skips it):
	     # two vCPU threads beginning at once wait for each other
		copt=-O0
		run safety mutant-n-vcpu-not-out 22 'lostk|invalid end state' \
			$B $S2 -DSTARTS=0 -DMUTANT_N ;;
	o|O) # a stop edge's scan clears the hint of a vCPU it found out and
	     # does not re-check: the vCPU announced between the visit and the
	     # clear, found its bit still set and runs; a later stop's scans
	     # skip it (P22).  Three stop edges: a toggle, the stop, the async one.
		run safety mutant-o-no-recheck 25 'inguest|holding' \
			$B -DHOLDER=0 -DTOGGLES=1 -DASYNC_STOP=2 -DMUTANT_O ;;
	p|P) # a scanner trusts a hint word loaded while a clearer is between
	     # its clear and its re-check (no clr_start/clr_done check)
		run safety mutant-p-no-clear-check 25 'inguest|holding' \
			$B -DHOLDER=0 -DTOGGLES=1 -DASYNC_STOP=2 -DMUTANT_P ;;
	*) echo "run-model: mutant a|b|...|p" >&2; return 99 ;;
	esac
}

design() {
	case ${1:-} in
	spec-kick) # a stop needs the re-kick timer although no kick was lost
		# (or, found first, the quiet state keeps a stop unsettled
		# although no kick was lost)
		run safety design-spec-kick 24 'lostk\[0\]\|\|lostk\[1\]' \
			-DSPEC_KICK -DHOLDER=0 -DASYNC_STOP=2 -DSPURIOUS=0 -DLOSTKICKS=0 ;;
	spec-recheck) # nobody settles: the word stays settling in the quiet state
		run safety design-spec-recheck 24 'word&\(4\|24\)' \
			-DRECHECK_SPEC -DCOARSE -DHOLDER=0 -DSTOPS=0 -DASYNC_STOP=1 \
			-DSPURIOUS=1 -DLOSTKICKS=0 ;;
	*) echo "run-model: design spec-kick|spec-recheck" >&2; return 99 ;;
	esac
}

usage() { sed -n '6,12p' "$0" >&2; exit 99; }

mode=${1:-bounded}
[ $# -gt 0 ] && shift
case $mode in
bounded) bounded ;;
full)    full ;;
sections) if [ "${1:-}" = full ]; then sections_full; else sections; fi ;;
mutant)  mutant "$@" ;;
design)  design "$@" ;;
one)     [ $# -ge 1 ] || usage
	 k=$1; shift; run "$k" "one-$k" 26 '' "$@" ;;
*) usage ;;
esac

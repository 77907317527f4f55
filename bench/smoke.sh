#!/bin/sh
# SPDX-License-Identifier: MIT
# bench-smoke: run every benchmark of runstate-bench once, tiny, and check
# that each one ran without error under its exact name.  No timing is
# asserted.
#
#   smoke.sh path/to/runstate-bench
#   smoke.sh --planted path/to/runstate-bench-plant-X
#   smoke.sh --planted-kvm path/to/runstate-bench-plant-kvm-stop-no-wait
#   smoke.sh --planted-excl path/to/runstate-bench-plant-excl-skip-vcpu
#
# --planted: the binary is linked with a library that has a planted bug
# (a stop that returns before the vCPUs are out).  Registered with
# should_fail: exits 1 only when the benchmarks' own check reports exactly
# that ("inside a guest slice after the stop returned"), 0 otherwise, so
# the test passes only when the check catches the bug.
# --planted-kvm: the same for stop/runstate_kvm (real KVM vCPUs) and its
# check "a vCPU is inside KVM_RUN after the stop returned".
# --planted-excl: the same for exclusive/runstate (a section that begins
# while another vCPU is still in guest code) and its checks.
set -eu

planted=false
planted_kvm=false
planted_excl=false
if [ "${1:-}" = --planted ]; then
	planted=true
	shift
elif [ "${1:-}" = --planted-kvm ]; then
	planted_kvm=true
	shift
elif [ "${1:-}" = --planted-excl ]; then
	planted_excl=true
	shift
fi
exe=${1:?usage: smoke.sh [--planted] runstate-bench}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# planted VCPUS_FLAG FILTER ERROR WHAT: run the planted library's
# benchmarks; exit 1 ("caught", what should_fail expects) if any reports
# ERROR (an extended regular expression), 0 if none does, 77 if the KVM
# benchmarks are not there.
planted() {
	"$exe" "$1" --benchmark_min_time=0.002 --benchmark_filter="$2" \
		--benchmark_out="$tmp/out.json" --benchmark_out_format=json \
		>"$tmp/console.txt" 2>&1 || true
	if grep -q 'KVM benchmarks not registered' "$tmp/console.txt"; then
		cat "$tmp/console.txt"
		# Skipped (77), not "not caught": there is nothing to check here.
		exit 77
	fi
	if grep -qE "\"error_message\": \"($3)\"" "$tmp/out.json" 2>/dev/null; then
		echo "caught: $(grep -c '"error_occurred": true' "$tmp/out.json") $4"
		exit 1
	fi
	cat "$tmp/console.txt"
	echo "NOT caught"
	exit 0
}

$planted && planted --vcpus=1,3 '^(stop|lock_unlock)/runstate/' \
	'a vCPU is inside a guest slice after the stop returned' \
	'benchmarks saw a vCPU in guest code after the stop'
$planted_kvm && planted --kvm-vcpus=1,2 '^stop/runstate_kvm/' \
	'a vCPU is inside KVM_RUN after the stop returned' \
	'KVM benchmarks saw a vCPU in KVM_RUN after the stop'
# The plant leaves out the vCPU in the highest registry slot, which may be
# the section's owner: 2 to 5 vCPUs, several worlds each.
$planted_excl && planted --vcpus=2,3,4,5 '^exclusive/runstate/' \
	'a vCPU is inside a guest slice after the section began|a guest slice completed during the section' \
	'benchmarks saw another vCPU in guest code during a section'

# 1 vCPU (pinned beside the management thread) and 3 (more threads than
# CPUs on a 2-core machine); a minimum time so short that each benchmark
# makes one or a few iterations.
if ! "$exe" --vcpus=1,3 --kvm-vcpus=1 --benchmark_min_time=0.0001 \
	--benchmark_out="$tmp/out.json" --benchmark_out_format=json \
	>"$tmp/console.txt" 2>&1; then
	cat "$tmp/console.txt"
	echo "bench-smoke: runstate-bench failed (a benchmark reported an error?)" >&2
	exit 1
fi

fail=0
expect() {
	if ! grep -q "\"name\": \"$1\"," "$tmp/out.json"; then
		echo "bench-smoke: missing from the JSON: $1" >&2
		fail=1
	fi
}
# expect_counter NAME COUNTER positive|present: benchmark NAME's entry in
# the JSON has COUNTER, a number above 0 (positive) or any (present).
expect_counter() {
	if ! python3 -c '
import json, sys
doc = json.load(open(sys.argv[1]))
vals = [b[sys.argv[3]] for b in doc["benchmarks"]
        if b.get("name") == sys.argv[2] and sys.argv[3] in b]
sys.exit(0 if vals and (sys.argv[4] == "present" or min(vals) > 0) else 1)
' "$tmp/out.json" "$1" "$2" "$3"; then
		echo "bench-smoke: $1 has no $3 counter $2" >&2
		fail=1
	fi
}

for impl in runstate qemu_condvar qemu_exclusive ck_brlock urcu_qsbr spin_floor plain_load; do
	expect "fastpath/$impl"
done
transition="runstate runstate_sig qemu_condvar qemu_condvar_sig ck_brlock urcu_qsbr spin_floor"
for n in 1 3; do
	for impl in $transition; do
		for b in stop pause_short lock_unlock; do
			expect "$b/$impl/vcpus:$n"
		done
		expect "storm/$impl/vcpus:$n"
		expect "start/$impl/vcpus:$n"
	done
	expect "start/futex_wake_all/vcpus:$n"
	for impl in runstate qemu_exclusive; do
		expect "exclusive/$impl/vcpus:$n"
	done
done

# The paired rows at 1 vCPU say which mode of the machine their samples saw
# (a probe is 0 when vCPU 0, preempted on a busy machine, did not answer
# within a millisecond: present, not necessarily positive, in one sample).
for b in stop pause_short lock_unlock; do
	expect_counter "$b/runstate/vcpus:1" probe_p50_ns present
	expect_counter "$b/runstate/vcpus:1" slow_share present
done

# Real KVM vCPUs, one each: registered where the kvm module is built and
# /dev/kvm is usable (else runstate-bench says why on stderr).
if grep -q 'KVM benchmarks not registered' "$tmp/console.txt"; then
	echo "bench-smoke: $(grep 'KVM benchmarks not registered' "$tmp/console.txt")"
elif grep -q '_kvm/vcpus:' "$tmp/out.json"; then
	for impl in runstate_kvm qemu_condvar_kvm kick_floor_kvm; do
		expect "stop/$impl/vcpus:1"
		expect "start/$impl/vcpus:1"
	done
	# runstate_kvm's rows carry their paired references, the kick floor
	# among them, and every stop row says how often its stopper slept.
	for b in stop start; do
		for c in vs_qemu_condvar_kvm vs_kick_floor_kvm kick_floor_kvm_p50_ns; do
			expect_counter "$b/runstate_kvm/vcpus:1" "$c" positive
		done
	done
	for impl in runstate_kvm qemu_condvar_kvm kick_floor_kvm; do
		expect_counter "stop/$impl/vcpus:1" stopper_sleeps_per_op present
	done
else
	echo "bench-smoke: KVM benchmarks registered, but none in the JSON" >&2
	fail=1
fi

if grep -q '"error_occurred": true' "$tmp/out.json"; then
	grep -B2 -A2 '"error_message"' "$tmp/out.json" >&2
	fail=1
fi
for c in p50_ns p99_ns slices_per_s; do
	if ! grep -q "\"$c\":" "$tmp/out.json"; then
		echo "bench-smoke: no $c counter in the JSON" >&2
		fail=1
	fi
done

# One name per benchmark, everywhere: the listing and the filter see the
# names the reports show (no "/manual_time"), and a filter for one exact
# name runs exactly that benchmark.
"$exe" --vcpus=1,3 --kvm-vcpus=1 --benchmark_list_tests >"$tmp/list.txt"
if grep -q 'manual_time' "$tmp/list.txt" || ! grep -qx 'stop/runstate/vcpus:1' "$tmp/list.txt"; then
	echo "bench-smoke: --benchmark_list_tests does not list the reported names" >&2
	head -5 "$tmp/list.txt" >&2
	fail=1
fi
if [ "$(wc -l <"$tmp/list.txt")" -ne "$(grep -c '"run_type": "iteration"' "$tmp/out.json")" ]; then
	echo "bench-smoke: the listing and the run differ in number" >&2
	fail=1
fi
if ! "$exe" --vcpus=1 --benchmark_min_time=0.0001 --benchmark_filter='^stop/runstate/vcpus:1$' \
	--benchmark_out="$tmp/one.json" --benchmark_out_format=json >/dev/null 2>&1 ||
   [ "$(grep -c '"run_type": "iteration"' "$tmp/one.json")" -ne 1 ] ||
   ! grep -q '"name": "stop/runstate/vcpus:1",' "$tmp/one.json"; then
	echo "bench-smoke: --benchmark_filter='^stop/runstate/vcpus:1\$' did not run exactly that benchmark" >&2
	fail=1
fi

runs=$(grep -c '"run_type": "iteration"' "$tmp/out.json" || true)
echo "bench-smoke: $runs benchmarks ran"
exit $fail

#!/bin/sh
# SPDX-License-Identifier: MIT
#
# bench/device-sweep.sh: the many-core sweep, prepared here and run on a
# borrowed many-core host that has none of the build tools (the project's
# device machine: 16 cores, 15 minutes a session; see docs/performance.md,
# "Not measured: 16 cores").
#
#   bench/device-sweep.sh prepare [DIR]      on this machine (Debian 12)
#   bench/device-sweep.sh run DIR OUT        on the many-core host
#   bench/device-sweep.sh report OUT         back on this machine
#
# prepare: builds runstate-bench twice in release mode, the normal build
#   and the instrumented one (meson -Dinstrument=true, for --cost), with
#   the library, liburcu and Concurrency Kit linked statically, and copies
#   into DIR (default build-device at the top of the source tree) the two
#   binaries, every shared library they load (Google Benchmark has no
#   static archive on Debian, and libstdc++, glibc and its loader come
#   along so that the host's own versions do not matter) and this script.
#   DIR is what travels (about 10 MiB): `run` needs only a POSIX shell.
# run: on the host, within about 6 minutes on 16 cores, writes to OUT
#   host.txt (CPUs, kernel, /dev/kvm), results.json and console.txt (the
#   sweep: --vcpus 1,2,4,8,15, 2 repetitions; the KVM benchmarks skip
#   themselves where /dev/kvm is absent or unusable) and cost.json (--cost:
#   N = 1 to 1,024).  Each part has a time limit (`timeout`), so a hung
#   part cannot eat the host's session; a part that fails is named in
#   OUT/status.txt and the others still run.  SWEEP_VCPUS and SWEEP_FILTER
#   (a Google Benchmark regex) narrow the sweep, for a try on a small host.
# report: the summary, the latency plot (bench/run --report-only) and the
#   cost table and plot (bench/cost_report.py) from OUT, here.
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)

die() {
	echo "device-sweep: $*" >&2
	exit 2
}

# prepare_build BUILDDIR EXTRA-MESON-OPTIONS
prepare_build() {
	# shellcheck disable=SC2086
	[ -f "$1/build.ninja" ] ||
		meson setup "$1" "$src" -Dbench=enabled -Dbuildtype=release \
			-Ddefault_library=static -Dprefer_static=true $2 >"$1.setup.log" 2>&1 ||
		die "meson setup $1 failed: see $1.setup.log"
	ninja -C "$1" bench/runstate-bench >"$1.ninja.log" 2>&1 ||
		die "building $1 failed: see $1.ninja.log"
}

# copy_libs BINARY LIBDIR: every library BINARY loads, and the loader.
copy_libs() {
	ldd "$1" | awk '/=> \// { print $3 } /^[[:space:]]*\/.*ld-linux/ { print $1 }' |
		while read -r lib; do
			cp -L "$lib" "$2/"
		done
}

prepare() {
	dir=${1:-$src/build-device}
	mkdir -p "$dir/lib"
	prepare_build "$dir/normal" ""
	prepare_build "$dir/cost" "-Dinstrument=true"
	cp "$dir/normal/bench/runstate-bench" "$dir/runstate-bench"
	cp "$dir/cost/bench/runstate-bench" "$dir/runstate-bench-cost"
	copy_libs "$dir/runstate-bench" "$dir/lib"
	copy_libs "$dir/runstate-bench-cost" "$dir/lib"
	cp "$0" "$dir/device-sweep.sh"
	git -C "$src" describe --always --dirty >"$dir/source" 2>/dev/null || echo unknown >"$dir/source"
	# What travels: the binaries, the libraries, the script (not the build
	# directories, which stay here for the next prepare).
	set -- "$dir"/lib/ld-linux*
	[ -f "$1" ] || die "no loader among the libraries of runstate-bench"
	echo "device-sweep: prepared $dir ($(du -sh "$dir/lib" | cut -f1) of libraries);" \
		"carry $dir/runstate-bench, $dir/runstate-bench-cost, $dir/lib," \
		"$dir/device-sweep.sh and $dir/source" >&2
}

run() {
	[ $# -eq 2 ] || die "usage: device-sweep.sh run DIR OUT"
	d=$(cd "$1" && pwd) out=$2
	mkdir -p "$out"
	: >"$out/status.txt"
	{
		echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
		echo "cpus: $(getconf _NPROCESSORS_ONLN)"
		echo "kernel: $(uname -r)"
		echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
		echo "kvm: $( [ -r /dev/kvm ] && [ -w /dev/kvm ] && echo usable || echo absent)"
		echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
		echo "source: $(cat "$d/source")"
	} >"$out/host.txt"
	cat "$out/host.txt" >&2
	cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1 | tr -d ',=')
	set -- "$d"/lib/ld-linux*
	loader=$1
	start=$(date +%s)
	# shellcheck disable=SC2016 # expanded by the inner shell: $0 is OUT
	if timeout 270 sh -c '"$@" >"$0/console.txt" 2>&1' "$out" \
		"$loader" --library-path "$d/lib" "$d/runstate-bench" \
		--vcpus="${SWEEP_VCPUS:-1,2,4,8,15}" --benchmark_filter="${SWEEP_FILTER:-.}" \
		--benchmark_min_time=0.015 --benchmark_repetitions=2 \
		--benchmark_enable_random_interleaving=true \
		--benchmark_out="$out/results.json" --benchmark_out_format=json \
		--benchmark_context=cpu_model="$cpu_model",kernel="$(uname -r)",source="$(cat "$d/source")"; then
		echo "sweep: ok in $(( $(date +%s) - start )) s" >>"$out/status.txt"
	else
		echo "sweep: FAILED (status $?) after $(( $(date +%s) - start )) s" >>"$out/status.txt"
	fi
	start=$(date +%s)
	# shellcheck disable=SC2016 # expanded by the inner shell: $0 is OUT
	if timeout 60 sh -c '"$@" >"$0/cost.txt" 2>&1' "$out" \
		"$loader" --library-path "$d/lib" "$d/runstate-bench-cost" \
		--cost --cost-cycles=21 --cost-out="$out/cost.json"; then
		echo "cost: ok in $(( $(date +%s) - start )) s" >>"$out/status.txt"
	else
		echo "cost: FAILED (status $?) after $(( $(date +%s) - start )) s" >>"$out/status.txt"
	fi
	cat "$out/status.txt" >&2
	! grep -q FAILED "$out/status.txt"
}

report() {
	[ $# -eq 1 ] || die "usage: device-sweep.sh report OUT"
	rc=0
	if [ -f "$1/results.json" ]; then
		sh "$src/bench/run" -o "$1" --report-only || rc=1
	else
		echo "device-sweep: no $1/results.json" >&2
		rc=1
	fi
	if [ -f "$1/cost.json" ]; then
		python3 "$src/bench/cost_report.py" "$1/cost.json" "$1" || rc=1
		if command -v gnuplot >/dev/null 2>&1; then
			gnuplot "$1/cost.gp" || rc=1
		fi
	else
		echo "device-sweep: no $1/cost.json" >&2
		rc=1
	fi
	return $rc
}

case ${1:-} in
prepare) shift; prepare "$@" ;;
run) shift; run "$@" ;;
report) shift; report "$@" ;;
*) sed -n '4,30p' "$0" >&2; exit 2 ;;
esac

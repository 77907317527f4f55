#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Build and run, from a QEMU build tree, the QEMU qtests that exercise the
# run-state paths, with a time for each:
#
#   pvpanic-test       guest-panicked via pvpanic, pause and no-pause
#   wdt_ib700-test     watchdog actions: pause (runstate watchdog), reset,
#                      shutdown, none
#   cpu-plug-test      vCPU hot-plug (a new vCPU must follow the run state)
#   test-hmp           every HMP command, stop/cont among them
#   qmp-cmd-test       every query command, query-status among them
#   migration-test     a subset: bad_dest (failed migration restores the
#                      run state), precopy/unix/plain (stop, migrate,
#                      RESUME on the destination), auto_converge (uses
#                      pause-before-switchover and migrate-continue),
#                      multifd/tcp/plain/cancel (migrate_cancel, then a
#                      second migration)
#
# usage: qemu/run-qtests.sh [--qemu BINARY] BUILD_DIR [TEST...]
#   --qemu     run the tests built in BUILD_DIR against BINARY instead of
#              BUILD_DIR's own qemu-system-x86_64, e.g. Debian's stock
#              /usr/bin/qemu-system-x86_64 (the same version), so that
#              one build of the tests serves both binaries
#   BUILD_DIR  a configured build tree; qemu/build.sh prints the binary
#              $CACHE/out/FLAVOR-KEY/qemu-system-x86_64, whose info file
#              names it (build_dir=...); that directory or the binary's
#              directory are accepted.
#   TEST       a subset of the names above (default: all)
#
# The Debian source has no firmware: the tests run QEMU through a wrapper
# named qemu-system-x86_64 (libqtest takes the architecture from the name)
# that adds -L for /usr/share/seabios, /usr/share/qemu and /usr/lib/ipxe/qemu
# (Debian's --firmwarepath; the NIC ROMs are in ipxe-qemu).  Building the tests
# is CPU-heavy: it runs under nice -n ${RUNSTATE_QEMU_NICE:-19}.
# The last line is "N passed, N failed".
set -eu -o pipefail

prog=run-qtests.sh
die() { echo "$prog: error: $*" >&2; exit 1; }

qemu=
if [ "${1:-}" = --qemu ]; then
	[ $# -ge 2 ] || die "--qemu needs a binary"
	qemu=$2
	shift 2
	[ -x "$qemu" ] || die "$qemu is not an executable"
fi
[ $# -ge 1 ] || die "usage: $prog [--qemu BINARY] BUILD_DIR [TEST...]"
bld=$1
shift
if [ -f "$bld/info" ]; then
	bld=$(sed -n 's/^build_dir=//p' "$bld/info")
fi
[ -f "$bld/build.ninja" ] || die "$bld is not a configured QEMU build tree (no build.ninja)"
bld=$(cd "$bld" && pwd)
qemu=${qemu:-$bld/qemu-system-x86_64}
nice_level=${RUNSTATE_QEMU_NICE:-19}

all="pvpanic-test wdt_ib700-test cpu-plug-test test-hmp qmp-cmd-test migration-test"
tests=${*:-$all}
# The migration-test subset (glib -p paths).
migration_paths="/x86_64/migration/bad_dest /x86_64/migration/precopy/unix/plain
/x86_64/migration/auto_converge /x86_64/migration/multifd/tcp/plain/cancel"

targets="qemu-system-x86_64"
for t in $tests; do
	case " $all " in
	*" $t "*) targets="$targets tests/qtest/$t" ;;
	*) die "unknown test '$t' (one of: $all)" ;;
	esac
done

echo "$prog: building $targets" >&2
t0=$(date +%s)
# shellcheck disable=SC2086
if ! nice -n "$nice_level" ninja -C "$bld" $targets >"$bld/qtests-build.log" 2>&1; then
	tail -n 30 "$bld/qtests-build.log" >&2
	die "building the qtests failed (log: $bld/qtests-build.log)"
fi
echo "$prog: built in $(($(date +%s) - t0)) s" >&2

wrap=$(mktemp -d)
trap 'rm -rf "$wrap"' EXIT
cat >"$wrap/qemu-system-x86_64" <<EOF
#!/bin/sh
exec "$qemu" -L /usr/share/seabios -L /usr/share/qemu -L /usr/lib/ipxe/qemu "\$@"
EOF
chmod +x "$wrap/qemu-system-x86_64"
export QTEST_QEMU_BINARY="$wrap/qemu-system-x86_64"
export QTEST_QEMU_IMG="$bld/qemu-img"
export G_TEST_DBUS_DAEMON=/bin/true

passed=0
failed=0
for t in $tests; do
	args=(--tap -k)
	if [ "$t" = migration-test ]; then
		for p in $migration_paths; do args+=(-p "$p"); done
	fi
	s=$(date +%s.%N)
	log=$bld/qtest-$t${qemu:+-$(echo "$qemu" | tr / _)}.log
	if (cd "$bld" && timeout 900 "./tests/qtest/$t" "${args[@]}") >"$log" 2>&1; then
		r=PASS
		passed=$((passed + 1))
	else
		r=FAIL
		failed=$((failed + 1))
	fi
	e=$(date +%s.%N)
	n_ok=$(grep -c '^ok ' "$log" || true)
	n_bad=$(grep -c '^not ok ' "$log" || true)
	printf '%s %-16s %7.1f s  %s ok, %s not ok  (%s)\n' "$r" "$t" \
		"$(awk -v s="$s" -v e="$e" 'BEGIN { print e - s }')" "$n_ok" "$n_bad" "$log"
	[ "$r" = PASS ] || grep -E '^not ok|ERROR|Bail' "$log" | head -n 5 | sed 's/^/    /'
done
echo "binary: $qemu"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

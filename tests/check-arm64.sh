#!/bin/sh
# Weak-memory code generation on arm64 (docs/weak-memory.md).  Cross-builds
# the library with tests/cross-aarch64.txt and checks, with
# aarch64-linux-gnu-objdump, that
#
#  1. the inline fast path rs_may_run(), compiled into the loop
#     `do run_slice(); while (rs_may_run(rs));`, is a plain LDR, a TST/ANDS
#     and a branch: no LDAR, no DMB, no atomic read-modify-write;
#  2. in rs_ack_enter() (lib/ack.c), the out->active announcement is an
#     atomic OR on the state whose write is a store-release (LDSETL/LDSETAL,
#     an LDAXR/STLXR loop, or the outline-atomics helper
#     __aarch64_ldset4_acq_rel), then an LDAR of the word: ordered by the
#     architecture's release-then-acquire rule (P1, the vCPU's half; a
#     relaxed OR followed by DMB ISH is accepted too);
#  3. rs_ack_scan() executes DMB ISH after entering and before it loads any
#     vCPU state (P1, the stopper's half);
#  4. the outline-atomics helpers the library calls for 2 are the real thing
#     (LSE LDSET and an LDXR/STXR fallback).
#
# Usage: check-arm64.sh [BUILD-DIR]   (default: build-arm64 in the source tree)
# CROSS_PREFIX (default aarch64-linux-gnu-) names the toolchain of the direct
# compiles and objdump; the meson build uses tests/cross-aarch64.txt.
#
# Exit status:
#   0   every check passed;
#   1   the project's aarch64 build or a check failed (the disassembly is
#       printed): a real failure, possibly a code-generation regression;
#   77  cannot run here (a skip; the reason is printed): a tool is missing,
#       or the cross toolchain cannot compile and link a trivial C file
#       (typically gcc-aarch64-linux-gnu without libc6-dev-arm64-cross,
#       which it only Recommends).
# With RS_REQUIRE_TOOLCHAINS=1 (tests/run-all sets it: tests/deps.sh has
# installed the toolchain), "cannot run here" is a failure: exit 1, with
# the same reason.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-arm64}
prefix=${CROSS_PREFIX:-aarch64-linux-gnu-}
CC=${prefix}gcc
OBJDUMP=${prefix}objdump

# cannot_run REASON: this machine cannot run the check.  That is a skip,
# never a failure that looks like a code-generation regression, except
# where the caller promised the toolchain (RS_REQUIRE_TOOLCHAINS=1).
cannot_run() {
	if [ "${RS_REQUIRE_TOOLCHAINS:-0}" = 1 ]; then
		echo "FAIL: arm64-codegen cannot run here: $1"
		echo "FAIL: RS_REQUIRE_TOOLCHAINS=1 (tests/run-all): tests/deps.sh installs this toolchain, so it must work; this is an installation problem, not a code-generation result"
		exit 1
	fi
	echo "SKIP: arm64-codegen cannot run here: $1"
	exit 77
}

for t in $CC $OBJDUMP meson ninja pkg-config; do
	if ! command -v "$t" >/dev/null 2>&1; then
		cannot_run "$t not found (apt-get install gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu libc6-dev-arm64-cross meson ninja-build pkg-config)"
	fi
done

mkdir -p "$build"

# --- Is the cross toolchain usable? -----------------------------------------
# Before anything of the project's: compile a trivial C file that includes
# C library headers, and link it into a shared object with -pthread, as the
# library's build does.  If this fails, the toolchain is incomplete (no
# arm64 libc headers or start files), and the project is not to blame.
# meson's own sanity check of a cross compiler only compiles a file with no
# #include, so it would let such a toolchain through to a failed build.
probe=$build/toolchain-probe
rm -rf "$probe"
mkdir -p "$probe"
cat >"$probe/probe.c" <<'EOF'
#include <stdint.h>
#include <stdlib.h>
#include <pthread.h>
uint32_t probe(void);
uint32_t probe(void)
{
	return (uint32_t)(getenv("PROBE") != NULL) + (uint32_t)sizeof(pthread_t);
}
EOF
if ! $CC -std=c11 -O2 -fPIC -c "$probe/probe.c" -o "$probe/probe.o" >"$probe/log" 2>&1 ||
   ! $CC -shared -pthread "$probe/probe.o" -o "$probe/probe.so" >>"$probe/log" 2>&1; then
	sed 's/^/   /' "$probe/log"
	cannot_run "toolchain unusable: $CC cannot compile and link a trivial C file with <stdint.h> and <stdlib.h> (apt-get install libc6-dev-arm64-cross)"
fi
if ! $OBJDUMP -f "$probe/probe.so" 2>/dev/null | grep -q 'elf64-littleaarch64'; then
	cannot_run "toolchain unusable: $CC does not produce aarch64 objects that $OBJDUMP reads"
fi

# xcc ARGS...: a direct compile of the project's code.  The toolchain
# passed the probe above, so a failure here is the project's: exit 1.
xcc() {
	$CC "$@" || { echo "FAIL: $CC failed on the project's code: $*"; exit 1; }
}

# --- Build -----------------------------------------------------------------
if [ ! -f "$build/build.ninja" ]; then
	cross="--cross-file $root/tests/cross-aarch64.txt"
	extra=
	if ! PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig \
	     pkg-config --exists liburcu-bp 2>/dev/null; then
		# No liburcu-bp for arm64 (its Debian package would be
		# liburcu-dev:arm64).  Its headers are architecture-neutral
		# (urcu/arch.h dispatches on __aarch64__), and we only read
		# the code, never run it: compile against the build
		# machine's headers and leave the urcu symbols undefined in
		# the shared library (-Db_lundef=false).
		hinc=$(pkg-config --variable=includedir liburcu-bp 2>/dev/null || true)
		if [ -z "$hinc" ] || [ ! -d "$hinc/urcu" ]; then
			cannot_run "liburcu-bp headers not found for the stub (apt-get install liburcu-dev)"
		fi
		stub=$build/urcu-stub
		mkdir -p "$stub/include" "$stub/pkgconfig"
		for h in "$hinc"/urcu "$hinc"/urcu*.h; do
			ln -sf "$h" "$stub/include/"
		done
		cat >"$stub/pkgconfig/liburcu-bp.pc" <<EOF
Name: liburcu-bp
Description: headers only, for check-arm64.sh (never linked)
Version: 0.13
Cflags: -I$stub/include
Libs:
EOF
		cat >"$stub/cross-urcu.ini" <<EOF
[properties]
pkg_config_libdir = ['$stub/pkgconfig']
EOF
		cross="$cross --cross-file $stub/cross-urcu.ini"
		extra=-Db_lundef=false
	fi
	# shellcheck disable=SC2086
	if ! meson setup "$build" "$root" $cross -Dtests=false -Dbench=disabled \
		$extra >"$build/setup.log" 2>&1; then
		cat "$build/setup.log"
		echo "FAIL: meson setup for aarch64"
		exit 1
	fi
fi
# The library only: the tools would need liburcu-bp for arm64 to link.
# Regenerate a build directory left by an earlier run first: meson compile
# names the target from the introspection data, which would otherwise still
# carry the version of the run that configured it.
if ! { ninja -C "$build" build.ninja && meson compile -C "$build" runstate; } \
	>"$build/ninja.log" 2>&1; then
	cat "$build/ninja.log"
	echo "FAIL: the aarch64 build"
	exit 1
fi
so=$(find "$build" -maxdepth 1 -name 'librunstate.so.*.*.*' -type f | head -n 1)
if [ -z "$so" ]; then
	echo "FAIL: no librunstate.so in $build"
	exit 1
fi
file_ok=$($OBJDUMP -f "$so" | grep -c 'elf64-littleaarch64' || true)
if [ "$file_ok" -eq 0 ]; then
	echo "FAIL: $so is not an aarch64 object"
	exit 1
fi

# The fast path, compiled as an emulator would (-O2, the installed header).
cat >"$build/fastpath.c" <<'EOF'
#include <runstate.h>
void run_slice(void);
void fast_loop(rs_runstate *rs);
void fast_loop(rs_runstate *rs)
{
	do
		run_slice();
	while (rs_may_run(rs));
}
EOF
xcc -std=c11 -O2 -I"$root/lib/include" -c "$build/fastpath.c" -o "$build/fastpath.o"

# --- Helpers ---------------------------------------------------------------
# func FILE REGEX: the disassembly of the functions whose name matches
# REGEX (instructions only: "addr: mnemonic operands").
func() {
	$OBJDUMP -d --no-show-raw-insn "$1" | awk -v re="$2" '
		/^[0-9a-f]+ <.*>:$/ { name = $2; sub(/^</, "", name); sub(/>:$/, "", name);
				       on = (name ~ re); if (on) print "<" name ">"; next }
		/^$/ { on = 0 }
		on && /^ *[0-9a-f]+:/ { print }'
}

fails=0
fail() {
	echo "FAIL: $1"
	fails=$((fails + 1))
}

# --- 1. the fast path --------------------------------------------------------
# check_fastpath DISASSEMBLY: 0 if the loop is LDR, TST/ANDS, B.cond and
# nothing orders memory.
check_fastpath() {
	# The loop: from the call to run_slice to the conditional branch back.
	loop=$(echo "$1" | awk '/\tbl\t/ && /run_slice/ { on = 1; next } on { print } on && /\tb\.(eq|ne|none|any)|\tcbn?z\t|\ttbn?z\t/ { exit }')
	# W or X: the word is as wide as rs_runstate's member (32 bits
	# before the 64-bit word, 64 since).
	echo "$loop" | grep -Eq '	ldr	[wx][0-9]+, \[x[0-9]+\]' || { echo "   no plain LDR of the word"; return 1; }
	echo "$loop" | grep -Eq '	(tst|ands)	' || { echo "   no TST/ANDS against RS_NORUN_MASK"; return 1; }
	echo "$loop" | grep -Eq '	b\.(eq|ne|none|any)	' || { echo "   no conditional branch back"; return 1; }
	if echo "$1" | grep -Eq '	(ldar|ldapr|ldaxr|ldxr|stlr|dmb|dsb|isb|ldset|cas)|__aarch64_'; then
		echo "   an acquire load, a barrier or an atomic RMW"
		return 1
	fi
	echo "   loop body after the call: $(echo "$loop" | grep -c '	') instructions"
}

fp=$(func "$build/fastpath.o" '^fast_loop$')
echo "== 1. rs_may_run() in do run_slice(); while (rs_may_run(rs)); (fastpath.o)"
echo "$fp"
check_fastpath "$fp" || fail "fast path (rs_may_run)"

# --- 2. rs_ack_enter(): atomic OR with release, then LDAR -------------------
# check_enter DISASSEMBLY: print the sequence and return 0 if an atomic OR on
# the state is ordered before the next LDAR of the word, with no store, call
# or barrier in between.  Ordered means: the OR's write is a store-release
# (LSE LDSETL/LDSETAL, the outline helper __aarch64_ldset4_rel/_acq_rel, or
# the STLXR that closes an exclusive loop) and the LDAR is a load-acquire,
# which the architecture keeps in order (weak-memory.md, A1); or a relaxed
# OR followed by DMB ISH (A2).  A relaxed OR straight into LDAR is not
# ordered, and neither is a load of the word before the OR (the no-fence
# plant).
check_enter() {
	# An OR of VS_ACTIVE (#0x1): LDSET* whose source register was just
	# loaded with #0x1, the outline helper called with w0 = #0x1, or an
	# exclusive loop whose ORR adds #0x1 (rs_park() ORs VS_PARK, #0x4).
	echo "$1" | awk '
	# mov1[r]: register r holds #0x1 (set by a MOV, not overwritten since,
	# in address order: gcc hoists the constant out of the loop).
	function one(r) { return r in mov1 }
	function or_found(rel) { if (rel) { st = 2; how = "" } else st = 1; start = $0 }
	/^</ { st = 0; fn = $0; delete mov1; next }
	{
		split($0, f, "\t"); op = f[2]; d = f[3]; sub(/,.*/, "", d)
		if (d ~ /^[wx][0-9]+$/ && op !~ /^(st|cmp|cmn|tst|cb|tb|b|ldset|prfm)/) {
			r = substr(d, 2)
			if (op == "mov" && $0 ~ /, #0x1( |$)/) mov1[r] = 1; else delete mov1[r]
		}
	}
	/\tldset[a-z]*\t/ {
		r = $0; sub(/.*\tldset[a-z]*\tw/, "", r); sub(/,.*/, "", r)
		if (one(r)) { or_found($0 ~ /\tldset(a)?l\t/); next } }
	/\tbl\t.*<__aarch64_ldset4_/ {
		if (one("0")) { or_found($0 ~ /_(acq_rel|rel)>/); next } }
	/\tld(a)?xr\t/ { ldx = 1; orr1 = 0 }
	ldx && /\torr\tw[0-9]+, w[0-9]+, #0x1( |$)/ { orr1 = 1 }
	/\tst(l)?xr\t/ && ldx && orr1 { ldx = 0; or_found($0 ~ /\tstlxr\t/); next }
	st == 1 && /\tdmb\tish$/ { st = 2; how = $0; next }
	st == 1 && (/\tld[a-z]*\t/ || /\tst[a-z]*\t/ || /\tdmb\t/ || /\tbl\t/) { st = 0 }
	st == 2 && /\tldar\t/ { print "   " fn; print "   " start; if (how != "") print "   " how; print "   " $0; st = 0; n++; next }
	st == 2 && (/\tst[a-z]*\t/ || /\tbl\t/ || /\tret/) { st = 0 }
	END { if (!n) exit 1 }'
}

# rs_ack_enter() is the library's (hidden, not exported): a local symbol.
enter_re='^rs_ack_enter(\.|$)'
ve=$(func "$so" "$enter_re")
echo
echo "== 2. rs_ack_enter(): state |= ACTIVE (seq_cst); load word (seq_cst)"
if ! check_enter "$ve"; then
	echo "$ve"
	fail "rs_ack_enter(): no ordered atomic OR -> LDAR sequence"
fi

# --- 3. rs_ack_scan(): DMB ISH on entry ---------------------------------------
# check_scan DISASSEMBLY: 0 if DMB ISH comes before any load, call or branch.
check_scan() {
	first=$(echo "$1" | awk '
		/\tdmb\tish$/ { print "dmb"; exit }
		(/\tld[a-z]*\t/ && !/\tldp\t/) || /\tbl\t/ || /\tb\t/ || /\tb\./ || /\tcbn?z\t/ || /\ttbn?z\t/ || /\tret/ {
			print "first: " $0; exit }')
	[ "$first" = dmb ] || { echo "   no DMB ISH before the first access ($first)"; return 1; }
}

scan=$(func "$so" '^rs_ack_scan$')
echo
echo "== 3. rs_ack_scan(): fence(seq_cst) before loading any vCPU state"
echo "$scan" | head -n 24
check_scan "$scan" || fail "rs_ack_scan(): DMB ISH is not the first ordering instruction"

# --- 2 and 3 with the atomics inline: LSE (armv8.1-a) and LL/SC -------------
echo
echo "== 2 and 3 again, lib/ack.c compiled with inline atomics"
for mode in -march=armv8.1-a -mno-outline-atomics; do
	o="$build/ack$mode.o"
	xcc -std=c11 -O2 $mode -DRS_BUILDING_LIB=1 -D_GNU_SOURCE -I"$root/lib/include" \
		-c "$root/lib/ack.c" -o "$o"
	echo "-- $mode"
	check_enter "$(func "$o" "$enter_re")" || fail "rs_ack_enter() with $mode"
	check_scan "$(func "$o" '^rs_ack_scan$')" || fail "rs_ack_scan() with $mode"
done

# --- 4. the outline-atomics helpers ------------------------------------------
if echo "$ve" | grep -q '__aarch64_ldset4_'; then
	helper=$(echo "$ve" | grep -o '__aarch64_ldset4_[a-z_]*' | head -n 1)
	h=$(func "$so" "^$helper\$")
	echo
	echo "== 4. $helper (outline atomics: LSE when the CPU has it, else LL/SC)"
	echo "$h" | sed 's/^/   /'
	echo "$h" | grep -Eq '	ldset[a-z]*	' || fail "$helper: no LDSET"
	if ! echo "$h" | grep -Eq '	ld(a)?xr	' || ! echo "$h" | grep -Eq '	st(l)?xr	'; then
		fail "$helper: no LDXR/STXR fallback"
	fi
fi

# --- The checks must catch planted bugs ---------------------------------------
echo
echo "== planted bugs (each must be caught)"
# 1': a fast path with an acquire load: rs_may_run() with __ATOMIC_ACQUIRE,
# on the header's own word (whatever its width).
cat >"$build/fastpath-acquire.c" <<'EOF'
#include <runstate.h>
void run_slice(void);
void fast_loop(rs_runstate *rs);
void fast_loop(rs_runstate *rs)
{
	do
		run_slice();
	while ((__atomic_load_n(&rs->word_private, __ATOMIC_ACQUIRE) & RS_NORUN_MASK) == 0);
}
EOF
xcc -std=c11 -O2 -I"$root/lib/include" -c "$build/fastpath-acquire.c" -o "$build/fastpath-acquire.o"
if check_fastpath "$(func "$build/fastpath-acquire.o" '^fast_loop$')" >/dev/null; then
	fail "check 1 accepted a fast path with an acquire load"
else
	echo "   check 1 rejects a fast path with LDAR: caught"
fi
# 2': the library's own planted bug no-fence (the word is loaded before
# the announcement), from the meson build's plant library.
if meson compile -C "$build" runstate-plant-no-fence >>"$build/ninja.log" 2>&1; then
	pl=$(find "$build/librunstate-plant-no-fence.a.p" -name '*ack.c.o' | head -n 1)
	if check_enter "$(func "$pl" "$enter_re")" >/dev/null; then
		fail "check 2 accepted the planted no-fence library"
	else
		echo "   check 2 rejects the no-fence plant (load before announce): caught"
	fi
else
	fail "could not build the no-fence plant"
fi

# 2'': the announcement's OR made relaxed (no store-release, no fence): a
# copy of lib/ack.c, outside the source tree, with the inline forms too.
sed 's/atomic_fetch_or_explicit(&v->state, VS_ACTIVE, memory_order_seq_cst)/atomic_fetch_or_explicit(\&v->state, VS_ACTIVE, memory_order_relaxed)/' \
	"$root/lib/ack.c" >"$build/ack-relaxed-or.c"
if cmp -s "$root/lib/ack.c" "$build/ack-relaxed-or.c"; then
	fail "could not plant the relaxed OR in rs_ack_enter() (update this script)"
fi
for mode in "" -march=armv8.1-a -mno-outline-atomics; do
	xcc -std=c11 -O2 $mode -DRS_BUILDING_LIB=1 -D_GNU_SOURCE -I"$root/lib/include" -I"$root/lib" \
		-c "$build/ack-relaxed-or.c" -o "$build/ack-relaxed-or.o"
	if check_enter "$(func "$build/ack-relaxed-or.o" "$enter_re")" >/dev/null; then
		fail "check 2 accepted a relaxed announcement OR ${mode:-(outline atomics)}"
	else
		echo "   check 2 rejects a relaxed announcement OR ${mode:-(outline atomics)}: caught"
	fi
done

# 3': rs_ack_scan() without its fence: a copy of lib/ack.c, outside the
# source tree, with the fence in rs_ack_scan() removed.
awk '/^(RS_HOT )?bool rs_ack_scan\(/ { f = 1 }
     f && /atomic_thread_fence\(memory_order_seq_cst\);/ { sub(/atomic_thread_fence\(memory_order_seq_cst\);/, "/* planted: no fence */"); n++ }
     f && /^}/ { f = 0 }
     { print }
     END { if (n != 1) exit 1 }' "$root/lib/ack.c" >"$build/ack-nofence.c" ||
	fail "could not plant the missing fence in rs_ack_scan() (update this script)"
xcc -std=c11 -O2 -DRS_BUILDING_LIB=1 -D_GNU_SOURCE -I"$root/lib/include" -I"$root/lib" \
	-c "$build/ack-nofence.c" -o "$build/ack-nofence.o"
if check_scan "$(func "$build/ack-nofence.o" '^rs_ack_scan$')" >/dev/null; then
	fail "check 3 accepted rs_ack_scan() without its fence"
else
	echo "   check 3 rejects rs_ack_scan() without fence(seq_cst): caught"
fi

echo
if [ "$fails" -ne 0 ]; then
	echo "arm64-codegen: $fails check(s) FAILED ($so)"
	exit 1
fi
echo "arm64-codegen: all checks passed ($so, $($CC -dumpfullversion))"

/* SPDX-License-Identifier: MIT */
/*
 * test_transition: an independent oracle for rs_transition() and the pure
 * helpers of runstate.h (rs_decode, rs_legacy_status, rs_may_run,
 * rs_pause_rank, the name tables, rs_strerror).
 *
 * The reference model below was written from the contract text, the public
 * header and the stated design rules (the rules below; the settler's steps
 * as the design describes them), never copied from the library's sources.
 * It has its own bit positions (checked against the header's macros in
 * part 1), its own rank table, its own name tables and its own
 * legacy-status priority list.
 *
 * The word is 64 bits: the lock bits, io-error, EX, the pause reason, RV, the
 * overflow bit OV and the 7-bit backlog BL (entries not yet settled) in bits
 * 0..19, which are exactly the bits that keep vCPUs out; then PK (bit 20),
 * LW (21), the generation GN of the coalesced edges (22: the settler flips
 * it when it absorbs a run), the coalesced count COAL (bits 23..31, modulo
 * 2^9) and the 32-bit edge counter E on top.  The rules checked (the
 * contract of rs_transition(), max_backlog `m`):
 *   - the semantic part (locks, io-error, pause reason, rank rule, errors);
 *   - an edge (running-ness changes) whose old word has OV clear and a
 *     backlog below m joins the backlog: E + 1 modulo 2^32, BL + 1, COAL
 *     untouched (the bits below never see a carry);
 *   - any other edge is coalesced: with tail = E - (COAL & 1) if OV is set
 *     in the old word, else E (modulo 2^32), and n = COAL + 1 modulo 2^9 if
 *     OV is set, else 1, the new word has OV set, COAL = n and
 *     E = tail + (n & 1) modulo 2^32; BL is kept.  So E moves between the
 *     backlog's last edge (tail) and the one after it, and its parity stays
 *     the running flag;
 *   - a new word that may run (none of bits 0..19) has PK cleared;
 *   - everything else (LW, GN, PK otherwise, COAL when no edge is
 *     coalesced, EX, RV, the reserved lock bits) is kept.
 * GN and the 9-bit COAL are the current design (the header's diagram); the
 * REF_GN and REF_COAL_* macros and part 3's hand-worked words are what
 * knows them.
 *
 * Parts:
 *   1. static checks of the word layout against the diagram in runstate.h,
 *      and that the fields tile the 64-bit word;
 *   2. names, ranks, errors;
 *   3. rs_decode(), rs_legacy_status() and rs_may_run() on every enumerated
 *      word, and words worked out by hand (a run of coalesced edges, COAL
 *      wrapping from 511 to 0, the tail below edge 0, E wrapping, GN);
 *   4. every command with every argument (valid and invalid, unknown command
 *      codes too) on every semantic state (4 lock bits x io-error x 8 pause
 *      reasons = 256):
 *      a. with 2535 (command, arg, arg2) triples, in 15 bookkeeping contexts
 *         (max_backlog, backlog, OV, COAL, GN, PK, LW, reserved bits, edge
 *         counter), three of them with an invalid max_backlog;
 *      b. with the 50 valid (command, arg, arg2) triples, in every
 *         combination of max_backlog 1, 2, 3, 64, 126, 127; a backlog of 0,
 *         1, m-1, m, m+1 and 127; OV clear and set; PK, LW and GN all
 *         clear and all set; edge counters 0, 1, 2, 2^31-1, 2^31,
 *         0xfffffffe and 0xffffffff (wrap-around, and the tail below 0);
 *         COAL 0, 1, 2, 510 and 511 (wrap-around); and each (edge, COAL)
 *         pair once more with reserved bits; then every max_backlog 1..127
 *         against every backlog 0..127, OV clear (COAL 0 and 5) and set
 *         (COAL 0, 1, 2, 511), GN clear and set, on stop edges at E
 *         0xffffffff and 0, a start edge and a command that makes none;
 *         then with 10 invalid max_backlog values (0, 128, ...), some in
 *         the middle of a coalesced run;
 *   5. reachability: breadth-first search from the initial word (edge 0,
 *      prelaunch), for max_backlog 1, 2 and 64, through the valid commands
 *      and the steps the library takes around rs_transition() (the
 *      settler's claim and absorb, parking, lock waiters), checking the
 *      invariants on every reachable word with E < 16 and COAL < 8;
 *   6. random walks (fixed seeds) through both models in lockstep, with the
 *      same library steps between commands and a settler that alternates
 *      between fast and slow phases (and, in some walks, stalls), so that
 *      the backlog fills, overflows, is absorbed and drains: 10^6 commands
 *      from the initial word (max_backlog 64), 200,000 each with max_backlog
 *      1 and 2, 400,000 with 127, 100,000 from just below the edge
 *      counter's wrap-around (max_backlog 3); then edge-heavy walks whose
 *      settler stalls for thousands of commands, so that runs of more than
 *      2^9 coalesced edges wrap COAL (max_backlog 1 and 127, 300,000
 *      each), and 100,000 commands coalescing across E's wrap-around
 *      (max_backlog 1, the tail at 0xffffffff).  Besides the invariants,
 *      each walk keeps its own ledger of unsettled edges (below).
 *
 * Invariants of every reachable word (parts 5 and 6), for max_backlog m:
 *   backlog <= m; E parity == running-ness; OV set => the word cannot run;
 *   a word that may run never has PK; COAL == 0 while OV is clear; reserved
 *   bits never set.  Part 5 adds: OV set => COAL != 0 (no run there reaches
 *   2^9 edges).
 *
 * The walks' ledger (part 6), kept from the edges the walk made and the
 * settler's steps alone: the backlog's entries in order (an appended edge is
 * an entry of one edge; absorb turns the pending run of coalesced edges
 * into one entry of n edges and flips GN), the pending run's length (not
 * reduced modulo 2^9), and E of the last settled entry.  An entry of one
 * edge settles 1 edge number; a run of n edges settles 1 if n is odd and 2
 * if n is even (absorb: end = tail + 1 or 2).  After every step: BL == the
 * number of entries; OV set exactly while the pending run is not empty;
 * COAL == the pending length modulo 2^9; with OV clear E == settled + the
 * entries' sum; with OV set the tail (E - (COAL & 1)) == that sum and E ==
 * it plus (pending & 1); GN == the start's GN flipped once per absorb.
 *
 * Assumptions where the contract and header leave room (the lead checks them
 * against the implementation; each failure message names the rule):
 *
 *  A1 Argument validation comes before any state-dependent error: an invalid
 *     argument gives RS_EINVAL even when the state would also give
 *     RS_ENOTHELD, RS_EBUSY, RS_ENEEDFORCE or RS_ENEEDRESET (rsctl: "syntax is
 *     checked before anything changes").
 *  A2 RS_CMD_START: arg must be 0 or RS_START_FORCE; any other value
 *     (2, 3, -1, ...) is RS_EINVAL.
 *  A3 Arguments a command does not use (arg and arg2 of STOP, RETRY, CONT,
 *     RESET, IO_ERROR; arg2 of START, PAUSE, LOCK) are either ignored or
 *     rejected with RS_EINVAL: both are accepted here, and the number of
 *     rejections is printed.  The walks only pass 0 there.
 *  A4 Lock numbers 4 and 5 (reserved bits) are invalid arguments, like any
 *     number outside 0..3.
 *  A5 UNLOCK's arg2 is RS_PAUSE_NONE for a plain unlock, else a pause reason
 *     applied under the rank rule in the same step; arg2 outside 0..7 is
 *     RS_EINVAL.
 *  A6 LOCKWAIT does not change what the pure function computes: the
 *     hand-over to a waiter happens around it.  UNLOCK clears the bit even
 *     when LOCKWAIT is set, and LOCKWAIT is preserved.  LOCK of a held bit is
 *     RS_EBUSY (never sets LOCKWAIT itself).
 *  A7 PARKED is cleared whenever the new word lets vCPUs run
 *     ((new & RS_W_NORUN_MASK) == 0) and preserved otherwise; this includes
 *     a word that was already runnable with PARKED set and a command that
 *     changes nothing semantic (then new != old).  Since every edge leaves
 *     the backlog nonzero or OV set, an edge never makes a runnable word, so
 *     PARKED is only cleared on such already-runnable words (which no
 *     instance reaches: part 5 shows it); a coalesced edge keeps PK.
 *  A8 rs_transition(..., NULL) is RS_EINVAL (contract: a NULL pointer is an
 *     invalid argument).
 *  A9 START, RETRY, CONT and RESET never fail except as the contract says
 *     (START: needs-force, needs-reset; CONT: needs-reset), including on a
 *     running VM (a no-op that returns 0).
 * A10 rs_pause_parse("none") is RS_PAUSE_NONE (it is the inverse of
 *     rs_pause_name, and "none" is a name); rs_lock_parse("none") is
 *     RS_EINVAL.
 * A11 A max_backlog outside 1..RS_W_BACKLOG_MAX is RS_EINVAL for every
 *     command, before anything else (A1): also for a command that would make
 *     no edge or fail with a state-dependent error; *out stays untouched.
 * A12 The backlog rule compares the old word's backlog with max_backlog
 *     even when the backlog exceeds it (a word no instance with that
 *     max_backlog reaches): the edge is then coalesced (OV set).  With OV
 *     set an edge is coalesced even when the backlog has room (or is empty:
 *     the run has not been absorbed yet).
 * A13 The reserved bits are kept as they are: the reserved lock bits 4 and
 *     5 count as stop bits (a word carrying one is not running, so clearing
 *     the named reasons makes no edge), EX and RV only keep vCPUs out.
 *     rs_legacy_status() ignores them all (it names the four locks, the
 *     pause reason, io-error), and rs_decode()'s `locks` is the whole
 *     six-bit lock field.  The enumeration (part 4) puts them in a few
 *     words; no reachable word carries one (part 5).
 * A14 COAL with OV clear (no reachable word has it: part 5) is left as it
 *     is by an appended edge and by a command that makes no edge; a
 *     coalesced edge from such a word starts a new count at 1 whatever COAL
 *     held, from tail = E.  OV set with COAL 0 (a run of a multiple of 2^9
 *     edges) is an even run: tail = E.  COAL + 1 wraps from 511 to 0
 *     without a carry into E, and tail and E wrap modulo 2^32 without a
 *     borrow or carry into COAL (the tail of E 0 with an odd COAL is
 *     0xffffffff).
 * A16 rs_transition() keeps GN as it is, on every command and every kind of
 *     edge (only the settler's absorb flips it); GN does not keep vCPUs out
 *     and rs_decode() ignores it.
 * A15 rs_decode() reports E as it is (`edge`, also while edges are being
 *     coalesced, when E is the tail or the tail + 1), settling as BL != 0
 *     or OV, and ignores COAL; rs_may_run() and rs_legacy_status() ignore
 *     COAL, GN, PK and LW.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runstate.h"

/* ---------------------------------------------------------------------------
 * The reference model's own bit positions, from the header's diagram.
 */
#define REF_LOCKS_NAMED UINT64_C(0x000000000000000f)  /* bits 0..3 */
#define REF_LOCKS_RSV   UINT64_C(0x0000000000000030)  /* bits 4, 5 */
#define REF_IO          UINT64_C(0x0000000000000040)  /* bit 6 */
#define REF_EX          UINT64_C(0x0000000000000080)  /* bit 7 */
#define REF_PAUSE_SHIFT 8                             /* bits 8..10 */
#define REF_PAUSE       UINT64_C(0x0000000000000700)
#define REF_RV          UINT64_C(0x0000000000000800)  /* bit 11 */
#define REF_OV          UINT64_C(0x0000000000001000)  /* bit 12 */
#define REF_BL_SHIFT    13                            /* bits 13..19 */
#define REF_BL          UINT64_C(0x00000000000fe000)
#define REF_BL_MAX      127u
#define REF_PK          UINT64_C(0x0000000000100000)  /* bit 20 */
#define REF_LW          UINT64_C(0x0000000000200000)  /* bit 21 */
#define REF_GN          UINT64_C(0x0000000000400000)  /* bit 22 */
#define REF_COAL_SHIFT  23                            /* bits 23..31 */
#define REF_COAL_BITS   9
#define REF_COAL_MOD    (1u << REF_COAL_BITS)         /* counted modulo 2^9 */
#define REF_COAL        ((uint64_t)(REF_COAL_MOD - 1) << REF_COAL_SHIFT)
#define REF_EDGE_SHIFT  32                            /* bits 32..63 */
#define REF_EDGE        UINT64_C(0xffffffff00000000)
/* The VM is stopped while a lock bit (reserved ones too, A13), io-error or
 * a pause reason is set. */
#define REF_STOP        (REF_LOCKS_NAMED | REF_LOCKS_RSV | REF_IO | REF_PAUSE)
/* vCPUs stay out while any of the low 20 bits is set. */
#define REF_NORUN       UINT64_C(0x00000000000fffff)
/* Bits no reachable word carries. */
#define REF_RESERVED    (REF_LOCKS_RSV | REF_EX | REF_RV)
#define REF_BL_N(n)     ((uint64_t)(n) << REF_BL_SHIFT)
#define REF_COAL_N(c)   ((uint64_t)((c) & (REF_COAL_MOD - 1)) << REF_COAL_SHIFT)
#define REF_EDGE_N(e)   ((uint64_t)(uint32_t)(e) << REF_EDGE_SHIFT)

/* ---------------------------------------------------------------------------
 * 1. The layout, as drawn in the header's diagram.
 */
_Static_assert(sizeof(((struct rs_runstate_head *)0)->word) == 8, "the word is 64 bits");
_Static_assert(sizeof(((struct rs_state *)0)->edge) == 4, "decoded edge: 32 bits");
_Static_assert(RS_W_LOCK(RS_LOCK_DEBUG) == 0x01u, "debug is bit 0");
_Static_assert(RS_W_LOCK(RS_LOCK_SAVEVM) == 0x02u, "savevm is bit 1");
_Static_assert(RS_W_LOCK(RS_LOCK_PRE_MIGRATE) == 0x04u, "pre-migrate is bit 2");
_Static_assert(RS_W_LOCK(RS_LOCK_RESTORE) == 0x08u, "restore is bit 3");
_Static_assert(RS_W_LOCK(5) == UINT64_C(0x20) && RS_W_LOCK(31) == UINT64_C(0x80000000),
	       "RS_W_LOCK() is a 64-bit shift");
_Static_assert(RS_W_LOCKS == (REF_LOCKS_NAMED | REF_LOCKS_RSV) && RS_W_LOCKS == 0x3fu,
	       "locks: bits 0..5 (4 and 5 reserved)");
_Static_assert(RS_W_IO_ERROR == REF_IO, "IO: bit 6");
_Static_assert(RS_W_EXCL == REF_EX, "EX: bit 7");
_Static_assert(RS_W_PAUSE_SHIFT == REF_PAUSE_SHIFT && RS_W_PAUSE_MASK == REF_PAUSE &&
	       (RS_W_PAUSE_MASK >> RS_W_PAUSE_SHIFT) == RS_PAUSE_COUNT - 1,
	       "pause: bits 8..10, every reason fits");
_Static_assert(RS_W_RSV_NORUN == REF_RV, "RV: bit 11");
_Static_assert(RS_W_OVERFLOW == REF_OV, "OV: bit 12");
_Static_assert(RS_W_BACKLOG_SHIFT == REF_BL_SHIFT && RS_W_BACKLOG_MASK == REF_BL &&
	       RS_W_BACKLOG_ONE == REF_BL_N(1) && RS_W_BACKLOG_MAX == REF_BL_MAX &&
	       (RS_W_BACKLOG_MASK >> RS_W_BACKLOG_SHIFT) == RS_W_BACKLOG_MAX,
	       "backlog: bits 13..19, 0..127");
_Static_assert(RS_W_PARKED == REF_PK, "PK: bit 20");
_Static_assert(RS_W_LOCKWAIT == REF_LW, "LW: bit 21");
_Static_assert(RS_W_COAL_SHIFT == REF_COAL_SHIFT && RS_W_COAL_MASK == REF_COAL &&
	       RS_W_COAL_ONE == REF_COAL_N(1) && REF_COAL == UINT64_C(0xff800000) &&
	       (RS_W_COAL_MASK >> RS_W_COAL_SHIFT) == REF_COAL_MOD - 1,
	       "COAL: bits 23..31, a count modulo 2^9");
_Static_assert(RS_W_COAL_GEN == REF_GN, "GN: bit 22");
_Static_assert(RS_W_EDGE_SHIFT == REF_EDGE_SHIFT && RS_W_EDGE_MASK == REF_EDGE &&
	       RS_W_EDGE_ONE == REF_EDGE_N(1), "edge: bits 32..63");
/* The fields tile the word: they cover it (OR), and do not overlap (for
 * disjoint masks the sum is the OR; an overlap counts some bits twice, and
 * unsigned arithmetic cannot bring the sum back to all ones). */
#define REF_FIELDS_OR (RS_W_LOCKS | RS_W_IO_ERROR | RS_W_EXCL | RS_W_PAUSE_MASK | \
		       RS_W_RSV_NORUN | RS_W_OVERFLOW | RS_W_BACKLOG_MASK | RS_W_PARKED | \
		       RS_W_LOCKWAIT | RS_W_COAL_GEN | RS_W_COAL_MASK | RS_W_EDGE_MASK)
#define REF_FIELDS_SUM (RS_W_LOCKS + RS_W_IO_ERROR + RS_W_EXCL + RS_W_PAUSE_MASK + \
			RS_W_RSV_NORUN + RS_W_OVERFLOW + RS_W_BACKLOG_MASK + RS_W_PARKED + \
			RS_W_LOCKWAIT + RS_W_COAL_GEN + RS_W_COAL_MASK + RS_W_EDGE_MASK)
_Static_assert(REF_FIELDS_OR == UINT64_MAX, "the fields cover the 64-bit word");
_Static_assert(REF_FIELDS_SUM == UINT64_MAX, "the fields do not overlap");
_Static_assert(RS_W_STOPPED_MASK == REF_STOP && RS_W_STOPPED_MASK == 0x77fu,
	       "stopped: locks (6 bits), io-error, pause");
_Static_assert(RS_W_SETTLING_MASK == (REF_BL | REF_OV) && RS_W_SETTLING_MASK == 0xff000u,
	       "settling: backlog or OV");
_Static_assert(RS_W_NORUN_MASK == REF_NORUN && RS_W_NORUN_MASK == 0xfffffu,
	       "no-run: exactly bits 0..19");
_Static_assert(RS_W_NORUN_MASK == (RS_W_STOPPED_MASK | RS_W_EXCL | RS_W_RSV_NORUN |
				   RS_W_SETTLING_MASK), "no-run: stopped, EX, RV, settling");
_Static_assert((RS_W_NORUN_MASK & (RS_W_PARKED | RS_W_LOCKWAIT | RS_W_COAL_GEN |
				   RS_W_COAL_MASK | RS_W_EDGE_MASK)) == 0,
	       "bookkeeping bits let vCPUs run");
_Static_assert(RS_LOCK_COUNT == 4 && RS_PAUSE_COUNT == 8 && RS_CMD_COUNT == 9,
	       "counts");
/* ---------------------------------------------------------------------------
 * The reference model.
 */
#define REF_NLOCKS 4
#define REF_NPAUSE 8

struct ref_state {
	unsigned locks;		/* bit (1u << enum rs_lock) per held lock */
	bool io;
	int pause;		/* enum rs_pause */
};

/* Contract table: none 0; prelaunch, paused 1; watchdog, panicked 2;
 * postmigrate 3; shutdown, internal-error 4. */
static const int ref_rank[REF_NPAUSE] = {
	[RS_PAUSE_NONE] = 0,
	[RS_PAUSE_PRELAUNCH] = 1,
	[RS_PAUSE_PAUSED] = 1,
	[RS_PAUSE_WATCHDOG] = 2,
	[RS_PAUSE_PANICKED] = 2,
	[RS_PAUSE_POSTMIGRATE] = 3,
	[RS_PAUSE_SHUTDOWN] = 4,
	[RS_PAUSE_INTERNAL_ERROR] = 4,
};

static const char *const ref_lock_names[REF_NLOCKS] = {
	[RS_LOCK_DEBUG] = "debug",
	[RS_LOCK_SAVEVM] = "savevm",
	[RS_LOCK_PRE_MIGRATE] = "pre-migrate",
	[RS_LOCK_RESTORE] = "restore",
};

static const char *const ref_pause_names[REF_NPAUSE] = {
	[RS_PAUSE_NONE] = "none",
	[RS_PAUSE_PRELAUNCH] = "prelaunch",
	[RS_PAUSE_PAUSED] = "paused",
	[RS_PAUSE_WATCHDOG] = "watchdog",
	[RS_PAUSE_PANICKED] = "panicked",
	[RS_PAUSE_POSTMIGRATE] = "postmigrate",
	[RS_PAUSE_SHUTDOWN] = "shutdown",
	[RS_PAUSE_INTERNAL_ERROR] = "internal-error",
};

/* QEMU query-status names of the pause reasons (index 0 unused). */
static const char *const ref_legacy_pause[REF_NPAUSE] = {
	[RS_PAUSE_NONE] = NULL,
	[RS_PAUSE_PRELAUNCH] = "prelaunch",
	[RS_PAUSE_PAUSED] = "paused",
	[RS_PAUSE_WATCHDOG] = "watchdog",
	[RS_PAUSE_PANICKED] = "guest-panicked",
	[RS_PAUSE_POSTMIGRATE] = "postmigrate",
	[RS_PAUSE_SHUTDOWN] = "shutdown",
	[RS_PAUSE_INTERNAL_ERROR] = "internal-error",
};

static const char *const ref_cmd_names[] = {
	[RS_CMD_STOP] = "stop",
	[RS_CMD_START] = "start",
	[RS_CMD_RETRY] = "retry",
	[RS_CMD_CONT] = "cont",
	[RS_CMD_RESET] = "reset",
	[RS_CMD_IO_ERROR] = "io-error",
	[RS_CMD_PAUSE] = "pause",
	[RS_CMD_LOCK] = "lock",
	[RS_CMD_UNLOCK] = "unlock",
};

static bool ref_valid_lock(int r)
{
	return r >= 0 && r < REF_NLOCKS;
}

static bool ref_valid_pause(int p)
{
	return p >= 0 && p < REF_NPAUSE;
}

static bool ref_valid_backlog(unsigned m)
{
	return m >= 1 && m <= REF_BL_MAX;
}

/* Apply a pause reason under the rank rule: only a strictly higher rank
 * replaces the current reason. */
static void ref_apply_pause(struct ref_state *s, int p)
{
	if (ref_rank[p] > ref_rank[s->pause])
		s->pause = p;
}

/*
 * What cmd does to state s: 0 and *ns, or a negative error and *ns == *s.
 * Unused arguments are not looked at (see A3; the caller zeroes them).
 */
static int ref_apply(const struct ref_state *s, int cmd, int arg, int arg2,
		     struct ref_state *ns)
{
	int rank = ref_rank[s->pause];

	*ns = *s;
	switch (cmd) {
	case RS_CMD_STOP:
		ref_apply_pause(ns, RS_PAUSE_PAUSED);
		return 0;
	case RS_CMD_START:
		if (arg != 0 && arg != (int)RS_START_FORCE)
			return RS_EINVAL;
		if (rank == 4)
			return RS_ENEEDRESET;
		if (rank >= 2 && arg != (int)RS_START_FORCE)
			return RS_ENEEDFORCE;
		ns->pause = RS_PAUSE_NONE;
		return 0;
	case RS_CMD_RETRY:
		ns->io = false;
		return 0;
	case RS_CMD_CONT:
		if (rank == 4)
			return RS_ENEEDRESET;
		ns->io = false;
		ns->pause = RS_PAUSE_NONE;
		return 0;
	case RS_CMD_RESET:
		if (ns->pause != RS_PAUSE_NONE)
			ns->pause = RS_PAUSE_PRELAUNCH;
		return 0;
	case RS_CMD_IO_ERROR:
		ns->io = true;
		return 0;
	case RS_CMD_PAUSE:
		if (!ref_valid_pause(arg) || arg == RS_PAUSE_NONE)
			return RS_EINVAL;
		ref_apply_pause(ns, arg);
		return 0;
	case RS_CMD_LOCK:
		if (!ref_valid_lock(arg))
			return RS_EINVAL;
		if (s->locks & (1u << arg))
			return RS_EBUSY;
		ns->locks |= 1u << arg;
		return 0;
	case RS_CMD_UNLOCK:
		if (!ref_valid_lock(arg) || !ref_valid_pause(arg2))
			return RS_EINVAL;
		if (!(s->locks & (1u << arg)))
			return RS_ENOTHELD;
		ns->locks &= ~(1u << arg);
		if (arg2 != RS_PAUSE_NONE)
			ref_apply_pause(ns, arg2);
		return 0;
	default:
		return RS_EINVAL;
	}
}

/* Which arguments a command looks at: bit 0 arg, bit 1 arg2. */
static unsigned ref_used_args(int cmd)
{
	switch (cmd) {
	case RS_CMD_START:
	case RS_CMD_PAUSE:
	case RS_CMD_LOCK:
		return 1;
	case RS_CMD_UNLOCK:
		return 3;
	case RS_CMD_STOP:
	case RS_CMD_RETRY:
	case RS_CMD_CONT:
	case RS_CMD_RESET:
	case RS_CMD_IO_ERROR:
		return 0;
	default:
		return 3;	/* unknown command: everything is "used" */
	}
}

static const char *ref_legacy(const struct ref_state *s)
{
	if (s->locks & (1u << RS_LOCK_PRE_MIGRATE))
		return "finish-migrate";
	if (s->locks & (1u << RS_LOCK_RESTORE))
		return "restore-vm";
	if (s->locks & (1u << RS_LOCK_SAVEVM))
		return "save-vm";
	if (s->locks & (1u << RS_LOCK_DEBUG))
		return "debug";
	if (s->pause != RS_PAUSE_NONE)
		return ref_legacy_pause[s->pause];
	if (s->io)
		return "io-error";
	return "running";
}

/* Own decoding of the semantic fields: the four named locks, io-error, the
 * pause reason.  The reserved lock bits are not part of the semantic state
 * (A13): ref_word_after() carries them over like the other reserved bits. */
static struct ref_state ref_decode(uint64_t w)
{
	struct ref_state s;

	s.locks = (unsigned)(w & REF_LOCKS_NAMED);
	s.io = (w & REF_IO) != 0;
	s.pause = (int)((w & REF_PAUSE) >> REF_PAUSE_SHIFT);
	return s;
}

static uint64_t ref_encode(const struct ref_state *s)
{
	uint64_t w = 0;
	int r;

	for (r = 0; r < REF_NLOCKS; r++)
		if (s->locks & (1u << r))
			w |= UINT64_C(1) << r;
	if (s->io)
		w |= REF_IO;
	w |= (uint64_t)s->pause << REF_PAUSE_SHIFT;
	return w;
}

static uint32_t ref_edge(uint64_t w)
{
	return (uint32_t)(w >> REF_EDGE_SHIFT);
}

static uint64_t ref_with_edge(uint64_t w, uint32_t e)
{
	return (w & ~REF_EDGE) | REF_EDGE_N(e);
}

static unsigned ref_bl(uint64_t w)
{
	return (unsigned)((w & REF_BL) >> REF_BL_SHIFT);
}

static uint64_t ref_with_bl(uint64_t w, unsigned n)
{
	return (w & ~REF_BL) | REF_BL_N(n);
}

static unsigned ref_coal(uint64_t w)
{
	return (unsigned)((w & REF_COAL) >> REF_COAL_SHIFT);
}

static uint64_t ref_with_coal(uint64_t w, unsigned n)
{
	return (w & ~REF_COAL) | REF_COAL_N(n);
}

/* The backlog's last edge: while OV is set E is the tail (an even run so
 * far) or the tail + 1 (an odd one), modulo 2^32; without OV, E itself. */
static uint32_t ref_tail(uint64_t w)
{
	if (!(w & REF_OV))
		return ref_edge(w);
	return ref_edge(w) - (uint32_t)(ref_coal(w) % 2u);
}

static bool ref_word_running(uint64_t w)
{
	return (w & REF_STOP) == 0;
}

static bool ref_may_run(uint64_t w)
{
	return (w & REF_NORUN) == 0;
}

/*
 * The full word after a successful command, for max_backlog m: new semantic
 * fields, every other bit as in old; then, iff running-ness changes (an
 * edge), the edge joins the backlog (OV clear in old, old backlog below m:
 * one more entry, one more edge number) or is coalesced (the run goes on,
 * or starts at 1 when OV was clear; E = tail + the run's parity; the
 * backlog kept: A12, A14); finally PARKED is cleared when the new word lets
 * vCPUs run (A7).
 */
static uint64_t ref_word_after(uint64_t old, const struct ref_state *ns, unsigned m)
{
	uint64_t w = (old & ~(REF_LOCKS_NAMED | REF_IO | REF_PAUSE)) | ref_encode(ns);

	if (ref_word_running(w) != ref_word_running(old)) {
		bool joins = !(old & REF_OV) && ref_bl(old) < m;

		if (joins) {
			w = ref_with_edge(w, ref_edge(old) + 1u);
			w = ref_with_bl(w, ref_bl(old) + 1);
		} else {
			unsigned run = (old & REF_OV) ? (ref_coal(old) + 1u) % REF_COAL_MOD : 1u;
			uint32_t tail = ref_tail(old);

			w |= REF_OV;
			w = ref_with_coal(w, run);
			w = ref_with_edge(w, run % 2u ? tail + 1u : tail);
		}
	}
	if (ref_may_run(w))
		w &= ~REF_PK;
	return w;
}

/* rs_transition() as the contract says: 0 and *out, or an error. */
static int ref_transition(uint64_t old, int cmd, int arg, int arg2, unsigned m, uint64_t *out)
{
	struct ref_state ns, s = ref_decode(old);
	int err;

	if (!ref_valid_backlog(m))
		return RS_EINVAL;	/* A11 */
	err = ref_apply(&s, cmd, arg, arg2, &ns);
	if (err == 0)
		*out = ref_word_after(old, &ns, m);
	return err;
}

/* ---------------------------------------------------------------------------
 * Reporting
 */
static unsigned long n_checks;
static unsigned long n_failures;
static unsigned long n_tolerated;	/* A3: unused argument rejected */
#define MAX_PRINTED 200

static void failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void failf(const char *fmt, ...)
{
	va_list ap;

	n_failures++;
	if (n_failures > MAX_PRINTED) {
		if (n_failures == MAX_PRINTED + 1)
			printf("FAIL: (further failures counted, not printed)\n");
		return;
	}
	va_start(ap, fmt);
	printf("FAIL: ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
}

#define CHECK(cond, ...) do {			\
	n_checks++;				\
	if (!(cond))				\
		failf(__VA_ARGS__);		\
} while (0)

/* Describe a word in a buffer: "locks=debug,savevm io pause=paused OV bl=3
 * PK LW edge=0x00000012 (0x0000001200107300)"; reserved bits as "+rsv-locks",
 * "EX", "RV", "rsv=0x...". */
/* Describe a word in a buffer: "locks=debug,savevm io pause=paused OV bl=3
 * PK LW GN coal=5 tail=0x00000011 edge=0x00000012 (0x0000001202f07303)";
 * reserved bits as "+rsv-locks", "EX", "RV". */
static const char *fmt_word(char *buf, size_t len, uint64_t w)
{
	struct ref_state s = ref_decode(w);
	size_t o = 0;
	int r;

	o += (size_t)snprintf(buf + o, len - o, "locks=");
	if (s.locks == 0)
		o += (size_t)snprintf(buf + o, len - o, "-");
	for (r = 0; r < REF_NLOCKS; r++)
		if (s.locks & (1u << r))
			o += (size_t)snprintf(buf + o, len - o, "%s%s",
					      (s.locks & ((1u << r) - 1)) ? "," : "",
					      ref_lock_names[r]);
	if (w & REF_LOCKS_RSV)
		o += (size_t)snprintf(buf + o, len - o, "+rsv-locks");
	o += (size_t)snprintf(buf + o, len - o, "%s%s pause=%s%s%s bl=%u%s%s%s",
			      s.io ? " io" : "", (w & REF_EX) ? " EX" : "",
			      ref_pause_names[s.pause], (w & REF_RV) ? " RV" : "",
			      (w & REF_OV) ? " OV" : "", ref_bl(w),
			      (w & REF_PK) ? " PK" : "", (w & REF_LW) ? " LW" : "",
			      (w & REF_GN) ? " GN" : "");
	if ((w & REF_COAL) || (w & REF_OV))
		o += (size_t)snprintf(buf + o, len - o, " coal=%u", ref_coal(w));
	if (w & REF_OV)
		o += (size_t)snprintf(buf + o, len - o, " tail=0x%08" PRIx32, ref_tail(w));
	snprintf(buf + o, len - o, " edge=0x%08" PRIx32 " (0x%016" PRIx64 ")", ref_edge(w), w);
	return buf;
}

static const char *fmt_cmd(char *buf, size_t len, int cmd, int arg, int arg2, unsigned m)
{
	if (cmd >= 0 && cmd < RS_CMD_COUNT)
		snprintf(buf, len, "%s(arg=%d, arg2=%d, max_backlog=%u)", ref_cmd_names[cmd],
			 arg, arg2, m);
	else
		snprintf(buf, len, "cmd %d(arg=%d, arg2=%d, max_backlog=%u)", cmd, arg, arg2, m);
	return buf;
}

static const char *fmt_err(int err)
{
	static char buf[4][32];
	static int i;

	switch (err) {
	case 0: return "0";
	case RS_EINVAL: return "RS_EINVAL";
	case RS_EBUSY: return "RS_EBUSY";
	case RS_ENOTHELD: return "RS_ENOTHELD";
	case RS_ENEEDFORCE: return "RS_ENEEDFORCE";
	case RS_ENEEDRESET: return "RS_ENEEDRESET";
	case RS_ETIMEDOUT: return "RS_ETIMEDOUT";
	case RS_EDEADLK: return "RS_EDEADLK";
	}
	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%d", err);
	return buf[i];
}

/* Name the fields in which two words differ, with the rule for each. */
/* Name the fields in which two words differ, with the rule for each. */
static const char *fmt_diff(char *buf, size_t len, uint64_t got, uint64_t want)
{
	uint64_t d = got ^ want;
	size_t o = 0;

	buf[0] = 0;
	if (d & REF_LOCKS_NAMED)
		o += (size_t)snprintf(buf + o, len - o, " locks");
	if (d & REF_LOCKS_RSV)
		o += (size_t)snprintf(buf + o, len - o, " reserved-locks(kept, A13)");
	if (d & REF_IO)
		o += (size_t)snprintf(buf + o, len - o, " io-error");
	if (d & REF_EX)
		o += (size_t)snprintf(buf + o, len - o, " EX(kept, A13)");
	if (d & REF_PAUSE)
		o += (size_t)snprintf(buf + o, len - o, " pause");
	if (d & REF_RV)
		o += (size_t)snprintf(buf + o, len - o, " RV(kept, A13)");
	if (d & REF_OV)
		o += (size_t)snprintf(buf + o, len - o,
				      " OV(set on an edge when OV was set or the backlog full, "
				      "else kept)");
	if (d & REF_BL)
		o += (size_t)snprintf(buf + o, len - o,
				      " backlog(+1 on an edge when OV clear and backlog < max, "
				      "else kept)");
	if (d & REF_PK)
		o += (size_t)snprintf(buf + o, len - o,
				      " PARKED(cleared iff new word runnable, A7)");
	if (d & REF_LW)
		o += (size_t)snprintf(buf + o, len - o, " LOCKWAIT(kept, A6)");
	if (d & REF_GN)
		o += (size_t)snprintf(buf + o, len - o, " GN(kept, A16)");
	if (d & REF_COAL)
		o += (size_t)snprintf(buf + o, len - o,
				      " COAL(coalesced edge: COAL+1 mod 2^9 if OV was set, "
				      "else 1; otherwise kept, A14)");
	if (d & REF_EDGE)
		snprintf(buf + o, len - o,
			 " edge(appended edge: +1 mod 2^32; coalesced edge: tail + (new "
			 "COAL & 1), tail = OV ? E - (COAL & 1) : E; no edge: kept)");
	return buf;
}

/* ---------------------------------------------------------------------------
 * One comparison of rs_transition() against the model.
 */
#define SENTINEL UINT64_C(0xa5a5a5a5a5a5a5a5)

static void check_one(uint64_t old, int cmd, int arg, int arg2, unsigned m)
{
	unsigned used = ref_used_args(cmd);
	bool unused_nonzero = (!(used & 1) && arg != 0) || (!(used & 2) && arg2 != 0);
	int rarg = (used & 1) ? arg : 0;
	int rarg2 = (used & 2) ? arg2 : 0;
	uint64_t out = SENTINEL, want = 0;
	char wb[192], ob[192], xb[192], cb[80], db[800];
	int err, rerr;

	rerr = ref_transition(old, cmd, rarg, rarg2, m, &want);
	err = rs_transition(old, (enum rs_cmd)cmd, arg, arg2, m, &out);

	n_checks++;
	if (unused_nonzero && rerr != RS_EINVAL && err == RS_EINVAL && out == SENTINEL) {
		n_tolerated++;
		return;
	}
	if (err != rerr) {
		failf("%s on %s: returned %s, expected %s%s%s",
		      fmt_cmd(cb, sizeof(cb), cmd, arg, arg2, m),
		      fmt_word(wb, sizeof(wb), old), fmt_err(err), fmt_err(rerr),
		      unused_nonzero ? " (or RS_EINVAL for an unused argument)" : "",
		      ref_valid_backlog(m) ? "" : " (A11: invalid max_backlog)");
		return;
	}
	if (err != 0) {
		if (out != SENTINEL)
			failf("%s on %s: returned %s but wrote *out = 0x%016" PRIx64
			      " (must be untouched on error)",
			      fmt_cmd(cb, sizeof(cb), cmd, arg, arg2, m),
			      fmt_word(wb, sizeof(wb), old), fmt_err(err), out);
		return;
	}
	if (out != want)
		failf("%s on %s: new word %s, expected %s; differs in:%s",
		      fmt_cmd(cb, sizeof(cb), cmd, arg, arg2, m),
		      fmt_word(wb, sizeof(wb), old), fmt_word(ob, sizeof(ob), out),
		      fmt_word(xb, sizeof(xb), want), fmt_diff(db, sizeof(db), out, want));
}

/* ---------------------------------------------------------------------------
 * 2. Names, ranks, errors.
 */
static void check_names(void)
{
	static const char *const bad_names[] = {
		"", " ", "Debug", "DEBUG", " debug", "debug ", "debug\n", "debug\r",
		"pre_migrate", "premigrate", "Pre-migrate", "save-vm", "SAVEVM",
		"io-error", "io_error", "running", "Paused", "PAUSED", "pause",
		"guest-panicked", "internal_error", "post-migrate", "pre-launch",
		"finish-migrate", "restore-vm", "-", "stop", "none ", "None",
	};
	static const int bad_lock_nums[] = { -1, 4, 5, 6, 8, 99, INT_MAX, INT_MIN };
	static const int bad_pause_nums[] = { -1, 8, 9, 99, INT_MAX, INT_MIN };
	static const int ranks_want[REF_NPAUSE] = { 0, 1, 1, 2, 2, 3, 4, 4 };
	size_t i;
	int r, p;

	for (r = 0; r < REF_NLOCKS; r++) {
		const char *n = rs_lock_name(r);

		CHECK(n && strcmp(n, ref_lock_names[r]) == 0,
		      "rs_lock_name(%d) = \"%s\", expected \"%s\"", r,
		      n ? n : "(null)", ref_lock_names[r]);
		CHECK(rs_lock_parse(ref_lock_names[r]) == r,
		      "rs_lock_parse(\"%s\") = %d, expected %d", ref_lock_names[r],
		      rs_lock_parse(ref_lock_names[r]), r);
		CHECK(rs_pause_parse(ref_lock_names[r]) == RS_EINVAL,
		      "rs_pause_parse(\"%s\") (a lock name) = %d, expected RS_EINVAL",
		      ref_lock_names[r], rs_pause_parse(ref_lock_names[r]));
	}
	for (p = 0; p < REF_NPAUSE; p++) {
		const char *n = rs_pause_name(p);

		CHECK(n && strcmp(n, ref_pause_names[p]) == 0,
		      "rs_pause_name(%d) = \"%s\", expected \"%s\"", p,
		      n ? n : "(null)", ref_pause_names[p]);
		CHECK(rs_pause_parse(ref_pause_names[p]) == p,
		      "rs_pause_parse(\"%s\") = %d, expected %d (A10 for none)",
		      ref_pause_names[p], rs_pause_parse(ref_pause_names[p]), p);
		CHECK(rs_lock_parse(ref_pause_names[p]) == RS_EINVAL,
		      "rs_lock_parse(\"%s\") (a pause name) = %d, expected RS_EINVAL",
		      ref_pause_names[p], rs_lock_parse(ref_pause_names[p]));
		CHECK(rs_pause_rank(p) == ranks_want[p] && ranks_want[p] == ref_rank[p],
		      "rs_pause_rank(%d) (%s) = %d, expected %d", p, ref_pause_names[p],
		      rs_pause_rank(p), ranks_want[p]);
	}
	for (i = 0; i < sizeof(bad_lock_nums) / sizeof(bad_lock_nums[0]); i++) {
		const char *n = rs_lock_name(bad_lock_nums[i]);

		CHECK(n == NULL, "rs_lock_name(%d) = \"%s\", expected NULL",
		      bad_lock_nums[i], n);
	}
	for (i = 0; i < sizeof(bad_pause_nums) / sizeof(bad_pause_nums[0]); i++) {
		const char *n = rs_pause_name(bad_pause_nums[i]);

		CHECK(n == NULL, "rs_pause_name(%d) = \"%s\", expected NULL",
		      bad_pause_nums[i], n);
		CHECK(rs_pause_rank(bad_pause_nums[i]) == RS_EINVAL,
		      "rs_pause_rank(%d) = %d, expected RS_EINVAL", bad_pause_nums[i],
		      rs_pause_rank(bad_pause_nums[i]));
	}
	for (i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		CHECK(rs_lock_parse(bad_names[i]) == RS_EINVAL,
		      "rs_lock_parse(\"%s\") = %d, expected RS_EINVAL", bad_names[i],
		      rs_lock_parse(bad_names[i]));
		CHECK(rs_pause_parse(bad_names[i]) == RS_EINVAL,
		      "rs_pause_parse(\"%s\") = %d, expected RS_EINVAL", bad_names[i],
		      rs_pause_parse(bad_names[i]));
	}
	CHECK(rs_lock_parse("none") == RS_EINVAL, "rs_lock_parse(\"none\") not RS_EINVAL");
	CHECK(rs_lock_parse(NULL) == RS_EINVAL, "rs_lock_parse(NULL) = %d, expected RS_EINVAL",
	      rs_lock_parse(NULL));
	CHECK(rs_pause_parse(NULL) == RS_EINVAL, "rs_pause_parse(NULL) = %d, expected RS_EINVAL",
	      rs_pause_parse(NULL));
}

static void check_errors(void)
{
	static const struct {
		int err;
		const char *name;
	} known[] = {
		{ 0, "ok" },
		{ RS_EINVAL, "invalid" },
		{ RS_EBUSY, "busy" },
		{ RS_ENOTHELD, "not-held" },
		{ RS_ENEEDFORCE, "needs-force" },
		{ RS_ENEEDRESET, "needs-reset" },
		{ RS_ETIMEDOUT, "timeout" },
		{ RS_ENOMEM, "no-memory" },
		{ RS_ENOSPC, "no-space" },
		{ RS_EDEADLK, "deadlock" },
	};
	static const int others[] = {
		1, 2, 12345, -2, -4, -9999, INT_MIN, INT_MAX, -EINTR, -EAGAIN,
		EDEADLK, -EDEADLK - 1, -EDEADLK + 1,
	};
	size_t i, j, n = sizeof(known) / sizeof(known[0]);

	for (i = 0; i < n; i++) {
		const char *s = rs_strerror(known[i].err);

		CHECK(s && strcmp(s, known[i].name) == 0,
		      "rs_strerror(%d) = \"%s\", expected \"%s\"", known[i].err,
		      s ? s : "(null)", known[i].name);
		CHECK(i == 0 || known[i].err < 0, "%s is not negative", known[i].name);
		for (j = 0; j < i; j++)
			CHECK(known[i].err != known[j].err, "error codes for %s and %s collide",
			      known[i].name, known[j].name);
	}
	for (i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		bool is_known = false;
		const char *s;

		for (j = 0; j < n; j++)
			is_known |= others[i] == known[j].err;
		if (is_known)
			continue;
		s = rs_strerror(others[i]);
		CHECK(s && strcmp(s, "unknown") == 0,
		      "rs_strerror(%d) = \"%s\", expected \"unknown\"", others[i],
		      s ? s : "(null)");
	}
}


/* ---------------------------------------------------------------------------
 * 3. Decoding and legacy status of one word.
 */
static void check_word_queries(uint64_t w)
{
	struct ref_state s = ref_decode(w);
	struct rs_state st, st1;
	struct rs_runstate_head head = { .word = w };
	const char *legacy = rs_legacy_status(w);
	bool running = ref_word_running(w);
	bool may_run = ref_may_run(w);
	bool settling = ref_bl(w) != 0 || (w & REF_OV) != 0;
	unsigned locks = (unsigned)(w & (REF_LOCKS_NAMED | REF_LOCKS_RSV));	/* A13 */
	char wb[192];

	/* Decode over two different fillings (0x00 and 0x01 bytes are valid
	 * bools) so that a field left unwritten shows. */
	memset(&st, 0x00, sizeof(st));
	rs_decode(w, &st);
	memset(&st1, 0x01, sizeof(st1));
	rs_decode(w, &st1);
	CHECK(st.running == st1.running && st.may_run == st1.may_run &&
	      st.settling == st1.settling && st.io_error == st1.io_error &&
	      st.locks == st1.locks && st.pause == st1.pause && st.edge == st1.edge,
	      "rs_decode(%s) leaves a field unwritten", fmt_word(wb, sizeof(wb), w));
	CHECK(st.running == running && st.may_run == may_run &&
	      st.settling == settling && st.io_error == s.io &&
	      st.locks == locks && (int)st.pause == s.pause &&
	      st.edge == ref_edge(w),
	      "rs_decode(%s) = {running=%d may_run=%d settling=%d io=%d locks=0x%x "
	      "pause=%d edge=0x%" PRIx32 "}, expected {%d %d %d %d 0x%x %d 0x%" PRIx32 "}",
	      fmt_word(wb, sizeof(wb), w), st.running, st.may_run, st.settling,
	      st.io_error, st.locks, (int)st.pause, st.edge, running, may_run, settling,
	      s.io, locks, s.pause, ref_edge(w));
	CHECK(legacy && strcmp(legacy, ref_legacy(&s)) == 0,
	      "rs_legacy_status(%s) = \"%s\", expected \"%s\"",
	      fmt_word(wb, sizeof(wb), w), legacy ? legacy : "(null)", ref_legacy(&s));
	/* The inline fast path, on a fake instance whose first member is the word. */
	CHECK(rs_may_run((const rs_runstate *)&head) == may_run,
	      "rs_may_run(%s) = %d", fmt_word(wb, sizeof(wb), w), !may_run);
}

/*
 * Words worked out by hand from the rules, not through the model, so that a
 * model that shares a misreading with the library still meets a fixed point.
 * Layout reminder: E in bits 32..63, COAL in 23..31 (COAL 1 = 0x00800000),
 * GN 0x00400000, LW 0x00200000, PK 0x00100000, BL 1 = 0x2000, OV 0x1000,
 * the pause reason in bits 8..10 (paused = 0x200).
 */
static void check_by_hand(void)
{
	static const struct {
		uint64_t old;
		int cmd, arg, arg2;
		unsigned m;
		int err;
		uint64_t want;
		const char *why;
	} cases[] = {
		{ 0x0000000000000100, RS_CMD_START, 0, 0, 64, 0, 0x0000000100002000,
		  "first start: edge 1, backlog 1" },
		{ 0xffffffff00000000, RS_CMD_STOP, 0, 0, 64, 0, 0x0000000000002200,
		  "stop at edge 0xffffffff: the counter wraps to 0, no carry below" },
		{ 0xfffffffe00000100, RS_CMD_CONT, 0, 0, 1, 0, 0xffffffff00002000,
		  "start at edge 0xfffffffe: the counter reaches 0xffffffff" },
		{ 0x0000000100102000, RS_CMD_STOP, 0, 0, 1, 0, 0x0000000200903200,
		  "backlog 1 of 1: coalesced, OV set, COAL 1, E = tail 1 + 1, PK kept" },
		{ 0x0000000100102000, RS_CMD_STOP, 0, 0, 2, 0, 0x0000000200104200,
		  "backlog 1 of 2: joins, backlog 2, PK kept" },
		/* A run of coalesced edges behind a full backlog of 2 (tail 5). */
		{ 0x0000000500004000, RS_CMD_STOP, 0, 0, 2, 0, 0x0000000600805200,
		  "run: first coalesced edge, COAL 1, E = tail 5 + 1" },
		{ 0x0000000600805200, RS_CMD_START, 0, 0, 2, 0, 0x0000000501005000,
		  "run: second coalesced edge, COAL 2, E back to the tail 5" },
		{ 0x0000000501005000, RS_CMD_STOP, 0, 0, 2, 0, 0x0000000601805200,
		  "run: third coalesced edge, COAL 3, E = tail + 1 = 6" },
		{ 0x0000000600905200, RS_CMD_START, 0, 0, 2, 0, 0x0000000501105000,
		  "coalesced start: OV keeps vCPUs out, PK kept (A7)" },
		{ 0x0000000900801000, RS_CMD_STOP, 0, 0, 64, 0, 0x0000000801001200,
		  "OV set, empty backlog with room: still coalesced (A12), E = tail 8" },
		{ 0x0000000200001200, RS_CMD_START, 0, 0, 64, 0, 0x0000000300801000,
		  "OV set with COAL 0 (an even run): tail = E 2, COAL 1, E 3 (A14)" },
		{ 0x00000020ff001200, RS_CMD_CONT, 0, 0, 64, 0, 0x00000021ff801000,
		  "COAL 510 -> 511: E = tail 0x20 + 1" },
		{ 0x00000011ff801000, RS_CMD_STOP, 0, 0, 64, 0, 0x0000001000001200,
		  "COAL 511 + 1 wraps to 0 (mod 2^9, no carry into E); E = tail 0x10" },
		{ 0x00000011ffc01000, RS_CMD_STOP, 0, 0, 64, 0, 0x0000001000401200,
		  "COAL 511 + 1 with GN: no carry into GN or E, GN kept (A16)" },
		{ 0x0000000000801200, RS_CMD_START, 0, 0, 64, 0, 0xffffffff01001000,
		  "E 0 with COAL 1: tail 0xffffffff (A14), COAL 2, E = tail" },
		{ 0xffffffff00002000, RS_CMD_STOP, 0, 0, 1, 0, 0x0000000000803200,
		  "coalesced at tail 0xffffffff: E wraps to 0, no carry into COAL" },
		{ 0x0000000102800000, RS_CMD_STOP, 0, 0, 64, 0, 0x0000000202802200,
		  "OV clear with COAL 5 (unreachable): an appended edge leaves COAL (A14)" },
		{ 0x0000000102802000, RS_CMD_STOP, 0, 0, 1, 0, 0x0000000200803200,
		  "OV clear with COAL 5: a coalesced edge starts at COAL 1 (A14)" },
		{ 0x0000000300901000, RS_CMD_RETRY, 0, 0, 64, 0, 0x0000000300901000,
		  "OV set, no edge: nothing changes, PK kept" },
		{ 0x0000000300402000, RS_CMD_STOP, 0, 0, 64, 0, 0x0000000400404200,
		  "appended edge: GN kept (A16)" },
		{ 0x0000000302403000, RS_CMD_STOP, 0, 0, 64, 0, 0x0000000402c03200,
		  "coalesced edge, COAL 4 -> 5: GN kept (A16)" },
		{ 0x0000000500500000, RS_CMD_RESET, 0, 0, 64, 0, 0x0000000500400000,
		  "runnable word with GN and PK, no edge: PK cleared, GN kept (A7, A16)" },
		{ 0x00000007000fe000, RS_CMD_LOCK, RS_LOCK_DEBUG, 0, 127, 0, 0x00000008008ff001,
		  "backlog 127 of 127: coalesced, COAL 1" },
		{ 0x00000007000fe000, RS_CMD_LOCK, RS_LOCK_DEBUG, 0, 3, 0, 0x00000008008ff001,
		  "backlog 127 above max 3: coalesced (A12)" },
		{ 0x0000000500100000, RS_CMD_RETRY, 0, 0, 64, 0, 0x0000000500000000,
		  "runnable word with PK, no edge: PK cleared (A7)" },
		{ 0x0000000500300000, RS_CMD_STOP, 0, 0, 64, 0, 0x0000000600302200,
		  "stop edge from a runnable word with PK and LW: both kept" },
		{ 0x00000003ff800880, RS_CMD_STOP, 0, 0, 2, 0, 0x00000004ff802a80,
		  "EX, RV kept (A13), COAL 511 kept on an appended edge (A14)" },
		{ 0x0000000000000010, RS_CMD_CONT, 0, 0, 64, 0, 0x0000000000000010,
		  "a reserved lock bit stops the VM: cont makes no edge (A13)" },
		{ 0x0000000000000110, RS_CMD_START, 0, 0, 64, 0, 0x0000000000000010,
		  "start with a reserved lock bit: pause cleared, no edge (A13)" },
		{ 0x0000000100000000, RS_CMD_UNLOCK, RS_LOCK_DEBUG, 0, 64, RS_ENOTHELD, 0,
		  "unlock of a free bit" },
		{ 0x0000000100000000, RS_CMD_UNLOCK, RS_LOCK_DEBUG, 0, 0, RS_EINVAL, 0,
		  "max_backlog 0 (A11)" },
		{ 0x0000000100000000, RS_CMD_RETRY, 0, 0, 128, RS_EINVAL, 0,
		  "max_backlog 128, no edge (A11)" },
		{ 0x0000000000000600, RS_CMD_START, 0, 0, 128, RS_EINVAL, 0,
		  "max_backlog 128 before needs-reset (A11)" },
	};
	char wb[192], ob[192], xb[192], cb[80], db[800];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t out = SENTINEL;
		int err = rs_transition(cases[i].old, (enum rs_cmd)cases[i].cmd, cases[i].arg,
					cases[i].arg2, cases[i].m, &out);

		n_checks++;
		if (err != cases[i].err || (err == 0 && out != cases[i].want) ||
		    (err != 0 && out != SENTINEL))
			failf("by hand (%s): %s on %s: returned %s, word %s; expected %s, "
			      "word %s; differs in:%s", cases[i].why,
			      fmt_cmd(cb, sizeof(cb), cases[i].cmd, cases[i].arg,
				      cases[i].arg2, cases[i].m),
			      fmt_word(wb, sizeof(wb), cases[i].old), fmt_err(err),
			      out == SENTINEL ? "(not written)" : fmt_word(ob, sizeof(ob), out),
			      fmt_err(cases[i].err),
			      cases[i].err ? "(not written)" :
			      fmt_word(xb, sizeof(xb), cases[i].want),
			      fmt_diff(db, sizeof(db), out,
				       cases[i].err ? SENTINEL : cases[i].want));
		/* The model must agree with the hand too. */
		check_one(cases[i].old, cases[i].cmd, cases[i].arg, cases[i].arg2, cases[i].m);
		check_word_queries(cases[i].old);
		if (cases[i].err == 0)
			check_word_queries(cases[i].want);
	}
}

/* ---------------------------------------------------------------------------
 * 4. Exhaustive: every state, every command, every argument.
 */
static const int cmds[] = {
	RS_CMD_STOP, RS_CMD_START, RS_CMD_RETRY, RS_CMD_CONT, RS_CMD_RESET,
	RS_CMD_IO_ERROR, RS_CMD_PAUSE, RS_CMD_LOCK, RS_CMD_UNLOCK,
	-1, RS_CMD_COUNT, RS_CMD_COUNT + 1, 100, INT_MAX, INT_MIN,
};
static const int args[] = {
	INT_MIN, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 99, INT_MAX,
};
/* max_backlog values outside 1..127 (A11), some of which a careless
 * truncation to 7 or 8 bits would turn into valid ones. */
static const unsigned bad_backlogs[] = {
	0, 128, 129, 255, 256, 0x17f, 1000, 0x80000000u, 0x80000001u, UINT_MAX,
};

struct cmd_arg {
	int cmd, arg, arg2;
};

/* The 50 valid (command, arg, arg2) triples. */
static size_t valid_cmds(struct cmd_arg *v)
{
	size_t n = 0;
	int r, p;

	v[n++] = (struct cmd_arg){ RS_CMD_STOP, 0, 0 };
	v[n++] = (struct cmd_arg){ RS_CMD_START, 0, 0 };
	v[n++] = (struct cmd_arg){ RS_CMD_START, (int)RS_START_FORCE, 0 };
	v[n++] = (struct cmd_arg){ RS_CMD_RETRY, 0, 0 };
	v[n++] = (struct cmd_arg){ RS_CMD_CONT, 0, 0 };
	v[n++] = (struct cmd_arg){ RS_CMD_RESET, 0, 0 };
	v[n++] = (struct cmd_arg){ RS_CMD_IO_ERROR, 0, 0 };
	for (p = 1; p < REF_NPAUSE; p++)
		v[n++] = (struct cmd_arg){ RS_CMD_PAUSE, p, 0 };
	for (r = 0; r < REF_NLOCKS; r++) {
		v[n++] = (struct cmd_arg){ RS_CMD_LOCK, r, 0 };
		for (p = 0; p < REF_NPAUSE; p++)
			v[n++] = (struct cmd_arg){ RS_CMD_UNLOCK, r, p };
	}
	return n;
}

/*
 * 4a. Arguments.  The bookkeeping does not decide whether an argument is
 * valid, so each semantic state meets every argument in a handful of
 * contexts rather than in all of part 4b's.
 */
/*
 * 4a. Arguments.  The bookkeeping does not decide whether an argument is
 * valid, so each semantic state meets every argument in a handful of
 * contexts rather than in all of part 4b's.
 */
static void check_arguments(void)
{
	static const struct {
		unsigned m;
		uint64_t book;
	} ctx[] = {
		{ 64, 0 },
		{ 1, REF_BL_N(1) | REF_PK | REF_EDGE_N(0xffffffff) },
		{ 127, REF_BL_N(126) | REF_LW | REF_EDGE_N(0x80000000) },
		{ 2, REF_OV | REF_COAL_N(1) | REF_PK | REF_LW | REF_EDGE_N(0x7fffffff) },
		{ 127, REF_BL_N(127) | REF_EDGE_N(1) },
		{ 3, REF_BL_N(5) | REF_EDGE_N(2) },
		{ 64, REF_COAL_N(REF_COAL_MOD - 1) | REF_EX | REF_PK | REF_EDGE_N(0xfffffffe) },
		{ 1, REF_RV | RS_W_LOCK(4) | REF_EDGE_N(3) },
		{ 2, REF_OV | REF_COAL_N(REF_COAL_MOD - 1) | REF_GN | REF_BL_N(2) | REF_EDGE_N(0) },
		{ 64, REF_OV | REF_COAL_N(0) | REF_PK | REF_EDGE_N(0xffffffff) },
		{ 127, REF_OV | REF_COAL_N(2) | REF_BL_N(7) | REF_LW | REF_EDGE_N(0x80000001) },
		{ 1, REF_GN | REF_BL_N(1) | REF_PK | REF_EDGE_N(5) },
		{ 0, REF_PK },
		{ 128, REF_BL_N(1) | REF_EDGE_N(0xffffffff) },
		{ UINT_MAX, REF_OV | REF_COAL_N(1) },
	};
	size_t x, c, a, a2;
	unsigned locks, io;
	int p;

	for (x = 0; x < sizeof(ctx) / sizeof(ctx[0]); x++)
	for (locks = 0; locks < 16; locks++)
	for (io = 0; io < 2; io++)
	for (p = 0; p < REF_NPAUSE; p++) {
		struct ref_state s = { .locks = locks, .io = io, .pause = p };
		uint64_t w = ref_encode(&s) | ctx[x].book;

		check_word_queries(w);
		for (c = 0; c < sizeof(cmds) / sizeof(cmds[0]); c++)
		for (a = 0; a < sizeof(args) / sizeof(args[0]); a++)
		for (a2 = 0; a2 < sizeof(args) / sizeof(args[0]); a2++)
			check_one(w, cmds[c], args[a], args[a2], ctx[x].m);
	}
}

/*
 * 4b. The bookkeeping: every valid command on every semantic state, in
 * every combination of max_backlog, backlog, OV, PK, LW, edge counter and
 * COAL, and each (edge counter, COAL) pair once more with reserved bits.
 */
static void check_bookkeeping(void)
{
	static const unsigned maxes[] = { 1, 2, 3, 64, 126, 127 };
	/* 0xffffffff: the next edge wraps; 0x7fffffff: it carries into bit
	 * 63; 0 with an odd COAL and OV: the tail is 0xffffffff. */
	static const uint32_t edges[] = {
		0, 1, 2, 0x7fffffff, 0x80000000u, 0xfffffffe, 0xffffffff,
	};
	/* 511: the next coalesced edge wraps the count to 0. */
	static const unsigned coals[] = { 0, 1, 2, REF_COAL_MOD - 2, REF_COAL_MOD - 1 };
	/* Reserved bits, one set per (edge, COAL) pair (flags[2]).  LW and GN
	 * are only ever kept, so PK, LW and GN go together. */
	static const uint64_t rsv[] = {
		REF_EX | REF_PK, REF_RV | REF_LW | REF_GN, RS_W_LOCK(4) | REF_PK | REF_GN,
		RS_W_LOCK(5) | REF_EX | REF_RV | REF_LW,
	};
	static const uint64_t flags[] = { 0, REF_PK | REF_LW | REF_GN, 0 };
	struct cmd_arg v[64];
	size_t nv = valid_cmds(v), mi, e, c, f, i, k;
	unsigned locks, io, ov, n, m, b;
	int p;
	char cb[80];

	for (mi = 0; mi < sizeof(maxes) / sizeof(maxes[0]); mi++) {
		/* The backlog values that matter: empty, one, just below the
		 * max, the max, just above it (A12), the field's maximum. */
		unsigned bls[6], nbl = 0;

		m = maxes[mi];
		bls[0] = 0;
		bls[1] = 1;
		bls[2] = m - 1;
		bls[3] = m;
		bls[4] = m + 1;
		bls[5] = REF_BL_MAX;

		for (i = 0; i < 6; i++) {
			bool dup = bls[i] > REF_BL_MAX;

			for (k = 0; k < nbl; k++)
				dup |= bls[k] == bls[i];
			if (!dup)
				bls[nbl++] = bls[i];
		}
		for (b = 0; b < nbl; b++)
		for (ov = 0; ov < 2; ov++)
		for (f = 0; f < sizeof(flags) / sizeof(flags[0]); f++)
		for (e = 0; e < sizeof(edges) / sizeof(edges[0]); e++)
		for (c = 0; c < sizeof(coals) / sizeof(coals[0]); c++)
		for (locks = 0; locks < 16; locks++)
		for (io = 0; io < 2; io++)
		for (p = 0; p < REF_NPAUSE; p++) {
			struct ref_state s = { .locks = locks, .io = io, .pause = p };
			uint64_t w = ref_encode(&s) | REF_BL_N(bls[b]) | (ov ? REF_OV : 0) |
				     flags[f] | REF_EDGE_N(edges[e]) | REF_COAL_N(coals[c]) |
				     (f == 2 ? rsv[(e + c) % 4] : 0);

			if (mi == 0)
				check_word_queries(w);
			for (i = 0; i < nv; i++)
				check_one(w, v[i].cmd, v[i].arg, v[i].arg2, m);
		}
	}

	/* The backlog rule's comparison, for every max_backlog against every
	 * backlog, OV clear (COAL 0, and 5: A14) and set (COAL 0, 1, 2, 511),
	 * GN clear and set: stop edges, a start edge, and a command that
	 * makes none. */
	for (m = 1; m <= REF_BL_MAX; m++)
	for (b = 0; b <= REF_BL_MAX; b++)
	for (k = 0; k < 6; k++) {
		static const unsigned kc[6] = { 0, 5, 0, 1, 2, REF_COAL_MOD - 1 };
		uint64_t book = REF_BL_N(b) | (k >= 2 ? REF_OV : 0) | REF_COAL_N(kc[k]) | REF_PK |
				(k % 2 ? REF_GN : 0);

		check_one(book | REF_EDGE_N(0xffffffff), RS_CMD_STOP, 0, 0, m);
		check_one(book | REF_EDGE_N(0), RS_CMD_STOP, 0, 0, m);
		check_one(book | RS_W_LOCK(RS_LOCK_SAVEVM) | REF_EDGE_N(0x1234),
			  RS_CMD_UNLOCK, RS_LOCK_SAVEVM, RS_PAUSE_NONE, m);
		check_one(book | REF_IO | REF_EDGE_N(0x1234), RS_CMD_STOP, 0, 0, m);
	}

	/* A11: invalid max_backlog values, on words that would make an edge,
	 * no edge, or fail; some in the middle of a coalesced run. */
	for (n = 0; n < sizeof(bad_backlogs) / sizeof(bad_backlogs[0]); n++)
	for (e = 0; e < 3; e++)
	for (locks = 0; locks < 16; locks++)
	for (io = 0; io < 2; io++)
	for (p = 0; p < REF_NPAUSE; p++) {
		struct ref_state s = { .locks = locks, .io = io, .pause = p };
		uint64_t w = ref_encode(&s) | REF_EDGE_N(edges[e * 3]) |
			     (e == 1 ? REF_OV | REF_COAL_N(REF_COAL_MOD - 1) | REF_GN : 0) |
			     (e == 2 ? REF_BL_N(1) | REF_EX : 0);

		for (i = 0; i < nv; i++)
			check_one(w, v[i].cmd, v[i].arg, v[i].arg2, bad_backlogs[n]);
	}

	/* A8: NULL out, with commands that would succeed on this word. */
	for (i = 0; i < RS_CMD_COUNT; i++) {
		uint64_t w = RS_W_LOCK(RS_LOCK_DEBUG) |
			     (uint64_t)RS_PAUSE_PAUSED << RS_W_PAUSE_SHIFT;
		int arg = i == RS_CMD_PAUSE ? RS_PAUSE_WATCHDOG :
			  i == RS_CMD_LOCK ? RS_LOCK_SAVEVM :
			  i == RS_CMD_UNLOCK ? RS_LOCK_DEBUG : 0;

		CHECK(rs_transition(w, (enum rs_cmd)i, arg, 0, 64, NULL) == RS_EINVAL,
		      "%s with out == NULL: expected RS_EINVAL (A8)",
		      fmt_cmd(cb, sizeof(cb), (int)i, arg, 0, 64));
		CHECK(rs_transition(w, (enum rs_cmd)i, arg, 0, 0, NULL) == RS_EINVAL,
		      "%s with out == NULL: expected RS_EINVAL (A8, A11)",
		      fmt_cmd(cb, sizeof(cb), (int)i, arg, 0, 0));
	}
}

/* ---------------------------------------------------------------------------
 * Steps the library takes around rs_transition().  They never touch the
 * semantic fields, and nothing in the pure function settles an edge:
 * without the settler's steps the backlog would only grow.  They are the
 * walks' scaffolding, modelled on what the settler is designed to do (its
 * claim and absorb), not something this test checks; what they lead to is
 * checked through rs_transition() and the ledger.
 *
 *  claim     the settler takes the backlog's first entry off it (its edge's
 *            work is done): backlog - 1; if the word may now run, PK is
 *            cleared (the settler wakes the parked vCPUs);
 *  absorb    the backlog has drained (0) while OV is set: the coalesced run
 *            becomes one entry, which ends one edge number after the tail
 *            if the run is odd (it changed running), two if it is even:
 *            OV and COAL cleared, GN flipped, backlog 1, E = that end;
 *  park      a vCPU that may not run parks: PK set;
 *  unpark    PK cleared by someone who wakes the parked (a start's early
 *            wake);
 *  lockwait  a thread waits for a held lock bit: LW set; and LW cleared.
 */
enum env_step {
	ENV_CLAIM, ENV_ABSORB, ENV_PARK, ENV_UNPARK, ENV_LOCKWAIT, ENV_LOCKWAIT_END,
	ENV_COUNT
};

static uint64_t env_step(uint64_t w, int which)
{
	uint32_t end;

	switch (which) {
	case ENV_CLAIM:
		if (ref_bl(w) == 0)
			return w;
		w = ref_with_bl(w, ref_bl(w) - 1);
		return ref_may_run(w) ? w & ~REF_PK : w;
	case ENV_ABSORB:
		if (ref_bl(w) != 0 || !(w & REF_OV))
			return w;
		end = ref_tail(w) + (ref_coal(w) % 2u ? 1u : 2u);
		w = ref_with_coal(w & ~REF_OV, 0) ^ REF_GN;
		return ref_with_edge(ref_with_bl(w, 1), end);
	case ENV_PARK:
		return ref_may_run(w) ? w : w | REF_PK;
	case ENV_UNPARK:
		return w & ~REF_PK;
	case ENV_LOCKWAIT:
		return (w & REF_LOCKS_NAMED) ? w | REF_LW : w;
	default:
		return w & ~REF_LW;
	}
}

/* The invariants of every reachable word, for max_backlog m. */
static void check_invariants(uint64_t w, unsigned m, const char *where)
{
	char wb[192];

	CHECK(((ref_edge(w) & 1) != 0) == ref_word_running(w),
	      "%s: reachable word %s: edge parity is not running-ness", where,
	      fmt_word(wb, sizeof(wb), w));
	CHECK(ref_bl(w) <= m, "%s: reachable word %s: backlog above max_backlog %u", where,
	      fmt_word(wb, sizeof(wb), w), m);
	CHECK(!(w & REF_OV) || !ref_may_run(w), "%s: reachable word %s: OV set, may run",
	      where, fmt_word(wb, sizeof(wb), w));
	CHECK(!ref_may_run(w) || !(w & REF_PK), "%s: reachable word %s: may run with PK set",
	      where, fmt_word(wb, sizeof(wb), w));
	CHECK((w & REF_OV) || ref_coal(w) == 0, "%s: reachable word %s: COAL without OV",
	      where, fmt_word(wb, sizeof(wb), w));
	CHECK(!(w & REF_RESERVED), "%s: reachable word %s: reserved bit set", where,
	      fmt_word(wb, sizeof(wb), w));
}

/* ---------------------------------------------------------------------------
 * 5. Breadth-first search over the words reachable from the initial word
 * through valid commands and library steps, for edge counters below 16 and
 * coalesced counts below 8 (the walks and part 4 take COAL further).  A
 * reachable word has no reserved bit (checked), so the named locks,
 * io-error, pause, OV, backlog, PK, LW, GN, COAL and the edge index a
 * bitmap.
 */
#define BFS_EDGES 16u
#define BFS_COAL 8u
#define BFS_KEYS (1u << 26)

static uint8_t bfs_seen[BFS_KEYS / 8];

static uint32_t bfs_key(uint64_t w)
{
	return (uint32_t)(w & REF_LOCKS_NAMED) |			/* bits 0..3 */
	       (uint32_t)((w & REF_IO) != 0) << 4 |
	       (uint32_t)((w & REF_PAUSE) >> REF_PAUSE_SHIFT) << 5 |	/* 5..7 */
	       (uint32_t)((w & REF_OV) != 0) << 8 |
	       ref_bl(w) << 9 |						/* 9..15 */
	       (uint32_t)((w & REF_PK) != 0) << 16 |
	       (uint32_t)((w & REF_LW) != 0) << 17 |
	       (uint32_t)((w & REF_GN) != 0) << 18 |
	       ref_coal(w) << 19 |					/* 19..21 */
	       ref_edge(w) << 22;					/* 22..25 */
}

static void check_reachable(unsigned m)
{
	struct cmd_arg v[64];
	size_t nv = valid_cmds(v), head = 0, tail = 0, cap = 1u << 16, i;
	uint64_t *queue = malloc(cap * sizeof(*queue));
	uint64_t init = (uint64_t)RS_PAUSE_PRELAUNCH << REF_PAUSE_SHIFT;
	unsigned long n_ov = 0, n_full = 0, n_pk = 0, n_semantic = 0, n_absorb = 0;
	unsigned long n_odd = 0, n_even = 0, n_coal_max = 0, n_gn = 0;
	static uint8_t sem_seen[256];
	char name[32], wb[192], ob[192], xb[192], cb[80], db[800];

	if (!queue)
		abort();
	snprintf(name, sizeof(name), "bfs(max_backlog %u)", m);
	memset(bfs_seen, 0, sizeof(bfs_seen));
	memset(sem_seen, 0, sizeof(sem_seen));
	queue[tail++] = init;
	bfs_seen[bfs_key(init) / 8] |= (uint8_t)(1u << (bfs_key(init) % 8));
	while (head < tail) {
		uint64_t w = queue[head++];
		uint64_t next[64 + ENV_COUNT];
		size_t nn = 0;
		unsigned sem = (unsigned)((w & REF_LOCKS_NAMED) | (w & REF_IO) >> 2 |
					  (w & REF_PAUSE) >> 3);

		check_invariants(w, m, name);
		/* No run here reaches 2^9 edges: OV always comes with a count. */
		CHECK(!(w & REF_OV) || ref_coal(w) != 0, "%s: reachable word %s: OV with COAL 0 "
		      "before 2^%u coalesced edges", name, fmt_word(wb, sizeof(wb), w),
		      REF_COAL_BITS);
		if (w & REF_OV) {
			n_ov++;
			n_absorb += ref_bl(w) == 0;
			n_odd += ref_coal(w) % 2;
			n_even += ref_coal(w) % 2 == 0;
			n_coal_max += ref_coal(w) == BFS_COAL - 1;
		}
		n_full += ref_bl(w) == m;
		n_pk += (w & REF_PK) != 0;
		n_gn += (w & REF_GN) != 0;
		if (!sem_seen[sem]) {
			sem_seen[sem] = 1;
			n_semantic++;
		}
		for (i = 0; i < nv; i++) {
			uint64_t out = SENTINEL, want = 0;
			int err = rs_transition(w, (enum rs_cmd)v[i].cmd, v[i].arg, v[i].arg2,
						m, &out);
			int rerr = ref_transition(w, v[i].cmd, v[i].arg, v[i].arg2, m, &want);

			n_checks++;
			if (err != rerr || (err == 0 && out != want))
				failf("%s: %s on %s: returned %s, word %s; expected %s, word %s; "
				      "differs in:%s", name,
				      fmt_cmd(cb, sizeof(cb), v[i].cmd, v[i].arg, v[i].arg2, m),
				      fmt_word(wb, sizeof(wb), w), fmt_err(err),
				      fmt_word(ob, sizeof(ob), out), fmt_err(rerr),
				      fmt_word(xb, sizeof(xb), want),
				      fmt_diff(db, sizeof(db), out, want));
			else if (err == 0)
				next[nn++] = out;
		}
		for (i = 0; i < ENV_COUNT; i++)
			next[nn++] = env_step(w, (int)i);
		for (i = 0; i < nn; i++) {
			uint64_t x = next[i];
			uint32_t key;

			if (ref_edge(x) >= BFS_EDGES || ref_coal(x) >= BFS_COAL)
				continue;
			if (x & REF_RESERVED) {
				check_invariants(x, m, name);	/* reports it */
				continue;
			}
			key = bfs_key(x);
			if (bfs_seen[key / 8] & (1u << (key % 8)))
				continue;
			bfs_seen[key / 8] |= (uint8_t)(1u << (key % 8));
			if (tail == cap) {
				cap *= 2;
				queue = realloc(queue, cap * sizeof(*queue));
				if (!queue)
					abort();
			}
			queue[tail++] = x;
		}
	}
	free(queue);
	printf("test_transition: %s: %zu reachable words with edge < %u and COAL < %u (%lu "
	       "with OV: %lu odd runs, %lu even, %lu ready to absorb; %lu with a full "
	       "backlog, %lu with PK, %lu with GN)\n", name, tail, BFS_EDGES, BFS_COAL, n_ov,
	       n_odd, n_even, n_absorb, n_full, n_pk, n_gn);
	/* Sanity of the search itself: every semantic state is reachable, and
	 * so are parked words.  A backlog of 1 or 2 fills and overflows within
	 * 16 edges, runs grow to the bound and drain to be absorbed; one of 64
	 * cannot fill, so no word then carries OV. */
	CHECK(n_semantic == 256, "%s reached only %lu of 256 semantic states", name, n_semantic);
	CHECK(n_pk > 0, "%s reached no word with PK", name);
	if (m < BFS_EDGES)
		CHECK(n_ov > 0 && n_full > 0 && n_absorb > 0 && n_odd > 0 && n_even > 0 &&
		      n_coal_max > 0 && n_gn > 0, "%s: no full backlog, OV, odd and even run, "
		      "run of %u, absorbable run or GN reached", name, BFS_COAL - 1);
	else
		CHECK(n_ov == 0 && n_gn == 0, "%s: OV or GN set after fewer than max_backlog "
		      "edges", name);
}

/* ---------------------------------------------------------------------------
 * 6. Random walks in lockstep.
 */
static uint64_t rng_state;

static uint64_t rng(void)
{
	/* splitmix64 */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int pick(const int *v, size_t n)
{
	return v[rng() % n];
}

/*
 * A random command.  `heavy` percent of them come from an edge-heavy mix
 * (stop, cont, unlock, reset) that keeps the VM flipping, for the walks that
 * make long coalesced runs; the rest are weighted towards the commands that
 * make edges but use every command, with some invalid arguments.
 */
static void random_cmd(int *cmd, int *arg, int *arg2, unsigned heavy)
{
	static const int bad_cmds[] = { -1, RS_CMD_COUNT, 100, INT_MAX };
	static const int bad_locks[] = { -1, 4, 5, 99 };
	static const int bad_pause[] = { -1, 8, 99, INT_MIN };
	static const int bad_start[] = { 2, 3, -1 };
	unsigned invalid;

	*arg = 0;
	*arg2 = 0;
	if (heavy && rng() % 100 < heavy) {
		unsigned k = (unsigned)(rng() % 20);

		*cmd = k < 8 ? RS_CMD_STOP : k < 16 ? RS_CMD_CONT : k < 19 ? RS_CMD_UNLOCK :
		       RS_CMD_RESET;
		if (*cmd == RS_CMD_UNLOCK)
			*arg = (int)(rng() % 4);
		return;
	}
	invalid = rng() % 100 < 3;
	if (rng() % 200 == 0) {
		*cmd = pick(bad_cmds, 4);
		return;
	}
	switch (rng() % 14) {
	case 0: case 1: *cmd = RS_CMD_STOP; break;
	case 2: case 3: *cmd = RS_CMD_START; break;
	case 4: *cmd = RS_CMD_RETRY; break;
	case 5: case 6: *cmd = RS_CMD_CONT; break;
	case 7: *cmd = RS_CMD_RESET; break;
	case 8: *cmd = RS_CMD_IO_ERROR; break;
	case 9: *cmd = RS_CMD_PAUSE; break;
	case 10: case 11: *cmd = RS_CMD_LOCK; break;
	default: *cmd = RS_CMD_UNLOCK; break;
	}
	switch (*cmd) {
	case RS_CMD_START:
		*arg = invalid ? pick(bad_start, 3) : (int)(rng() % 2);
		break;
	case RS_CMD_PAUSE:
		*arg = invalid ? pick(bad_pause, 4) : 1 + (int)(rng() % 7);
		if (rng() % 100 == 0)
			*arg = RS_PAUSE_NONE;
		break;
	case RS_CMD_LOCK:
		*arg = invalid ? pick(bad_locks, 4) : (int)(rng() % 4);
		break;
	case RS_CMD_UNLOCK:
		*arg = invalid ? pick(bad_locks, 4) : (int)(rng() % 4);
		*arg2 = rng() % 2 ? RS_PAUSE_NONE : (int)(rng() % 8);
		if (rng() % 100 == 0)
			*arg2 = pick(bad_pause, 4);
		break;
	}
}

/*
 * The walk's ledger of unsettled edges, kept from the edges the walk made
 * and the settler's steps alone, never from the word: the backlog's entries
 * in order (an appended edge, or a run of n coalesced edges once absorbed),
 * the pending run (edges coalesced since the last absorb, counted without
 * wrapping), and E of the last settled entry.  An entry moves the settled
 * edge number by 1 if it changes running (an edge, or an odd run) and by 2
 * if not (an even run).  The word must agree (ledger_check()).
 */
struct ledger_entry {
	uint64_t n;		/* edges in the entry */
	bool run;		/* a coalesced run (else one appended edge) */
};

struct ledger {
	struct ledger_entry entry[REF_BL_MAX + 1];
	unsigned head, count;
	uint64_t pending;	/* coalesced edges not yet absorbed */
	uint32_t settled;	/* E after the last settled entry */
	uint32_t sum;		/* the entries' edge numbers, modulo 2^32 */
	bool gen;		/* GN: the start's, flipped by every absorb */
	bool overflow;		/* more entries than the backlog can hold */
};

static uint32_t entry_numbers(const struct ledger_entry *e)
{
	return !e->run || e->n % 2 ? 1u : 2u;
}

static void ledger_push(struct ledger *l, uint64_t n, bool run)
{
	struct ledger_entry *e;

	if (l->count > REF_BL_MAX) {
		l->overflow = true;
		return;
	}
	e = &l->entry[(l->head + l->count++) % (REF_BL_MAX + 1)];
	e->n = n;
	e->run = run;
	l->sum += entry_numbers(e);
}

static void ledger_claim(struct ledger *l)
{
	const struct ledger_entry *e;

	if (l->count == 0)
		return;
	e = &l->entry[l->head];
	l->head = (l->head + 1) % (REF_BL_MAX + 1);
	l->count--;
	l->settled += entry_numbers(e);
	l->sum -= entry_numbers(e);
}

static void ledger_absorb(struct ledger *l)
{
	ledger_push(l, l->pending, true);
	l->pending = 0;
	l->gen = !l->gen;
}

static void ledger_check(const struct ledger *l, uint64_t w, const char *where,
			 unsigned long step)
{
	uint32_t after = l->settled + l->sum;
	bool ov = (w & REF_OV) != 0;
	char wb[192];

	CHECK(!l->overflow && l->count == ref_bl(w) && ov == (l->pending != 0) &&
	      ref_coal(w) == l->pending % REF_COAL_MOD && ((w & REF_GN) != 0) == l->gen &&
	      (ov ? ref_tail(w) == after && ref_edge(w) == after + (uint32_t)(l->pending % 2)
		  : ref_edge(w) == after),
	      "walk %s step %lu: word %s against the ledger: %u entries ending at edge "
	      "0x%08" PRIx32 " (settled 0x%08" PRIx32 "), a pending run of %" PRIu64
	      " coalesced edges, GN %d%s: expected BL = entries, OV iff a run is pending, "
	      "COAL = run mod 2^9, GN flipped by each absorb, %s", where, step,
	      fmt_word(wb, sizeof(wb), w), l->count, after, l->settled, l->pending, l->gen,
	      l->overflow ? ", more entries than 127" : "",
	      ov ? "tail = the entries' end, E = tail + (run & 1)" : "E = the entries' end");
}

struct walk_cfg {
	const char *name;
	uint64_t start;
	unsigned m;
	unsigned long steps;
	uint64_t seed;
	unsigned heavy;			/* percent of edge-heavy commands */
	unsigned long stall_min, stall_span;	/* stalled phases (0: none) */
	bool stall_first;		/* begin with a stalled phase */
	bool must_wrap;			/* E must wrap around */
	bool must_wrap_coal;		/* a run must reach 2^9 edges */
	bool must_tail_wrap;		/* a run must straddle E's wrap */
};

struct walk_stats {
	unsigned long edges, joined, coalesced, claims, absorbs, odd_runs, even_runs;
	unsigned long long_runs, coal_zero, tail_wrap, errors, env, bad_max;
	uint64_t longest;
	unsigned max_bl;
	bool wrapped;
};

/* E moved forward across 0 (a coalesced edge that steps back to the tail
 * does not count). */
static void note_wrap(struct walk_stats *ws, uint64_t before, uint64_t after)
{
	if (ref_edge(after) < ref_edge(before) &&
	    ref_edge(before) - ref_edge(after) > UINT32_C(0x80000000))
		ws->wrapped = true;
}

/* One library step on both words and the ledger. */
static void walk_env(uint64_t *ref_w, uint64_t *lib_w, struct ledger *l, int which,
		     struct walk_stats *ws)
{
	uint64_t before = *ref_w;

	*ref_w = env_step(*ref_w, which);
	*lib_w = env_step(*lib_w, which);
	if (*ref_w == before)
		return;
	ws->env++;
	note_wrap(ws, before, *ref_w);
	if (which == ENV_CLAIM) {
		ledger_claim(l);
		ws->claims++;
	} else if (which == ENV_ABSORB) {
		if (l->pending > ws->longest)
			ws->longest = l->pending;
		ws->long_runs += l->pending >= REF_COAL_MOD;
		if (l->pending % 2)
			ws->odd_runs++;
		else
			ws->even_runs++;
		ledger_absorb(l);
		ws->absorbs++;
	}
}

enum { PHASE_FAST, PHASE_SLOW, PHASE_STALL };

static void walk(const struct walk_cfg *cfg)
{
	const char *name = cfg->name;
	unsigned m = cfg->m;
	uint64_t ref_w = cfg->start, lib_w = cfg->start;
	struct ledger l = { .settled = ref_edge(cfg->start),
			    .gen = (cfg->start & REF_GN) != 0 };
	struct walk_stats ws = { 0 };
	unsigned long i, phase_end = 0;
	int phase = cfg->stall_first ? PHASE_SLOW : PHASE_STALL;
	char wb[192], ob[192], xb[192], cb[80], db[800];

	rng_state = cfg->seed;
	printf("test_transition: walk %s: max_backlog %u, seed 0x%016" PRIx64 ", %lu commands"
	       "%s\n", name, m, cfg->seed, cfg->steps,
	       cfg->stall_span ? ", edge-heavy, the settler stalls" : "");
	for (i = 0; i < cfg->steps; i++) {
		uint64_t out = SENTINEL, want;
		unsigned k, n, mm = m;
		int cmd, arg, arg2, err, rerr;

		/* The settler: phases of a fast one (drains the backlog), a
		 * slow one (lets it fill and overflow) and, in some walks, a
		 * stalled one (long coalesced runs). */
		if (i >= phase_end) {
			phase = phase == PHASE_FAST ? PHASE_SLOW :
				phase == PHASE_SLOW && cfg->stall_span ? PHASE_STALL : PHASE_FAST;
			phase_end = i + (phase == PHASE_FAST ? 1 + rng() % 2000 :
					 phase == PHASE_SLOW ? 2000 + rng() % 20000 :
					 cfg->stall_min + rng() % cfg->stall_span);
		}
		n = phase == PHASE_FAST ? (unsigned)(rng() % 4) :
		    phase == PHASE_SLOW ? rng() % 256 == 0 : 0;
		for (k = 0; k < n; k++)
			walk_env(&ref_w, &lib_w, &l,
				 ref_bl(ref_w) ? ENV_CLAIM : ENV_ABSORB, &ws);
		switch (rng() % 16) {
		case 0: walk_env(&ref_w, &lib_w, &l, ENV_PARK, &ws); break;
		case 1: walk_env(&ref_w, &lib_w, &l, ENV_UNPARK, &ws); break;
		case 2: walk_env(&ref_w, &lib_w, &l, ENV_LOCKWAIT, &ws); break;
		case 3: walk_env(&ref_w, &lib_w, &l, ENV_LOCKWAIT_END, &ws); break;
		}
		check_invariants(ref_w, m, name);
		ledger_check(&l, ref_w, name, i);

		random_cmd(&cmd, &arg, &arg2, cfg->heavy);
		/* Now and then an invalid max_backlog: nothing changes (A11). */
		if (rng() % 512 == 0) {
			mm = bad_backlogs[rng() % (sizeof(bad_backlogs) / sizeof(bad_backlogs[0]))];
			ws.bad_max++;
		}
		want = ref_w;
		rerr = ref_transition(ref_w, cmd, arg, arg2, mm, &want);
		err = rs_transition(lib_w, (enum rs_cmd)cmd, arg, arg2, mm, &out);
		n_checks++;
		if (err != rerr) {
			failf("walk %s step %lu: %s on %s: returned %s, expected %s", name, i,
			      fmt_cmd(cb, sizeof(cb), cmd, arg, arg2, mm),
			      fmt_word(wb, sizeof(wb), lib_w), fmt_err(err), fmt_err(rerr));
		} else if (err != 0) {
			ws.errors++;
			CHECK(out == SENTINEL, "walk %s step %lu: %s on %s: *out written on error",
			      name, i, fmt_cmd(cb, sizeof(cb), cmd, arg, arg2, mm),
			      fmt_word(wb, sizeof(wb), lib_w));
		} else if (out != want) {
			failf("walk %s step %lu: %s on %s: new word %s, expected %s; differs in:%s",
			      name, i, fmt_cmd(cb, sizeof(cb), cmd, arg, arg2, mm),
			      fmt_word(wb, sizeof(wb), lib_w), fmt_word(ob, sizeof(ob), out),
			      fmt_word(xb, sizeof(xb), want), fmt_diff(db, sizeof(db), out, want));
		}
		if (rerr == 0 && ref_word_running(want) != ref_word_running(ref_w)) {
			/* An edge: the ledger decides from the old word and m
			 * where it goes, not from the new word. */
			ws.edges++;
			if (!(ref_w & REF_OV) && ref_bl(ref_w) < m) {
				ws.joined++;
				ledger_push(&l, 1, false);
			} else {
				ws.coalesced++;
				l.pending++;
			}
		}
		note_wrap(&ws, ref_w, want);
		ref_w = want;
		if (ref_bl(ref_w) > ws.max_bl)
			ws.max_bl = ref_bl(ref_w);
		ws.coal_zero += (ref_w & REF_OV) && ref_coal(ref_w) == 0;
		ws.tail_wrap += (ref_w & REF_OV) && ref_edge(ref_w) < ref_tail(ref_w);
		check_invariants(ref_w, m, name);
		ledger_check(&l, ref_w, name, i);
		/* Resynchronise after a reported divergence so that one bug does
		 * not hide the next. */
		lib_w = ref_w;
	}
	printf("test_transition: walk %s: %lu edges (%lu joined the backlog, %lu coalesced), "
	       "%lu claims, %lu absorbs (%lu odd runs, %lu even, %lu of 2^9 edges or more, "
	       "the longest %" PRIu64 "), largest backlog %u, %lu other library steps, "
	       "%lu errors returned (%lu for an invalid max_backlog)%s%s\n", name, ws.edges,
	       ws.joined, ws.coalesced, ws.claims, ws.absorbs, ws.odd_runs, ws.even_runs,
	       ws.long_runs, ws.longest, ws.max_bl, ws.env - ws.claims - ws.absorbs,
	       ws.errors, ws.bad_max, ws.wrapped ? ", edge counter wrapped" : "",
	       ws.tail_wrap ? ", coalesced across the wrap" : "");
	/* Sanity of the walk itself: the backlog filled, edges were coalesced
	 * in odd and even runs, absorbed, and it drained. */
	CHECK(ws.max_bl == m && ws.coalesced > 0 && ws.odd_runs > 0 && ws.even_runs > 0,
	      "walk %s never filled the backlog, or coalesced and absorbed no odd or no even "
	      "run (test too short)", name);
	if (cfg->must_wrap)
		CHECK(ws.wrapped, "walk %s did not wrap the edge counter (test too short)", name);
	if (cfg->must_wrap_coal)
		CHECK(ws.long_runs > 0 && ws.coal_zero > 0,
		      "walk %s absorbed no run of 2^9 edges or more (test too short)", name);
	if (cfg->must_tail_wrap)
		CHECK(ws.tail_wrap > 0, "walk %s: no run with tail 0xffffffff and E 0", name);
}

int main(void)
{
	const uint64_t prelaunch = (uint64_t)RS_PAUSE_PRELAUNCH << REF_PAUSE_SHIFT;
	const struct walk_cfg walks[] = {
		{ "from-initial", prelaunch, 64, 1000000, 0x72756e7374617465ull,
		  0, 0, 0, false, false, false, false },
		{ "max-1", prelaunch, 1, 200000, 0x6d61782d31000000ull,
		  0, 0, 0, false, false, false, false },
		{ "max-2", prelaunch, 2, 200000, 0x6d61782d32000000ull,
		  0, 0, 0, false, false, false, false },
		{ "max-127", prelaunch, 127, 400000, 0x6d61782d31323700ull,
		  0, 0, 0, false, false, false, false },
		/* Stopped in prelaunch with an even edge count just below 2^32. */
		{ "across-wrap", prelaunch | REF_EDGE_N(0xffffff00u), 3, 100000,
		  0x777261702d61726full, 0, 0, 0, false, true, false, false },
		/* Runs of thousands of coalesced edges: COAL wraps. */
		{ "coal-wrap-1", prelaunch, 1, 300000, 0x636f616c2d312d31ull,
		  85, 3000, 5000, false, false, true, false },
		{ "coal-wrap-127", prelaunch, 127, 300000, 0x636f616c2d313237ull,
		  85, 3000, 5000, false, false, true, false },
		/* The first edge makes E 0xffffffff, then the settler stalls:
		 * the run's tail is 0xffffffff and E goes to 0 and back. */
		{ "coal-at-wrap", prelaunch | REF_EDGE_N(0xfffffffeu), 1, 100000,
		  0x636f616c2d777261ull, 85, 3000, 5000, true, true, true, true },
	};
	unsigned long before;
	size_t i;

/* Run one part; name it with its failures, if any. */
#define PART(name, call) do {						\
	before = n_failures;						\
	call;								\
	if (n_failures > before)					\
		printf("test_transition: %s: %lu failures\n", name,	\
		       n_failures - before);				\
} while (0)
	PART("names", check_names());
	PART("errors", check_errors());
	PART("by hand", check_by_hand());
	PART("4a arguments", check_arguments());
	PART("4b bookkeeping", check_bookkeeping());
	PART("bfs(max_backlog 1)", check_reachable(1));
	PART("bfs(max_backlog 2)", check_reachable(2));
	PART("bfs(max_backlog 64)", check_reachable(64));
	for (i = 0; i < sizeof(walks) / sizeof(walks[0]); i++)
		PART(walks[i].name, walk(&walks[i]));
#undef PART
	if (n_tolerated)
		printf("test_transition: %lu calls with a nonzero unused argument were "
		       "rejected with RS_EINVAL (accepted, A3)\n", n_tolerated);
	printf("test_transition: %lu checks, %lu failures\n", n_checks, n_failures);
	return n_failures ? 1 : 0;
}

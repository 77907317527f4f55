/* SPDX-License-Identifier: MIT */
/*
 * test_transition: an independent oracle for rs_transition() and the pure
 * helpers of runstate.h (rs_decode, rs_legacy_status, rs_pause_rank, the
 * name tables, rs_strerror).
 *
 * The reference model below was written from the contract text and the
 * public header only, never from the library's sources.  It has its own rank
 * table, its own name tables and its own legacy-status priority list.
 *
 * Parts:
 *   1. static checks of the word layout against the diagram in runstate.h;
 *   2. names, ranks, errors;
 *   3. rs_decode() and rs_legacy_status() on every enumerated word;
 *   4. every command with every argument (valid and invalid, unknown command
 *      codes too) on every semantic state (4 lock bits x io-error x 8 pause
 *      reasons = 256) combined with every value of SETTLING/PARKED/LOCKWAIT
 *      and several edge counter values including 0x7ffff (wrap-around);
 *   5. reachability: breadth-first search from the initial word (edge 0,
 *      prelaunch) checking edge parity == running-ness;
 *   6. random walks (fixed seeds) through both models in lockstep: 10^6
 *      commands from the initial word, then 10^5 from just below the edge
 *      counter's wrap-around.
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
 *     changes nothing semantic (then new != old).  Since every edge sets
 *     SETTLING, in practice PARKED is only cleared on such already-runnable
 *     words.
 *  A8 rs_transition(..., NULL) is RS_EINVAL (contract: a NULL pointer is an
 *     invalid argument).
 *  A9 START, RETRY, CONT and RESET never fail except as the contract says
 *     (START: needs-force, needs-reset; CONT: needs-reset), including on a
 *     running VM (a no-op that returns 0).
 * A10 rs_pause_parse("none") is RS_PAUSE_NONE (it is the inverse of
 *     rs_pause_name, and "none" is a name); rs_lock_parse("none") is
 *     RS_EINVAL.
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
 * 1. The layout, as drawn in the header's diagram.
 */
_Static_assert(RS_W_LOCK(RS_LOCK_DEBUG) == 0x01u, "debug is bit 0");
_Static_assert(RS_W_LOCK(RS_LOCK_SAVEVM) == 0x02u, "savevm is bit 1");
_Static_assert(RS_W_LOCK(RS_LOCK_PRE_MIGRATE) == 0x04u, "pre-migrate is bit 2");
_Static_assert(RS_W_LOCK(RS_LOCK_RESTORE) == 0x08u, "restore is bit 3");
_Static_assert(RS_W_LOCKS == 0x3fu, "locks: bits 0..5");
_Static_assert(RS_W_IO_ERROR == 1u << 6, "IO: bit 6");
_Static_assert(RS_W_SETTLING == 1u << 7, "ST: bit 7");
_Static_assert(RS_W_PAUSE_MASK == 7u << RS_W_PAUSE_SHIFT && RS_W_PAUSE_SHIFT == 8,
	       "pause: bits 8..10");
_Static_assert(RS_W_PARKED == 1u << 11, "PK: bit 11");
_Static_assert(RS_W_LOCKWAIT == 1u << 12, "LW: bit 12");
_Static_assert(RS_W_EDGE_SHIFT == 13 && RS_W_EDGE_BITS == 19 &&
	       RS_W_EDGE_MASK == ((1u << 19) - 1) << 13 &&
	       RS_W_EDGE_ONE == 1u << 13, "edge: bits 13..31");
_Static_assert((RS_W_LOCKS | RS_W_IO_ERROR | RS_W_SETTLING | RS_W_PAUSE_MASK |
		RS_W_PARKED | RS_W_LOCKWAIT | RS_W_EDGE_MASK) == 0xffffffffu,
	       "the fields cover the word");
_Static_assert(RS_W_STOPPED_MASK == (RS_W_LOCKS | RS_W_IO_ERROR | RS_W_PAUSE_MASK),
	       "stopped: locks, io-error, pause");
_Static_assert(RS_W_NORUN_MASK == (RS_W_STOPPED_MASK | RS_W_SETTLING),
	       "no-run: stopped or settling");
_Static_assert(RS_LOCK_COUNT == 4 && RS_PAUSE_COUNT == 8 && RS_CMD_COUNT == 9,
	       "counts");

/* ---------------------------------------------------------------------------
 * The reference model.
 */
#define REF_EDGE_MOD (1u << 19)
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

static bool ref_running(const struct ref_state *s)
{
	return s->locks == 0 && !s->io && s->pause == RS_PAUSE_NONE;
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

/* Own decoding of the semantic fields (reserved lock bits are not part of
 * the semantic state; the enumerations never set them). */
static struct ref_state ref_decode(uint32_t w)
{
	struct ref_state s;

	s.locks = w & (RS_W_LOCK(0) | RS_W_LOCK(1) | RS_W_LOCK(2) | RS_W_LOCK(3));
	s.io = (w & RS_W_IO_ERROR) != 0;
	s.pause = (int)((w & RS_W_PAUSE_MASK) >> RS_W_PAUSE_SHIFT);
	return s;
}

static uint32_t ref_encode(const struct ref_state *s)
{
	uint32_t w = 0;
	int r;

	for (r = 0; r < REF_NLOCKS; r++)
		if (s->locks & (1u << r))
			w |= RS_W_LOCK(r);
	if (s->io)
		w |= RS_W_IO_ERROR;
	w |= (uint32_t)s->pause << RS_W_PAUSE_SHIFT;
	return w;
}

static uint32_t ref_edge(uint32_t w)
{
	return w >> RS_W_EDGE_SHIFT;
}

static bool ref_word_running(uint32_t w)
{
	return (w & RS_W_STOPPED_MASK) == 0;
}

/*
 * The full word after a successful command: new semantic fields; the edge
 * counter advances by one (mod 2^19) iff running-ness changes; SETTLING set
 * on an edge, else preserved; LOCKWAIT preserved; PARKED cleared when the new
 * word lets vCPUs run, else preserved.
 */
static uint32_t ref_word_after(uint32_t old, const struct ref_state *ns)
{
	uint32_t keep = RS_W_SETTLING | RS_W_PARKED | RS_W_LOCKWAIT;
	uint32_t edge = ref_edge(old);
	uint32_t w = ref_encode(ns) | (old & keep);

	if (ref_running(ns) != ref_word_running(old)) {
		edge = (edge + 1) % REF_EDGE_MOD;
		w |= RS_W_SETTLING;
	}
	w |= edge << RS_W_EDGE_SHIFT;
	if ((w & RS_W_NORUN_MASK) == 0)
		w &= ~RS_W_PARKED;
	return w;
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

/* Describe a word in a buffer: "locks=debug,savevm io pause=paused ST PK LW
 * edge=0x12 (0x00024100)". */
static const char *fmt_word(char *buf, size_t len, uint32_t w)
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
	if (w & (RS_W_LOCKS & ~0xfu))
		o += (size_t)snprintf(buf + o, len - o, "+reserved");
	o += (size_t)snprintf(buf + o, len - o, "%s pause=%s%s%s%s edge=0x%" PRIx32
			      " (0x%08" PRIx32 ")",
			      s.io ? " io" : "", ref_pause_names[s.pause],
			      (w & RS_W_SETTLING) ? " ST" : "",
			      (w & RS_W_PARKED) ? " PK" : "",
			      (w & RS_W_LOCKWAIT) ? " LW" : "",
			      ref_edge(w), w);
	return buf;
}

static const char *fmt_cmd(char *buf, size_t len, int cmd, int arg, int arg2)
{
	if (cmd >= 0 && cmd < RS_CMD_COUNT)
		snprintf(buf, len, "%s(arg=%d, arg2=%d)", ref_cmd_names[cmd], arg, arg2);
	else
		snprintf(buf, len, "cmd %d(arg=%d, arg2=%d)", cmd, arg, arg2);
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
	}
	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%d", err);
	return buf[i];
}

/* Name the fields in which two words differ. */
static const char *fmt_diff(char *buf, size_t len, uint32_t got, uint32_t want)
{
	uint32_t d = got ^ want;
	size_t o = 0;

	buf[0] = 0;
	if (d & 0xfu)
		o += (size_t)snprintf(buf + o, len - o, " locks");
	if (d & (RS_W_LOCKS & ~0xfu))
		o += (size_t)snprintf(buf + o, len - o, " reserved-locks");
	if (d & RS_W_IO_ERROR)
		o += (size_t)snprintf(buf + o, len - o, " io-error");
	if (d & RS_W_PAUSE_MASK)
		o += (size_t)snprintf(buf + o, len - o, " pause");
	if (d & RS_W_SETTLING)
		o += (size_t)snprintf(buf + o, len - o, " SETTLING(set on edge, else kept)");
	if (d & RS_W_PARKED)
		o += (size_t)snprintf(buf + o, len - o,
				      " PARKED(cleared iff new word runnable, A7)");
	if (d & RS_W_LOCKWAIT)
		o += (size_t)snprintf(buf + o, len - o, " LOCKWAIT(kept, A6)");
	if (d & RS_W_EDGE_MASK)
		o += (size_t)snprintf(buf + o, len - o,
				      " edge(+1 mod 2^19 iff running-ness changes)");
	return buf;
}

/* ---------------------------------------------------------------------------
 * One comparison of rs_transition() against the model.
 */
#define SENTINEL 0xa5a5a5a5u

static void check_one(uint32_t old, int cmd, int arg, int arg2)
{
	struct ref_state s = ref_decode(old), ns;
	unsigned used = ref_used_args(cmd);
	bool unused_nonzero = (!(used & 1) && arg != 0) || (!(used & 2) && arg2 != 0);
	int rarg = (used & 1) ? arg : 0;
	int rarg2 = (used & 2) ? arg2 : 0;
	uint32_t out = SENTINEL, want = 0;
	char wb[160], ob[160], xb[160], cb[64], db[200];
	int err, rerr;

	rerr = ref_apply(&s, cmd, rarg, rarg2, &ns);
	if (rerr == 0)
		want = ref_word_after(old, &ns);
	err = rs_transition(old, (enum rs_cmd)cmd, arg, arg2, &out);

	n_checks++;
	if (unused_nonzero && rerr != RS_EINVAL && err == RS_EINVAL && out == SENTINEL) {
		n_tolerated++;
		return;
	}
	if (err != rerr) {
		failf("%s on %s: returned %s, expected %s%s",
		      fmt_cmd(cb, sizeof(cb), cmd, arg, arg2),
		      fmt_word(wb, sizeof(wb), old), fmt_err(err), fmt_err(rerr),
		      unused_nonzero ? " (or RS_EINVAL for an unused argument)" : "");
		return;
	}
	if (err != 0) {
		if (out != SENTINEL)
			failf("%s on %s: returned %s but wrote *out = 0x%08" PRIx32
			      " (must be untouched on error)",
			      fmt_cmd(cb, sizeof(cb), cmd, arg, arg2),
			      fmt_word(wb, sizeof(wb), old), fmt_err(err), out);
		return;
	}
	if (out != want)
		failf("%s on %s: new word %s, expected %s; differs in:%s",
		      fmt_cmd(cb, sizeof(cb), cmd, arg, arg2),
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
	};
	static const int others[] = {
		1, 2, 12345, -2, -4, -9999, INT_MIN, INT_MAX, -EINTR, -EAGAIN,
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
static void check_word_queries(uint32_t w)
{
	struct ref_state s = ref_decode(w);
	struct rs_state st, st1;
	struct rs_runstate_head head = { .word = w };
	const char *legacy = rs_legacy_status(w);
	bool running = ref_word_running(w);
	bool may_run = (w & RS_W_NORUN_MASK) == 0;
	char wb[160];

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
	      st.settling == ((w & RS_W_SETTLING) != 0) && st.io_error == s.io &&
	      st.locks == s.locks && (int)st.pause == s.pause &&
	      st.edge == ref_edge(w),
	      "rs_decode(%s) = {running=%d may_run=%d settling=%d io=%d locks=0x%x "
	      "pause=%d edge=0x%" PRIx32 "}", fmt_word(wb, sizeof(wb), w),
	      st.running, st.may_run, st.settling, st.io_error, st.locks,
	      (int)st.pause, st.edge);
	CHECK(legacy && strcmp(legacy, ref_legacy(&s)) == 0,
	      "rs_legacy_status(%s) = \"%s\", expected \"%s\"",
	      fmt_word(wb, sizeof(wb), w), legacy ? legacy : "(null)", ref_legacy(&s));
	/* The inline fast path, on a fake instance whose first member is the word. */
	CHECK(rs_may_run((const rs_runstate *)&head) == may_run,
	      "rs_may_run(%s) = %d", fmt_word(wb, sizeof(wb), w), !may_run);
}

/* ---------------------------------------------------------------------------
 * 4. Exhaustive: every state, every command, every argument.
 */
static const uint32_t edges[] = {
	0, 1, 2, 3, 0x2aaaa, 0x40000, 0x7fffe, 0x7ffff,
};
static const int cmds[] = {
	RS_CMD_STOP, RS_CMD_START, RS_CMD_RETRY, RS_CMD_CONT, RS_CMD_RESET,
	RS_CMD_IO_ERROR, RS_CMD_PAUSE, RS_CMD_LOCK, RS_CMD_UNLOCK,
	-1, RS_CMD_COUNT, RS_CMD_COUNT + 1, 100, INT_MAX, INT_MIN,
};
static const int args[] = {
	INT_MIN, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 99, INT_MAX,
};

static void check_exhaustive(void)
{
	static const uint32_t flags[] = {
		0, RS_W_SETTLING, RS_W_PARKED, RS_W_LOCKWAIT,
		RS_W_SETTLING | RS_W_PARKED, RS_W_SETTLING | RS_W_LOCKWAIT,
		RS_W_PARKED | RS_W_LOCKWAIT,
		RS_W_SETTLING | RS_W_PARKED | RS_W_LOCKWAIT,
	};
	size_t e, f, c, a, a2;
	unsigned locks, io;
	int p;
	char cb[64];

	for (e = 0; e < sizeof(edges) / sizeof(edges[0]); e++)
	for (f = 0; f < sizeof(flags) / sizeof(flags[0]); f++)
	for (locks = 0; locks < 16; locks++)
	for (io = 0; io < 2; io++)
	for (p = 0; p < REF_NPAUSE; p++) {
		struct ref_state s = { .locks = locks, .io = io, .pause = p };
		uint32_t w = ref_encode(&s) | flags[f] | edges[e] << RS_W_EDGE_SHIFT;

		check_word_queries(w);
		for (c = 0; c < sizeof(cmds) / sizeof(cmds[0]); c++)
		for (a = 0; a < sizeof(args) / sizeof(args[0]); a++)
		for (a2 = 0; a2 < sizeof(args) / sizeof(args[0]); a2++)
			check_one(w, cmds[c], args[a], args[a2]);
	}

	/* A8: NULL out, with commands that would succeed on this word. */
	for (c = 0; c < RS_CMD_COUNT; c++) {
		uint32_t w = RS_W_LOCK(RS_LOCK_DEBUG) |
			     (uint32_t)RS_PAUSE_PAUSED << RS_W_PAUSE_SHIFT;
		int arg = c == RS_CMD_PAUSE ? RS_PAUSE_WATCHDOG :
			  c == RS_CMD_LOCK ? RS_LOCK_SAVEVM :
			  c == RS_CMD_UNLOCK ? RS_LOCK_DEBUG : 0;

		CHECK(rs_transition(w, (enum rs_cmd)c, arg, 0, NULL) == RS_EINVAL,
		      "%s with out == NULL: expected RS_EINVAL (A8)",
		      fmt_cmd(cb, sizeof(cb), (int)c, arg, 0));
	}
}

/* ---------------------------------------------------------------------------
 * Steps the library takes around rs_transition() (settling done, waking the
 * parked vCPUs if the VM may now run; a vCPU parks or is woken; a thread
 * starts or stops waiting for a lock bit).  They never touch the semantic
 * fields or the edge counter.
 */
static uint32_t env_step(uint32_t w, unsigned which)
{
	switch (which % 5) {
	case 0:
		w &= ~RS_W_SETTLING;
		return (w & RS_W_NORUN_MASK) ? w : w & ~RS_W_PARKED;
	case 1:
		return (w & RS_W_NORUN_MASK) ? w | RS_W_PARKED : w;
	case 2:
		return w & ~RS_W_PARKED;
	case 3:
		return (w & 0xfu) ? w | RS_W_LOCKWAIT : w;
	default:
		return w & ~RS_W_LOCKWAIT;
	}
}

static void check_parity(uint32_t w, const char *where)
{
	char wb[160];

	CHECK(((ref_edge(w) & 1) != 0) == ref_word_running(w),
	      "%s: reachable word %s: edge parity is not running-ness", where,
	      fmt_word(wb, sizeof(wb), w));
}

/* ---------------------------------------------------------------------------
 * 5. Breadth-first search over the words reachable from the initial word
 * through valid commands and library steps, for edge counts below 16 (the
 * word is then below 2^17 and indexes a bitmap).
 */
#define BFS_LIMIT (16u << RS_W_EDGE_SHIFT)

struct cmd_arg {
	int cmd, arg, arg2;
};

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

static void check_reachable(void)
{
	static uint8_t seen[BFS_LIMIT / 8];
	static uint32_t queue[BFS_LIMIT];
	struct cmd_arg v[64];
	size_t nv = valid_cmds(v), head = 0, tail = 0, i;
	uint32_t init = (uint32_t)RS_PAUSE_PRELAUNCH << RS_W_PAUSE_SHIFT;

	queue[tail++] = init;
	seen[init / 8] |= 1u << (init % 8);
	while (head < tail) {
		uint32_t w = queue[head++];
		uint32_t next[64 + 5];
		size_t nn = 0;

		check_parity(w, "bfs");
		for (i = 0; i < nv; i++) {
			uint32_t out = SENTINEL;

			if (rs_transition(w, (enum rs_cmd)v[i].cmd, v[i].arg, v[i].arg2,
					  &out) == 0)
				next[nn++] = out;
		}
		for (i = 0; i < 5; i++)
			next[nn++] = env_step(w, (unsigned)i);
		for (i = 0; i < nn; i++) {
			uint32_t x = next[i];

			if (x >= BFS_LIMIT || (seen[x / 8] & (1u << (x % 8))))
				continue;
			seen[x / 8] |= 1u << (x % 8);
			queue[tail++] = x;
		}
	}
	printf("test_transition: %zu reachable words with edge < 16\n", tail);
	/* Sanity of the search itself: every semantic state is reachable. */
	CHECK(tail >= 256, "bfs reached only %zu words", tail);
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

static void random_cmd(int *cmd, int *arg, int *arg2)
{
	static const int bad_cmds[] = { -1, RS_CMD_COUNT, 100, INT_MAX };
	static const int bad_locks[] = { -1, 4, 5, 99 };
	static const int bad_pause[] = { -1, 8, 99, INT_MIN };
	static const int bad_start[] = { 2, 3, -1 };
	unsigned invalid = rng() % 100 < 3;

	*arg = 0;
	*arg2 = 0;
	if (rng() % 200 == 0) {
		*cmd = pick(bad_cmds, 4);
		return;
	}
	/* Weighted towards the commands that make edges. */
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

static void walk(const char *name, uint32_t start, unsigned long steps, uint64_t seed,
		 bool must_wrap)
{
	uint32_t ref_w = start, lib_w = start;
	unsigned long i, edges_seen = 0, env = 0, errors = 0;
	bool wrapped = false;
	char wb[160], ob[160], xb[160], cb[64], db[200];

	rng_state = seed;
	printf("test_transition: walk %s: seed 0x%016" PRIx64 ", %lu commands\n",
	       name, seed, steps);
	for (i = 0; i < steps; i++) {
		struct ref_state ns, s = ref_decode(ref_w);
		uint32_t out = SENTINEL, want = ref_w;
		int cmd, arg, arg2, err, rerr;

		if (rng() % 8 == 0) {
			unsigned which = (unsigned)(rng() % 5);

			ref_w = env_step(ref_w, which);
			lib_w = env_step(lib_w, which);
			env++;
		}
		random_cmd(&cmd, &arg, &arg2);
		rerr = ref_apply(&s, cmd, arg, arg2, &ns);
		if (rerr == 0)
			want = ref_word_after(ref_w, &ns);
		err = rs_transition(lib_w, (enum rs_cmd)cmd, arg, arg2, &out);
		n_checks++;
		if (err != rerr) {
			failf("walk %s step %lu: %s on %s: returned %s, expected %s", name, i,
			      fmt_cmd(cb, sizeof(cb), cmd, arg, arg2),
			      fmt_word(wb, sizeof(wb), lib_w), fmt_err(err), fmt_err(rerr));
		} else if (err != 0) {
			errors++;
			CHECK(out == SENTINEL, "walk %s step %lu: %s on %s: *out written on error",
			      name, i, fmt_cmd(cb, sizeof(cb), cmd, arg, arg2),
			      fmt_word(wb, sizeof(wb), lib_w));
		} else if (out != want) {
			failf("walk %s step %lu: %s on %s: new word %s, expected %s; differs in:%s",
			      name, i, fmt_cmd(cb, sizeof(cb), cmd, arg, arg2),
			      fmt_word(wb, sizeof(wb), lib_w), fmt_word(ob, sizeof(ob), out),
			      fmt_word(xb, sizeof(xb), want), fmt_diff(db, sizeof(db), out, want));
		}
		if (err == 0)
			lib_w = out;
		if (ref_edge(want) != ref_edge(ref_w)) {
			edges_seen++;
			if (ref_edge(want) == 0)
				wrapped = true;
		}
		ref_w = want;
		check_parity(lib_w, name);
		/* Resynchronise after a reported divergence so that one bug does
		 * not hide the next. */
		lib_w = ref_w;
	}
	printf("test_transition: walk %s: %lu edges, %lu library steps, %lu errors "
	       "returned%s\n", name, edges_seen, env, errors,
	       wrapped ? ", edge counter wrapped" : "");
	if (must_wrap)
		CHECK(wrapped, "walk %s did not wrap the edge counter (test too short)", name);
}

int main(void)
{
	check_names();
	check_errors();
	check_exhaustive();
	check_reachable();
	walk("from-initial", (uint32_t)RS_PAUSE_PRELAUNCH << RS_W_PAUSE_SHIFT,
	     1000000, 0x72756e7374617465ull, false);
	/* Stopped in prelaunch with an even edge count just below 2^19. */
	walk("across-wrap", (uint32_t)RS_PAUSE_PRELAUNCH << RS_W_PAUSE_SHIFT |
	     (uint32_t)0x7ff00 << RS_W_EDGE_SHIFT, 100000, 0x777261702d61726full, true);
	if (n_tolerated)
		printf("test_transition: %lu calls with a nonzero unused argument were "
		       "rejected with RS_EINVAL (accepted, A3)\n", n_tolerated);
	printf("test_transition: %lu checks, %lu failures\n", n_checks, n_failures);
	return n_failures ? 1 : 0;
}

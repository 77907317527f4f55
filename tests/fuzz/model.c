/* SPDX-License-Identifier: MIT */
/*
 * The oracle (model.h): docs/semantics.md turned into code, independently of
 * lib/transition.c, with the 64-bit word of the header's diagram and the
 * edge rules of the rs_transition() contract (an edge joins the backlog or
 * is coalesced).  Its word positions (model.h) are checked here against the
 * header's macros at compile time, so a change of layout on either side
 * breaks the build rather than a checker.
 */
#include <errno.h>
#include <string.h>

#include "runstate-testing.h"
#include "model.h"

#ifndef MODEL_PLANT
#define MODEL_PLANT 0
#endif

/* ---------------------------------------------------------------------------
 * The layout, as drawn in the header's diagram.
 */
_Static_assert(sizeof(((rs_runstate *)0)->word_private) == 8, "the word is 64 bits");
_Static_assert(sizeof(((struct rs_state *)0)->edge) == 4, "decoded edge: 32 bits");
_Static_assert(RS_W_LOCK(RS_LOCK_DEBUG) == M_LOCK(0) && RS_W_LOCK(RS_LOCK_SAVEVM) == M_LOCK(1) &&
	       RS_W_LOCK(RS_LOCK_PRE_MIGRATE) == M_LOCK(2) &&
	       RS_W_LOCK(RS_LOCK_RESTORE) == M_LOCK(3), "lock bits 0..3, in enum order");
_Static_assert(RS_W_LOCK(5) == UINT64_C(0x20) && RS_W_LOCK(31) == UINT64_C(0x80000000),
	       "RS_W_LOCK() is a 64-bit shift");
_Static_assert(RS_W_LOCKS == M_LOCK_BITS, "locks: bits 0..5 (4 and 5 reserved)");
_Static_assert(RS_W_IO_ERROR == M_IO, "IO: bit 6");
_Static_assert(RS_W_EXCL == M_EX, "EX: bit 7");
_Static_assert(RS_W_PAUSE_SHIFT == M_PAUSE_SHIFT && RS_W_PAUSE_MASK == M_PAUSE_MASK &&
	       (M_PAUSE_MASK >> M_PAUSE_SHIFT) == RS_PAUSE_COUNT - 1,
	       "pause: bits 8..10, every reason fits");
_Static_assert(RS_W_RSV_NORUN == M_RV, "RV: bit 11");
_Static_assert(RS_W_OVERFLOW == M_OV, "OV: bit 12");
_Static_assert(RS_W_BACKLOG_SHIFT == M_BACKLOG_SHIFT && RS_W_BACKLOG_MASK == M_BACKLOG_MASK &&
	       RS_W_BACKLOG_ONE == M_BACKLOG(1) && RS_W_BACKLOG_MAX == M_BACKLOG_MAX &&
	       (M_BACKLOG_MASK >> M_BACKLOG_SHIFT) == M_BACKLOG_MAX,
	       "backlog: bits 13..19, 0..127");
_Static_assert(RS_W_PARKED == M_PK, "PK: bit 20");
_Static_assert(RS_W_LOCKWAIT == M_LW, "LW: bit 21");
_Static_assert(RS_W_COAL_GEN == M_GN, "GN: bit 22");
_Static_assert(RS_W_COAL_SHIFT == M_COAL_SHIFT && RS_W_COAL_MASK == M_COAL_MASK &&
	       RS_W_COAL_ONE == M_COAL(1) && (M_COAL_MASK >> M_COAL_SHIFT) == M_COAL_MAX &&
	       M_COAL_MAX + 1 == 1u << M_COAL_BITS, "COAL: bits 23..31, a count modulo 2^9");
_Static_assert(RS_W_EDGE_SHIFT == M_EDGE_SHIFT && RS_W_EDGE_MASK == M_EDGE_MASK &&
	       RS_W_EDGE_ONE == M_EDGE(1), "edge: bits 32..63");
/* The fields tile the word: they cover it (OR), and do not overlap (for
 * disjoint masks the sum is the OR; an overlap counts some bits twice, and
 * unsigned arithmetic cannot bring the sum back to all ones). */
#define M_FIELDS_OR  (M_LOCK_BITS | M_IO | M_EX | M_PAUSE_MASK | M_RV | M_OV | \
		      M_BACKLOG_MASK | M_PK | M_LW | M_GN | M_COAL_MASK | M_EDGE_MASK)
#define M_FIELDS_SUM (M_LOCK_BITS + M_IO + M_EX + M_PAUSE_MASK + M_RV + M_OV + \
		      M_BACKLOG_MASK + M_PK + M_LW + M_GN + M_COAL_MASK + M_EDGE_MASK)
_Static_assert(M_FIELDS_OR == UINT64_MAX, "the fields cover the 64-bit word");
_Static_assert(M_FIELDS_SUM == UINT64_MAX, "the fields do not overlap");
_Static_assert(RS_W_STOPPED_MASK == M_STOP_MASK && M_STOP_MASK == 0x77fu,
	       "stopped: locks (6 bits), io-error, pause");
_Static_assert(RS_W_SETTLING_MASK == (M_BACKLOG_MASK | M_OV), "settling: backlog or OV");
/* Everything below PK keeps vCPUs out, nothing above it; the fast path of
 * runstate.h tests the same bits. */
_Static_assert(RS_W_NORUN_MASK == M_NORUN_MASK && M_NORUN_MASK == M_PK - 1 &&
	       RS_NORUN_MASK == M_NORUN_MASK, "no-run: exactly bits 0..19");
_Static_assert(M_NORUN_MASK == (M_STOP_MASK | M_EX | M_RV | M_BACKLOG_MASK | M_OV),
	       "no-run: stopped, EX, RV, settling");
_Static_assert(RS_LOCK_COUNT == 4 && RS_PAUSE_COUNT == 8 && RS_CMD_COUNT == 9, "counts");

/* Section 3: the error values. */
_Static_assert(RS_EINVAL == -EINVAL && RS_EBUSY == -EBUSY && RS_ENOTHELD == -EPERM &&
	       RS_ENEEDFORCE == -EACCES && RS_ENEEDRESET == -ENOTRECOVERABLE &&
	       RS_ETIMEDOUT == -ETIMEDOUT && RS_ENOMEM == -ENOMEM && RS_ENOSPC == -ENOSPC &&
	       RS_EDEADLK == -EDEADLK, "errors");
/* Section 6.3: the command numbers. */
_Static_assert((int)RS_CMD_STOP == (int)M_STOP && (int)RS_CMD_START == (int)M_START &&
	       (int)RS_CMD_RETRY == (int)M_RETRY && (int)RS_CMD_CONT == (int)M_CONT &&
	       (int)RS_CMD_RESET == (int)M_RESET && (int)RS_CMD_IO_ERROR == (int)M_IO_ERROR &&
	       (int)RS_CMD_PAUSE == (int)M_PAUSE && (int)RS_CMD_LOCK == (int)M_LOCK &&
	       (int)RS_CMD_UNLOCK == (int)M_UNLOCK && (int)RS_CMD_COUNT == (int)M_CMD_COUNT,
	       "commands");

enum { NONE = 0, PRELAUNCH = 1, PAUSED = 2 };

/* Section 2: prelaunch, paused: 1; watchdog, panicked: 2; postmigrate: 3;
 * shutdown, internal-error: 4. */
int m_rank(int p)
{
	static const int rank[8] = { 0, 1, 1, 2, 2, 3, 4, 4 };

	if (p < 0 || p > 7)
		return -EINVAL;
	return rank[p];
}

bool m_running(const struct m_tuple *t)
{
	return t->locks == 0 && !t->io && t->pause == NONE;
}

bool m_settling(const struct m_word *d)
{
	return d->backlog != 0 || d->overflow;
}

bool m_may_run(const struct m_word *d)
{
	return m_running(&d->t) && !m_settling(d) && !d->ex && !d->rv;
}

uint32_t m_tail(const struct m_word *d)
{
	return d->overflow ? (uint32_t)(d->edge - (d->coal & 1u)) : d->edge;
}

void m_decode(uint64_t w, struct m_word *d)
{
	d->t.locks = (unsigned)(w & M_LOCK_BITS);
	d->t.io = (w & M_IO) != 0;
	d->t.pause = (int)((w >> M_PAUSE_SHIFT) & 7u);
	d->ex = (w & M_EX) != 0;
	d->rv = (w & M_RV) != 0;
	d->overflow = (w & M_OV) != 0;
	d->backlog = (unsigned)((w >> M_BACKLOG_SHIFT) & M_BACKLOG_MAX);
	d->parked = (w & M_PK) != 0;
	d->lockwait = (w & M_LW) != 0;
	d->gen = (w & M_GN) != 0;
	d->coal = (unsigned)((w >> M_COAL_SHIFT) & M_COAL_MAX);
	d->edge = (uint32_t)(w >> M_EDGE_SHIFT);
}

uint64_t m_encode(const struct m_word *d)
{
	return (d->t.locks & M_LOCK_BITS) | (d->t.io ? M_IO : 0) | (d->ex ? M_EX : 0) |
	       ((uint64_t)(d->t.pause & 7) << M_PAUSE_SHIFT) | (d->rv ? M_RV : 0) |
	       (d->overflow ? M_OV : 0) |
	       ((uint64_t)(d->backlog & M_BACKLOG_MAX) << M_BACKLOG_SHIFT) |
	       (d->parked ? M_PK : 0) | (d->lockwait ? M_LW : 0) | (d->gen ? M_GN : 0) |
	       ((uint64_t)(d->coal & M_COAL_MAX) << M_COAL_SHIFT) |
	       ((uint64_t)d->edge << M_EDGE_SHIFT);
}

void m_state(uint64_t w, struct rs_state *st)
{
	struct m_word d;

	m_decode(w, &d);
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	st->running = m_running(&d.t);
	st->may_run = m_may_run(&d);
	st->settling = m_settling(&d);
	st->io_error = d.t.io;
	st->locks = d.t.locks;
	st->pause = (enum rs_pause)d.t.pause;
	st->edge = d.edge;
}

bool m_state_eq(const struct rs_state *a, const struct rs_state *b)
{
	return a->running == b->running && a->may_run == b->may_run &&
	       a->settling == b->settling && a->io_error == b->io_error &&
	       a->locks == b->locks && a->pause == b->pause && a->edge == b->edge;
}

/* The rank rule: p replaces the current reason only if it ranks strictly
 * higher. */
static void apply_reason(struct m_tuple *t, int p)
{
#if MODEL_PLANT == 3
	if (m_rank(p) >= m_rank(t->pause))
#else
	if (m_rank(p) > m_rank(t->pause))
#endif
		t->pause = p;
}

static bool is_lock(int r)
{
	return r >= 0 && r <= 3;   /* debug, savevm, pre-migrate, restore */
}

static bool is_reason(int p)
{
	return p >= 1 && p <= 7;   /* a pause reason other than none */
}

int m_apply(struct m_tuple *t, int cmd, int arg, int arg2)
{
	struct m_tuple n = *t;
	int rank = m_rank(t->pause);

	/* Argument errors first (section 6.1, notes; section 6.3, table). */
	switch (cmd) {
	case M_STOP: case M_RETRY: case M_CONT: case M_RESET: case M_IO_ERROR:
		if (arg != 0 || arg2 != 0)
			return -EINVAL;
		break;
	case M_START:
		if ((arg != 0 && arg != 1) || arg2 != 0)
			return -EINVAL;
		break;
	case M_PAUSE:
		if (!is_reason(arg) || arg2 != 0)
			return -EINVAL;
		break;
	case M_LOCK:
		if (!is_lock(arg) || arg2 != 0)
			return -EINVAL;
		break;
	case M_UNLOCK:
		if (!is_lock(arg) || (arg2 != NONE && !is_reason(arg2)))
			return -EINVAL;
		break;
	default:
		return -EINVAL;
	}

	switch (cmd) {
	case M_STOP:
		apply_reason(&n, PAUSED);
		break;
	case M_START:
		if (rank == 4)
			return -ENOTRECOVERABLE;
		if (rank >= 2 && arg == 0)
			return -EACCES;
		n.pause = NONE;
		break;
	case M_RETRY:
		n.io = false;
		break;
	case M_CONT:
		if (rank == 4) {
#if MODEL_PLANT == 1
			t->io = false;
#endif
			return -ENOTRECOVERABLE;
		}
		n.io = false;
		n.pause = NONE;
		break;
	case M_RESET:
		if (n.pause != NONE)
			n.pause = PRELAUNCH;
		break;
	case M_IO_ERROR:
		n.io = true;
		break;
	case M_PAUSE:
		apply_reason(&n, arg);
		break;
	case M_LOCK:
		if (n.locks & (1u << arg))
			return -EBUSY;
		n.locks |= 1u << arg;
		break;
	case M_UNLOCK:
		if (!(n.locks & (1u << arg)))
			return -EPERM;
		n.locks &= ~(1u << arg);
		if (arg2 != NONE)
			apply_reason(&n, arg2);
		break;
	}
	*t = n;
	return 0;
}

int m_transition(uint64_t old, int cmd, int arg, int arg2, unsigned backlog, uint64_t *out)
{
	struct m_word d;
	bool was_running;
	int err;

	/* Invalid arguments first: the output, then max_backlog (1 to the
	 * field's maximum). */
	if (!out || backlog < 1 || backlog > M_BACKLOG_MAX)
		return -EINVAL;
	m_decode(old, &d);
	was_running = m_running(&d.t);
	err = m_apply(&d.t, cmd, arg, arg2);
	if (err)
		return err;
	/* After the semantic change: 1. an edge joins the backlog if edges are
	 * not being coalesced (OV clear) and the backlog is below max_backlog:
	 * one more entry, the counter + 1 modulo 2^32, the coalesced count
	 * left alone.  Else it is coalesced: the run goes on (OV set: count
	 * + 1 modulo 2^9) or starts (count 1), the backlog stays, and the
	 * counter is the backlog's last edge (the tail: the counter less the
	 * old count's parity while OV is set, the counter itself before) plus
	 * the new count's parity, modulo 2^32.  2. A word that may run clears
	 * PK.  LW, GN (the settler flips it), EX, RV and the reserved lock
	 * bits are never touched here. */
	if (m_running(&d.t) != was_running) {
		if (!d.overflow && d.backlog < backlog) {
			d.backlog++;
			d.edge = (uint32_t)(d.edge + 1u);
		} else {
			uint32_t tail = m_tail(&d);
			unsigned run = d.overflow ? d.coal + 1u : 1u;

#if MODEL_PLANT == 4
			tail += run / (M_COAL_MAX + 1u);   /* the carry out of COAL */
#endif
			run %= M_COAL_MAX + 1u;
			d.overflow = true;
			d.coal = run;
#if MODEL_PLANT == 2
			d.edge = (uint32_t)(d.edge + 1u);
			(void)tail;
#else
			d.edge = (uint32_t)(tail + (run & 1u));
#endif
		}
	}
	if (m_may_run(&d))
		d.parked = false;
	*out = m_encode(&d);
	return 0;
}

const char *m_legacy(uint64_t w)
{
	static const char *const names[8] = {
		"running", "prelaunch", "paused", "watchdog", "guest-panicked",
		"postmigrate", "shutdown", "internal-error",
	};
	struct m_word d;

	m_decode(w, &d);
	if (d.t.locks & (1u << 2))
		return "finish-migrate";
	if (d.t.locks & (1u << 3))
		return "restore-vm";
	if (d.t.locks & (1u << 1))
		return "save-vm";
	if (d.t.locks & (1u << 0))
		return "debug";
	if (d.t.pause != NONE)
		return names[d.t.pause];
	if (d.t.io)
		return "io-error";
	return "running";
}

const char *m_lock_name(int r)
{
	static const char *const names[4] = { "debug", "savevm", "pre-migrate", "restore" };

	return is_lock(r) ? names[r] : NULL;
}

const char *m_pause_name(int p)
{
	static const char *const names[8] = {
		"none", "prelaunch", "paused", "watchdog", "panicked", "postmigrate",
		"shutdown", "internal-error",
	};

	return p >= 0 && p <= 7 ? names[p] : NULL;
}

const char *m_strerror(int err)
{
	switch (err) {
	case 0: return "ok";
	case -EINVAL: return "invalid";
	case -EBUSY: return "busy";
	case -EPERM: return "not-held";
	case -EACCES: return "needs-force";
	case -ENOTRECOVERABLE: return "needs-reset";
	case -ETIMEDOUT: return "timeout";
	case -ENOMEM: return "no-memory";
	case -ENOSPC: return "no-space";
	case -EDEADLK: return "deadlock";
	default: return "unknown";
	}
}

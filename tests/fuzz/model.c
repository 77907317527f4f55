/* SPDX-License-Identifier: MIT */
/*
 * The reference model: docs/semantics.md turned into code, independently of
 * lib/transition.c.  Word positions are taken from the diagram of section 1.3
 * and checked against the header's macros at compile time, so a change of
 * layout on either side breaks the build rather than the fuzzer.
 */
#include <errno.h>

#include "runstate.h"
#include "model.h"

/* Section 1.3, bit positions as drawn. */
#define M_LOCK_BITS   0x3fu          /* 5..0 */
#define M_IO          (1u << 6)
#define M_ST          (1u << 7)
#define M_PAUSE_SHIFT 8              /* 10..8 */
#define M_PK          (1u << 11)
#define M_LW          (1u << 12)
#define M_EDGE_SHIFT  13             /* 31..13 */
#define M_EDGE_LIMIT  (1u << 19)

_Static_assert(M_LOCK_BITS == RS_W_LOCKS, "locks");
_Static_assert(M_IO == RS_W_IO_ERROR, "io-error");
_Static_assert(M_ST == RS_W_SETTLING, "settling");
_Static_assert(M_PAUSE_SHIFT == RS_W_PAUSE_SHIFT && (7u << M_PAUSE_SHIFT) == RS_W_PAUSE_MASK, "pause");
_Static_assert(M_PK == RS_W_PARKED, "parked");
_Static_assert(M_LW == RS_W_LOCKWAIT, "lockwait");
_Static_assert(M_EDGE_SHIFT == RS_W_EDGE_SHIFT && M_EDGE_LIMIT == (1u << RS_W_EDGE_BITS), "edge");

/* Section 3: the error values. */
_Static_assert(RS_EINVAL == -EINVAL && RS_EBUSY == -EBUSY && RS_ENOTHELD == -EPERM &&
	       RS_ENEEDFORCE == -EACCES && RS_ENEEDRESET == -ENOTRECOVERABLE, "errors");
/* Section 6.3: the command numbers. */
_Static_assert((int)RS_CMD_STOP == (int)M_STOP && (int)RS_CMD_START == (int)M_START && (int)RS_CMD_RETRY == (int)M_RETRY &&
	       (int)RS_CMD_CONT == (int)M_CONT && (int)RS_CMD_RESET == (int)M_RESET &&
	       (int)RS_CMD_IO_ERROR == (int)M_IO_ERROR && (int)RS_CMD_PAUSE == (int)M_PAUSE &&
	       (int)RS_CMD_LOCK == (int)M_LOCK && (int)RS_CMD_UNLOCK == (int)M_UNLOCK &&
	       (int)RS_CMD_COUNT == (int)M_CMD_COUNT, "commands");

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

void m_decode(uint32_t w, struct m_word *d)
{
	d->t.locks = w & M_LOCK_BITS;
	d->t.io = (w & M_IO) != 0;
	d->t.pause = (int)((w >> M_PAUSE_SHIFT) & 7u);
	d->settling = (w & M_ST) != 0;
	d->parked = (w & M_PK) != 0;
	d->lockwait = (w & M_LW) != 0;
	d->edge = w >> M_EDGE_SHIFT;
}

uint32_t m_encode(const struct m_word *d)
{
	return (d->t.locks & M_LOCK_BITS) | (d->t.io ? M_IO : 0) |
	       ((uint32_t)d->t.pause << M_PAUSE_SHIFT) | (d->settling ? M_ST : 0) |
	       (d->parked ? M_PK : 0) | (d->lockwait ? M_LW : 0) |
	       ((d->edge % M_EDGE_LIMIT) << M_EDGE_SHIFT);
}

/* The rank rule: p replaces the current reason only if it ranks strictly
 * higher. */
static void apply_reason(struct m_tuple *t, int p)
{
#if FUZZ_PLANT == 3
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
#if FUZZ_PLANT == 1
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

int m_transition(uint32_t old, int cmd, int arg, int arg2, uint32_t *out)
{
	struct m_word d;
	bool was_running;
	int err;

	if (!out)
		return -EINVAL;
	m_decode(old, &d);
	was_running = m_running(&d.t);
	err = m_apply(&d.t, cmd, arg, arg2);
	if (err)
		return err;
	/* Section 6.3, after the semantic change: 1. an edge advances the
	 * counter and sets ST; 2. a word that may run clears PK.  ST is never
	 * cleared and LW never touched here. */
	if (m_running(&d.t) != was_running) {
#if FUZZ_PLANT == 2
		if (d.edge != M_EDGE_LIMIT - 1)
			d.edge++;
#else
		d.edge = (d.edge + 1) % M_EDGE_LIMIT;
#endif
		d.settling = true;
	}
	if (m_running(&d.t) && !d.settling)
		d.parked = false;
	*out = m_encode(&d);
	return 0;
}

const char *m_legacy(uint32_t w)
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
	default: return "unknown";
	}
}

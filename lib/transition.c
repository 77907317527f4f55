/* SPDX-License-Identifier: MIT */
/*
 * The pure transition function and the names.  No shared state here: every
 * command of the library is rs_transition() inside one compare-and-swap loop,
 * and the tests check this very function exhaustively.
 */
#include <string.h>

#include "instance.h"

static const char *const lock_names[RS_LOCK_COUNT] = {
	[RS_LOCK_DEBUG] = "debug",
	[RS_LOCK_SAVEVM] = "savevm",
	[RS_LOCK_PRE_MIGRATE] = "pre-migrate",
	[RS_LOCK_RESTORE] = "restore",
};

static const char *const pause_names[RS_PAUSE_COUNT] = {
	[RS_PAUSE_NONE] = "none",
	[RS_PAUSE_PRELAUNCH] = "prelaunch",
	[RS_PAUSE_PAUSED] = "paused",
	[RS_PAUSE_WATCHDOG] = "watchdog",
	[RS_PAUSE_PANICKED] = "panicked",
	[RS_PAUSE_POSTMIGRATE] = "postmigrate",
	[RS_PAUSE_SHUTDOWN] = "shutdown",
	[RS_PAUSE_INTERNAL_ERROR] = "internal-error",
};

static const unsigned char pause_rank[RS_PAUSE_COUNT] = {
	[RS_PAUSE_NONE] = 0,
	[RS_PAUSE_PRELAUNCH] = 1,
	[RS_PAUSE_PAUSED] = 1,
	[RS_PAUSE_WATCHDOG] = 2,
	[RS_PAUSE_PANICKED] = 2,
	[RS_PAUSE_POSTMIGRATE] = 3,
	[RS_PAUSE_SHUTDOWN] = 4,
	[RS_PAUSE_INTERNAL_ERROR] = 4,
};

#define RANK_RESET 4   /* only reset clears these */
#define RANK_FORCE 2   /* start needs force from this rank up */

const char *rs_lock_name(int r)
{
	return r >= 0 && r < RS_LOCK_COUNT ? lock_names[r] : NULL;
}

const char *rs_pause_name(int p)
{
	return p >= 0 && p < RS_PAUSE_COUNT ? pause_names[p] : NULL;
}

int rs_lock_parse(const char *name)
{
	if (!name)
		return RS_EINVAL;
	for (int r = 0; r < RS_LOCK_COUNT; r++)
		if (!strcmp(name, lock_names[r]))
			return r;
	return RS_EINVAL;
}

int rs_pause_parse(const char *name)
{
	if (!name)
		return RS_EINVAL;
	for (int p = 0; p < RS_PAUSE_COUNT; p++)
		if (!strcmp(name, pause_names[p]))
			return p;
	return RS_EINVAL;
}

int rs_pause_rank(int p)
{
	return p >= 0 && p < RS_PAUSE_COUNT ? pause_rank[p] : RS_EINVAL;
}

const char *rs_strerror(int err)
{
	switch (err) {
	case 0: return "ok";
	case RS_EINVAL: return "invalid";
	case RS_EBUSY: return "busy";
	case RS_ENOTHELD: return "not-held";
	case RS_ENEEDFORCE: return "needs-force";
	case RS_ENEEDRESET: return "needs-reset";
	case RS_ETIMEDOUT: return "timeout";
	case RS_ENOMEM: return "no-memory";
	case RS_ENOSPC: return "no-space";
	case RS_EDEADLK: return "deadlock";
	default: return "unknown";
	}
}

void rs_decode_into(uint64_t w, struct rs_state *st)
{
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	st->running = rs_w_running(w);
	st->may_run = rs_w_may_run(w);
	st->settling = rs_w_settling(w);
	st->io_error = (w & RS_W_IO_ERROR) != 0;
	st->locks = (unsigned)(w & RS_W_LOCKS);
	st->pause = (enum rs_pause)rs_w_pause(w);
	st->edge = rs_w_edge(w);
}

int rs_decode(uint64_t w, struct rs_state *st)
{
	struct rs_state all;
	uint32_t size;

	if (!st || st->size < RS_STATE_SIZE_0_9)
		return RS_EINVAL;
	/* As far as the caller's struct goes, and zeros in what only a newer
	 * caller's has; its size stays its own. */
	size = st->size;
	rs_decode_into(w, &all);
	all.size = size;
	if (size <= sizeof(all)) {
		memcpy(st, &all, size);
	} else {
		memcpy(st, &all, sizeof(all));
		memset((char *)st + sizeof(all), 0, size - sizeof(all));
	}
	return 0;
}

const char *rs_legacy_status(uint64_t w)
{
	static const char *const legacy_pause[RS_PAUSE_COUNT] = {
		[RS_PAUSE_NONE] = "running",
		[RS_PAUSE_PRELAUNCH] = "prelaunch",
		[RS_PAUSE_PAUSED] = "paused",
		[RS_PAUSE_WATCHDOG] = "watchdog",
		[RS_PAUSE_PANICKED] = "guest-panicked",
		[RS_PAUSE_POSTMIGRATE] = "postmigrate",
		[RS_PAUSE_SHUTDOWN] = "shutdown",
		[RS_PAUSE_INTERNAL_ERROR] = "internal-error",
	};

	/* QEMU's query-status can name one state only: the most specific
	 * internal lock first, then the pause reason, then io-error. */
	if (w & RS_W_LOCK(RS_LOCK_PRE_MIGRATE))
		return "finish-migrate";
	if (w & RS_W_LOCK(RS_LOCK_RESTORE))
		return "restore-vm";
	if (w & RS_W_LOCK(RS_LOCK_SAVEVM))
		return "save-vm";
	if (w & RS_W_LOCK(RS_LOCK_DEBUG))
		return "debug";
	if (rs_w_pause(w) != RS_PAUSE_NONE)
		return legacy_pause[rs_w_pause(w)];
	if (w & RS_W_IO_ERROR)
		return "io-error";
	return "running";
}

static uint64_t with_pause(uint64_t w, unsigned p)
{
	return (w & ~RS_W_PAUSE_MASK) | ((uint64_t)p << RS_W_PAUSE_SHIFT);
}

/* The rank rule: p replaces the current reason only if it ranks higher. */
static uint64_t apply_pause(uint64_t w, unsigned p)
{
	return pause_rank[p] > pause_rank[rs_w_pause(w)] ? with_pause(w, p) : w;
}

static bool valid_lock(int r)
{
	return r >= 0 && r < RS_LOCK_COUNT;
}

static bool valid_reason(int p)
{
	return p > RS_PAUSE_NONE && p < RS_PAUSE_COUNT;
}

/* The semantic part: locks, io-error and pause reason. */
static int semantic(uint64_t w, enum rs_cmd cmd, int arg, int arg2, uint64_t *out)
{
	unsigned rank = pause_rank[rs_w_pause(w)];

	switch (cmd) {
	case RS_CMD_STOP:
		if (arg || arg2)
			return RS_EINVAL;
		*out = apply_pause(w, RS_PAUSE_PAUSED);
		return 0;
	case RS_CMD_START:
		if ((arg & ~(int)RS_START_FORCE) || arg2)
			return RS_EINVAL;
		if (rank >= RANK_RESET)
			return RS_ENEEDRESET;
		if (rank >= RANK_FORCE && !(arg & RS_START_FORCE))
			return RS_ENEEDFORCE;
		*out = with_pause(w, RS_PAUSE_NONE);
		return 0;
	case RS_CMD_RETRY:
		if (arg || arg2)
			return RS_EINVAL;
		*out = w & ~RS_W_IO_ERROR;
		return 0;
	case RS_CMD_CONT:
		if (arg || arg2)
			return RS_EINVAL;
		if (rank >= RANK_RESET)
			return RS_ENEEDRESET;
		*out = with_pause(w, RS_PAUSE_NONE) & ~RS_W_IO_ERROR;
		return 0;
	case RS_CMD_RESET:
		if (arg || arg2)
			return RS_EINVAL;
		*out = rs_w_pause(w) != RS_PAUSE_NONE ? with_pause(w, RS_PAUSE_PRELAUNCH) : w;
		return 0;
	case RS_CMD_IO_ERROR:
		if (arg || arg2)
			return RS_EINVAL;
		*out = w | RS_W_IO_ERROR;
		return 0;
	case RS_CMD_PAUSE:
		if (!valid_reason(arg) || arg2)
			return RS_EINVAL;
		*out = apply_pause(w, (unsigned)arg);
		return 0;
	case RS_CMD_LOCK:
		if (!valid_lock(arg) || arg2)
			return RS_EINVAL;
		if (w & RS_W_LOCK(arg))
			return RS_EBUSY;
		*out = w | RS_W_LOCK(arg);
		return 0;
	case RS_CMD_UNLOCK:
		if (!valid_lock(arg) || (arg2 != RS_PAUSE_NONE && !valid_reason(arg2)))
			return RS_EINVAL;
		if (!(w & RS_W_LOCK(arg)))
			return RS_ENOTHELD;
		w &= ~RS_W_LOCK(arg);
		*out = arg2 != RS_PAUSE_NONE ? apply_pause(w, (unsigned)arg2) : w;
		return 0;
	}
	return RS_EINVAL;
}

int rs_transition(uint64_t old, enum rs_cmd cmd, int arg, int arg2, unsigned backlog,
		  uint64_t *out)
{
	uint64_t w;
	int err;

	if (!out || backlog < 1 || backlog > RS_W_BACKLOG_MAX)
		return RS_EINVAL;
	err = semantic(old, cmd, arg, arg2, &w);
	if (err)
		return err;
	/*
	 * An edge either joins the backlog, to settle on its own (its own
	 * event and listener run), or, when the backlog is full or edges are
	 * being coalesced already, is coalesced: counted in the word (modulo
	 * 2^9), and accounted for as one backlog entry when the backlog has
	 * drained (docs/protocol.md, section 5a).  A coalesced edge moves the
	 * edge counter between the backlog's last edge and the one after it,
	 * which keeps its parity the running flag and the counter within the
	 * backlog's reach.  So the backlog never exceeds its bound, whatever
	 * the vCPUs and the callers do, and no command waits or fails
	 * because of it.
	 */
	if (rs_w_running(w) != rs_w_running(old)) {
		if (!(old & RS_W_OVERFLOW) && rs_w_backlog(old) < backlog) {
			w += RS_W_EDGE_ONE + RS_W_BACKLOG_ONE;
		} else {
			uint32_t tail = (old & RS_W_OVERFLOW) ? rs_w_edge_tail(old) : rs_w_edge(old);
			uint64_t coal = (old & RS_W_OVERFLOW) ? rs_w_coal(old) + 1u : 1u;

			coal &= (1u << RS_W_COAL_BITS) - 1;
			w = (w & ~(RS_W_EDGE_MASK | RS_W_COAL_MASK)) | RS_W_OVERFLOW |
			    coal << RS_W_COAL_SHIFT |
			    (uint64_t)(tail + (uint32_t)(coal & 1)) << RS_W_EDGE_SHIFT;
		}
	}
	/* Whoever lets vCPUs run again owns waking the parked ones. */
	if (rs_w_may_run(w))
		w &= ~RS_W_PARKED;
	*out = w;
	return 0;
}

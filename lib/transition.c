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
	return p >= 0 && p < RS_PAUSE_COUNT ? (int)rs_rank_of((unsigned)p) : RS_EINVAL;
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

RS_HOT void rs_decode_into(uint64_t w, struct rs_state *st)
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

RS_HOT int rs_decode(uint64_t w, struct rs_state *st)
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

int rs_transition(uint64_t old, enum rs_cmd cmd, int arg, int arg2, unsigned backlog,
		  uint64_t *out)
{
	return rs_transition_inline(old, cmd, arg, arg2, backlog, out);
}

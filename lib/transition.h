/* SPDX-License-Identifier: MIT */
/*
 * The transition function's body, inline: transition.c exports it as
 * rs_transition() (the tests check that function exhaustively; lockq.c
 * calls it), and the management commands' CAS loop (commands.c) inlines
 * it, so that a command whose kind is a constant folds it to the few
 * instructions of its own case.  A stop made by a thread that slept until
 * then (an emulator's main thread, woken by a monitor command) pays for
 * every cache line and page of code it runs before its kick; the whole
 * switch, with its jump table in .rodata, was about 800 bytes of them
 * (docs/performance.md, "The cold stop").  Pure: no shared state here.
 */
#ifndef RS_TRANSITION_H
#define RS_TRANSITION_H

/* The ranks (docs/semantics.md): a reason replaces another only if it
 * ranks higher; start needs force from RS_RANK_FORCE up, and only reset
 * clears RS_RANK_RESET.  Packed four bits per reason into a constant, so
 * that reading a rank touches no memory. */
#define RS_RANK_OF(p, r) ((uint32_t)(r) << (4 * (p)))
#define RS_PAUSE_RANKS \
	(RS_RANK_OF(RS_PAUSE_NONE, 0) | RS_RANK_OF(RS_PAUSE_PRELAUNCH, 1) | \
	 RS_RANK_OF(RS_PAUSE_PAUSED, 1) | RS_RANK_OF(RS_PAUSE_WATCHDOG, 2) | \
	 RS_RANK_OF(RS_PAUSE_PANICKED, 2) | RS_RANK_OF(RS_PAUSE_POSTMIGRATE, 3) | \
	 RS_RANK_OF(RS_PAUSE_SHUTDOWN, 4) | RS_RANK_OF(RS_PAUSE_INTERNAL_ERROR, 4))
_Static_assert(RS_PAUSE_COUNT == 8, "eight reasons, four bits each: a 32-bit constant");
#define RS_RANK_RESET 4   /* only reset clears these */
#define RS_RANK_FORCE 2   /* start needs force from this rank up */

/* p < RS_PAUSE_COUNT: a word's pause field, or a checked reason. */
static inline unsigned rs_rank_of(unsigned p)
{
	return (RS_PAUSE_RANKS >> (4 * p)) & 0xfu;
}

static inline uint64_t rs_with_pause(uint64_t w, unsigned p)
{
	return (w & ~RS_W_PAUSE_MASK) | ((uint64_t)p << RS_W_PAUSE_SHIFT);
}

/* The rank rule: p replaces the current reason only if it ranks higher. */
static inline uint64_t rs_apply_pause(uint64_t w, unsigned p)
{
	return rs_rank_of(p) > rs_rank_of(rs_w_pause(w)) ? rs_with_pause(w, p) : w;
}

static inline bool rs_valid_lock(int r)
{
	return r >= 0 && r < RS_LOCK_COUNT;
}

static inline bool rs_valid_reason(int p)
{
	return p > RS_PAUSE_NONE && p < RS_PAUSE_COUNT;
}

/* The semantic part: locks, io-error and pause reason. */
static inline int rs_semantic(uint64_t w, enum rs_cmd cmd, int arg, int arg2, uint64_t *out)
{
	unsigned rank = rs_rank_of(rs_w_pause(w));

	switch (cmd) {
	case RS_CMD_STOP:
		if (arg || arg2)
			return RS_EINVAL;
		*out = rs_apply_pause(w, RS_PAUSE_PAUSED);
		return 0;
	case RS_CMD_START:
		if ((arg & ~(int)RS_START_FORCE) || arg2)
			return RS_EINVAL;
		if (rank >= RS_RANK_RESET)
			return RS_ENEEDRESET;
		if (rank >= RS_RANK_FORCE && !(arg & RS_START_FORCE))
			return RS_ENEEDFORCE;
		*out = rs_with_pause(w, RS_PAUSE_NONE);
		return 0;
	case RS_CMD_RETRY:
		if (arg || arg2)
			return RS_EINVAL;
		*out = w & ~RS_W_IO_ERROR;
		return 0;
	case RS_CMD_CONT:
		if (arg || arg2)
			return RS_EINVAL;
		if (rank >= RS_RANK_RESET)
			return RS_ENEEDRESET;
		*out = rs_with_pause(w, RS_PAUSE_NONE) & ~RS_W_IO_ERROR;
		return 0;
	case RS_CMD_RESET:
		if (arg || arg2)
			return RS_EINVAL;
		*out = rs_w_pause(w) != RS_PAUSE_NONE ? rs_with_pause(w, RS_PAUSE_PRELAUNCH) : w;
		return 0;
	case RS_CMD_IO_ERROR:
		if (arg || arg2)
			return RS_EINVAL;
		*out = w | RS_W_IO_ERROR;
		return 0;
	case RS_CMD_PAUSE:
		if (!rs_valid_reason(arg) || arg2)
			return RS_EINVAL;
		*out = rs_apply_pause(w, (unsigned)arg);
		return 0;
	case RS_CMD_LOCK:
		if (!rs_valid_lock(arg) || arg2)
			return RS_EINVAL;
		if (w & RS_W_LOCK(arg))
			return RS_EBUSY;
		*out = w | RS_W_LOCK(arg);
		return 0;
	case RS_CMD_UNLOCK:
		if (!rs_valid_lock(arg) || (arg2 != RS_PAUSE_NONE && !rs_valid_reason(arg2)))
			return RS_EINVAL;
		if (!(w & RS_W_LOCK(arg)))
			return RS_ENOTHELD;
		w &= ~RS_W_LOCK(arg);
		*out = arg2 != RS_PAUSE_NONE ? rs_apply_pause(w, (unsigned)arg2) : w;
		return 0;
	}
	return RS_EINVAL;
}

__attribute__((always_inline)) static inline int
rs_transition_inline(uint64_t old, enum rs_cmd cmd, int arg, int arg2, unsigned backlog,
		     uint64_t *out)
{
	uint64_t w;
	int err;

	if (!out || backlog < 1 || backlog > RS_W_BACKLOG_MAX)
		return RS_EINVAL;
	err = rs_semantic(old, cmd, arg, arg2, &w);
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

#endif

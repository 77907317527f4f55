/* SPDX-License-Identifier: MIT */
/*
 * Management commands.  Each is rs_transition() inside one compare-and-swap
 * loop on the word (rs_cmd_apply()); a stopping command then kicks the
 * vCPUs of its stop edge and waits for its edge to settle, or helps settle
 * with RS_ASYNC (rs_cmd_finish()); a releasing command may wake parked
 * vCPUs early and helps settle.  The lock calls (lockq.c) use the same
 * steps around their own CAS loops.
 */
#include "instance.h"

static bool made_edge(uint64_t old, uint64_t nw)
{
	return rs_w_running(old) != rs_w_running(nw);
}

/*
 * The early wake.  A start edge with parked vCPUs need not wait for
 * settling to wake them: a futex wake-up takes microseconds to reach a
 * sleeping thread, and the settle work (the RESUME event, the claim) a
 * fraction of one, so it is done while the wake-ups are in flight.  The
 * start's own CAS then also clears RS_W_PARKED, and the starter wakes the
 * parked vCPUs right after it (releasing(), rs_park_release()).  A vCPU that wakes before the
 * claim spins in rs_park() and runs as soon as the claim lands; one that gives
 * up re-parks and sets RS_W_PARKED again, which the claim sees and wakes
 * (settle.c's claim()): an early wake can cost a wasted wake-up, never a lost one.
 * Decided per CAS attempt, on the word that attempt would write: a start
 * whose CAS loses to a stop (or a lock) recomputes, and wakes nobody if it
 * no longer makes a start edge.
 *
 * Only when settling will be short and the wake-ups do not compete with it:
 * the edge is the whole backlog (exact: the new word says so), no listener
 * is registered, and there are fewer vCPUs than usable CPUs (oversubscribed,
 * early-woken vCPUs compete with the settling thread and many re-park:
 * about half of them in a trial with 4 vCPUs on 2 CPUs).  The last two
 * loads are hints.
 */
static bool wake_early(struct rs_instance *ri, uint64_t old, uint64_t nw)
{
	if (!made_edge(old, nw) || !(nw & RS_W_PARKED) || (nw & RS_W_OVERFLOW) ||
	    rs_w_backlog(nw) != 1)
		return false;
	if (rs_listeners_any(ri) || rs_registry_count(&ri->reg) >= ri->ncpus)
		return false;
	RS_DELAY(ri, "early-wake");
	return true;
}

/*
 * Apply a command: the one CAS.  seq_cst: the CAS is the stopper's half of
 * the store-buffering pairing with a vCPU's out->active announcement
 * (ack.c), and its release half publishes what the caller wrote
 * before the command to every thread that sees the new word.  For the
 * early wake it is also the CAS that clears RS_W_PARKED, paired like the
 * claim with the parkers' CAS that sets it (park.c): the wave that follows
 * wakes every vCPU that set it before.  early: NULL, or where to say that
 * the caller must start that wave.
 */
__attribute__((always_inline)) static inline int
cmd_apply(struct rs_instance *ri, enum rs_cmd cmd, int arg, int arg2, uint64_t *oldp,
	  uint64_t *newp, bool *early)
{
	/* Acquire: if nothing changes, this load is the command's read. */
	uint64_t old = rs_word_load(ri, memory_order_acquire);

	for (;;) {
		uint64_t nw;
		bool wake = false;
		int err = rs_transition_inline(old, cmd, arg, arg2, ri->max_backlog, &nw);

		if (err)
			return err;
		if (nw == old)
			break;
		if (early && (wake = wake_early(ri, old, nw)))
			nw &= ~RS_W_PARKED;
		RS_DELAY(ri, "command-cas");
		*oldp = old;
		if (rs_edge_cas(ri, &old, nw)) {
			*newp = nw;
			if (early)
				*early = wake;
			return 0;
		}
	}
	*oldp = *newp = old;
	return 0;
}

int rs_cmd_apply(struct rs_instance *ri, enum rs_cmd cmd, int arg, int arg2, uint64_t *oldp,
		 uint64_t *newp, bool *early)
{
	return cmd_apply(ri, cmd, arg, arg2, oldp, newp, early);
}

/* After the CAS: kick for a stop edge, then settle (waiting or helping). */
RS_HOT int rs_cmd_finish(struct rs_instance *ri, uint64_t old, uint64_t nw, int64_t timeout_ns,
		  uint64_t deadline)
{
	int r = 0;

	/* One kick per vCPU per edge, by the edge's maker only. */
	if (made_edge(old, nw) && !rs_w_running(nw))
		(void)rs_ack_scan(ri, RS_SCAN_EDGE, -1, NULL);
	if (timeout_ns == RS_ASYNC || rs_w_running(nw))
		rs_settle_help(ri);
	else
		r = rs_settle_through(ri, rs_settle_target(nw), deadline);
	if (r == RS_ETIMEDOUT)
		RS_STAT_INC(ri, timeouts);
	return r;
}

/* Before a call that may wait: refuse it inside a listener, fix its
 * deadline, and take the calling vCPU (if any) out. */
RS_HOT int rs_cmd_may_wait(struct rs_instance *ri, int64_t timeout_ns, uint64_t *deadline)
{
	int r;

	*deadline = 0;
	if (timeout_ns == RS_ASYNC)
		return 0;
	if ((r = rs_no_wait_in_listener()))
		return r;
	*deadline = rs_deadline(ri, timeout_ns);
	rs_vcpu_thread_out(ri);
	return 0;
}

/* A stopping command: the CAS, then wait or help.  Inline, so that each
 * command's transition folds (transition.h). */
__attribute__((always_inline)) static inline int
stopping(rs_runstate *rs, enum rs_cmd cmd, int arg, int arg2, int64_t timeout_ns)
{
	struct rs_instance *ri = rs_inst(rs);
	uint64_t deadline, old, nw;
	int r;

	if (!rs)
		return RS_EINVAL;
	if ((r = rs_cmd_may_wait(ri, timeout_ns, &deadline)))
		return r;
	r = cmd_apply(ri, cmd, arg, arg2, &old, &nw, NULL);
	if (r)
		return r;
	return rs_cmd_finish(ri, old, nw, timeout_ns, deadline);
}

/* A command that cannot stop the VM: the CAS (waking early if it can),
 * then help settle. */
__attribute__((always_inline)) static inline int
releasing(rs_runstate *rs, enum rs_cmd cmd, int arg)
{
	struct rs_instance *ri = rs_inst(rs);
	uint64_t old, nw;
	bool early = false;
	int r;

	if (!rs)
		return RS_EINVAL;
	rs_park_prefetch(ri);
	r = cmd_apply(ri, cmd, arg, 0, &old, &nw, &early);
	if (r)
		return r;
	if (old == nw)
		return 0;
	if (early)
		rs_park_release(ri, old, nw);
	rs_settle_help(ri);
	return 0;
}

RS_HOT int rs_stop(rs_runstate *rs, int64_t timeout_ns)
{
	return stopping(rs, RS_CMD_STOP, 0, 0, timeout_ns);
}

RS_HOT int rs_io_error(rs_runstate *rs, int64_t timeout_ns)
{
	return stopping(rs, RS_CMD_IO_ERROR, 0, 0, timeout_ns);
}

RS_HOT int rs_pause(rs_runstate *rs, enum rs_pause p, int64_t timeout_ns)
{
	if (p <= RS_PAUSE_NONE || p >= RS_PAUSE_COUNT)
		return RS_EINVAL;
	return stopping(rs, RS_CMD_PAUSE, p, 0, timeout_ns);
}

int rs_start(rs_runstate *rs, unsigned flags)
{
	if (flags & ~RS_START_FORCE)
		return RS_EINVAL;
	return releasing(rs, RS_CMD_START, (int)flags);
}

int rs_retry(rs_runstate *rs)
{
	return releasing(rs, RS_CMD_RETRY, 0);
}

int rs_cont(rs_runstate *rs)
{
	return releasing(rs, RS_CMD_CONT, 0);
}

int rs_reset(rs_runstate *rs)
{
	return releasing(rs, RS_CMD_RESET, 0);
}

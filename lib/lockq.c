/* SPDX-License-Identifier: MIT */
/*
 * Internal locks and their hand-over queue.
 *
 * Uncontended, a lock or unlock is one CAS.  A thread that finds the bit
 * held registers in waiters[r] under the queue's mutex and sets
 * RS_W_LOCKWAIT in the word with the same CAS that observes the bit held;
 * from then on every unlock sees RS_W_LOCKWAIT, takes the slow path under
 * the mutex, and hands the bit to a waiter (grants[r]++) instead of
 * clearing it.  RS_W_LOCKWAIT only changes under the mutex.  Both sides of
 * the hand-over (lock_wait() and unlock_common()) are here; the mutex
 * orders everything they share but the futex word grants[r], whose wait
 * re-checks under the mutex.
 */
#include <limits.h>

#include "instance.h"

static unsigned total_lock_waiters(struct rs_instance *ri)
{
	unsigned n = 0;

	for (int i = 0; i < RS_LOCK_COUNT; i++)
		n += ri->lockq.waiters[i];
	return n;
}

static void word_clear_lockwait(struct rs_instance *ri)
{
	uint64_t w = rs_word_load(ri, memory_order_relaxed);

	/* seq_cst, like every CAS on the word (a change others must see). */
	while (!rs_word_cas_weak(ri, &w, w & ~RS_W_LOCKWAIT, memory_order_seq_cst,
				 memory_order_relaxed))
		;
}

/* Take bit r waiting up to deadline; 0 or RS_EBUSY.  *oldp and *newp get the CAS. */
static int lock_wait(struct rs_instance *ri, enum rs_lock r, uint64_t deadline, uint64_t *oldp,
		     uint64_t *newp)
{
	int err = 0;
	uint32_t g, my;

	if (rs_mutex_lock(ri, &ri->lockq.mutex, deadline))
		return RS_EBUSY;
	/* Under the queue's mutex: either take the bit or, in the same CAS that
	 * sees it held, tell every future unlock to hand it over. */
	for (uint64_t w = rs_word_load(ri, memory_order_acquire);;) {
		uint64_t nw;

		if (!(w & RS_W_LOCK(r))) {
			rs_transition(w, RS_CMD_LOCK, r, 0, ri->max_backlog, &nw);
			if (rs_edge_cas(ri, &w, nw)) {
				rs_mutex_unlock(ri, &ri->lockq.mutex);
				*oldp = w;
				*newp = nw;
				return 0;
			}
		} else if (w & RS_W_LOCKWAIT ||
			   rs_word_cas_weak(ri, &w, w | RS_W_LOCKWAIT, memory_order_seq_cst,
					    memory_order_acquire)) {
			break;
		}
	}
	ri->lockq.waiters[r]++;
	my = ri->lockq.issued[r];
	for (;;) {
		int64_t left;

		/* Only a hand-over issued after we registered is ours to take. */
		if (ri->lockq.taken[r] < ri->lockq.issued[r] && ri->lockq.taken[r] >= my) {
			ri->lockq.taken[r]++;
			break;
		}
		left = rs_remaining(ri, deadline);
		if (left == 0) {
			ri->lockq.waiters[r]--;
			err = RS_EBUSY;
			break;
		}
		g = atomic_load_explicit(&ri->lockq.grants[r], memory_order_relaxed);
		rs_mutex_unlock(ri, &ri->lockq.mutex);
		RS_DELAY(ri, "lock-wait");
		rs_futex_wait(ri, &ri->lockq.grants[r], g, left);
		if (rs_mutex_lock(ri, &ri->lockq.mutex, UINT64_MAX))
			rs_fatal("lockq mutex", RS_ETIMEDOUT);
	}
	if (!total_lock_waiters(ri))
		word_clear_lockwait(ri);
	rs_mutex_unlock(ri, &ri->lockq.mutex);
	*oldp = *newp = rs_word_load(ri, memory_order_acquire);
	return err;
}

static int lock_common(rs_runstate *rs, enum rs_lock r, int64_t timeout_ns, bool try)
{
	struct rs_instance *ri = rs_inst(rs);
	uint64_t deadline, old, nw;
	int err;

	if (!rs || r < 0 || r >= RS_LOCK_COUNT)
		return RS_EINVAL;
	if ((err = rs_cmd_may_wait(ri, timeout_ns, &deadline)))
		return err;
	err = rs_cmd_apply(ri, RS_CMD_LOCK, r, 0, &old, &nw, NULL);
	if (err == RS_EBUSY && !try && timeout_ns != RS_ASYNC)
		err = lock_wait(ri, r, deadline, &old, &nw);
	if (err)
		return err;
	return rs_cmd_finish(ri, old, nw, timeout_ns, deadline);
}

int rs_lock(rs_runstate *rs, enum rs_lock r, int64_t timeout_ns)
{
	return lock_common(rs, r, timeout_ns, false);
}

int rs_trylock(rs_runstate *rs, enum rs_lock r, int64_t timeout_ns)
{
	return lock_common(rs, r, timeout_ns, true);
}

/*
 * Unlock (p == NONE) or unlock with a pause reason.  Returns 0 with the CAS
 * in *oldp and *newp, or an error with nothing changed.
 */
static int unlock_common(struct rs_instance *ri, enum rs_lock r, enum rs_pause p, uint64_t *oldp,
			 uint64_t *newp)
{
	uint64_t w = rs_word_load(ri, memory_order_acquire), nw;
	int err;

	for (;;) {
		err = rs_transition(w, RS_CMD_UNLOCK, r, p, ri->max_backlog, &nw);
		if (err)
			return err;
		if (w & RS_W_LOCKWAIT)
			break;
		RS_DELAY(ri, "unlock-cas");
		if (rs_edge_cas(ri, &w, nw)) {
			*oldp = w;
			*newp = nw;
			return 0;
		}
	}

	/* Contended: decide between hand-over and release under the mutex. */
	if (rs_mutex_lock(ri, &ri->lockq.mutex, UINT64_MAX))
		rs_fatal("lockq mutex", RS_ETIMEDOUT);
	w = rs_word_load(ri, memory_order_acquire);
	for (;;) {
		err = rs_transition(w, RS_CMD_UNLOCK, r, p, ri->max_backlog, &nw);
		if (err)
			break;
		if (ri->lockq.waiters[r]) {
			/* Hand over: the bit stays set; only the pause reason
			 * (if any) is applied. */
			if (p != RS_PAUSE_NONE)
				rs_transition(w, RS_CMD_PAUSE, p, 0, ri->max_backlog, &nw);
			else
				nw = w;
		}
		if (nw == w)
			break;
		if (rs_edge_cas(ri, &w, nw))
			break;
	}
	if (!err && ri->lockq.waiters[r]) {
		ri->lockq.waiters[r]--;
		ri->lockq.issued[r]++;
		atomic_fetch_add_explicit(&ri->lockq.grants[r], 1, memory_order_relaxed);
		/* Any registered waiter may be the eligible one: wake them all. */
		rs_futex_wake(ri, &ri->lockq.grants[r], INT_MAX);
	}
	rs_mutex_unlock(ri, &ri->lockq.mutex);
	if (!err) {
		*oldp = w;
		*newp = nw;
	}
	return err;
}

int rs_unlock(rs_runstate *rs, enum rs_lock r)
{
	struct rs_instance *ri = rs_inst(rs);
	uint64_t old, nw;
	int err;

	if (!rs)
		return RS_EINVAL;
	err = unlock_common(ri, r, RS_PAUSE_NONE, &old, &nw);
	if (err)
		return err;
	if (old != nw)
		rs_settle_help(ri);
	return 0;
}

int rs_unlock_pause(rs_runstate *rs, enum rs_lock r, enum rs_pause p, int64_t timeout_ns)
{
	struct rs_instance *ri = rs_inst(rs);
	uint64_t deadline, old, nw;
	int err;

	if (!rs || p <= RS_PAUSE_NONE || p >= RS_PAUSE_COUNT)
		return RS_EINVAL;
	if ((err = rs_cmd_may_wait(ri, timeout_ns, &deadline)))
		return err;
	err = unlock_common(ri, r, p, &old, &nw);
	if (err)
		return err;
	return rs_cmd_finish(ri, old, nw, timeout_ns, deadline);
}

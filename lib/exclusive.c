/* SPDX-License-Identifier: MIT */
/*
 * Exclusive sections: every vCPU but the owner's own kept out of guest
 * code, with the run state untouched (runstate.h, docs/semantics.md).
 *
 * The section is the word's RS_W_EXCL bit, which is in the fast path's
 * no-run mask: a vCPU that sees it leaves guest code through its slow path
 * and parks, as for a stop, but no edge is made, so nothing settles, no
 * event is produced and no listener runs.  The owner's own vCPU runs
 * through its slow path, which accepts a word whose only no-run bit is
 * RS_W_EXCL on the owner's thread (rs_excl_lets_run()).
 *
 * The pairings (docs/protocol.md, section 6a, P18-P21), all in this file
 * or named here:
 *
 * P18, begin against a vCPU going active: the owner's seq_cst CAS that
 *   sets RS_W_EXCL, then rs_ack_scan()'s seq_cst fence and loads of the
 *   vCPUs' states, against the vCPU's seq_cst OR of ACTIVE and seq_cst
 *   load of the word in rs_ack_enter(): the stop's store-buffering pair
 *   (P1), unchanged.  Either the vCPU sees the bit and retreats, or the
 *   scan sees it active, counts it and kicks it, and rs_ack_wait() waits
 *   for its acknowledgement (ack.c), whose release pairs with the scan's
 *   acquire: the owner sees what the vCPUs wrote.
 * P19, end against parked vCPUs: the seq_cst CAS that clears RS_W_EXCL
 *   also clears RS_W_PARKED when the new word lets vCPUs run, and then
 *   wakes the parked ones (rs_park_release()), as every CAS that lets
 *   vCPUs run does (park.c, P4).  When the VM may not run then, the bit
 *   stays, and the claim that later lets it run wakes them (settle.c).
 * P20, a parked owner: a stop during a section parks the owner's vCPU
 *   too; the claim that makes the word runnable but for RS_W_EXCL clears
 *   RS_W_PARKED and wakes every parked vCPU (settle.c's claim()); the
 *   others find the bit and park again.
 * P21, hand-over: end() with a waiter stores the new owner, then
 *   store-releases the waiter's `granted`, which the waiter acquires: the
 *   new owner sees what the old one wrote, and the word's RS_W_EXCL is
 *   never cleared in between, so no vCPU runs.  The old owner's vCPU may
 *   still be active; the new owner's scan waits for it like any other.
 *
 * The queue is a FIFO of waiters that live on their threads' stacks,
 * behind a small futex mutex held for a few instructions; it is the
 * order of service, and a waiter that times out unlinks itself.  A lock
 * for the queue costs nothing that matters: a thread that finds a section
 * held must sleep anyway, and one that finds none pays one uncontended
 * CAS on a line of its own.
 */
#include <limits.h>

#include "instance.h"

_Thread_local char rs_excl_token;

struct rs_excl_waiter {
	struct rs_excl_waiter *next, *prev;
	const void *token;
	/* 0 while waiting; 1 once the section is this waiter's.  The futex
	 * the waiter sleeps on. */
	_Atomic uint32_t granted;
};

static void excl_lock(struct rs_instance *ri)
{
	/* No deadline: held for a few instructions, never across a wait. */
	if (rs_mutex_lock(ri, &ri->excl.mutex, UINT64_MAX))
		rs_fatal("exclusive mutex", RS_ETIMEDOUT);
}

static void excl_unlock(struct rs_instance *ri)
{
	rs_mutex_unlock(ri, &ri->excl.mutex);
}

static void excl_unlink(struct rs_excl *x, struct rs_excl_waiter *n)
{
	if (n->prev)
		n->prev->next = n->next;
	else
		x->head = n->next;
	if (n->next)
		n->next->prev = n->prev;
	else
		x->tail = n->prev;
}

/* Under the mutex, nobody holding the section: the caller takes it and
 * sets the bit.  seq_cst: the first half of P18. */
static void excl_take(struct rs_instance *ri, const void *token)
{
	uint64_t w = rs_word_load(ri, memory_order_relaxed);

	atomic_store_explicit(&ri->excl.owner, token, memory_order_relaxed);
	RS_DELAY(ri, "excl-set");
	while (!rs_word_cas_weak(ri, &w, w | RS_W_EXCL, memory_order_seq_cst,
				 memory_order_relaxed))
		;
}

/*
 * Under the mutex, by the owner: pass the section to the first waiter
 * (P21), or clear the bit and wake the parked vCPUs if they may run (P19).
 */
static void excl_give_up(struct rs_instance *ri)
{
	struct rs_excl *x = &ri->excl;
	struct rs_excl_waiter *n = x->head;
	uint64_t w, nw;

	if (n) {
		excl_unlink(x, n);
		atomic_store_explicit(&x->owner, n->token, memory_order_relaxed);
		/* Release: pairs with the waiter's acquire load of granted. */
		atomic_store_explicit(&n->granted, 1, memory_order_release);
		rs_futex_wake(ri, &n->granted, 1);
		return;
	}
	atomic_store_explicit(&x->owner, NULL, memory_order_relaxed);
	w = rs_word_load(ri, memory_order_relaxed);
	RS_DELAY(ri, "excl-clear");
	do {
		nw = w & ~RS_W_EXCL;
		if (rs_w_may_run(nw))
			nw &= ~RS_W_PARKED;
		/* seq_cst: as every CAS that lets vCPUs run, against the
		 * parkers' CAS that sets RS_W_PARKED (park.c); release for
		 * what the section wrote. */
	} while (!rs_word_cas_weak(ri, &w, nw, memory_order_seq_cst, memory_order_relaxed));
	rs_park_release(ri, w, nw);
}

/* Wait on the queue for the section, until deadline: 0 once it is ours,
 * RS_ETIMEDOUT (and unlinked: nothing changed) if not.  Called with the
 * mutex held; returns with it released. */
static int excl_queue_wait(struct rs_instance *ri, const void *token, uint64_t deadline)
{
	struct rs_excl *x = &ri->excl;
	struct rs_excl_waiter n = { .prev = x->tail, .token = token };

	if (x->tail)
		x->tail->next = &n;
	else
		x->head = &n;
	x->tail = &n;
	excl_unlock(ri);
	for (;;) {
		int64_t left;

		/* Acquire: pairs with excl_give_up()'s release store (P21).
		 * The giver wakes n.granted under the mutex after its store:
		 * take the mutex once before n leaves this stack frame, so
		 * that no FUTEX_WAKE lands on it afterwards. */
		if (atomic_load_explicit(&n.granted, memory_order_acquire)) {
			excl_lock(ri);
			excl_unlock(ri);
			return 0;
		}
		left = rs_remaining(ri, deadline);
		if (left == 0)
			break;
		RS_DELAY(ri, "excl-queue");
		rs_futex_wait(ri, &n.granted, 0, left);
	}
	excl_lock(ri);
	/* Granted between the last check and the lock: the section is ours
	 * after all (the caller's wait for the vCPUs decides). */
	if (atomic_load_explicit(&n.granted, memory_order_acquire)) {
		excl_unlock(ri);
		return 0;
	}
	excl_unlink(x, &n);
	excl_unlock(ri);
	return RS_ETIMEDOUT;
}

int rs_exclusive_begin(rs_runstate *rs, int64_t timeout_ns)
{
	struct rs_instance *ri = rs_inst(rs);
	const void *token = &rs_excl_token;
	uint64_t deadline;
	int r;

	if (!rs)
		return RS_EINVAL;
	/* A listener runs while an edge settles: a section from there would
	 * hold vCPUs out behind it, so it is refused even as a try. */
	if ((r = rs_no_wait_in_listener()))
		return r;
	if (rs_excl_mine(&ri->excl))
		return RS_EDEADLK;
	/* Always take our own vCPU out: the wait for "every vCPU out" below
	 * must not wait for it, and while we wait in the queue it counts as
	 * out (a section owner may be waiting for it). */
	rs_vcpu_thread_out(ri);
	deadline = rs_deadline(ri, timeout_ns);

	if (timeout_ns == RS_ASYNC) {
		/* A try that would fail anyway fails here, before it kicks
		 * every running vCPU out of guest code (the scan below kicks
		 * only if a vCPU went active since). */
		if (rs_ack_any_active(ri) || !rs_mutex_trylock(&ri->excl.mutex))
			return RS_ETIMEDOUT;
	} else {
		excl_lock(ri);
	}
	if (!atomic_load_explicit(&ri->excl.owner, memory_order_relaxed) && !ri->excl.head) {
		excl_take(ri, token);
		excl_unlock(ri);
	} else if (timeout_ns == RS_ASYNC) {
		excl_unlock(ri);
		return RS_ETIMEDOUT;
	} else if ((r = excl_queue_wait(ri, token, deadline))) {
		return r;
	}

	/* The section is ours and the bit is set: kick every active vCPU
	 * (P18), then wait for each to be out. */
	(void)rs_ack_scan(ri, RS_SCAN_EDGE, -1, NULL);
	if (rs_ack_wait(ri, deadline) == 0)
		return 0;
	/* Timed out: give the section up as if it had never been begun. */
	RS_STAT_INC(ri, timeouts);
	excl_lock(ri);
	excl_give_up(ri);
	excl_unlock(ri);
	return RS_ETIMEDOUT;
}

int rs_exclusive_end(rs_runstate *rs)
{
	struct rs_instance *ri = rs_inst(rs);

	if (!rs)
		return RS_EINVAL;
	if (!rs_excl_mine(&ri->excl))
		return RS_ENOTHELD;
	excl_lock(ri);
	excl_give_up(ri);
	excl_unlock(ri);
	return 0;
}

bool rs_excl_held(struct rs_instance *ri)
{
	return atomic_load_explicit(&ri->excl.owner, memory_order_relaxed) != NULL;
}

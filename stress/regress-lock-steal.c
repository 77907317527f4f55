/* SPDX-License-Identifier: MIT */
/*
 * Found by runstate-stress (the linearizability check): a lock hand-over can
 * be taken by a thread that started waiting after the unlock.
 *
 *   A: rs_lock(savevm)                      -> 0
 *   B: rs_lock(savevm, 200 ms)              waits (registers as a waiter)
 *   A: rs_unlock(savevm)                    -> 0, hands the bit over to B
 *   Q: rs_word()                            savevm set (in transit to B)
 *   C: rs_lock(savevm, 200 ms)              -> 0 at once: takes B's grant
 *   B: wakes late, no grant left, times out -> RS_EBUSY
 *
 * No sequential order explains this history.  After A's unlock returned,
 * savevm is free, yet Q sees it held.  C was invoked after Q, and B never
 * got the bit.  docs/semantics.md section 7 says the bit "passes directly to
 * one waiter".  Here it went to C, which was not waiting at the unlock.
 *
 * The cause is in lock_wait(): hand-overs are an anonymous count
 * (lock_grants[r]), and any waiter takes one, including a waiter that
 * registered after the grant was issued.
 *
 * B's late wake-up (a thread descheduled right after FUTEX_WAKE) is
 * injected through ops.futex_wait.  Exit 0: B gets the bit and C does not
 * (correct).  Exit 1: C gets it and B times out (the bug).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "runstate-testing.h"
#include "rsutil.h"

#define MS ((int64_t)1000000)

static rs_runstate *rs;
static _Thread_local int slow_waker;
static _Atomic int b_waiting, b_result = 1;

static int futex_wait(void *ctx, uint32_t *addr, uint32_t val, int64_t t)
{
	int r;

	(void)ctx;
	if (slow_waker)
		atomic_store(&b_waiting, 1);
	r = rsu_futex_wait(addr, val, t);
	if (slow_waker && r == 0)
		rsu_sleep_ns(50 * MS);  /* descheduled right after the wake-up */
	return r;
}

static void *b_main(void *arg)
{
	(void)arg;
	slow_waker = 1;
	atomic_store(&b_result, rs_lock(rs, RS_LOCK_SAVEVM, 200 * MS));
	return NULL;
}

int main(void)
{
	struct rs_ops ops = { .futex_wait = futex_wait };
	pthread_t b;
	int a, u, c, br;
	uint64_t q;

	if (rs_create_ops(NULL, &ops, &rs))
		return 2;
	a = rs_lock(rs, RS_LOCK_SAVEVM, RS_FOREVER);
	pthread_create(&b, NULL, b_main, NULL);
	while (!atomic_load(&b_waiting))
		rsu_sleep_ns(1 * MS);
	rsu_sleep_ns(5 * MS);
	u = rs_unlock(rs, RS_LOCK_SAVEVM);
	q = rs_word(rs);
	c = rs_lock(rs, RS_LOCK_SAVEVM, 200 * MS);
	pthread_join(b, NULL);
	br = atomic_load(&b_result);
	printf("regress-lock-steal: A lock %s; B waits; A unlock %s; Q sees savevm %s; "
	       "C lock %s; B lock %s\n",
	       rs_strerror(a), rs_strerror(u), q & RS_W_LOCK(RS_LOCK_SAVEVM) ? "held" : "free",
	       rs_strerror(c), rs_strerror(br));
	rs_destroy(rs);
	if (c == 0 && br == RS_EBUSY) {
		printf("regress-lock-steal: BUG: the bit handed over to waiter B went to C, "
		       "invoked after the unlock returned\n");
		return 1;
	}
	return a || u || br ? 1 : 0;
}

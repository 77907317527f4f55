/* SPDX-License-Identifier: MIT */
/*
 * The harness of the API tests (test_api, test_contract, test_listeners,
 * test_concurrency), written once: CHECK counts failures and says where;
 * instances are made with their config's size set; and a simulated vCPU
 * thread runs guest "slices" that the tests steer (blocking until a kick,
 * stuck and deaf to kicks, losing kicks, running a job on its own thread).
 * The clock, sleeps, futexes and CPU counts come from rsutil.
 */
#ifndef RS_TESTUTIL_H
#define RS_TESTUTIL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "runstate-testing.h"
#include "rsutil.h"

#define SEC (1000000000LL)
#define MS  (1000000LL)

/* ---------------------------------------------------------------------------
 * Checks
 */
extern _Atomic int tu_checks, tu_failures;

#define CHECK(cond) do { \
	tu_checks++; \
	if (!(cond)) { \
		tu_failures++; \
		fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
	} \
} while (0)

#define CHECK_EQ(a, b) do { \
	long long tu_a = (long long)(a), tu_b = (long long)(b); \
	tu_checks++; \
	if (tu_a != tu_b) { \
		tu_failures++; \
		fprintf(stderr, "%s:%d: check failed: %s == %s (%lld != %lld)\n", \
			__FILE__, __LINE__, #a, #b, tu_a, tu_b); \
	} \
} while (0)

#define RUN(test) do { \
	int tu_before = tu_failures; \
	test(); \
	printf("%s %s\n", tu_failures == tu_before ? "ok  " : "FAIL", #test); \
	fflush(stdout); \
} while (0)

/* Print the totals; the exit status of main(). */
int tu_finish(const char *name);

static inline void tu_sleep_ms(long ms)
{
	rsu_sleep_ns(ms * MS);
}

/* Wait until cond holds, at most ms milliseconds (5 s for WAIT_FOR); check
 * that it did.  A limit on hangs, never a speed assertion. */
#define WAIT_MS(cond, ms) do { \
	for (long tu_wm = 0; tu_wm < (ms) && !(cond); tu_wm++) \
		tu_sleep_ms(1); \
	CHECK(cond); \
} while (0)
#define WAIT_FOR(cond) WAIT_MS(cond, 5000)

/* ---------------------------------------------------------------------------
 * Instances
 */

/* rs_create_ops() with cfg (its size set here) and ops (NULL: the
 * defaults); a test that cannot make its instance exits. */
rs_runstate *tu_create(struct rs_config cfg, const struct rs_ops *ops);

/* rs_decode() of w into a full-size struct (a failure counts as a check
 * failure and gives zeros). */
struct rs_state tu_decode(uint64_t w);

/* ---------------------------------------------------------------------------
 * A simulated vCPU thread.  It registers, then loops on rs_vcpu_enter():
 * RS_VCPU_EXIT ends it, RS_VCPU_WORK runs the posted job (out), and 0 runs
 * guest slices while the fast path says the VM may run.  A slice ends at
 * once, or, while `blocking`, on a kick; while `stuck` it does not end at
 * all (a vCPU in a long host call, deaf to kicks).  A job posted to it runs
 * on its thread: inside a slice while it is active, or out after a work
 * request while it is parked; a job that leaves it out (a call that may
 * wait) ends the slice, and the loop goes back through rs_vcpu_enter().
 */
typedef int tu_job_fn(rs_runstate *rs, int64_t timeout, void *arg);

struct tu_vcpu {
	rs_vcpu v;
	rs_runstate *rs;
	pthread_t thread;
	_Atomic int reg_result;     /* rs_vcpu_register()'s, once started */
	_Atomic bool started, registered;
	_Atomic bool quit;          /* the test is reaping it */
	_Atomic uint64_t slices;    /* slices begun */
	_Atomic int in_guest;       /* inside a slice now */
	_Atomic int kicks;          /* kicks received */
	_Atomic int drop_kicks;     /* kicks still to ignore (lost kicks) */
	_Atomic bool kicked;        /* a kick the slice has not seen yet */
	_Atomic bool blocking;      /* a slice ends only on a kick */
	_Atomic bool stuck;         /* stay in the slice, deaf to kicks */
	_Atomic bool is_stuck;      /* inside the stuck loop now */
	_Atomic int last_enter;     /* rs_vcpu_enter()'s last result */
	_Atomic int work_seen;      /* RS_VCPU_WORK results */
	/* The job: set by tu_vcpu_post(), results valid once job_done. */
	tu_job_fn *_Atomic job;
	void *job_arg;
	int64_t job_timeout;
	int job_result;
	bool job_active_before, job_active_after;
	uint64_t job_ns;
	_Atomic bool job_done;
};

/* Start t's thread on rs and wait until it registered (checked). */
void tu_vcpu_spawn(struct tu_vcpu *t, rs_runstate *rs);
/* Make it leave (an exit request, checked) and join it. */
void tu_vcpu_reap(struct tu_vcpu *t);
/* Does the library count t active?  (-1: not registered.) */
int tu_vcpu_active(struct tu_vcpu *t);
/* Post a job; it runs at t's next slice step, or on a work request. */
void tu_vcpu_post(struct tu_vcpu *t, tu_job_fn *fn, int64_t timeout, void *arg);
/* Wait at most ms milliseconds for the posted job; whether it finished. */
bool tu_vcpu_job_wait(struct tu_vcpu *t, long ms);

#endif

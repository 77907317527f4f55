/* SPDX-License-Identifier: MIT */
/*
 * Exclusive sections (rs_exclusive_begin()/end()): exclusion, the owner's
 * own guest code, the run state left alone, FIFO service, timeouts that
 * change nothing, stops and starts during a section, requests, hot-plug,
 * and the edge cases runstate.h defines (nested begin, end by another
 * thread, an owner that unregisters, a begin from a listener).
 */
#include <pthread.h>
#include <string.h>

#include "testutil.h"

#define NV 3

static struct tu_vcpu vc[NV];

static rs_runstate *running_vm(void)
{
	rs_runstate *rs = tu_create((struct rs_config){ .size = sizeof(struct rs_config) }, NULL);

	for (int i = 0; i < NV; i++)
		tu_vcpu_spawn(&vc[i], rs);
	CHECK_EQ(rs_start(rs, 0), 0);
	CHECK_EQ(rs_wait(rs, 5 * SEC), 0);
	return rs;
}

static void reap(rs_runstate *rs)
{
	for (int i = 0; i < NV; i++)
		tu_vcpu_reap(&vc[i]);
	rs_destroy(rs);
}

static uint64_t slices(int i)
{
	return atomic_load(&vc[i].slices);
}

/* Every vCPU but `except` (-1: none) has started a slice since *base was
 * taken (the base is updated). */
static bool all_ran(uint64_t *base, int except)
{
	for (int i = 0; i < NV; i++)
		if (i != except && slices(i) == base[i])
			return false;
	return true;
}

static void snap(uint64_t *base)
{
	for (int i = 0; i < NV; i++)
		base[i] = slices(i);
}

/* For about ms: no vCPU but `except` is in guest code or starts a slice. */
static void check_held_out(int except, long ms)
{
	uint64_t base[NV];

	snap(base);
	for (int i = 0; i < NV; i++)
		if (i != except)
			CHECK_EQ(atomic_load(&vc[i].in_guest), 0);
	tu_sleep_ms(ms);
	for (int i = 0; i < NV; i++) {
		if (i == except)
			continue;
		CHECK_EQ(slices(i), base[i]);
		CHECK_EQ(atomic_load(&vc[i].in_guest), 0);
		CHECK_EQ(tu_vcpu_active(&vc[i]), 0);
	}
}

static int job_begin(rs_runstate *rs, int64_t timeout, void *arg)
{
	(void)arg;
	return rs_exclusive_begin(rs, timeout);
}

static int job_end(rs_runstate *rs, int64_t timeout, void *arg)
{
	(void)timeout;
	(void)arg;
	return rs_exclusive_end(rs);
}

/* A section from the management thread: nobody runs, and the tuple, the
 * edge counter and the events are untouched. */
static void test_from_management(void)
{
	rs_runstate *rs = running_vm();
	uint64_t w0 = rs_word(rs), cur = rs_events_cursor(rs), base[NV];
	struct rs_state a = tu_decode(w0), b;

	CHECK_EQ(rs_exclusive_begin(rs, 5 * SEC), 0);
	check_held_out(-1, 30);
	b = tu_decode(rs_word(rs));
	CHECK(a.running && b.running);
	CHECK_EQ(b.edge, a.edge);
	CHECK_EQ(b.pause, a.pause);
	CHECK_EQ(b.locks, a.locks);
	CHECK_EQ(b.io_error, a.io_error);
	CHECK(!b.may_run);                   /* vCPUs are kept out */
	CHECK(!rs_may_run(rs));
	CHECK_EQ(rs_events_cursor(rs), cur);
	/* Edge cases: a nested begin, an end by another thread. */
	CHECK_EQ(rs_exclusive_begin(rs, 10 * MS), RS_EDEADLK);
	CHECK_EQ(rs_exclusive_begin(rs, RS_ASYNC), RS_EDEADLK);
	tu_vcpu_post(&vc[0], job_end, 0, NULL);   /* runs on a work request */
	CHECK_EQ(rs_vcpu_request(&vc[0].v, RS_REQ_WORK), 0);
	CHECK(tu_vcpu_job_wait(&vc[0], 5000));
	CHECK_EQ(vc[0].job_result, RS_ENOTHELD);
	check_held_out(-1, 10);
	snap(base);
	CHECK_EQ(rs_exclusive_end(rs), 0);
	CHECK_EQ(rs_exclusive_end(rs), RS_ENOTHELD);
	WAIT_FOR(all_ran(base, -1));
	CHECK(all_ran(base, -1));
	CHECK_EQ(rs_word(rs), w0);
	CHECK_EQ(rs_events_cursor(rs), cur);
	CHECK_EQ(rs_exclusive_begin(NULL, 0), RS_EINVAL);
	CHECK_EQ(rs_exclusive_end(NULL), RS_EINVAL);
	reap(rs);
}

/* A section from a vCPU thread: that vCPU runs its guest code through
 * rs_vcpu_enter() (its fast path fails), the others do not run. */
static void test_from_vcpu(void)
{
	rs_runstate *rs = running_vm();
	uint64_t w0 = rs_word(rs), own, base[NV];

	tu_vcpu_post(&vc[0], job_begin, 5 * SEC, NULL);
	CHECK(tu_vcpu_job_wait(&vc[0], 6000));
	CHECK_EQ(vc[0].job_result, 0);
	CHECK(!vc[0].job_active_after);      /* taken out by the call */
	own = slices(0);
	check_held_out(0, 30);
	WAIT_FOR(slices(0) > own + 10);
	CHECK(slices(0) > own + 10);         /* the owner's guest code runs */
	/* Nested begin on the owner's thread. */
	tu_vcpu_post(&vc[0], job_begin, 10 * MS, NULL);
	CHECK(tu_vcpu_job_wait(&vc[0], 5000));
	CHECK_EQ(vc[0].job_result, RS_EDEADLK);
	/* The management thread holds no section. */
	CHECK_EQ(rs_exclusive_end(rs), RS_ENOTHELD);
	snap(base);
	tu_vcpu_post(&vc[0], job_end, 0, NULL);
	CHECK(tu_vcpu_job_wait(&vc[0], 5000));
	CHECK_EQ(vc[0].job_result, 0);
	WAIT_FOR(all_ran(base, -1));
	CHECK(all_ran(base, -1));
	CHECK_EQ(rs_word(rs), w0);
	reap(rs);
}

/* A vCPU deaf to kicks: the begin times out and changes nothing. */
static void test_timeout(void)
{
	rs_runstate *rs = running_vm();
	uint64_t w0 = rs_word(rs), base[NV];

	atomic_store(&vc[1].stuck, true);
	WAIT_FOR(atomic_load(&vc[1].is_stuck));
	CHECK_EQ(rs_exclusive_begin(rs, 50 * MS), RS_ETIMEDOUT);
	CHECK_EQ(rs_exclusive_end(rs), RS_ENOTHELD);
	CHECK_EQ(rs_word(rs), w0);
	snap(base);
	WAIT_FOR(slices(0) > base[0] && slices(2) > base[2]);
	CHECK(slices(0) > base[0] && slices(2) > base[2]);
	/* A try while it is still in guest code fails at once too, and
	 * kicks nobody. */
	{
		int k0 = atomic_load(&vc[0].kicks), k1 = atomic_load(&vc[1].kicks),
		    k2 = atomic_load(&vc[2].kicks);

		CHECK_EQ(rs_exclusive_begin(rs, RS_ASYNC), RS_ETIMEDOUT);
		CHECK_EQ(atomic_load(&vc[0].kicks), k0);
		CHECK_EQ(atomic_load(&vc[1].kicks), k1);
		CHECK_EQ(atomic_load(&vc[2].kicks), k2);
	}
	CHECK_EQ(rs_word(rs), w0);
	atomic_store(&vc[1].stuck, false);
	CHECK_EQ(rs_exclusive_begin(rs, 5 * SEC), 0);
	check_held_out(-1, 10);
	CHECK_EQ(rs_exclusive_end(rs), 0);
	/* With the VM stopped every vCPU is out: a try succeeds. */
	CHECK_EQ(rs_stop(rs, 5 * SEC), 0);
	CHECK_EQ(rs_exclusive_begin(rs, RS_ASYNC), 0);
	CHECK_EQ(rs_exclusive_end(rs), 0);
	CHECK_EQ(rs_start(rs, 0), 0);
	reap(rs);
}

/* ---------------------------------------------------------------------------
 * Several sections: mutual exclusion and first come, first served.
 */
struct sect_thread {
	rs_runstate *rs;
	pthread_t th;
	int64_t timeout;
	_Atomic int order;        /* when it got the section (1, 2, ...) */
	int result;
	_Atomic bool started, done, release;
};
static _Atomic int holders, served;

static void *sect_main(void *arg)
{
	struct sect_thread *t = arg;

	atomic_store(&t->started, true);
	t->result = rs_exclusive_begin(t->rs, t->timeout);
	if (t->result == 0) {
		CHECK_EQ(atomic_fetch_add(&holders, 1), 0);
		atomic_store(&t->order, atomic_fetch_add(&served, 1) + 1);
		while (!atomic_load(&t->release))
			tu_sleep_ms(1);
		CHECK_EQ(atomic_fetch_sub(&holders, 1), 1);
		CHECK_EQ(rs_exclusive_end(t->rs), 0);
	}
	atomic_store(&t->done, true);
	return NULL;
}

static void sect_spawn(struct sect_thread *t, rs_runstate *rs, int64_t timeout)
{
	memset(t, 0, sizeof(*t));
	t->rs = rs;
	t->timeout = timeout;
	CHECK_EQ(pthread_create(&t->th, NULL, sect_main, t), 0);
	while (!atomic_load(&t->started))
		tu_sleep_ms(1);
	tu_sleep_ms(20);          /* well inside the queue before the next */
}

static void test_fifo(void)
{
	rs_runstate *rs = running_vm();
	struct sect_thread a, b, c, d;

	atomic_store(&holders, 0);
	atomic_store(&served, 0);
	sect_spawn(&a, rs, 5 * SEC);
	WAIT_FOR(atomic_load(&served) == 1);
	sect_spawn(&b, rs, 5 * SEC);
	sect_spawn(&d, rs, 30 * MS);    /* gives up while queued */
	sect_spawn(&c, rs, 5 * SEC);
	WAIT_FOR(atomic_load(&d.done));
	CHECK_EQ(d.result, RS_ETIMEDOUT);
	check_held_out(-1, 10);
	atomic_store(&a.release, true);
	WAIT_FOR(atomic_load(&served) == 2);
	CHECK_EQ(atomic_load(&b.order), 2);
	check_held_out(-1, 10);          /* handed over: nobody ran between */
	atomic_store(&b.release, true);
	WAIT_FOR(atomic_load(&served) == 3);
	CHECK_EQ(atomic_load(&c.order), 3);
	atomic_store(&c.release, true);
	pthread_join(a.th, NULL);
	pthread_join(b.th, NULL);
	pthread_join(c.th, NULL);
	pthread_join(d.th, NULL);
	CHECK_EQ(a.result, 0);
	CHECK_EQ(atomic_load(&a.order), 1);
	CHECK_EQ(rs_word(rs) & RS_W_EXCL, 0);
	reap(rs);
}

/* Two vCPU threads begin sections at once, many times: neither waits for
 * the other's vCPU (each is out while it waits), so no deadlock. */
static int job_section_loop(rs_runstate *rs, int64_t timeout, void *arg)
{
	int n = *(int *)arg, fails = 0;

	for (int i = 0; i < n; i++) {
		if (rs_exclusive_begin(rs, timeout)) {
			fails++;
			continue;
		}
		if (atomic_fetch_add(&holders, 1) != 0)
			fails++;
		atomic_fetch_sub(&holders, 1);
		if (rs_exclusive_end(rs))
			fails++;
	}
	return fails;
}

static void test_two_vcpus(void)
{
	rs_runstate *rs = running_vm();
	int n = 300;

	atomic_store(&holders, 0);
	tu_vcpu_post(&vc[0], job_section_loop, 5 * SEC, &n);
	tu_vcpu_post(&vc[1], job_section_loop, 5 * SEC, &n);
	CHECK(tu_vcpu_job_wait(&vc[0], 60000));
	CHECK(tu_vcpu_job_wait(&vc[1], 60000));
	CHECK_EQ(vc[0].job_result, 0);
	CHECK_EQ(vc[1].job_result, 0);
	CHECK_EQ(rs_word(rs) & RS_W_EXCL, 0);
	reap(rs);
}

/* ---------------------------------------------------------------------------
 * The run state changing during a section.
 */
static int job_stop_sync(rs_runstate *rs, int64_t timeout, void *arg)
{
	(void)arg;
	return rs_stop(rs, timeout);
}

static void test_stop_during_section(void)
{
	rs_runstate *rs = running_vm();
	uint64_t own, base[NV];
	struct rs_state st;

	/* The owner is vCPU 0.  A synchronous stop from management returns
	 * only when the owner is out too. */
	tu_vcpu_post(&vc[0], job_begin, 5 * SEC, NULL);
	CHECK(tu_vcpu_job_wait(&vc[0], 6000));
	CHECK_EQ(vc[0].job_result, 0);
	own = slices(0);
	WAIT_FOR(slices(0) > own);
	CHECK_EQ(rs_stop(rs, 5 * SEC), 0);
	CHECK_EQ(atomic_load(&vc[0].in_guest), 0);
	CHECK_EQ(tu_vcpu_active(&vc[0]), 0);
	check_held_out(-1, 20);
	st = tu_decode(rs_word(rs));
	CHECK(!st.running);
	CHECK_EQ(st.pause, RS_PAUSE_PAUSED);
	/* A start lets the owner run again (it was parked), not the others. */
	own = slices(0);
	CHECK_EQ(rs_start(rs, 0), 0);
	WAIT_FOR(slices(0) > own + 5);
	CHECK(slices(0) > own + 5);
	check_held_out(0, 20);
	/* A work request reaches a vCPU kept out by the section. */
	{
		int seen = atomic_load(&vc[2].work_seen);

		CHECK_EQ(rs_vcpu_request(&vc[2].v, RS_REQ_WORK), 0);
		WAIT_FOR(atomic_load(&vc[2].work_seen) > seen);
		CHECK(atomic_load(&vc[2].work_seen) > seen);
		check_held_out(0, 10);
	}
	/* Stop again, then end the section while stopped (the owner's job
	 * runs on a work request): nobody runs until cont. */
	CHECK_EQ(rs_stop(rs, 5 * SEC), 0);
	tu_vcpu_post(&vc[0], job_end, 0, NULL);
	CHECK_EQ(rs_vcpu_request(&vc[0].v, RS_REQ_WORK), 0);
	CHECK(tu_vcpu_job_wait(&vc[0], 5000));
	CHECK_EQ(vc[0].job_result, 0);
	CHECK_EQ(rs_word(rs) & RS_W_EXCL, 0);
	check_held_out(-1, 20);
	snap(base);
	CHECK_EQ(rs_cont(rs), 0);
	WAIT_FOR(all_ran(base, -1));
	CHECK(all_ran(base, -1));
	reap(rs);
}

/* A stop made by a vCPU thread inside its own section: it takes the owner
 * out, as any call that may wait, and returns once all are out. */
static void test_owner_stops(void)
{
	rs_runstate *rs = running_vm();

	tu_vcpu_post(&vc[1], job_begin, 5 * SEC, NULL);
	CHECK(tu_vcpu_job_wait(&vc[1], 6000));
	CHECK_EQ(vc[1].job_result, 0);
	tu_vcpu_post(&vc[1], job_stop_sync, 5 * SEC, NULL);
	CHECK(tu_vcpu_job_wait(&vc[1], 6000));
	CHECK_EQ(vc[1].job_result, 0);
	check_held_out(-1, 10);
	tu_vcpu_post(&vc[1], job_end, 0, NULL);
	CHECK_EQ(rs_vcpu_request(&vc[1].v, RS_REQ_WORK), 0);
	CHECK(tu_vcpu_job_wait(&vc[1], 5000));
	CHECK_EQ(vc[1].job_result, 0);
	CHECK(!tu_decode(rs_word(rs)).running);
	CHECK_EQ(rs_start(rs, 0), 0);
	reap(rs);
}

/* ---------------------------------------------------------------------------
 * Hot-plug and an owner that unregisters.
 */
struct raw_vcpu {
	rs_runstate *rs;
	rs_vcpu v;
	_Atomic int step;
	int r[4];
};

static void no_kick(rs_vcpu *v, void *o)
{
	(void)v;
	(void)o;
}

static void *owner_unregisters(void *arg)
{
	struct raw_vcpu *t = arg;

	t->r[0] = rs_vcpu_register(t->rs, &t->v, no_kick, NULL);
	t->r[1] = rs_exclusive_begin(t->rs, 5 * SEC);
	t->r[2] = rs_vcpu_unregister(&t->v);
	atomic_store(&t->step, 1);
	while (atomic_load(&t->step) != 2)
		tu_sleep_ms(1);
	t->r[3] = rs_exclusive_end(t->rs);
	return NULL;
}

static void test_owner_unregisters(void)
{
	rs_runstate *rs = running_vm();
	struct raw_vcpu t = { .rs = rs };
	struct tu_vcpu late;
	uint64_t base[NV];
	pthread_t th;

	CHECK_EQ(pthread_create(&th, NULL, owner_unregisters, &t), 0);
	WAIT_FOR(atomic_load(&t.step) == 1);
	/* The section outlives its owner's vCPU; a vCPU plugged in now
	 * registers and stays out. */
	check_held_out(-1, 10);
	tu_vcpu_spawn(&late, rs);
	tu_sleep_ms(20);
	CHECK_EQ(atomic_load(&late.slices), 0);
	snap(base);
	atomic_store(&t.step, 2);
	pthread_join(th, NULL);
	CHECK_EQ(t.r[0], 0);
	CHECK_EQ(t.r[1], 0);
	CHECK_EQ(t.r[2], 0);
	CHECK_EQ(t.r[3], 0);
	WAIT_FOR(all_ran(base, -1) && atomic_load(&late.slices) > 0);
	CHECK(all_ran(base, -1) && atomic_load(&late.slices) > 0);
	tu_vcpu_reap(&late);
	reap(rs);
}

/* ---------------------------------------------------------------------------
 * From inside a listener: refused, whatever the timeout.
 */
static int listener_results[2];

static void begin_in_listener(void *opaque, bool running, const struct rs_state *st)
{
	rs_runstate *rs = opaque;

	(void)running;
	(void)st;
	listener_results[0] = rs_exclusive_begin(rs, RS_ASYNC);
	listener_results[1] = rs_exclusive_begin(rs, 10 * MS);
}

static void test_listener(void)
{
	rs_runstate *rs = running_vm();
	rs_listener *l;

	listener_results[0] = listener_results[1] = 1;
	CHECK_EQ(rs_listener_add(rs, begin_in_listener, rs, 0, &l), 0);
	CHECK_EQ(rs_stop(rs, 5 * SEC), 0);
	CHECK_EQ(listener_results[0], RS_EDEADLK);
	CHECK_EQ(listener_results[1], RS_EDEADLK);
	CHECK_EQ(rs_word(rs) & RS_W_EXCL, 0);
	CHECK_EQ(rs_listener_remove(rs, l), 0);
	CHECK_EQ(rs_start(rs, 0), 0);
	reap(rs);
}

int main(void)
{
	RUN(test_from_management);
	RUN(test_from_vcpu);
	RUN(test_timeout);
	RUN(test_fifo);
	RUN(test_two_vcpus);
	RUN(test_stop_during_section);
	RUN(test_owner_stops);
	RUN(test_owner_unregisters);
	RUN(test_listener);
	return tu_finish("test_exclusive");
}

/* SPDX-License-Identifier: MIT */
/*
 * Commands racing from several threads, with vCPUs running, and the word's
 * invariants checked all along:
 *  - every word loaded has edge parity == running (the edge counts edges);
 *  - the edge counter never goes backwards between two loads;
 *  - a lock bit is held by one thread at a time (owner slots, CAS-checked);
 *  - events are consecutive, alternate STOP/RESUME and number the edges;
 *  - while a thread holds a lock bit (after a synchronous lock returned),
 *    no vCPU executes a guest slice;
 *  - at the end nothing is left settling, waiting or held.
 * Usage: test_concurrency [milliseconds] [seed]
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define NMGMT   4
#define NVCPU   3

static rs_runstate *rs;
static _Atomic bool done;
static _Atomic int owner[RS_LOCK_COUNT];
static _Atomic uint64_t guest_slices;
static _Atomic int in_guest;
static _Atomic long violations;

static void violation(const char *what, uint64_t w)
{
	atomic_fetch_add(&violations, 1);
	fprintf(stderr, "violation: %s (word 0x%016llx)\n", what, (unsigned long long)w);
}

static void check_word(uint64_t w)
{
	struct rs_state st = tu_decode(w);

	if ((st.edge & 1) != (unsigned)st.running)
		violation("edge parity differs from running", w);
}

/* Exclusion: while we hold a lock bit the guest slice count must not move
 * and no vCPU may be in a slice. */
static void check_exclusion(uint64_t w)
{
	uint64_t before = atomic_load(&guest_slices);

	if (atomic_load(&in_guest))
		violation("vCPU in guest code while a lock is held", w);
	for (volatile int i = 0; i < 2000; i++)
		;
	if (atomic_load(&guest_slices) != before || atomic_load(&in_guest))
		violation("vCPU ran a slice while a lock is held", w);
}

/* The run's seed: each management thread draws its own stream of it. */
static uint64_t run_seed;

static void *mgmt_main(void *arg)
{
	struct rsu_rng rng = rsu_rng_stream(run_seed, (uintptr_t)arg);
	long iters = 0;

	while (!atomic_load(&done)) {
		uint32_t x = (uint32_t)rsu_rng_next(&rng);
		int64_t to = x & 0x100 ? RS_ASYNC : 2000 * MS;
		enum rs_lock r = (enum rs_lock)((x >> 4) & 3);
		enum rs_pause p = (enum rs_pause)(1 + ((x >> 12) % 7));
		int err;

		switch (x % 10) {
		case 0:
			err = rs_stop(rs, to);
			if (err && err != RS_ETIMEDOUT)
				violation("stop failed", rs_word(rs));
			break;
		case 1:
			rs_start(rs, x & 0x200 ? RS_START_FORCE : 0);
			break;
		case 2:
			rs_cont(rs);
			break;
		case 3:
			rs_retry(rs);
			break;
		case 4:
			/* Not the rank-4 reasons, which only a reset clears:
			 * the VM would stay stopped for long stretches. */
			if (p == RS_PAUSE_SHUTDOWN || p == RS_PAUSE_INTERNAL_ERROR)
				p = RS_PAUSE_WATCHDOG;
			if (x & 0x400)
				rs_io_error(rs, to);
			else
				rs_pause(rs, p, to);
			break;
		case 5:
			if (x & 0x800)
				rs_reset(rs);
			break;
		default:
			/* Waiting locks one time in four: hand-over is strict
			 * (the bit goes to a waiter that was already waiting),
			 * so with more, 4 threads on 2 cores form lock convoys
			 * that keep the VM stopped for the whole run. */
			if ((x & 0x3000) == 0x3000)
				err = rs_lock(rs, r, (x & 0x8000) ? 5 * MS : 2000 * MS);
			else
				err = rs_trylock(rs, r, 2000 * MS);
			if (err == RS_EBUSY) {
				/* Let the holder (or the waiter it hands the bit
				 * to) run: on 2 cores, spinning here starves it. */
				sched_yield();
				break;
			}
			/* A timeout still took the bit: the vCPUs were not all out
			 * in time.  Wait for them; then the lock's guarantee holds. */
			if (err == RS_ETIMEDOUT)
				err = rs_wait(rs, 2000 * MS);
			if (err) {
				violation("lock failed", rs_word(rs));
				break;
			}
			{
				int expect = 0;

				if (!atomic_compare_exchange_strong(&owner[r], &expect, 1))
					violation("lock bit granted to two threads", rs_word(rs));
			}
			check_word(rs_word(rs));
			if (!(rs_word(rs) & RS_W_LOCK(r)))
				violation("lock returned but bit clear", rs_word(rs));
			check_exclusion(rs_word(rs));
			atomic_store(&owner[r], 0);
			if (x & 0x4000)
				err = rs_unlock_pause(rs, r, RS_PAUSE_PAUSED, to);
			else
				err = rs_unlock(rs, r);
			if (err && err != RS_ETIMEDOUT)
				violation("unlock of a held bit failed", rs_word(rs));
			break;
		}
		iters++;
	}
	return (void *)iters;
}

/* Events: seq k numbers edge k, so odd is RESUME and even is STOP; after a
 * reported loss of n the next one is exactly n further on. */
static uint64_t ev_cursor, ev_seq, ev_lost;

static void read_events(void)
{
	struct rs_event ev[256];
	uint64_t lost;
	int n;

	while ((n = rs_events_read(rs, &ev_cursor, ev, 256, sizeof(ev[0]), &lost)) > 0 || lost) {
		ev_lost += lost;
		for (int i = 0; i < n; i++) {
			if (ev[i].seq != ev_seq + 1 + lost)
				violation("event sequence has a silent gap", 0);
			if (ev[i].kind != (ev[i].seq & 1 ? RS_EVENT_RESUME : RS_EVENT_STOP))
				violation("event kind does not match its edge", 0);
			ev_seq = ev[i].seq;
			lost = 0;
		}
		if (n < 256)
			break;
	}
}

static void *observer_main(void *arg)
{
	uint32_t last = rsu_edge(rs_word(rs));

	(void)arg;
	while (!atomic_load(&done)) {
		read_events();
		uint64_t w = rs_word(rs);
		uint32_t e = rsu_edge(w);

		check_word(w);
		if (e - last >= UINT32_C(1) << 31)
			violation("edge counter went backwards", w);
		last = e;
	}
	return NULL;
}

struct vcpu {
	rs_vcpu v;
	_Atomic bool kicked;
};

static void kick(rs_vcpu *v, void *opaque)
{
	struct vcpu *c = opaque;

	(void)v;
	atomic_store(&c->kicked, true);
}

static void *vcpu_main(void *arg)
{
	struct vcpu *c = arg;

	rs_vcpu_register(rs, &c->v, kick, c);
	while (rs_vcpu_enter(&c->v) == 0) {
		do {
			atomic_fetch_add(&in_guest, 1);
			atomic_fetch_add(&guest_slices, 1);
			for (volatile int i = 0; i < 100; i++)
				;
			atomic_fetch_sub(&in_guest, 1);
		} while (rs_may_run(rs));
	}
	rs_vcpu_unregister(&c->v);
	return NULL;
}

int main(int argc, char **argv)
{
	long ms = argc > 1 ? atol(argv[1]) : 1500;
	uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 12345;
	pthread_t m[NMGMT], obs, vt[NVCPU];
	struct vcpu vc[NVCPU];
	uint64_t seq;
	long total = 0;
	uint64_t w;

	printf("test_concurrency: %ld ms, seed %llu\n", ms, (unsigned long long)seed);
	run_seed = seed;
	rs = tu_create((struct rs_config){ .rekick_ns = 1 * MS, .event_capacity = 64 }, NULL);
	ev_cursor = rs_events_cursor(rs);
	memset(vc, 0, sizeof(vc));
	for (int i = 0; i < NVCPU; i++)
		pthread_create(&vt[i], NULL, vcpu_main, &vc[i]);
	pthread_create(&obs, NULL, observer_main, NULL);
	for (int i = 0; i < NMGMT; i++)
		pthread_create(&m[i], NULL, mgmt_main, (void *)(uintptr_t)i);
	tu_sleep_ms(ms);
	atomic_store(&done, true);
	for (int i = 0; i < NMGMT; i++) {
		void *r;

		pthread_join(m[i], &r);
		total += (long)r;
	}
	pthread_join(obs, NULL);

	/* Quiesce: clear everything and let it settle. */
	CHECK_EQ(rs_reset(rs), 0);
	CHECK_EQ(rs_cont(rs), 0);
	CHECK_EQ(rs_wait(rs, 10000 * MS), 0);
	w = rs_word(rs);
	check_word(w);
	CHECK(!(w & RS_W_SETTLING_MASK));
	CHECK(!(w & RS_W_LOCKWAIT));
	CHECK(!(w & RS_W_LOCKS));
	CHECK(rs_may_run(rs));
	for (int i = 0; i < NVCPU; i++)
		rs_vcpu_request(&vc[i].v, RS_REQ_EXIT);
	CHECK_EQ(rs_stop(rs, 10000 * MS), 0);
	for (int i = 0; i < NVCPU; i++)
		pthread_join(vt[i], NULL);

	/* Events: every edge has one, the last numbers the word's edge. */
	read_events();
	seq = ev_seq;
	{
		struct rs_stats lst = { .size = sizeof(lst) };

		CHECK_EQ(rs_get_stats(rs, &lst), 0);
		CHECK_EQ(seq, lst.stop_edges + lst.start_edges);
	}
	printf("test_concurrency: %ld commands, %llu edges (%llu events lost by the reader), "
	       "%llu guest slices, %ld violations\n",
	       total, (unsigned long long)seq, (unsigned long long)ev_lost,
	       (unsigned long long)atomic_load(&guest_slices), atomic_load(&violations));
	CHECK_EQ(atomic_load(&violations), 0);
	CHECK(seq > 10);
	rs_destroy(rs);
	return tu_finish("test_concurrency");
}

/* SPDX-License-Identifier: MIT */
/*
 * Listeners, ordered events, introspection, and hot-plug storms during
 * stops.
 */
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

/* ---------------------------------------------------------------------------
 * A call log shared by the listeners of one test.
 */
struct logent {
	int id;
	bool running;
	uint32_t edge;
	bool st_running;
	uint32_t st_size;	/* the library's: it allocated the state */
};

static struct logent logv[100000];
static _Atomic int nlog;
static _Atomic int in_listener;   /* overlap detector */
static _Atomic int overlaps;

static void log_fn(void *opaque, bool running, const struct rs_state *st)
{
	int i;

	if (atomic_fetch_add(&in_listener, 1))
		atomic_fetch_add(&overlaps, 1);
	i = atomic_fetch_add(&nlog, 1);
	if (i < (int)(sizeof(logv) / sizeof(logv[0])))
		logv[i] = (struct logent){ (int)(intptr_t)opaque, running, st->edge, st->running,
					   st->size };
	atomic_fetch_sub(&in_listener, 1);
}

static void log_reset(void)
{
	atomic_store(&nlog, 0);
	atomic_store(&overlaps, 0);
}

static void test_order(void)
{
	rs_runstate *rs;
	rs_listener *l[4];
	int prio[4] = { 10, -5, 3, 10 };
	int up[4] = { 1, 2, 0, 3 };     /* ascending priority, ties by age */

	CHECK_EQ(rs_create(NULL, &rs), 0);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(rs_listener_add(rs, log_fn, (void *)(intptr_t)i, prio[i], &l[i]), 0);
	log_reset();
	CHECK_EQ(rs_start(rs, 0), 0);
	CHECK_EQ(rs_wait(rs, SEC), 0);
	CHECK_EQ(atomic_load(&nlog), 4);
	for (int i = 0; i < 4; i++) {
		CHECK_EQ(logv[i].id, up[i]);
		CHECK(logv[i].running);
		CHECK(logv[i].st_running);
		CHECK_EQ(logv[i].edge, 1);
		CHECK_EQ(logv[i].st_size, sizeof(struct rs_state));
	}
	log_reset();
	CHECK_EQ(rs_stop(rs, RS_FOREVER), 0);
	CHECK_EQ(atomic_load(&nlog), 4);
	for (int i = 0; i < 4; i++) {
		CHECK_EQ(logv[i].id, up[3 - i]);
		CHECK(!logv[i].running);
		CHECK(!logv[i].st_running);
		CHECK_EQ(logv[i].edge, 2);
	}
	/* No edge, no run. */
	log_reset();
	CHECK_EQ(rs_lock(rs, RS_LOCK_DEBUG, RS_FOREVER), 0);
	CHECK_EQ(rs_io_error(rs, RS_FOREVER), 0);
	CHECK_EQ(rs_unlock(rs, RS_LOCK_DEBUG), 0);
	CHECK_EQ(atomic_load(&nlog), 0);
	/* Removed: not called again. */
	CHECK_EQ(rs_listener_remove(rs, l[1]), 0);
	CHECK_EQ(rs_listener_remove(rs, l[1]), RS_EINVAL);
	CHECK_EQ(rs_cont(rs), 0);
	CHECK_EQ(rs_wait(rs, SEC), 0);
	CHECK_EQ(atomic_load(&nlog), 3);
	for (int i = 0; i < 3; i++)
		CHECK(logv[i].id != 1);
	CHECK_EQ(rs_listener_add(NULL, log_fn, NULL, 0, &l[1]), RS_EINVAL);
	CHECK_EQ(rs_listener_add(rs, NULL, NULL, 0, &l[1]), RS_EINVAL);
	CHECK_EQ(rs_listener_add(rs, log_fn, NULL, 0, NULL), RS_EINVAL);
	rs_destroy(rs);
}

/* ---------------------------------------------------------------------------
 * Listeners see vCPUs out (stop) and not yet running (start), with
 * testutil's simulated vCPUs.
 */
static struct tu_vcpu vcs[3];
static _Atomic int listener_saw_guest;
static uint64_t slices_at_stop[3];

static void guard_fn(void *opaque, bool running, const struct rs_state *st)
{
	(void)opaque;
	(void)st;
	for (int i = 0; i < 3; i++) {
		if (atomic_load(&vcs[i].in_guest))
			atomic_fetch_add(&listener_saw_guest, 1);
		if (running) {
			/* Before any vCPU runs: nobody moved since the stop. */
			if (atomic_load(&vcs[i].slices) != slices_at_stop[i])
				atomic_fetch_add(&listener_saw_guest, 1);
		} else {
			slices_at_stop[i] = atomic_load(&vcs[i].slices);
		}
	}
	/* The query API is fine from here. */
	(void)rs_word(vcs[0].rs);
	(void)rs_may_run(vcs[0].rs);
}

static void test_listener_sees_quiet_vcpus(void)
{
	rs_runstate *rs;
	rs_listener *l;

	CHECK_EQ(rs_create(NULL, &rs), 0);
	for (int i = 0; i < 3; i++)
		tu_vcpu_spawn(&vcs[i], rs);
	CHECK_EQ(rs_listener_add(rs, guard_fn, NULL, 0, &l), 0);
	for (int round = 0; round < 200; round++) {
		CHECK_EQ(rs_start(rs, 0), 0);
		if (round % 50 == 0)
			tu_sleep_ms(2);
		CHECK_EQ(rs_stop(rs, round % 2 ? RS_ASYNC : RS_FOREVER), 0);
		CHECK_EQ(rs_wait(rs, 5 * SEC), 0);
	}
	CHECK_EQ(atomic_load(&listener_saw_guest), 0);
	for (int i = 0; i < 3; i++)
		tu_vcpu_reap(&vcs[i]);
	rs_destroy(rs);
}

/* ---------------------------------------------------------------------------
 * Exactly once, in order, never overlapping, under racing stop/start.
 */
static rs_runstate *race_rs;
static _Atomic bool race_done;

/* arg: the racer's number, its stream of a fixed seed. */
static void *racer(void *arg)
{
	struct rsu_rng r = rsu_rng_stream(0x7261636572ull, (uintptr_t)arg);

	for (int n = 0; n < 15000 && !atomic_load(&race_done); n++) {
		switch (rsu_rng_below(&r, 4)) {
		case 0: rs_stop(race_rs, RS_ASYNC); break;
		case 1: rs_stop(race_rs, 100 * MS); break;
		case 2: rs_start(race_rs, 0); break;
		default: rs_cont(race_rs); break;
		}
	}
	return NULL;
}

/*
 * The edges whose listeners must run, in order, from the events: every
 * STOP or RESUME, and every coalesced run (an RS_EVENT_LOST record, here
 * never a reader's loss: the ring holds them all) that changed running,
 * that is, one with an odd number of edges; by their edge counters.
 * Returns how many, or -1 if the ring could not hold them.
 */
static int expected_runs(rs_runstate *rs, uint32_t *want, int cap, uint64_t *coalesced)
{
	struct rs_event ev[64];
	uint64_t cursor = 1;
	int n, k = 0;

	*coalesced = 0;
	while ((n = rs_events_read(rs, &cursor, ev, 64, sizeof(ev[0]), NULL)) > 0) {
		for (int i = 0; i < n; i++) {
			if (k == cap)
				return -1;
			if (ev[i].kind != RS_EVENT_LOST) {
				want[k++] = rsu_edge(ev[i].word);
				continue;
			}
			*coalesced += ev[i].lost;
			if (ev[i].lost % 2)
				want[k++] = rsu_edge(ev[i].word);
		}
	}
	return k;
}

static void test_exactly_once(void)
{
	static uint32_t want[100000];
	struct rs_config cfg = { .size = sizeof(cfg), .event_capacity = 1u << 17 };
	uint64_t coalesced;
	rs_listener *l;
	pthread_t th[3];
	struct tu_vcpu v[2];
	struct rs_stats st = { .size = sizeof(st) };
	int n, k;

	CHECK_EQ(rs_create(&cfg, &race_rs), 0);
	for (int i = 0; i < 2; i++)
		tu_vcpu_spawn(&v[i], race_rs);
	CHECK_EQ(rs_listener_add(race_rs, log_fn, (void *)7, 0, &l), 0);
	log_reset();
	atomic_store(&race_done, false);
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, racer, (void *)(uintptr_t)i);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ(rs_cont(race_rs), 0);
	CHECK_EQ(rs_wait(race_rs, 5 * SEC), 0);
	n = atomic_load(&nlog);
	CHECK(n > 10);
	CHECK(n < (int)(sizeof(logv) / sizeof(logv[0])));
	CHECK_EQ(atomic_load(&overlaps), 0);
	/* The k-th run is for the k-th edge that settled with an event, or
	 * for the last edge of a coalesced run that changed running; the
	 * running flag is the edge's parity. */
	k = expected_runs(race_rs, want, (int)(sizeof(want) / sizeof(want[0])), &coalesced);
	CHECK_EQ(k, n);
	for (int i = 0; i < n && i < k; i++) {
		if (logv[i].edge != want[i] || logv[i].running != (want[i] % 2 == 1)) {
			CHECK(!"listener runs out of order or not exactly once");
			fprintf(stderr, "  run %d: edge %u (want %u) running %d\n", i, logv[i].edge,
				want[i], logv[i].running);
			break;
		}
	}
	CHECK_EQ(rs_get_stats(race_rs, &st), 0);
	CHECK_EQ(st.listener_runs, (uint64_t)n);
	CHECK(st.coalesced <= coalesced);
	if (coalesced)
		printf("test_exactly_once: %llu edges coalesced\n", (unsigned long long)coalesced);
	for (int i = 0; i < 2; i++)
		tu_vcpu_reap(&v[i]);
	rs_destroy(race_rs);
}

/* ---------------------------------------------------------------------------
 * Listener changes from inside listeners take effect for the next edge; a
 * start listener that stops the VM again: STOP, RESUME, STOP.
 */
static rs_runstate *self_rs;
static rs_listener *added, *selfl;
static _Atomic int b_calls, self_calls;
static _Atomic int stop_again;

static void b_fn(void *opaque, bool running, const struct rs_state *st)
{
	(void)opaque;
	(void)running;
	(void)st;
	atomic_fetch_add(&b_calls, 1);
}

static void a_fn(void *opaque, bool running, const struct rs_state *st)
{
	(void)opaque;
	(void)st;
	if (running && !added)
		CHECK_EQ(rs_listener_add(self_rs, b_fn, NULL, 100, &added), 0);
	if (running && atomic_exchange(&stop_again, 0))
		CHECK_EQ(rs_stop(self_rs, RS_ASYNC), 0);   /* asynchronous: allowed */
}

static void self_fn(void *opaque, bool running, const struct rs_state *st)
{
	(void)opaque;
	(void)running;
	(void)st;
	atomic_fetch_add(&self_calls, 1);
	CHECK_EQ(rs_listener_remove(self_rs, selfl), 0);
}

static void test_changes_inside(void)
{
	rs_listener *a;
	struct rs_event ev[8];
	uint64_t cursor, lost;
	int n;

	CHECK_EQ(rs_create(NULL, &self_rs), 0);
	CHECK_EQ(rs_listener_add(self_rs, a_fn, NULL, 0, &a), 0);
	CHECK_EQ(rs_listener_add(self_rs, self_fn, NULL, 1, &selfl), 0);
	CHECK_EQ(rs_start(self_rs, 0), 0);
	CHECK_EQ(rs_wait(self_rs, SEC), 0);
	CHECK(added != NULL);
	CHECK_EQ(atomic_load(&b_calls), 0);       /* added during the edge */
	CHECK_EQ(atomic_load(&self_calls), 1);
	CHECK_EQ(rs_stop(self_rs, RS_FOREVER), 0);
	CHECK_EQ(atomic_load(&b_calls), 1);       /* next edge: called */
	CHECK_EQ(atomic_load(&self_calls), 1);    /* removed itself */

	cursor = rs_events_cursor(self_rs);
	atomic_store(&stop_again, 1);
	CHECK_EQ(rs_start(self_rs, 0), 0);
	CHECK_EQ(rs_wait(self_rs, SEC), 0);
	CHECK(!rs_may_run(self_rs));
	n = rs_events_read(self_rs, &cursor, ev, 8, sizeof(ev[0]), &lost);
	CHECK_EQ(n, 2);
	CHECK_EQ(ev[0].kind, RS_EVENT_RESUME);
	CHECK_EQ(ev[1].kind, RS_EVENT_STOP);
	CHECK(ev[0].state.running);
	CHECK(!ev[1].state.running);
	CHECK_EQ(ev[1].state.pause, RS_PAUSE_PAUSED);
	CHECK(ev[0].time_ns <= ev[1].time_ns);
	rs_destroy(self_rs);
}

/* Every call that could wait is refused from a listener with RS_EDEADLK, in
 * every build, and changes nothing; the asynchronous forms work. */
static int from_listener[8];

static void bad_fn(void *opaque, bool running, const struct rs_state *st)
{
	rs_listener *l2 = NULL;

	(void)opaque;
	(void)st;
	if (!running)
		return;
	from_listener[0] = rs_stop(self_rs, RS_FOREVER);
	from_listener[1] = rs_pause(self_rs, RS_PAUSE_PANICKED, SEC);
	from_listener[2] = rs_lock(self_rs, RS_LOCK_DEBUG, SEC);
	from_listener[3] = rs_wait(self_rs, SEC);
	from_listener[4] = rs_events_wait(self_rs, UINT64_MAX, SEC);
	from_listener[5] = rs_unlock_pause(self_rs, RS_LOCK_SAVEVM, RS_PAUSE_PAUSED, SEC);
	from_listener[6] = rs_io_error(self_rs, RS_FOREVER);
	/* Asynchronous: allowed (and it makes the next edge). */
	from_listener[7] = rs_listener_add(self_rs, bad_fn, NULL, 1, &l2) ? -1 :
			   rs_listener_remove(self_rs, l2);
}

static void test_sync_from_listener(void)
{
	rs_listener *l;
	uint64_t w;

	CHECK_EQ(rs_create(NULL, &self_rs), 0);
	CHECK_EQ(rs_listener_add(self_rs, bad_fn, NULL, 0, &l), 0);
	CHECK_EQ(rs_start(self_rs, 0), 0);
	CHECK_EQ(rs_wait(self_rs, SEC), 0);
	for (int i = 0; i < 7; i++)
		CHECK_EQ(from_listener[i], RS_EDEADLK);
	CHECK_EQ(from_listener[7], 0);
	CHECK(!strcmp(rs_strerror(RS_EDEADLK), "deadlock"));
	/* Nothing changed: the VM runs, no lock, no io-error. */
	w = rs_word(self_rs);
	CHECK(rs_may_run(self_rs));
	CHECK(!(w & (RS_W_LOCKS | RS_W_IO_ERROR | RS_W_PAUSE_MASK)));
	CHECK_EQ(rs_listener_remove(self_rs, l), 0);
	rs_destroy(self_rs);
}

/* ---------------------------------------------------------------------------
 * Events: blocking wait, eventfd, explicit loss records, the dump.
 */
static void *stopper_later(void *arg)
{
	tu_sleep_ms(30);
	rs_stop(arg, RS_FOREVER);
	return NULL;
}

static void test_events_api(void)
{
	struct rs_config cfg = { .size = sizeof(cfg), .event_capacity = 4 };
	rs_runstate *rs;
	struct rs_event ev[8];
	uint64_t cursor, val;
	struct pollfd pfd;
	pthread_t t;
	char buf[4096];
	int fd, n;

	CHECK_EQ(rs_create(&cfg, &rs), 0);
	cursor = rs_events_cursor(rs);
	CHECK_EQ(rs_events_wait(rs, cursor, 10 * MS), RS_ETIMEDOUT);
	fd = rs_events_fd(rs);
	CHECK(fd >= 0);
	CHECK_EQ(rs_events_fd(rs), fd);
	pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
	CHECK_EQ(poll(&pfd, 1, 0), 0);            /* nothing yet */
	CHECK_EQ(rs_start(rs, 0), 0);
	CHECK_EQ(rs_events_wait(rs, cursor, SEC), 0);
	CHECK_EQ(poll(&pfd, 1, 1000), 1);
	CHECK_EQ(read(fd, &val, sizeof(val)), (long)sizeof(val));
	CHECK_EQ(poll(&pfd, 1, 0), 0);
	n = rs_events_read(rs, &cursor, ev, 8, sizeof(ev[0]), NULL);
	CHECK_EQ(n, 1);
	CHECK_EQ(ev[0].kind, RS_EVENT_RESUME);

	/* Blocking until another thread's stop. */
	pthread_create(&t, NULL, stopper_later, rs);
	CHECK_EQ(rs_events_wait(rs, cursor, 5 * SEC), 0);
	pthread_join(t, NULL);
	CHECK_EQ(rs_events_read(rs, &cursor, ev, 8, sizeof(ev[0]), NULL), 1);
	CHECK_EQ(ev[0].kind, RS_EVENT_STOP);

	/* Fall 6 behind a ring of 4: an explicit record, then the 4 kept. */
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(rs_start(rs, 0), 0);
		CHECK_EQ(rs_stop(rs, RS_FOREVER), 0);
	}
	CHECK_EQ(rs_start(rs, 0), 0);
	CHECK_EQ(rs_stop(rs, RS_FOREVER), 0);
	n = rs_events_read(rs, &cursor, ev, 8, sizeof(ev[0]), NULL);
	CHECK_EQ(n, 5);
	CHECK_EQ(ev[0].kind, RS_EVENT_LOST);
	CHECK_EQ(ev[0].lost, 4);
	CHECK_EQ(ev[0].seq, 3);
	CHECK_EQ(ev[1].seq, 7);
	CHECK_EQ(ev[1].kind, RS_EVENT_RESUME);
	CHECK_EQ(ev[4].seq, 10);
	CHECK_EQ(ev[4].kind, RS_EVENT_STOP);
	CHECK_EQ(ev[4].state.edge, 10);

	n = rs_dump(rs, buf, sizeof(buf));
	CHECK(n > 0 && n < (int)sizeof(buf));
	CHECK(strstr(buf, "stopped") != NULL);
	CHECK(strstr(buf, "events-lost 4") != NULL);
	CHECK_EQ(rs_dump(rs, NULL, 0), n);
	CHECK_EQ(rs_dump(rs, buf, 8), n);
	CHECK_EQ(strlen(buf), 7);
	rs_destroy(rs);
}

/* ---------------------------------------------------------------------------
 * Hot-plug storm during stops: every stop returns with every registered
 * vCPU out.
 */
static _Atomic bool storm_done;
static rs_runstate *storm_rs;
static _Atomic int storm_in_guest;

static void *plug_main(void *arg)
{
	(void)arg;
	while (!atomic_load(&storm_done)) {
		rs_vcpu v;
		int n = 0;

		memset(&v, 0, sizeof(v));
		/* No kick: its slices are short and never block. */
		if (rs_vcpu_register(storm_rs, &v, NULL, NULL))
			continue;
		while (n++ < 3 && rs_vcpu_enter(&v) == 0) {
			do {
				atomic_fetch_add(&storm_in_guest, 1);
				for (volatile int i = 0; i < 50; i++)
					;
				atomic_fetch_sub(&storm_in_guest, 1);
			} while (rs_may_run(storm_rs) && !atomic_load(&storm_done) && n < 3 &&
				 ++n);
			if (!rs_may_run(storm_rs))
				break;
		}
		rs_vcpu_unregister(&v);
	}
	return NULL;
}

static void test_hotplug_storm(void)
{
	pthread_t t[3];
	long bad = 0;

	CHECK_EQ(rs_create(NULL, &storm_rs), 0);
	atomic_store(&storm_done, false);
	for (int i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, plug_main, NULL);
	for (int round = 0; round < 2000; round++) {
		CHECK_EQ(rs_start(storm_rs, 0), 0);
		CHECK_EQ(rs_stop(storm_rs, 5 * SEC), 0);
		if (atomic_load(&storm_in_guest))
			bad++;
	}
	CHECK_EQ(bad, 0);
	atomic_store(&storm_done, true);
	CHECK_EQ(rs_start(storm_rs, 0), 0);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	rs_destroy(storm_rs);
}

int main(void)
{
	RUN(test_order);
	RUN(test_listener_sees_quiet_vcpus);
	RUN(test_exactly_once);
	RUN(test_changes_inside);
	RUN(test_sync_from_listener);
	RUN(test_events_api);
	RUN(test_hotplug_storm);
	return tu_finish("test_listeners");
}

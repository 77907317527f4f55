/* SPDX-License-Identifier: MIT */
/*
 * Deterministic tests of the public API: bad input leaves the state alone
 * (the size-carrying structures included), events, lock hand-over, and the
 * vCPU protocol driven through a counting, fault-injecting ops table.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "testutil.h"

/* ---------------------------------------------------------------------------
 * A counting ops table.  fault_every > 0 makes every Nth futex wait return
 * at once, alternating a spurious 0 and -EINTR, without sleeping.
 */
static _Atomic long n_wait, n_wake, n_wake_calls_with_waiters;
static _Atomic int fault_every;
static _Atomic long n_faults;

static int t_futex_wait(void *ctx, uint32_t *addr, uint32_t val, int64_t timeout_ns)
{
	long n = atomic_fetch_add(&n_wait, 1) + 1;
	int every = atomic_load(&fault_every);

	(void)ctx;
	if (every > 0 && n % every == 0) {
		atomic_fetch_add(&n_faults, 1);
		return (n / every) % 2 ? -EINTR : 0;
	}
	return rsu_futex_wait(addr, val, timeout_ns);
}

/* Set by test_early_wake: the word at the first FUTEX_WAKE after it. */
static rs_runstate *_Atomic watch_rs;
static _Atomic uint64_t first_wake_word;
static _Atomic int first_wake_seen;

static int t_futex_wake(void *ctx, uint32_t *addr, int n)
{
	rs_runstate *w = atomic_load(&watch_rs);
	int r;

	(void)ctx;
	if (w && !atomic_exchange(&first_wake_seen, 1))
		atomic_store(&first_wake_word, rs_word(w));
	atomic_fetch_add(&n_wake, 1);
	r = rsu_futex_wake(addr, n);
	if (r > 0)
		atomic_fetch_add(&n_wake_calls_with_waiters, 1);
	return r;
}

static const struct rs_ops counting_ops = {
	.futex_wait = t_futex_wait,
	.futex_wake = t_futex_wake,
};

static rs_runstate *make(int64_t rekick_ns, unsigned events)
{
	return tu_create((struct rs_config){ .rekick_ns = rekick_ns, .event_capacity = events },
			 &counting_ops);
}

static void reset_counts(void)
{
	atomic_store(&n_wait, 0);
	atomic_store(&n_wake, 0);
	atomic_store(&n_wake_calls_with_waiters, 0);
	atomic_store(&n_faults, 0);
}

/* ---------------------------------------------------------------------------
 * Bad input: every invalid call fails and changes nothing.
 */
static void test_bad_input(void)
{
	rs_runstate *rs = make(0, 0);
	/* Valid but for the capacity, which is not a power of two. */
	struct rs_config bad = { .size = sizeof(bad), .event_capacity = 3 };
	rs_runstate *other = NULL;
	uint64_t cursor = 0, lost = 99;
	struct rs_event ev[4];
	rs_vcpu v;
	uint64_t w0;

	CHECK_EQ(rs_create(NULL, NULL), RS_EINVAL);
	CHECK_EQ(rs_create(&bad, &other), RS_EINVAL);
	CHECK(other == NULL);

	w0 = rs_word(rs);
	CHECK_EQ(rs_stop(NULL, RS_FOREVER), RS_EINVAL);
	CHECK_EQ(rs_start(NULL, 0), RS_EINVAL);
	CHECK_EQ(rs_start(rs, 0x4), RS_EINVAL);
	CHECK_EQ(rs_pause(rs, RS_PAUSE_NONE, RS_FOREVER), RS_EINVAL);
	CHECK_EQ(rs_pause(rs, (enum rs_pause)8, RS_FOREVER), RS_EINVAL);
	CHECK_EQ(rs_pause(rs, (enum rs_pause)-1, RS_FOREVER), RS_EINVAL);
	CHECK_EQ(rs_lock(rs, (enum rs_lock)4, RS_FOREVER), RS_EINVAL);
	CHECK_EQ(rs_lock(rs, (enum rs_lock)-1, RS_FOREVER), RS_EINVAL);
	CHECK_EQ(rs_trylock(NULL, RS_LOCK_DEBUG, RS_ASYNC), RS_EINVAL);
	CHECK_EQ(rs_unlock(rs, RS_LOCK_DEBUG), RS_ENOTHELD);
	CHECK_EQ(rs_unlock(rs, (enum rs_lock)9), RS_EINVAL);
	CHECK_EQ(rs_unlock_pause(rs, RS_LOCK_DEBUG, RS_PAUSE_NONE, RS_FOREVER), RS_EINVAL);
	CHECK_EQ(rs_unlock_pause(rs, RS_LOCK_DEBUG, RS_PAUSE_PAUSED, RS_FOREVER), RS_ENOTHELD);
	CHECK_EQ(rs_io_error(NULL, RS_ASYNC), RS_EINVAL);
	CHECK_EQ(rs_wait(NULL, 0), RS_EINVAL);
	CHECK_EQ(rs_events_read(rs, NULL, ev, 4, sizeof(ev[0]), &lost), RS_EINVAL);
	CHECK_EQ(rs_events_read(rs, &cursor, NULL, 4, sizeof(ev[0]), &lost), RS_EINVAL);
	CHECK_EQ(rs_transition(w0, RS_CMD_STOP, 0, 0, 64, NULL), RS_EINVAL);
	CHECK_EQ(rs_transition(w0, (enum rs_cmd)RS_CMD_COUNT, 0, 0, 64, &w0), RS_EINVAL);
	CHECK_EQ(rs_transition(w0, RS_CMD_STOP, 0, 0, 0, &w0), RS_EINVAL);
	CHECK_EQ(rs_transition(w0, RS_CMD_STOP, 0, 0, RS_W_BACKLOG_MAX + 1, &w0), RS_EINVAL);
	CHECK_EQ(rs_word(rs), w0);

	/* vCPU calls on a vCPU that is not registered. */
	memset(&v, 0, sizeof(v));
	CHECK_EQ(rs_vcpu_request(&v, RS_REQ_EXIT), RS_EINVAL);
	CHECK_EQ(rs_vcpu_enter(&v), RS_EINVAL);
	CHECK_EQ(rs_vcpu_quiesce(&v), RS_EINVAL);
	CHECK_EQ(rs_vcpu_unregister(&v), RS_EINVAL);
	CHECK_EQ(rs_vcpu_register(NULL, &v, NULL, NULL), RS_EINVAL);
	CHECK_EQ(rs_vcpu_register(rs, NULL, NULL, NULL), RS_EINVAL);
	/* Registering twice, and a second vCPU on the same thread. */
	CHECK_EQ(rs_vcpu_register(rs, &v, NULL, NULL), 0);
	CHECK_EQ(rs_vcpu_register(rs, &v, NULL, NULL), RS_EINVAL);
	{
		rs_vcpu v2;

		memset(&v2, 0, sizeof(v2));
		CHECK_EQ(rs_vcpu_register(rs, &v2, NULL, NULL), RS_EINVAL);
	}
	CHECK_EQ(rs_vcpu_request(&v, 0), RS_EINVAL);
	CHECK_EQ(rs_vcpu_request(&v, 0x10), RS_EINVAL);
	CHECK_EQ(rs_vcpu_unregister(&v), 0);
	CHECK_EQ(rs_vcpu_unregister(&v), RS_EINVAL);
	CHECK_EQ(rs_word(rs), w0);
	CHECK_EQ(rs_events_read(rs, &cursor, ev, 4, sizeof(ev[0]), &lost), 0);
	CHECK_EQ(lost, 0);
	rs_destroy(rs);
	rs_destroy(NULL);
}

/* ---------------------------------------------------------------------------
 * The structures that carry their size: the smallest size each call takes
 * (the 0.9 layout), what a size below it gives (RS_EINVAL, nothing
 * written), and what a newer caller's larger struct gets (zeros past the
 * library's fields; a config's extra bytes must be zero).  The old layouts
 * against a grown library are tests/abi's.
 */
#define CANARY 0xa5

/* Every byte of [p, p + n) is b. */
static bool all_bytes(const void *p, size_t n, unsigned char b)
{
	const unsigned char *c = p;

	for (size_t i = 0; i < n; i++)
		if (c[i] != b)
			return false;
	return true;
}

static void test_config_size(void)
{
	struct {
		struct rs_config cfg;
		unsigned char extra[8];
	} big;
	rs_runstate sentinel, *rs = &sentinel;
	struct rs_config cfg;

	/* Below the 0.9 layout: refused, *out untouched. */
	memset(&cfg, 0, sizeof(cfg));
	CHECK_EQ(rs_create(&cfg, &rs), RS_EINVAL);
	cfg.size = RS_CONFIG_SIZE_0_9 - 1;
	CHECK_EQ(rs_create(&cfg, &rs), RS_EINVAL);
	CHECK(rs == &sentinel);

	/* Exactly the 0.9 layout: every field is read, the last one too. */
	CHECK_EQ(sizeof(cfg), RS_CONFIG_SIZE_0_9);
	cfg.size = RS_CONFIG_SIZE_0_9;
	cfg.max_backlog = RS_W_BACKLOG_MAX + 1;
	CHECK_EQ(rs_create(&cfg, &rs), RS_EINVAL);
	CHECK(rs == &sentinel);
	cfg.max_backlog = 1;
	CHECK_EQ(rs_create(&cfg, &rs), 0);
	CHECK(rs != &sentinel);
	rs_destroy(rs);

	/* A newer caller's larger struct: zeros past ours are fine, anything
	 * else asks for what this library lacks. */
	memset(&big, 0, sizeof(big));
	big.cfg.size = sizeof(big);
	big.cfg.event_capacity = 4;
	rs = &sentinel;
	CHECK_EQ(rs_create(&big.cfg, &rs), 0);
	CHECK(rs != &sentinel);
	rs_destroy(rs);
	/* Its first extra byte, then its last. */
	for (size_t i = 0; i < 2; i++) {
		size_t at = i ? sizeof(big.extra) - 1 : 0;

		big.extra[at] = 1;
		rs = &sentinel;
		CHECK_EQ(rs_create(&big.cfg, &rs), RS_EINVAL);
		CHECK(rs == &sentinel);
		big.extra[at] = 0;
	}
	/* The fields before the extra bytes are still read. */
	big.cfg.event_capacity = 3;
	CHECK_EQ(rs_create(&big.cfg, &rs), RS_EINVAL);
	CHECK(rs == &sentinel);
}

static void test_stats_and_state_size(void)
{
	rs_runstate *rs = make(0, 0);
	struct {
		struct rs_stats st;
		unsigned char extra[16];
	} big;
	struct {
		struct rs_state st;
		unsigned char extra[12];
	} bigst;
	/* None, and one byte short of the 0.9 layout. */
	const uint32_t short_stats[] = { 0, RS_STATS_SIZE_0_9 - 1 };
	const uint32_t short_state[] = { 0, RS_STATE_SIZE_0_9 - 1 };
	struct rs_stats st;
	struct rs_state ds;

	CHECK_EQ(rs_start(rs, 0), 0);
	CHECK_EQ(rs_stop(rs, RS_FOREVER), 0);

	/* rs_get_stats(): below the 0.9 layout, refused and nothing written. */
	CHECK_EQ(sizeof(st), RS_STATS_SIZE_0_9);
	for (int i = 0; i < 2; i++) {
		memset(&st, CANARY, sizeof(st));
		st.size = short_stats[i];
		CHECK_EQ(rs_get_stats(rs, &st), RS_EINVAL);
		CHECK_EQ(st.size, short_stats[i]);
		CHECK(all_bytes((char *)&st + sizeof(st.size), sizeof(st) - sizeof(st.size),
				CANARY));
	}
	CHECK_EQ(rs_get_stats(rs, NULL), RS_EINVAL);
	st.size = sizeof(st);
	CHECK_EQ(rs_get_stats(NULL, &st), RS_EINVAL);
	CHECK_EQ(rs_get_stats(rs, &st), 0);
	CHECK_EQ(st.start_edges, 1);
	CHECK_EQ(st.stop_edges, 1);
	/* Larger: the same counters, zeros past them, the caller's size kept. */
	memset(&big, CANARY, sizeof(big));
	big.st.size = sizeof(big);
	CHECK_EQ(rs_get_stats(rs, &big.st), 0);
	CHECK_EQ(big.st.size, sizeof(big));
	CHECK(memcmp((char *)&big.st + sizeof(st.size), (char *)&st + sizeof(st.size),
		     sizeof(st) - sizeof(st.size)) == 0);
	CHECK(all_bytes(big.extra, sizeof(big.extra), 0));

	/* rs_decode(): the same rules. */
	CHECK_EQ(rs_decode(rs_word(rs), NULL), RS_EINVAL);
	for (int i = 0; i < 2; i++) {
		memset(&ds, CANARY, sizeof(ds));
		ds.size = short_state[i];
		CHECK_EQ(rs_decode(rs_word(rs), &ds), RS_EINVAL);
		CHECK_EQ(ds.size, short_state[i]);
		CHECK(all_bytes((char *)&ds + sizeof(ds.size), sizeof(ds) - sizeof(ds.size),
				CANARY));
	}
	ds = tu_decode(rs_word(rs));
	CHECK_EQ(ds.size, sizeof(ds));
	CHECK_EQ(ds.edge, 2);
	CHECK_EQ(ds.pause, RS_PAUSE_PAUSED);
	memset(&bigst, CANARY, sizeof(bigst));
	bigst.st.size = sizeof(bigst);
	CHECK_EQ(rs_decode(rs_word(rs), &bigst.st), 0);
	CHECK_EQ(bigst.st.size, sizeof(bigst));
	CHECK(memcmp((char *)&bigst.st + sizeof(ds.size), (char *)&ds + sizeof(ds.size),
		     sizeof(ds) - sizeof(ds.size)) == 0);
	CHECK(all_bytes(bigst.extra, sizeof(bigst.extra), 0));
	rs_destroy(rs);
}

/* rs_events_read()'s event_size: below the 0.9 record, refused; at it, the
 * records as compiled; larger, the same records at that stride with zeros
 * past each. */
static void test_event_size(void)
{
	rs_runstate *rs = make(0, 0);
	enum { STRIDE = 2 * RS_EVENT_SIZE_0_9 };
	unsigned char wide[3 * STRIDE];
	struct rs_event ev[3];
	uint64_t c0, c1, c2, lost = 99;

	c0 = rs_events_cursor(rs);
	CHECK_EQ(rs_start(rs, 0), 0);
	CHECK_EQ(rs_stop(rs, RS_FOREVER), 0);

	c1 = c0;
	memset(ev, CANARY, sizeof(ev));
	CHECK_EQ(rs_events_read(rs, &c1, ev, 3, RS_EVENT_SIZE_0_9 - 1, &lost), RS_EINVAL);
	CHECK_EQ(rs_events_read(rs, &c1, ev, 3, 0, &lost), RS_EINVAL);
	CHECK_EQ(c1, c0);
	CHECK(all_bytes(ev, sizeof(ev), CANARY));

	CHECK_EQ(sizeof(ev[0]), RS_EVENT_SIZE_0_9);
	CHECK_EQ(rs_events_read(rs, &c1, ev, 3, RS_EVENT_SIZE_0_9, &lost), 2);
	CHECK_EQ(lost, 0);
	CHECK_EQ(ev[0].kind, RS_EVENT_RESUME);
	CHECK_EQ(ev[1].kind, RS_EVENT_STOP);
	CHECK(all_bytes(&ev[2], sizeof(ev[2]), CANARY));

	c2 = c0;
	memset(wide, CANARY, sizeof(wide));
	CHECK_EQ(rs_events_read(rs, &c2, (struct rs_event *)wide, 3, STRIDE, &lost), 2);
	CHECK_EQ(c2, c1);
	for (int i = 0; i < 2; i++) {
		/* The same record, byte for byte (the library zeroes its own
		 * padding), then zeros to the stride. */
		CHECK(memcmp(wide + i * STRIDE, &ev[i], sizeof(ev[i])) == 0);
		CHECK(all_bytes(wide + i * STRIDE + sizeof(ev[i]), STRIDE - sizeof(ev[i]), 0));
	}
	CHECK(all_bytes(wide + 2 * STRIDE, STRIDE, CANARY));
	rs_destroy(rs);
}

static void test_version(void)
{
	CHECK_EQ(rs_version(), (RS_VERSION_MAJOR << 16) | (RS_VERSION_MINOR << 8) |
			       RS_VERSION_PATCH);
	CHECK_EQ(rs_version(), 0x000a00);
}

/* ---------------------------------------------------------------------------
 * Initial state and events.
 */
static void test_initial_and_events(void)
{
	rs_runstate *rs = make(0, 4);
	struct rs_state st;
	struct rs_event ev[16];
	uint64_t cursor = rs_events_cursor(rs), lost;
	int n;

	st = tu_decode(rs_word(rs));
	CHECK(!st.running);
	CHECK_EQ(st.pause, RS_PAUSE_PRELAUNCH);
	CHECK_EQ(st.edge, 0);
	CHECK_EQ(cursor, 1);
	CHECK_EQ(rs_events_read(rs, &cursor, ev, 16, sizeof(ev[0]), &lost), 0);

	/* Changes that keep the VM stopped produce nothing. */
	CHECK_EQ(rs_lock(rs, RS_LOCK_SAVEVM, RS_FOREVER), 0);
	CHECK_EQ(rs_start(rs, 0), 0);
	CHECK_EQ(rs_io_error(rs, RS_FOREVER), 0);
	CHECK_EQ(rs_retry(rs), 0);
	CHECK_EQ(rs_events_read(rs, &cursor, ev, 16, sizeof(ev[0]), &lost), 0);
	/* The last lock released: RESUME, numbered 1. */
	CHECK_EQ(rs_unlock(rs, RS_LOCK_SAVEVM), 0);
	CHECK(rs_may_run(rs));
	CHECK(rs_may_run_func(rs));
	n = rs_events_read(rs, &cursor, ev, 16, sizeof(ev[0]), &lost);
	CHECK_EQ(n, 1);
	CHECK_EQ(ev[0].seq, 1);
	CHECK_EQ(ev[0].kind, RS_EVENT_RESUME);
	CHECK(ev[0].time_ns > 0);
	/* The decoded state carries the library's size, and the word's. */
	CHECK_EQ(ev[0].state.size, sizeof(ev[0].state));
	CHECK(ev[0].state.running);
	CHECK_EQ(ev[0].state.edge, 1);

	/* 10 more edges into a ring of 4: the reader is told 6 were lost. */
	for (int i = 0; i < 5; i++) {
		CHECK_EQ(rs_stop(rs, RS_FOREVER), 0);
		CHECK_EQ(rs_start(rs, 0), 0);
	}
	n = rs_events_read(rs, &cursor, ev, 16, sizeof(ev[0]), &lost);
	CHECK_EQ(lost, 6);
	CHECK_EQ(n, 4);
	CHECK_EQ(ev[0].seq, 8);
	CHECK_EQ(ev[0].kind, RS_EVENT_STOP);
	CHECK_EQ(ev[3].seq, 11);
	CHECK_EQ(ev[3].kind, RS_EVENT_RESUME);
	CHECK_EQ(cursor, 12);
	CHECK_EQ(rs_events_cursor(rs), 12);
	/* Reading in small pieces keeps the order. */
	CHECK_EQ(rs_stop(rs, RS_FOREVER), 0);
	CHECK_EQ(rs_start(rs, 0), 0);
	CHECK_EQ(rs_events_read(rs, &cursor, ev, 1, sizeof(ev[0]), &lost), 1);
	CHECK_EQ(ev[0].kind, RS_EVENT_STOP);
	CHECK_EQ(rs_events_read(rs, &cursor, ev, 1, sizeof(ev[0]), &lost), 1);
	CHECK_EQ(ev[0].kind, RS_EVENT_RESUME);
	CHECK_EQ(ev[0].seq, 13);
	rs_destroy(rs);
}

/* ---------------------------------------------------------------------------
 * Lock hand-over: the bit passes to the waiter, the VM never runs, no
 * event; a timed lock gives up with busy and changes nothing.
 */
struct locker {
	rs_runstate *rs;
	enum rs_lock r;
	int64_t timeout;
	_Atomic int result;
	_Atomic bool done;
};

static void *locker_main(void *arg)
{
	struct locker *l = arg;

	atomic_store(&l->result, rs_lock(l->rs, l->r, l->timeout));
	atomic_store(&l->done, true);
	return NULL;
}

static void test_lock_handover(void)
{
	rs_runstate *rs = make(0, 0);
	struct locker l = { .rs = rs, .r = RS_LOCK_DEBUG, .timeout = RS_FOREVER };
	uint64_t cursor, lost;
	struct rs_event ev[4];
	pthread_t t;
	uint64_t w;

	CHECK_EQ(rs_start(rs, 0), 0);
	cursor = rs_events_cursor(rs);
	CHECK_EQ(rs_trylock(rs, RS_LOCK_DEBUG, RS_FOREVER), 0);
	CHECK_EQ(rs_trylock(rs, RS_LOCK_DEBUG, RS_FOREVER), RS_EBUSY);
	w = rs_word(rs);
	/* A timed lock on a held bit gives up with busy, nothing changed. */
	CHECK_EQ(rs_lock(rs, RS_LOCK_DEBUG, 20 * MS), RS_EBUSY);
	CHECK_EQ(rs_word(rs), w);
	CHECK_EQ(rs_lock(rs, RS_LOCK_DEBUG, RS_ASYNC), RS_EBUSY);

	pthread_create(&t, NULL, locker_main, &l);
	/* Wait until the waiter announced itself in the word. */
	for (int i = 0; i < 2000 && !(rs_word(rs) & RS_W_LOCKWAIT); i++)
		tu_sleep_ms(1);
	CHECK(rs_word(rs) & RS_W_LOCKWAIT);
	CHECK(!atomic_load(&l.done));
	CHECK_EQ(rs_unlock(rs, RS_LOCK_DEBUG), 0);
	pthread_join(t, NULL);
	CHECK_EQ(atomic_load(&l.result), 0);
	w = rs_word(rs);
	CHECK(w & RS_W_LOCK(RS_LOCK_DEBUG));
	CHECK(!(w & RS_W_LOCKWAIT));
	CHECK_EQ(rsu_edge(w), 2);   /* one RESUME, one STOP: no more */
	CHECK_EQ(rs_events_read(rs, &cursor, ev, 4, sizeof(ev[0]), &lost), 1);
	CHECK_EQ(ev[0].kind, RS_EVENT_STOP);

	/* The new holder releases; the VM runs. */
	CHECK_EQ(rs_unlock(rs, RS_LOCK_DEBUG), 0);
	CHECK(rs_may_run(rs));

	/* Hand-over with a pause reason: the waiter gets the bit and the
	 * pause reason is applied in the same step. */
	CHECK_EQ(rs_trylock(rs, RS_LOCK_RESTORE, RS_FOREVER), 0);
	l.r = RS_LOCK_RESTORE;
	atomic_store(&l.done, false);
	pthread_create(&t, NULL, locker_main, &l);
	for (int i = 0; i < 2000 && !(rs_word(rs) & RS_W_LOCKWAIT); i++)
		tu_sleep_ms(1);
	CHECK_EQ(rs_unlock_pause(rs, RS_LOCK_RESTORE, RS_PAUSE_PAUSED, RS_FOREVER), 0);
	pthread_join(t, NULL);
	CHECK_EQ(atomic_load(&l.result), 0);
	w = rs_word(rs);
	CHECK(w & RS_W_LOCK(RS_LOCK_RESTORE));
	CHECK_EQ(rsu_pause(w), RS_PAUSE_PAUSED);
	CHECK_EQ(rs_unlock(rs, RS_LOCK_RESTORE), 0);
	CHECK(!rs_may_run(rs));   /* paused stays */
	rs_destroy(rs);
}

/* ---------------------------------------------------------------------------
 * The vCPU protocol, with the simulated vCPUs of testutil.
 */
/* A synchronous stop returns with every vCPU out; nothing runs until the
 * start; a start wakes parked vCPUs. */
static void test_stop_waits(void)
{
	rs_runstate *rs = make(0, 0);
	struct tu_vcpu t[3];
	uint64_t before[3];

	for (int i = 0; i < 3; i++)
		tu_vcpu_spawn(&t[i], rs);
	atomic_store(&t[1].blocking, true);
	CHECK_EQ(rs_start(rs, 0), 0);
	for (int i = 0; i < 3; i++)
		WAIT_FOR(atomic_load(&t[i].slices) > 0 || atomic_load(&t[i].in_guest));
	for (int round = 0; round < 50; round++) {
		CHECK_EQ(rs_stop(rs, RS_FOREVER), 0);
		for (int i = 0; i < 3; i++) {
			CHECK_EQ(atomic_load(&t[i].in_guest), 0);
			before[i] = atomic_load(&t[i].slices);
		}
		if (round % 10 == 0) {
			unsigned reg, out;

			tu_sleep_ms(5);
			rs_vcpu_count(rs, &reg, &out);
			CHECK_EQ(reg, 3);
			CHECK_EQ(out, 3);
		}
		for (int i = 0; i < 3; i++)
			CHECK_EQ(atomic_load(&t[i].slices), before[i]);
		CHECK_EQ(rs_start(rs, 0), 0);
	}
	/* After parking (long enough to sleep), a start wakes everyone. */
	CHECK_EQ(rs_stop(rs, RS_FOREVER), 0);
	tu_sleep_ms(20);
	for (int i = 0; i < 3; i++)
		before[i] = atomic_load(&t[i].slices);
	CHECK_EQ(rs_start(rs, 0), 0);
	for (int i = 0; i < 3; i++)
		WAIT_FOR(atomic_load(&t[i].slices) > before[i] || atomic_load(&t[i].in_guest));
	for (int i = 0; i < 3; i++)
		tu_vcpu_reap(&t[i]);
	rs_destroy(rs);
}

/* System calls: a start with nobody parked makes none; a change that keeps
 * the VM stopped wakes no parked vCPU; a start wakes each parked one once. */
static void test_wake_counts(void)
{
	rs_runstate *rs = make(0, 0);
	struct tu_vcpu t[2];

	reset_counts();
	CHECK_EQ(rs_start(rs, 0), 0);
	CHECK_EQ(rs_stop(rs, RS_FOREVER), 0);
	CHECK_EQ(rs_start(rs, 0), 0);
	CHECK_EQ(atomic_load(&n_wake), 0);
	CHECK_EQ(atomic_load(&n_wait), 0);

	CHECK_EQ(rs_stop(rs, RS_FOREVER), 0);
	for (int i = 0; i < 2; i++)
		tu_vcpu_spawn(&t[i], rs);
	/* Both park (the word shows it). */
	WAIT_FOR(rs_word(rs) & RS_W_PARKED);
	tu_sleep_ms(20);
	reset_counts();
	CHECK_EQ(rs_lock(rs, RS_LOCK_SAVEVM, RS_FOREVER), 0);
	CHECK_EQ(rs_io_error(rs, RS_FOREVER), 0);
	CHECK_EQ(rs_pause(rs, RS_PAUSE_WATCHDOG, RS_FOREVER), 0);
	CHECK_EQ(rs_cont(rs), 0);              /* savevm still held */
	CHECK_EQ(atomic_load(&n_wake), 0);
	CHECK_EQ(rs_unlock(rs, RS_LOCK_SAVEVM), 0);
	for (int i = 0; i < 2; i++)
		WAIT_FOR(atomic_load(&t[i].slices) > 0 || atomic_load(&t[i].in_guest));
	CHECK_EQ(atomic_load(&n_wake), 2);
	CHECK(!(rs_word(rs) & RS_W_PARKED));
	for (int i = 0; i < 2; i++)
		tu_vcpu_reap(&t[i]);
	rs_destroy(rs);
}

/*
 * The early wake: a start with parked vCPUs, no listener, nothing unsettled
 * and fewer vCPUs than CPUs issues its first FUTEX_WAKE before settling
 * (RS_W_SETTLING still set), so the wake-up's latency overlaps the settling
 * work.  With a listener, or as many vCPUs as CPUs, it waits for settling
 * (the listener must run before any vCPU; oversubscribed, early-woken vCPUs
 * would mostly re-park).  Either way the vCPUs run only after settling, and
 * nobody is left asleep.
 */
#define EW_MAX 64
static _Atomic uint64_t listener_saw_slices;
static struct tu_vcpu *ew_vcpus;
static unsigned ew_n;

static uint64_t ew_slices(void)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < ew_n; i++)
		n += atomic_load(&ew_vcpus[i].slices);
	return n;
}

static void count_slices_listener(void *opaque, bool running, const struct rs_state *st)
{
	(void)opaque;
	(void)st;
	if (running)
		atomic_store(&listener_saw_slices, ew_slices() + 1);
}

/* Returns the vCPUs' slice count at the start call, plus one. */
static uint64_t early_wake_round(rs_runstate *rs, bool expect_early)
{
	uint64_t before[EW_MAX], sum = 0;

	CHECK_EQ(rs_stop(rs, RS_FOREVER), 0);
	WAIT_FOR(rs_word(rs) & RS_W_PARKED);
	tu_sleep_ms(20);
	for (unsigned i = 0; i < ew_n; i++)
		sum += before[i] = atomic_load(&ew_vcpus[i].slices);
	reset_counts();
	atomic_store(&first_wake_seen, 0);
	atomic_store(&watch_rs, rs);
	CHECK_EQ(rs_start(rs, 0), 0);
	for (unsigned i = 0; i < ew_n; i++)
		WAIT_FOR(atomic_load(&ew_vcpus[i].slices) > before[i]);
	atomic_store(&watch_rs, NULL);
	CHECK(atomic_load(&first_wake_seen));
	if (expect_early)
		CHECK(atomic_load(&first_wake_word) & RS_W_SETTLING_MASK);
	else
		CHECK(!(atomic_load(&first_wake_word) & RS_W_SETTLING_MASK));
	/* Every parked vCPU at least once; an early-woken vCPU that re-parked
	 * before settling finished costs one more. */
	CHECK(atomic_load(&n_wake) >= (long)ew_n);
	CHECK(!(rs_word(rs) & (RS_W_PARKED | RS_W_SETTLING_MASK)));
	return sum + 1;
}

static void early_wake_with(unsigned n, bool expect_early)
{
	rs_runstate *rs = make(0, 0);
	struct tu_vcpu t[EW_MAX];
	rs_listener *l;

	ew_vcpus = t;
	ew_n = n;
	CHECK_EQ(rs_start(rs, 0), 0);
	for (unsigned i = 0; i < n; i++)
		tu_vcpu_spawn(&t[i], rs);
	for (unsigned i = 0; i < n; i++)
		WAIT_FOR(atomic_load(&t[i].slices) > 0);
	for (int round = 0; round < 4; round++)
		early_wake_round(rs, expect_early);
	/* With a listener: no wake before the listener ran and settling
	 * cleared, and the listener saw no slice begin after the stop. */
	CHECK_EQ(rs_listener_add(rs, count_slices_listener, NULL, 0, &l), 0);
	for (int round = 0; round < 3; round++) {
		uint64_t at_start = early_wake_round(rs, false);

		CHECK_EQ(atomic_load(&listener_saw_slices), at_start);
	}
	CHECK_EQ(rs_listener_remove(rs, l), 0);
	early_wake_round(rs, expect_early);
	for (unsigned i = 0; i < n; i++)
		tu_vcpu_reap(&t[i]);
	rs_destroy(rs);
}

static void test_early_wake(void)
{
	/* The library counts the CPUs this process may use (its affinity
	 * mask), as taskset or a cpuset leaves them: so does rsu_ncpus(). */
	unsigned cpus = rsu_ncpus();

	/* One vCPU: early, if there is a CPU left for the starter. */
	early_wake_with(1, cpus > 1);
	/* As many vCPUs as CPUs: never early. */
	if (cpus <= EW_MAX)
		early_wake_with(cpus, false);
}

/* Registration during a stop: the new vCPU runs nothing until the start. */
static void test_register_while_stopped(void)
{
	rs_runstate *rs = make(0, 0);
	struct tu_vcpu t;
	unsigned reg, out;

	CHECK_EQ(rs_stop(rs, RS_FOREVER), 0);   /* prelaunch: already stopped */
	tu_vcpu_spawn(&t, rs);
	tu_sleep_ms(30);
	CHECK_EQ(atomic_load(&t.slices), 0);
	CHECK_EQ(atomic_load(&t.in_guest), 0);
	rs_vcpu_count(rs, &reg, &out);
	CHECK_EQ(reg, 1);
	CHECK_EQ(out, 1);
	CHECK_EQ(rs_start(rs, 0), 0);
	WAIT_FOR(atomic_load(&t.slices) > 0);
	tu_vcpu_reap(&t);
	rs_vcpu_count(rs, &reg, &out);
	CHECK_EQ(reg, 0);
	rs_destroy(rs);
}

/* A vCPU stuck in an exit: the timed stop keeps its change and times out;
 * the diagnosis names the vCPU; re-kicks arrive once per delay; when the
 * vCPU comes back the stop settles. */
struct diag {
	int active, unacked, bad_size;
};

static void diag_fn(const struct rs_vcpu_info *info, void *arg)
{
	struct diag *d = arg;

	d->active += info->active;
	d->unacked += info->unacked_ns > 0;
	/* The library fills it and says how much it filled. */
	d->bad_size += info->size != sizeof(*info);
}

static void test_timeout_and_rekick(void)
{
	rs_runstate *rs = make(2 * MS, 0);
	struct tu_vcpu t;
	struct diag d = { 0 };
	struct rs_state st;
	int kicks;

	tu_vcpu_spawn(&t, rs);
	CHECK_EQ(rs_start(rs, 0), 0);
	WAIT_FOR(atomic_load(&t.slices) > 0);
	atomic_store(&t.stuck, true);
	WAIT_FOR(atomic_load(&t.is_stuck));
	CHECK_EQ(rs_stop(rs, 50 * MS), RS_ETIMEDOUT);
	st = tu_decode(rs_word(rs));
	CHECK(!st.running);
	CHECK_EQ(st.pause, RS_PAUSE_PAUSED);
	CHECK_EQ(rs_vcpu_foreach(rs, diag_fn, &d), 1);
	CHECK_EQ(d.active, 1);
	CHECK_EQ(d.unacked, 1);
	CHECK_EQ(d.bad_size, 0);
	kicks = atomic_load(&t.kicks);
	/* 50 ms with a 2 ms re-kick delay: a first kick and re-kicks (at
	 * least one even on a loaded machine), not hundreds. */
	CHECK(kicks >= 2);
	CHECK(kicks <= 30);
	/* Nobody waits: no more re-kicks. */
	tu_sleep_ms(20);
	CHECK_EQ(atomic_load(&t.kicks), kicks);
	CHECK_EQ(rs_wait(rs, 10 * MS), RS_ETIMEDOUT);
	atomic_store(&t.stuck, false);
	CHECK_EQ(rs_wait(rs, 5 * SEC), 0);
	CHECK_EQ(atomic_load(&t.in_guest), 0);
	tu_vcpu_reap(&t);
	rs_destroy(rs);
}

/* Lost kicks: the first two kicks are dropped; re-kicks recover. */
static void test_lost_kicks(void)
{
	rs_runstate *rs = make(1 * MS, 0);
	struct tu_vcpu t;

	tu_vcpu_spawn(&t, rs);
	atomic_store(&t.blocking, true);
	CHECK_EQ(rs_start(rs, 0), 0);
	WAIT_FOR(atomic_load(&t.in_guest));
	atomic_store(&t.drop_kicks, 2);
	CHECK_EQ(rs_stop(rs, 5 * SEC), 0);
	CHECK_EQ(atomic_load(&t.in_guest), 0);
	CHECK(atomic_load(&t.kicks) >= 3);
	tu_vcpu_reap(&t);
	rs_destroy(rs);
}

/*
 * A waiter that comes after a kick was lost re-kicks at once: an
 * asynchronous stop's only kick is dropped with nobody waiting; once that
 * kick is older than the re-kick delay, rs_wait() with a timeout shorter
 * than the delay still gets the vCPU out, because its first scan re-kicks
 * (a nap-paced re-kick would come only after the timeout).  6bc8228 timed
 * re-kicks from the waiter's first scan and timed out here.
 */
static void test_late_waiter_rekicks(void)
{
	rs_runstate *rs = make(300 * MS, 0);
	struct tu_vcpu t;

	tu_vcpu_spawn(&t, rs);
	atomic_store(&t.blocking, true);
	CHECK_EQ(rs_start(rs, 0), 0);
	WAIT_FOR(atomic_load(&t.in_guest));
	atomic_store(&t.drop_kicks, 1);
	CHECK_EQ(rs_stop(rs, RS_ASYNC), 0);
	CHECK_EQ(atomic_load(&t.kicks), 1);
	tu_sleep_ms(350);
	/* Nobody waited: still in guest code, still one kick. */
	CHECK(atomic_load(&t.in_guest));
	CHECK_EQ(atomic_load(&t.kicks), 1);
	CHECK_EQ(rs_wait(rs, 250 * MS), 0);
	CHECK_EQ(atomic_load(&t.in_guest), 0);
	CHECK_EQ(atomic_load(&t.kicks), 2);
	tu_vcpu_reap(&t);
	rs_destroy(rs);
}

/* An asynchronous stop settles without anybody waiting: the vCPU whose
 * acknowledgement completes it produces the STOP event. */
static void test_async_stop_settles(void)
{
	rs_runstate *rs = make(0, 0);
	struct tu_vcpu t;
	struct rs_event ev[4];
	uint64_t cursor, lost;
	int n = 0;

	tu_vcpu_spawn(&t, rs);
	atomic_store(&t.blocking, true);
	CHECK_EQ(rs_start(rs, 0), 0);
	WAIT_FOR(atomic_load(&t.in_guest));
	cursor = rs_events_cursor(rs);
	CHECK_EQ(rs_stop(rs, RS_ASYNC), 0);
	for (int i = 0; i < 5000 && n == 0; i++) {
		n = rs_events_read(rs, &cursor, ev, 4, sizeof(ev[0]), &lost);
		if (!n)
			tu_sleep_ms(1);
	}
	CHECK_EQ(n, 1);
	CHECK_EQ(ev[0].kind, RS_EVENT_STOP);
	CHECK(!(rs_word(rs) & RS_W_SETTLING_MASK));
	CHECK_EQ(atomic_load(&t.in_guest), 0);
	tu_vcpu_reap(&t);
	rs_destroy(rs);
}

/* A start right after an asynchronous stop releases no vCPU before the
 * stop's vCPUs were all out: a stuck vCPU holds everybody. */
static void test_edges_in_order(void)
{
	rs_runstate *rs = make(1 * MS, 0);
	struct tu_vcpu t[2];
	uint64_t before;

	for (int i = 0; i < 2; i++)
		tu_vcpu_spawn(&t[i], rs);
	CHECK_EQ(rs_start(rs, 0), 0);
	for (int i = 0; i < 2; i++)
		WAIT_FOR(atomic_load(&t[i].slices) > 0);
	atomic_store(&t[0].stuck, true);
	WAIT_FOR(atomic_load(&t[0].is_stuck));
	CHECK_EQ(rs_stop(rs, 20 * MS), RS_ETIMEDOUT);
	/* vCPU 1 was kicked; it need not have left within the 20 ms (a
	 * loaded machine, a sanitizer build), but it leaves. */
	WAIT_FOR(atomic_load(&t[1].in_guest) == 0);
	CHECK_EQ(atomic_load(&t[1].in_guest), 0);
	before = atomic_load(&t[1].slices);
	CHECK_EQ(rs_start(rs, 0), 0);
	/* Running again, but settling: vCPU 1 must stay out. */
	CHECK(rs_word(rs) & RS_W_SETTLING_MASK);
	CHECK(!rs_may_run(rs));
	tu_sleep_ms(30);
	CHECK_EQ(atomic_load(&t[1].slices), before);
	atomic_store(&t[0].stuck, false);
	WAIT_FOR(atomic_load(&t[1].slices) > before);
	CHECK(rs_may_run(rs));
	for (int i = 0; i < 2; i++)
		tu_vcpu_reap(&t[i]);
	rs_destroy(rs);
}

static int job_panic(rs_runstate *rs, int64_t timeout, void *arg)
{
	(void)arg;
	return rs_pause(rs, RS_PAUSE_PANICKED, timeout);
}

/* A synchronous stop raised from inside a vCPU's slice does not deadlock:
 * the calling vCPU counts as out, the call returns once every vCPU is out,
 * and the caller stays out until rs_vcpu_enter() lets it run. */
static void test_stop_from_vcpu(void)
{
	rs_runstate *rs = make(0, 0);
	struct tu_vcpu t[2];
	struct rs_state st;
	uint64_t before;

	for (int i = 0; i < 2; i++)
		tu_vcpu_spawn(&t[i], rs);
	CHECK_EQ(rs_start(rs, 0), 0);
	WAIT_FOR(atomic_load(&t[0].slices) > 0);
	/* A guest panic raised during device emulation, on the vCPU's
	 * thread, in the synchronous form. */
	tu_vcpu_post(&t[0], job_panic, RS_FOREVER, NULL);
	WAIT_FOR((rs_word(rs) & RS_W_STOPPED_MASK) != 0);
	CHECK_EQ(rs_wait(rs, 5 * SEC), 0);
	st = tu_decode(rs_word(rs));
	CHECK_EQ(st.pause, RS_PAUSE_PANICKED);
	CHECK_EQ(atomic_load(&t[1].in_guest), 0);
	/* The call returned without waiting for a start, left the vCPU out,
	 * and the panicking vCPU is parked in rs_vcpu_enter(). */
	CHECK(tu_vcpu_job_wait(&t[0], 5000));
	CHECK_EQ(t[0].job_result, 0);
	CHECK(t[0].job_active_before);
	CHECK(!t[0].job_active_after);
	before = atomic_load(&t[0].slices);
	tu_sleep_ms(10);
	CHECK_EQ(atomic_load(&t[0].slices), before);
	CHECK_EQ(rs_start(rs, 0), RS_ENEEDFORCE);
	CHECK_EQ(rs_start(rs, RS_START_FORCE), 0);
	WAIT_FOR(atomic_load(&t[0].slices) > before);
	for (int i = 0; i < 2; i++)
		tu_vcpu_reap(&t[i]);
	rs_destroy(rs);
}

/* Requests wake one parked vCPU alone. */
static void test_requests(void)
{
	rs_runstate *rs = make(0, 0);
	struct tu_vcpu t[2];

	for (int i = 0; i < 2; i++)
		tu_vcpu_spawn(&t[i], rs);
	WAIT_FOR(rs_word(rs) & RS_W_PARKED);
	tu_sleep_ms(20);
	reset_counts();
	CHECK_EQ(rs_vcpu_request(&t[0].v, RS_REQ_WORK), 0);
	WAIT_FOR(atomic_load(&t[0].work_seen) == 1);
	CHECK_EQ(atomic_load(&t[1].work_seen), 0);
	CHECK_EQ(atomic_load(&n_wake), 1);
	CHECK_EQ(atomic_load(&t[0].slices), 0);   /* still stopped */
	tu_vcpu_reap(&t[0]);
	CHECK_EQ(atomic_load(&t[0].last_enter), RS_VCPU_EXIT);
	CHECK_EQ(atomic_load(&t[1].work_seen), 0);
	tu_vcpu_reap(&t[1]);
	rs_destroy(rs);
}

/* Spurious wake-ups and EINTR everywhere: stops and starts still work. */
static void test_faults(void)
{
	rs_runstate *rs = make(1 * MS, 0);
	struct tu_vcpu t[3];

	atomic_store(&fault_every, 2);
	reset_counts();
	for (int i = 0; i < 3; i++)
		tu_vcpu_spawn(&t[i], rs);
	atomic_store(&t[2].blocking, true);
	for (int round = 0; round < 200; round++) {
		CHECK_EQ(rs_start(rs, 0), 0);
		if (round % 20 == 0)
			tu_sleep_ms(3);   /* let them park */
		CHECK_EQ(rs_stop(rs, 5 * SEC), 0);
		for (int i = 0; i < 3; i++)
			CHECK_EQ(atomic_load(&t[i].in_guest), 0);
		if (round % 20 == 0)
			tu_sleep_ms(3);
	}
	CHECK(atomic_load(&n_faults) > 0);
	atomic_store(&fault_every, 0);
	for (int i = 0; i < 3; i++)
		tu_vcpu_reap(&t[i]);
	rs_destroy(rs);
}

int main(void)
{
	RUN(test_bad_input);
	RUN(test_config_size);
	RUN(test_stats_and_state_size);
	RUN(test_event_size);
	RUN(test_version);
	RUN(test_initial_and_events);
	RUN(test_lock_handover);
	RUN(test_stop_waits);
	RUN(test_wake_counts);
	RUN(test_early_wake);
	RUN(test_register_while_stopped);
	RUN(test_timeout_and_rekick);
	RUN(test_lost_kicks);
	RUN(test_late_waiter_rekicks);
	RUN(test_async_stop_settles);
	RUN(test_edges_in_order);
	RUN(test_stop_from_vcpu);
	RUN(test_requests);
	RUN(test_faults);
	return tu_finish("test_api");
}

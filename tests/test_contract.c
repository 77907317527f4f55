/* SPDX-License-Identifier: MIT */
/*
 * The contract for every sequence of calls, however long, whatever the
 * vCPUs do, and for every call made on a vCPU's own thread:
 *
 *  - a backlog of edges that no vCPU lets settle (one vCPU never
 *    acknowledges while management toggles the VM 131,100 times, more than
 *    the edge counter of earlier versions could tell apart): a synchronous
 *    stop still returns 0 only with every vCPU out, every wait keeps its
 *    deadline, the instance recovers when the vCPU comes out, and the
 *    events tell the truth about every edge or report it lost;
 *  - the same with several vCPUs of which one never acknowledges, and with
 *    the smallest backlogs (1 and 2), where coalescing happens at once;
 *  - calls made on a vCPU thread: RS_ASYNC never waits and leaves the
 *    vCPU as it was; a call that may wait takes the vCPU out, never waits
 *    for it, honours its timeout and leaves it out; the checking build
 *    catches a vCPU that then polls the fast path instead of re-entering;
 *  - rs_vcpu_request() racing with the unregistration and re-registration
 *    of the same storage (run it under ThreadSanitizer too).
 *
 * Timeouts here are limits on hangs (seconds), never speed assertions.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runstate.h"
#include "testutil.h"

#define SEC (1000000000LL)
#define MS  (1000000LL)

/* ---------------------------------------------------------------------------
 * A vCPU thread.  It runs guest "slices" while the VM may run; `stuck`
 * keeps it in its current slice, deaf to kicks (a vCPU in a long host
 * call); a job posted to it runs on its thread, inside a slice when the
 * vCPU is active, or out (after an RS_REQ_WORK) when it is parked.
 */
typedef int job_fn(rs_runstate *rs, int64_t timeout, void *arg);

struct tv {
	rs_runstate *rs;
	rs_vcpu v;
	pthread_t th;
	_Atomic bool registered, quit, stuck, is_stuck, kicked;
	_Atomic int in_guest;
	_Atomic uint64_t slices;
	/* the job */
	job_fn *_Atomic job;
	void *job_arg;
	int64_t job_timeout;
	int job_result;
	bool job_active_before, job_active_after;
	unsigned long long job_ns;
	_Atomic bool job_done;
};

static void tv_kick(rs_vcpu *v, void *opaque)
{
	struct tv *t = opaque;

	(void)v;
	atomic_store(&t->kicked, true);
}

struct find_arg {
	const rs_vcpu *v;
	int active;
};

static void find_fn(const struct rs_vcpu_info *info, void *arg)
{
	struct find_arg *a = arg;

	if (info->vcpu == a->v)
		a->active = info->active;
}

/* Does the library count t's vCPU active?  (-1: not registered.) */
static int tv_active(struct tv *t)
{
	struct find_arg a = { &t->v, -1 };

	rs_vcpu_foreach(t->rs, find_fn, &a);
	return a.active;
}

/* Run the posted job, if any, on this thread.  Returns true if it left the
 * vCPU out (so the loop must re-enter). */
static bool tv_run_job(struct tv *t)
{
	job_fn *fn = atomic_load(&t->job);
	unsigned long long t0;

	if (!fn)
		return false;
	atomic_store(&t->job, NULL);
	t->job_active_before = tv_active(t) == 1;
	t0 = tu_now_ns();
	t->job_result = fn(t->rs, t->job_timeout, t->job_arg);
	t->job_ns = tu_now_ns() - t0;
	t->job_active_after = tv_active(t) == 1;
	atomic_store(&t->job_done, true);
	return !t->job_active_after;
}

static void *tv_main(void *arg)
{
	struct tv *t = arg;

	if (rs_vcpu_register(t->rs, &t->v, tv_kick, t))
		return NULL;
	atomic_store(&t->registered, true);
	for (;;) {
		int r = rs_vcpu_enter(&t->v);

		if (r == RS_VCPU_EXIT)
			break;
		if (r == RS_VCPU_WORK) {
			tv_run_job(t);   /* out: the job runs on a parked vCPU */
			continue;
		}
		do {
			bool left = false;

			atomic_store(&t->in_guest, 1);
			atomic_fetch_add(&t->slices, 1);
			/* The slice: until kicked, unless stuck; jobs run here. */
			for (;;) {
				if (tv_run_job(t)) {
					left = true;
					break;
				}
				if (atomic_load(&t->stuck)) {
					atomic_store(&t->is_stuck, true);
					continue;
				}
				atomic_store(&t->is_stuck, false);
				if (atomic_exchange(&t->kicked, false) || atomic_load(&t->quit))
					break;
			}
			atomic_store(&t->in_guest, 0);
			if (left)
				break;   /* out: back through rs_vcpu_enter() */
			/* The out-of-line check: in checking builds it aborts if
			 * the library counted this vCPU out here. */
		} while (rs_may_run_func(t->rs) && !atomic_load(&t->quit));
	}
	rs_vcpu_unregister(&t->v);
	atomic_store(&t->registered, false);
	return NULL;
}

static void tv_spawn(struct tv *t, rs_runstate *rs)
{
	memset(t, 0, sizeof(*t));
	t->rs = rs;
	pthread_create(&t->th, NULL, tv_main, t);
	while (!atomic_load(&t->registered))
		tu_sleep_ms(1);
}

static void tv_reap(struct tv *t)
{
	atomic_store(&t->quit, true);
	atomic_store(&t->stuck, false);
	CHECK_EQ(rs_vcpu_request(&t->v, RS_REQ_EXIT), 0);
	pthread_join(t->th, NULL);
}

/* Wait until cond holds, at most `ms` ms; check that it did. */
#define WAIT_MS(cond, ms) do { \
	for (long wm = 0; wm < (ms) && !(cond); wm++) \
		tu_sleep_ms(1); \
	CHECK(cond); \
} while (0)

static rs_runstate *make(unsigned backlog, unsigned events)
{
	struct rs_config cfg = { .rekick_ns = 1 * MS, .max_backlog = backlog,
				 .event_capacity = events };
	rs_runstate *rs = NULL;

	if (rs_create(&cfg, &rs) != 0) {
		fprintf(stderr, "rs_create failed\n");
		exit(1);
	}
	return rs;
}

/* ---------------------------------------------------------------------------
 * The events after a backlog: every record from cursor 1 on.  Each event
 * is its edge's own (kind, seq and word agree: the word's running flag is
 * the kind, its edge counter has the seq's parity and follows the event
 * before), losses are explicit records (a run of coalesced edges carries
 * the word that ended it: its edge counter moved by 1 if the run changed
 * running, by 2 if not), the numbering has no silent gap, and it ends at
 * the number of edges made and the word's edge counter.  Returns the
 * number of edges reported lost.
 */
static uint64_t check_events(rs_runstate *rs)
{
	struct rs_event ev[64];
	struct rs_stats st;
	uint64_t cursor = 1, expect = 1, lost_total = 0;
	uint32_t last_edge = 0;
	bool have_edge = true;   /* edge 0: the initial state */
	int n;

	while ((n = rs_events_read(rs, &cursor, ev, 64, NULL)) > 0) {
		for (int i = 0; i < n; i++) {
			const struct rs_event *e = &ev[i];
			struct rs_state d;

			if (e->seq != expect) {
				CHECK(!"events: a silent gap");
				fprintf(stderr, "  record seq %llu, expected %llu\n",
					(unsigned long long)e->seq, (unsigned long long)expect);
				return lost_total;
			}
			if (e->kind == RS_EVENT_LOST) {
				CHECK(e->lost > 0);
				lost_total += e->lost;
				expect += e->lost;
				if (!e->word) {
					have_edge = false;   /* the reader's own loss */
					continue;
				}
				rs_decode(e->word, &d);
				CHECK_EQ(d.running, (e->seq + e->lost - 1) % 2 == 1);
				CHECK_EQ(d.edge % 2, d.running);
				if (have_edge)
					CHECK_EQ(d.edge - last_edge, e->lost % 2 ? 1 : 2);
				last_edge = d.edge;
				have_edge = true;
				continue;
			}
			rs_decode(e->word, &d);
			if (d.running != (e->kind == RS_EVENT_RESUME) ||
			    (e->kind == RS_EVENT_RESUME) != (e->seq % 2 == 1) ||
			    d.edge % 2 != e->seq % 2 || (have_edge && d.edge != last_edge + 1)) {
				CHECK(!"events: an event does not carry its own edge's word");
				fprintf(stderr, "  seq %llu kind %d word 0x%016llx (edge before %u)\n",
					(unsigned long long)e->seq, e->kind,
					(unsigned long long)e->word, last_edge);
				return lost_total;
			}
			last_edge = d.edge;
			have_edge = true;
			expect++;
		}
	}
	CHECK_EQ(rs_get_stats(rs, &st), 0);
	CHECK_EQ(expect - 1, st.stop_edges + st.start_edges);
	if (have_edge)
		CHECK_EQ(last_edge, tu_edge(rs_word(rs)));
	return lost_total;
}

/*
 * The reviewer's reproduction: one vCPU (or several, of which the first)
 * never acknowledges; `pairs` asynchronous stop/start pairs; then a timed
 * stop must time out while that vCPU is still in guest code; once it comes
 * out, everything settles within the wait's deadline and the VM runs again
 * on a start.
 */
static void backlog_case(unsigned nvcpu, unsigned backlog, long pairs)
{
	rs_runstate *rs = make(backlog, 256);
	struct tv t[4];
	struct rs_stats st;
	unsigned long long t0;
	uint64_t before[4], lost;
	unsigned b = backlog ? backlog : 64;   /* the default */
	int r;

	for (unsigned i = 0; i < nvcpu; i++)
		tv_spawn(&t[i], rs);
	CHECK_EQ(rs_start(rs, 0), 0);
	for (unsigned i = 0; i < nvcpu; i++)
		WAIT_MS(atomic_load(&t[i].slices) > 0, 5000);
	atomic_store(&t[0].stuck, true);
	WAIT_MS(atomic_load(&t[0].is_stuck), 5000);

	for (long k = 0; k < pairs; k++) {
		r = rs_stop(rs, RS_ASYNC);
		if (r)
			CHECK_EQ(r, 0);
		r = rs_start(rs, 0);
		if (r)
			CHECK_EQ(r, 0);
	}
	/* The stuck vCPU is still in guest code: a timed stop cannot succeed,
	 * and must say so within its deadline (here: at all). */
	t0 = tu_now_ns();
	CHECK_EQ(rs_stop(rs, 200 * MS), RS_ETIMEDOUT);
	CHECK(tu_now_ns() - t0 < 10ULL * SEC);
	CHECK(atomic_load(&t[0].in_guest));
	/* The others acknowledged and stayed out. */
	for (unsigned i = 1; i < nvcpu; i++) {
		CHECK_EQ(atomic_load(&t[i].in_guest), 0);
		before[i] = atomic_load(&t[i].slices);
	}
	CHECK_EQ(rs_wait(rs, 20 * MS), RS_ETIMEDOUT);
	tu_sleep_ms(20);
	for (unsigned i = 1; i < nvcpu; i++)
		CHECK_EQ(atomic_load(&t[i].slices), before[i]);

	/* The vCPU comes out: the backlog settles, within the deadline. */
	atomic_store(&t[0].stuck, false);
	t0 = tu_now_ns();
	CHECK_EQ(rs_wait(rs, 500 * MS), 0);
	CHECK(tu_now_ns() - t0 < 10ULL * SEC);
	for (unsigned i = 0; i < nvcpu; i++)
		CHECK_EQ(atomic_load(&t[i].in_guest), 0);
	CHECK(!(rs_word(rs) & RS_W_SETTLING_MASK));
	CHECK_EQ(rs_stop(rs, 200 * MS), 0);

	lost = check_events(rs);
	CHECK_EQ(rs_get_stats(rs, &st), 0);
	/* The bound held: everything past the backlog was coalesced. */
	CHECK(st.coalesced >= (uint64_t)(2 * pairs) - b);
	CHECK(lost >= st.coalesced);

	/* And the VM runs again. */
	for (unsigned i = 0; i < nvcpu; i++)
		before[i] = atomic_load(&t[i].slices);
	CHECK_EQ(rs_start(rs, 0), 0);
	for (unsigned i = 0; i < nvcpu; i++)
		WAIT_MS(atomic_load(&t[i].slices) > before[i], 5000);
	for (unsigned i = 0; i < nvcpu; i++)
		tv_reap(&t[i]);
	rs_destroy(rs);
}

static void test_backlog_one_vcpu(void)
{
	backlog_case(1, 0, 131100);
}

static void test_backlog_four_vcpus(void)
{
	backlog_case(4, 0, 131100);
}

static void test_backlog_small(void)
{
	backlog_case(2, 1, 5000);
	backlog_case(2, 2, 5001);
	backlog_case(3, RS_W_BACKLOG_MAX, 5000);
}

/*
 * Many edges while nobody lets any settle, then the stuck vCPU comes out
 * while management goes on toggling: listeners see alternating runs, the
 * events account for every edge, and a synchronous stop made in the middle
 * returns 0 only with every vCPU out.
 */
static _Atomic int lrun_last = -1, lrun_bad;

static void alt_listener(void *opaque, bool running, const struct rs_state *st)
{
	int prev = atomic_exchange(&lrun_last, running);

	(void)opaque;
	if (prev == (int)running || (st->edge & 1) != (uint32_t)running)
		atomic_fetch_add(&lrun_bad, 1);
}

static _Atomic bool toggler_quit;

static void *toggler(void *arg)
{
	rs_runstate *rs = arg;

	while (!atomic_load(&toggler_quit)) {
		rs_stop(rs, RS_ASYNC);
		rs_start(rs, 0);
	}
	return NULL;
}

static void test_backlog_under_churn(void)
{
	rs_runstate *rs = make(2, 1024);
	rs_listener *l;
	struct tv t[2];
	pthread_t th;

	CHECK_EQ(rs_listener_add(rs, alt_listener, NULL, 0, &l), 0);
	for (int i = 0; i < 2; i++)
		tv_spawn(&t[i], rs);
	CHECK_EQ(rs_start(rs, 0), 0);
	WAIT_MS(atomic_load(&t[0].slices) > 0, 5000);
	atomic_store(&t[0].stuck, true);
	WAIT_MS(atomic_load(&t[0].is_stuck), 5000);
	atomic_store(&toggler_quit, false);
	pthread_create(&th, NULL, toggler, rs);
	tu_sleep_ms(50);
	atomic_store(&t[0].stuck, false);
	for (int k = 0; k < 200; k++) {
		int r = rs_stop(rs, 2 * SEC);

		CHECK_EQ(r, 0);
		if (r == 0 && tu_edge(rs_word(rs)) % 2 == 0) {
			/* Still stopped at the edge it saw: nobody in guest. */
			uint64_t w = rs_word(rs);

			if (!atomic_load(&t[0].in_guest) && !atomic_load(&t[1].in_guest))
				continue;
			CHECK(tu_edge(rs_word(rs)) != tu_edge(w) ||
			      (!atomic_load(&t[0].in_guest) && !atomic_load(&t[1].in_guest)));
		}
	}
	atomic_store(&toggler_quit, true);
	pthread_join(th, NULL);
	CHECK_EQ(rs_cont(rs), 0);
	CHECK_EQ(rs_wait(rs, 5 * SEC), 0);
	CHECK(rs_may_run(rs));
	CHECK_EQ(atomic_load(&lrun_bad), 0);
	check_events(rs);
	for (int i = 0; i < 2; i++)
		tv_reap(&t[i]);
	CHECK_EQ(rs_listener_remove(rs, l), 0);
	rs_destroy(rs);
}

/* ---------------------------------------------------------------------------
 * Calls made on a vCPU thread.
 */
static rs_listener *job_listener;

static void nop_listener(void *o, bool running, const struct rs_state *st)
{
	(void)o, (void)running, (void)st;
}

static int job_stop(rs_runstate *rs, int64_t to, void *a) { (void)a; return rs_stop(rs, to); }
static int job_io_error(rs_runstate *rs, int64_t to, void *a) { (void)a; return rs_io_error(rs, to); }
static int job_pause(rs_runstate *rs, int64_t to, void *a)
{
	(void)a;
	return rs_pause(rs, RS_PAUSE_PANICKED, to);
}
static int job_lock(rs_runstate *rs, int64_t to, void *a)
{
	(void)a;
	return rs_lock(rs, RS_LOCK_DEBUG, to);
}
static int job_trylock(rs_runstate *rs, int64_t to, void *a)
{
	(void)a;
	return rs_trylock(rs, RS_LOCK_SAVEVM, to);
}
static int job_unlock_pause(rs_runstate *rs, int64_t to, void *a)
{
	(void)a;
	return rs_unlock_pause(rs, RS_LOCK_RESTORE, RS_PAUSE_PAUSED, to);
}
static int job_wait(rs_runstate *rs, int64_t to, void *a) { (void)a; return rs_wait(rs, to); }
static int job_events_wait(rs_runstate *rs, int64_t to, void *a)
{
	(void)a;
	/* An event that does not exist yet. */
	return rs_events_wait(rs, rs_events_cursor(rs), to);
}
static int job_listener_remove(rs_runstate *rs, int64_t to, void *a)
{
	(void)to, (void)a;
	return rs_listener_remove(rs, job_listener);
}

struct job {
	const char *name;
	job_fn *fn;
	bool stops;        /* a stopping call: the VM is stopped after it */
};

static const struct job jobs[] = {
	{ "rs_stop", job_stop, true },
	{ "rs_io_error", job_io_error, true },
	{ "rs_pause", job_pause, true },
	{ "rs_lock", job_lock, true },
	{ "rs_trylock", job_trylock, true },
	{ "rs_unlock_pause", job_unlock_pause, true },
	{ "rs_wait", job_wait, false },
	{ "rs_events_wait", job_events_wait, false },
};

/* Post a job to t and wait for it; false if it did not finish within
 * `ms` (the caller then unsticks it). */
static bool post(struct tv *t, job_fn *fn, int64_t timeout, bool parked, long ms)
{
	t->job_timeout = timeout;
	atomic_store(&t->job_done, false);
	atomic_store(&t->job, fn);
	if (parked)
		CHECK_EQ(rs_vcpu_request(&t->v, RS_REQ_WORK), 0);
	for (long i = 0; i < ms && !atomic_load(&t->job_done); i++)
		tu_sleep_ms(1);
	return atomic_load(&t->job_done);
}

/* Bring the instance back to running, nothing held, nothing settling. */
static void back_to_running(rs_runstate *rs)
{
	rs_unlock(rs, RS_LOCK_DEBUG);
	rs_unlock(rs, RS_LOCK_SAVEVM);
	rs_unlock(rs, RS_LOCK_RESTORE);
	CHECK_EQ(rs_reset(rs), 0);
	CHECK_EQ(rs_cont(rs), 0);
	CHECK_EQ(rs_wait(rs, 5 * SEC), 0);
	CHECK(rs_may_run(rs));
}

/*
 * Every call that may wait, on a vCPU's thread: with RS_ASYNC, a short
 * timeout and RS_FOREVER; with the VM running (the call made from inside a
 * slice, the vCPU active) and stopped (made from a parked vCPU, through a
 * work request).  Nobody starts the VM meanwhile: a call that parked
 * inside itself until the VM may run (as earlier versions did) would not
 * come back.
 */
static void test_vcpu_thread_calls(void)
{
	rs_runstate *rs = make(0, 0);
	static const int64_t timeouts[] = { RS_ASYNC, 30 * MS, RS_FOREVER };
	struct tv t[2];

	for (int i = 0; i < 2; i++)
		tv_spawn(&t[i], rs);
	for (size_t j = 0; j < sizeof(jobs) / sizeof(jobs[0]); j++) {
		for (int k = 0; k < 3; k++) {
			for (int stopped = 0; stopped < 2; stopped++) {
				int64_t to = timeouts[k];
				int r;
				bool done;

				/* An unlock needs a held bit, which stops the
				 * VM: there is no running case. */
				if (jobs[j].fn == job_unlock_pause && !stopped)
					continue;
				/* Nothing makes an event here: waiting for one
				 * forever is test_vcpu_thread_waits'. */
				if (jobs[j].fn == job_events_wait && to == RS_FOREVER)
					continue;
				back_to_running(rs);
				WAIT_MS(atomic_load(&t[0].in_guest), 5000);
				if (stopped) {
					if (jobs[j].fn == job_unlock_pause)
						CHECK_EQ(rs_trylock(rs, RS_LOCK_RESTORE, RS_FOREVER), 0);
					else
						CHECK_EQ(rs_stop(rs, RS_FOREVER), 0);
					WAIT_MS(rs_word(rs) & RS_W_PARKED, 5000);
				}
				done = post(&t[0], jobs[j].fn, to, stopped, 3000);
				if (!done) {
					fprintf(stderr, "%s (timeout %lld, VM %s) did not return\n",
						jobs[j].name, (long long)to,
						stopped ? "stopped" : "running");
					CHECK(done);
					back_to_running(rs);
					WAIT_MS(atomic_load(&t[0].job_done), 5000);
					continue;
				}
				r = t[0].job_result;
				if (jobs[j].fn == job_events_wait) {
					/* Nothing produces an event: the timed and the
					 * asynchronous forms time out, in time. */
					CHECK_EQ(r, to == RS_FOREVER ? 0 : RS_ETIMEDOUT);
				} else {
					CHECK_EQ(r, 0);
				}
				if (to == RS_ASYNC) {
					/* Never waits, never changes the vCPU. */
					CHECK_EQ(t[0].job_active_after, t[0].job_active_before);
				} else if (t[0].job_active_after) {
					/* Out from the call on, and after it. */
					CHECK(!t[0].job_active_after);
					fprintf(stderr, "  %s (timeout %lld, VM %s) left the vCPU "
						"active\n", jobs[j].name, (long long)to,
						stopped ? "stopped" : "running");
				}
				if (jobs[j].stops && r == 0) {
					CHECK(rs_word(rs) & RS_W_STOPPED_MASK);
					/* A call that waited saw the other vCPU
					 * out, and the VM stayed stopped. */
					if (to != RS_ASYNC)
						CHECK_EQ(atomic_load(&t[1].in_guest), 0);
				}
			}
		}
	}
	back_to_running(rs);
	for (int i = 0; i < 2; i++)
		tv_reap(&t[i]);
	rs_destroy(rs);
}

/* The FOREVER form of rs_events_wait needs an event: the jobs above made
 * none, so the FOREVER case is this one, with a stop from another thread
 * after a while.  Also rs_listener_remove from a vCPU thread (it waits for
 * a grace period) and rs_lock of a held bit that another thread releases. */
static void *later_stop(void *arg)
{
	tu_sleep_ms(30);
	rs_stop(arg, RS_ASYNC);
	return NULL;
}

static void *later_unlock(void *arg)
{
	tu_sleep_ms(30);
	rs_unlock(arg, RS_LOCK_DEBUG);
	return NULL;
}

static void test_vcpu_thread_waits(void)
{
	rs_runstate *rs = make(0, 0);
	struct tv t[2];
	pthread_t th;

	for (int i = 0; i < 2; i++)
		tv_spawn(&t[i], rs);
	back_to_running(rs);
	WAIT_MS(atomic_load(&t[0].in_guest), 5000);
	pthread_create(&th, NULL, later_stop, rs);
	CHECK(post(&t[0], job_events_wait, RS_FOREVER, false, 5000));
	pthread_join(th, NULL);
	CHECK_EQ(t[0].job_result, 0);
	CHECK(!t[0].job_active_after);

	back_to_running(rs);
	WAIT_MS(atomic_load(&t[0].in_guest), 5000);
	CHECK_EQ(rs_listener_add(rs, nop_listener, NULL, 0, &job_listener), 0);
	CHECK(post(&t[0], job_listener_remove, RS_FOREVER, false, 5000));
	CHECK_EQ(t[0].job_result, 0);
	CHECK(!t[0].job_active_after);

	/* A held bit: the vCPU thread waits for it, out, and gets it when
	 * the holder unlocks (earlier versions deadlocked here unless the
	 * VM was started meanwhile). */
	back_to_running(rs);
	WAIT_MS(atomic_load(&t[0].in_guest), 5000);
	CHECK_EQ(rs_trylock(rs, RS_LOCK_DEBUG, RS_FOREVER), 0);
	pthread_create(&th, NULL, later_unlock, rs);
	/* The vCPU is parked (the VM is stopped): through a work request. */
	WAIT_MS(rs_word(rs) & RS_W_PARKED, 5000);
	CHECK(post(&t[0], job_lock, RS_FOREVER, true, 5000));
	pthread_join(th, NULL);
	CHECK_EQ(t[0].job_result, 0);
	CHECK(rs_word(rs) & RS_W_LOCK(RS_LOCK_DEBUG));
	/* A lock that waits past its deadline gives up: busy, unchanged. */
	CHECK(post(&t[0], job_lock, 30 * MS, true, 5000));
	CHECK_EQ(t[0].job_result, RS_EBUSY);

	back_to_running(rs);
	for (int i = 0; i < 2; i++)
		tv_reap(&t[i]);
	rs_destroy(rs);
}

/*
 * The checking build catches a vCPU that polls the fast path's out-of-line
 * check while the library counts it out (after a call that waited), where
 * it should have gone back through rs_vcpu_enter().  A release build
 * answers (false: the VM is stopped).
 */
static void *misuse_main(void *arg)
{
	rs_runstate *rs = arg;
	rs_vcpu v;

	if (rs_vcpu_register(rs, &v, NULL, NULL) || rs_vcpu_enter(&v) != 0)
		_exit(3);
	/* In guest code: a panic, synchronously; the vCPU is out after it. */
	if (rs_pause(rs, RS_PAUSE_PANICKED, RS_FOREVER) != 0)
		_exit(4);
	_exit(rs_may_run_func(rs) ? 5 : 0);
	return NULL;
}

static void test_checking_build_catches_misuse(void)
{
	pid_t pid = fork();
	int status = 0;

	if (pid == 0) {
		rs_runstate *rs = make(0, 0);
		pthread_t th;

		alarm(20);
		rs_start(rs, 0);
		rs_wait(rs, SEC);
		pthread_create(&th, NULL, misuse_main, rs);
		pthread_join(th, NULL);
		_exit(6);
	}
	CHECK(pid > 0);
	waitpid(pid, &status, 0);
#ifdef NDEBUG
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
#else
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
#endif
}

/*
 * rs_vcpu_request() on storage whose owner unregisters and registers it
 * again, over and over: every request returns 0 or RS_EINVAL, touches only
 * a registration it found in its slot, and nothing crashes (ThreadSanitizer
 * checks the rest).
 */
static _Atomic bool rr_quit;
static rs_vcpu rr_v;
static _Atomic long rr_regs, rr_ok, rr_einval, rr_bad;

static void *rr_owner(void *arg)
{
	rs_runstate *rs = arg;

	while (!atomic_load(&rr_quit)) {
		if (rs_vcpu_register(rs, &rr_v, NULL, NULL) == 0) {
			atomic_fetch_add(&rr_regs, 1);
			/* Take a request if there is one, never run guest code
			 * (the VM is stopped). */
			for (int i = 0; i < 3; i++)
				if (rs_vcpu_quiesce(&rr_v))
					atomic_fetch_add(&rr_bad, 1);
			if (rs_vcpu_unregister(&rr_v))
				atomic_fetch_add(&rr_bad, 1);
		}
	}
	return NULL;
}

static void *rr_requester(void *arg)
{
	(void)arg;
	while (!atomic_load(&rr_quit)) {
		int r = rs_vcpu_request(&rr_v, RS_REQ_WORK);

		if (r == 0)
			atomic_fetch_add(&rr_ok, 1);
		else if (r == RS_EINVAL)
			atomic_fetch_add(&rr_einval, 1);
		else
			atomic_fetch_add(&rr_bad, 1);
	}
	return NULL;
}

static void test_request_vs_reregistration(void)
{
	rs_runstate *rs = make(0, 0);
	pthread_t o, q[2];

	memset(&rr_v, 0, sizeof(rr_v));
	pthread_create(&o, NULL, rr_owner, rs);
	for (int i = 0; i < 2; i++)
		pthread_create(&q[i], NULL, rr_requester, NULL);
	tu_sleep_ms(300);
	atomic_store(&rr_quit, true);
	pthread_join(o, NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(q[i], NULL);
	CHECK_EQ(atomic_load(&rr_bad), 0);
	CHECK(atomic_load(&rr_regs) > 0);
	printf("test_request_vs_reregistration: %ld registrations, %ld requests taken, "
	       "%ld refused\n", atomic_load(&rr_regs), atomic_load(&rr_ok),
	       atomic_load(&rr_einval));
	rs_destroy(rs);
}

/* Every error a call can return has a name. */
static void test_error_names(void)
{
	static const struct { int err; const char *name; } names[] = {
		{ 0, "ok" }, { RS_EINVAL, "invalid" }, { RS_EBUSY, "busy" },
		{ RS_ENOTHELD, "not-held" }, { RS_ENEEDFORCE, "needs-force" },
		{ RS_ENEEDRESET, "needs-reset" }, { RS_ETIMEDOUT, "timeout" },
		{ RS_ENOMEM, "no-memory" }, { RS_ENOSPC, "no-space" },
		{ RS_EDEADLK, "deadlock" },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		CHECK(!strcmp(rs_strerror(names[i].err), names[i].name));
	CHECK(!strcmp(rs_strerror(-12345), "unknown"));
	CHECK(!strcmp(rs_strerror(RS_VCPU_EXIT), "unknown"));
}

int main(void)
{
	/* First: it forks, best before any other thread exists. */
	RUN(test_checking_build_catches_misuse);
	RUN(test_error_names);
	RUN(test_backlog_one_vcpu);
	RUN(test_backlog_four_vcpus);
	RUN(test_backlog_small);
	RUN(test_backlog_under_churn);
	RUN(test_vcpu_thread_calls);
	RUN(test_vcpu_thread_waits);
	RUN(test_request_vs_reregistration);
	return tu_finish("test_contract");
}

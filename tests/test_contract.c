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
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

/* The vCPUs are testutil's: slices that end on a kick (blocking), `stuck`
 * keeps one in its slice, deaf to kicks (a vCPU in a long host call), and a
 * job posted to it runs on its thread, inside a slice when it is active,
 * or out (after an RS_REQ_WORK) when it is parked. */
static void tv_spawn(struct tu_vcpu *t, rs_runstate *rs)
{
	tu_vcpu_spawn(t, rs);
	atomic_store(&t->blocking, true);
}

static rs_runstate *make(unsigned backlog, unsigned events)
{
	return tu_create((struct rs_config){ .rekick_ns = 1 * MS, .max_backlog = backlog,
					     .event_capacity = events }, NULL);
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
	struct rs_stats st = { .size = sizeof(st) };
	uint64_t cursor = 1, expect = 1, lost_total = 0;
	uint32_t last_edge = 0;
	bool have_edge = true;   /* edge 0: the initial state */
	int n;

	while ((n = rs_events_read(rs, &cursor, ev, 64, sizeof(ev[0]), NULL)) > 0) {
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
				d = tu_decode(e->word);
				CHECK_EQ(d.running, (e->seq + e->lost - 1) % 2 == 1);
				CHECK_EQ(d.edge % 2, d.running);
				if (have_edge)
					CHECK_EQ(d.edge - last_edge, e->lost % 2 ? 1 : 2);
				last_edge = d.edge;
				have_edge = true;
				continue;
			}
			d = tu_decode(e->word);
			if (d.running != (e->kind == RS_EVENT_RESUME) ||
			    (e->kind == RS_EVENT_RESUME) != (e->seq % 2 == 1) ||
			    d.edge % 2 != e->seq % 2 || (have_edge && d.edge != last_edge + 1)) {
				CHECK(!"events: an event does not carry its own edge's word");
				fprintf(stderr,
					"  seq %llu kind %d word 0x%016llx (edge before %u)\n",
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
		CHECK_EQ(last_edge, rsu_edge(rs_word(rs)));
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
	struct tu_vcpu t[4];
	struct rs_stats st = { .size = sizeof(st) };
	uint64_t t0;
	uint64_t before[4], lost;
	unsigned b = backlog ? backlog : 64;   /* the default */
	int r;

	for (unsigned i = 0; i < nvcpu; i++)
		tv_spawn(&t[i], rs);
	CHECK_EQ(rs_start(rs, 0), 0);
	for (unsigned i = 0; i < nvcpu; i++)
		WAIT_FOR(atomic_load(&t[i].slices) > 0);
	atomic_store(&t[0].stuck, true);
	WAIT_FOR(atomic_load(&t[0].is_stuck));

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
	t0 = rsu_now_ns();
	CHECK_EQ(rs_stop(rs, 200 * MS), RS_ETIMEDOUT);
	CHECK(rsu_now_ns() - t0 < 10ULL * SEC);
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
	t0 = rsu_now_ns();
	CHECK_EQ(rs_wait(rs, 500 * MS), 0);
	CHECK(rsu_now_ns() - t0 < 10ULL * SEC);
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
		WAIT_FOR(atomic_load(&t[i].slices) > before[i]);
	for (unsigned i = 0; i < nvcpu; i++)
		tu_vcpu_reap(&t[i]);
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
	struct tu_vcpu t[2];
	pthread_t th;
	int settled_seen = 0;

	CHECK_EQ(rs_listener_add(rs, alt_listener, NULL, 0, &l), 0);
	for (int i = 0; i < 2; i++)
		tv_spawn(&t[i], rs);
	CHECK_EQ(rs_start(rs, 0), 0);
	WAIT_FOR(atomic_load(&t[0].slices) > 0);
	atomic_store(&t[0].stuck, true);
	WAIT_FOR(atomic_load(&t[0].is_stuck));
	atomic_store(&toggler_quit, false);
	pthread_create(&th, NULL, toggler, rs);
	tu_sleep_ms(50);
	atomic_store(&t[0].stuck, false);
	for (int k = 0; k < 200; k++) {
		int r = rs_stop(rs, 2 * SEC);
		uint64_t w1, w2;
		bool in;

		CHECK_EQ(r, 0);
		/* The toggler may start the VM again at once, and its own
		 * stops are asynchronous, so "stopped" alone says nothing of
		 * the vCPUs.  A stopped word with nothing left to settle does:
		 * every vCPU acknowledged that stop, and none can have entered
		 * guest code since unless an edge came after it, which would
		 * have moved the edge counter for good (appended edges add 1,
		 * coalesced ones never go back below the backlog's last). */
		w1 = rs_word(rs);
		in = atomic_load(&t[0].in_guest) || atomic_load(&t[1].in_guest);
		w2 = rs_word(rs);
		if (!rsu_running(w1) && !rsu_settling(w1) && rsu_edge(w1) == rsu_edge(w2))
			CHECK(!in);
		settled_seen += !rsu_running(w1) && !rsu_settling(w1);
	}
	/* The check above must have had something to check. */
	printf("test_backlog_under_churn: %d of 200 stops still settled when looked at\n",
	       settled_seen);
	CHECK(settled_seen > 0);
	atomic_store(&toggler_quit, true);
	pthread_join(th, NULL);
	CHECK_EQ(rs_cont(rs), 0);
	CHECK_EQ(rs_wait(rs, 5 * SEC), 0);
	CHECK(rs_may_run(rs));
	CHECK_EQ(atomic_load(&lrun_bad), 0);
	check_events(rs);
	for (int i = 0; i < 2; i++)
		tu_vcpu_reap(&t[i]);
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
static int job_io_error(rs_runstate *rs, int64_t to, void *a)
{
	(void)a;
	return rs_io_error(rs, to);
}
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
	tu_job_fn *fn;
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

/* Post a job to t (through a work request if it is parked) and wait for
 * it; false if it did not finish within `ms` (the caller then unsticks
 * it). */
static bool post(struct tu_vcpu *t, tu_job_fn *fn, int64_t timeout, bool parked, long ms)
{
	tu_vcpu_post(t, fn, timeout, NULL);
	if (parked)
		CHECK_EQ(rs_vcpu_request(&t->v, RS_REQ_WORK), 0);
	return tu_vcpu_job_wait(t, ms);
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
	struct tu_vcpu t[2];

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
				WAIT_FOR(atomic_load(&t[0].in_guest));
				if (stopped) {
					if (jobs[j].fn == job_unlock_pause)
						CHECK_EQ(rs_trylock(rs, RS_LOCK_RESTORE,
								    RS_FOREVER), 0);
					else
						CHECK_EQ(rs_stop(rs, RS_FOREVER), 0);
					WAIT_FOR(rs_word(rs) & RS_W_PARKED);
				}
				done = post(&t[0], jobs[j].fn, to, stopped, 3000);
				if (!done) {
					fprintf(stderr, "%s (timeout %lld, VM %s) did not return\n",
						jobs[j].name, (long long)to,
						stopped ? "stopped" : "running");
					CHECK(done);
					back_to_running(rs);
					WAIT_FOR(atomic_load(&t[0].job_done));
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
		tu_vcpu_reap(&t[i]);
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
	struct tu_vcpu t[2];
	pthread_t th;

	for (int i = 0; i < 2; i++)
		tv_spawn(&t[i], rs);
	back_to_running(rs);
	WAIT_FOR(atomic_load(&t[0].in_guest));
	pthread_create(&th, NULL, later_stop, rs);
	CHECK(post(&t[0], job_events_wait, RS_FOREVER, false, 5000));
	pthread_join(th, NULL);
	CHECK_EQ(t[0].job_result, 0);
	CHECK(!t[0].job_active_after);

	back_to_running(rs);
	WAIT_FOR(atomic_load(&t[0].in_guest));
	CHECK_EQ(rs_listener_add(rs, nop_listener, NULL, 0, &job_listener), 0);
	CHECK(post(&t[0], job_listener_remove, RS_FOREVER, false, 5000));
	CHECK_EQ(t[0].job_result, 0);
	CHECK(!t[0].job_active_after);

	/* A held bit: the vCPU thread waits for it, out, and gets it when
	 * the holder unlocks (earlier versions deadlocked here unless the
	 * VM was started meanwhile). */
	back_to_running(rs);
	WAIT_FOR(atomic_load(&t[0].in_guest));
	CHECK_EQ(rs_trylock(rs, RS_LOCK_DEBUG, RS_FOREVER), 0);
	pthread_create(&th, NULL, later_unlock, rs);
	/* The vCPU is parked (the VM is stopped): through a work request. */
	WAIT_FOR(rs_word(rs) & RS_W_PARKED);
	CHECK(post(&t[0], job_lock, RS_FOREVER, true, 5000));
	pthread_join(th, NULL);
	CHECK_EQ(t[0].job_result, 0);
	CHECK(rs_word(rs) & RS_W_LOCK(RS_LOCK_DEBUG));
	/* A lock that waits past its deadline gives up: busy, unchanged. */
	CHECK(post(&t[0], job_lock, 30 * MS, true, 5000));
	CHECK_EQ(t[0].job_result, RS_EBUSY);

	back_to_running(rs);
	for (int i = 0; i < 2; i++)
		tu_vcpu_reap(&t[i]);
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

int main(void)
{
	/* First: it forks, best before any other thread exists. */
	RUN(test_checking_build_catches_misuse);
	RUN(test_backlog_one_vcpu);
	RUN(test_backlog_four_vcpus);
	RUN(test_backlog_small);
	RUN(test_backlog_under_churn);
	RUN(test_vcpu_thread_calls);
	RUN(test_vcpu_thread_waits);
	RUN(test_request_vs_reregistration);
	return tu_finish("test_contract");
}

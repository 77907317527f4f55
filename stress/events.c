/* SPDX-License-Identifier: MIT */
/*
 * runstate-stress: the event readers.  Three readers apply the same rules
 * (evr_check()): the monitor polls rs_events_read() with lost != NULL; a
 * waiter blocks in rs_events_wait(); a main-loop reader polls the eventfd,
 * reads it, then drains rs_events_read() with lost == NULL, so losses come
 * as RS_EVENT_LOST records.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "stress.h"

/* rs_events_read() on the instance, with this build's record size. */
int events_read(uint64_t *cursor, struct rs_event *buf, size_t n, uint64_t *lost)
{
	return rs_events_read(ctx.rs, cursor, buf, n, sizeof(*buf), lost);
}

void evr_init(struct evr *r, const char *name, uint64_t cursor, _Atomic uint64_t *n_events,
	      _Atomic uint64_t *n_lost)
{
	memset(r, 0, sizeof(*r));
	r->name = name;
	r->cursor = r->expect = cursor ? cursor : 1;
	r->n_events = n_events;
	r->n_lost = n_lost;
}

static const char *kind_str(enum rs_event_kind k)
{
	return k == RS_EVENT_STOP ? "STOP" : "RESUME";
}

/* A record of coalesced edges (lost, with the word that ended the run): the
 * run changed running exactly when it has an odd number of edges, and the
 * edge counter went up by one then, by two if not. */
static void lost_run_check(struct evr *r, const struct rs_event *e)
{
	uint64_t ue = unwrap_edge(rsu_edge(e->word), r->last_edge);
	bool odd = e->lost & 1;

	if ((rsu_edge(e->word) & 1) != (uint32_t)rsu_running(e->word) ||
	    ((e->seq + e->lost - 1) & 1) != (uint32_t)rsu_running(e->word))
		violation(V_EVENTS, "%s: a run of %" PRIu64 " coalesced edges from %" PRIu64
				    " ends with word 0x%016" PRIx64 ", whose edge counter or "
				    "running flag does not fit", r->name, e->lost, e->seq, e->word);
	if (r->last_edge && r->last_seq + 1 == e->seq && ue != r->last_edge + (odd ? 1 : 2))
		violation(V_EVENTS, "%s: a run of %" PRIu64 " coalesced edges moved the edge "
				    "counter from %" PRIu64 " to %" PRIu64,
			  r->name, e->lost, r->last_edge, ue);
	r->last_seq = e->seq + e->lost - 1;
	r->last_edge = ue;
}

/* An RS_EVENT_LOST record at position i.  Never a silent gap: the record
 * names the first seq lost (where the reader was) and how many; it comes
 * first. */
static void evr_lost_record(struct evr *r, const struct rs_event *e, int i, bool lost_null)
{
	if (!lost_null || i != 0 || e->seq != r->expect || !e->lost)
		violation(V_EVENTS, "%s: a loss record at position %d says %" PRIu64 " lost from %"
				    PRIu64 " (expected from %" PRIu64 "%s)",
			  r->name, i, e->lost, e->seq, r->expect,
			  lost_null ? "" : "; lost was not NULL");
	atomic_fetch_add(r->n_lost, e->lost);
	INC(ctx.stats.ef_lost_recs);
	r->expect = e->seq + e->lost;
	if (e->word)
		lost_run_check(r, e);
}

/* STOP comes after the stop listeners; both kinds carry the state the
 * listeners got.  (Listener runs go by the edge counter.) */
static void evr_listener_check(struct evr *r, const struct rs_event *e)
{
	uint64_t gl = atomic_load(&ctx.l.edge);
	uint64_t ue = unwrap_edge(rsu_edge(e->word), gl);
	uint64_t rv = atomic_load(&ctx.l.ring[ue % LRING]);

	if (e->kind == RS_EVENT_STOP && gl < ue)
		violation(V_LISTENER, "%s: %s event %" PRIu64 " read, but the listeners have "
				      "run only up to edge %" PRIu64,
			  r->name, kind_str(e->kind), e->seq, gl);
	if ((uint32_t)(rv >> 32) == (uint32_t)ue && (uint32_t)rv != enc_state(&e->state))
		violation(V_LISTENER, "%s: event %" PRIu64 " carries state 0x%08x, its listeners "
				      "got 0x%08x", r->name, e->seq, enc_state(&e->state),
			  (uint32_t)rv);
}

/* A STOP or RESUME event. */
static void evr_event(struct evr *r, const struct rs_event *e)
{
	enum rs_event_kind want = e->seq & 1 ? RS_EVENT_RESUME : RS_EVENT_STOP;

	if (e->seq != r->expect)
		violation(V_EVENTS, "%s: event %" PRIu64 " follows %" PRIu64 " (expected %" PRIu64
				    ")", r->name, e->seq, r->expect - 1, r->expect);
	if (e->kind != want)
		violation(V_EVENTS, "%s: event %" PRIu64 " is %s: edge %" PRIu64 " is a %s edge",
			  r->name, e->seq, kind_str(e->kind), e->seq,
			  want == RS_EVENT_STOP ? "stop" : "start");
	/* The word just after the edge's CAS: its running flag says which
	 * kind, its edge counter's parity too, and the counter goes up by one
	 * from the event before (when no record came in between). */
	if (rsu_running(e->word) != (e->kind == RS_EVENT_RESUME) ||
	    (rsu_edge(e->word) & 1) != (e->seq & 1) ||
	    (r->last_edge && r->expect == e->seq && r->last_seq + 1 == e->seq &&
	     rsu_edge(e->word) != (uint32_t)(r->last_edge + 1))) {
		violation(V_EVENTS, "%s: event %" PRIu64 " (%s) carries word 0x%016" PRIx64
				    " (edge %u, %s)", r->name, e->seq, kind_str(e->kind), e->word,
			  rsu_edge(e->word), rsu_running(e->word) ? "running" : "stopped");
	} else {
		struct rs_state d = { .size = sizeof(d) };

		rs_decode(e->word, &d);
		if (d.running != e->state.running || d.edge != e->state.edge ||
		    d.locks != e->state.locks || d.pause != e->state.pause ||
		    d.io_error != e->state.io_error)
			violation(V_EVENTS, "%s: event %" PRIu64 ": state differs from its decoded "
					    "word 0x%016" PRIx64, r->name, e->seq, e->word);
	}
	if (e->time_ns < r->last_time)
		violation(V_EVENTS, "%s: event %" PRIu64 " is older than the one before it",
			  r->name, e->seq);
	if (ctx.cfg.listeners)
		evr_listener_check(r, e);
	r->last_time = e->time_ns;
	r->expect = e->seq + 1;
	r->last_seq = e->seq;
	r->last_edge = unwrap_edge(rsu_edge(e->word), r->last_edge);
	atomic_fetch_add(r->n_events, 1);
}

/* What one rs_events_read() returned: n records from cursor `before`, and
 * the loss it reported through *lost (lost_null: it was called with NULL). */
static void evr_check(struct evr *r, const struct rs_event *buf, int n, uint64_t before,
		      uint64_t lost, bool lost_null)
{
	if (lost) {
		atomic_fetch_add(r->n_lost, lost);
		r->expect = before + lost;
		if (n > 0 && buf[0].seq != r->expect)
			violation(V_EVENTS, "%s: after a loss of %" PRIu64 " from cursor %" PRIu64
					    ", the first event is %" PRIu64 ", not %" PRIu64,
				  r->name, lost, before, buf[0].seq, r->expect);
	}
	for (int i = 0; i < n; i++) {
		if (buf[i].kind == RS_EVENT_LOST)
			evr_lost_record(r, &buf[i], i, lost_null);
		else
			evr_event(r, &buf[i]);
	}
	if (n > 0 || lost) {
		uint64_t w = rs_word(ctx.rs);
		uint32_t we = rsu_edge(w), s = (uint32_t)r->last_edge;

		/* An event is produced after its edge: the word's edge is at
		 * or beyond it (while edges are coalesced, the counter may sit
		 * one below the last edge that joined the backlog). */
		if (r->last_seq && (w & RS_W_OVERFLOW ? edge_lt(we + 1, s) : edge_lt(we, s)))
			violation(V_EVENTS, "%s: event %" PRIu64 " (edge counter %u) seen before "
					    "the word reached it (edge %u)",
				  r->name, r->last_seq, s, we);
	}
}

/* Read everything there is, checking it: rng picks how many records each
 * call asks for (NULL: full batches), lost_null passes lost == NULL (losses
 * come as records).  Returns the number of calls that returned something. */
static int evr_drain(struct evr *r, struct rsu_rng *rng, bool lost_null)
{
	struct rs_event buf[64];
	int calls = 0;

	for (;;) {
		uint64_t lost = 0, before = r->cursor;
		size_t want = rng ? 1 + (size_t)rsu_rng_below(rng, 16) : 64;
		int n = events_read(&r->cursor, buf, want, lost_null ? NULL : &lost);

		if (n < 0) {
			bad_result("rs_events_read", n);
			return calls;
		}
		evr_check(r, buf, n, before, lost, lost_null);
		if (n == 0 && !lost)
			return calls;
		calls++;
	}
}

/* Sometimes a reader naps long enough for the ring to overwrite events. */
static void evr_nap(struct thr *t, double p)
{
	if (atomic_load(&ctx.stop) || !rsu_rng_chance(&t->rng, p))
		return;
	uint64_t end = rsu_now_ns() + (uint64_t)rsu_rng_range(&t->rng, 20 * MS, 150 * MS);

	INC(ctx.stats.ef_naps);
	set_op(t, "nap");
	while (rsu_now_ns() < end && !atomic_load(&ctx.stop))
		rsu_sleep_ns(2 * MS);
}

/* rs_events_wait(r->cursor, to), called at t0 when the next event to
 * produce was c0, timed out at t1. */
static void evwait_timed_out(const struct evr *r, uint64_t c0, int64_t to, uint64_t t0,
			     uint64_t t1)
{
	struct rs_event ev;
	uint64_t peek = r->cursor, lost = 0;

	if (c0 > r->cursor)
		violation(V_EVENTS, "rs_events_wait(cursor %" PRIu64 ") timed out, but event %"
				    PRIu64 " existed before the call", r->cursor, c0 - 1);
	if (to != RS_ASYNC && t1 - t0 < (uint64_t)to)
		violation(V_EVENTS, "rs_events_wait timed out after %.3f ms, before its timeout "
				    "of %.3f ms", (double)(t1 - t0) / 1e6, (double)to / 1e6);
	/* A wake-up slept through: an event produced well before the wait
	 * gave up (the bound is the liveness bound). */
	if (events_read(&peek, &ev, 1, &lost) == 1 && !lost && ev.time_ns >= t0 &&
	    ev.time_ns + (uint64_t)ctx.cfg.live_ns < t1)
		violation(V_EVENTS, "rs_events_wait(cursor %" PRIu64 ") slept through event %"
				    PRIu64 ", produced %.1f ms before it timed out",
			  r->cursor, ev.seq, (double)(t1 - ev.time_ns) / 1e6);
}

/*
 * The blocking reader.  rs_events_wait(cursor) must return 0 at once when
 * an event >= cursor already exists, must then have something to read,
 * must not time out early, and must not sleep through an event for long.
 */
void *evwait_main(void *arg)
{
	struct thr *t = &ctx.thr[THR_EVWAIT];
	struct evr *r = &ctx.ew_reader;

	(void)arg;
	while (!atomic_load(&ctx.cons_exit)) {
		uint64_t c0, t0, t1;
		int64_t to;
		int res;

		set_op(t, NULL);
		evr_nap(t, 0.01);
		/* Long waits (beyond the liveness bound, the limit on a
		 * wake-up's delay) only while the run goes on: the teardown
		 * does not wait for them. */
		switch (rsu_rng_below(&t->rng, 10)) {
		case 0: to = RS_ASYNC; break;
		case 1: case 2:
			if (!atomic_load(&ctx.stop)) {
				to = ctx.cfg.live_ns + rsu_rng_range(&t->rng, 50 * MS, 200 * MS);
				break;
			}
			/* fall through */
		default: to = rsu_rng_range(&t->rng, 1 * MS, 20 * MS);
		}
		c0 = rs_events_cursor(ctx.rs);
		set_op(t, "rs_events_wait");
		t0 = rsu_now_ns();
		res = rs_events_wait(ctx.rs, r->cursor, to);
		t1 = rsu_now_ns();
		INC(ctx.stats.ew_calls);
		if (res == RS_ETIMEDOUT) {
			INC(ctx.stats.ew_timeouts);
			evwait_timed_out(r, c0, to, t0, t1);
			continue;
		}
		if (res) {
			bad_result("rs_events_wait", res);
			continue;
		}
		INC(ctx.stats.ew_woken);
		set_op(t, "read");
		if (!evr_drain(r, &t->rng, false))
			violation(V_EVENTS, "rs_events_wait(cursor %" PRIu64 ") returned 0, but "
					    "rs_events_read() found nothing", r->cursor);
	}
	set_op(t, "final drain");
	evr_drain(r, &t->rng, false);
	set_op(t, NULL);
	return NULL;
}

/*
 * The main-loop reader: poll the eventfd, read it (clearing the
 * readiness), then drain with lost == NULL.  An unread event with the fd
 * not readable is an eventfd write still to come; for longer than twice
 * the liveness bound, it is a missed notification.
 */
void *evfd_main(void *arg)
{
	struct thr *t = &ctx.thr[THR_EVFD];
	struct evr *r = &ctx.ef_reader;
	uint64_t stale_since = 0;
	int fd, fd2;

	(void)arg;
	set_op(t, "rs_events_fd");
	fd = rs_events_fd(ctx.rs);
	fd2 = rs_events_fd(ctx.rs);
	if (fd < 0 || fd2 != fd) {
		violation(V_RESULT, "rs_events_fd returned %d, then %d", fd, fd2);
		fd = -1;
	}
	while (fd >= 0 && !atomic_load(&ctx.cons_exit)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t pending, now, v = 0;
		ssize_t k;
		int pr;

		set_op(t, NULL);
		evr_nap(t, 0.02);
		/* Events below this exist now. */
		pending = rs_events_cursor(ctx.rs);
		set_op(t, "poll");
		pr = poll(&p, 1, (int)rsu_rng_range(&t->rng, 1, 20));
		INC(ctx.stats.ef_polls);
		now = rsu_now_ns();
		if (pr < 0) {
			if (errno != EINTR)
				violation(V_RESULT, "poll on the events fd: %s", strerror(errno));
			continue;
		}
		if (pr == 0) {
			if (pending <= r->cursor)
				stale_since = 0;
			else if (!stale_since)
				stale_since = now;
			else if (now - stale_since > 2 * (uint64_t)ctx.cfg.live_ns)
				violation(V_EVENTS, "the events fd has not been readable for %.0f "
						    "ms while event %" PRIu64 " is unread",
					  (double)(now - stale_since) / 1e6, r->cursor);
			continue;
		}
		stale_since = 0;
		INC(ctx.stats.ef_ready);
		/* Clear first, then drain: nothing is missed that way. */
		k = read(fd, &v, sizeof(v));
		if (k != (ssize_t)sizeof(v) || v == 0)
			violation(V_RESULT, "the events fd polled readable, but read returned %zd "
					    "(%s)", k, k < 0 ? strerror(errno) : "no count");
		set_op(t, "read");
		evr_drain(r, &t->rng, true);
	}
	set_op(t, "final drain");
	evr_drain(r, &t->rng, true);
	set_op(t, NULL);
	return NULL;
}

/* The monitor's reader: rs_events_read() every 2 ms, lost != NULL. */
void read_events(void)
{
	evr_drain(&ctx.mon_reader, NULL, false);
	atomic_store(&ctx.stats.last_seq, ctx.mon_reader.last_seq);
}

void final_reader(const struct evr *r, uint64_t w)
{
	struct rs_stats ls = { .size = sizeof(ls) };

	/* Every edge has its event or is covered by a record of loss, and
	 * the last event is at the word's edge counter. */
	if (rs_get_stats(ctx.rs, &ls) == 0 && r->expect - 1 != ls.stop_edges + ls.start_edges)
		violation(V_EVENTS, "%s: the events end at seq %" PRIu64 ", but %" PRIu64 " edges "
				    "were made", r->name, r->expect - 1,
			  ls.stop_edges + ls.start_edges);
	if (r->last_seq == r->expect - 1 && (uint32_t)r->last_edge != rsu_edge(w))
		violation(V_EVENTS, "%s: the last event's edge counter is %u, the word's %u",
			  r->name, (uint32_t)r->last_edge, rsu_edge(w));
}

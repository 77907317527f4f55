/* SPDX-License-Identifier: MIT */
/*
 * runstate-stress: listeners, the checks every listener call makes, and the
 * churn thread that adds and removes listeners all along.
 */
#include <inttypes.h>
#include <string.h>

#include "stress.h"

/* ---------------------------------------------------------------------------
 * Listeners
 *
 * --listeners N persistent listeners are added before the first edge and
 * stay to the end.  The churn thread adds and removes others all along,
 * and listeners add and remove some (themselves included) from inside a
 * run, call the query API and, now and then, rs_stop(RS_ASYNC) or
 * rs_start().  Every call checks, for the run it belongs to:
 *
 *   - runs never overlap (one call at a time), edges come in order, and
 *     within an edge the order is ascending priority on a start,
 *     descending on a stop (ties: the order of adding, reversed on a
 *     stop); a run skips edges only when the library coalesced them (an
 *     odd number in between, so that runs still alternate, and no more in
 *     all than rs_get_stats() says were coalesced);
 *   - each listener sees consecutive runs from its first to its last: no
 *     run twice, none missed; it sees no run that began before it was
 *     added, and sees the first run at or after the first edge made after
 *     rs_listener_add() returned (added inside a run: exactly the next
 *     run);
 *   - after rs_listener_remove() returned (outside a listener) it is never
 *     called again, and it was called for every run that began before the
 *     call; removed inside edge e's run, it sees no edge after e;
 *   - the state is the edge's own (running == odd edge, settling), the
 *     same for every listener of the edge, and the same as the event's;
 *     the word is still settling; RESUME e (or the record of the
 *     coalesced run that ends at e) has been produced (start), STOP e has
 *     not (stop);
 *   - stop: every vCPU is out of guest code, and no guest code runs from
 *     the stop listeners of edge e - 1 to the end of the start listeners
 *     of edge e (no vCPU in a slice; slice counters, or KVM guest
 *     counters, unchanged), nor, when a stop edge came during a start's
 *     run, until that stop's listeners.
 */

static void listener_fn(void *opaque, bool running, const struct rs_state *s);

/* A decoded state in 32 bits, to compare states: locks, io-error,
 * settling, pause (the edge is kept beside it). */
uint32_t enc_state(const struct rs_state *s)
{
	return (s->locks & 0x3fu) | (s->io_error ? 1u << 6 : 0) | (s->settling ? 1u << 7 : 0) |
	       (uint32_t)s->pause << 8;
}

/* Was there a listener run for an edge in [a, b)?  From the ring of runs,
 * so only for ranges it still holds; else no. */
static bool run_between(uint64_t a, uint64_t b)
{
	for (uint64_t x = a; x < b && x < a + LRING; x++)
		if ((uint32_t)(atomic_load(&ctx.l.ring[x % LRING]) >> 32) == (uint32_t)x)
			return true;
	return false;
}

static void *lrec_opaque(int idx, uint32_t gen)
{
	return (void *)(((uintptr_t)gen << 16) | (uintptr_t)idx);
}

static int pick_prio(struct rsu_rng *r)
{
	static const int p[] = { -100, -50, -1, 0, 0, 1, 50, 100 };

	return p[rsu_rng_below(r, sizeof(p) / sizeof(p[0]))];
}

/*
 * Add a listener.  inside: from the listener run of edge u.  Returns the
 * record, or -1.
 */
int listener_add(bool inside, uint64_t u, int prio, bool persistent)
{
	struct lrec *l = NULL;
	rs_listener *h = NULL;
	int idx = -1, hi, r, lib_prio = prio;
	uint32_t gen;

	pthread_mutex_lock(&ctx.l.pool_m);
	hi = atomic_load(&ctx.l.hi);
	for (int i = 0; i < hi; i++)
		if (atomic_load(&ctx.l.recs[i].state) == LR_FREE) {
			idx = i;
			break;
		}
	if (idx < 0 && hi < LREC_MAX)
		atomic_store(&ctx.l.hi, (idx = hi) + 1);
	if (idx < 0) {
		pthread_mutex_unlock(&ctx.l.pool_m);
		return -1;
	}
	l = &ctx.l.recs[idx];
	gen = atomic_load(&l->gen) + 1;
	atomic_store(&l->gen, gen);
	atomic_store(&l->state, LR_ADDING);
	atomic_store(&l->prio, prio);
	atomic_store(&l->persistent, persistent);
	atomic_store(&l->h, NULL);
	atomic_store(&l->first, 0);
	atomic_store(&l->last, 0);
	atomic_store(&l->calls, 0);
	atomic_store(&l->dead_after, 0);
	atomic_store(&l->hi_first, persistent ? 1 : 0);
	atomic_store(&l->lo, inside ? u + 1 : atomic_load(&ctx.l.edge) + 1);
	atomic_store(&l->must_first, inside ? u + 1 : persistent ? 1 : 0);
	/* Ties run in the order of adding: the library numbers adds under its
	 * mutex, and this one (held across the call) makes ours the same. */
	atomic_store(&l->order, ++ctx.l.order);
	/* --plant order: one listener's priority is not the one the checker
	 * believes. */
	if (ctx.cfg.plant && !strcmp(ctx.cfg.plant, "order") && persistent && idx == 1)
		lib_prio = prio + 75;
	r = rs_listener_add(ctx.rs, listener_fn, lrec_opaque(idx, gen), lib_prio, &h);
	pthread_mutex_unlock(&ctx.l.pool_m);
	if (r) {
		bad_result("rs_listener_add", r);
		atomic_store(&l->state, LR_FREE);
		return -1;
	}
	atomic_store(&l->h, h);
	if (!inside && !persistent) {
		/* Any edge after the word's current one is made after this
		 * point: its run sees the listener. */
		uint64_t e = unwrap_edge(rsu_edge(rs_word(ctx.rs)), atomic_load(&ctx.l.edge));

		atomic_store(&l->hi_first, e + 1);
	}
	atomic_store(&l->state, LR_LIVE);
	if (!persistent) {
		int n = atomic_fetch_add(&ctx.l.dyn_live, 1) + 1;

		if ((uint64_t)n > atomic_load(&ctx.stats.l_max_live))
			atomic_store(&ctx.stats.l_max_live, (uint64_t)n);
	}
	INC(*(inside ? &ctx.stats.l_add_in : &ctx.stats.l_add_out));
	return idx;
}

/* The first edge a listener had to see, or 0 if unknown yet. */
static uint64_t lrec_bound(struct lrec *l)
{
	uint64_t m = atomic_load(&l->must_first);

	return m ? m : atomic_load(&l->hi_first);
}

/* Checks once a listener is gone: it saw every edge up to `through` that
 * it had to see (runs that began before it was removed). */
static void lrec_gone_check(struct lrec *l, int idx, uint64_t through, const char *how)
{
	uint64_t b = lrec_bound(l), first = atomic_load(&l->first), last = atomic_load(&l->last);

	if (b && b <= through && last < through)
		violation(V_LISTENER, "listener #%d (prio %d) %s; edges %" PRIu64 "..%" PRIu64
				      " ran with it in their set, yet it was last called for "
				      "edge %" PRIu64, idx, atomic_load(&l->prio), how, b, through,
			  last);
	if (first && b && first > b && run_between(b, first))
		violation(V_LISTENER, "listener #%d (prio %d) was first called for edge %" PRIu64
				      ", but a run at or after edge %" PRIu64 " had it in its set",
			  idx, atomic_load(&l->prio), first, b);
}

/* Remove a listener from outside any listener. */
static void listener_remove(int idx)
{
	struct lrec *l = &ctx.l.recs[idx];
	int expect = LR_LIVE, r;
	uint64_t began;

	if (!atomic_compare_exchange_strong(&l->state, &expect, LR_REMOVING))
		return;
	/* Every run up to this edge began before the call: once the remove
	 * returns, they are over and each of them called the listener. */
	began = atomic_load(&ctx.l.edge);
	if (ctx.cfg.plant && !strcmp(ctx.cfg.plant, "remove")) {
		/* --plant remove: believe it removed before it is. */
		atomic_store(&l->state, LR_REMOVED);
		rsu_sleep_ns(2 * MS);
	}
	r = rs_listener_remove(ctx.rs, atomic_load(&l->h));
	if (r)
		bad_result("rs_listener_remove of a current listener", r);
	/* Release: a call that sees REMOVED came after the return. */
	atomic_store_explicit(&l->state, LR_REMOVED, memory_order_release);
	lrec_gone_check(l, idx, began, "was removed");
	if (!atomic_load(&l->persistent))
		atomic_fetch_sub(&ctx.l.dyn_live, 1);
	INC(ctx.stats.l_rm_out);
	atomic_store(&l->state, LR_FREE);
}

/* Records removed inside a run, once that run is over: final checks, then
 * free.  With all, every one (the end of the run). */
static void listener_retire(bool all)
{
	int hi = atomic_load(&ctx.l.hi);
	uint64_t gl = atomic_load(&ctx.l.edge);

	for (int i = 0; i < hi; i++) {
		struct lrec *l = &ctx.l.recs[i];
		uint64_t da;

		if (atomic_load(&l->state) != LR_REMOVED_IN)
			continue;
		da = atomic_load(&l->dead_after);
		if (!all && gl <= da)
			continue;   /* its last run may still be going on */
		lrec_gone_check(l, i, da, "was removed inside a run");
		atomic_store(&l->state, LR_FREE);
	}
}

/* A live non-persistent listener, at random, or -1. */
static int pick_dynamic(struct rsu_rng *r)
{
	int hi = atomic_load(&ctx.l.hi), start;

	if (!hi)
		return -1;
	start = (int)rsu_rng_below(r, (uint64_t)hi);
	for (int k = 0; k < hi; k++) {
		int i = (start + k) % hi;

		if (atomic_load(&ctx.l.recs[i].state) == LR_LIVE &&
		    !atomic_load(&ctx.l.recs[i].persistent))
			return i;
	}
	return -1;
}

/* An asynchronous command from inside a listener, recorded for the
 * linearizability check (skipped while the gate is closed). */
static void listener_command(int kind)
{
	struct opctx c;
	int r;

	if (!op_begin(&ctx.thr[THR_LISTENER], &c, kind, 0, 0, RS_ASYNC, true))
		return;
	if (kind == LIN_STOP) {
		INC(ctx.stats.l_stop_in);
		r = rs_stop(ctx.rs, RS_ASYNC);
	} else {
		INC(ctx.stats.l_start_in);
		r = rs_start(ctx.rs, 0);
	}
	op_end(&c, r);
	if (kind == LIN_STOP && r)
		bad_result("rs_stop(RS_ASYNC) from a listener", r);
	if (kind == LIN_START && r && r != RS_ENEEDFORCE && r != RS_ENEEDRESET)
		bad_result("rs_start from a listener", r);
}

/* The vCPUs, from a listener of edge e (unwrapped u); w: the word now. */
static void listener_vcpus(uint64_t u, uint32_t e, bool running, uint64_t w)
{
	uint64_t se = atomic_load(&ctx.l.snap_edge);
	uint64_t prev = atomic_load(&ctx.l.prev), prev2 = atomic_load(&ctx.l.prev2);
	/*
	 * Counters to compare with: on a start, the ones the stop listeners
	 * of the edge before left; on a stop, those of this run's earlier
	 * calls, or, if the stop edge came while the start listeners before
	 * it ran, those of the stop before that: the start never let a vCPU
	 * run ("a stop made during a start's listeners waits its turn").
	 * Before edge 1 no guest code ever ran: all zero.  ("Before" is the
	 * previous run: edges coalesced in between ran none.  But a stop edge
	 * that came during a start's run may have been coalesced away, with
	 * no net change, and then vCPUs ran: that case is only this stop
	 * edge coming right after the start.)
	 */
	bool norun = atomic_load(&ctx.l.norun) == prev && u == prev + 1;
	bool have = running ? se == prev : se == u || (se == prev2 && norun);
	char gb[40];

	if (running && edge_lt(e, rsu_edge(w)))
		atomic_store(&ctx.l.norun, u);
	if (!running && se == prev2 && norun)
		INC(ctx.stats.l_norun);

	INC(ctx.stats.l_checks);
	for (int i = 0; i < ctx.nslots; i++) {
		uint32_t g = vc_in_guest(i);
		uint64_t c = vc_count(i);

		if (g)
			violation(V_LISTENER, "a %s listener of edge %u runs while vCPU slot %d "
					      "is in guest (%s)", running ? "start" : "stop", e, i,
				  in_guest_str(g, gb, sizeof(gb)));
		/*
		 * No stamp verdict: a vCPU still active from before the stop
		 * may start one more slice after the next start's CAS, stamped
		 * with that start's edge, and only then go out; its stop and
		 * start listeners legitimately run after that.  What must not
		 * happen is a slice starting after the stop listeners: the
		 * counters.  The stamp says where such a slice came from.
		 */
		if (have && c != atomic_load(&ctx.l.snap[i])) {
			uint32_t sp = ctx.cfg.kvm ? 0 : atomic_load(&ctx.vcpus[i].stamp);
			char sb[48] = "";

			if (sp)
				snprintf(sb, sizeof(sb), ", last slice stamped edge %u", sp - 1);
			violation(V_LISTENER, "a %s listener of edge %u: vCPU slot %d ran guest "
					      "code since the stop listeners of edge %" PRIu64
					      " (%s %" PRIu64 " -> %" PRIu64 "%s)",
				  running ? "start" : "stop", e, i, se,
				  ctx.cfg.kvm ? "guest counter" : "slices",
				  atomic_load(&ctx.l.snap[i]), c, sb);
		}
		if (!running)
			atomic_store(&ctx.l.snap[i], c);
	}
	if (!running)
		atomic_store(&ctx.l.snap_edge, u);
}

/* The edge counter (unwrapped near ref) of the newest event or record of
 * coalesced edges, or UINT64_MAX if there is none (or it is a reader-side
 * record). */
static uint64_t newest_record_edge(uint64_t ref)
{
	struct rs_event ev;
	uint64_t cursor = rs_events_cursor(ctx.rs) - 1;

	if (!cursor || events_read(&cursor, &ev, 1, NULL) != 1 || !ev.word)
		return UINT64_MAX;
	return unwrap_edge(rsu_edge(ev.word), ref);
}

/*
 * The run a call for edge e belongs to (returned unwrapped): a new one, or
 * the current one, whose calls go in priority order.
 */
static uint64_t listener_run(uint32_t e, bool running, const struct rs_state *s, int prio,
			     uint64_t order)
{
	uint64_t gl = atomic_load(&ctx.l.edge), u = unwrap_edge(e, gl);

	if (u > gl) {
		/* A new run.  Edges in between were coalesced: an odd jump,
		 * so that runs alternate (totals checked at the end). */
		if (u != gl + 1) {
			if (!((u - gl) & 1))
				violation(V_LISTENER, "a listener ran for edge %" PRIu64 " right "
						      "after the run of edge %" PRIu64 ": runs no "
						      "longer alternate", u, gl);
			atomic_fetch_add(&ctx.l.skipped, u - gl - 1);
			INC(ctx.stats.l_coalesced_runs);
		}
		atomic_store(&ctx.l.prev2, atomic_load(&ctx.l.prev));
		atomic_store(&ctx.l.prev, gl);
		atomic_store(&ctx.l.edge, u);
		if (!atomic_fetch_add(&ctx.l.runs, 1))
			atomic_store(&ctx.l.first, u);
		INC(ctx.stats.l_edges);
		atomic_store(&ctx.l.ring[u % LRING], (u << 32) | enc_state(s));
	} else if (u == gl && gl) {
		int pp = atomic_load(&ctx.l.prev_prio);
		uint64_t po = atomic_load(&ctx.l.prev_order);
		uint64_t rv = atomic_load(&ctx.l.ring[u % LRING]);
		bool ok = running ? prio > pp || (prio == pp && order > po)
				  : prio < pp || (prio == pp && order < po);

		if (!ok)
			violation(V_LISTENER, "%s edge %u: a listener of priority %d (added #%"
					      PRIu64 ") ran after one of priority %d (#%" PRIu64
					      "); expected %s priority",
				  running ? "start" : "stop", e, prio, order, pp, po,
				  running ? "ascending" : "descending");
		if ((uint32_t)(rv >> 32) == (uint32_t)u && (uint32_t)rv != enc_state(s))
			violation(V_LISTENER, "edge %u: listeners got different states (0x%08x, "
					      "then 0x%08x)", e, (uint32_t)rv, enc_state(s));
	} else {
		violation(V_LISTENER, "a listener ran for edge %" PRIu64 " right after the run "
				      "of edge %" PRIu64 ": out of order or twice", u, gl);
	}
	atomic_store(&ctx.l.prev_prio, prio);
	atomic_store(&ctx.l.prev_order, order);
	return u;
}

/* Listener #idx's own edges: the record l (NULL: out of range) of
 * generation gen, called for edge u. */
static void listener_own(struct lrec *l, int idx, uint32_t gen, int prio, uint64_t u)
{
	int lst;
	uint64_t last, da, lo, mf, hf, prev;

	if (!l || atomic_load(&l->gen) != gen) {
		violation(V_LISTENER, "listener #%d (generation %u) called for edge %" PRIu64
				      " after its rs_listener_remove() returned (record reused)",
			  idx, gen, u);
		return;
	}
	lst = atomic_load_explicit(&l->state, memory_order_acquire);
	last = atomic_load(&l->last);
	da = atomic_load(&l->dead_after);
	lo = atomic_load(&l->lo);
	mf = atomic_load(&l->must_first);
	hf = atomic_load(&l->hi_first);
	prev = atomic_load(&ctx.l.prev);
	if (lst == LR_REMOVED || lst == LR_FREE)
		violation(V_LISTENER, "listener #%d (prio %d) called for edge %" PRIu64
				      " after its rs_listener_remove() returned", idx, prio, u);
	if ((lst == LR_REMOVING_IN || lst == LR_REMOVED_IN) && da && u > da)
		violation(V_LISTENER, "listener #%d (prio %d), removed inside the run of edge "
				      "%" PRIu64 ", called for edge %" PRIu64, idx, prio, da, u);
	if (!last) {
		if (u < lo)
			violation(V_LISTENER, "listener #%d (prio %d) called for edge %" PRIu64
					      ", whose run began before it was added",
				  idx, prio, u);
		else if (mf && prev != mf - 1)
			violation(V_LISTENER, "listener #%d (prio %d) first called for edge %"
					      PRIu64 ", not in the run right after edge %" PRIu64
					      "'s, where it was added", idx, prio, u, mf - 1);
		else if (hf && prev >= hf)
			violation(V_LISTENER, "listener #%d (prio %d) first called for edge %"
					      PRIu64 ": the run of edge %" PRIu64 ", made after it "
					      "was added, did not call it", idx, prio, u, prev);
		atomic_store(&l->first, u);
	} else if (last != prev) {
		violation(V_LISTENER, "listener #%d (prio %d) called for edge %" PRIu64
				      " after edge %" PRIu64 ": %s",
			  idx, prio, u, last, u <= last ? "twice or out of order" : "runs missed");
	}
	atomic_store(&l->last, u);
	INC(l->calls);
}

/* The edge's state, the word, the events, the vCPUs. */
static void listener_state(uint64_t u, uint32_t e, bool running, const struct rs_state *s)
{
	uint64_t w = rs_word(ctx.rs);
	uint64_t newest = newest_record_edge(u);
	uint64_t prev = atomic_load(&ctx.l.prev);

	if (s->running != running || (e & 1) != (uint32_t)running || !s->settling || s->may_run)
		violation(V_LISTENER, "a listener of edge %u got running=%d with state running=%d "
				      "settling=%d may_run=%d",
			  e, running, s->running, s->settling, s->may_run);
	if (!rsu_settling(w) || edge_lt(rsu_edge(w) + ((w & RS_W_OVERFLOW) ? 1 : 0), e))
		violation(V_LISTENER, "a listener of edge %u runs while the word is 0x%016" PRIx64
				      " (edge %u, %s)", e, w, rsu_edge(w),
			  rsu_settling(w) ? "settling" : "settled");
	/* RESUME (or the record of the coalesced run ending here) comes
	 * before the start listeners; STOP (or that record) after the stop
	 * listeners, and every edge before this run's has its event or
	 * record.  (The newest record cannot change meanwhile: records are
	 * produced by the settler, which is running this listener.) */
	if (newest != UINT64_MAX && (running ? newest != u : newest < prev || newest >= u))
		violation(V_LISTENER, "a %s listener of edge %u runs when the newest event is at "
				      "edge %" PRIu64 " (expected %s)",
			  running ? "start" : "stop", e, newest,
			  running ? "this edge" : "between the previous run and this edge");
	listener_vcpus(u, e, running, w);
}

/* What a device model may do from a listener of edge e (unwrapped u):
 * queries, asynchronous commands, adding and removing listeners (now and
 * then itself, l, #idx). */
static void listener_acts(struct lrec *l, int idx, uint64_t u, uint32_t e, bool running)
{
	struct rsu_rng *r = hook_rng();

	if (rsu_rng_chance(r, 0.25)) {
		unsigned reg = 0, out = 0;

		INC(ctx.stats.l_queries);
		rs_vcpu_count(ctx.rs, &reg, &out);
		if (out > reg || reg > (unsigned)ctx.nslots)
			violation(V_RESULT, "rs_vcpu_count from a listener: %u registered, %u out",
				  reg, out);
	}
	if (!atomic_load(&ctx.calm) && !atomic_load(&ctx.stop)) {
		if (rsu_rng_chance(r, 1.0 / 256)) {
			listener_command(LIN_STOP);
			/* (A stop edge during a start run: no vCPU may run
			 * before its own listeners.) */
			if (running && edge_lt(e, rsu_edge(rs_word(ctx.rs))))
				atomic_store(&ctx.l.norun, u);
		}
		else if (!running && rsu_rng_chance(r, 1.0 / 1024))
			listener_command(LIN_START);
	}
	listener_section_try();
	if (atomic_load(&ctx.stop))
		return;
	if (rsu_rng_chance(r, 1.0 / 128) && atomic_load(&ctx.l.dyn_live) < LDYN_MAX)
		listener_add(true, u, pick_prio(r), false);
	if (rsu_rng_chance(r, 1.0 / 128)) {
		int victim = l && !atomic_load(&l->persistent) && rsu_rng_chance(r, 0.25)
			     ? idx : pick_dynamic(r);
		int expect = LR_LIVE, rr;
		struct lrec *v = victim >= 0 ? &ctx.l.recs[victim] : NULL;

		if (!v || !atomic_compare_exchange_strong(&v->state, &expect, LR_REMOVING_IN))
			return;
		atomic_store(&v->dead_after, u);
		rr = rs_listener_remove(ctx.rs, atomic_load(&v->h));
		if (rr)
			bad_result("rs_listener_remove from a listener", rr);
		atomic_store(&v->state, LR_REMOVED_IN);
		atomic_fetch_sub(&ctx.l.dyn_live, 1);
		INC(ctx.stats.l_rm_in);
		if (victim == idx)
			INC(ctx.stats.l_rm_self);
	}
}

static void listener_fn(void *opaque, bool running, const struct rs_state *s)
{
	uintptr_t o = (uintptr_t)opaque;
	int idx = (int)(o & 0xffff);
	uint32_t gen = (uint32_t)(o >> 16), e = s->edge;
	struct lrec *l = idx < atomic_load(&ctx.l.hi) ? &ctx.l.recs[idx] : NULL;
	uint64_t t0 = rsu_now_ns(), u;
	int prio = l ? atomic_load(&l->prio) : 0;
	uint64_t order = l ? atomic_load(&l->order) : 0;

	if (atomic_fetch_add(&ctx.l.inflight, 1) != 0)
		violation(V_LISTENER, "two listener calls overlap (one for edge %u)", e);
	atomic_store(&ctx.l.enter_ns, t0);
	INC(ctx.stats.l_calls);
	u = listener_run(e, running, s, prio, order);
	listener_own(l, idx, gen, prio, u);
	listener_state(u, e, running, s);
	listener_acts(l, idx, u, e, running);
	hist_add(&ctx.stats.listener_lat, rsu_now_ns() - t0);
	atomic_store(&ctx.l.enter_ns, 0);
	atomic_fetch_sub(&ctx.l.inflight, 1);
}

void *churn_main(void *arg)
{
	struct thr *t = &ctx.thr[THR_CHURN];

	(void)arg;
	while (!atomic_load(&ctx.stop)) {
		int n;

		set_op(t, NULL);
		rsu_sleep_ns(rsu_rng_range(&t->rng, 200 * US, 3 * MS));
		listener_retire(false);
		n = atomic_load(&ctx.l.dyn_live);
		if (n < 2 || (n < LDYN_MAX && rsu_rng_below(&t->rng, 2))) {
			set_op(t, "rs_listener_add");
			listener_add(false, 0, pick_prio(&t->rng), false);
		} else {
			int i = pick_dynamic(&t->rng);

			set_op(t, "rs_listener_remove");
			if (i >= 0)
				listener_remove(i);
		}
	}
	set_op(t, NULL);
	return NULL;
}

/* After the run: every listener left is removed from outside (with the
 * removal checks), and the runs add up. */
void listeners_final(uint64_t w)
{
	uint64_t gl = atomic_load(&ctx.l.edge), u = unwrap_edge(rsu_edge(w), gl);
	uint64_t runs = atomic_load(&ctx.l.runs);
	struct rs_stats ls = { .size = sizeof(ls) };
	rs_listener *gone = NULL;
	int hi = atomic_load(&ctx.l.hi), r;

	/* The last run is for the word's edge, or a coalesced run with no
	 * net change came after it. */
	if (gl > u || ((u - gl) & 1))
		violation(V_LISTENER, "the last listener run was for edge %" PRIu64 ", but the "
				      "word is at edge %" PRIu64, gl, u);
	if (rs_get_stats(ctx.rs, &ls) == 0 &&
	    atomic_load(&ctx.l.skipped) + (u - gl) > ls.coalesced)
		violation(V_LISTENER, "%" PRIu64 " edges had no listener run, but the library "
				      "coalesced only %" PRIu64,
			  atomic_load(&ctx.l.skipped) + (u - gl), ls.coalesced);
	for (int i = 0; i < hi; i++) {
		struct lrec *l = &ctx.l.recs[i];

		if (atomic_load(&l->state) != LR_LIVE)
			continue;
		if (atomic_load(&l->persistent) &&
		    (atomic_load(&l->first) != atomic_load(&ctx.l.first) ||
		     atomic_load(&l->calls) != runs))
			violation(V_LISTENER, "persistent listener #%d saw edges %" PRIu64 "..%"
					      PRIu64 " in %" PRIu64 " calls; there were %" PRIu64
					      " runs",
				  i, atomic_load(&l->first), atomic_load(&l->last),
				  atomic_load(&l->calls), runs);
		gone = atomic_load(&l->h);
		listener_remove(i);
	}
	listener_retire(true);
	/* A handle already removed is not a listener any more. */
	if (gone && (r = rs_listener_remove(ctx.rs, gone)) != RS_EINVAL)
		violation(V_RESULT, "rs_listener_remove of a removed listener returned %d, not "
				    "RS_EINVAL", r);
}

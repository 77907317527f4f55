/* SPDX-License-Identifier: MIT */
/*
 * runstate-stress: exclusive sections (--exclusive).  Section threads
 * begin a section, hold it for a while (now and then making a command
 * inside it), and end it; vCPU threads now and then begin one from their
 * loop, run a few guest slices of their own through rs_vcpu_enter(), and
 * end it.  Listeners try one and must be refused.  The checks, all of kind
 * `section` (docs/stress.md, section 2):
 *
 *   (a) exclusion: from begin's return until end, no vCPU but the owner's
 *       is in a guest slice or starts one, and the word's section bit is
 *       set;
 *   (b) the owner runs: a vCPU owner's rs_vcpu_enter() does not stay
 *       parked while only its section keeps vCPUs out (the monitor decides
 *       it, excl_liveness());
 *   (c) no change: when no command was in flight or begun from before
 *       begin until after end, the word's tuple and edge, the event cursor
 *       and the listener calls are what they were;
 *   (d) one holder: at most one thread holds a section at a time.
 */
#include <inttypes.h>
#include <string.h>

#include "stress.h"

/* A section as its thread sees it. */
struct xsec {
	struct thr *t;
	int me;                  /* the thread's index: the holder mark */
	int owner_slot;          /* the owner's vCPU slot; -1 for a section thread */
	uint64_t cmds;           /* ctx.cmds before begin */
	uint64_t w1, ev1, lc1;   /* word, event cursor, listener calls before begin */
	uint64_t w_held;         /* the word right after begin returned 0 */
	uint64_t begun_ns;
	uint64_t c[MAX_VCPU_SLOTS];  /* guest progress when begin returned */
};

static void xsec_init(struct xsec *x, struct thr *t, int owner_slot)
{
	x->t = t;
	x->me = (int)(t - ctx.thr);
	x->owner_slot = owner_slot;
}

/* Threads in a section or waiting for one keep vCPUs out legitimately:
 * the liveness check restarts its clocks when it sees one (monitor.c). */
static void busy_inc(void)
{
	atomic_fetch_add(&ctx.excl_busy, 1);
	atomic_fetch_add(&ctx.excl_gen, 1);
}

static void busy_dec(void)
{
	atomic_fetch_add(&ctx.excl_gen, 1);
	atomic_fetch_sub(&ctx.excl_busy, 1);
}

/* ---------------------------------------------------------------------------
 * The checks
 */

/* (c), first half: before begin.  ctx.cmds first (seq_cst), then the
 * word: every command counted as done has made its change before that
 * read, and one that starts later shows in the count read after end. */
static void section_before(struct xsec *x)
{
	x->cmds = atomic_load_explicit(&ctx.cmds, memory_order_seq_cst);
	x->w1 = rs_word(ctx.rs);
	x->ev1 = rs_events_cursor(ctx.rs);
	x->lc1 = atomic_load(&ctx.stats.l_calls);
}

/*
 * (c), after end.  Decidable only when no command was in flight before
 * begin, none began until after these reads (ctx.cmds read last), and
 * nothing was settling before begin (so no event or listener run of an
 * earlier edge was still to come).  Then a change of the edge, the tuple,
 * the event cursor or the listener calls is the section's.
 */
static void section_after(struct xsec *x)
{
	uint64_t w2 = rs_word(ctx.rs);
	uint64_t ev2 = rs_events_cursor(ctx.rs);
	uint64_t lc2 = atomic_load(&ctx.stats.l_calls);
	uint64_t cmds = atomic_load_explicit(&ctx.cmds, memory_order_seq_cst);
	char b1[160], b2[160];

	if ((x->cmds & (((uint64_t)1 << CMD_SHIFT) - 1)) ||
	    cmds >> CMD_SHIFT != x->cmds >> CMD_SHIFT || rsu_settling(x->w1))
		return;
	INC(ctx.stats.x_same);
	if (rsu_edge(w2) == rsu_edge(x->w1) && !((w2 ^ x->w1) & RS_W_STOPPED_MASK) &&
	    !rsu_settling(w2) && ev2 == x->ev1 && lc2 == x->lc1)
		return;
	violation(V_SECTION, "%s's section (%s) changed the run state with no command in flight: "
			     "word [%s] -> [%s], event cursor %" PRIu64 " -> %" PRIu64
			     ", listener calls %" PRIu64 " -> %" PRIu64,
		  x->t->name, x->owner_slot >= 0 ? "vCPU thread" : "section thread",
		  rsu_word_str(x->w1, b1, sizeof(b1)), rsu_word_str(w2, b2, sizeof(b2)), x->ev1,
		  ev2, x->lc1, lc2);
}

/* (d): the harness's mark of the holder, taken after begin returned 0 and
 * given up before end, so that a correct hand-over never overlaps. */
static void held_enter(struct xsec *x)
{
	int other = atomic_exchange(&ctx.excl_holder, x->me);

	if (other >= 0)
		violation(V_SECTION, "rs_exclusive_begin() returned 0 to %s while %s holds a "
				     "section", x->t->name, ctx.thr[other].name);
}

static void held_leave(struct xsec *x)
{
	int mine = x->me;

	if (!atomic_compare_exchange_strong(&ctx.excl_holder, &mine, -1))
		violation(V_SECTION, "%s holds a section, but %s was given one meanwhile",
			  x->t->name, mine >= 0 ? ctx.thr[mine].name : "(nobody)");
}

/*
 * (a), and (d) again: no vCPU but the owner's in guest, none started a
 * slice since begin returned (first: take the counts), the word's section
 * bit set, and the harness's holder still this thread.  The counts are
 * those of stop_check() and the lock holders: slices entered, or a KVM
 * guest's own counter.
 */
static void section_scan(struct xsec *x, bool first, const char *when)
{
	char gb[40], wb[160];
	uint64_t w;
	int h;

	INC(ctx.stats.x_scans);
	for (int i = 0; i < ctx.nslots; i++) {
		uint32_t g;
		uint64_t c;

		if (i == x->owner_slot)
			continue;
		g = vc_in_guest(i);
		c = vc_count(i);
		if (first)
			x->c[i] = c;
		if (!g && c == x->c[i])
			continue;
		violation(V_SECTION, "%s holds a section (begun at edge %u, %.3f ms ago; %s), yet "
				     "vCPU slot %d %s (%s %" PRIu64 " -> %" PRIu64 "%s%s)",
			  x->t->name, rsu_edge(x->w_held),
			  (double)(rsu_now_ns() - x->begun_ns) / 1e6, when, i,
			  g ? "is in guest" : "ran guest code",
			  ctx.cfg.kvm ? "guest counter" : "slices", x->c[i], c, g ? ", " : "",
			  g ? in_guest_str(g, gb, sizeof(gb)) : "");
		x->c[i] = c;
	}
	w = rs_word(ctx.rs);
	if (!(w & RS_W_EXCL))
		violation(V_SECTION, "%s holds a section, but the word's section bit reads clear "
				     "(%s; word [%s])", x->t->name, when,
			  rsu_word_str(w, wb, sizeof(wb)));
	h = atomic_load(&ctx.excl_holder);
	if (h != x->me)
		violation(V_SECTION, "%s holds a section, but the harness's holder mark reads %s "
				     "(%s)", x->t->name, h >= 0 ? ctx.thr[h].name : "nobody", when);
}

/* ---------------------------------------------------------------------------
 * Begin and end
 */

/* rs_exclusive_begin() with its result checked: 0 (then the section's
 * checks start), or RS_ETIMEDOUT from a try or a timed call, which must
 * have changed nothing: this thread holds no section. */
static int section_begin(struct xsec *x, int64_t timeout)
{
	uint64_t t0;
	int r, e;

	section_before(x);
	if (timeout == RS_ASYNC)
		INC(ctx.stats.x_tries);
	t0 = rsu_now_ns();
	r = rs_exclusive_begin(ctx.rs, timeout);
	if (r == 0) {
		x->begun_ns = rsu_now_ns();
		x->w_held = rs_word(ctx.rs);
		if (timeout != RS_ASYNC)
			hist_add(&ctx.stats.excl_lat, x->begun_ns - t0);
		held_enter(x);
		section_scan(x, true, "when begin returned");
		return 0;
	}
	if (r != RS_ETIMEDOUT) {
		bad_result("rs_exclusive_begin", r);
		return r;
	}
	if (timeout == RS_ASYNC)
		INC(ctx.stats.x_try_fail);
	else
		INC(ctx.stats.x_timeouts);
	e = rs_exclusive_end(ctx.rs);
	if (e != RS_ENOTHELD)
		violation(V_RESULT, "rs_exclusive_end() after a begin that timed out returned %d "
				    "(%s), not RS_ENOTHELD: the timeout left a section held",
			  e, rs_strerror(e));
	return r;
}

/* Now and then, a second begin inside the section must be refused. */
static void section_nested(struct xsec *x)
{
	int r;

	if (rsu_rng_below(&x->t->rng, 16))
		return;
	INC(ctx.stats.x_nested);
	r = rs_exclusive_begin(ctx.rs, rsu_rng_below(&x->t->rng, 2) ? RS_ASYNC : 1 * MS);
	if (r != RS_EDEADLK)
		violation(V_RESULT, "rs_exclusive_begin() by %s, which holds a section, returned "
				    "%d (%s), not RS_EDEADLK", x->t->name, r, rs_strerror(r));
}

static void section_end(struct xsec *x)
{
	int r;

	section_scan(x, false, "before end");
	held_leave(x);
	r = rs_exclusive_end(ctx.rs);
	if (r)
		bad_result("rs_exclusive_end by the holder", r);
	section_after(x);
}

/*
 * A section's timeout: a try, short or long timed waits.  Never forever:
 * a section may wait behind a vCPU owner parked in a stopped VM, and an
 * unplug (vCPU threads: at most 50 ms) or the teardown (section threads:
 * 2 s) must not wait for the next start, nor hang when a planted library
 * never wakes that owner.
 */
static int64_t section_timeout(struct rsu_rng *r, bool long_ok)
{
	switch (rsu_rng_below(r, 10)) {
	case 0: case 1:
		return RS_ASYNC;
	case 2:
		return rsu_rng_range(r, 20 * US, 300 * US);   /* may time out */
	case 3: case 4: case 5:
		return rsu_rng_range(r, 1 * MS, 4 * MS);
	default:
		return long_ok ? 2000 * MS : 50 * MS;
	}
}

/* ---------------------------------------------------------------------------
 * Sections from vCPU threads
 */

/*
 * The calm phase's vCPU section stops the VM itself after its first
 * slice; the calm phase's keeper continues it, and the claim that makes
 * the word runnable but for the section must wake the parked owner
 * (lib/exclusive.c: "a parked owner"), which excl_liveness() decides.
 * The vCPU halts first: out, it may wait at the gate without holding up a
 * synchronous stop of the round (a vCPU that is active never waits there).
 */
static void owner_stop(struct vcpu *v, struct thr *t)
{
	struct opctx c;
	int r;

	r = rs_vcpu_quiesce(&v->rv);
	if (r)
		bad_result("rs_vcpu_quiesce by a section owner", r);
	op_begin(t, &c, LIN_STOP, 0, 0, RS_ASYNC, false);
	INC(ctx.stats.x_owner_stops);
	r = rs_stop(ctx.rs, RS_ASYNC);
	op_end(&c, r);
	if (r)
		bad_result("rs_stop(RS_ASYNC) by a section owner", r);
}

/*
 * From the vCPU loop, with the vCPU active.  Begin takes the vCPU out;
 * each owner slice goes through rs_vcpu_enter(), as the owner's
 * rs_may_run() fails for the whole section.  No timeout is forever: an
 * unplug must not wait behind a section whose owner is parked in a
 * stopped VM.  calm: the calm phase's section, longer, with a stop of its
 * own.  Returns a request rs_vcpu_enter() gave (RS_VCPU_EXIT) or 0; the
 * caller goes back through rs_vcpu_enter() before its guest code.
 */
int vcpu_section(struct vcpu *v, struct thr *t, const sigset_t *run_mask, bool calm)
{
	struct xsec x;
	int req = 0, ran = 0, n;

	if (atomic_load_explicit(&v->exit_flag, memory_order_acquire))
		return 0;
	xsec_init(&x, t, v->index);
	INC(ctx.stats.x_vcpu_begins);
	busy_inc();
	set_op(t, "section: begin");
	if (section_begin(&x, calm ? 50 * MS : section_timeout(&t->rng, false))) {
		busy_dec();
		return 0;
	}
	INC(ctx.stats.x_vcpu);
	if (calm)
		INC(ctx.stats.x_vcpu_calm);
	n = calm ? 4 + (int)rsu_rng_below(&t->rng, 8) : 1 + (int)rsu_rng_below(&t->rng, 4);
	for (int k = 0; k < n; k++) {
		uint64_t w;
		int r;

		if (calm && k == 1)
			owner_stop(v, t);
		/* For (b): the monitor watches this call (excl_liveness()). */
		w = rs_word(ctx.rs);
		atomic_store(&v->xs_enter, ++v->xs_calls);
		set_op(t, "section: enter");
		r = rs_vcpu_enter(&v->rv);
		atomic_store(&v->xs_enter, 0);
		if (r == RS_VCPU_WORK) {
			INC(ctx.stats.work);
			continue;
		}
		/* (b), decided by the owner: the word let it run at the
		 * call, and the call let it run. */
		if (!r && (w & RS_W_NORUN_MASK) == RS_W_EXCL)
			INC(ctx.stats.x_owner_admitted);
		/* Parked by a stop in its section, woken by a start
		 * (lib/exclusive.c: "a parked owner"). */
		if (!r && !rsu_running(w))
			INC(ctx.stats.x_owner_woken);
		if (r) {
			if (r == RS_VCPU_EXIT)
				INC(ctx.stats.x_owner_exit);   /* unplugged: end, then leave */
			else
				bad_result("rs_vcpu_enter by a section owner", r);
			req = r;
			break;
		}
		set_op(t, "section: guest");
		run_slice(v, t, run_mask, true);
		INC(ctx.stats.x_owner_slices);
		ran++;
		section_scan(&x, false, "after an owner slice");
		if (atomic_load_explicit(&v->exit_flag, memory_order_acquire))
			break;
	}
	section_nested(&x);
	set_op(t, "section: end");
	section_end(&x);
	busy_dec();
	if (ran)
		INC(ctx.stats.x_owner_ran);
	else
		INC(ctx.stats.x_owner_none);
	set_op(t, "guest");
	return req;
}

/*
 * (b), from the monitor, every 2 ms, with the word w it read first: an
 * owner's rs_vcpu_enter() call x in progress (read after w), and only the
 * section bit keeping vCPUs out.  The clock starts at the first such
 * sample and runs while later samples find the same call in progress and
 * the word still only held by the section at the same edge.  No edge came
 * in between (the counter only grows; coalescing never brings it back), so
 * the VM was running and nothing settling all along: the owner must have
 * been admitted.  A clock older than --live-ms is a violation.
 */
void excl_liveness(uint64_t now, uint64_t w)
{
	bool only_excl = (w & RS_W_NORUN_MASK) == RS_W_EXCL;
	char wb[160];

	if (ctx.cfg.excl_vcpu_rate <= 0)
		return;
	for (int i = 0; i < ctx.nslots; i++) {
		struct vcpu *v = &ctx.vcpus[i];
		uint64_t x = atomic_load(&v->xs_enter);

		if (!x || !only_excl) {
			v->xs_since = 0;
			continue;
		}
		if (x != v->xs_seen || !v->xs_since || v->xs_edge != rsu_edge(w)) {
			v->xs_seen = x;
			v->xs_edge = rsu_edge(w);
			v->xs_since = now;
			continue;
		}
		INC(ctx.stats.x_owner_samples);
		if (now - v->xs_since > (uint64_t)ctx.cfg.live_ns) {
			violation(V_SECTION, "vCPU slot %d holds a section, and its "
					     "rs_vcpu_enter() has not admitted it for %.0f ms "
					     "while only the section kept vCPUs out (edge %u, "
					     "word [%s])",
				  i, (double)(now - v->xs_since) / 1e6, rsu_edge(w),
				  rsu_word_str(w, wb, sizeof(wb)));
			v->xs_since = now;
		}
	}
}

/* ---------------------------------------------------------------------------
 * Section threads
 */

/* Inside a section, now and then a command: a stop (a synchronous one
 * waits for every vCPU, the owner's included), a start, cont or retry
 * (the vCPUs stay out all the same). */
static void command_inside(struct thr *t)
{
	unsigned x = (unsigned)rsu_rng_below(&t->rng, 4);

	INC(ctx.stats.x_cmds_in);
	if (x == 0)
		do_stopping(t, LIN_STOP, 0, pick_timeout(&t->rng), "rs_stop in a section");
	else
		do_releasing(t, x == 1 ? LIN_START : x == 2 ? LIN_CONT : LIN_RETRY, 0);
}

static void mgmt_section(struct thr *t, int64_t timeout, bool storm)
{
	bool plant_edge = storm && ctx.cfg.plant && !strcmp(ctx.cfg.plant, "section-edge");
	struct xsec x;
	int64_t hold;
	int checks;

	xsec_init(&x, t, -1);
	busy_inc();
	set_op(t, "rs_exclusive_begin");
	if (section_begin(&x, timeout)) {
		busy_dec();
		return;
	}
	INC(ctx.stats.x_mgmt);
	set_op(t, "section held");
	hold = hold_plan(t, &checks);
	for (int k = 0; k < checks; k++) {
		hold_wait(t, hold / checks);
		if (storm && !atomic_load(&ctx.stop) && rsu_rng_below(&t->rng, 8) == 0) {
			command_inside(t);
			set_op(t, "section held");
		}
		if (plant_edge && k == 0) {
			/* --plant section-edge: edges no command counts, as
			 * if the section had made them (check (c) must see
			 * it; the linearizability check may too). */
			(void)rs_stop(ctx.rs, RS_ASYNC);
			(void)rs_cont(ctx.rs);
		}
		section_scan(&x, false, "while held");
	}
	section_nested(&x);
	set_op(t, "rs_exclusive_end");
	section_end(&x);
	busy_dec();
}

/*
 * A section thread.  Storm phases: sections with every timeout class, a
 * short pause between them.  Calm phases are the liveness windows: one
 * section at the start of each (after its end the vCPUs must run again,
 * which liveness checks), then none.  Joined after the teardown's cont
 * (main.c): a begin may wait behind a vCPU owner parked in a stopped VM.
 */
void *excl_main(void *arg)
{
	struct thr *t = arg;
	bool calm_done = false;

	while (!atomic_load(&ctx.stop)) {
		set_op(t, NULL);
		if (atomic_load(&ctx.calm)) {
			if (calm_done) {
				rsu_sleep_ns(1 * MS);
				continue;
			}
			calm_done = true;
			INC(ctx.stats.x_calm);
			mgmt_section(t, 2000 * MS, false);
			continue;
		}
		calm_done = false;
		between_ops(&t->rng);
		rsu_sleep_ns(rsu_rng_range(&t->rng, 0, 1 * MS));
		mgmt_section(t, section_timeout(&t->rng, true), true);
	}
	set_op(t, NULL);
	return NULL;
}

/* ---------------------------------------------------------------------------
 * Listeners, and the end of the run
 */

/* From inside a listener: a begin, even a try, is refused (RS_EDEADLK). */
void listener_section_try(void)
{
	int r;

	if (!ctx.cfg.exclusive || !rsu_rng_chance(hook_rng(), 1.0 / 256))
		return;
	INC(ctx.stats.x_l_tries);
	r = rs_exclusive_begin(ctx.rs, RS_ASYNC);
	if (r == RS_EDEADLK)
		return;
	violation(V_RESULT, "rs_exclusive_begin(RS_ASYNC) from a listener returned %d (%s), "
			    "not RS_EDEADLK", r, rs_strerror(r));
	if (r == 0)
		rs_exclusive_end(ctx.rs);
}

/* After every thread finished: no section held, none believed held. */
void excl_final(uint64_t w)
{
	char wb[160];
	int h = atomic_load(&ctx.excl_holder);

	if (w & RS_W_EXCL)
		violation(V_FINAL, "final word [%s] still has the section bit",
			  rsu_word_str(w, wb, sizeof(wb)));
	if (h >= 0)
		violation(V_FINAL, "%s still holds a section at the end", ctx.thr[h].name);
}

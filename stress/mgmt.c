/* SPDX-License-Identifier: MIT */
/*
 * runstate-stress: the threads that call the library's commands.
 * Management threads stop, start, continue, retry, reset, query and wait;
 * internal lock holders take and release the lock bits and check exclusion
 * while they hold one; device threads raise io-error, watchdog, panicked
 * and now and then a rank-4 pause.  Every call is recorded for the
 * linearizability check (checker.c).
 */
#include <inttypes.h>
#include <sched.h>

#include "stress.h"

/* ---------------------------------------------------------------------------
 * Management threads
 */

int64_t pick_timeout(struct rsu_rng *r)
{
	switch (rsu_rng_below(r, 10)) {
	case 0: case 1: case 2:
		return RS_ASYNC;
	case 3: case 4:
		return RS_FOREVER;
	case 5:
		return rsu_rng_range(r, 20 * US, 300 * US);   /* may time out */
	default:
		return 2000 * MS;
	}
}

void between_ops(struct rsu_rng *r)
{
	switch (rsu_rng_below(r, 4)) {
	case 0:
		break;
	case 1:
		for (int i = (int)rsu_rng_below(r, 2000); i > 0; i--)
			rsu_cpu_relax();
		break;
	case 2:
		sched_yield();
		break;
	default:
		rsu_sleep_ns(rsu_rng_range(r, 5 * US, 200 * US));
	}
}

void do_read(struct thr *t, bool try)
{
	struct opctx c;
	uint64_t w;
	int res;

	if (!op_begin(t, &c, LIN_READ, 0, 0, RS_ASYNC, try))
		return;
	w = rs_word(ctx.rs);
	res = lin_abstract(w);
	/* --lin-corrupt: record a state the word never had. */
	if (ctx.cfg.lin_corrupt &&
	    atomic_fetch_add(&ctx.nreads, 1) % (uint64_t)ctx.cfg.lin_corrupt ==
		    (uint64_t)ctx.cfg.lin_corrupt - 1)
		res ^= LIN_STATE_IO;
	op_end(&c, res);
	check_word(w, "query");
}

int do_releasing(struct thr *t, int kind, int arg)
{
	struct opctx c;
	int r;

	op_begin(t, &c, kind, arg, 0, RS_ASYNC, false);
	switch (kind) {
	case LIN_START: r = rs_start(ctx.rs, (unsigned)arg); break;
	case LIN_RETRY: r = rs_retry(ctx.rs); break;
	case LIN_CONT: r = rs_cont(ctx.rs); break;
	default: r = rs_reset(ctx.rs); break;
	}
	op_end(&c, r);
	/* start: needs-force (plain only) or needs-reset; cont: needs-reset;
	 * retry and reset never fail. */
	if (r && !((kind == LIN_START && (r == RS_ENEEDRESET || (r == RS_ENEEDFORCE && !arg))) ||
		   (kind == LIN_CONT && r == RS_ENEEDRESET)))
		bad_result(lin_kind_name(kind), r);
	/* Start latency: from the call until the edge settled. */
	if (!r && kind != LIN_RESET && !rsu_running(c.w_before) && rsu_rng_below(&t->rng, 2)) {
		int w;

		set_op(t, "wait after start");
		INC(ctx.stats.waits);
		w = rs_wait(ctx.rs, 2000 * MS);
		if (w == 0 && rsu_may_run(rs_word(ctx.rs)))
			hist_add(&ctx.stats.start_lat, rsu_now_ns() - c.op.inv);
		else if (w && w != RS_ETIMEDOUT)
			bad_result("rs_wait", w);
	}
	return r;
}

/* A stopping call from a non-vCPU thread: stop, io-error or pause. */
void do_stopping(struct thr *t, int kind, int arg, int64_t timeout, const char *what)
{
	struct opctx c;
	int r;

	op_begin(t, &c, kind, arg, 0, timeout, false);
	set_op(t, what);
	if (kind == LIN_STOP)
		r = rs_stop(ctx.rs, timeout);
	else if (kind == LIN_IO_ERROR)
		r = rs_io_error(ctx.rs, timeout);
	else
		r = rs_pause(ctx.rs, (enum rs_pause)arg, timeout);
	op_end(&c, r);
	if (r && !(r == RS_ETIMEDOUT && timeout > 0))
		bad_result(what, r);
	if (r == 0 && timeout != RS_ASYNC) {
		/* Latency of stops that had to stop a running VM. */
		if (kind == LIN_STOP && rsu_running(c.w_before))
			hist_add(&ctx.stats.stop_lat, c.op.resp - c.op.inv);
		stop_check(what, c.w_before);
	}
}

/* In calm phases one management thread keeps the VM running. */
static void keep_running(struct thr *t)
{
	uint64_t w = rs_word(ctx.rs);
	struct rs_state s = { .size = sizeof(s) };

	set_op(t, "calm");
	rs_decode(w, &s);
	do_read(t, false);
	if (rs_pause_rank(s.pause) == 4)
		do_releasing(t, LIN_RESET, 0);
	if (s.pause != RS_PAUSE_NONE || s.io_error || rs_pause_rank(s.pause) == 4)
		do_releasing(t, LIN_CONT, 0);
	INC(ctx.stats.waits);
	rs_wait(ctx.rs, 50 * MS);
	rsu_sleep_ns(2 * MS);
}

void *mgmt_main(void *arg)
{
	struct thr *t = arg;
	bool keeper = t == &ctx.thr[THR_ROLES];

	while (!atomic_load(&ctx.stop)) {
		unsigned x;

		set_op(t, NULL);
		if (atomic_load(&ctx.calm)) {
			if (keeper)
				keep_running(t);
			else
				rsu_sleep_ns(1 * MS);
			continue;
		}
		between_ops(&t->rng);
		x = (unsigned)rsu_rng_below(&t->rng, 100);
		if (x < 20) {
			do_stopping(t, LIN_STOP, 0, pick_timeout(&t->rng), "rs_stop");
		} else if (x < 38) {
			do_releasing(t, LIN_START, 0);
		} else if (x < 48) {
			do_releasing(t, LIN_START, RS_START_FORCE);
		} else if (x < 60) {
			do_releasing(t, LIN_RETRY, 0);
		} else if (x < 74) {
			do_releasing(t, LIN_CONT, 0);
		} else if (x < 78) {
			do_releasing(t, LIN_RESET, 0);
		} else if (x < 92) {
			set_op(t, "query");
			do_read(t, false);
		} else {
			int r;

			set_op(t, "rs_wait");
			INC(ctx.stats.waits);
			r = rs_wait(ctx.rs, rsu_rng_below(&t->rng, 2) ? RS_ASYNC : 5 * MS);
			if (r && r != RS_ETIMEDOUT)
				bad_result("rs_wait", r);
		}
	}
	set_op(t, NULL);
	return NULL;
}

/* ---------------------------------------------------------------------------
 * Internal lock holders
 */

/* How long a lock or section holder holds, and in how many checks: now
 * and then descheduled while holding (2-10 ms), else up to 300 us. */
int64_t hold_plan(struct thr *t, int *checks)
{
	if (rsu_rng_chance(&t->rng, ctx.cfg.fault_rate * 5)) {
		INC(ctx.stats.holder_desched);
		*checks = 2;
		return rsu_rng_range(&t->rng, 2 * MS, 10 * MS);
	}
	/* The draws in the order they always had: a seed replays the same. */
	int64_t hold = rsu_rng_range(&t->rng, 0, 300 * US);

	*checks = 1 + (int)rsu_rng_below(&t->rng, 4);
	return hold;
}

/* One step of a hold: asleep or spinning, at random. */
void hold_wait(struct thr *t, int64_t ns)
{
	if (rsu_rng_below(&t->rng, 2))
		rsu_sleep_ns(ns);
	else
		rsu_spin_ns(ns);
}

/* While holding a lock that returned 0 (or settled after): no vCPU in a
 * guest slice, and no slice started. */
static void hold_and_check(struct thr *t, enum rs_lock lk, uint64_t w_locked)
{
	uint64_t c[MAX_VCPU_SLOTS];
	char gb[40];
	int64_t hold;
	int checks;

	if (skipped(V_EXCLUSION))
		return;
	INC(ctx.stats.exclusion_checks);
	for (int i = 0; i < ctx.nslots; i++) {
		uint32_t g = vc_in_guest(i);

		c[i] = vc_count(i);
		if (g)
			violation(V_EXCLUSION, "%s held (lock returned 0 at edge %u), yet "
					       "vCPU slot %d is in guest (%s)",
				  rs_lock_name(lk), rsu_edge(w_locked), i,
				  in_guest_str(g, gb, sizeof(gb)));
	}
	if (!(rs_word(ctx.rs) & RS_W_LOCK(lk)))
		violation(V_EXCLUSION, "%s held, but its bit reads clear", rs_lock_name(lk));
	set_op(t, "holding");
	hold = hold_plan(t, &checks);
	for (int k = 0; k < checks; k++) {
		hold_wait(t, hold / checks);
		for (int i = 0; i < ctx.nslots; i++) {
			uint32_t g = vc_in_guest(i);
			uint64_t s = vc_count(i);

			if (g || s != c[i]) {
				violation(V_EXCLUSION, "%s held since edge %u, yet vCPU slot %d %s "
						       "(%s %" PRIu64 " -> %" PRIu64 "%s%s)",
					  rs_lock_name(lk), rsu_edge(w_locked), i,
					  g ? "is in guest" : "ran guest code",
					  ctx.cfg.kvm ? "guest counter" : "slices", c[i], s,
					  g ? ", " : "", g ? in_guest_str(g, gb, sizeof(gb)) : "");
				c[i] = s;
			}
		}
	}
}

void *holder_main(void *arg)
{
	struct thr *t = arg;

	while (!atomic_load(&ctx.stop)) {
		enum rs_lock lk = (enum rs_lock)rsu_rng_below(&t->rng, RS_LOCK_COUNT);
		bool try = rsu_rng_below(&t->rng, 2);
		int64_t to;
		struct opctx c;
		bool checked = false;
		int r;

		set_op(t, NULL);
		if (atomic_load(&ctx.calm)) {
			rsu_sleep_ns(1 * MS);
			continue;
		}
		between_ops(&t->rng);
		rsu_sleep_ns(rsu_rng_range(&t->rng, 0, 1 * MS));
		switch (rsu_rng_below(&t->rng, 8)) {
		case 0: to = RS_ASYNC; break;
		case 1: to = rsu_rng_range(&t->rng, 20 * US, 300 * US); break;
		case 2:
			/* A try form waits only for the vCPUs: forever is safe. */
			if (try) {
				to = RS_FOREVER;
				break;
			}
			/* fall through */
		default: to = rsu_rng_range(&t->rng, 1 * MS, 4 * MS);
		}
		op_begin(t, &c, try ? LIN_TRYLOCK : LIN_LOCK, lk, 0, to, false);
		set_op(t, try ? "rs_trylock" : "rs_lock");
		r = try ? rs_trylock(ctx.rs, lk, to) : rs_lock(ctx.rs, lk, to);
		op_end(&c, r);
		if (r == RS_EBUSY)
			continue;
		if (r && r != RS_ETIMEDOUT) {
			bad_result(try ? "rs_trylock" : "rs_lock", r);
			continue;
		}
		if (r == 0 && to != RS_ASYNC) {
			hist_add(&ctx.stats.lock_lat, c.op.resp - c.op.inv);
			checked = true;
		} else {
			/* Not waited for (async) or timed out: wait, then the
			 * lock's guarantee holds. */
			set_op(t, "rs_wait while holding");
			INC(ctx.stats.waits);
			r = rs_wait(ctx.rs, 2000 * MS);
			if (r == 0)
				checked = true;
			else if (r != RS_ETIMEDOUT)
				bad_result("rs_wait", r);
		}
		if (checked)
			hold_and_check(t, lk, rs_word(ctx.rs));

		/* Release, sometimes with a pause reason in the same CAS. */
		{
			enum rs_pause p = RS_PAUSE_NONE;
			unsigned x = (unsigned)rsu_rng_below(&t->rng, 10);

			if (lk == RS_LOCK_PRE_MIGRATE && x < 4)
				p = RS_PAUSE_POSTMIGRATE;        /* migration succeeded */
			else if (lk == RS_LOCK_RESTORE && x < 4)
				p = RS_PAUSE_PAUSED;             /* restore failed */
			else if (x == 9)
				p = rsu_rng_below(&t->rng, 2) ? RS_PAUSE_PAUSED : RS_PAUSE_WATCHDOG;
			if (p == RS_PAUSE_NONE) {
				op_begin(t, &c, LIN_UNLOCK, lk, 0, RS_ASYNC, false);
				set_op(t, "rs_unlock");
				r = rs_unlock(ctx.rs, lk);
				op_end(&c, r);
				if (r)
					bad_result("rs_unlock of a held bit", r);
			} else {
				to = pick_timeout(&t->rng);
				op_begin(t, &c, LIN_UNLOCK_PAUSE, lk, p, to, false);
				set_op(t, "rs_unlock_pause");
				r = rs_unlock_pause(ctx.rs, lk, p, to);
				op_end(&c, r);
				if (r && !(r == RS_ETIMEDOUT && to > 0))
					bad_result("rs_unlock_pause of a held bit", r);
				if (r == 0 && to != RS_ASYNC)
					stop_check("rs_unlock_pause", c.w_before);
			}
		}
	}
	set_op(t, NULL);
	return NULL;
}

/* ---------------------------------------------------------------------------
 * Device threads: io-error, watchdog, panicked (and rarely shutdown)
 */

void *device_main(void *arg)
{
	struct thr *t = arg;

	while (!atomic_load(&ctx.stop)) {
		unsigned x;

		set_op(t, NULL);
		if (atomic_load(&ctx.calm)) {
			rsu_sleep_ns(1 * MS);
			continue;
		}
		rsu_sleep_ns(rsu_rng_range(&t->rng, 100 * US, 3 * MS));
		x = (unsigned)rsu_rng_below(&t->rng, 100);
		if (x < 45)
			do_stopping(t, LIN_IO_ERROR, 0, pick_timeout(&t->rng), "rs_io_error");
		else if (x < 70)
			do_stopping(t, LIN_PAUSE, RS_PAUSE_WATCHDOG, pick_timeout(&t->rng),
				    "rs_pause(watchdog)");
		else if (x < 97)
			do_stopping(t, LIN_PAUSE, RS_PAUSE_PANICKED, pick_timeout(&t->rng),
				    "rs_pause(panicked)");
		else
			do_stopping(t, LIN_PAUSE,
				    rsu_rng_below(&t->rng, 2) ? RS_PAUSE_SHUTDOWN
							      : RS_PAUSE_INTERNAL_ERROR,
				    pick_timeout(&t->rng), "rs_pause(rank 4)");
	}
	set_op(t, NULL);
	return NULL;
}

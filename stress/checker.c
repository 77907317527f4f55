/* SPDX-License-Identifier: MIT */
/*
 * runstate-stress: violations, the recording of operations for the
 * linearizability check and the checker thread that checks each round
 * (lincheck.c), and the checks made by the threads that call the library.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stress.h"

/* May run in a kick callback: no library call in here. */
void violation(enum vkind k, const char *fmt, ...)
{
	long n;
	va_list ap;

	if (ctx.cfg.skip >> k & 1)
		return;   /* --skip-checks */
	n = atomic_fetch_add(&ctx.vtotal, 1);
	atomic_fetch_add(&ctx.vcount[k], 1);
	if (n == 0) {
		int none = -1;

		atomic_compare_exchange_strong(&ctx.vfirst, &none, (int)k);
	}
	if (n < 20) {
		pthread_mutex_lock(&ctx.report_lock);
		fprintf(stderr, "runstate-stress: VIOLATION [%s] at %.3f s: ", vname[k],
			(double)(rsu_now_ns() - ctx.t0) / 1e9);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
		if (n == 0)
			print_replay(stderr);
		pthread_mutex_unlock(&ctx.report_lock);
	}
	if (!ctx.cfg.keep_going)
		atomic_store(&ctx.stop, true);
}

/* --skip-checks: a check that is not made (to let another one be the first
 * to see a planted bug). */
bool skipped(enum vkind k)
{
	return ctx.cfg.skip >> k & 1;
}

/* ---------------------------------------------------------------------------
 * Recording operations for the linearizability check.
 *
 * Management, holder and device threads (and vCPU threads for their
 * asynchronous calls) record through a gate: a round closes after
 * --round-ops operations (or 20 ms), new operations wait at the gate, the
 * checker waits until every recorded operation has returned, reads the word
 * (the cut read) and checks the round.  Synchronous calls from vCPU
 * threads may park until the VM runs again, so they cannot be made to
 * finish before a cut: they are "ungated" and may straddle rounds.
 */

static enum tclass tclass_of(int64_t timeout)
{
	return timeout == RS_ASYNC ? TC_ASYNC : timeout < 0 ? TC_SYNC : TC_TIMED;
}

/*
 * Every command that can change the word is counted in ctx.cmds, started
 * and in flight in one atomic (exclusive.c's "no change" check): a reader
 * that finds none in flight knows that every command begun before its read
 * has returned, and one begun after it shows in the started count.
 * seq_cst: in the single total order with the commands' CAS on the word.
 */
static void cmd_start(int kind)
{
	if (kind != LIN_READ)
		atomic_fetch_add_explicit(&ctx.cmds, ((uint64_t)1 << CMD_SHIFT) + 1,
					  memory_order_seq_cst);
}

static void cmd_done(int kind)
{
	if (kind != LIN_READ)
		atomic_fetch_sub_explicit(&ctx.cmds, 1, memory_order_seq_cst);
}

/* Begin a gated operation; with try, give up (false) if the gate is closed. */
bool op_begin(struct thr *t, struct opctx *c, int kind, int arg, int arg2, int64_t timeout,
	      bool try)
{
	memset(c, 0, sizeof(*c));
	c->t = t;
	pthread_mutex_lock(&ctx.gate.m);
	if (ctx.gate.closed && try) {
		pthread_mutex_unlock(&ctx.gate.m);
		return false;
	}
	if (ctx.gate.closed) {
		const char *was = atomic_load_explicit(&t->op, memory_order_relaxed);

		set_op(t, "gate");
		while (ctx.gate.closed)
			pthread_cond_wait(&ctx.gate.open_cv, &ctx.gate.m);
		set_op(t, was);
	}
	c->idx = ctx.gate.begun++;
	if (ctx.gate.begun == ctx.cfg.round_ops)
		ctx.gate.closed = true;
	ctx.gate.inflight++;
	pthread_mutex_unlock(&ctx.gate.m);
	cmd_start(kind);
	c->op.kind = (uint8_t)kind;
	c->op.arg = (int8_t)arg;
	c->op.arg2 = (int8_t)arg2;
	c->op.async = timeout == RS_ASYNC;
	c->op.thread = (uint16_t)(t - ctx.thr);
	INC(ctx.stats.ops[kind][tclass_of(timeout)]);
	INC(ctx.stats.ops_total);
	c->w_before = rs_word(ctx.rs);
	c->op.inv = rsu_now_ns();
	return true;
}

/* Begin an ungated operation (a synchronous call from a vCPU thread). */
bool op_begin_ungated(struct thr *t, struct opctx *c, int kind, int arg, int64_t timeout)
{
	int i;

	memset(c, 0, sizeof(*c));
	c->t = t;
	c->ungated = true;
	c->op.kind = (uint8_t)kind;
	c->op.arg = (int8_t)arg;
	c->op.async = timeout == RS_ASYNC;
	c->op.pending = true;
	c->op.thread = (uint16_t)(t - ctx.thr);
	pthread_mutex_lock(&ctx.gate.m);
	for (i = 0; i < LIN_UNGATED; i++)
		if (ctx.gate.ung[i].kind == LIN_NONE)
			break;
	if (i == LIN_UNGATED || ctx.gate.ung_this_round >= LIN_UNGATED) {
		pthread_mutex_unlock(&ctx.gate.m);
		return false;
	}
	ctx.gate.ung_this_round++;
	cmd_start(kind);
	c->idx = i;
	c->w_before = rs_word(ctx.rs);
	c->op.inv = rsu_now_ns();
	ctx.gate.ung[i] = c->op;
	pthread_mutex_unlock(&ctx.gate.m);
	INC(ctx.stats.ops[kind][tclass_of(timeout)]);
	INC(ctx.stats.ops_total);
	return true;
}

void op_end(struct opctx *c, int result)
{
	c->op.resp = rsu_now_ns();
	c->op.result = result;
	cmd_done(c->op.kind);
	switch (result) {
	case RS_ETIMEDOUT: INC(ctx.stats.r_timedout); break;
	case RS_EBUSY: INC(ctx.stats.r_busy); break;
	case RS_ENEEDFORCE: INC(ctx.stats.r_needforce); break;
	case RS_ENEEDRESET: INC(ctx.stats.r_needreset); break;
	default: break;
	}
	pthread_mutex_lock(&ctx.gate.m);
	if (c->ungated) {
		ctx.gate.ung[c->idx].resp = c->op.resp;
		ctx.gate.ung[c->idx].result = result;
		ctx.gate.ung[c->idx].pending = false;
	} else {
		ctx.gate.ops[c->idx] = c->op;
		if (--ctx.gate.inflight == 0 && ctx.gate.closed)
			pthread_cond_signal(&ctx.gate.drained_cv);
	}
	pthread_mutex_unlock(&ctx.gate.m);
}

/* Before the first operation: the checker starts from the word's state. */
int checker_init(void)
{
	for (int i = 0; i < LIN_UNGATED; i++)
		ctx.gate.ung[i].kind = LIN_NONE;
	ctx.gate.opened = rsu_now_ns();
	return lin_init(&ctx.lin, lin_abstract(rs_word(ctx.rs)), 2000000);
}

void *checker_main(void *arg)
{
	struct thr *t = &ctx.thr[THR_CHECKER];
	struct lin_op ops[LIN_MAX_GATED], ung[LIN_UNGATED];

	(void)arg;
	for (;;) {
		uint8_t retire = 0;
		bool any_ung = false, done;
		int n, r;

		set_op(t, NULL);
		pthread_mutex_lock(&ctx.gate.m);
		for (;;) {
			struct timespec ts;
			uint64_t now = rsu_now_ns();

			any_ung = false;
			for (int i = 0; i < LIN_UNGATED; i++)
				any_ung |= ctx.gate.ung[i].kind != LIN_NONE;
			if (ctx.gate.closed && ctx.gate.inflight == 0)
				break;
			if (!ctx.gate.closed &&
			    (ctx.gate.begun > 0 || any_ung || atomic_load(&ctx.checker_exit)) &&
			    (now - ctx.gate.opened >= 20 * (uint64_t)MS ||
			     atomic_load(&ctx.checker_exit))) {
				ctx.gate.closed = true;
				continue;
			}
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 2 * MS;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&ctx.gate.drained_cv, &ctx.gate.m, &ts);
		}
		set_op(t, "check round");
		/* The cut read: after every gated op of the round returned. */
		n = ctx.gate.begun;
		memcpy(ops, ctx.gate.ops, (size_t)n * sizeof(ops[0]));
		ops[n].kind = LIN_READ;
		ops[n].thread = THR_CHECKER;
		ops[n].async = false;
		ops[n].pending = false;
		ops[n].inv = rsu_now_ns();
		ops[n].result = lin_abstract(rs_word(ctx.rs));
		ops[n].resp = rsu_now_ns();
		n++;
		memcpy(ung, ctx.gate.ung, sizeof(ung));
		for (int i = 0; i < LIN_UNGATED; i++)
			if (ung[i].kind != LIN_NONE && !ung[i].pending)
				retire |= (uint8_t)(1u << i);
		pthread_mutex_unlock(&ctx.gate.m);

		{
			char *rep = NULL;
			size_t len = 0;
			FILE *mf = open_memstream(&rep, &len);

			r = lin_round(&ctx.lin, ops, n, ung, mf);
			if (mf)
				fclose(mf);
			if (r < 0) {
				violation(V_LIN, "round %" PRIu64 " (%d operations, ungated ones "
						 "included) is not linearizable:",
					  ctx.lin.rounds, n);
				pthread_mutex_lock(&ctx.report_lock);
				if (rep)
					fputs(rep, stderr);
				pthread_mutex_unlock(&ctx.report_lock);
			}
			free(rep);
		}

		pthread_mutex_lock(&ctx.gate.m);
		for (int i = 0; i < LIN_UNGATED; i++)
			if (retire >> i & 1)
				ctx.gate.ung[i].kind = LIN_NONE;
		ctx.gate.begun = 0;
		ctx.gate.ung_this_round = 0;
		ctx.gate.closed = false;
		ctx.gate.opened = rsu_now_ns();
		pthread_cond_broadcast(&ctx.gate.open_cv);
		done = atomic_load(&ctx.checker_exit);
		for (int i = 0; i < LIN_UNGATED; i++)
			if (ctx.gate.ung[i].kind != LIN_NONE)
				done = false;
		pthread_mutex_unlock(&ctx.gate.m);
		if (done)
			break;
	}
	set_op(t, NULL);
	return NULL;
}

/* ---------------------------------------------------------------------------
 * The checks made by the threads that call the library
 */

/*
 * After a stopping call returned 0: every registered vCPU has been out of
 * guest code since the call's change.  e_lo is the first stopped edge at
 * or after the word read just before the call, so the change's edge is at
 * least e_lo.  (1) A vCPU in a slice it entered at an edge before e_lo
 * entered before the change and has not been out since: a violation,
 * whatever happened after the return.  (2) If the edge is still e_lo
 * before and after the scan, the VM has been stopped at that edge since
 * the change, so no vCPU may be in guest or start a slice at all.
 */
void stop_check(const char *what, uint64_t w_before)
{
	uint32_t e_lo = rsu_edge(w_before), e1, e2;
	uint32_t g[MAX_VCPU_SLOTS];
	uint64_t c[MAX_VCPU_SLOTS];
	char gb[40];
	int moved = -1;

	if (skipped(V_STOP))
		return;
	/* While edges are coalesced the counter sits at the backlog's last
	 * edge or one past it, and the call's own edge is one of the two. */
	if (w_before & RS_W_OVERFLOW)
		e_lo = rsu_edge(w_before) - (rsu_coal(w_before) & 1);
	if (e_lo & 1)
		e_lo++;
	INC(ctx.stats.stop_checks);
	e1 = rsu_edge(rs_word(ctx.rs));
	for (int i = 0; i < ctx.nslots; i++) {
		g[i] = vc_in_guest(i);
		c[i] = vc_count(i);
	}
	for (int i = 0; i < 64; i++)
		rsu_cpu_relax();
	for (int i = 0; i < ctx.nslots; i++)
		if (vc_count(i) != c[i])
			moved = i;
	e2 = rsu_edge(rs_word(ctx.rs));
	for (int i = 0; i < ctx.nslots; i++) {
		/* (1) needs the stamp: simulated vCPUs only. */
		if (g[i] && g[i] != IN_GUEST_NOSTAMP && edge_lt(g[i] - 1, e_lo))
			violation(V_STOP, "%s returned 0, but vCPU slot %d is still in the guest "
					  "slice it entered at edge %u (the call's stop is at "
					  "edge >= %u)",
				  what, i, g[i] - 1, e_lo);
	}
	if (e1 == e_lo && e2 == e_lo) {
		for (int i = 0; i < ctx.nslots; i++)
			if (g[i])
				violation(V_STOP, "%s returned 0 and the VM stayed stopped at "
						  "edge %u, but vCPU slot %d is in guest (%s)",
					  what, e_lo, i, in_guest_str(g[i], gb, sizeof(gb)));
		if (moved >= 0)
			violation(V_STOP, "%s returned 0 and the VM stayed stopped at edge %u, "
					  "but vCPU slot %d started a guest slice",
				  what, e_lo, moved);
	}
}

/* Unexpected result: one the contract never gives for this call. */
void bad_result(const char *what, int r)
{
	violation(V_RESULT, "%s returned %d (%s), which the contract does not allow here", what, r,
		  rs_strerror(r));
}

void check_word(uint64_t w, const char *where)
{
	if ((rsu_edge(w) & 1) != (uint32_t)rsu_running(w))
		violation(V_WORD, "%s: edge %u parity differs from running=%d (word 0x%016" PRIx64
				  ")", where, rsu_edge(w), rsu_running(w), w);
	if ((w & RS_W_OVERFLOW) && !rsu_backlog(w) && !rsu_settling(w))
		violation(V_WORD, "%s: word 0x%016" PRIx64 " overflows without settling", where, w);
}

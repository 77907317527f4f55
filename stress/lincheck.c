/* SPDX-License-Identifier: MIT */
/*
 * Linearizability check (Wing & Gong's search with Lowe's memoization).
 *
 * The model state is what a result can depend on: lock bits 0-3, io-error
 * and the pause reason (8 bits).  Settling, PK, LW and the edge counter are
 * bookkeeping no result depends on.  Each operation is applied with
 * rs_transition(), the very function the library runs inside its CAS.
 *
 * A round's operations are searched depth-first: an operation may come
 * next if no other operation of the round that has returned did so before
 * it was invoked.  (done-set, state) pairs already explored are memoized,
 * so commuting operations cost one visit per distinct state.  A round
 * starts from every state the previous round may have ended in (a set),
 * and the set is narrowed by the cut read that ends every round.
 *
 * Operations that may straddle a cut (synchronous stopping calls made from
 * vCPU threads, which park until the VM may run again) live in "ungated"
 * slots: while pending they may or may not have taken effect, and the state
 * set carries one bit per slot saying which.
 */
#include <stdlib.h>
#include <string.h>

#include "runstate-testing.h"
#include "rsutil.h"
#include "lincheck.h"

struct lin_memo {
	uint64_t done;
	uint32_t gen;
	uint8_t state;
};

const char *(*lin_thread_name)(unsigned thread);

#define LIN_LOCKS ((uint8_t)(RS_W_LOCK(RS_LOCK_COUNT) - 1))

uint8_t lin_abstract(uint64_t w)
{
	return (uint8_t)((w & LIN_LOCKS) | (w & RS_W_IO_ERROR ? LIN_STATE_IO : 0) |
			 rsu_pause(w) << 5);
}

static uint64_t lin_word(uint8_t s)
{
	return (s & LIN_LOCKS) | (s & LIN_STATE_IO ? RS_W_IO_ERROR : 0) |
	       (uint64_t)(s >> 5) << RS_W_PAUSE_SHIFT;
}

void lin_format_state(uint8_t s, char *buf, size_t n)
{
	size_t k = 0;

	k += (size_t)snprintf(buf + k, n - k, "locks=");
	if (!(s & LIN_LOCKS))
		k += (size_t)snprintf(buf + k, n - k, "-");
	for (int r = 0, first = 1; r < RS_LOCK_COUNT && k < n; r++) {
		if (s & (1u << r)) {
			k += (size_t)snprintf(buf + k, n - k, "%s%s", first ? "" : ",",
					      rs_lock_name(r));
			first = 0;
		}
	}
	if (k < n)
		snprintf(buf + k, n - k, "%s pause=%s", s & LIN_STATE_IO ? " io-error" : "",
			 rs_pause_name(s >> 5));
}

static const char *const kind_names[LIN_KIND_COUNT] = {
	"stop", "start", "retry", "cont", "reset", "io-error", "pause",
	"lock", "trylock", "unlock", "unlock-pause", "query",
};

const char *lin_kind_name(int kind)
{
	return kind >= 0 && kind < LIN_KIND_COUNT ? kind_names[kind] : "?";
}

bool lin_is_stopping(int kind)
{
	return kind == LIN_STOP || kind == LIN_IO_ERROR || kind == LIN_PAUSE ||
	       kind == LIN_LOCK || kind == LIN_TRYLOCK || kind == LIN_UNLOCK_PAUSE;
}

/*
 * Which results are checkable.  Releasing calls return exactly what
 * rs_transition() returns.  Stopping calls return 0 or, when they waited,
 * RS_ETIMEDOUT for a change the model makes (the change stays made);
 * otherwise exactly the model's error (RS_EBUSY, RS_ENOTHELD).  A lock
 * that waited linearizes where it got the bit (a hand-over is "unlock,
 * then this lock" with nothing between); RS_EBUSY linearizes where the bit
 * was held, which is all that result promises.
 */
static bool result_ok(const struct lin_op *op, int err)
{
	if (err == 0 && op->result == RS_ETIMEDOUT && lin_is_stopping(op->kind) && !op->async)
		return true;
	return op->result == err;
}

/* Apply op to s; false if its result cannot come from s. */
static bool step(const struct lin_op *op, uint8_t s, uint8_t *ns)
{
	enum rs_cmd cmd;
	int arg = 0, arg2 = 0, err;
	uint64_t nw = 0;

	switch (op->kind) {
	case LIN_READ:
		*ns = s;
		return (uint8_t)op->result == s;
	case LIN_STOP: cmd = RS_CMD_STOP; break;
	case LIN_START: cmd = RS_CMD_START; arg = op->arg; break;
	case LIN_RETRY: cmd = RS_CMD_RETRY; break;
	case LIN_CONT: cmd = RS_CMD_CONT; break;
	case LIN_RESET: cmd = RS_CMD_RESET; break;
	case LIN_IO_ERROR: cmd = RS_CMD_IO_ERROR; break;
	case LIN_PAUSE: cmd = RS_CMD_PAUSE; arg = op->arg; break;
	case LIN_LOCK:
	case LIN_TRYLOCK: cmd = RS_CMD_LOCK; arg = op->arg; break;
	case LIN_UNLOCK: cmd = RS_CMD_UNLOCK; arg = op->arg; arg2 = RS_PAUSE_NONE; break;
	case LIN_UNLOCK_PAUSE: cmd = RS_CMD_UNLOCK; arg = op->arg; arg2 = op->arg2; break;
	default:
		return false;
	}
	err = rs_transition(lin_word(s), cmd, arg, arg2, 1, &nw);
	if (!op->pending && !result_ok(op, err))
		return false;
	*ns = err ? s : lin_abstract(nw);
	return true;
}

int lin_init(struct lin_checker *c, uint8_t initial, long node_limit)
{
	memset(c, 0, sizeof(*c));
	c->set = malloc(65536 * sizeof(*c->set));
	c->next = malloc(65536 * sizeof(*c->next));
	c->seen = calloc(65536 / 8, 1);
	c->memo_cap = 1u << 14;
	c->memo = calloc(c->memo_cap, sizeof(*c->memo));
	if (!c->set || !c->next || !c->seen || !c->memo) {
		lin_free(c);
		return -1;
	}
	c->memo_gen = 1;
	c->node_limit = node_limit;
	c->set[0].state = initial;
	c->set[0].applied = 0;
	c->nset = 1;
	c->max_set = 1;
	return 0;
}

void lin_free(struct lin_checker *c)
{
	free(c->set);
	free(c->next);
	free(c->seen);
	free(c->memo);
	c->set = c->next = NULL;
	c->seen = NULL;
	c->memo = NULL;
}

/* ---------------------------------------------------------------------------
 * The search
 */

struct search {
	struct lin_checker *c;
	const struct lin_op *op[64];
	int slot[64];             /* ungated slot, or -1 */
	int n;
	uint64_t must;            /* ops that must take effect this round */
	uint64_t pred[64];        /* must-ops that returned before op j was invoked */
	uint8_t keep_applied;     /* bits carried to the end of the round */
	long nodes;
};

static uint64_t memo_hash(uint64_t done, uint8_t s)
{
	uint64_t h = (done ^ ((uint64_t)s << 56) ^ s) * 0x9e3779b97f4a7c15ull;

	return h ^ (h >> 29);
}

static bool memo_grow(struct lin_checker *c)
{
	size_t ncap = c->memo_cap * 2;
	struct lin_memo *nm = calloc(ncap, sizeof(*nm));

	if (!nm)
		return false;
	for (size_t i = 0; i < c->memo_cap; i++) {
		struct lin_memo *m = &c->memo[i];

		if (m->gen != c->memo_gen)
			continue;
		for (size_t j = memo_hash(m->done, m->state) & (ncap - 1);;
		     j = (j + 1) & (ncap - 1)) {
			if (nm[j].gen != c->memo_gen) {
				nm[j] = *m;
				break;
			}
		}
	}
	free(c->memo);
	c->memo = nm;
	c->memo_cap = ncap;
	return true;
}

/* true if (done, s) was new */
static bool memo_insert(struct lin_checker *c, uint64_t done, uint8_t s)
{
	if (c->memo_used * 2 >= c->memo_cap && !memo_grow(c))
		return true; /* out of memory: just explore again */
	for (size_t j = memo_hash(done, s) & (c->memo_cap - 1);; j = (j + 1) & (c->memo_cap - 1)) {
		struct lin_memo *m = &c->memo[j];

		if (m->gen != c->memo_gen) {
			m->gen = c->memo_gen;
			m->done = done;
			m->state = s;
			c->memo_used++;
			return true;
		}
		if (m->done == done && m->state == s)
			return false;
	}
}

static void memo_reset(struct lin_checker *c)
{
	c->memo_used = 0;
	if (++c->memo_gen == 0) {
		memset(c->memo, 0, c->memo_cap * sizeof(*c->memo));
		c->memo_gen = 1;
	}
}

static void emit(struct lin_checker *c, uint8_t s, uint8_t applied)
{
	unsigned key = (unsigned)s << 8 | applied;

	if (c->seen[key >> 3] & (1u << (key & 7)))
		return;
	c->seen[key >> 3] |= (uint8_t)(1u << (key & 7));
	c->next[c->nnext].state = s;
	c->next[c->nnext].applied = applied;
	c->nnext++;
}

static int dfs(struct search *S, uint64_t done, uint8_t s)
{
	if (!memo_insert(S->c, done, s))
		return 0;
	if (++S->nodes > S->c->node_limit)
		return -1;
	if ((done & S->must) == S->must) {
		uint8_t applied = S->keep_applied;

		for (int j = 0; j < S->n; j++)
			if (S->slot[j] >= 0 && (done >> j & 1) && !(S->must >> j & 1))
				applied |= (uint8_t)(1u << S->slot[j]);
		emit(S->c, s, applied);
	}
	for (int j = 0; j < S->n; j++) {
		uint8_t ns;

		if (done >> j & 1 || S->pred[j] & ~done)
			continue;
		if (!step(S->op[j], s, &ns))
			continue;
		if (dfs(S, done | 1ull << j, ns) < 0)
			return -1;
	}
	return 0;
}

static void print_op(FILE *f, const struct lin_op *op, uint64_t base)
{
	char buf[96];

	switch (op->kind) {
	case LIN_START:
		snprintf(buf, sizeof(buf), "start%s", op->arg ? " force" : "");
		break;
	case LIN_PAUSE:
		snprintf(buf, sizeof(buf), "pause %s", rs_pause_name(op->arg));
		break;
	case LIN_LOCK:
	case LIN_TRYLOCK:
	case LIN_UNLOCK:
		snprintf(buf, sizeof(buf), "%s %s", lin_kind_name(op->kind), rs_lock_name(op->arg));
		break;
	case LIN_UNLOCK_PAUSE:
		snprintf(buf, sizeof(buf), "unlock %s %s", rs_lock_name(op->arg),
			 rs_pause_name(op->arg2));
		break;
	default:
		snprintf(buf, sizeof(buf), "%s", lin_kind_name(op->kind));
	}
	if (lin_thread_name)
		fprintf(f, "    %-9s", lin_thread_name(op->thread));
	else
		fprintf(f, "    t%-8u", op->thread);
	fprintf(f, " %-28s%s", buf, op->async && lin_is_stopping(op->kind) ? " async" : "      ");
	if (op->kind == LIN_READ) {
		char st[96];

		lin_format_state((uint8_t)op->result, st, sizeof(st));
		fprintf(f, " -> %-40s", st);
	} else if (op->pending) {
		fprintf(f, " -> %-40s", "(pending)");
	} else {
		fprintf(f, " -> %-40s", rs_strerror(op->result));
	}
	fprintf(f, " [%+10.1f us", (double)(int64_t)(op->inv - base) / 1e3);
	if (op->pending)
		fprintf(f, ", ...]\n");
	else
		fprintf(f, ", %+10.1f us]\n", (double)(int64_t)(op->resp - base) / 1e3);
}

static int cmp_inv(const void *a, const void *b)
{
	const struct lin_op *x = *(const struct lin_op *const *)a;
	const struct lin_op *y = *(const struct lin_op *const *)b;

	return x->inv < y->inv ? -1 : x->inv > y->inv;
}

static void report_round(struct lin_checker *c, const struct lin_op *gated, int ng,
			 const struct lin_op *ung, FILE *f)
{
	const struct lin_op *all[LIN_MAX_GATED + LIN_UNGATED];
	int n = 0;
	uint64_t base = UINT64_MAX;
	char st[96];

	for (int i = 0; i < ng; i++)
		all[n++] = &gated[i];
	for (int i = 0; i < LIN_UNGATED; i++)
		if (ung[i].kind != LIN_NONE)
			all[n++] = &ung[i];
	qsort(all, (size_t)n, sizeof(all[0]), cmp_inv);
	for (int i = 0; i < n; i++)
		if (all[i]->inv < base)
			base = all[i]->inv;
	fprintf(f, "  states the previous round may have ended in (%d):\n", c->nset);
	for (int i = 0; i < c->nset && i < 16; i++) {
		lin_format_state(c->set[i].state, st, sizeof(st));
		fprintf(f, "    %s (ungated applied 0x%02x)\n", st, c->set[i].applied);
	}
	fprintf(f, "  operations of the round, by invocation (times from the first):\n");
	for (int i = 0; i < n; i++)
		print_op(f, all[i], base);
}

/* Start over from the cut read: every pending ungated op may or may not
 * have taken effect before it. */
static void resync(struct lin_checker *c, uint8_t read, uint8_t pending_mask)
{
	c->nset = 0;
	for (unsigned m = 0; m < 256; m++) {
		if (m & ~pending_mask)
			continue;
		c->set[c->nset].state = read;
		c->set[c->nset].applied = (uint8_t)m;
		c->nset++;
	}
}

int lin_round(struct lin_checker *c, const struct lin_op *gated, int ng,
	      const struct lin_op *ung, FILE *report)
{
	uint8_t complete_mask = 0, pending_mask = 0;
	long round_nodes = 0;
	bool gave_up = false;
	int ret = 0;

	for (int i = 0; i < LIN_UNGATED; i++) {
		if (ung[i].kind == LIN_NONE)
			continue;
		if (ung[i].pending)
			pending_mask |= (uint8_t)(1u << i);
		else
			complete_mask |= (uint8_t)(1u << i);
	}
	c->rounds++;
	c->ops += (uint64_t)ng;
	c->nnext = 0;
	for (int e = 0; e < c->nset && !gave_up; e++) {
		struct search S = { .c = c };

		/* The ops of this round, for this starting entry. */
		for (int i = 0; i < ng; i++) {
			S.op[S.n] = &gated[i];
			S.slot[S.n] = -1;
			S.must |= 1ull << S.n;
			S.n++;
		}
		for (int i = 0; i < LIN_UNGATED; i++) {
			if (ung[i].kind == LIN_NONE || (c->set[e].applied >> i & 1))
				continue;
			S.op[S.n] = &ung[i];
			S.slot[S.n] = i;
			if (!ung[i].pending)
				S.must |= 1ull << S.n;
			S.n++;
		}
		/* Real-time order: j cannot precede a must-op that returned
		 * before j was invoked. */
		for (int j = 0; j < S.n; j++) {
			S.pred[j] = 0;
			for (int i = 0; i < S.n; i++)
				if (i != j && (S.must >> i & 1) && S.op[i]->resp < S.op[j]->inv)
					S.pred[j] |= 1ull << i;
		}
		/* Applied pending ops stay applied; returned ones retire. */
		S.keep_applied = c->set[e].applied & ~complete_mask;
		memo_reset(c);
		if (dfs(&S, 0, c->set[e].state) < 0)
			gave_up = true;
		round_nodes += S.nodes;
	}
	for (int i = 0; i < c->nnext; i++) {
		unsigned key = (unsigned)c->next[i].state << 8 | c->next[i].applied;

		c->seen[key >> 3] &= (uint8_t)~(1u << (key & 7));
	}
	c->nodes += (uint64_t)round_nodes;
	if ((uint64_t)round_nodes > c->max_nodes)
		c->max_nodes = (uint64_t)round_nodes;
	if (gave_up) {
		c->gave_up++;
		resync(c, (uint8_t)gated[ng - 1].result, pending_mask);
		return 1;
	}
	if (c->nnext == 0) {
		if (report) {
			fprintf(report, "  no order of this round's operations consistent with "
					"real time explains every result under "
					"rs_transition()\n");
			report_round(c, gated, ng, ung, report);
		}
		resync(c, (uint8_t)gated[ng - 1].result, pending_mask);
		return -1;
	}
	{
		struct lin_entry *t = c->set;

		c->set = c->next;
		c->next = t;
		c->nset = c->nnext;
		if (c->nset > c->max_set)
			c->max_set = c->nset;
	}
	return ret;
}

/* ---------------------------------------------------------------------------
 * Self-test: canned histories whose verdict is known.
 */

#define S_PRELAUNCH ((uint8_t)(RS_PAUSE_PRELAUNCH << 5))
#define S_PAUSED    ((uint8_t)(RS_PAUSE_PAUSED << 5))
#define S_PANICKED  ((uint8_t)(RS_PAUSE_PANICKED << 5))
#define S_RUNNING   ((uint8_t)0)
#define S_SAVEVM    ((uint8_t)(1u << RS_LOCK_SAVEVM))

static struct lin_op mk(int kind, int arg, int arg2, int result, uint64_t inv, uint64_t resp,
			int thread)
{
	struct lin_op op = {
		.inv = inv, .resp = resp, .result = result, .kind = (uint8_t)kind,
		.arg = (int8_t)arg, .arg2 = (int8_t)arg2, .thread = (uint16_t)thread,
	};

	return op;
}

/* The same, with timeout RS_ASYNC. */
static struct lin_op mka(int kind, int arg, int arg2, int result, uint64_t inv, uint64_t resp,
			 int thread)
{
	struct lin_op op = mk(kind, arg, arg2, result, inv, resp, thread);

	op.async = true;
	return op;
}

struct selftest_case {
	const char *name;
	int expect;                /* lin_round() result */
	int n;
	struct lin_op ops[8];
	struct lin_op ung[LIN_UNGATED];
};

int lin_selftest(FILE *f)
{
	struct selftest_case cases[] = {
		{ .name = "sequential start, stop, start", .expect = 0, .n = 5, .ops = {
			mk(LIN_START, 0, 0, 0, 0, 1, 1),
			mk(LIN_READ, 0, 0, S_RUNNING, 2, 3, 1),
			mk(LIN_STOP, 0, 0, 0, 4, 5, 1),
			mk(LIN_START, 0, 0, 0, 6, 7, 1),
			mk(LIN_READ, 0, 0, S_RUNNING, 8, 9, 1) } },
		{ .name = "a read that misses a completed start", .expect = -1, .n = 2, .ops = {
			mk(LIN_START, 0, 0, 0, 0, 1, 1),
			mk(LIN_READ, 0, 0, S_PRELAUNCH, 2, 3, 2) } },
		{ .name = "overlapping panic explains needs-force", .expect = 0, .n = 4, .ops = {
			mk(LIN_START, 0, 0, 0, 0, 1, 1),
			mk(LIN_PAUSE, RS_PAUSE_PANICKED, 0, 0, 2, 10, 2),
			mk(LIN_START, 0, 0, RS_ENEEDFORCE, 5, 15, 1),
			mk(LIN_READ, 0, 0, S_PANICKED, 20, 21, 3) } },
		{ .name = "needs-force with no panic before it", .expect = -1, .n = 3, .ops = {
			mk(LIN_START, 0, 0, 0, 0, 1, 1),
			mk(LIN_START, 0, 0, RS_ENEEDFORCE, 2, 3, 1),
			mk(LIN_PAUSE, RS_PAUSE_PANICKED, 0, 0, 4, 10, 2) } },
		{ .name = "lock hand-over to a waiter", .expect = 0, .n = 4, .ops = {
			mk(LIN_LOCK, RS_LOCK_SAVEVM, 0, 0, 0, 1, 1),
			mk(LIN_LOCK, RS_LOCK_SAVEVM, 0, 0, 2, 20, 2),
			mk(LIN_UNLOCK, RS_LOCK_SAVEVM, 0, 0, 10, 11, 1),
			mk(LIN_READ, 0, 0, S_SAVEVM | S_PRELAUNCH, 21, 22, 3) } },
		{ .name = "two holders of one bit", .expect = -1, .n = 3, .ops = {
			mk(LIN_LOCK, RS_LOCK_SAVEVM, 0, 0, 0, 1, 1),
			mk(LIN_TRYLOCK, RS_LOCK_SAVEVM, 0, 0, 2, 3, 2),
			mk(LIN_READ, 0, 0, S_SAVEVM | S_PRELAUNCH, 4, 5, 3) } },
		{ .name = "busy on a free bit", .expect = -1, .n = 2, .ops = {
			mk(LIN_TRYLOCK, RS_LOCK_DEBUG, 0, RS_EBUSY, 0, 1, 1),
			mk(LIN_READ, 0, 0, S_PRELAUNCH, 2, 3, 2) } },
		{ .name = "unlock with pause: migration ends in postmigrate", .expect = 0, .n = 4,
		  .ops = {
			mk(LIN_LOCK, RS_LOCK_PRE_MIGRATE, 0, 0, 0, 1, 1),
			mk(LIN_START, 0, 0, 0, 2, 3, 2),
			mk(LIN_UNLOCK_PAUSE, RS_LOCK_PRE_MIGRATE, RS_PAUSE_POSTMIGRATE, 0, 4, 5, 1),
			mk(LIN_START, 0, 0, RS_ENEEDFORCE, 6, 7, 2) } },
		{ .name = "timeout from an asynchronous stop", .expect = -1, .n = 1, .ops = {
			mka(LIN_STOP, 0, 0, RS_ETIMEDOUT, 0, 1, 1) } },
		{ .name = "timeout from a timed stop keeps the change", .expect = 0, .n = 2,
		  .ops = {
			mk(LIN_STOP, 0, 0, RS_ETIMEDOUT, 0, 1, 1),
			mk(LIN_READ, 0, 0, S_PRELAUNCH, 2, 3, 2) } },
		{ .name = "retry keeps the user's pause", .expect = 0, .n = 5, .ops = {
			mk(LIN_START, 0, 0, 0, 0, 1, 1),
			mk(LIN_STOP, 0, 0, 0, 2, 3, 1),
			mk(LIN_IO_ERROR, 0, 0, 0, 4, 5, 2),
			mk(LIN_RETRY, 0, 0, 0, 6, 7, 1),
			mk(LIN_READ, 0, 0, S_PAUSED, 8, 9, 3) } },
		{ .name = "pending vCPU panic that cannot have happened", .expect = -1, .n = 2,
		  .ops = {
			mk(LIN_START, 0, 0, RS_ENEEDFORCE, 5, 6, 1),
			mk(LIN_READ, 0, 0, S_RUNNING, 7, 8, 2) },
		  .ung = { [0] = { .inv = 0, .kind = LIN_PAUSE, .arg = RS_PAUSE_PANICKED,
				   .pending = true, .thread = 9 } } },
		{ .name = "pending vCPU panic explains needs-force", .expect = 0, .n = 2, .ops = {
			mk(LIN_START, 0, 0, RS_ENEEDFORCE, 5, 6, 1),
			mk(LIN_READ, 0, 0, S_PANICKED, 7, 8, 2) },
		  .ung = { [0] = { .inv = 0, .kind = LIN_PAUSE, .arg = RS_PAUSE_PANICKED,
				   .pending = true, .thread = 9 } } },
	};
	int failures = 0;

	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct selftest_case *c = &cases[k];
		struct lin_checker lc;
		int r;

		for (int i = 0; i < LIN_UNGATED; i++)
			if (!c->ung[i].pending && c->ung[i].kind == 0 && c->ung[i].thread == 0)
				c->ung[i].kind = LIN_NONE;
		if (lin_init(&lc, S_PRELAUNCH, 100000))
			return -1;
		/* The pending-panic cases start from "running". */
		if (c->ung[0].kind != LIN_NONE)
			lc.set[0].state = S_RUNNING;
		r = lin_round(&lc, c->ops, c->n, c->ung, NULL);
		fprintf(f, "%s %-50s expected %s, got %s\n", r == c->expect ? "ok  " : "FAIL",
			c->name, c->expect ? "violation" : "linearizable",
			r < 0 ? "violation" : r ? "gave up" : "linearizable");
		failures += r != c->expect;
		lin_free(&lc);
	}
	return failures;
}

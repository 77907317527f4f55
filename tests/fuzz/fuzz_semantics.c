/* SPDX-License-Identifier: MIT */
/*
 * Differential fuzz target: a command sequence is applied both to the library
 * (one instance, no vCPU, one thread) and to the oracle of model.h (the model
 * test_transition enumerates against too),
 * and any difference aborts: a result (error code and its rs_strerror()),
 * the word (decoded by the model's own code, every field), the legacy
 * string, the edge counter and its parity, the events (kinds, sequence
 * numbers, count, their word and state, losses of a lagging reader in both
 * reporting forms), one listener's calls and the counters of rs_get_stats().
 * rs_transition() is also called directly on arbitrary 64-bit words and
 * max_backlog values, with the names, ranks and error strings: that is
 * where the backlog and the coalescing rules are checked, since with one
 * thread every edge settles before the call that made it returns, so the
 * instance never coalesces an edge (checked: rs_get_stats().coalesced
 * stays 0, and the edge counter stays the count of edges made).
 *
 * Input format (tests/fuzz/README.md has the table):
 *   byte 0      event ring capacity selector (bits 0-2) and max_backlog
 *               selector (bits 3-4)
 *   then        commands: an opcode byte (mod 16) and its operand bytes;
 *               missing operand bytes read as 0.
 *
 * Built two ways: with clang's libFuzzer (LLVMFuzzerTestOneInput is the
 * entry point), and with any compiler plus replay.c, which feeds the corpus
 * and a fixed pseudo-random stream.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runstate-testing.h"
#include "model.h"
#include "fuzz_semantics.h"

enum op {
	OP_STOP, OP_START, OP_RETRY, OP_CONT, OP_RESET, OP_IO_ERROR, OP_PAUSE,
	OP_LOCK, OP_TRYLOCK, OP_UNLOCK, OP_UNLOCK_PAUSE, OP_WAIT, OP_TRANSITION,
	OP_EVENTS, OP_BADCALL, OP_RECREATE, OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
	"stop", "start", "retry", "cont", "reset", "io-error", "pause", "lock",
	"trylock", "unlock", "unlock-pause", "wait", "transition", "events",
	"badcall", "recreate",
};

/* Operand values outside the small ranges: bytes 0xf0..0xff. */
static const int special_int[16] = {
	-1, -2, -128, 8, 9, 10, 16, 64, 255, 256, 0x100000, INT_MAX, INT_MIN,
	INT_MIN + 1, 0x7fffffff - 7, -8,
};
static const unsigned special_flags[16] = {
	0x80000000u, 0xffffffffu, 0x101u, 0x3u, 0x10u, 0x80000001u, 0x100u, 0x2u,
	0x4u, 0x40u, 0x7fffffffu, 0xfffffffeu, 0x8u, 0x5u, 0x81u, 0x1000u,
};
/* Valid event capacities, selected by byte 0 (0: the default, 256). */
static const unsigned capacities[8] = { 0, 1, 2, 4, 8, 16, 64, 256 };
/* Valid max_backlog values, selected by bits 3-4 of the same byte (0: the
 * default, 64).  With one thread every edge settles before the next is
 * made, so the backlog never holds more than one: any of them must give
 * the same results. */
static const unsigned max_backlogs[4] = { 0, 1, 2, RS_W_BACKLOG_MAX };
/* max_backlog operands of OP_TRANSITION, bytes 0xf0..0xff: the invalid ones
 * (0, above 127, some that truncation to 7 or 8 bits makes valid), then
 * the edges of the valid range. */
static const unsigned special_backlog[16] = {
	0, 128, 129, 255, 256, 0x17f, 1000, 0x80000000u, 0x80000001u, 0xffffffffu,
	1, 2, 63, 64, 126, 127,
};

struct fz {
	const uint8_t *p, *end;
	unsigned nops;
	/* The library side. */
	rs_runstate *rs;
	uint64_t clock;           /* fake monotonic clock */
	unsigned futex_waits;     /* in the current command */
	uint64_t eager;           /* cursor read after every command */
	uint64_t lag;             /* cursor read only by OP_EVENTS */
	uint64_t last_time;
	rs_listener *listener;
	uint64_t calls;           /* listener calls */
	bool call_running;        /* the last call's arguments */
	struct rs_state call_st;
	/* The model side. */
	struct m_tuple m;
	uint64_t edges;           /* edges since creation (unbounded), each
				   * settled on its own: none is coalesced */
	unsigned cap;             /* effective ring capacity */
	uint64_t lost;            /* losses reported to the lagging reader */
	unsigned max_backlog;     /* as configured (0: the default) */
	uint64_t hist[512];       /* the word of edge n, at [n % 512] */
	/* The last few commands, printed on failure. */
	char trace[8][96];
	unsigned ntrace;
};

static bool trace_all;
static unsigned long inputs_run;

static void fail(struct fz *f, const char *fmt, ...)
{
	va_list ap;
	unsigned i, first = f->ntrace > 8 ? f->ntrace - 8 : 0;

	fprintf(stderr, "\nfuzz-semantics: MISMATCH in input #%lu after %u commands: ",
		inputs_run, f->nops);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nlast commands (oldest first):\n");
	for (i = first; i < f->ntrace; i++)
		fprintf(stderr, "  %s\n", f->trace[i % 8]);
	fprintf(stderr, "model: locks=%#x io=%d pause=%d edges=%llu cap=%u max_backlog=%u\n",
		f->m.locks, f->m.io, f->m.pause, (unsigned long long)f->edges, f->cap,
		f->max_backlog);
	abort();
}

static void note(struct fz *f, const char *fmt, ...)
{
	va_list ap;
	char *s = f->trace[f->ntrace % 8];

	va_start(ap, fmt);
	vsnprintf(s, sizeof(f->trace[0]), fmt, ap);
	va_end(ap);
	f->ntrace++;
	if (trace_all)
		fprintf(stderr, "fuzz: %s\n", s);
}

static uint8_t byte(struct fz *f)
{
	return f->p < f->end ? *f->p++ : 0;
}

/* A lock or pause number: mostly small (0..mod-1), sometimes far out. */
static int small(struct fz *f, int mod)
{
	uint8_t b = byte(f);

	return b >= 0xf0 ? special_int[b - 0xf0] : b % mod;
}

static int64_t timeout(struct fz *f)
{
	uint8_t b = byte(f);

	switch (b % 4) {
	case 0: return RS_ASYNC;
	case 1: return RS_FOREVER;
	case 2: return 1 + (int64_t)(b >> 2) * 1000;
	default: return -2 - (int64_t)(b >> 2);   /* any negative: forever */
	}
}

/* ---------------------------------------------------------------------------
 * The OS seam: a fake clock, and futex waits that never sleep (one thread, no
 * vCPU: nobody could wake us).  A wait "times out" by advancing the clock.
 */
static int f_futex_wait(void *ctx, uint32_t *addr, uint32_t val, int64_t timeout_ns)
{
	struct fz *f = ctx;

	if (++f->futex_waits > 1000)
		fail(f, "the library waited more than 1000 times in one command "
			"(single thread, no vCPU: nothing to wait for)");
	if (__atomic_load_n(addr, __ATOMIC_RELAXED) != val)
		return -EAGAIN;
	f->clock += timeout_ns >= 0 ? (uint64_t)timeout_ns : 1000000u;
	return timeout_ns >= 0 ? -ETIMEDOUT : 0;
}

static int f_futex_wake(void *ctx, uint32_t *addr, int n)
{
	(void)ctx;
	(void)addr;
	(void)n;
	return 0;
}

static uint64_t f_now(void *ctx)
{
	struct fz *f = ctx;

	return ++f->clock;
}

static int create(struct fz *f, unsigned cap, unsigned max_backlog, rs_runstate **out)
{
	static struct rs_ops ops = {
		.futex_wait = f_futex_wait,
		.futex_wake = f_futex_wake,
		.now_ns = f_now,
	};
	struct rs_config cfg = { .size = sizeof(cfg), .max_vcpus = 1, .event_capacity = cap,
				 .max_backlog = max_backlog };

	ops.ctx = f;
	return rs_create_ops(&cfg, &ops, out);
}

static void on_edge(void *opaque, bool running, const struct rs_state *st)
{
	struct fz *f = opaque;

	f->calls++;
	f->call_running = running;
	f->call_st = *st;
}

static void model_reset(struct fz *f, unsigned cap, unsigned max_backlog)
{
	f->m = (struct m_tuple){ .locks = 0, .io = false, .pause = 1 /* prelaunch */ };
	f->edges = 0;
	f->cap = cap ? cap : 256;
	f->max_backlog = max_backlog;
	f->eager = rs_events_cursor(f->rs);
	f->lag = f->eager;
	f->last_time = 0;
	f->lost = 0;
	f->calls = 0;
	/* One listener, to see that it runs once per edge with the edge's
	 * state (semantics.md, section 8a). */
	if (rs_listener_add(f->rs, on_edge, f, 0, &f->listener) != 0)
		fail(f, "rs_listener_add() failed");
	if (f->eager != 1)
		fail(f, "rs_events_cursor() of a new instance is %llu, want 1",
		     (unsigned long long)f->eager);
}

/* ---------------------------------------------------------------------------
 * Checks after every command.
 */
/* rs_decode() against the model's decoding, with the size it was given and
 * the library's answer to it. */
static void check_word_fields(struct fz *f, uint64_t w)
{
	struct rs_state st = { .size = sizeof(st) }, want;

	m_state(w, &want);
	if (rs_decode(w, &st) != 0 || st.size != sizeof(st) || !m_state_eq(&st, &want))
		fail(f, "rs_decode(%#llx) = {size=%u locks=%#x io=%d pause=%d settling=%d "
		     "edge=%u running=%d may_run=%d}, model {locks=%#x io=%d pause=%d "
		     "settling=%d edge=%u running=%d may_run=%d}", (unsigned long long)w,
		     st.size, st.locks, st.io_error, st.pause, st.settling, st.edge, st.running,
		     st.may_run, want.locks, want.io_error, want.pause, want.settling, want.edge,
		     want.running, want.may_run);
	if (strcmp(rs_legacy_status(w), m_legacy(w)) != 0)
		fail(f, "rs_legacy_status(%#llx) = \"%s\", model \"%s\"",
		     (unsigned long long)w, rs_legacy_status(w), m_legacy(w));
}

/* A state the library passed (an event's, a listener's): its size is the
 * library's, its fields the model's decoding of w. */
static bool state_is(const struct rs_state *st, uint64_t w)
{
	struct rs_state want;

	m_state(w, &want);
	return st->size == sizeof(*st) && m_state_eq(st, &want);
}

static void check_event(struct fz *f, const struct rs_event *ev, uint64_t want_seq)
{
	enum rs_event_kind want = want_seq % 2 ? RS_EVENT_RESUME : RS_EVENT_STOP;
	uint64_t ww = f->hist[want_seq % 512];

	if (ev->seq != want_seq)
		fail(f, "event seq %llu, want %llu", (unsigned long long)ev->seq,
		     (unsigned long long)want_seq);
	if (ev->kind != want)
		fail(f, "event %llu is %s, want %s (odd edges are RESUMEs)",
		     (unsigned long long)ev->seq, ev->kind == RS_EVENT_STOP ? "STOP" :
		     ev->kind == RS_EVENT_RESUME ? "RESUME" : "?",
		     want == RS_EVENT_STOP ? "STOP" : "RESUME");
	/* The word just after the edge's CAS: the model's tuple, the edge
	 * in the backlog, the edge's number (section 8, contents).  Events
	 * count every edge, coalesced ones too, so E follows seq only until
	 * the first coalesced run; there is none here (check_stats()), so
	 * E == seq modulo 2^32, and its parity is the kind's. */
	if ((uint32_t)(ev->word >> RS_W_EDGE_SHIFT) != (uint32_t)want_seq ||
	    (ev->word >> RS_W_EDGE_SHIFT) % 2 != want_seq % 2)
		fail(f, "event %llu carries word %#llx: its edge counter is not the event's "
		     "seq (no edge is coalesced with one thread)",
		     (unsigned long long)ev->seq, (unsigned long long)ev->word);
	if (ev->word != ww || !state_is(&ev->state, ww) || ev->lost != 0)
		fail(f, "event %llu carries word %#llx (lost %llu, state of size %u), model "
		     "%#llx", (unsigned long long)ev->seq, (unsigned long long)ev->word,
		     (unsigned long long)ev->lost, ev->state.size, (unsigned long long)ww);
}

static void check_stats(struct fz *f)
{
	struct rs_stats st = { .size = sizeof(st) };

	if (rs_get_stats(f->rs, &st) != 0)
		fail(f, "rs_get_stats() failed");
	/* One thread: every edge settles before the next is made, so none
	 * is ever coalesced. */
	if (st.stop_edges != f->edges / 2 || st.start_edges != (f->edges + 1) / 2 ||
	    st.events_lost != f->lost || st.listener_runs != f->edges ||
	    st.parks || st.wakes || st.kicks || st.rekicks || st.coalesced)
		fail(f, "rs_get_stats(): stop-edges %llu start-edges %llu events-lost %llu "
		     "listener-runs %llu parks %llu wakes %llu kicks %llu rekicks %llu "
		     "coalesced %llu; model %llu %llu %llu %llu 0 0 0 0 0",
		     (unsigned long long)st.stop_edges, (unsigned long long)st.start_edges,
		     (unsigned long long)st.events_lost, (unsigned long long)st.listener_runs,
		     (unsigned long long)st.parks, (unsigned long long)st.wakes,
		     (unsigned long long)st.kicks, (unsigned long long)st.rekicks,
		     (unsigned long long)st.coalesced,
		     (unsigned long long)f->edges / 2, (unsigned long long)(f->edges + 1) / 2,
		     (unsigned long long)f->lost, (unsigned long long)f->edges);
}

static void check_state(struct fz *f, uint64_t new_events)
{
	struct m_word want = { .t = f->m, .edge = (uint32_t)f->edges };
	uint64_t w = rs_word(f->rs), ww = m_encode(&want);
	struct rs_event ev[4];
	uint64_t lost = 12345, i;
	int n;

	/* The whole word: with one thread and no vCPU every edge has settled
	 * when a call returns (backlog 0, OV clear, COAL 0 and GN 0: none was
	 * ever coalesced, so no run was absorbed), nobody is parked (PK) and
	 * nobody waits for a lock (LW); no reserved bit is ever set.  The edge
	 * counter is the model's count of edges, each settled on its own. */
	if (w != ww)
		fail(f, "word %#llx, model %#llx", (unsigned long long)w, (unsigned long long)ww);
	if ((f->edges % 2 == 1) != m_running(&f->m))
		fail(f, "model: edge parity %llu against running %d",
		     (unsigned long long)f->edges, m_running(&f->m));
	check_word_fields(f, w);
	if (strcmp(rs_legacy_status(w), m_legacy(ww)) != 0)
		fail(f, "legacy \"%s\", model \"%s\"", rs_legacy_status(w), m_legacy(ww));
	if (rs_may_run(f->rs) != m_running(&f->m) || rs_may_run_func(f->rs) != m_running(&f->m))
		fail(f, "rs_may_run() = %d, rs_may_run_func() = %d, model %d",
		     rs_may_run(f->rs), rs_may_run_func(f->rs), m_running(&f->m));

	/* Events: exactly the ones this command's edges produced. */
	if (rs_events_cursor(f->rs) != f->edges + 1)
		fail(f, "rs_events_cursor() = %llu, model %llu",
		     (unsigned long long)rs_events_cursor(f->rs),
		     (unsigned long long)f->edges + 1);
	n = rs_events_read(f->rs, &f->eager, ev, 4, sizeof(ev[0]), &lost);
	if (n < 0 || (uint64_t)n != new_events || lost != 0)
		fail(f, "rs_events_read() = %d (lost %llu), model %llu new events (lost 0)",
		     n, (unsigned long long)lost, (unsigned long long)new_events);
	for (i = 0; i < new_events; i++) {
		check_event(f, &ev[i], f->edges - new_events + 1 + i);
		if (ev[i].time_ns < f->last_time)
			fail(f, "event time goes back: %llu after %llu",
			     (unsigned long long)ev[i].time_ns,
			     (unsigned long long)f->last_time);
		f->last_time = ev[i].time_ns;
	}
	if (f->eager != f->edges + 1)
		fail(f, "eager cursor %llu, model %llu", (unsigned long long)f->eager,
		     (unsigned long long)f->edges + 1);

	/* The listener ran once per edge, with the edge's word. */
	if (f->calls != f->edges)
		fail(f, "the listener ran %llu times for %llu edges",
		     (unsigned long long)f->calls, (unsigned long long)f->edges);
	if (new_events && (f->call_running != (f->edges % 2 == 1) ||
			   !state_is(&f->call_st, f->hist[f->edges % 512])))
		fail(f, "listener called with running=%d edge=%u, model running=%d word %#llx",
		     f->call_running, f->call_st.edge, f->edges % 2 == 1,
		     (unsigned long long)f->hist[f->edges % 512]);
	check_stats(f);
}

/* ---------------------------------------------------------------------------
 * One command on both sides.
 */
static int model_cmd(struct fz *f, int cmd, int arg, int arg2, uint64_t *new_events)
{
	bool was = m_running(&f->m);
	int err = m_apply(&f->m, cmd, arg, arg2);

	*new_events = 0;
	if (err == 0 && m_running(&f->m) != was) {
		/* The previous edges have settled: this one joins an empty
		 * backlog (OV clear) as its only entry, whatever the
		 * max_backlog, so it is never coalesced. */
		struct m_word d = { .t = f->m, .backlog = 1 };

		f->edges++;
		d.edge = (uint32_t)f->edges;
		f->hist[f->edges % 512] = m_encode(&d);
		*new_events = 1;
	}
	return err;
}

static bool str_eq(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static void check_strerror(struct fz *f, int err)
{
	if (strcmp(rs_strerror(err), m_strerror(err)) != 0)
		fail(f, "rs_strerror(%d) = \"%s\", model \"%s\"", err, rs_strerror(err),
		     m_strerror(err));
}

static void check_ret(struct fz *f, const char *what, int got, int want)
{
	if (got != want)
		fail(f, "%s returned %d (%s), model %d (%s)", what, got, rs_strerror(got),
		     want, rs_strerror(want));
	check_strerror(f, got);
}

/* Never block: a forever lock on a held bit would wait for ever in a single
 * thread.  The word is read too, so a model that disagrees cannot hang us. */
static int64_t lock_timeout(struct fz *f, int r, int64_t t)
{
	if (t < 0 && r >= 0 && r < 6 &&
	    ((f->m.locks | rs_word(f->rs)) & (1u << r)))
		return 1000;
	return t;
}

/* Names and their inverses: rs_*_parse() of a name gives its number back;
 * case matters, and unknown names and NULL are RS_EINVAL. */
static void check_names(struct fz *f, int n)
{
	const char *ln = m_lock_name(n), *pn = m_pause_name(n);
	char upper[32];
	size_t i;

	if (!str_eq(rs_lock_name(n), ln) || !str_eq(rs_pause_name(n), pn))
		fail(f, "rs_lock_name(%d) = %s, rs_pause_name(%d) = %s; model %s, %s", n,
		     rs_lock_name(n) ? rs_lock_name(n) : "NULL", n,
		     rs_pause_name(n) ? rs_pause_name(n) : "NULL", ln ? ln : "NULL",
		     pn ? pn : "NULL");
	if (ln && rs_lock_parse(ln) != n)
		fail(f, "rs_lock_parse(\"%s\") = %d, want %d", ln, rs_lock_parse(ln), n);
	if (pn && rs_pause_parse(pn) != n)
		fail(f, "rs_pause_parse(\"%s\") = %d, want %d", pn, rs_pause_parse(pn), n);
	if (ln) {
		for (i = 0; ln[i] && i + 1 < sizeof(upper); i++)
			upper[i] = (char)(ln[i] >= 'a' && ln[i] <= 'z' ? ln[i] - 'a' + 'A' : ln[i]);
		upper[i] = 0;
		if (rs_lock_parse(upper) != -EINVAL || rs_pause_parse(ln) != -EINVAL ||
		    rs_lock_parse(NULL) != -EINVAL || rs_lock_parse("") != -EINVAL)
			fail(f, "rs_lock_parse() accepted \"%s\", NULL or \"\", or "
			     "rs_pause_parse() accepted a lock name", upper);
	}
	if (pn && (rs_lock_parse(pn) != -EINVAL || rs_pause_parse(NULL) != -EINVAL ||
		   rs_pause_parse("guest-panicked") != -EINVAL))
		fail(f, "rs_lock_parse(\"%s\") accepted a pause name, or rs_pause_parse() "
		     "accepted NULL or \"guest-panicked\"", pn);
}

/* rs_transition() on an arbitrary word.  The operand x cleans the word up
 * so that the interesting cases are not rare among random bytes (a word
 * that may run needs its 20 low bits clear): bit 0 NULL output; bit 1 edge
 * field all ones (the next edge wraps, unless it ends an odd run of
 * coalesced edges: then E steps back to the tail); bit 2 no reserved lock
 * bit; bit 3 no EX or RV, GN and COAL 0 (bits 22..31; else they are
 * whatever the bytes say, with OV set or clear); bit 4 empty backlog; bit 5
 * OV clear; bit 6 the backlog full (equal to max_backlog); bit 7 no lock,
 * io-error or pause reason (running).  The operand k chooses max_backlog
 * relative to the word's backlog (equal, one more, one less), in 1..60, or
 * from special_backlog[] (bytes 0xf0..0xff); in the first three cases, its
 * bits 2..4 all set also make the coalesced count 511 with OV set, the last
 * count before it wraps (without this, one random word in 512 has it). */
static void do_transition(struct fz *f)
{
	uint64_t w = 0, out = 0xdeadbeefdeadbeefull, mout = 0xdeadbeefdeadbeefull;
	struct m_word d;
	int cmd, arg, arg2, got, want;
	unsigned i, bl;
	uint8_t x, k, b;

	for (i = 0; i < 8; i++)
		w |= (uint64_t)byte(f) << (8 * i);
	b = byte(f);
	cmd = b >= 0xf0 ? special_int[b - 0xf0] : b % 10;
	arg = small(f, 8);
	arg2 = small(f, 8);
	x = byte(f);
	k = byte(f);
	if (x & 0x80)
		w &= ~RS_W_STOPPED_MASK;
	if (x & 2)
		w |= RS_W_EDGE_MASK;
	if (x & 4)
		w &= ~(RS_W_LOCK(4) | RS_W_LOCK(5));
	if (x & 8)
		w &= ~(RS_W_EXCL | RS_W_RSV_NORUN | RS_W_COAL_GEN | RS_W_COAL_MASK);
	if (x & 0x10)
		w &= ~RS_W_BACKLOG_MASK;
	if (x & 0x20)
		w &= ~RS_W_OVERFLOW;
	if (k < 0xf0 && k % 4 != 3 && (k & 0x1c) == 0x1c)
		w |= RS_W_COAL_MASK | RS_W_OVERFLOW;
	m_decode(w, &d);
	switch (k >= 0xf0 ? 4 : k % 4) {
	case 0: bl = d.backlog; break;
	case 1: bl = d.backlog + 1; break;
	case 2: bl = d.backlog - 1; break;   /* 0 - 1 wraps: invalid */
	case 3: bl = 1 + (k >> 2) % 127u; break;
	default: bl = special_backlog[k - 0xf0]; break;
	}
	if (x & 0x40)
		w = (w & ~RS_W_BACKLOG_MASK) | ((uint64_t)(bl & 127u) << RS_W_BACKLOG_SHIFT);
	note(f, "transition(%#llx, %d, %d, %d, max_backlog %u%s)", (unsigned long long)w, cmd,
	     arg, arg2, bl, x & 1 ? ", NULL" : "");
	if (x & 1) {
		got = rs_transition(w, (enum rs_cmd)cmd, arg, arg2, bl, NULL);
		want = m_transition(w, cmd, arg, arg2, bl, NULL);
		check_ret(f, "rs_transition(out=NULL)", got, want);
		return;
	}
	got = rs_transition(w, (enum rs_cmd)cmd, arg, arg2, bl, &out);
	want = m_transition(w, cmd, arg, arg2, bl, &mout);
	check_ret(f, "rs_transition()", got, want);
	if (out != mout)
		fail(f, "rs_transition(%#llx, %d, %d, %d, %u) gave %#llx, model %#llx",
		     (unsigned long long)w, cmd, arg, arg2, bl, (unsigned long long)out,
		     (unsigned long long)mout);
	if (got == 0)
		check_word_fields(f, out);
	check_word_fields(f, w);
	if (rs_pause_rank(arg) != m_rank(arg))
		fail(f, "rs_pause_rank(%d) = %d, model %d", arg, rs_pause_rank(arg), m_rank(arg));
	check_names(f, arg);
	check_names(f, arg2);
	/* Every errno the library can return, and then some. */
	check_strerror(f, -(int)(w & 0xff));
	check_strerror(f, (int)w);
}

/* A reader that reads only when told, so that the ring overwrites events.
 * Operand bit 6 selects the form without a lost pointer, where a loss comes
 * as an RS_EVENT_LOST record first. */
static void do_events(struct fz *f)
{
	uint8_t b = byte(f);
	unsigned n = b % 6 + 1;
	bool rec = b & 0x40;
	uint64_t e = f->edges, oldest = e >= f->cap ? e - f->cap + 1 : 1;
	uint64_t start = f->lag, want_lost = 0, want_n, lost = 12345, i, first = 0;
	struct rs_event ev[6];
	int got;

	note(f, "events(%u%s) from %llu", n, rec ? ", records" : "", (unsigned long long)f->lag);
	if (start < oldest && start <= e) {
		want_lost = oldest - start;
		start = oldest;
	}
	want_n = start > e ? 0 : e - start + 1;
	if (want_n > n - (rec && want_lost))
		want_n = n - (rec && want_lost);
	got = rs_events_read(f->rs, &f->lag, ev, n, sizeof(ev[0]), rec ? NULL : &lost);
	if (rec && want_lost) {
		/* A reader's own loss: its record carries word 0 (a coalesced
		 * run's would carry the word that ended the run; none here). */
		if (got < 1 || ev[0].kind != RS_EVENT_LOST || ev[0].lost != want_lost ||
		    ev[0].seq != start - want_lost || ev[0].word != 0)
			fail(f, "rs_events_read(n=%u, lost=NULL) = %d, first record kind %d "
			     "seq %llu lost %llu word %#llx; model LOST seq %llu lost %llu word 0",
			     n, got, got > 0 ? (int)ev[0].kind : -1,
			     got > 0 ? (unsigned long long)ev[0].seq : 0,
			     got > 0 ? (unsigned long long)ev[0].lost : 0,
			     got > 0 ? (unsigned long long)ev[0].word : 0,
			     (unsigned long long)(start - want_lost),
			     (unsigned long long)want_lost);
		first = 1;
	}
	if (got < 0 || (uint64_t)got != first + want_n || (!rec && lost != want_lost))
		fail(f, "lagging rs_events_read(n=%u%s) = %d, lost %llu; model %llu records, "
		     "lost %llu (ring %u, %llu events)", n, rec ? ", lost=NULL" : "", got,
		     (unsigned long long)lost, (unsigned long long)(first + want_n),
		     (unsigned long long)want_lost, f->cap, (unsigned long long)e);
	f->lost += want_lost;
	for (i = 0; i < want_n; i++)
		check_event(f, &ev[first + i], start + i);
	if (f->lag != start + want_n)
		fail(f, "lagging cursor %llu, model %llu", (unsigned long long)f->lag,
		     (unsigned long long)(start + want_n));
	/* rs_events_wait() on the lagging cursor, without waiting: 0 when an
	 * event at or after it exists. */
	got = rs_events_wait(f->rs, f->lag, (b & 0x80) ? 1000 : RS_ASYNC);
	check_ret(f, "rs_events_wait()", got, f->lag <= e ? 0 : -ETIMEDOUT);
}

static void do_badcall(struct fz *f)
{
	unsigned k = byte(f) % 21;
	struct rs_event ev;
	uint64_t c = f->lag, lost, w, out = 0xdeadbeefdeadbeefull;
	rs_runstate *other = NULL;
	/* Valid but for the one field each case spoils. */
	struct rs_config bad = { .size = sizeof(bad), .max_vcpus = 1 };
	int got;

	note(f, "badcall %u", k);
	switch (k) {
	case 0: got = rs_stop(NULL, RS_ASYNC); break;
	case 1: got = rs_start(NULL, 0); break;
	case 2: got = rs_retry(NULL); break;
	case 3: got = rs_cont(NULL); break;
	case 4: got = rs_reset(NULL); break;
	case 5: got = rs_io_error(NULL, RS_ASYNC); break;
	case 6: got = rs_pause(NULL, RS_PAUSE_PAUSED, RS_ASYNC); break;
	case 7: got = rs_lock(NULL, RS_LOCK_DEBUG, RS_ASYNC); break;
	case 8: got = rs_trylock(NULL, RS_LOCK_DEBUG, RS_ASYNC); break;
	case 9: got = rs_unlock(NULL, RS_LOCK_DEBUG); break;
	case 10: got = rs_unlock_pause(NULL, RS_LOCK_DEBUG, RS_PAUSE_PAUSED, RS_ASYNC); break;
	case 11: got = rs_wait(NULL, RS_ASYNC); break;
	case 12: got = rs_events_read(f->rs, NULL, &ev, 1, sizeof(ev), &lost); break;
	case 13:
		got = rs_events_read(f->rs, &c, NULL, 1, sizeof(ev), &lost);
		if (c != f->lag)
			fail(f, "a failed rs_events_read() moved the cursor");
		break;
	case 14: got = rs_create(NULL, NULL); break;
	case 15:
		bad.event_capacity = 3;
		got = rs_create(&bad, &other);
		break;
	case 16:
		bad.event_capacity = 1u << 21;
		got = rs_create(&bad, &other);
		break;
	case 17:
		w = rs_word(f->rs);
		got = rs_transition(w, RS_CMD_STOP, 0, 0, 64, NULL);
		break;
	case 18:
		bad.max_backlog = RS_W_BACKLOG_MAX + 1;
		got = rs_create(&bad, &other);
		break;
	case 19:
		w = rs_word(f->rs);
		got = rs_transition(w, RS_CMD_STOP, 0, 0, 0, &out);
		break;
	default:
		w = rs_word(f->rs);
		got = rs_transition(w, RS_CMD_STOP, 0, 0, RS_W_BACKLOG_MAX + 1, &out);
		break;
	}
	check_ret(f, "a call with an invalid pointer or config", got, RS_EINVAL);
	if (other)
		fail(f, "rs_create() failed but stored an instance");
	if (out != 0xdeadbeefdeadbeefull)
		fail(f, "rs_transition() failed but stored a word");
}

static void step(struct fz *f)
{
	uint8_t ob = byte(f);
	enum op op = (enum op)(ob % OP_COUNT);
	uint64_t ne = 0;
	int64_t t;
	int r, p, want = 0, got = 0;
	unsigned flags;
	uint8_t b;

	f->nops++;
	f->futex_waits = 0;
	switch (op) {
	case OP_STOP:
		t = timeout(f);
		note(f, "stop(%lld)", (long long)t);
		want = model_cmd(f, M_STOP, 0, 0, &ne);
		got = rs_stop(f->rs, t);
		break;
	case OP_START:
		b = byte(f);
		flags = b >= 0xf0 ? special_flags[b - 0xf0] : b % 4u;
		note(f, "start(%#x)", flags);
		want = flags > 1 ? -EINVAL : model_cmd(f, M_START, (int)flags, 0, &ne);
		got = rs_start(f->rs, flags);
		break;
	case OP_RETRY:
		note(f, "retry");
		want = model_cmd(f, M_RETRY, 0, 0, &ne);
		got = rs_retry(f->rs);
		break;
	case OP_CONT:
		note(f, "cont");
		want = model_cmd(f, M_CONT, 0, 0, &ne);
		got = rs_cont(f->rs);
		break;
	case OP_RESET:
		note(f, "reset");
		want = model_cmd(f, M_RESET, 0, 0, &ne);
		got = rs_reset(f->rs);
		break;
	case OP_IO_ERROR:
		t = timeout(f);
		note(f, "io-error(%lld)", (long long)t);
		want = model_cmd(f, M_IO_ERROR, 0, 0, &ne);
		got = rs_io_error(f->rs, t);
		break;
	case OP_PAUSE:
		p = small(f, 8);
		t = timeout(f);
		note(f, "pause(%d, %lld)", p, (long long)t);
		want = model_cmd(f, M_PAUSE, p, 0, &ne);
		got = rs_pause(f->rs, (enum rs_pause)p, t);
		break;
	case OP_LOCK:
	case OP_TRYLOCK:
		r = small(f, 6);
		t = timeout(f);
		if (op == OP_LOCK)
			t = lock_timeout(f, r, t);
		note(f, "%s(%d, %lld)", op_names[op], r, (long long)t);
		want = model_cmd(f, M_LOCK, r, 0, &ne);
		got = op == OP_LOCK ? rs_lock(f->rs, (enum rs_lock)r, t) :
				      rs_trylock(f->rs, (enum rs_lock)r, t);
		break;
	case OP_UNLOCK:
		r = small(f, 6);
		note(f, "unlock(%d)", r);
		want = model_cmd(f, M_UNLOCK, r, 0, &ne);
		got = rs_unlock(f->rs, (enum rs_lock)r);
		break;
	case OP_UNLOCK_PAUSE:
		r = small(f, 6);
		p = small(f, 8);
		t = timeout(f);
		note(f, "unlock-pause(%d, %d, %lld)", r, p, (long long)t);
		/* rs_unlock_pause() requires a reason; RS_CMD_UNLOCK with none is
		 * the plain unlock. */
		want = p == 0 ? -EINVAL : model_cmd(f, M_UNLOCK, r, p, &ne);
		got = rs_unlock_pause(f->rs, (enum rs_lock)r, (enum rs_pause)p, t);
		break;
	case OP_WAIT:
		t = timeout(f);
		note(f, "wait(%lld)", (long long)t);
		got = rs_wait(f->rs, t);
		break;
	case OP_TRANSITION:
		do_transition(f);
		break;
	case OP_EVENTS:
		do_events(f);
		break;
	case OP_BADCALL:
		do_badcall(f);
		break;
	case OP_RECREATE:
		b = byte(f);
		note(f, "recreate(capacity %u, max_backlog %u)", capacities[b % 8],
		     max_backlogs[(b >> 3) % 4]);
		rs_destroy(f->rs);
		f->rs = NULL;
		if (create(f, capacities[b % 8], max_backlogs[(b >> 3) % 4], &f->rs) != 0 ||
		    !f->rs)
			fail(f, "rs_create(capacity %u, max_backlog %u) failed", capacities[b % 8],
			     max_backlogs[(b >> 3) % 4]);
		model_reset(f, capacities[b % 8], max_backlogs[(b >> 3) % 4]);
		break;
	default:
		break;
	}
	check_ret(f, op_names[op], got, want);
	check_state(f, ne);
}

int fuzz_one(const uint8_t *data, size_t size)
{
	struct fz *f = calloc(1, sizeof(*f));
	unsigned cap, maxb;
	uint8_t b;

	if (!f)
		abort();
	trace_all = getenv("FUZZ_TRACE") != NULL;
	inputs_run++;
	f->p = data;
	f->end = data + size;
	b = byte(f);
	cap = capacities[b % 8];
	maxb = max_backlogs[(b >> 3) % 4];
	if (create(f, cap, maxb, &f->rs) != 0 || !f->rs)
		fail(f, "rs_create(capacity %u, max_backlog %u) failed", cap, maxb);
	model_reset(f, cap, maxb);
	check_state(f, 0);
	while (f->p < f->end && f->nops < 100000)
		step(f);
	rs_destroy(f->rs);
	free(f);
	return 0;
}

#ifdef FUZZ_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_one(data, size);
}
#endif

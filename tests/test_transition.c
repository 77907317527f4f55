/* SPDX-License-Identifier: MIT */
/*
 * test_transition: rs_transition() and the pure helpers of the headers
 * (rs_decode, rs_legacy_status, rs_may_run, rs_pause_rank, the name tables,
 * rs_strerror), enumerated, against the oracle of tests/fuzz/model.h (the
 * same model the differential fuzzer runs; its rules A1 to A16 are listed
 * there) and against words worked out by hand.  The model holds the rules;
 * this file holds the enumeration, the reachability search, the walks and
 * the properties the model alone cannot state (invariants of reachable
 * words, the walks' ledger).
 *
 * The word is 64 bits: the lock bits, io-error, EX, the pause reason, RV, the
 * overflow bit OV and the 7-bit backlog BL (entries not yet settled) in bits
 * 0..19, which are exactly the bits that keep vCPUs out; then PK (bit 20),
 * LW (21), the generation GN of the coalesced edges (22: the settler flips
 * it when it absorbs a run), the coalesced count COAL (bits 23..31, modulo
 * 2^9) and the 32-bit edge counter E on top.  An edge joins the backlog
 * (E + 1, BL + 1) or is coalesced (OV set, COAL + 1, E = the backlog's last
 * edge plus the run's parity); semantics.md 6.3 and model.c have the rules.
 *
 * Parts:
 *   1. the layout: model.c asserts it at compile time (it is built into
 *      every checker);
 *   2. names, ranks, errors, against the model and a hand-written table;
 *   3. rs_decode(), rs_legacy_status() and rs_may_run() on every enumerated
 *      word, and words worked out by hand, which both the library and the
 *      model must give (a run of coalesced edges, COAL wrapping from 511 to
 *      0, the tail below edge 0, E wrapping, GN);
 *   4. every command with every argument (valid and invalid, unknown command
 *      codes too) on every semantic state (4 lock bits x io-error x 8 pause
 *      reasons = 256):
 *      a. with 2535 (command, arg, arg2) triples, in 15 bookkeeping contexts
 *         (max_backlog, backlog, OV, COAL, GN, PK, LW, reserved bits, edge
 *         counter), three of them with an invalid max_backlog;
 *      b. with the 50 valid (command, arg, arg2) triples, in every
 *         combination of max_backlog 1, 2, 3, 64, 126, 127; a backlog of 0,
 *         1, m-1, m, m+1 and 127; OV clear and set; PK, LW and GN all
 *         clear and all set; edge counters 0, 1, 2, 2^31-1, 2^31,
 *         0xfffffffe and 0xffffffff (wrap-around, and the tail below 0);
 *         COAL 0, 1, 2, 510 and 511 (wrap-around); and each (edge, COAL)
 *         pair once more with reserved bits; then every max_backlog 1..127
 *         against every backlog 0..127, OV clear (COAL 0 and 5) and set
 *         (COAL 0, 1, 2, 511), GN clear and set, on stop edges at E
 *         0xffffffff and 0, a start edge and a command that makes none;
 *         then with 10 invalid max_backlog values (0, 128, ...), some in
 *         the middle of a coalesced run;
 *   5. reachability: breadth-first search from the initial word (edge 0,
 *      prelaunch), for max_backlog 1, 2 and 64, through the valid commands
 *      and the steps the library takes around rs_transition() (the
 *      settler's claim and absorb, parking, lock waiters), checking the
 *      invariants on every reachable word with E < 16 and COAL < 8;
 *   6. random walks (fixed seeds) of the library and the model in lockstep,
 *      with the same library steps between commands and a settler that
 *      alternates between fast and slow phases (and, in some walks,
 *      stalls), so that the backlog fills, overflows, is absorbed and
 *      drains: 10^6 commands from the initial word (max_backlog 64),
 *      200,000 each with max_backlog 1 and 2, 400,000 with 127, 100,000
 *      from just below the edge counter's wrap-around (max_backlog 3); then
 *      edge-heavy walks whose settler stalls for thousands of commands, so
 *      that runs of more than 2^9 coalesced edges wrap COAL (max_backlog 1
 *      and 127, 300,000 each), and 100,000 commands coalescing across E's
 *      wrap-around (max_backlog 1, the tail at 0xffffffff).  Besides the
 *      invariants, each walk keeps its own ledger of unsettled edges.
 *
 * Invariants of every reachable word (parts 5 and 6), for max_backlog m:
 *   backlog <= m; E parity == running-ness; OV set => the word cannot run;
 *   a word that may run never has PK; COAL == 0 while OV is clear; reserved
 *   bits never set.  Part 5 adds: OV set => COAL != 0 (no run there reaches
 *   2^9 edges).
 *
 * The walks' ledger (part 6), kept from the edges the walk made and the
 * settler's steps alone, never from a word: the backlog's entries in order
 * (an appended edge is an entry of one edge; absorb turns the pending run of
 * coalesced edges into one entry of n edges and flips GN), the pending run's
 * length (not reduced modulo 2^9), and E of the last settled entry.  An
 * entry of one edge settles 1 edge number; a run of n edges settles 1 if n
 * is odd and 2 if n is even (absorb: end = tail + 1 or 2).  After every
 * step: BL == the number of entries; OV set exactly while the pending run is
 * not empty; COAL == the pending length modulo 2^9; with OV clear E ==
 * settled + the entries' sum; with OV set the tail (E - (COAL & 1)) == that
 * sum and E == it plus (pending & 1); GN == the start's GN flipped once per
 * absorb.
 *
 *	test_transition [-x]      -x: stop at the first failure (exit 1)
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runstate-testing.h"
#include "rsutil.h"
#include "model.h"

#define COAL_MOD (M_COAL_MAX + 1u)

static struct m_word dec(uint64_t w)
{
	struct m_word d;

	m_decode(w, &d);
	return d;
}

/* A word with the given semantic state and nothing else. */
static uint64_t sem_word(unsigned locks, bool io, int pause)
{
	struct m_word d = { .t = { .locks = locks, .io = io, .pause = pause } };

	return m_encode(&d);
}

/* ---------------------------------------------------------------------------
 * Reporting
 */
static unsigned long n_checks;
static unsigned long n_failures;
static bool stop_at_first;
#define MAX_PRINTED 200

static void failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void failf(const char *fmt, ...)
{
	va_list ap;

	n_failures++;
	if (n_failures > MAX_PRINTED) {
		if (n_failures == MAX_PRINTED + 1)
			printf("FAIL: (further failures counted, not printed)\n");
		return;
	}
	va_start(ap, fmt);
	printf("FAIL: ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	if (stop_at_first) {
		printf("test_transition: stopped at the first failure (-x), %lu checks\n",
		       n_checks);
		exit(1);
	}
}

#define CHECK(cond, ...) do {			\
	n_checks++;				\
	if (!(cond))				\
		failf(__VA_ARGS__);		\
} while (0)

/* A word in a buffer: its fields (rsu_word_str()), the tail while edges are
 * being coalesced, and the raw value. */
static const char *fmt_word(char *buf, size_t len, uint64_t w)
{
	struct m_word d = dec(w);
	char f[160], t[24] = "";

	rsu_word_str(w, f, sizeof(f));
	if (d.overflow)
		snprintf(t, sizeof(t), " tail %" PRIu32, m_tail(&d));
	snprintf(buf, len, "%s%s (0x%016" PRIx64 ")", f, t, w);
	return buf;
}

static const char *fmt_cmd(char *buf, size_t len, int cmd, int arg, int arg2, unsigned m)
{
	static const char *const names[] = {
		[RS_CMD_STOP] = "stop", [RS_CMD_START] = "start", [RS_CMD_RETRY] = "retry",
		[RS_CMD_CONT] = "cont", [RS_CMD_RESET] = "reset",
		[RS_CMD_IO_ERROR] = "io-error", [RS_CMD_PAUSE] = "pause",
		[RS_CMD_LOCK] = "lock", [RS_CMD_UNLOCK] = "unlock",
	};

	if (cmd >= 0 && cmd < RS_CMD_COUNT)
		snprintf(buf, len, "%s(arg=%d, arg2=%d, max_backlog=%u)", names[cmd], arg, arg2,
			 m);
	else
		snprintf(buf, len, "cmd %d(arg=%d, arg2=%d, max_backlog=%u)", cmd, arg, arg2, m);
	return buf;
}

/* An error by the model's name for it, and its value. */
static const char *fmt_err(int err)
{
	static char buf[4][40];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s (%d)", m_strerror(err), err);
	return buf[i];
}

/* Name the fields in which two words differ, with the rule for each. */
static const char *fmt_diff(char *buf, size_t len, uint64_t got, uint64_t want)
{
	static const struct {
		uint64_t mask;
		const char *rule;
	} fields[] = {
		{ M_LOCKS_NAMED, "locks" },
		{ M_LOCKS_RSV, "reserved-locks(kept, A13)" },
		{ M_IO, "io-error" },
		{ M_EX, "EX(kept, A13)" },
		{ M_PAUSE_MASK, "pause" },
		{ M_RV, "RV(kept, A13)" },
		{ M_OV, "OV(set on an edge when OV was set or the backlog full, else kept)" },
		{ M_BACKLOG_MASK, "backlog(+1 on an edge when OV clear and backlog < max, "
				  "else kept)" },
		{ M_PK, "PARKED(cleared iff new word runnable, A7)" },
		{ M_LW, "LOCKWAIT(kept, A6)" },
		{ M_GN, "GN(kept, A16)" },
		{ M_COAL_MASK, "COAL(coalesced edge: COAL+1 mod 2^9 if OV was set, else 1; "
			       "otherwise kept, A14)" },
		{ M_EDGE_MASK, "edge(appended edge: +1 mod 2^32; coalesced edge: tail + (new "
			       "COAL & 1), tail = OV ? E - (COAL & 1) : E; no edge: kept)" },
	};
	size_t o = 0;

	buf[0] = 0;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]) && o < len; i++)
		if ((got ^ want) & fields[i].mask)
			o += (size_t)snprintf(buf + o, len - o, " %s", fields[i].rule);
	return buf;
}

/* ---------------------------------------------------------------------------
 * One comparison of rs_transition() against the model: the same result, and
 * on success the same word; on an error *out untouched (A11).
 */
#define SENTINEL UINT64_C(0xa5a5a5a5a5a5a5a5)

static void compare(const char *where, uint64_t old, int cmd, int arg, int arg2, unsigned m,
		    int err, uint64_t out, int rerr, uint64_t want)
{
	char wb[192], ob[192], xb[192], cb[80], db[800];

	n_checks++;
	if (err != rerr)
		failf("%s%s on %s: returned %s, the model %s", where,
		      fmt_cmd(cb, sizeof(cb), cmd, arg, arg2, m), fmt_word(wb, sizeof(wb), old),
		      fmt_err(err), fmt_err(rerr));
	else if (err != 0 && out != SENTINEL)
		failf("%s%s on %s: returned %s but wrote *out = 0x%016" PRIx64
		      " (must be untouched on error)", where,
		      fmt_cmd(cb, sizeof(cb), cmd, arg, arg2, m), fmt_word(wb, sizeof(wb), old),
		      fmt_err(err), out);
	else if (err == 0 && out != want)
		failf("%s%s on %s: new word %s, the model %s; differs in:%s", where,
		      fmt_cmd(cb, sizeof(cb), cmd, arg, arg2, m), fmt_word(wb, sizeof(wb), old),
		      fmt_word(ob, sizeof(ob), out), fmt_word(xb, sizeof(xb), want),
		      fmt_diff(db, sizeof(db), out, want));
}

/* Compares the library with the model; returns the model's result, and in
 * *want its word (SENTINEL on an error). */
static int check_one_out(const char *where, uint64_t old, int cmd, int arg, int arg2, unsigned m,
			 uint64_t *want)
{
	uint64_t out = SENTINEL;
	int err, rerr;

	*want = SENTINEL;
	rerr = m_transition(old, cmd, arg, arg2, m, want);
	err = rs_transition(old, (enum rs_cmd)cmd, arg, arg2, m, &out);
	compare(where, old, cmd, arg, arg2, m, err, out, rerr, *want);
	return rerr;
}

static void check_one(uint64_t old, int cmd, int arg, int arg2, unsigned m)
{
	uint64_t want;

	check_one_out("", old, cmd, arg, arg2, m, &want);
}

/* ---------------------------------------------------------------------------
 * 2. Names, ranks, errors.  The expected values come from the model, and the
 * ranks and error names from a table written here as well, so that the
 * model is held to the contract's text too.
 */
static void check_names(void)
{
	static const char *const bad_names[] = {
		"", " ", "Debug", "DEBUG", " debug", "debug ", "debug\n", "debug\r",
		"pre_migrate", "premigrate", "Pre-migrate", "save-vm", "SAVEVM",
		"io-error", "io_error", "running", "Paused", "PAUSED", "pause",
		"guest-panicked", "internal_error", "post-migrate", "pre-launch",
		"finish-migrate", "restore-vm", "-", "stop", "none ", "None",
	};
	static const int bad_lock_nums[] = { -1, 4, 5, 6, 8, 99, INT_MAX, INT_MIN };
	static const int bad_pause_nums[] = { -1, 8, 9, 99, INT_MAX, INT_MIN };
	/* semantics.md section 2. */
	static const int ranks_want[RS_PAUSE_COUNT] = { 0, 1, 1, 2, 2, 3, 4, 4 };
	size_t i;
	int r, p;

	for (r = 0; r < RS_LOCK_COUNT; r++) {
		/* A name the model lacks is a string no library name equals. */
		const char *n = rs_lock_name(r);
		const char *want = m_lock_name(r) ? m_lock_name(r) : "(none in the model)";

		CHECK(n && strcmp(n, want) == 0, "rs_lock_name(%d) = \"%s\", the model \"%s\"",
		      r, n ? n : "(null)", want);
		CHECK(rs_lock_parse(want) == r, "rs_lock_parse(\"%s\") = %d, expected %d",
		      want, rs_lock_parse(want), r);
		CHECK(rs_pause_parse(want) == RS_EINVAL,
		      "rs_pause_parse(\"%s\") (a lock name) = %d, expected RS_EINVAL", want,
		      rs_pause_parse(want));
	}
	for (p = 0; p < RS_PAUSE_COUNT; p++) {
		/* A name the model lacks is a string no library name equals. */
		const char *n = rs_pause_name(p);
		const char *want = m_pause_name(p) ? m_pause_name(p) : "(none in the model)";

		CHECK(n && strcmp(n, want) == 0, "rs_pause_name(%d) = \"%s\", the model \"%s\"",
		      p, n ? n : "(null)", want);
		CHECK(rs_pause_parse(want) == p,
		      "rs_pause_parse(\"%s\") = %d, expected %d (A10 for none)", want,
		      rs_pause_parse(want), p);
		CHECK(rs_lock_parse(want) == RS_EINVAL,
		      "rs_lock_parse(\"%s\") (a pause name) = %d, expected RS_EINVAL", want,
		      rs_lock_parse(want));
		CHECK(rs_pause_rank(p) == ranks_want[p] && m_rank(p) == ranks_want[p],
		      "rs_pause_rank(%d) (%s) = %d, the model %d, expected %d", p, want,
		      rs_pause_rank(p), m_rank(p), ranks_want[p]);
	}
	for (i = 0; i < sizeof(bad_lock_nums) / sizeof(bad_lock_nums[0]); i++) {
		const char *n = rs_lock_name(bad_lock_nums[i]);

		CHECK(n == NULL && m_lock_name(bad_lock_nums[i]) == NULL,
		      "rs_lock_name(%d) = \"%s\", expected NULL", bad_lock_nums[i], n);
	}
	for (i = 0; i < sizeof(bad_pause_nums) / sizeof(bad_pause_nums[0]); i++) {
		const char *n = rs_pause_name(bad_pause_nums[i]);

		CHECK(n == NULL && m_pause_name(bad_pause_nums[i]) == NULL,
		      "rs_pause_name(%d) = \"%s\", expected NULL", bad_pause_nums[i], n);
		CHECK(rs_pause_rank(bad_pause_nums[i]) == RS_EINVAL &&
		      m_rank(bad_pause_nums[i]) == RS_EINVAL,
		      "rs_pause_rank(%d) = %d, expected RS_EINVAL", bad_pause_nums[i],
		      rs_pause_rank(bad_pause_nums[i]));
	}
	for (i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		CHECK(rs_lock_parse(bad_names[i]) == RS_EINVAL,
		      "rs_lock_parse(\"%s\") = %d, expected RS_EINVAL", bad_names[i],
		      rs_lock_parse(bad_names[i]));
		CHECK(rs_pause_parse(bad_names[i]) == RS_EINVAL,
		      "rs_pause_parse(\"%s\") = %d, expected RS_EINVAL", bad_names[i],
		      rs_pause_parse(bad_names[i]));
	}
	CHECK(rs_lock_parse("none") == RS_EINVAL, "rs_lock_parse(\"none\") not RS_EINVAL (A10)");
	CHECK(rs_lock_parse(NULL) == RS_EINVAL, "rs_lock_parse(NULL) = %d, expected RS_EINVAL",
	      rs_lock_parse(NULL));
	CHECK(rs_pause_parse(NULL) == RS_EINVAL, "rs_pause_parse(NULL) = %d, expected RS_EINVAL",
	      rs_pause_parse(NULL));
}

static void check_errors(void)
{
	static const struct {
		int err;
		const char *name;
	} known[] = {
		{ 0, "ok" },
		{ RS_EINVAL, "invalid" },
		{ RS_EBUSY, "busy" },
		{ RS_ENOTHELD, "not-held" },
		{ RS_ENEEDFORCE, "needs-force" },
		{ RS_ENEEDRESET, "needs-reset" },
		{ RS_ETIMEDOUT, "timeout" },
		{ RS_ENOMEM, "no-memory" },
		{ RS_ENOSPC, "no-space" },
		{ RS_EDEADLK, "deadlock" },
	};
	static const int others[] = {
		1, 2, 12345, -2, -4, -9999, INT_MIN, INT_MAX, -EINTR, -EAGAIN,
		EDEADLK, -EDEADLK - 1, -EDEADLK + 1,
	};
	size_t i, j, n = sizeof(known) / sizeof(known[0]);

	for (i = 0; i < n; i++) {
		const char *s = rs_strerror(known[i].err);

		CHECK(s && strcmp(s, known[i].name) == 0 &&
		      strcmp(m_strerror(known[i].err), known[i].name) == 0,
		      "rs_strerror(%d) = \"%s\", the model \"%s\", expected \"%s\"", known[i].err,
		      s ? s : "(null)", m_strerror(known[i].err), known[i].name);
		CHECK(i == 0 || known[i].err < 0, "%s is not negative", known[i].name);
		for (j = 0; j < i; j++)
			CHECK(known[i].err != known[j].err, "error codes for %s and %s collide",
			      known[i].name, known[j].name);
	}
	for (i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		bool is_known = false;
		const char *s;

		for (j = 0; j < n; j++)
			is_known |= others[i] == known[j].err;
		if (is_known)
			continue;
		s = rs_strerror(others[i]);
		CHECK(s && strcmp(s, "unknown") == 0 &&
		      strcmp(m_strerror(others[i]), "unknown") == 0,
		      "rs_strerror(%d) = \"%s\", expected \"unknown\"", others[i],
		      s ? s : "(null)");
	}
}

/* ---------------------------------------------------------------------------
 * 3. Decoding, the fast path and the legacy status of one word.
 */
static const char *fmt_state(char *buf, size_t len, const struct rs_state *st)
{
	snprintf(buf, len, "{running=%d may_run=%d settling=%d io=%d locks=0x%x pause=%d "
		 "edge=0x%" PRIx32 "}", st->running, st->may_run, st->settling, st->io_error,
		 st->locks, (int)st->pause, st->edge);
	return buf;
}

/* rs_legacy_status() promises one pointer per string: the pointers seen so
 * far, by string. */
static const char *legacy_seen[32];

static void check_legacy_pointer(const char *legacy)
{
	size_t i;

	for (i = 0; i < sizeof(legacy_seen) / sizeof(legacy_seen[0]) && legacy_seen[i]; i++) {
		if (strcmp(legacy_seen[i], legacy) == 0) {
			CHECK(legacy_seen[i] == legacy,
			      "rs_legacy_status() returned \"%s\" at two addresses", legacy);
			return;
		}
	}
	CHECK(i < sizeof(legacy_seen) / sizeof(legacy_seen[0]),
	      "rs_legacy_status() returned more distinct strings than expected");
	if (i < sizeof(legacy_seen) / sizeof(legacy_seen[0]))
		legacy_seen[i] = legacy;
}

static void check_word_queries(uint64_t w)
{
	struct rs_state want, st0, st1;
	/* The inline fast path reads the instance's one visible member: a
	 * stand-in instance holding w checks it on any word. */
	const rs_runstate fake = { .word_private = w };
	const char *legacy = rs_legacy_status(w);
	char wb[192], sb[160], xb[160];
	int e0, e1;

	m_state(w, &want);
	/* Decode over two different fillings (0x00 and 0x01 bytes are valid
	 * bools) so that a field left unwritten shows. */
	memset(&st0, 0x00, sizeof(st0));
	st0.size = sizeof(st0);
	e0 = rs_decode(w, &st0);
	memset(&st1, 0x01, sizeof(st1));
	st1.size = sizeof(st1);
	e1 = rs_decode(w, &st1);
	CHECK(e0 == 0 && e1 == 0 && st0.size == sizeof(st0) && st1.size == sizeof(st1),
	      "rs_decode(%s) = %d, %d with a full-size struct", fmt_word(wb, sizeof(wb), w), e0,
	      e1);
	CHECK(m_state_eq(&st0, &st1), "rs_decode(%s) leaves a field unwritten",
	      fmt_word(wb, sizeof(wb), w));
	CHECK(m_state_eq(&st0, &want), "rs_decode(%s) = %s, the model %s",
	      fmt_word(wb, sizeof(wb), w), fmt_state(sb, sizeof(sb), &st0),
	      fmt_state(xb, sizeof(xb), &want));
	CHECK(legacy && strcmp(legacy, m_legacy(w)) == 0,
	      "rs_legacy_status(%s) = \"%s\", the model \"%s\"", fmt_word(wb, sizeof(wb), w),
	      legacy ? legacy : "(null)", m_legacy(w));
	if (legacy)
		check_legacy_pointer(legacy);
	CHECK(rs_may_run(&fake) == want.may_run, "rs_may_run(%s) = %d, the model %d",
	      fmt_word(wb, sizeof(wb), w), !want.may_run, want.may_run);
}

/*
 * Words worked out by hand from the rules, not through the model, so that a
 * model that shares a misreading with the library still meets a fixed point.
 * Layout reminder: E in bits 32..63, COAL in 23..31 (COAL 1 = 0x00800000),
 * GN 0x00400000, LW 0x00200000, PK 0x00100000, BL 1 = 0x2000, OV 0x1000,
 * the pause reason in bits 8..10 (paused = 0x200).
 */
static void check_by_hand(void)
{
	static const struct {
		uint64_t old;
		int cmd, arg, arg2;
		unsigned m;
		int err;
		uint64_t want;
		const char *why;
	} cases[] = {
		{ 0x0000000000000100, RS_CMD_START, 0, 0, 64, 0, 0x0000000100002000,
		  "first start: edge 1, backlog 1" },
		{ 0xffffffff00000000, RS_CMD_STOP, 0, 0, 64, 0, 0x0000000000002200,
		  "stop at edge 0xffffffff: the counter wraps to 0, no carry below" },
		{ 0xfffffffe00000100, RS_CMD_CONT, 0, 0, 1, 0, 0xffffffff00002000,
		  "start at edge 0xfffffffe: the counter reaches 0xffffffff" },
		{ 0x0000000100102000, RS_CMD_STOP, 0, 0, 1, 0, 0x0000000200903200,
		  "backlog 1 of 1: coalesced, OV set, COAL 1, E = tail 1 + 1, PK kept" },
		{ 0x0000000100102000, RS_CMD_STOP, 0, 0, 2, 0, 0x0000000200104200,
		  "backlog 1 of 2: joins, backlog 2, PK kept" },
		/* A run of coalesced edges behind a full backlog of 2 (tail 5). */
		{ 0x0000000500004000, RS_CMD_STOP, 0, 0, 2, 0, 0x0000000600805200,
		  "run: first coalesced edge, COAL 1, E = tail 5 + 1" },
		{ 0x0000000600805200, RS_CMD_START, 0, 0, 2, 0, 0x0000000501005000,
		  "run: second coalesced edge, COAL 2, E back to the tail 5" },
		{ 0x0000000501005000, RS_CMD_STOP, 0, 0, 2, 0, 0x0000000601805200,
		  "run: third coalesced edge, COAL 3, E = tail + 1 = 6" },
		{ 0x0000000600905200, RS_CMD_START, 0, 0, 2, 0, 0x0000000501105000,
		  "coalesced start: OV keeps vCPUs out, PK kept (A7)" },
		{ 0x0000000900801000, RS_CMD_STOP, 0, 0, 64, 0, 0x0000000801001200,
		  "OV set, empty backlog with room: still coalesced (A12), E = tail 8" },
		{ 0x0000000200001200, RS_CMD_START, 0, 0, 64, 0, 0x0000000300801000,
		  "OV set with COAL 0 (an even run): tail = E 2, COAL 1, E 3 (A14)" },
		{ 0x00000020ff001200, RS_CMD_CONT, 0, 0, 64, 0, 0x00000021ff801000,
		  "COAL 510 -> 511: E = tail 0x20 + 1" },
		{ 0x00000011ff801000, RS_CMD_STOP, 0, 0, 64, 0, 0x0000001000001200,
		  "COAL 511 + 1 wraps to 0 (mod 2^9, no carry into E); E = tail 0x10" },
		{ 0x00000011ffc01000, RS_CMD_STOP, 0, 0, 64, 0, 0x0000001000401200,
		  "COAL 511 + 1 with GN: no carry into GN or E, GN kept (A16)" },
		{ 0x0000000000801200, RS_CMD_START, 0, 0, 64, 0, 0xffffffff01001000,
		  "E 0 with COAL 1: tail 0xffffffff (A14), COAL 2, E = tail" },
		{ 0xffffffff00002000, RS_CMD_STOP, 0, 0, 1, 0, 0x0000000000803200,
		  "coalesced at tail 0xffffffff: E wraps to 0, no carry into COAL" },
		{ 0x0000000102800000, RS_CMD_STOP, 0, 0, 64, 0, 0x0000000202802200,
		  "OV clear with COAL 5 (unreachable): an appended edge leaves COAL (A14)" },
		{ 0x0000000102802000, RS_CMD_STOP, 0, 0, 1, 0, 0x0000000200803200,
		  "OV clear with COAL 5: a coalesced edge starts at COAL 1 (A14)" },
		{ 0x0000000300901000, RS_CMD_RETRY, 0, 0, 64, 0, 0x0000000300901000,
		  "OV set, no edge: nothing changes, PK kept" },
		{ 0x0000000300402000, RS_CMD_STOP, 0, 0, 64, 0, 0x0000000400404200,
		  "appended edge: GN kept (A16)" },
		{ 0x0000000302403000, RS_CMD_STOP, 0, 0, 64, 0, 0x0000000402c03200,
		  "coalesced edge, COAL 4 -> 5: GN kept (A16)" },
		{ 0x0000000500500000, RS_CMD_RESET, 0, 0, 64, 0, 0x0000000500400000,
		  "runnable word with GN and PK, no edge: PK cleared, GN kept (A7, A16)" },
		{ 0x00000007000fe000, RS_CMD_LOCK, RS_LOCK_DEBUG, 0, 127, 0, 0x00000008008ff001,
		  "backlog 127 of 127: coalesced, COAL 1" },
		{ 0x00000007000fe000, RS_CMD_LOCK, RS_LOCK_DEBUG, 0, 3, 0, 0x00000008008ff001,
		  "backlog 127 above max 3: coalesced (A12)" },
		{ 0x0000000500100000, RS_CMD_RETRY, 0, 0, 64, 0, 0x0000000500000000,
		  "runnable word with PK, no edge: PK cleared (A7)" },
		{ 0x0000000500300000, RS_CMD_STOP, 0, 0, 64, 0, 0x0000000600302200,
		  "stop edge from a runnable word with PK and LW: both kept" },
		{ 0x00000003ff800880, RS_CMD_STOP, 0, 0, 2, 0, 0x00000004ff802a80,
		  "EX, RV kept (A13), COAL 511 kept on an appended edge (A14)" },
		{ 0x0000000000000010, RS_CMD_CONT, 0, 0, 64, 0, 0x0000000000000010,
		  "a reserved lock bit stops the VM: cont makes no edge (A13)" },
		{ 0x0000000000000110, RS_CMD_START, 0, 0, 64, 0, 0x0000000000000010,
		  "start with a reserved lock bit: pause cleared, no edge (A13)" },
		{ 0x0000000100000000, RS_CMD_UNLOCK, RS_LOCK_DEBUG, 0, 64, RS_ENOTHELD, 0,
		  "unlock of a free bit" },
		{ 0x0000000100000000, RS_CMD_UNLOCK, RS_LOCK_DEBUG, 0, 0, RS_EINVAL, 0,
		  "max_backlog 0 (A11)" },
		{ 0x0000000100000000, RS_CMD_RETRY, 0, 0, 128, RS_EINVAL, 0,
		  "max_backlog 128, no edge (A11)" },
		{ 0x0000000000000600, RS_CMD_START, 0, 0, 128, RS_EINVAL, 0,
		  "max_backlog 128 before needs-reset (A11)" },
	};
	char wb[192], ob[192], xb[192], cb[80], db[800], why[160];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t out = SENTINEL, mout;
		int err, merr;

		/* The library against the model, then each against the hand:
		 * a model that shares a misreading with the library meets a
		 * fixed point here, and a planted model is told apart from a
		 * library bug. */
		snprintf(why, sizeof(why), "by hand (%s): ", cases[i].why);
		merr = check_one_out(why, cases[i].old, cases[i].cmd, cases[i].arg, cases[i].arg2,
				     cases[i].m, &mout);
		err = rs_transition(cases[i].old, (enum rs_cmd)cases[i].cmd, cases[i].arg,
				    cases[i].arg2, cases[i].m, &out);
		n_checks++;
		if (err != cases[i].err || (err == 0 && out != cases[i].want) ||
		    (err != 0 && out != SENTINEL))
			failf("%slibrary: %s on %s: returned %s, word %s; expected %s, "
			      "word %s; differs in:%s", why,
			      fmt_cmd(cb, sizeof(cb), cases[i].cmd, cases[i].arg,
				      cases[i].arg2, cases[i].m),
			      fmt_word(wb, sizeof(wb), cases[i].old), fmt_err(err),
			      out == SENTINEL ? "(not written)" : fmt_word(ob, sizeof(ob), out),
			      fmt_err(cases[i].err),
			      cases[i].err ? "(not written)" :
			      fmt_word(xb, sizeof(xb), cases[i].want),
			      fmt_diff(db, sizeof(db), out,
				       cases[i].err ? SENTINEL : cases[i].want));
		n_checks++;
		if (merr != cases[i].err || (merr == 0 && mout != cases[i].want))
			failf("%sthe model: returned %s, word %s; expected %s, word %s", why,
			      fmt_err(merr),
			      merr ? "(not written)" : fmt_word(ob, sizeof(ob), mout),
			      fmt_err(cases[i].err),
			      cases[i].err ? "(not written)" :
			      fmt_word(xb, sizeof(xb), cases[i].want));
		check_word_queries(cases[i].old);
		if (cases[i].err == 0)
			check_word_queries(cases[i].want);
	}
}

/* ---------------------------------------------------------------------------
 * 4. Exhaustive: every state, every command, every argument.
 */
static const int cmds[] = {
	RS_CMD_STOP, RS_CMD_START, RS_CMD_RETRY, RS_CMD_CONT, RS_CMD_RESET,
	RS_CMD_IO_ERROR, RS_CMD_PAUSE, RS_CMD_LOCK, RS_CMD_UNLOCK,
	-1, RS_CMD_COUNT, RS_CMD_COUNT + 1, 100, INT_MAX, INT_MIN,
};
static const int args[] = {
	INT_MIN, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 99, INT_MAX,
};
/* max_backlog values outside 1..127 (A11), some of which a careless
 * truncation to 7 or 8 bits would turn into valid ones. */
static const unsigned bad_backlogs[] = {
	0, 128, 129, 255, 256, 0x17f, 1000, 0x80000000u, 0x80000001u, UINT_MAX,
};

struct cmd_arg {
	int cmd, arg, arg2;
};

/* The 50 valid (command, arg, arg2) triples. */
static size_t valid_cmds(struct cmd_arg *v)
{
	size_t n = 0;
	int r, p;

	v[n++] = (struct cmd_arg){ RS_CMD_STOP, 0, 0 };
	v[n++] = (struct cmd_arg){ RS_CMD_START, 0, 0 };
	v[n++] = (struct cmd_arg){ RS_CMD_START, (int)RS_START_FORCE, 0 };
	v[n++] = (struct cmd_arg){ RS_CMD_RETRY, 0, 0 };
	v[n++] = (struct cmd_arg){ RS_CMD_CONT, 0, 0 };
	v[n++] = (struct cmd_arg){ RS_CMD_RESET, 0, 0 };
	v[n++] = (struct cmd_arg){ RS_CMD_IO_ERROR, 0, 0 };
	for (p = 1; p < RS_PAUSE_COUNT; p++)
		v[n++] = (struct cmd_arg){ RS_CMD_PAUSE, p, 0 };
	for (r = 0; r < RS_LOCK_COUNT; r++) {
		v[n++] = (struct cmd_arg){ RS_CMD_LOCK, r, 0 };
		for (p = 0; p < RS_PAUSE_COUNT; p++)
			v[n++] = (struct cmd_arg){ RS_CMD_UNLOCK, r, p };
	}
	return n;
}

/*
 * 4a. Arguments.  The bookkeeping does not decide whether an argument is
 * valid, so each semantic state meets every argument in a handful of
 * contexts rather than in all of part 4b's.
 */
static void check_arguments(void)
{
	static const struct {
		unsigned m;
		uint64_t book;
	} ctx[] = {
		{ 64, 0 },
		{ 1, M_BACKLOG(1) | M_PK | M_EDGE(0xffffffff) },
		{ 127, M_BACKLOG(126) | M_LW | M_EDGE(0x80000000) },
		{ 2, M_OV | M_COAL(1) | M_PK | M_LW | M_EDGE(0x7fffffff) },
		{ 127, M_BACKLOG(127) | M_EDGE(1) },
		{ 3, M_BACKLOG(5) | M_EDGE(2) },
		{ 64, M_COAL(M_COAL_MAX) | M_EX | M_PK | M_EDGE(0xfffffffe) },
		{ 1, M_RV | M_LOCK(4) | M_EDGE(3) },
		{ 2, M_OV | M_COAL(M_COAL_MAX) | M_GN | M_BACKLOG(2) | M_EDGE(0) },
		{ 64, M_OV | M_COAL(0) | M_PK | M_EDGE(0xffffffff) },
		{ 127, M_OV | M_COAL(2) | M_BACKLOG(7) | M_LW | M_EDGE(0x80000001) },
		{ 1, M_GN | M_BACKLOG(1) | M_PK | M_EDGE(5) },
		{ 0, M_PK },
		{ 128, M_BACKLOG(1) | M_EDGE(0xffffffff) },
		{ UINT_MAX, M_OV | M_COAL(1) },
	};
	size_t x, c, a, a2;
	unsigned locks, io;
	int p;

	for (x = 0; x < sizeof(ctx) / sizeof(ctx[0]); x++)
	for (locks = 0; locks < 16; locks++)
	for (io = 0; io < 2; io++)
	for (p = 0; p < RS_PAUSE_COUNT; p++) {
		uint64_t w = sem_word(locks, io, p) | ctx[x].book;

		check_word_queries(w);
		for (c = 0; c < sizeof(cmds) / sizeof(cmds[0]); c++)
		for (a = 0; a < sizeof(args) / sizeof(args[0]); a++)
		for (a2 = 0; a2 < sizeof(args) / sizeof(args[0]); a2++)
			check_one(w, cmds[c], args[a], args[a2], ctx[x].m);
	}
}

/*
 * 4b. The bookkeeping: every valid command on every semantic state, in
 * every combination of max_backlog, backlog, OV, PK, LW, edge counter and
 * COAL, and each (edge counter, COAL) pair once more with reserved bits.
 */
static void check_bookkeeping(void)
{
	static const unsigned maxes[] = { 1, 2, 3, 64, 126, 127 };
	/* 0xffffffff: the next edge wraps; 0x7fffffff: it carries into bit
	 * 63; 0 with an odd COAL and OV: the tail is 0xffffffff. */
	static const uint32_t edges[] = {
		0, 1, 2, 0x7fffffff, 0x80000000u, 0xfffffffe, 0xffffffff,
	};
	/* 511: the next coalesced edge wraps the count to 0. */
	static const unsigned coals[] = { 0, 1, 2, M_COAL_MAX - 1, M_COAL_MAX };
	/* Reserved bits, one set per (edge, COAL) pair (flags[2]).  LW and GN
	 * are only ever kept, so PK, LW and GN go together. */
	static const uint64_t rsv[] = {
		M_EX | M_PK, M_RV | M_LW | M_GN, M_LOCK(4) | M_PK | M_GN,
		M_LOCK(5) | M_EX | M_RV | M_LW,
	};
	static const uint64_t flags[] = { 0, M_PK | M_LW | M_GN, 0 };
	struct cmd_arg v[64];
	size_t nv = valid_cmds(v), mi, e, c, f, i, k;
	unsigned locks, io, ov, n, m, b;
	int p;
	char cb[80];

	for (mi = 0; mi < sizeof(maxes) / sizeof(maxes[0]); mi++) {
		/* The backlog values that matter: empty, one, just below the
		 * max, the max, just above it (A12), the field's maximum. */
		unsigned bls[6], nbl = 0;

		m = maxes[mi];
		bls[0] = 0;
		bls[1] = 1;
		bls[2] = m - 1;
		bls[3] = m;
		bls[4] = m + 1;
		bls[5] = M_BACKLOG_MAX;

		for (i = 0; i < 6; i++) {
			bool dup = bls[i] > M_BACKLOG_MAX;

			for (k = 0; k < nbl; k++)
				dup |= bls[k] == bls[i];
			if (!dup)
				bls[nbl++] = bls[i];
		}
		for (b = 0; b < nbl; b++)
		for (ov = 0; ov < 2; ov++)
		for (f = 0; f < sizeof(flags) / sizeof(flags[0]); f++)
		for (e = 0; e < sizeof(edges) / sizeof(edges[0]); e++)
		for (c = 0; c < sizeof(coals) / sizeof(coals[0]); c++)
		for (locks = 0; locks < 16; locks++)
		for (io = 0; io < 2; io++)
		for (p = 0; p < RS_PAUSE_COUNT; p++) {
			uint64_t w = sem_word(locks, io, p) | M_BACKLOG(bls[b]) |
				     (ov ? M_OV : 0) | flags[f] | M_EDGE(edges[e]) |
				     M_COAL(coals[c]) | (f == 2 ? rsv[(e + c) % 4] : 0);

			if (mi == 0)
				check_word_queries(w);
			for (i = 0; i < nv; i++)
				check_one(w, v[i].cmd, v[i].arg, v[i].arg2, m);
		}
	}

	/* The backlog rule's comparison, for every max_backlog against every
	 * backlog, OV clear (COAL 0, and 5: A14) and set (COAL 0, 1, 2, 511),
	 * GN clear and set: stop edges, a start edge, and a command that
	 * makes none. */
	for (m = 1; m <= M_BACKLOG_MAX; m++)
	for (b = 0; b <= M_BACKLOG_MAX; b++)
	for (k = 0; k < 6; k++) {
		static const unsigned kc[6] = { 0, 5, 0, 1, 2, M_COAL_MAX };
		uint64_t book = M_BACKLOG(b) | (k >= 2 ? M_OV : 0) | M_COAL(kc[k]) | M_PK |
				(k % 2 ? M_GN : 0);

		check_one(book | M_EDGE(0xffffffff), RS_CMD_STOP, 0, 0, m);
		check_one(book | M_EDGE(0), RS_CMD_STOP, 0, 0, m);
		check_one(book | M_LOCK(RS_LOCK_SAVEVM) | M_EDGE(0x1234),
			  RS_CMD_UNLOCK, RS_LOCK_SAVEVM, RS_PAUSE_NONE, m);
		check_one(book | M_IO | M_EDGE(0x1234), RS_CMD_STOP, 0, 0, m);
	}

	/* A11: invalid max_backlog values, on words that would make an edge,
	 * no edge, or fail; some in the middle of a coalesced run. */
	for (n = 0; n < sizeof(bad_backlogs) / sizeof(bad_backlogs[0]); n++)
	for (e = 0; e < 3; e++)
	for (locks = 0; locks < 16; locks++)
	for (io = 0; io < 2; io++)
	for (p = 0; p < RS_PAUSE_COUNT; p++) {
		uint64_t w = sem_word(locks, io, p) | M_EDGE(edges[e * 3]) |
			     (e == 1 ? M_OV | M_COAL(M_COAL_MAX) | M_GN : 0) |
			     (e == 2 ? M_BACKLOG(1) | M_EX : 0);

		for (i = 0; i < nv; i++)
			check_one(w, v[i].cmd, v[i].arg, v[i].arg2, bad_backlogs[n]);
	}

	/* A8: NULL out, with commands that would succeed on this word. */
	for (i = 0; i < RS_CMD_COUNT; i++) {
		uint64_t w = M_LOCK(RS_LOCK_DEBUG) | M_PAUSE(RS_PAUSE_PAUSED);
		int arg = i == RS_CMD_PAUSE ? RS_PAUSE_WATCHDOG :
			  i == RS_CMD_LOCK ? RS_LOCK_SAVEVM :
			  i == RS_CMD_UNLOCK ? RS_LOCK_DEBUG : 0;
		uint64_t out;

		CHECK(m_transition(w, (int)i, arg, 0, 64, &out) == 0, "%s: the model fails",
		      fmt_cmd(cb, sizeof(cb), (int)i, arg, 0, 64));
		CHECK(rs_transition(w, (enum rs_cmd)i, arg, 0, 64, NULL) == RS_EINVAL &&
		      m_transition(w, (int)i, arg, 0, 64, NULL) == RS_EINVAL,
		      "%s with out == NULL: expected RS_EINVAL (A8)",
		      fmt_cmd(cb, sizeof(cb), (int)i, arg, 0, 64));
		CHECK(rs_transition(w, (enum rs_cmd)i, arg, 0, 0, NULL) == RS_EINVAL,
		      "%s with out == NULL: expected RS_EINVAL (A8, A11)",
		      fmt_cmd(cb, sizeof(cb), (int)i, arg, 0, 0));
	}
}

/* ---------------------------------------------------------------------------
 * Steps the library takes around rs_transition().  They never touch the
 * semantic fields, and nothing in the pure function settles an edge:
 * without the settler's steps the backlog would only grow.  They are the
 * walks' scaffolding, modelled on what the settler is designed to do (its
 * claim and absorb), not something this test checks; what they lead to is
 * checked through rs_transition() and the ledger.
 *
 *  claim     the settler takes the backlog's first entry off it (its edge's
 *            work is done): backlog - 1; if the word may now run, PK is
 *            cleared (the settler wakes the parked vCPUs);
 *  absorb    the backlog has drained (0) while OV is set: the coalesced run
 *            becomes one entry, which ends one edge number after the tail
 *            if the run is odd (it changed running), two if it is even:
 *            OV and COAL cleared, GN flipped, backlog 1, E = that end;
 *  park      a vCPU that may not run parks: PK set;
 *  unpark    PK cleared by someone who wakes the parked (a start's early
 *            wake);
 *  lockwait  a thread waits for a held lock bit: LW set; and LW cleared.
 */
enum env_step {
	ENV_CLAIM, ENV_ABSORB, ENV_PARK, ENV_UNPARK, ENV_LOCKWAIT, ENV_LOCKWAIT_END,
	ENV_COUNT
};

static uint64_t env_step(uint64_t w, int which)
{
	struct m_word d = dec(w);

	switch (which) {
	case ENV_CLAIM:
		if (d.backlog == 0)
			return w;
		d.backlog--;
		if (m_may_run(&d))
			d.parked = false;
		break;
	case ENV_ABSORB:
		if (d.backlog != 0 || !d.overflow)
			return w;
		d.edge = m_tail(&d) + (d.coal % 2u ? 1u : 2u);
		d.overflow = false;
		d.coal = 0;
		d.gen = !d.gen;
		d.backlog = 1;
		break;
	case ENV_PARK:
		if (m_may_run(&d))
			return w;
		d.parked = true;
		break;
	case ENV_UNPARK:
		d.parked = false;
		break;
	case ENV_LOCKWAIT:
		if (!(w & M_LOCKS_NAMED))
			return w;
		d.lockwait = true;
		break;
	default:
		d.lockwait = false;
		break;
	}
	return m_encode(&d);
}

/* The invariants of every reachable word, for max_backlog m. */
static void check_invariants(uint64_t w, unsigned m, const char *where)
{
	struct m_word d = dec(w);
	char wb[192];

	CHECK(((d.edge & 1) != 0) == m_running(&d.t),
	      "%s: reachable word %s: edge parity is not running-ness", where,
	      fmt_word(wb, sizeof(wb), w));
	CHECK(d.backlog <= m, "%s: reachable word %s: backlog above max_backlog %u", where,
	      fmt_word(wb, sizeof(wb), w), m);
	CHECK(!d.overflow || !m_may_run(&d), "%s: reachable word %s: OV set, may run",
	      where, fmt_word(wb, sizeof(wb), w));
	CHECK(!m_may_run(&d) || !d.parked, "%s: reachable word %s: may run with PK set",
	      where, fmt_word(wb, sizeof(wb), w));
	CHECK(d.overflow || d.coal == 0, "%s: reachable word %s: COAL without OV",
	      where, fmt_word(wb, sizeof(wb), w));
	CHECK(!(w & M_RESERVED), "%s: reachable word %s: reserved bit set", where,
	      fmt_word(wb, sizeof(wb), w));
}

/* ---------------------------------------------------------------------------
 * 5. Breadth-first search over the words reachable from the initial word
 * through valid commands and library steps, for edge counters below 16 and
 * coalesced counts below 8 (the walks and part 4 take COAL further).  A
 * reachable word has no reserved bit (checked), so the named locks,
 * io-error, pause, OV, backlog, PK, LW, GN, COAL and the edge index a
 * bitmap.
 */
#define BFS_EDGES 16u
#define BFS_COAL 8u
#define BFS_KEYS (1u << 26)

static uint8_t bfs_seen[BFS_KEYS / 8];

static uint32_t bfs_key(uint64_t w)
{
	struct m_word d = dec(w);

	return (d.t.locks & 0xfu) |			/* bits 0..3 */
	       (uint32_t)d.t.io << 4 |
	       (uint32_t)d.t.pause << 5 |		/* 5..7 */
	       (uint32_t)d.overflow << 8 |
	       d.backlog << 9 |				/* 9..15 */
	       (uint32_t)d.parked << 16 |
	       (uint32_t)d.lockwait << 17 |
	       (uint32_t)d.gen << 18 |
	       d.coal << 19 |				/* 19..21 */
	       d.edge << 22;				/* 22..25 */
}

static void check_reachable(unsigned m)
{
	struct cmd_arg v[64];
	size_t nv = valid_cmds(v), head = 0, tail = 0, cap = 1u << 16, i;
	uint64_t *queue = malloc(cap * sizeof(*queue));
	uint64_t init = M_PAUSE(RS_PAUSE_PRELAUNCH);
	unsigned long n_ov = 0, n_full = 0, n_pk = 0, n_semantic = 0, n_absorb = 0;
	unsigned long n_odd = 0, n_even = 0, n_coal_max = 0, n_gn = 0;
	static uint8_t sem_seen[256];
	char name[32], at[40], wb[192];

	if (!queue)
		abort();
	snprintf(name, sizeof(name), "bfs(max_backlog %u)", m);
	snprintf(at, sizeof(at), "%s: ", name);
	memset(bfs_seen, 0, sizeof(bfs_seen));
	memset(sem_seen, 0, sizeof(sem_seen));
	queue[tail++] = init;
	bfs_seen[bfs_key(init) / 8] |= (uint8_t)(1u << (bfs_key(init) % 8));
	while (head < tail) {
		uint64_t w = queue[head++];
		struct m_word d = dec(w);
		uint64_t next[64 + ENV_COUNT];
		size_t nn = 0;
		unsigned sem = bfs_key(w) & 0xffu;	/* locks, io-error, pause */

		check_invariants(w, m, name);
		/* No run here reaches 2^9 edges: OV always comes with a count. */
		CHECK(!d.overflow || d.coal != 0, "%s: reachable word %s: OV with COAL 0 "
		      "before 2^%u coalesced edges", name, fmt_word(wb, sizeof(wb), w),
		      M_COAL_BITS);
		if (d.overflow) {
			n_ov++;
			n_absorb += d.backlog == 0;
			n_odd += d.coal % 2;
			n_even += d.coal % 2 == 0;
			n_coal_max += d.coal == BFS_COAL - 1;
		}
		n_full += d.backlog == m;
		n_pk += d.parked;
		n_gn += d.gen;
		if (!sem_seen[sem]) {
			sem_seen[sem] = 1;
			n_semantic++;
		}
		for (i = 0; i < nv; i++) {
			uint64_t out;

			if (check_one_out(at, w, v[i].cmd, v[i].arg, v[i].arg2, m, &out) == 0)
				next[nn++] = out;
		}
		for (i = 0; i < ENV_COUNT; i++)
			next[nn++] = env_step(w, (int)i);
		for (i = 0; i < nn; i++) {
			uint64_t x = next[i];
			struct m_word dx = dec(x);
			uint32_t key;

			if (dx.edge >= BFS_EDGES || dx.coal >= BFS_COAL)
				continue;
			if (x & M_RESERVED) {
				check_invariants(x, m, name);	/* reports it */
				continue;
			}
			key = bfs_key(x);
			if (bfs_seen[key / 8] & (1u << (key % 8)))
				continue;
			bfs_seen[key / 8] |= (uint8_t)(1u << (key % 8));
			if (tail == cap) {
				cap *= 2;
				queue = realloc(queue, cap * sizeof(*queue));
				if (!queue)
					abort();
			}
			queue[tail++] = x;
		}
	}
	free(queue);
	printf("test_transition: %s: %zu reachable words with edge < %u and COAL < %u (%lu "
	       "with OV: %lu odd runs, %lu even, %lu ready to absorb; %lu with a full "
	       "backlog, %lu with PK, %lu with GN)\n", name, tail, BFS_EDGES, BFS_COAL, n_ov,
	       n_odd, n_even, n_absorb, n_full, n_pk, n_gn);
	/* Sanity of the search itself: every semantic state is reachable, and
	 * so are parked words.  A backlog of 1 or 2 fills and overflows within
	 * 16 edges, runs grow to the bound and drain to be absorbed; one of 64
	 * cannot fill, so no word then carries OV. */
	CHECK(n_semantic == 256, "%s reached only %lu of 256 semantic states", name, n_semantic);
	CHECK(n_pk > 0, "%s reached no word with PK", name);
	if (m < BFS_EDGES)
		CHECK(n_ov > 0 && n_full > 0 && n_absorb > 0 && n_odd > 0 && n_even > 0 &&
		      n_coal_max > 0 && n_gn > 0, "%s: no full backlog, OV, odd and even run, "
		      "run of %u, absorbable run or GN reached", name, BFS_COAL - 1);
	else
		CHECK(n_ov == 0 && n_gn == 0, "%s: OV or GN set after fewer than max_backlog "
		      "edges", name);
}

/* ---------------------------------------------------------------------------
 * 6. Random walks in lockstep.
 */
/* The walks' generator: splitmix64 (rsutil), seeded with each walk's seed
 * as its state, so that a walk is the same sequence on every run. */
static struct rsu_rng walk_rng;

static uint64_t rng(void)
{
	return rsu_rng_next(&walk_rng);
}

static int pick(const int *v, size_t n)
{
	return v[rng() % n];
}

/*
 * A random command.  `heavy` percent of them come from an edge-heavy mix
 * (stop, cont, unlock, reset) that keeps the VM flipping, for the walks that
 * make long coalesced runs; the rest are weighted towards the commands that
 * make edges but use every command, with some invalid arguments.
 */
static void random_cmd(int *cmd, int *arg, int *arg2, unsigned heavy)
{
	static const int bad_cmds[] = { -1, RS_CMD_COUNT, 100, INT_MAX };
	static const int bad_locks[] = { -1, 4, 5, 99 };
	static const int bad_pause[] = { -1, 8, 99, INT_MIN };
	static const int bad_start[] = { 2, 3, -1 };
	unsigned invalid;

	*arg = 0;
	*arg2 = 0;
	if (heavy && rng() % 100 < heavy) {
		unsigned k = (unsigned)(rng() % 20);

		*cmd = k < 8 ? RS_CMD_STOP : k < 16 ? RS_CMD_CONT : k < 19 ? RS_CMD_UNLOCK :
		       RS_CMD_RESET;
		if (*cmd == RS_CMD_UNLOCK)
			*arg = (int)(rng() % 4);
		return;
	}
	invalid = rng() % 100 < 3;
	if (rng() % 200 == 0) {
		*cmd = pick(bad_cmds, 4);
		return;
	}
	switch (rng() % 14) {
	case 0: case 1: *cmd = RS_CMD_STOP; break;
	case 2: case 3: *cmd = RS_CMD_START; break;
	case 4: *cmd = RS_CMD_RETRY; break;
	case 5: case 6: *cmd = RS_CMD_CONT; break;
	case 7: *cmd = RS_CMD_RESET; break;
	case 8: *cmd = RS_CMD_IO_ERROR; break;
	case 9: *cmd = RS_CMD_PAUSE; break;
	case 10: case 11: *cmd = RS_CMD_LOCK; break;
	default: *cmd = RS_CMD_UNLOCK; break;
	}
	switch (*cmd) {
	case RS_CMD_START:
		*arg = invalid ? pick(bad_start, 3) : (int)(rng() % 2);
		break;
	case RS_CMD_PAUSE:
		*arg = invalid ? pick(bad_pause, 4) : 1 + (int)(rng() % 7);
		if (rng() % 100 == 0)
			*arg = RS_PAUSE_NONE;
		break;
	case RS_CMD_LOCK:
		*arg = invalid ? pick(bad_locks, 4) : (int)(rng() % 4);
		break;
	case RS_CMD_UNLOCK:
		*arg = invalid ? pick(bad_locks, 4) : (int)(rng() % 4);
		*arg2 = rng() % 2 ? RS_PAUSE_NONE : (int)(rng() % 8);
		if (rng() % 100 == 0)
			*arg2 = pick(bad_pause, 4);
		break;
	}
}

/*
 * The walk's ledger of unsettled edges, kept from the edges the walk made
 * and the settler's steps alone, never from the word: the backlog's entries
 * in order (an appended edge, or a run of n coalesced edges once absorbed),
 * the pending run (edges coalesced since the last absorb, counted without
 * wrapping), and E of the last settled entry.  An entry moves the settled
 * edge number by 1 if it changes running (an edge, or an odd run) and by 2
 * if not (an even run).  The word must agree (ledger_check()).
 */
struct ledger_entry {
	uint64_t n;		/* edges in the entry */
	bool run;		/* a coalesced run (else one appended edge) */
};

struct ledger {
	struct ledger_entry entry[M_BACKLOG_MAX + 1];
	unsigned head, count;
	uint64_t pending;	/* coalesced edges not yet absorbed */
	uint32_t settled;	/* E after the last settled entry */
	uint32_t sum;		/* the entries' edge numbers, modulo 2^32 */
	bool gen;		/* GN: the start's, flipped by every absorb */
	bool overflow;		/* more entries than the backlog can hold */
};

static uint32_t entry_numbers(const struct ledger_entry *e)
{
	return !e->run || e->n % 2 ? 1u : 2u;
}

static void ledger_push(struct ledger *l, uint64_t n, bool run)
{
	struct ledger_entry *e;

	if (l->count > M_BACKLOG_MAX) {
		l->overflow = true;
		return;
	}
	e = &l->entry[(l->head + l->count++) % (M_BACKLOG_MAX + 1)];
	e->n = n;
	e->run = run;
	l->sum += entry_numbers(e);
}

static void ledger_claim(struct ledger *l)
{
	const struct ledger_entry *e;

	if (l->count == 0)
		return;
	e = &l->entry[l->head];
	l->head = (l->head + 1) % (M_BACKLOG_MAX + 1);
	l->count--;
	l->settled += entry_numbers(e);
	l->sum -= entry_numbers(e);
}

static void ledger_absorb(struct ledger *l)
{
	ledger_push(l, l->pending, true);
	l->pending = 0;
	l->gen = !l->gen;
}

static void ledger_check(const struct ledger *l, uint64_t w, const char *where,
			 unsigned long step)
{
	struct m_word d = dec(w);
	uint32_t after = l->settled + l->sum;
	char wb[192];

	CHECK(!l->overflow && l->count == d.backlog && d.overflow == (l->pending != 0) &&
	      d.coal == l->pending % COAL_MOD && d.gen == l->gen &&
	      (d.overflow ? m_tail(&d) == after && d.edge == after + (uint32_t)(l->pending % 2)
			  : d.edge == after),
	      "walk %s step %lu: word %s against the ledger: %u entries ending at edge "
	      "0x%08" PRIx32 " (settled 0x%08" PRIx32 "), a pending run of %" PRIu64
	      " coalesced edges, GN %d%s: expected BL = entries, OV iff a run is pending, "
	      "COAL = run mod 2^9, GN flipped by each absorb, %s", where, step,
	      fmt_word(wb, sizeof(wb), w), l->count, after, l->settled, l->pending, l->gen,
	      l->overflow ? ", more entries than 127" : "",
	      d.overflow ? "tail = the entries' end, E = tail + (run & 1)" :
	      "E = the entries' end");
}

struct walk_cfg {
	const char *name;
	uint64_t start;
	unsigned m;
	unsigned long steps;
	uint64_t seed;
	unsigned heavy;			/* percent of edge-heavy commands */
	unsigned long stall_min, stall_span;	/* stalled phases (0: none) */
	bool stall_first;		/* begin with a stalled phase */
	bool must_wrap;			/* E must wrap around */
	bool must_wrap_coal;		/* a run must reach 2^9 edges */
	bool must_tail_wrap;		/* a run must straddle E's wrap */
};

struct walk_stats {
	unsigned long edges, joined, coalesced, claims, absorbs, odd_runs, even_runs;
	unsigned long long_runs, coal_zero, tail_wrap, errors, env, bad_max;
	uint64_t longest;
	unsigned max_bl;
	bool wrapped;
};

/* E moved forward across 0 (a coalesced edge that steps back to the tail
 * does not count). */
static void note_wrap(struct walk_stats *ws, uint64_t before, uint64_t after)
{
	uint32_t b = rsu_edge(before), a = rsu_edge(after);

	if (a < b && b - a > UINT32_C(0x80000000))
		ws->wrapped = true;
}

/* One library step on the word and the ledger. */
static void walk_env(uint64_t *w, struct ledger *l, int which, struct walk_stats *ws)
{
	uint64_t before = *w;

	*w = env_step(*w, which);
	if (*w == before)
		return;
	ws->env++;
	note_wrap(ws, before, *w);
	if (which == ENV_CLAIM) {
		ledger_claim(l);
		ws->claims++;
	} else if (which == ENV_ABSORB) {
		if (l->pending > ws->longest)
			ws->longest = l->pending;
		ws->long_runs += l->pending >= COAL_MOD;
		if (l->pending % 2)
			ws->odd_runs++;
		else
			ws->even_runs++;
		ledger_absorb(l);
		ws->absorbs++;
	}
}

enum { PHASE_FAST, PHASE_SLOW, PHASE_STALL };

static void walk(const struct walk_cfg *cfg)
{
	const char *name = cfg->name;
	unsigned m = cfg->m;
	uint64_t w = cfg->start;
	struct ledger l = { .settled = rsu_edge(cfg->start), .gen = (cfg->start & M_GN) != 0 };
	struct walk_stats ws = { 0 };
	unsigned long i, phase_end = 0;
	int phase = cfg->stall_first ? PHASE_SLOW : PHASE_STALL;
	char at[64];

	walk_rng.s = cfg->seed;
	printf("test_transition: walk %s: max_backlog %u, seed 0x%016" PRIx64 ", %lu commands"
	       "%s\n", name, m, cfg->seed, cfg->steps,
	       cfg->stall_span ? ", edge-heavy, the settler stalls" : "");
	for (i = 0; i < cfg->steps; i++) {
		uint64_t want;
		struct m_word d, dw;
		unsigned k, n, mm = m;
		int cmd, arg, arg2, rerr;

		/* The settler: phases of a fast one (drains the backlog), a
		 * slow one (lets it fill and overflow) and, in some walks, a
		 * stalled one (long coalesced runs). */
		if (i >= phase_end) {
			phase = phase == PHASE_FAST ? PHASE_SLOW :
				phase == PHASE_SLOW && cfg->stall_span ? PHASE_STALL : PHASE_FAST;
			phase_end = i + (phase == PHASE_FAST ? 1 + rng() % 2000 :
					 phase == PHASE_SLOW ? 2000 + rng() % 20000 :
					 cfg->stall_min + rng() % cfg->stall_span);
		}
		n = phase == PHASE_FAST ? (unsigned)(rng() % 4) :
		    phase == PHASE_SLOW ? rng() % 256 == 0 : 0;
		for (k = 0; k < n; k++)
			walk_env(&w, &l, rsu_backlog(w) ? ENV_CLAIM : ENV_ABSORB, &ws);
		switch (rng() % 16) {
		case 0: walk_env(&w, &l, ENV_PARK, &ws); break;
		case 1: walk_env(&w, &l, ENV_UNPARK, &ws); break;
		case 2: walk_env(&w, &l, ENV_LOCKWAIT, &ws); break;
		case 3: walk_env(&w, &l, ENV_LOCKWAIT_END, &ws); break;
		}
		check_invariants(w, m, name);
		ledger_check(&l, w, name, i);

		random_cmd(&cmd, &arg, &arg2, cfg->heavy);
		/* Now and then an invalid max_backlog: nothing changes (A11). */
		if (rng() % 512 == 0) {
			mm = bad_backlogs[rng() % (sizeof(bad_backlogs) / sizeof(bad_backlogs[0]))];
			ws.bad_max++;
		}
		/* The library against the model; the walk goes on with the
		 * model's word, so that one divergence does not hide the
		 * next. */
		snprintf(at, sizeof(at), "walk %s step %lu: ", name, i);
		rerr = check_one_out(at, w, cmd, arg, arg2, mm, &want);
		ws.errors += rerr != 0;
		if (rerr != 0)
			want = w;
		d = dec(w);
		dw = dec(want);
		if (m_running(&d.t) != m_running(&dw.t)) {
			/* An edge: the ledger decides from the old word and m
			 * where it goes, not from the new word. */
			ws.edges++;
			if (!d.overflow && d.backlog < m) {
				ws.joined++;
				ledger_push(&l, 1, false);
			} else {
				ws.coalesced++;
				l.pending++;
			}
		}
		note_wrap(&ws, w, want);
		w = want;
		d = dec(w);
		if (d.backlog > ws.max_bl)
			ws.max_bl = d.backlog;
		ws.coal_zero += d.overflow && d.coal == 0;
		ws.tail_wrap += d.overflow && d.edge < m_tail(&d);
		check_invariants(w, m, name);
		ledger_check(&l, w, name, i);
	}
	printf("test_transition: walk %s: %lu edges (%lu joined the backlog, %lu coalesced), "
	       "%lu claims, %lu absorbs (%lu odd runs, %lu even, %lu of 2^9 edges or more, "
	       "the longest %" PRIu64 "), largest backlog %u, %lu other library steps, "
	       "%lu errors returned (%lu for an invalid max_backlog)%s%s\n", name, ws.edges,
	       ws.joined, ws.coalesced, ws.claims, ws.absorbs, ws.odd_runs, ws.even_runs,
	       ws.long_runs, ws.longest, ws.max_bl, ws.env - ws.claims - ws.absorbs,
	       ws.errors, ws.bad_max, ws.wrapped ? ", edge counter wrapped" : "",
	       ws.tail_wrap ? ", coalesced across the wrap" : "");
	/* Sanity of the walk itself: the backlog filled, edges were coalesced
	 * in odd and even runs, absorbed, and it drained. */
	CHECK(ws.max_bl == m && ws.coalesced > 0 && ws.odd_runs > 0 && ws.even_runs > 0,
	      "walk %s never filled the backlog, or coalesced and absorbed no odd or no even "
	      "run (test too short)", name);
	if (cfg->must_wrap)
		CHECK(ws.wrapped, "walk %s did not wrap the edge counter (test too short)", name);
	if (cfg->must_wrap_coal)
		CHECK(ws.long_runs > 0 && ws.coal_zero > 0,
		      "walk %s absorbed no run of 2^9 edges or more (test too short)", name);
	if (cfg->must_tail_wrap)
		CHECK(ws.tail_wrap > 0, "walk %s: no run with tail 0xffffffff and E 0", name);
}

int main(int argc, char **argv)
{
	const uint64_t prelaunch = M_PAUSE(RS_PAUSE_PRELAUNCH);
	const struct walk_cfg walks[] = {
		{ "from-initial", prelaunch, 64, 1000000, 0x72756e7374617465ull,
		  0, 0, 0, false, false, false, false },
		{ "max-1", prelaunch, 1, 200000, 0x6d61782d31000000ull,
		  0, 0, 0, false, false, false, false },
		{ "max-2", prelaunch, 2, 200000, 0x6d61782d32000000ull,
		  0, 0, 0, false, false, false, false },
		{ "max-127", prelaunch, 127, 400000, 0x6d61782d31323700ull,
		  0, 0, 0, false, false, false, false },
		/* Stopped in prelaunch with an even edge count just below 2^32. */
		{ "across-wrap", prelaunch | M_EDGE(0xffffff00u), 3, 100000,
		  0x777261702d61726full, 0, 0, 0, false, true, false, false },
		/* Runs of thousands of coalesced edges: COAL wraps. */
		{ "coal-wrap-1", prelaunch, 1, 300000, 0x636f616c2d312d31ull,
		  85, 3000, 5000, false, false, true, false },
		{ "coal-wrap-127", prelaunch, 127, 300000, 0x636f616c2d313237ull,
		  85, 3000, 5000, false, false, true, false },
		/* The first edge makes E 0xffffffff, then the settler stalls:
		 * the run's tail is 0xffffffff and E goes to 0 and back. */
		{ "coal-at-wrap", prelaunch | M_EDGE(0xfffffffeu), 1, 100000,
		  0x636f616c2d777261ull, 85, 3000, 5000, true, true, true, true },
	};
	uint64_t t0 = rsu_now_ns();
	unsigned long before;
	size_t i;

	if (argc > 2 || (argc == 2 && strcmp(argv[1], "-x") != 0)) {
		fprintf(stderr, "usage: %s [-x]\n", argv[0]);
		return 2;
	}
	stop_at_first = argc == 2;

/* Run one part; name it with its failures, if any. */
#define PART(name, call) do {						\
	before = n_failures;						\
	call;								\
	if (n_failures > before)					\
		printf("test_transition: %s: %lu failures\n", name,	\
		       n_failures - before);				\
} while (0)
	PART("names", check_names());
	PART("errors", check_errors());
	PART("by hand", check_by_hand());
	PART("4a arguments", check_arguments());
	PART("4b bookkeeping", check_bookkeeping());
	PART("bfs(max_backlog 1)", check_reachable(1));
	PART("bfs(max_backlog 2)", check_reachable(2));
	PART("bfs(max_backlog 64)", check_reachable(64));
	for (i = 0; i < sizeof(walks) / sizeof(walks[0]); i++)
		PART(walks[i].name, walk(&walks[i]));
#undef PART
	printf("test_transition: %lu checks, %lu failures, %.1f s\n", n_checks, n_failures,
	       (double)(rsu_now_ns() - t0) / 1e9);
	return n_failures ? 1 : 0;
}

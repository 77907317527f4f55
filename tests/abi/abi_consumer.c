/* SPDX-License-Identifier: MIT */
/*
 * A binary that uses every size-carrying structure, compiled against one
 * header and run against a library built from another (tests/abi/grow.sh):
 *
 *   old binary, new library: compiled against runstate.h, run against a
 *   library whose structs each gained a field at the end;
 *   new binary, old library: compiled against that grown header (GROWN
 *   defined: the struct has the field `future`), run against today's.
 *
 * Every structure sits between canaries: the library must write exactly
 * the bytes the binary knows, zeros in what the binary knows and the
 * library does not, and must read a config as far as it goes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runstate.h"

static int failures;

#define CHECK(c) do { \
	if (!(c)) { \
		failures++; \
		fprintf(stderr, "abi_consumer:%d: check failed: %s\n", __LINE__, #c); \
	} \
} while (0)

#define CANARY 0xa5

/* A structure of type T between canaries; its bytes start as `fill`. */
#define GUARDED(T) struct { unsigned char pre[64]; T v; unsigned char post[64]; }

static void guard(void *g, size_t n, unsigned char fill)
{
	memset(g, CANARY, n);
	memset((char *)g + 64, fill, n - 128);
}

static int intact(const void *g, size_t n)
{
	const unsigned char *p = g;

	for (size_t i = 0; i < 64; i++)
		if (p[i] != CANARY || p[n - 64 + i] != CANARY)
			return 0;
	return 1;
}

static void nop(void *opaque, bool running, const struct rs_state *st)
{
	(void)opaque;
	(void)running;
	/* The library passes its own struct; a binary reads what it knows. */
	CHECK(st->size >= RS_STATE_SIZE_0_9);
}

int main(void)
{
	GUARDED(struct rs_config) cfg;
	GUARDED(struct rs_stats) st;
	GUARDED(struct rs_state) ds;
	struct { unsigned char pre[64]; struct rs_event e[3]; unsigned char post[64]; } ev;
	rs_runstate *rs;
	rs_listener *l;
	uint64_t cur;
	int n;

	printf("binary built against %s header, sizes: config %zu, stats %zu, state %zu, "
	       "event %zu; library version %#x\n",
#ifdef GROWN
	       "the grown",
#else
	       "today's",
#endif
	       sizeof(struct rs_config), sizeof(struct rs_stats), sizeof(struct rs_state),
	       sizeof(struct rs_event), rs_version());

	/* A config as the binary knows it: the library reads only that. */
	guard(&cfg, sizeof(cfg), 0);
	cfg.v.size = sizeof(cfg.v);
	cfg.v.event_capacity = 2;
	cfg.v.max_backlog = 3;
#ifdef GROWN
	/* A field this (old) library lacks: zero is accepted, else refused. */
	cfg.v.future = 1;
	CHECK(rs_create(&cfg.v, &rs) == RS_EINVAL);
	cfg.v.future = 0;
#endif
	CHECK(rs_create(&cfg.v, &rs) == 0);
	CHECK(intact(&cfg, sizeof(cfg)));

	CHECK(rs_listener_add(rs, nop, NULL, 0, &l) == 0);
	/* Three edges into a ring of 2: a loss, then two events. */
	cur = rs_events_cursor(rs);
	CHECK(rs_start(rs, 0) == 0);
	CHECK(rs_stop(rs, RS_FOREVER) == 0);
	CHECK(rs_start(rs, 0) == 0);
	CHECK(rs_wait(rs, RS_FOREVER) == 0);

	memset(&ev, CANARY, sizeof(ev));
	n = rs_events_read(rs, &cur, ev.e, 3, sizeof(ev.e[0]), NULL);
	CHECK(n == 3);
	CHECK(ev.e[0].kind == RS_EVENT_LOST && ev.e[0].seq == 1 && ev.e[0].lost == 1);
	CHECK(ev.e[1].kind == RS_EVENT_STOP && ev.e[1].seq == 2 && !ev.e[1].state.running);
	CHECK(ev.e[2].kind == RS_EVENT_RESUME && ev.e[2].seq == 3 && ev.e[2].state.running);
	CHECK(ev.e[2].state.size >= RS_STATE_SIZE_0_9);
#ifdef GROWN
	for (int i = 0; i < 3; i++)
		CHECK(ev.e[i].future == 0);
#endif
	for (size_t i = 0; i < 64; i++)
		CHECK(ev.pre[i] == CANARY && ev.post[i] == CANARY);

	guard(&st, sizeof(st), 0xff);
	st.v.size = sizeof(st.v);
	CHECK(rs_get_stats(rs, &st.v) == 0);
	CHECK(intact(&st, sizeof(st)));
	CHECK(st.v.size == sizeof(st.v));
	CHECK(st.v.start_edges == 2 && st.v.stop_edges == 1 && st.v.listener_runs == 3);
#ifdef GROWN
	CHECK(st.v.future == 0);
#endif

	guard(&ds, sizeof(ds), 0xff);
	ds.v.size = sizeof(ds.v);
	CHECK(rs_decode(rs_word(rs), &ds.v) == 0);
	CHECK(intact(&ds, sizeof(ds)));
	CHECK(ds.v.running && ds.v.may_run && !ds.v.settling && ds.v.pause == RS_PAUSE_NONE);
#ifdef GROWN
	CHECK(ds.v.future == 0);
#endif

	CHECK(rs_listener_remove(rs, l) == 0);
	rs_destroy(rs);
	printf("abi_consumer: %s\n", failures ? "FAILED" : "ok");
	return failures ? 1 : 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * The work counters of an instrumented build (cost.h says why they are
 * shaped as they are).  meson lists this file only with -Dinstrument=true;
 * the planted-bug copies of the library, compiled without RS_INSTRUMENT
 * even then, see nothing here.
 */
#include <string.h>

#include "instance.h"
#include "runstate-instrument.h"

#ifdef RS_INSTRUMENT

static _Thread_local uint64_t tls_cost[RS_COST_N];
static _Thread_local unsigned tls_stripe = RS_COST_STRIPES;  /* not chosen yet */
static _Atomic unsigned next_stripe;

static _Atomic uint64_t *stripe_of(struct rs_cost_part *part)
{
	if (tls_stripe == RS_COST_STRIPES)
		tls_stripe = atomic_fetch_add_explicit(&next_stripe, 1, memory_order_relaxed) %
			     RS_COST_STRIPES;
	return part->stripe[tls_stripe].c;
}

void rs_cost_add(struct rs_cost_part *part, enum rs_cost_id id, uint64_t n)
{
	tls_cost[id] += n;
	if (part)
		atomic_fetch_add_explicit(&stripe_of(part)[id], n, memory_order_relaxed);
}

void rs_cost_max(struct rs_cost_part *part, enum rs_cost_id id, uint64_t v)
{
	_Atomic uint64_t *c;
	uint64_t old;

	if (tls_cost[id] < v)
		tls_cost[id] = v;
	if (!part)
		return;
	c = &stripe_of(part)[id];
	old = atomic_load_explicit(c, memory_order_relaxed);
	while (old < v && !atomic_compare_exchange_weak_explicit(c, &old, v, memory_order_relaxed,
								 memory_order_relaxed))
		;
}

static void fill(struct rs_cost *out, const uint64_t *c)
{
	size_t size = out->size;

	/* Only as far as the caller's struct goes (its .size). */
	struct rs_cost full = {
		.size = size,
		.slots = c[RS_COST_SLOTS],
		.pins = c[RS_COST_PINS],
		.futex_waits = c[RS_COST_FUTEX_WAITS],
		.futex_wakes = c[RS_COST_FUTEX_WAKES],
		.word_rmws = c[RS_COST_WORD_RMWS],
		.tree_depth = c[RS_COST_TREE_DEPTH],
		.scans = c[RS_COST_SCANS],
		.hint_words = c[RS_COST_HINT_WORDS],
	};
	memcpy(out, &full, size < sizeof(full) ? size : sizeof(full));
}

int rs_cost_get(rs_runstate *rs, struct rs_cost *mine, struct rs_cost *all)
{
	uint64_t sum[RS_COST_N] = { 0 };

	if (!rs || (mine && mine->size < RS_COST_SIZE_0_10) ||
	    (all && all->size < RS_COST_SIZE_0_10))
		return RS_EINVAL;
	if (mine)
		fill(mine, tls_cost);
	if (!all)
		return 0;
	for (int s = 0; s < RS_COST_STRIPES; s++) {
		struct rs_cost_part *part = &rs_inst(rs)->cost;

		for (int id = 0; id < RS_COST_N; id++) {
			uint64_t v = atomic_load_explicit(&part->stripe[s].c[id], memory_order_relaxed);

			if (id == RS_COST_TREE_DEPTH)
				sum[id] = v > sum[id] ? v : sum[id];
			else
				sum[id] += v;
		}
	}
	fill(all, sum);
	return 0;
}

void rs_cost_reset(rs_runstate *rs)
{
	memset(tls_cost, 0, sizeof(tls_cost));
	if (!rs)
		return;
	for (int s = 0; s < RS_COST_STRIPES; s++)
		for (int id = 0; id < RS_COST_N; id++)
			atomic_store_explicit(&rs_inst(rs)->cost.stripe[s].c[id], 0,
					      memory_order_relaxed);
}
#else
typedef int rs_cost_not_instrumented;  /* an empty file is not valid C */
#endif

/* SPDX-License-Identifier: MIT */
/*
 * cost.c: the work counters of an instrumented build (meson
 * -Dinstrument=true, which defines RS_INSTRUMENT; runstate-instrument.h).
 * Without it every RS_COST*() below is empty, the instance has no cost
 * part, and cost.c is not compiled: the production library carries no
 * counter code at all.
 *
 * Two sets of counters: the calling thread's (thread-local, plain), and
 * the instance's totals, kept in a few cache-line stripes that threads
 * spread over, so that counting does not make every vCPU write one shared
 * line (it would add transfers to the very paths being measured).  All
 * relaxed: counters order nothing.
 */
#ifndef RS_COST_H
#define RS_COST_H

enum rs_cost_id {
	RS_COST_SLOTS,
	RS_COST_PINS,
	RS_COST_FUTEX_WAITS,
	RS_COST_FUTEX_WAKES,
	RS_COST_WORD_RMWS,
	RS_COST_TREE_DEPTH,     /* a maximum, not a sum */
	RS_COST_SCANS,
	RS_COST_HINT_WORDS,
	RS_COST_N
};

/* Declared in every build, defined only in an instrumented one: the
 * registry keeps a pointer to it (NULL otherwise). */
struct rs_cost_part;

#ifdef RS_INSTRUMENT
#define RS_COST_STRIPES 8
struct rs_cost_part {
	struct {
		_Alignas(RS_LINE) _Atomic uint64_t c[RS_COST_N];
	} stripe[RS_COST_STRIPES];
};

RS_HIDDEN void rs_cost_add(struct rs_cost_part *part, enum rs_cost_id id, uint64_t n);
RS_HIDDEN void rs_cost_max(struct rs_cost_part *part, enum rs_cost_id id, uint64_t v);
/* part may be NULL (the thread's counter only). */
#define RS_COST_ADD(part, id, n) rs_cost_add((part), (id), (n))
#define RS_COST_MAX(part, id, v) rs_cost_max((part), (id), (v))
/* The instance's counters, for a module that keeps a pointer to them. */
#define RS_COST_PART(ri) (&(ri)->cost)
/* Code that exists only to count (a wave's depth, passed down the tree). */
#define RS_COST_ONLY(...) __VA_ARGS__
#else
/* The arguments are not even evaluated: &ri->cost does not exist here. */
#define RS_COST_ADD(part, id, n) ((void)0)
#define RS_COST_MAX(part, id, v) ((void)0)
#define RS_COST_PART(ri) ((struct rs_cost_part *)NULL)
#define RS_COST_ONLY(...)
#endif

#endif

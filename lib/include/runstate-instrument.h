/* SPDX-License-Identifier: MIT */
/*
 * runstate-instrument.h: the work counters of an instrumented build
 * (meson -Dinstrument=true).  Installed, and its functions exported (in the
 * version node RUNSTATE_INSTRUMENT_0.10), only by that build: the production
 * library has no counter code and exports nothing from here
 * (tests/abi/check-symbols.sh checks both).  Outside the stability promise
 * of NEWS, like runstate-testing.h.
 *
 * What is counted is work, not time, so the counts do not depend on how many
 * CPUs the machine has: runstate-bench --cost and tests/test_cost.c read
 * them around one stop or one start.
 */
#ifndef RUNSTATE_INSTRUMENT_H
#define RUNSTATE_INSTRUMENT_H

#include "runstate.h"

#ifdef __cplusplus
extern "C" {
#endif

struct rs_cost {
	size_t size;            /* sizeof(struct rs_cost), set by the caller */
	/* Registry slots visited: by a stopper's scans, a wake wave, a
	 * request.  Empty slots count too (one shared load each). */
	uint64_t slots;
	/* Of those, slots pinned: two read-modify-writes on the slot's cache
	 * line each (registry.h), the price of touching a vCPU safely. */
	uint64_t pins;
	/* Calls of the OS seam's futex wait and futex wake (struct rs_ops). */
	uint64_t futex_waits;
	uint64_t futex_wakes;
	/* Compare-and-swaps on the word, failed ones included. */
	uint64_t word_rmws;
	/* The deepest wake of a wake wave: 1 for a vCPU woken by whoever made
	 * the CAS that cleared RS_W_PARKED, d + 1 for one woken by a vCPU of
	 * depth d.  For one thread: the deepest wake it made itself. */
	uint64_t tree_depth;
	/* (Added after 0.10.0: read only within .size.)  Scans of the vCPUs by a stopper or
	 * a section's owner (each visits the slots of the vCPUs that may be
	 * active, counted in slots), and the words of the active hint they
	 * loaded: one per 64 slots below the registry's high-water mark. */
	uint64_t scans;
	uint64_t hint_words;
};
#define RS_COST_SIZE_0_10 (sizeof(size_t) + 6 * sizeof(uint64_t))

/*
 * Read the counters: *mine gets the calling thread's own (everything it
 * did in any instance since its last rs_cost_reset()), *all the instance's
 * totals over every thread since the last rs_cost_reset() on it.  Either
 * may be NULL.  Each must have .size set (at least RS_COST_SIZE_0_10).
 * Returns 0 or RS_EINVAL.  The totals are summed without stopping anyone:
 * read them when the threads that matter are quiet (parked, or waiting
 * outside the library).
 */
RS_API int rs_cost_get(rs_runstate *rs, struct rs_cost *mine, struct rs_cost *all);
/* Zero the calling thread's counters and the instance's totals. */
RS_API void rs_cost_reset(rs_runstate *rs);

#ifdef __cplusplus
}
#endif

#endif /* RUNSTATE_INSTRUMENT_H */

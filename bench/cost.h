/* SPDX-License-Identifier: MIT */
/*
 * The work of one stop and one start as the vCPU count grows (issue 16):
 * a world of N registered vCPU threads, k of them busy in guest code and
 * the rest quiescent (registered, out, blocked in the emulator's own wait,
 * like a halted vCPU), driven through stop/start cycles against an
 * instrumented library (meson -Dinstrument=true, runstate-instrument.h).
 * Used by runstate-bench --cost (bench/cost_main.c) and tests/test_cost.c.
 * Counts only: nothing here depends on how many CPUs the machine has, but
 * the latencies do.
 */
#ifndef RSB_COST_H
#define RSB_COST_H

#include <stdbool.h>
#include <stdint.h>

#include <runstate-instrument.h>

/* Where the vCPUs are when the start comes. */
enum rsb_cost_start {
	/* the k busy vCPUs parked (they re-entered after the stop), the
	 * rest quiescent: the start wakes k */
	RSB_START_BUSY_PARKED,
	/* every vCPU parked (the rest were made to enter too): the start
	 * wakes N */
	RSB_START_ALL_PARKED,
	/* the rest parked, the k busy vCPUs out but not parked (handling an
	 * exit, in slots 0..k-1): the start wakes N - k, and the wave must
	 * get past the k slots that cannot pass it on */
	RSB_START_BUSY_OUT,
	RSB_START_KINDS
};

struct rsb_cost_sample {
	struct rs_cost caller;  /* the stopping or starting thread's own */
	struct rs_cost total;   /* every thread's, once the operation's work
				 * is done (for a start: every woken vCPU has
				 * run again) */
	uint64_t ns;            /* the call, on the caller's clock */
	unsigned woken;         /* vCPUs the start had to wake */
};

struct rsb_cost_world;

/* N vCPU threads registered in slots 0..n-1 in order, vCPUs 0..k-1 busy
 * (1 <= k <= n <= 1024), the VM running.  NULL on failure (a message on
 * stderr). */
struct rsb_cost_world *rsb_cost_world_new(unsigned n, unsigned k);
void rsb_cost_world_free(struct rsb_cost_world *w);
/* One stop and the start after it, with the vCPUs placed for the start as
 * `how` says.  0, or -1 with a message (a count of vCPUs that never came
 * back, a call that failed). */
int rsb_cost_cycle(struct rsb_cost_world *w, enum rsb_cost_start how,
		   struct rsb_cost_sample *stop, struct rsb_cost_sample *start);
const char *rsb_cost_start_name(enum rsb_cost_start how);

/* runstate-bench --cost (cost_main.c): argv as main() got it. */
int rsb_cost_main(int argc, char **argv);

#endif

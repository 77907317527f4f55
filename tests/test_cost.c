/* SPDX-License-Identifier: MIT */
/*
 * The work of a stop and a start against the vCPU count (issue 16), from an
 * instrumented build (meson -Dinstrument=true): counts, never times.  For
 * N = 1, 16, 64, 256 and 1,024 registered vCPUs, k = 1 and 4 of them busy
 * in slots 0..k-1 and the rest quiescent, a few stop/start cycles for each
 * placement of the vCPUs at the start (bench/cost.h), checking:
 *
 *  - a start's caller makes at most 2 futex wake calls, whatever N is
 *    (the target; the range tree of park.c makes it 1), and visits only
 *    the slots before the first parked vCPU (at most k + 1);
 *  - every vCPU the start had to wake got a futex wake (the total), and
 *    every slot was visited by the wave, if there was one;
 *  - the wave is at most ceil(log2 N) + 1 deep, and at least 1 when it
 *    woke anyone.
 *
 *  - the stop's target (with 1 busy vCPU and 1,023 others, at most 2x
 *    the work of a stop with the busy one alone), per scan: a scan visits
 *    only the slots whose bit in the active hint is set (ack.c, P22), so
 *    when the quiescent vCPUs have not run since the last stop edge (whose
 *    scan cleared their bits) each of the caller's scans visits and pins
 *    at most 2k slots, as at N = k.  Counted per scan because how many
 *    scans a stop makes depends on when the busy vCPUs acknowledge (the
 *    stopper rescans while it waits), at N = 1 as at N = 1,024.  The hint
 *    words a scan loads (one per 64 slots) are counted apart and bounded.
 *    A stop after a start that woke the quiescent vCPUs too visits their
 *    slots once more (its edge's scan clears their bits): printed, not
 *    asserted beyond N + 2k slots per scan.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "cost.h"

#define CYCLES 3

static int failures;

#define EXPECT(cond, ...)                                                    \
	do {                                                                 \
		if (!(cond)) {                                               \
			failures++;                                          \
			printf("FAIL: %s: ", #cond);                         \
			printf(__VA_ARGS__);                                 \
			printf("\n");                                        \
		}                                                            \
	} while (0)

static unsigned ceil_log2(unsigned n)
{
	unsigned l = 0;

	while ((1u << l) < n)
		l++;
	return l;
}

/* clean: no quiescent vCPU has run since the last stop edge. */
static void check_stop(unsigned n, unsigned k, bool clean, const struct rsb_cost_sample *s)
{
	uint64_t scans = s->caller.scans, bound = clean ? 2 * k : n + 2 * k;

	EXPECT(scans >= 1, "N=%u k=%u: the stop made no scan", n, k);
	EXPECT(s->caller.slots <= bound * scans,
	       "N=%u k=%u%s: the caller visited %llu slots in %llu scans (bound %llu per scan)",
	       n, k, clean ? " (quiescent since the last stop)" : "",
	       (unsigned long long)s->caller.slots, (unsigned long long)scans,
	       (unsigned long long)bound);
	EXPECT(s->caller.hint_words <= scans * ((n + 63) / 64),
	       "N=%u k=%u: %llu hint words in %llu scans", n, k,
	       (unsigned long long)s->caller.hint_words, (unsigned long long)scans);
}

static void check_start(unsigned n, unsigned k, enum rsb_cost_start how,
			const struct rsb_cost_sample *s)
{
	const char *h = rsb_cost_start_name(how);

	EXPECT(s->caller.futex_wakes <= 2, "N=%u k=%u %s: the caller made %llu futex wakes", n,
	       k, h, (unsigned long long)s->caller.futex_wakes);
	EXPECT(s->caller.slots <= k + 1, "N=%u k=%u %s: the caller visited %llu slots", n, k, h,
	       (unsigned long long)s->caller.slots);
	EXPECT(s->total.futex_wakes >= s->woken, "N=%u k=%u %s: %llu futex wakes for %u vCPUs",
	       n, k, h, (unsigned long long)s->total.futex_wakes, s->woken);
	/* (With nobody parked, RS_W_PARKED is clear and there is no wave.) */
	EXPECT(!s->woken || s->total.slots >= n, "N=%u k=%u %s: the wave visited %llu of %u slots", n, k, h,
	       (unsigned long long)s->total.slots, n);
	EXPECT(s->total.tree_depth <= ceil_log2(n) + 1, "N=%u k=%u %s: depth %llu, bound %u", n,
	       k, h, (unsigned long long)s->total.tree_depth, ceil_log2(n) + 1);
	EXPECT(!s->woken || s->total.tree_depth >= 1, "N=%u k=%u %s: woke %u at depth 0", n, k,
	       h, s->woken);
}

int main(void)
{
	static const unsigned ns[] = { 1, 16, 64, 256, 1024 }, ks[] = { 1, 4 };
	uint64_t stop_slots_1 = 0, stop_slots_1024 = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (size_t a = 0; a < sizeof(ns) / sizeof(ns[0]); a++) {
		for (size_t b = 0; b < sizeof(ks) / sizeof(ks[0]); b++) {
			unsigned n = ns[a], k = ks[b];
			struct rsb_cost_world *w;
			uint64_t wakes_max = 0, depth_max = 0, stop_slots = UINT64_MAX;
			uint64_t clean_max = 0, other_max = 0;
			/* The world's first start ran only the busy vCPUs. */
			bool clean = true;

			if (k > n)
				continue;
			w = rsb_cost_world_new(n, k);
			if (!w) {
				printf("FAIL: no world of %u vCPUs\n", n);
				return 1;
			}
			for (int c = 0; c < CYCLES; c++) {
				for (int h = 0; h < RSB_START_KINDS; h++) {
					struct rsb_cost_sample stop, start;

					if (rsb_cost_cycle(w, h, &stop, &start)) {
						printf("FAIL: N=%u k=%u: cycle %d (%s)\n", n, k, c,
						       rsb_cost_start_name(h));
						rsb_cost_world_free(w);
						return 1;
					}
					check_stop(n, k, clean, &stop);
					if (stop.caller.scans) {
						uint64_t per = (stop.caller.slots + stop.caller.scans - 1) /
							       stop.caller.scans;

						if (clean && per > clean_max)
							clean_max = per;
						if (!clean && per > other_max)
							other_max = per;
					}
					clean = h == RSB_START_BUSY_PARKED;
					check_start(n, k, h, &start);
					if (start.caller.futex_wakes > wakes_max)
						wakes_max = start.caller.futex_wakes;
					if (start.total.tree_depth > depth_max)
						depth_max = start.total.tree_depth;
					if (stop.caller.slots < stop_slots)
						stop_slots = stop.caller.slots;
				}
			}
			rsb_cost_world_free(w);
			printf("N=%4u k=%u: start: caller's futex wakes at most %llu, depth at most "
			       "%llu (bound %u); stop: caller visited at least %llu slots, per scan "
			       "at most %llu (quiescent since the last stop), %llu (after they ran)\n",
			       n, k, (unsigned long long)wakes_max, (unsigned long long)depth_max,
			       ceil_log2(n) + 1, (unsigned long long)stop_slots,
			       (unsigned long long)clean_max, (unsigned long long)other_max);
			if (k == 1 && n == 1)
				stop_slots_1 = stop_slots;
			if (k == 1 && n == 1024)
				stop_slots_1024 = stop_slots;
		}
	}
	printf("stop, 1 busy: at least %llu slots visited with 1,023 others against %llu alone "
	       "(the target, at most 2x per scan, is asserted above)\n",
	       (unsigned long long)stop_slots_1024, (unsigned long long)stop_slots_1);
	printf("%s\n", failures ? "FAILED" : "ok");
	return failures ? 1 : 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * The C face of the C++ shim around Google Benchmark (bench/shim.cc).
 *
 * Benchmarks are written in C and registered here under their full name
 * ("stop/runstate/vcpus:4"); the name is the interface, so the shim keeps
 * Google Benchmark from appending "/manual_time" to it.
 */
#ifndef RSB_SHIM_H
#define RSB_SHIM_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct rsb_state;
typedef void rsb_fn(struct rsb_state *st, void *arg);

enum rsb_timing {
	RSB_TIME_AUTO = 0,    /* Google Benchmark's own clock (CPU-bound loops) */
	RSB_TIME_MANUAL = 1,  /* the benchmark reports each iteration's time */
};

/* Register fn under name (copied).  Call before rsb_main(). */
void rsb_register(const char *name, rsb_fn *fn, void *arg, enum rsb_timing timing);

bool rsb_keep_running(struct rsb_state *st);
/* n iterations at a time; the time per iteration is then per item. */
bool rsb_keep_running_batch(struct rsb_state *st, uint64_t n);
/* Iterations this run will make (to size sample arrays). */
uint64_t rsb_max_iterations(const struct rsb_state *st);
/* RSB_TIME_MANUAL: exactly once per iteration. */
void rsb_set_iteration_time(struct rsb_state *st, double seconds);
/* A user counter, reported as is. */
void rsb_counter(struct rsb_state *st, const char *name, double value);
/* Fail this benchmark; the loop ends at the end of the current iteration. */
void rsb_skip_with_error(struct rsb_state *st, const char *msg);
bool rsb_error_occurred(const struct rsb_state *st);

/*
 * Parse Google Benchmark's flags, run the matching benchmarks.  Returns the
 * process exit status: 0, or 1 when a flag is unknown, no benchmark matched
 * or a benchmark reported an error.
 */
int rsb_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif

/* SPDX-License-Identifier: MIT */
/*
 * rsutil: the small helpers that the tools and tests share (tests/, stress/,
 * bench/), written once: a clock, a PRNG, futex wrappers, CPU pinning, and
 * word decoding from the library's own runstate-testing.h.  Not part of the
 * library, never installed.
 */
#ifndef RSUTIL_H
#define RSUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runstate-testing.h"

/* ---------------------------------------------------------------------------
 * Time
 */

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t rsu_now_ns(void);
/* Sleep (nanosleep) or spin (on the clock, with a CPU relax) for ns. */
void rsu_sleep_ns(int64_t ns);
void rsu_spin_ns(int64_t ns);

static inline void rsu_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

/* ---------------------------------------------------------------------------
 * Random numbers: splitmix64, one word of state.  Good enough to choose
 * actions and delays; reproducible from a seed.
 */
struct rsu_rng {
	uint64_t s;
};

/* A generator for one stream of a seeded run: streams of the same seed are
 * independent, and the same (seed, stream) always gives the same numbers. */
struct rsu_rng rsu_rng_stream(uint64_t seed, uint64_t stream);
uint64_t rsu_rng_next(struct rsu_rng *r);
/* Uniform-ish in [0, n) (0 when n is 0), and in [lo, hi]. */
uint64_t rsu_rng_below(struct rsu_rng *r, uint64_t n);
int64_t rsu_rng_range(struct rsu_rng *r, int64_t lo, int64_t hi);
/* True with probability p. */
bool rsu_rng_chance(struct rsu_rng *r, double p);

/* ---------------------------------------------------------------------------
 * Futexes (private): the raw system calls, returning 0 or -errno (wait:
 * -EAGAIN when *addr != val, -ETIMEDOUT, -EINTR) and the number woken.
 * A negative timeout waits without limit.
 */
int rsu_futex_wait(uint32_t *addr, uint32_t val, int64_t timeout_ns);
int rsu_futex_wake(uint32_t *addr, int n);

/* ---------------------------------------------------------------------------
 * CPUs
 */

/* The number of CPUs this process may run on: its affinity mask as it was
 * when the process started, whatever its threads pinned since. */
unsigned rsu_ncpus(void);
/* The id of the n-th of those CPUs (modulo their number), or -EINVAL. */
int rsu_cpu_id(unsigned n);
/* Pin the calling thread to the n-th of those CPUs (modulo their number);
 * unpin it: let it run on all of them again.  0 or -errno. */
int rsu_pin_self(unsigned n);
int rsu_unpin_self(void);

/* ---------------------------------------------------------------------------
 * Words
 */
static inline uint32_t rsu_edge(uint64_t w)
{
	return (uint32_t)(w >> RS_W_EDGE_SHIFT);
}
static inline unsigned rsu_backlog(uint64_t w)
{
	return (unsigned)((w & RS_W_BACKLOG_MASK) >> RS_W_BACKLOG_SHIFT);
}
static inline unsigned rsu_coal(uint64_t w)
{
	return (unsigned)((w & RS_W_COAL_MASK) >> RS_W_COAL_SHIFT);
}
static inline unsigned rsu_pause(uint64_t w)
{
	return (unsigned)((w & RS_W_PAUSE_MASK) >> RS_W_PAUSE_SHIFT);
}
static inline bool rsu_running(uint64_t w)
{
	return (w & RS_W_STOPPED_MASK) == 0;
}
static inline bool rsu_settling(uint64_t w)
{
	return (w & RS_W_SETTLING_MASK) != 0;
}
static inline bool rsu_may_run(uint64_t w)
{
	return (w & RS_W_NORUN_MASK) == 0;
}

/* Every field of a word in one line, for diagnostics:
 * "edge 7 locks=debug,savevm io pause=paused backlog 2 OV coal 3 GN PK LW"
 * (fields at their defaults left out).  Returns buf. */
const char *rsu_word_str(uint64_t w, char *buf, size_t len);

#endif

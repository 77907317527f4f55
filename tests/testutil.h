/* SPDX-License-Identifier: MIT */
/* A tiny test harness: CHECK counts failures and says where. */
#ifndef RS_TESTUTIL_H
#define RS_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "runstate.h"

/* The edge counter of a word. */
static inline uint32_t tu_edge(uint64_t w)
{
	return (uint32_t)(w >> RS_W_EDGE_SHIFT);
}

static int tu_checks, tu_failures;

#define CHECK(cond) do { \
	tu_checks++; \
	if (!(cond)) { \
		tu_failures++; \
		fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
	} \
} while (0)

#define CHECK_EQ(a, b) do { \
	long long tu_a = (long long)(a), tu_b = (long long)(b); \
	tu_checks++; \
	if (tu_a != tu_b) { \
		tu_failures++; \
		fprintf(stderr, "%s:%d: check failed: %s == %s (%lld != %lld)\n", \
			__FILE__, __LINE__, #a, #b, tu_a, tu_b); \
	} \
} while (0)

#define RUN(test) do { \
	int tu_before = tu_failures; \
	test(); \
	printf("%s %s\n", tu_failures == tu_before ? "ok  " : "FAIL", #test); \
	fflush(stdout); \
} while (0)

static inline int tu_finish(const char *name)
{
	printf("%s: %d checks, %d failures\n", name, tu_checks, tu_failures);
	return tu_failures ? 1 : 0;
}

static inline void tu_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static inline unsigned long long tu_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

#endif

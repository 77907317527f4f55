/* SPDX-License-Identifier: MIT */
/*
 * test_kvm: what its files share.  test_kvm.c holds the options, main() and
 * the helpers, test_kvm_cases.c the tests, test_kvm_figures.c the
 * measurements that are not tests (figures, speed).
 */
#ifndef RS_TEST_KVM_H
#define RS_TEST_KVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvm.h"
#include "rsutil.h"

#define SKIP 77

struct opts {
	const char *mode;
	unsigned vcpus;
	double seconds;
	unsigned long iters;
	uint64_t window_ns;
	unsigned io_shift;
	unsigned hlt_every;
	enum rk_handshake handshake;
	bool no_complete;
	bool expect_race;
	bool until_kick;
	int kind;                 /* io-complete: only this exit kind */
	uint64_t seed;
	int64_t rekick_ns;
	uint64_t hlt_ns;
	bool quiet;
};

/* Failures so far: each fail() prints one and counts it. */
extern int failures;
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Random delays, from --seed. */
extern struct rsu_rng rng;
uint64_t rnd(void);
/* qsort() order of uint64_t; the p-quantile of the sorted v[0..n). */
int cmp_u64(const void *a, const void *b);
uint64_t pct(uint64_t *v, size_t n, double p);

/* Common setup: instance, VM, threads (VM still in prelaunch); and the
 * teardown. */
int setup(const struct opts *o, struct rk_config *kc, rs_runstate **rs, struct rk_vm **vm);
void teardown(rs_runstate *rs, struct rk_vm *vm);
bool wait_all_moved(struct rk_vm *vm, const uint32_t *snap, uint64_t timeout_ns);
void start_guests(rs_runstate *rs, struct rk_vm *vm);
bool check_frozen(rs_runstate *rs, struct rk_vm *vm, const char *what, unsigned long it);
void dump_state(rs_runstate *rs, struct rk_vm *vm);
const char *hs_name(enum rk_handshake h);
const char *kind_name(int k);
void print_stats(const char *tag, rs_runstate *rs, struct rk_vm *vm);

/* The modes: 0 pass, 1 fail. */
int test_race(const struct opts *o);
int test_io_complete(const struct opts *o);
int test_exclusion(const struct opts *o);
int test_stuck(const struct opts *o);
int figures(const struct opts *o);
int speed(const struct opts *o);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * runstate-samecpu: a stop whose vCPU shares the stopper's CPU, against the
 * re-kick delay (struct rs_config's rekick_ns).
 *
 * On one CPU a vCPU thread in guest code is preempted while the stopper
 * runs, and it leaves guest code only once the stopper sleeps.  The
 * stopper's sleep is a futex wait with a timeout of the re-kick delay (a
 * vCPU that has not acknowledged is kicked again after it).  A timeout
 * that ends before the CPU's next scheduler tick makes the kernel program
 * the CPU's timer as the stopper goes to sleep, and again when it is woken
 * early; in a virtual machine each programming is a VM exit.  So the
 * delay's length can be on a stop's critical path.
 *
 * The whole process runs on one CPU.  Two instances, one with the default
 * delay (1 ms) and one with 20 ms, each with one vCPU thread in "guest
 * code" (a loop that leaves only when its kick callback sets a flag), take
 * turns sample by sample, so both see the same machine.  Each sample: the
 * instance is started and its vCPU enters guest code; the stopper sleeps
 * (as an emulator's main loop does until a command comes), then calls
 * rs_stop() (bounded at 10 s) and times, from the call, when the vCPU ran
 * again (saw its kick: the stopper slept) and when rs_stop() returned.
 *
 *	runstate-samecpu [--iterations N] [--sleep-us U] [--rekick-ns NS] [--check]
 *
 * --rekick-ns: the second instance's delay (default 20 ms).
 * --check: exit 1 unless every stop returned 0 with its vCPU out of its
 * loop and counted out by the library (meson's samecpu-smoke test; no
 * time is asserted).
 *
 * docs/performance.md ("A stop on the vCPU's own CPU") reads these
 * figures.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runstate.h"
#include "rsutil.h"

#define MAX_ITER 100000
#define NINST 2

struct inst {
	const char *name;
	int64_t rekick_ns;
	rs_runstate *rs;
	rs_vcpu vcpu;
	pthread_t th;
	_Atomic int ready, in_guest, kicked;
	/* When the vCPU first ran after this sample's kick (0: not yet). */
	_Atomic long t_seen;
	long *seen, *ret;
	int n;
};

static struct inst inst[NINST] = {
	{ .name = "rekick 1 ms (default)", .rekick_ns = 0 },
	{ .name = "rekick 20 ms", .rekick_ns = 20000000 },	/* --rekick-ns */
};
static _Atomic int quit;

static long now_ns(void)
{
	return (long)rsu_now_ns();
}

static void die(const char *what, int err)
{
	fprintf(stderr, "runstate-samecpu: %s: %s\n", what,
		err < 0 ? rs_strerror(err) : strerror(err));
	exit(2);
}

static void kick(rs_vcpu *v, void *opaque)
{
	struct inst *in = opaque;

	(void)v;
	atomic_store(&in->kicked, 1);
}

static void *vcpu_thread(void *arg)
{
	struct inst *in = arg;
	int r;

	if ((r = rs_vcpu_register(in->rs, &in->vcpu, kick, in)))
		die("rs_vcpu_register", r);
	atomic_store(&in->ready, 1);
	while (!atomic_load(&quit) && rs_vcpu_enter(&in->vcpu) == 0) {
		/* Guest code: leaves only when kicked.  On one CPU it sees
		 * the kick only once the stopper has given the CPU up. */
		atomic_store(&in->in_guest, 1);
		while (!atomic_load_explicit(&in->kicked, memory_order_relaxed) &&
		       !atomic_load(&quit))
			rsu_cpu_relax();
		atomic_store(&in->t_seen, now_ns());
		atomic_store(&in->in_guest, 0);
		atomic_store(&in->kicked, 0);
	}
	if ((r = rs_vcpu_unregister(&in->vcpu)))
		die("rs_vcpu_unregister", r);
	return NULL;
}

/* Wait, sleeping (the vCPU needs this CPU), until *flag == want; give up
 * after 10 s: a program that waits for ever is a bug. */
static void sleep_until(_Atomic int *flag, int want, const char *what)
{
	uint64_t deadline = rsu_now_ns() + 10000000000ull;

	while (atomic_load(flag) != want) {
		if (rsu_now_ns() > deadline) {
			fprintf(stderr, "runstate-samecpu: %s: not after 10 s\n", what);
			exit(2);
		}
		usleep(50);
	}
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *name, const char *what, long *d, int n)
{
	qsort(d, (size_t)n, sizeof(*d), cmp_long);
	printf("%-22s %-26s p10 %6ld  p50 %6ld  p90 %6ld ns  (%d samples)\n", name, what,
	       d[n / 10], d[n / 2], d[9 * n / 10], n);
}

int main(int argc, char **argv)
{
	int iters = 400, sleep_us = 2000, check = 0, bad = 0, r;
	static char name2[64];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--iterations") && i + 1 < argc)
			iters = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--sleep-us") && i + 1 < argc)
			sleep_us = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--rekick-ns") && i + 1 < argc)
			inst[1].rekick_ns = atoll(argv[++i]);
		else if (!strcmp(argv[i], "--check"))
			check = 1;
		else {
			fprintf(stderr, "usage: runstate-samecpu [--iterations N] [--sleep-us U] "
					"[--rekick-ns NS] [--check]\n");
			return 2;
		}
	}
	if (inst[1].rekick_ns < 1) {
		fprintf(stderr, "runstate-samecpu: --rekick-ns must be positive\n");
		return 2;
	}
	snprintf(name2, sizeof(name2), "rekick %.3g ms", (double)inst[1].rekick_ns / 1e6);
	inst[1].name = name2;
	if (iters < 10 || iters > MAX_ITER || sleep_us < 0) {
		fprintf(stderr, "runstate-samecpu: --iterations 10..%d, --sleep-us >= 0\n",
			MAX_ITER);
		return 2;
	}
	/* Every thread on one CPU: the vCPU threads inherit the mask. */
	if ((r = rsu_pin_self(0)))
		die("pinning to one CPU", -r);
	for (int k = 0; k < NINST; k++) {
		struct inst *in = &inst[k];
		struct rs_config cfg = { .size = sizeof(cfg), .rekick_ns = in->rekick_ns };

		in->seen = calloc((size_t)iters, sizeof(long));
		in->ret = calloc((size_t)iters, sizeof(long));
		if (!in->seen || !in->ret)
			die("calloc", 12);
		if ((r = rs_create(&cfg, &in->rs)))
			die("rs_create", r);
		if ((r = pthread_create(&in->th, NULL, vcpu_thread, in)))
			die("pthread_create", r);
		sleep_until(&in->ready, 1, "the vCPU registering");
	}

	for (int i = 0; i < 2 * iters; i++) {
		struct inst *in = &inst[i % NINST];
		unsigned reg, out;
		long t0, t1, ts;

		/* Only this instance runs: the other's vCPU is parked. */
		if ((r = rs_start(in->rs, 0)))
			die("rs_start", r);
		sleep_until(&in->in_guest, 1, "the vCPU entering guest code");
		usleep((useconds_t)sleep_us);
		atomic_store(&in->t_seen, 0);
		t0 = now_ns();
		r = rs_stop(in->rs, 10000000000);
		t1 = now_ns();
		ts = atomic_load(&in->t_seen);
		/* The stop returned only once the vCPU was out: it saw its
		 * kick, or it was on its way to rs_vcpu_enter() already; and
		 * the library counts it out. */
		rs_vcpu_count(in->rs, &reg, &out);
		if (r || atomic_load(&in->in_guest) || reg != 1 || out != 1) {
			fprintf(stderr, "runstate-samecpu: sample %d (%s): rs_stop %s, vCPU %s, "
				"%u of %u registered out\n", i, in->name, rs_strerror(r),
				atomic_load(&in->in_guest) ? "in guest code" : "out of its loop",
				out, reg);
			if (r)
				exit(2);	/* the vCPU may still be in guest code */
			bad++;
			continue;
		}
		if (ts <= 0)
			continue;	/* left before the stop: no sample */
		in->seen[in->n] = ts - t0;
		in->ret[in->n] = t1 - t0;
		in->n++;
	}

	atomic_store(&quit, 1);
	for (int k = 0; k < NINST; k++) {
		struct inst *in = &inst[k];

		atomic_store(&in->kicked, 1);
		if ((r = rs_vcpu_request(&in->vcpu, RS_REQ_EXIT)) && r != RS_EINVAL)
			die("rs_vcpu_request", r);
		pthread_join(in->th, NULL);
		rs_destroy(in->rs);
	}

	printf("one CPU; the stopper sleeps %d us before each stop\n", sleep_us);
	for (int k = 0; k < NINST; k++) {
		struct inst *in = &inst[k];

		if (in->n < 1) {
			printf("%-22s no sample\n", in->name);
			continue;
		}
		report(in->name, "rs_stop() -> vCPU runs", in->seen, in->n);
		report(in->name, "rs_stop() -> returns", in->ret, in->n);
	}
	if (check && (bad || inst[0].n < 1 || inst[1].n < 1)) {
		fprintf(stderr, "runstate-samecpu: %d bad stops; samples %d and %d\n", bad,
			inst[0].n, inst[1].n);
		return 1;
	}
	return 0;
}

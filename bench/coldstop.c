/* SPDX-License-Identifier: MIT */
/*
 * runstate-coldstop: how long a stop takes to reach its kick when the
 * stopper's caches are cold, as they are for an emulator's main thread that
 * slept in its event loop until a monitor command arrived.
 *
 * One vCPU thread runs "guest code" (a loop that leaves only when its kick
 * callback sets a flag; it never looks at the word, so every stop has to
 * kick it).  The stopper sleeps, optionally sweeps 8 MiB of memory through
 * its caches, and then times rs_stop(RS_ASYNC) from the call to the kick
 * callback, which runs on the stopper's thread.  The same cycle also times
 * the floor of any kick: one compare-and-swap on a word that the vCPU
 * reads, then the kick callback.  Samples alternate between the two, so
 * both see the same machine.
 *
 *	runstate-coldstop [--iterations N] [--sleep-us U] [--sweep] [--check]
 *
 * --check: exit 1 unless every stop kicked the vCPU from rs_stop() itself
 * and got it out (meson's coldstop-smoke test; no time is asserted).  A
 * loaded machine may add re-kicks from rs_wait(); those are allowed.
 *
 * docs/performance.md ("The cold stop") and docs/qemu.md (section 6) read
 * these figures: under QEMU the library's path from a main loop that slept
 * until the command came was most of what the series' stop did before its
 * kick, beyond stock QEMU's.
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

static rs_runstate *rs;
/* The vCPU's storage, static so that main() may post it a request. */
static rs_vcpu vcpu;
static _Atomic int kicked, ready, quit;
/* The vCPU is in its "guest code" loop (rs_vcpu_enter() returned 0). */
static _Atomic int in_guest;
static _Atomic long t_kick;
/* The floor's word: read by the vCPU's loop, as the runstate word is
 * read by a vCPU that polls rs_may_run(). */
static _Atomic unsigned long floor_word;

static long now_ns(void)
{
	return (long)rsu_now_ns();
}

static void die(const char *what, int err)
{
	fprintf(stderr, "runstate-coldstop: %s: %s\n", what, err < 0 ? rs_strerror(err) : strerror(err));
	exit(2);
}

/* The first kick of a sample stamps it; the vCPU leaves its loop. */
static void kick(rs_vcpu *v, void *opaque)
{
	long zero = 0;

	(void)v;
	(void)opaque;
	atomic_compare_exchange_strong(&t_kick, &zero, now_ns());
	atomic_store(&kicked, 1);
}

/* Stopper on the first usable CPU, vCPU on the second (when there are
 * two): the vCPU's lines then live in another CPU's cache. */
static void pin(unsigned n)
{
	if (rsu_ncpus() >= 2)
		(void)rsu_pin_self(n);
}

/* Spin until *flag == want; a program that waits for ever is a bug: give
 * up after 10 s. */
static void spin_until(_Atomic int *flag, int want, const char *what)
{
	uint64_t deadline = rsu_now_ns() + 10000000000ull;

	while (atomic_load(flag) != want) {
		if (rsu_now_ns() > deadline) {
			fprintf(stderr, "runstate-coldstop: %s: not after 10 s\n", what);
			exit(2);
		}
		rsu_cpu_relax();
	}
}

static void *vcpu_thread(void *arg)
{
	int r;

	(void)arg;
	pin(1);
	if ((r = rs_vcpu_register(rs, &vcpu, kick, NULL)))
		die("rs_vcpu_register", r);
	atomic_store(&ready, 1);
	/* Ends on quit, or on RS_VCPU_EXIT when parked or entering. */
	while (!atomic_load(&quit) && rs_vcpu_enter(&vcpu) == 0) {
		/* Guest code: leaves only when kicked. */
		atomic_store(&in_guest, 1);
		while (!atomic_load_explicit(&kicked, memory_order_relaxed) && !atomic_load(&quit))
			(void)atomic_load_explicit(&floor_word, memory_order_relaxed);
		atomic_store(&in_guest, 0);
		atomic_store(&kicked, 0);
	}
	if ((r = rs_vcpu_unregister(&vcpu)))
		die("rs_vcpu_unregister", r);
	return NULL;
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return x < y ? -1 : x > y;
}

/* n samples, of which the first n - bad are good (the bad ones, a stop
 * that did not kick, were not stored). */
static void report(const char *name, long *d, int n, int bad)
{
	int good = n - bad;

	if (good < 1) {
		printf("%-28s no good sample (%d without a kick)\n", name, bad);
		return;
	}
	qsort(d, (size_t)good, sizeof(*d), cmp_long);
	printf("%-28s p10 %6ld  p50 %6ld  p90 %6ld ns  (%d samples, %d without a kick)\n", name,
	       d[good / 10], d[good / 2], d[9 * good / 10], good, bad);
}

/* Wait until the vCPU is in "guest code" (so that a stop must kick it). */
static void wait_in_guest(void)
{
	spin_until(&in_guest, 1, "the vCPU entering guest code");
}

/* Start the VM and wait until the vCPU is back in "guest code". */
static void run_again(void)
{
	int r;

	if ((r = rs_start(rs, 0)) || (r = rs_wait(rs, RS_FOREVER)))
		die("rs_start", r);
	wait_in_guest();
}

int main(int argc, char **argv)
{
	static char sweep[8 << 20];
	int iters = 400, sleep_us = 10000, do_sweep = 0, check = 0, bad = 0, r;
	static long lib[MAX_ITER], flo[MAX_ITER];
	pthread_t th;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--iterations") && i + 1 < argc)
			iters = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--sleep-us") && i + 1 < argc)
			sleep_us = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--sweep"))
			do_sweep = 1;
		else if (!strcmp(argv[i], "--check"))
			check = 1;
		else {
			fprintf(stderr, "usage: runstate-coldstop [--iterations N] [--sleep-us U] "
					"[--sweep] [--check]\n");
			return 2;
		}
	}
	if (iters < 10 || iters > MAX_ITER || sleep_us < 0) {
		fprintf(stderr, "runstate-coldstop: --iterations 10..%d, --sleep-us >= 0\n", MAX_ITER);
		return 2;
	}
	pin(0);
	if ((r = rs_create(NULL, &rs)))
		die("rs_create", r);
	if ((r = pthread_create(&th, NULL, vcpu_thread, NULL)))
		die("pthread_create", r);
	spin_until(&ready, 1, "the vCPU registering");
	run_again();

	for (int i = 0; i < iters; i++) {
		unsigned long w;
		long t0, tk;

		/* The library's stop. */
		usleep((useconds_t)sleep_us);
		if (do_sweep)
			memset(sweep, i, sizeof(sweep));
		wait_in_guest();
		atomic_store(&t_kick, 0);
		t0 = now_ns();
		if ((r = rs_stop(rs, RS_ASYNC)))
			die("rs_stop", r);
		/* The first kick came from rs_stop() itself, or the sample is
		 * bad (counted, not stored). */
		tk = atomic_load(&t_kick);
		if (tk > 0)
			lib[i - bad] = tk - t0;
		else
			bad++;
		if ((r = rs_wait(rs, RS_FOREVER)))
			die("rs_wait", r);
		run_again();

		/* The floor: a CAS on a shared word, then the kick. */
		usleep((useconds_t)sleep_us);
		if (do_sweep)
			memset(sweep, i + 1, sizeof(sweep));
		atomic_store(&t_kick, 0);
		t0 = now_ns();
		w = atomic_load_explicit(&floor_word, memory_order_relaxed);
		atomic_compare_exchange_strong(&floor_word, &w, w + 1);
		kick(NULL, NULL);
		flo[i] = atomic_load(&t_kick) - t0;
		spin_until(&kicked, 0, "the vCPU leaving its loop");
	}
	/* The vCPU may be between its loop and rs_vcpu_enter(): the request
	 * ends it there; the flags end it in its loop. */
	atomic_store(&quit, 1);
	atomic_store(&kicked, 1);
	if ((r = rs_vcpu_request(&vcpu, RS_REQ_EXIT)) && r != RS_EINVAL)
		die("rs_vcpu_request", r);
	pthread_join(th, NULL);
	rs_destroy(rs);

	printf("stopper %s, sleeping %d us before each sample\n",
	       do_sweep ? "sweeping 8 MiB" : "not sweeping", sleep_us);
	report("rs_stop() -> kick", lib, iters, bad);
	report("CAS + kick (the floor)", flo, iters, 0);
	if (check && bad) {
		fprintf(stderr, "runstate-coldstop: %d of %d stops did not kick the vCPU\n",
			bad, iters);
		return 1;
	}
	return 0;
}

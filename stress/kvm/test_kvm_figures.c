/* SPDX-License-Identifier: MIT */
/*
 * test_kvm's measurements, not tests: figures (stop and start latency with
 * real guests) and speed (the guest loop's rates).
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_kvm.h"

/* ---------------------------------------------------------------------------
 * figures: stop and start latency with real guests
 */

/* One row of the figures: p50, p90, p99 and max of the sorted v[0..n). */
static void figure_row(const char *what, uint64_t *v, size_t n)
{
	printf("  %sp50 %7.1f  p90 %7.1f  p99 %7.1f  max %8.1f us\n", what, pct(v, n, .5) / 1e3,
	       pct(v, n, .9) / 1e3, pct(v, n, .99) / 1e3, n ? v[n - 1] / 1e3 : 0.0);
}

/* Time the vCPU threads spent runnable but waiting for a CPU (schedstat's
 * second field), summed. */
static uint64_t vcpu_run_delay(struct rk_vm *vm)
{
	uint64_t sum = 0;

	for (unsigned i = 0; i < rk_vm_nvcpus(vm); i++) {
		char path[64];
		unsigned long long run, wait;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", rk_vcpu_tid(vm, i));
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fscanf(f, "%llu %llu", &run, &wait) == 2)
			sum += wait;
		fclose(f);
	}
	return sum;
}

int figures(const struct opts *o)
{
	struct rk_config kc = {
		.nvcpus = o->vcpus, .io_shift = o->io_shift, .window_ns = o->window_ns,
		.handshake = o->handshake, .hlt_every = o->hlt_every, .hlt_ns = o->hlt_ns,
	};
	unsigned long n = o->iters ? o->iters : 2000, i;
	uint64_t *stop = calloc(n, sizeof(uint64_t)), *start = calloc(n, sizeof(uint64_t));
	uint64_t *first = calloc(n, sizeof(uint64_t));
	uint64_t *rfirst = calloc(n, sizeof(uint64_t)), *rall = calloc(n, sizeof(uint64_t));
	uint32_t snap[RK_MAX_VCPUS];
	rs_runstate *rs;
	struct rk_vm *vm;
	struct rs_stats st = { .size = sizeof(st) };
	uint64_t t0, t1, wait0, wait1, total = 0;

	if (!stop || !start || !first || !rfirst || !rall) {
		fail("out of memory");
		return 1;
	}
	if (setup(o, &kc, &rs, &vm))
		return 1;
	rk_guest_counters(vm, snap);
	rs_start(rs, 0);
	wait_all_moved(vm, snap, 2000000000);
	t0 = rsu_now_ns();
	wait0 = vcpu_run_delay(vm);
	for (i = 0; i < n; i++) {
		struct rk_latency lat;
		int r;

		/* Let the guests run a while: the stop finds them in guest
		 * code (or in an exit). */
		rsu_spin_ns((int64_t)(20000 + rnd() % 80000));
		r = rk_measure_stop_start(vm, 2000000000, &lat);
		if (r) {
			fail("measure #%lu: %d", i, r);
			break;
		}
		stop[i] = lat.stop_ns;
		start[i] = lat.start_all_ns;
		first[i] = lat.start_first_ns;
		rfirst[i] = lat.resume_first_ns;
		rall[i] = lat.resume_all_ns;
	}
	wait1 = vcpu_run_delay(vm);
	t1 = rsu_now_ns();
	rs_get_stats(rs, &st);
	for (unsigned long k = 0; k < i; k++)
		total += stop[k] + start[k];
	qsort(stop, i, sizeof(*stop), cmp_u64);
	qsort(start, i, sizeof(*start), cmp_u64);
	qsort(first, i, sizeof(*first), cmp_u64);
	qsort(rfirst, i, sizeof(*rfirst), cmp_u64);
	qsort(rall, i, sizeof(*rall), cmp_u64);
	printf("figures: %u vCPU(s), io every 2^%u, hlt every %u IN for %" PRIu64 " us, %lu "
	       "rounds, rekicks %" PRIu64 "\n", o->vcpus, o->io_shift, o->hlt_every,
	       (o->hlt_ns ? o->hlt_ns : 20000) / 1000, i, st.rekicks);
	figure_row("stop  (rs_stop call -> all out)       ", stop, i);
	figure_row("start (rs_start -> first guest moved) ", first, i);
	figure_row("start (rs_start -> all guests moved)  ", start, i);
	figure_row("start (rs_start -> first KVM_RUN)      ", rfirst, i);
	figure_row("start (rs_start -> last KVM_RUN)       ", rall, i);
	printf("  time in stop+start %.1f ms of %.1f ms; vCPU threads runnable but waiting for "
	       "a CPU %.1f ms (all vCPUs)\n", (double)total / 1e6, (double)(t1 - t0) / 1e6,
	       (double)(wait1 - wait0) / 1e6);
	print_stats("figures", rs, vm);
	free(stop);
	free(start);
	free(first);
	free(rfirst);
	free(rall);
	teardown(rs, vm);
	return failures ? 1 : 0;
}

/* ---------------------------------------------------------------------------
 * speed: how fast the guest loop runs, and how often it exits (not a test)
 */

int speed(const struct opts *o)
{
	struct rk_config kc = {
		.nvcpus = o->vcpus, .io_shift = o->io_shift, .hlt_every = o->hlt_every,
		.hlt_ns = o->hlt_ns, .window_ns = o->window_ns,
	};
	uint32_t c0[RK_MAX_VCPUS], c1[RK_MAX_VCPUS];
	struct rk_vcpu_stats s0, s1;
	struct timespec ts = { 1, 0 };
	rs_runstate *rs;
	struct rk_vm *vm;
	uint64_t t0, t1, sum = 0;

	if (setup(o, &kc, &rs, &vm))
		return 1;
	rs_start(rs, 0);
	rk_guest_counters(vm, c0);
	rk_vm_stats(vm, &s0);
	t0 = rsu_now_ns();
	nanosleep(&ts, NULL);
	t1 = rsu_now_ns();
	rk_guest_counters(vm, c1);
	rk_vm_stats(vm, &s1);
	for (unsigned i = 0; i < o->vcpus; i++)
		sum += (uint32_t)(c1[i] - c0[i]);
	printf("speed: %u vCPU(s): %.1f M guest iterations/s in all, %.0f KVM_RUN/s, "
	       "%.0f OUT exits/s\n", o->vcpus, (double)sum * 1e3 / (double)(t1 - t0),
	       (double)(s1.runs - s0.runs) * 1e9 / (double)(t1 - t0),
	       (double)(s1.exits_out - s0.exits_out) * 1e9 / (double)(t1 - t0));
	teardown(rs, vm);
	return failures ? 1 : 0;
}

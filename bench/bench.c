/* SPDX-License-Identifier: MIT */
/*
 * runstate-bench: transition latency of the vCPU fast path, side by side with
 * the alternatives and the physical floors.
 *
 *	runstate-bench [--vcpus=1,2,4,8] [--kvm-vcpus=1,2] [Google Benchmark flags]
 *
 * Benchmarks (the names are an interface):
 *
 *	fastpath/<impl>               one "may I run?" check, in ns
 *	stop/<impl>/vcpus:<N>         stop call until every vCPU is out of guest
 *	start/<impl>/vcpus:<N>        start call until the last parked vCPU
 *	                              executes guest code again
 *	pause_short/<impl>/vcpus:<N>  stop call, start at once, until the last
 *	                              vCPU executes guest code again
 *	lock_unlock/<impl>/vcpus:<N>  an internal lock and unlock round trip
 *	storm/<impl>/vcpus:<N>        guest slices per second while the
 *	                              benchmark thread stops and starts
 *	                              continuously
 *	exclusive/<impl>/vcpus:<N>    an exclusive section's begin and end,
 *	                              taken by vCPU 0 between two of its
 *	                              slices while the other N - 1 run theirs
 *	                              (runstate against qemu_exclusive, the
 *	                              model of QEMU's cpus-common.c)
 *
 * With the kvm module built and /dev/kvm usable, also stop/<impl>/vcpus:<N>
 * and start/<impl>/vcpus:<N> for runstate_kvm and qemu_condvar_kvm: real
 * KVM vCPUs executing guest code (bench_kvm.c; counts from --kvm-vcpus).
 *
 * Counters: p50_ns and p99_ns on the latency benchmarks (from every sample;
 * the reported time is the mean); call_p50_ns on start (the start call
 * alone); first_p50_ns on exclusive (the first of the two sections each
 * sample takes, the sample being the second); slices_per_s,
 * free_slices_per_s (the same vCPUs undisturbed) and cycles_per_s on
 * storm; parks_per_op and wakes_per_op from the library's own statistics
 * on runstate's rows.  fastpath/qemu_exclusive is the
 * bracket QEMU puts around guest execution for its exclusive sections
 * (cpu_exec_start() + cpu_exec_end()), per slice.
 *
 * Paired references.  A shared machine's speed drifts by 2x and more between
 * two runs, which would make any ratio between two benchmarks meaningless.
 * So runstate's rows also measure the floors their goals name, alternating
 * sample by sample in the same run (the world not being measured waits
 * stopped, its vCPUs asleep): counters <ref>_p50_ns and vs_<ref> (the ratio
 * of the p50s).  Only with fewer vCPUs than CPUs (see refs_for()); for
 * exclusive, whose benchmark thread sleeps through each sample, with as
 * many too (counters qemu_exclusive_p50_ns, vs_qemu_exclusive).
 * fastpath/<impl> likewise interleaves batches of plain_load (plain_load_ns,
 * vs_plain_load).
 *
 * The vCPU threads (world.c) are spawned outside the timed region, once per
 * run of a benchmark.
 *
 * Every latency sample also checks what it measures: after a stop (or lock)
 * returns, no vCPU may be inside a guest slice, and no slice may complete
 * until the start.  A violation fails the benchmark (SkipWithError) and the
 * process exits non-zero, which is what the bench-smoke test looks at.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "shim.h"
#ifdef RSB_HAVE_COST
#include "cost.h"
#endif

/* The storm benchmark's measurement window per iteration. */
#define STORM_WINDOW_NS 5000000ull
/* ... and the window in which the vCPUs run undisturbed, for comparison. */
#define STORM_FREE_NS 10000000
/* At most this many latency samples are kept per run. */
#define MAX_SAMPLES (1u << 21)

static unsigned ncpus;                  /* rsu_ncpus() */

/* ---------------------------------------------------------------------------
 * Samples
 */

int rsb_samples_init(struct rsb_samples *s, size_t cap, size_t max)
{
	s->n = 0;
	s->cap = cap ? cap : 1;
	s->max = max;
	s->sorted = true;
	s->v = malloc(s->cap * sizeof(*s->v));
	return s->v ? 0 : -ENOMEM;
}

int rsb_samples_add(struct rsb_samples *s, uint64_t ns)
{
	if (s->n == s->cap) {
		size_t cap = 2 * s->cap;
		uint64_t *v;

		if (s->max && cap > s->max)
			cap = s->max;
		if (cap == s->cap)
			return 0;       /* enough kept: the rest are not */
		v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = ns;
	s->sorted = false;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

double rsb_samples_pct(struct rsb_samples *s, unsigned p)
{
	size_t rank;

	if (s->n == 0)
		return 0;
	if (!s->sorted) {
		qsort(s->v, s->n, sizeof(*s->v), cmp_u64);
		s->sorted = true;
	}
	rank = (s->n * p + 99) / 100;
	if (rank == 0)
		rank = 1;
	return (double)s->v[rank - 1];
}

void rsb_samples_free(struct rsb_samples *s)
{
	free(s->v);
	s->v = NULL;
}

/* Room for every sample of a run of at most max_iter iterations (no
 * allocation in the loop), within MAX_SAMPLES. */
static int samples_for(struct rsb_samples *s, uint64_t max_iter)
{
	return rsb_samples_init(s, max_iter < MAX_SAMPLES ? (size_t)max_iter : MAX_SAMPLES,
				MAX_SAMPLES);
}

/* Reports p50_ns and p99_ns. */
static void samples_report(struct rsb_state *st, struct rsb_samples *s)
{
	rsb_counter(st, "p50_ns", rsb_samples_pct(s, 50));
	rsb_counter(st, "p99_ns", rsb_samples_pct(s, 99));
}

/* ---------------------------------------------------------------------------
 * Benchmarks
 */

enum kind { K_STOP, K_START, K_PAUSE_SHORT, K_LOCK_UNLOCK, K_STORM, K_EXCLUSIVE };

#define MAX_REFS 2

static const char *const kind_names[] = {
	[K_STOP] = "stop",
	[K_START] = "start",
	[K_PAUSE_SHORT] = "pause_short",
	[K_LOCK_UNLOCK] = "lock_unlock",
	[K_STORM] = "storm",
	[K_EXCLUSIVE] = "exclusive",
};

struct bm {
	enum kind kind;
	const struct impl *impl;
	unsigned n;
	/* Measured alternately in the same run, for a ratio that load on a
	 * shared machine cannot bend (NULL-terminated). */
	const struct impl *ref[MAX_REFS + 1];
};

/* Stop (or lock) just returned: check it and start again, untimed. */
static const char *check_stopped(struct world *w, uint64_t *slices)
{
	if (!rsb_all_out(w))
		return "a vCPU is inside a guest slice after the stop returned";
	*slices = rsb_slices_sum(w);
	return NULL;
}

static const char *check_still_stopped(struct world *w, uint64_t slices)
{
	if (rsb_slices_sum(w) != slices)
		return "a guest slice completed while the VM was stopped";
	return NULL;
}

static const char *restart(struct world *w, void (*start)(struct world *))
{
	uint32_t gen = rsb_arm(w);

	start(w);
	return rsb_wait_entered(w, gen) ? NULL : "vCPUs did not run again within 10 s";
}

/* Wait until every vCPU ran again since rsb_arm() returned gen; *ns: from
 * t0 until the last of them did. */
static const char *ran_again(struct world *w, uint32_t gen, uint64_t t0, uint64_t *ns)
{
	uint64_t t1 = rsb_wait_entered(w, gen);

	if (!t1)
		return "vCPUs did not run again within 10 s";
	*ns = t1 > t0 ? t1 - t0 : 0;
	return NULL;
}

/* One latency sample; returns an error message or NULL.  *call_ns: how long
 * the start call itself took (start), or the first of the two sections
 * (exclusive). */
static const char *one_sample(enum kind kind, struct world *w, uint64_t *ns,
			      uint64_t *call_ns, uint64_t *probe_ns)
{
	const struct impl *impl = w->impl;
	const char *err;
	uint64_t t0, t1, t2, t3, s;
	uint32_t gen;

	/* The machine's mode, just before the sample (world.c): for the
	 * kinds that begin with the vCPUs running, when asked. */
	if (probe_ns)
		*probe_ns = kind == K_STOP || kind == K_PAUSE_SHORT || kind == K_LOCK_UNLOCK ?
			    rsb_probe(w) : 0;
	switch (kind) {
	case K_STOP:
		t0 = rsu_now_ns();
		impl->stop(w);
		t1 = rsu_now_ns();
		*ns = t1 - t0;
		if ((err = check_stopped(w, &s)) || (err = check_still_stopped(w, s)))
			return err;
		return restart(w, impl->start);

	case K_START:
		impl->stop(w);
		if ((err = check_stopped(w, &s)))
			return err;
		if (!rsb_wait_parked(w))
			return "stopped vCPUs did not park within 10 s";
		if ((err = check_still_stopped(w, s)))
			return err;
		gen = rsb_arm(w);
		t0 = rsu_now_ns();
		impl->start(w);
		t2 = rsu_now_ns();
		if ((err = ran_again(w, gen, t0, ns)))
			return err;
		*call_ns = t2 - t0;
		return NULL;

	case K_PAUSE_SHORT:
		t0 = rsu_now_ns();
		impl->stop(w);
		gen = rsb_arm(w);
		impl->start(w);
		return ran_again(w, gen, t0, ns);

	case K_LOCK_UNLOCK:
		t0 = rsu_now_ns();
		impl->lock(w);
		t1 = rsu_now_ns();
		err = check_stopped(w, &s);
		gen = rsb_arm(w);
		t2 = rsu_now_ns();
		impl->unlock(w);
		t3 = rsu_now_ns();
		*ns = (t1 - t0) + (t3 - t2);
		if (err)
			return err;
		return rsb_wait_entered(w, gen) ? NULL : "vCPUs did not run again within 10 s";

	case K_EXCLUSIVE:
		/* Two sections; the second is the sample.  The first one
		 * after a paired world woke up finds the section's lines and
		 * code cold (the other world ran meanwhile): runstate's took
		 * 1.5 to 1.7 us at 2 vCPUs against 0.54 to 1.4 us for the
		 * second, and 250 to 300 ns against 130 to 140 ns at 1 (the
		 * QEMU model's, a futex wake-up, no longer).  An emulator's
		 * vCPUs run on between sections, so the second is the one
		 * measured; the first is still reported (first_p50_ns). */
		return rsb_exclusive(w, call_ns, ns);

	case K_STORM:
		break;
	}
	return "unknown benchmark";
}

/*
 * The paired samples of one run in order, each with the mode it saw: per
 * iteration, runstate's time and probe (rsb_probe(), just before its
 * sample), then each reference's.  Kept for the per-mode counters and for
 * RSB_SAMPLE_LOG.
 */
struct pairs {
	unsigned nref;
	size_t n, cap;
	uint64_t *v;            /* n rows of 2 * (1 + nref): ns, probe, ... */
};

static int pairs_init(struct pairs *p, unsigned nref, uint64_t max_iter)
{
	p->nref = nref;
	p->n = 0;
	p->cap = max_iter < MAX_SAMPLES ? (size_t)max_iter : MAX_SAMPLES;
	if (p->cap == 0)
		p->cap = 1;
	p->v = malloc(p->cap * 2 * (1 + nref) * sizeof(*p->v));
	return p->v ? 0 : -ENOMEM;
}

static void pairs_add(struct pairs *p, uint64_t ns, uint64_t probe, const uint64_t *rns,
		      const uint64_t *rprobe)
{
	uint64_t *row;

	if (p->n == p->cap)
		return;         /* enough kept */
	row = p->v + p->n++ * 2 * (1 + p->nref);
	row[0] = ns;
	row[1] = probe;
	for (unsigned r = 0; r < p->nref; r++) {
		row[2 + 2 * r] = rns[r];
		row[3 + 2 * r] = rprobe[r];
	}
}

static void pairs_free(struct pairs *p)
{
	free(p->v);
	p->v = NULL;
}

/*
 * The boundary between the machine's two modes in a run's probes, or 0 if
 * they show one mode.  Otsu's split of the log round trips (the one that
 * best separates two groups), taken only if the two groups' medians differ
 * by MODE_GAP or more: on the machine of docs/performance.md the modes'
 * round trips differ by 2.5 to 3x (about 180 ns and 500 ns), while within a
 * mode they spread by well under that.
 */
#define MODE_GAP 1.8

static uint64_t mode_split(const uint64_t *v, size_t n)
{
	uint64_t *x = malloc(n * sizeof(*x)), split = 0;
	double *pre = malloc((n + 1) * sizeof(*pre)), best = -1;
	size_t m = 0, k_best = 0;

	if (!x || !pre)
		goto out;
	for (size_t i = 0; i < n; i++)
		if (v[i])
			x[m++] = v[i];
	if (m < 40)
		goto out;
	qsort(x, m, sizeof(*x), cmp_u64);
	pre[0] = 0;
	for (size_t i = 0; i < m; i++)
		pre[i + 1] = pre[i] + log((double)x[i]);
	for (size_t k = 1; k < m; k++) {
		double w0 = (double)k / (double)m, w1 = 1 - w0;
		double d = pre[k] / (double)k - (pre[m] - pre[k]) / (double)(m - k);

		if (x[k] == x[k - 1])
			continue;
		if (w0 * w1 * d * d > best) {
			best = w0 * w1 * d * d;
			k_best = k;
		}
	}
	/* Both groups' medians, and each group at least 1% of the run. */
	if (k_best >= m / 100 && m - k_best >= m / 100 && k_best > 0 &&
	    (double)x[k_best + (m - k_best) / 2] >= MODE_GAP * (double)x[k_best / 2])
		split = x[k_best];
out:
	free(x);
	free(pre);
	return split;
}

static double median_of(uint64_t *v, size_t n)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	return (double)v[(n - 1) / 2];
}

/*
 * Per-mode counters: probe_p50_ns (runstate's probes), slow_share (of
 * runstate's samples, 0 with one mode) and, if the run saw both modes, for
 * each reference vs_<ref>_fast and vs_<ref>_slow: the ratio of the p50s of the samples that
 * saw that mode, each side classified by its own probe (so a mode change
 * between the two samples of a pair does not mix them).  A mode with fewer
 * than 20 samples on either side gets no ratio.
 */
static void mode_counters(struct rsb_state *st, struct pairs *p, const struct bm *b)
{
	size_t row = 2 * (1 + p->nref), n = p->n, nslow = 0;
	uint64_t *pool = malloc(n * (1 + p->nref) * sizeof(*pool));
	uint64_t *a = malloc(n * sizeof(*a)), *c = malloc(n * sizeof(*c)), split;

	if (!pool || !a || !c || !n)
		goto out;
	for (size_t i = 0; i < n; i++)
		for (unsigned k = 0; k <= p->nref; k++)
			pool[i * (1 + p->nref) + k] = p->v[i * row + 2 * k + 1];
	split = mode_split(pool, n * (1 + p->nref));
	for (size_t i = 0; i < n; i++)
		a[i] = p->v[i * row + 1];
	rsb_counter(st, "probe_p50_ns", median_of(a, n));
	for (size_t i = 0; i < n; i++)
		if (split && p->v[i * row + 1] >= split)
			nslow++;
	rsb_counter(st, "slow_share", (double)nslow / (double)n);
	/* One mode: the run's own vs_<ref> is its ratio, and probe_p50_ns
	 * says which mode it was. */
	for (unsigned r = 0; split && r < p->nref; r++) {
		for (int slow = 0; slow <= 1; slow++) {
			size_t na = 0, nc = 0;
			char name[64];

			for (size_t i = 0; i < n; i++) {
				const uint64_t *rw = p->v + i * row;
				bool sa = split && rw[1] >= split, sc = split && rw[3 + 2 * r] >= split;

				/* A sample whose probe failed (0) says nothing. */
				if (rw[1] && sa == (bool)slow)
					a[na++] = rw[0];
				if (rw[3 + 2 * r] && sc == (bool)slow)
					c[nc++] = rw[2 + 2 * r];
			}
			if (na < 20 || nc < 20)
				continue;
			snprintf(name, sizeof(name), "vs_%s_%s", b->ref[r]->name,
				 slow ? "slow" : "fast");
			rsb_counter(st, name, median_of(a, na) / median_of(c, nc));
		}
	}
out:
	free(pool);
	free(a);
	free(c);
}

static void pairs_report(struct rsb_state *st, struct pairs *p, const struct bm *b)
{
	const char *log = getenv("RSB_SAMPLE_LOG");
	size_t row = 2 * (1 + p->nref);

	if (log && *log) {
		FILE *f = fopen(log, "a");

		if (f) {
			for (size_t i = 0; i < p->n; i++) {
				fprintf(f, "%s/%s/vcpus:%u\t%zu", kind_names[b->kind],
					b->impl->name, b->n, i);
				for (size_t k = 0; k < row; k++)
					fprintf(f, "\t%llu", (unsigned long long)p->v[i * row + k]);
				fputc('\n', f);
			}
			fclose(f);
		}
	}
	mode_counters(st, p, b);
}

static void get_stats(struct world *w, uint64_t *parks, uint64_t *wakes)
{
	*parks = *wakes = 0;
	if (w->impl->stats)
		w->impl->stats(w, parks, wakes);
}
static void bm_latency(struct rsb_state *st, void *arg)
{
	const struct bm *b = arg;
	struct rsb_samples smp = { 0 }, calls = { 0 }, refs[MAX_REFS] = { { 0 } };
	/* Paired samples in order, with the mode each one saw (struct pairs) */
	struct pairs pl = { 0 };
	uint64_t parks0, wakes0, parks1, wakes1, parks = 0, wakes = 0, iters = 0;
	struct world w, rw[MAX_REFS];
	uint64_t max_iter = rsb_max_iterations(st);
	unsigned nref = 0, up = 0;
	bool w_up = false, probe;
	int err = 0;

	while (nref < MAX_REFS && b->ref[nref])
		nref++;
	probe = nref > 0 && (b->kind == K_STOP || b->kind == K_PAUSE_SHORT ||
			     b->kind == K_LOCK_UNLOCK);
	if (samples_for(&smp, max_iter) ||
	    samples_for(&calls, b->kind == K_START || b->kind == K_EXCLUSIVE ? max_iter : 1))
		err = -ENOMEM;
	for (unsigned r = 0; r < nref; r++)
		if (samples_for(&refs[r], max_iter))
			err = -ENOMEM;
	if (probe && pairs_init(&pl, nref, max_iter))
		err = -ENOMEM;
	if (!err) {
		err = rsb_world_up(&w, b->impl, b->n, b->kind == K_EXCLUSIVE);
		w_up = !err;
	}
	/* The references wait stopped and asleep while the others run. */
	for (; !err && up < nref; up++) {
		err = rsb_world_up(&rw[up], b->ref[up], b->n, b->kind == K_EXCLUSIVE);
		if (err)
			break;
		rsb_go_idle(&rw[up]);
	}
	if (err) {
		for (unsigned r = 0; r < up; r++)
			rsb_world_down(&rw[r]);
		if (w_up)
			rsb_world_down(&w);
		rsb_skip_with_error(st, err == -ENOMEM ? "out of memory" :
				    err == -ETIMEDOUT ? "vCPUs did not start" :
				    "cannot set up the vCPUs");
		goto out;
	}
	while (rsb_keep_running(st)) {
		uint64_t ns = 0, call_ns = 0, rns[MAX_REFS] = { 0 };
		uint64_t pr = 0, rpr[MAX_REFS] = { 0 };
		const char *msg;

		get_stats(&w, &parks0, &wakes0);
		msg = one_sample(b->kind, &w, &ns, &call_ns, probe ? &pr : NULL);
		get_stats(&w, &parks1, &wakes1);
		parks += parks1 - parks0;
		wakes += wakes1 - wakes0;

		rsb_set_iteration_time(st, (double)ns * 1e-9);
		for (unsigned r = 0; r < nref && !msg; r++) {
			uint64_t unused;

			rsb_go_idle(&w);
			msg = rsb_wake_up(&rw[r]);
			if (!msg)
				msg = one_sample(b->kind, &rw[r], &rns[r], &unused,
						 probe ? &rpr[r] : NULL);
			if (!msg) {
				rsb_go_idle(&rw[r]);
				msg = rsb_wake_up(&w);
			}
		}
		if (msg) {
			rsb_skip_with_error(st, msg);
			break;
		}
		rsb_samples_add(&smp, ns);
		if (b->kind == K_START || b->kind == K_EXCLUSIVE)
			rsb_samples_add(&calls, call_ns);
		for (unsigned r = 0; r < nref; r++)
			rsb_samples_add(&refs[r], rns[r]);
		if (probe)
			pairs_add(&pl, ns, pr, rns, rpr);
		iters++;
	}
	rsb_world_down(&w);
	for (unsigned r = 0; r < nref; r++)
		rsb_world_down(&rw[r]);
	samples_report(st, &smp);
	if (b->kind == K_START) {
		rsb_counter(st, "call_p50_ns", rsb_samples_pct(&calls, 50));
	} else if (b->kind == K_EXCLUSIVE) {
		rsb_counter(st, "first_p50_ns", rsb_samples_pct(&calls, 50));
	}
	for (unsigned r = 0; r < nref; r++) {
		char name[64];
		double p50 = rsb_samples_pct(&smp, 50), r50 = rsb_samples_pct(&refs[r], 50);

		snprintf(name, sizeof(name), "%s_p50_ns", b->ref[r]->name);
		rsb_counter(st, name, r50);
		snprintf(name, sizeof(name), "vs_%s", b->ref[r]->name);
		rsb_counter(st, name, r50 > 0 ? p50 / r50 : 0);
	}
	if (probe)
		pairs_report(st, &pl, b);
	/* The library's own counters per sample: did vCPUs sleep, how many
	 * wakes (the sample's untimed set-up included, the pairing not). */
	if (b->impl->stats && iters) {
		rsb_counter(st, "parks_per_op", (double)parks / (double)iters);
		rsb_counter(st, "wakes_per_op", (double)wakes / (double)iters);
	}
out:
	rsb_samples_free(&smp);
	rsb_samples_free(&calls);
	for (unsigned r = 0; r < nref; r++)
		rsb_samples_free(&refs[r]);
	pairs_free(&pl);
}

static void bm_storm(struct rsb_state *st, void *arg)
{
	const struct bm *b = arg;
	const struct timespec free_window = { 0, STORM_FREE_NS };
	uint64_t tot_slices = 0, tot_ns = 0, tot_cycles = 0, f0, f1, ft0, ft1;
	struct world w;

	if (rsb_world_up(&w, b->impl, b->n, false)) {
		rsb_skip_with_error(st, "cannot set up the vCPUs");
		return;
	}
	/* The same vCPUs left alone for a moment: the rate to compare with. */
	f0 = rsb_slices_sum(&w);
	ft0 = rsu_now_ns();
	nanosleep(&free_window, NULL);
	f1 = rsb_slices_sum(&w);
	ft1 = rsu_now_ns();
	while (rsb_keep_running(st)) {
		uint64_t s0 = rsb_slices_sum(&w), t0 = rsu_now_ns(), t1;

		do {
			b->impl->stop(&w);
			b->impl->start(&w);
			tot_cycles++;
			t1 = rsu_now_ns();
		} while (t1 - t0 < STORM_WINDOW_NS);
		tot_slices += rsb_slices_sum(&w) - s0;
		tot_ns += t1 - t0;
		rsb_set_iteration_time(st, (double)(t1 - t0) * 1e-9);
	}
	rsb_world_down(&w);
	if (tot_ns) {
		rsb_counter(st, "slices_per_s", (double)tot_slices * 1e9 / (double)tot_ns);
		rsb_counter(st, "cycles_per_s", (double)tot_cycles * 1e9 / (double)tot_ns);
		rsb_counter(st, "free_slices_per_s", (double)(f1 - f0) * 1e9 / (double)(ft1 - ft0));
	}
}

/*
 * fastpath/<impl>: batches of checks, each followed by a batch of
 * plain_load's, both timed here in thread CPU time (so a preemption in the
 * middle of a batch does not count; the clock's system call costs about
 * 1 us, under 0.5% of a batch).  The reported time is the implementation's
 * alone, per check; the counters plain_load_ns and vs_plain_load come from
 * the interleaved plain_load batches of the same run, so load that comes
 * and goes on a shared machine hits both alike.  (Two separate runs of the
 * very same loop differ by up to 2x on the 2-CPU machine of
 * docs/performance.md.)
 */
#define FAST_BATCH (1u << 20)

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void bm_fastpath(struct rsb_state *st, void *arg)
{
	const struct impl *impl = arg;
	void *ctx = impl->fast_setup(), *pctx = impl_plain_load.fast_setup();
	uint64_t own = 0, plain = 0, checks = 0;

	if (!ctx || !pctx) {
		rsb_skip_with_error(st, "cannot set up");
		return;
	}
	while (rsb_keep_running_batch(st, FAST_BATCH)) {
		uint64_t t0 = thread_cpu_ns(), t1, t2;
		unsigned a = impl->fast_run(ctx, FAST_BATCH), b;

		t1 = thread_cpu_ns();
		b = impl_plain_load.fast_run(pctx, FAST_BATCH);
		t2 = thread_cpu_ns();
		rsb_set_iteration_time(st, (double)(t1 - t0) * 1e-9);
		own += t1 - t0;
		plain += t2 - t1;
		checks += FAST_BATCH;
		if (a != FAST_BATCH || b != FAST_BATCH) {
			rsb_skip_with_error(st, "the check said stop while running");
			break;
		}
	}
	impl->fast_teardown(ctx);
	impl_plain_load.fast_teardown(pctx);
	if (plain && checks) {
		rsb_counter(st, "plain_load_ns", (double)plain / (double)checks);
		rsb_counter(st, "vs_plain_load", (double)own / (double)plain);
	}
}

/* ---------------------------------------------------------------------------
 * Registration
 */

static const struct impl *const fast_impls[] = {
	&impl_runstate, &impl_qemu_condvar, &impl_qemu_exclusive, &impl_ck_brlock,
	&impl_urcu_qsbr, &impl_spin_floor, &impl_plain_load,
};

static const struct impl *const transition_impls[] = {
	&impl_runstate, &impl_runstate_sig, &impl_qemu_condvar, &impl_qemu_condvar_sig,
	&impl_ck_brlock, &impl_urcu_qsbr, &impl_spin_floor,
};

/* start also has the one-FUTEX_WAKE reference. */
static const struct impl *const start_impls[] = {
	&impl_runstate, &impl_runstate_sig, &impl_qemu_condvar, &impl_qemu_condvar_sig,
	&impl_ck_brlock, &impl_urcu_qsbr, &impl_spin_floor, &impl_futex_wake_all,
};

/* Exclusive sections: runstate and the model of QEMU's. */
static const struct impl *const exclusive_impls[] = {
	&impl_runstate, &impl_qemu_exclusive,
};

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/*
 * The paired references of runstate's rows: the floors and the model its
 * goals are set against.  Only where every thread has a CPU of its own:
 * oversubscribed, a sample is a matter of scheduler ticks, and pairing would
 * only make the sweep longer.  The benchmark thread sleeps through an
 * exclusive sample (rsb_exclusive()), so there the vCPUs alone count: as
 * many as CPUs is still paired (the goal is set at 2 vCPUs, and this
 * machine has 2 CPUs).
 */
static void refs_for(enum kind k, const struct impl *impl, unsigned nvcpus,
		     const struct impl **ref)
{
	unsigned n = 0;

	if (impl == &impl_runstate && k == K_EXCLUSIVE && nvcpus <= ncpus)
		ref[n++] = &impl_qemu_exclusive;
	if (impl == &impl_runstate && nvcpus < ncpus) {
		switch (k) {
		case K_STOP:
			ref[n++] = &impl_spin_floor;
			ref[n++] = &impl_qemu_condvar;
			break;
		case K_PAUSE_SHORT:
		case K_LOCK_UNLOCK:
			ref[n++] = &impl_spin_floor;
			break;
		case K_START:
			ref[n++] = &impl_futex_wake_all;
			break;
		default:
			break;
		}
	}
	ref[n] = NULL;
}

static void register_kind(enum kind k, const struct impl *const *impls, size_t nimpls,
			  const unsigned *ns, size_t nn)
{
	for (size_t i = 0; i < nimpls; i++) {
		for (size_t j = 0; j < nn; j++) {
			struct bm *b = malloc(sizeof(*b));
			char name[128];

			if (!b) {
				perror("runstate-bench");
				exit(1);
			}
			b->kind = k;
			b->impl = impls[i];
			b->n = ns[j];
			refs_for(k, impls[i], ns[j], b->ref);
			snprintf(name, sizeof(name), "%s/%s/vcpus:%u", kind_names[k],
				 impls[i]->name, ns[j]);
			rsb_register(name, k == K_STORM ? bm_storm : bm_latency, b,
				     RSB_TIME_MANUAL);
		}
	}
}

static int cmp_uns(const void *a, const void *b)
{
	unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;

	return (x > y) - (x < y);
}

/* Sort and drop duplicates and zeros; returns the new count. */
static size_t uniq(unsigned *v, size_t n)
{
	size_t k = 0;

	qsort(v, n, sizeof(*v), cmp_uns);
	for (size_t i = 0; i < n; i++)
		if (v[i] && (k == 0 || v[k - 1] != v[i]))
			v[k++] = v[i];
	return k;
}

/* The default sweep: powers of two below the CPU count, CPUs - 1, CPUs, and
 * oversubscribed 2x and 4x.  On 2 CPUs: 1, 2, 4, 8. */
static size_t default_sweep(unsigned *v)
{
	size_t n = 0;

	for (unsigned p = 1; p < ncpus - 1; p *= 2)
		v[n++] = p;
	v[n++] = ncpus - 1;
	v[n++] = ncpus;
	v[n++] = 2 * ncpus;
	v[n++] = 4 * ncpus;
	v[n++] = 1;
	return uniq(v, n);
}

static size_t parse_sweep(const char *s, unsigned *v, size_t max)
{
	size_t n = 0;

	while (*s) {
		char *end;
		unsigned long x = strtoul(s, &end, 10);

		if (end == s || x == 0 || x > 4096 || n == max ||
		    (*end != ',' && *end != '\0'))
			return 0;
		v[n++] = (unsigned)x;
		s = *end ? end + 1 : end;
	}
	return uniq(v, n);
}

int main(int argc, char **argv)
{
	unsigned sweep[64], kvm_sweep[64];
	size_t nsweep = 0, nkvm = 0;
	int out = 1;

	ncpus = rsu_ncpus();

	/* --cost: the work per operation against N (cost_main.c), from an
	 * instrumented build only; Google Benchmark is not involved. */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--cost"))
			continue;
#ifdef RSB_HAVE_COST
		return rsb_cost_main(argc, argv);
#else
		fprintf(stderr, "runstate-bench: --cost needs an instrumented build: meson setup "
				"build-cost -Dinstrument=true -Dbench=enabled -Dbuildtype=release\n");
		return 2;
#endif
	}

	/* Our own flag, removed before Google Benchmark sees argv. */
	for (int i = 1; i < argc; i++) {
		if (!strncmp(argv[i], "--vcpus=", 8)) {
			nsweep = parse_sweep(argv[i] + 8, sweep, ARRAY_SIZE(sweep));
			if (!nsweep) {
				fprintf(stderr, "runstate-bench: bad --vcpus list: %s\n",
					argv[i] + 8);
				return 1;
			}
			continue;
		}
		if (!strncmp(argv[i], "--kvm-vcpus=", 12)) {
			nkvm = parse_sweep(argv[i] + 12, kvm_sweep, ARRAY_SIZE(kvm_sweep));
			if (!nkvm) {
				fprintf(stderr, "runstate-bench: bad --kvm-vcpus list: %s\n",
					argv[i] + 12);
				return 1;
			}
			continue;
		}
		if (!strcmp(argv[i], "--help"))
			printf("runstate-bench [--vcpus=N,N,...] [--kvm-vcpus=N,...] "
			       "[Google Benchmark flags]\n"
			       "  --vcpus      vCPU counts to sweep (default from the %u CPUs "
			       "here)\n"
			       "  --kvm-vcpus  vCPU counts of the KVM benchmarks (default "
			       "1..CPUs)\n"
			       "  --cost       work per stop and start against N (instrumented "
			       "builds; see docs/performance.md)\n\n", ncpus);
		argv[out++] = argv[i];
	}
	argc = out;
	argv[argc] = NULL;
	if (!nsweep)
		nsweep = default_sweep(sweep);

	rsb_world_init();

	for (size_t i = 0; i < ARRAY_SIZE(fast_impls); i++) {
		char name[64];

		snprintf(name, sizeof(name), "fastpath/%s", fast_impls[i]->name);
		rsb_register(name, bm_fastpath, (void *)fast_impls[i], RSB_TIME_MANUAL);
	}
	register_kind(K_STOP, transition_impls, ARRAY_SIZE(transition_impls), sweep, nsweep);
	register_kind(K_START, start_impls, ARRAY_SIZE(start_impls), sweep, nsweep);
	register_kind(K_PAUSE_SHORT, transition_impls, ARRAY_SIZE(transition_impls), sweep, nsweep);
	register_kind(K_LOCK_UNLOCK, transition_impls, ARRAY_SIZE(transition_impls), sweep, nsweep);
	register_kind(K_STORM, transition_impls, ARRAY_SIZE(transition_impls), sweep, nsweep);
	register_kind(K_EXCLUSIVE, exclusive_impls, ARRAY_SIZE(exclusive_impls), sweep, nsweep);
#ifdef RSB_HAVE_KVM
	if (!nkvm)
		for (unsigned n = 1; n <= ncpus && nkvm < ARRAY_SIZE(kvm_sweep); n++)
			kvm_sweep[nkvm++] = n;
	rsb_kvm_register(kvm_sweep, nkvm);
#else
	(void)kvm_sweep;
	(void)nkvm;
#endif

	return rsb_main(argc, argv);
}

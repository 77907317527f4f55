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
 *
 * With the kvm module built and /dev/kvm usable, also stop/<impl>/vcpus:<N>
 * and start/<impl>/vcpus:<N> for runstate_kvm and qemu_condvar_kvm: real
 * KVM vCPUs executing guest code (bench_kvm.c; counts from --kvm-vcpus).
 *
 * Counters: p50_ns and p99_ns on the latency benchmarks (from every sample;
 * the reported time is the mean); call_p50_ns on start (the start call
 * alone); slices_per_s, free_slices_per_s (the same vCPUs undisturbed) and
 * cycles_per_s on storm; parks_per_op and wakes_per_op from the library's
 * own statistics on runstate's rows.
 *
 * Paired references.  A shared machine's speed drifts by 2x and more between
 * two runs, which would make any ratio between two benchmarks meaningless.
 * So runstate's rows also measure the floors their goals name, alternating
 * sample by sample in the same run (the world not being measured waits
 * stopped, its vCPUs asleep): counters <ref>_p50_ns and vs_<ref> (the ratio
 * of the p50s).  Only with fewer vCPUs than CPUs (see refs_for()).  fastpath/<impl> likewise interleaves batches of plain_load
 * (plain_load_ns, vs_plain_load).
 *
 * The vCPU threads are spawned outside the timed region, once per run of a
 * benchmark.  With fewer vCPUs than CPUs, each vCPU is pinned to its own CPU
 * and the benchmark (management) thread to the first one; with as many or
 * more, nothing is pinned (oversubscribed: the threads that spin yield now
 * and then, see rsb_spin()).
 *
 * Every latency sample also checks what it measures: after a stop (or lock)
 * returns, no vCPU may be inside a guest slice, and no slice may complete
 * until the start.  A violation fails the benchmark (SkipWithError) and the
 * process exits non-zero, which is what the bench-smoke test looks at.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "shim.h"

/* About 100 ns of dependent multiplies: a short guest slice, on the order of
 * a few translated blocks. */
#define SLICE_ROUNDS 100
/* The storm benchmark's measurement window per iteration. */
#define STORM_WINDOW_NS 5000000ull
/* ... and the window in which the vCPUs run undisturbed, for comparison. */
#define STORM_FREE_NS 10000000
/* Give up waiting for vCPUs after this long (a hang is a failure). */
#define WAIT_LIMIT_NS 10000000000ull
/* At most this many latency samples are kept per run. */
#define MAX_SAMPLES (1u << 21)

static cpu_set_t all_cpus;              /* the process's allowed CPUs */
static int cpu_list[CPU_SETSIZE];
static unsigned ncpus;

/* ---------------------------------------------------------------------------
 * Helpers
 */

uint64_t rsb_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Set by the kick signal's handler on the vCPU thread it interrupts; a sig
 * implementation's guest loop runs until it is set. */
static _Thread_local volatile sig_atomic_t tls_kicked;

static void on_kick(int sig)
{
	(void)sig;
	tls_kicked = 1;
}

void rsb_kick_signal(struct vcpu *v)
{
	pthread_kill(v->thread, RSB_KICK_SIGNAL);
}

void rsb_spin(const struct world *w, unsigned *i)
{
	rsb_cpu_relax();
	if ((++*i & 63) == 0 && w->oversub)
		sched_yield();
}

bool rsb_idle_wait(struct world *w)
{
	/* Sleeps only while idle is still 1: wake_up() clears it before its
	 * FUTEX_WAKE, so the wake cannot slip in between. */
	if (!atomic_load_explicit(&w->idle, memory_order_seq_cst))
		return false;
	rsb_futex_wait(&w->idle, 1);
	return true;
}

int rsb_futex_wait(_Atomic uint32_t *addr, uint32_t val)
{
	return (int)syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

int rsb_futex_wake(_Atomic uint32_t *addr, int n)
{
	return (int)syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static uint64_t slice_sink;

/* One guest slice: a short chain of dependent multiplies. */
static __attribute__((noinline)) void guest_work(struct vcpu *v)
{
	uint64_t x = v->idx + 1;

	for (int i = 0; i < SLICE_ROUNDS; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		__asm__ __volatile__("" : "+r"(x));
	}
	if (x == 42)    /* practically never; keeps x alive */
		slice_sink = x;
}

static inline void slice(struct vcpu *v)
{
	/* The first slice to begin after the benchmark thread armed the
	 * world (a new arm_gen) stamps its start.  The release store pairs
	 * with the acquire load in wait_entered(). */
	uint32_t gen = atomic_load_explicit(&v->w->arm_gen, memory_order_relaxed);

	if (__builtin_expect(gen != atomic_load_explicit(&v->seen_gen, memory_order_relaxed), 0)) {
		atomic_store_explicit(&v->entry_ns, rsb_now_ns(), memory_order_relaxed);
		atomic_store_explicit(&v->seen_gen, gen, memory_order_release);
	}
	atomic_store_explicit(&v->in_slice, 1, memory_order_relaxed);
	guest_work(v);
	atomic_store_explicit(&v->slices,
			      atomic_load_explicit(&v->slices, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	/* Release: a stopper that sees 0 here after its stop (acquire, via
	 * the implementation's own acknowledgement) sees the slice done. */
	atomic_store_explicit(&v->in_slice, 0, memory_order_release);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct world *w = v->w;
	const struct impl *impl = w->impl;
	int err;

	v->tid = (pid_t)syscall(SYS_gettid);
	err = impl->vcpu_init(v);
	atomic_store_explicit(&v->ready, err ? 2 : 1, memory_order_release);
	if (err)
		return NULL;
	while (!atomic_load_explicit(&w->go, memory_order_acquire))
		sched_yield();

	if (impl->sig) {
		for (;;) {
			/* Eat the signal before asking: a kick that arrives
			 * from here on ends the next guest loop at once
			 * (KVM's immediate_exit). */
			tls_kicked = 0;
			if (!impl->enter(v))
				break;
			while (!tls_kicked)
				slice(v);
		}
	} else {
		while (impl->enter(v))
			while (impl->may_run(v))
				slice(v);
	}
	impl->vcpu_fini(v);
	return NULL;
}

/* ---------------------------------------------------------------------------
 * Worlds
 */

static void pin_self(int cpu)
{
	cpu_set_t set;

	if (cpu < 0) {
		set = all_cpus;
	} else {
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
	}
	(void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/*
 * Arm the world: every vCPU stamps the start of its next slice.  Called only
 * when no vCPU may begin a slice (after a stop or lock returned, before the
 * start), so the stamp is that of the first slice after the start, whether or
 * not the vCPU went through enter() (a brlock or QSBR vCPU may have been
 * between two slices during the whole stop).  One store, so it costs nothing
 * inside a timed region; the start that follows publishes it.
 */
static uint32_t arm(struct world *w)
{
	uint32_t gen = atomic_load_explicit(&w->arm_gen, memory_order_relaxed) + 1;

	atomic_store_explicit(&w->arm_gen, gen, memory_order_release);
	return gen;
}

/*
 * Wait until every vCPU has begun a slice since arm() returned gen; returns
 * the latest stamp, or 0 after WAIT_LIMIT_NS.  The stamps are the vCPUs'
 * own, so how soon this thread notices does not matter: oversubscribed, it
 * naps rather than spins, leaving the CPUs to the vCPUs.
 */
static uint64_t wait_entered(struct world *w, uint32_t gen)
{
	const struct timespec nap = { 0, 20000 };
	uint64_t last = 0, t0 = rsb_now_ns();
	unsigned spins = 0;

	for (unsigned i = 0; i < w->n; i++) {
		struct vcpu *v = &w->v[i];
		uint64_t e;

		while (atomic_load_explicit(&v->seen_gen, memory_order_acquire) != gen) {
			if (w->oversub && ++spins > 64)
				nanosleep(&nap, NULL);
			else
				rsb_cpu_relax();
			if ((++spins & 1023) == 0 && rsb_now_ns() - t0 > WAIT_LIMIT_NS)
				return 0;
		}
		e = atomic_load_explicit(&v->entry_ns, memory_order_relaxed);
		if (e > last)
			last = e;
	}
	return last;
}

/* Is thread tid asleep ('S' in /proc)? */
bool rsb_thread_sleeping(pid_t tid)
{
	char path[64], buf[512];
	const char *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] == 'S';
}

static bool all_sleeping(const struct world *w)
{
	for (unsigned i = 0; i < w->n; i++)
		if (!rsb_thread_sleeping(w->v[i].tid))
			return false;
	return true;
}

/*
 * After a stop: wait until every vCPU sleeps, for implementations whose
 * stopped vCPUs park; false after WAIT_LIMIT_NS.
 *
 * How long a CPU has been idle decides how long waking it takes (the
 * guest's idle states, the host's halt polling: in the 2-CPU VM of
 * docs/performance.md, a vCPU asleep for 60 us wakes measurably slower than
 * one asleep for 30 us).  So the start must come the same time after every
 * implementation's vCPUs fell asleep: poll without napping until all sleep,
 * then let exactly PARKED_NS pass (spinning on the clock: a nap's timer
 * slack is as long as the interval) and check that they still sleep.  With
 * 30 us naps between polls, an implementation whose vCPUs spin a few
 * microseconds before sleeping (runstate's park()) was started one nap
 * later, and its start measured 3% to 17% slower for it.
 */
#define PARKED_NS 100000ull

static bool wait_parked(struct world *w)
{
	const struct timespec nap = { 0, 20000 };
	uint64_t t0 = rsb_now_ns();

	if (!w->impl->parks)
		return true;
	for (;;) {
		if (all_sleeping(w)) {
			uint64_t t1 = rsb_now_ns();

			while (rsb_now_ns() - t1 < PARKED_NS)
				if (w->oversub)
					sched_yield();
				else
					rsb_cpu_relax();
			if (all_sleeping(w))
				return true;
		}
		if (rsb_now_ns() - t0 > WAIT_LIMIT_NS)
			return false;
		if (w->oversub)
			nanosleep(&nap, NULL);
	}
}

static uint64_t slices_sum(const struct world *w)
{
	uint64_t s = 0;

	for (unsigned i = 0; i < w->n; i++)
		s += atomic_load_explicit(&w->v[i].slices, memory_order_relaxed);
	return s;
}

/* After a stop returned: no vCPU is inside a slice. */
static bool all_out(const struct world *w)
{
	for (unsigned i = 0; i < w->n; i++)
		if (atomic_load_explicit(&w->v[i].in_slice, memory_order_acquire))
			return false;
	return true;
}

static void world_down(struct world *w);

static int world_up(struct world *w, const struct impl *impl, unsigned n)
{
	pthread_attr_t attr;
	unsigned started = 0;
	uint32_t gen;
	int err;

	memset(w, 0, sizeof(*w));
	w->impl = impl;
	w->n = n;
	w->oversub = n >= ncpus;
	w->v = aligned_alloc(_Alignof(struct vcpu), sizeof(struct vcpu) * n);
	if (!w->v)
		return -ENOMEM;
	memset(w->v, 0, sizeof(struct vcpu) * n);
	/* Pin only when every thread, the management one included, gets a
	 * CPU of its own: a vCPU pinned beside the management thread would
	 * make each wake-up of the latter wait for a scheduler tick. */
	for (unsigned i = 0; i < n; i++) {
		w->v[i].idx = i;
		w->v[i].w = w;
		w->v[i].cpu = n < ncpus ? cpu_list[i + 1] : -1;
	}
	err = impl->init(w);
	if (err) {
		free(w->v);
		return err;
	}

	pthread_attr_init(&attr);
	for (unsigned i = 0; i < n; i++) {
		struct vcpu *v = &w->v[i];
		cpu_set_t set;

		if (v->cpu >= 0) {
			CPU_ZERO(&set);
			CPU_SET(v->cpu, &set);
		} else {
			set = all_cpus;
		}
		pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
		err = -pthread_create(&v->thread, &attr, vcpu_thread, v);
		if (err)
			break;
		started++;
	}
	pthread_attr_destroy(&attr);
	pin_self(n < ncpus ? cpu_list[0] : -1);

	for (unsigned i = 0; i < started; i++) {
		uint32_t r;

		while ((r = atomic_load_explicit(&w->v[i].ready, memory_order_acquire)) == 0)
			sched_yield();
		if (r != 1)
			err = -EINVAL;
	}
	if (err) {
		/* Let the registered ones run into the quit. */
		w->n = started;
		atomic_store_explicit(&w->go, 1, memory_order_release);
		impl->quit(w);
		for (unsigned i = 0; i < started; i++)
			pthread_join(w->v[i].thread, NULL);
		impl->fini(w);
		free(w->v);
		pin_self(-1);
		return err;
	}

	if (impl->created_stopped)
		impl->start(w);
	gen = arm(w);
	atomic_store_explicit(&w->go, 1, memory_order_release);
	if (!wait_entered(w, gen)) {
		world_down(w);
		return -ETIMEDOUT;
	}
	return 0;
}

static void world_down(struct world *w)
{
	atomic_store_explicit(&w->idle, 0, memory_order_seq_cst);
	rsb_futex_wake(&w->idle, INT_MAX);
	w->impl->quit(w);
	for (unsigned i = 0; i < w->n; i++)
		pthread_join(w->v[i].thread, NULL);
	w->impl->fini(w);
	free(w->v);
	pin_self(-1);
}

/* ---------------------------------------------------------------------------
 * Samples
 */

struct samples {
	uint64_t *v;
	size_t n, cap;
	uint64_t sum;
};

static int samples_init(struct samples *s, uint64_t max_iter)
{
	s->cap = max_iter < MAX_SAMPLES ? (size_t)max_iter : MAX_SAMPLES;
	if (s->cap == 0)
		s->cap = 1;
	s->n = 0;
	s->sum = 0;
	s->v = malloc(s->cap * sizeof(*s->v));
	return s->v ? 0 : -ENOMEM;
}

static void samples_add(struct samples *s, uint64_t ns)
{
	if (s->n < s->cap)
		s->v[s->n++] = ns;
	s->sum += ns;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of the sorted samples. */
static double percentile(const struct samples *s, unsigned p)
{
	size_t rank;

	if (s->n == 0)
		return 0;
	rank = (s->n * p + 99) / 100;
	if (rank == 0)
		rank = 1;
	return (double)s->v[rank - 1];
}

/* Sorts the samples and reports p50_ns and p99_ns. */
static void samples_report(struct rsb_state *st, struct samples *s)
{
	qsort(s->v, s->n, sizeof(*s->v), cmp_u64);
	rsb_counter(st, "p50_ns", percentile(s, 50));
	rsb_counter(st, "p99_ns", percentile(s, 99));
}

/* ---------------------------------------------------------------------------
 * Benchmarks
 */

enum kind { K_STOP, K_START, K_PAUSE_SHORT, K_LOCK_UNLOCK, K_STORM };

#define MAX_REFS 2

static const char *const kind_names[] = {
	[K_STOP] = "stop",
	[K_START] = "start",
	[K_PAUSE_SHORT] = "pause_short",
	[K_LOCK_UNLOCK] = "lock_unlock",
	[K_STORM] = "storm",
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
	if (!all_out(w))
		return "a vCPU is inside a guest slice after the stop returned";
	*slices = slices_sum(w);
	return NULL;
}

static const char *check_still_stopped(struct world *w, uint64_t slices)
{
	if (slices_sum(w) != slices)
		return "a guest slice completed while the VM was stopped";
	return NULL;
}

static const char *restart(struct world *w, void (*start)(struct world *))
{
	uint32_t gen = arm(w);

	start(w);
	return wait_entered(w, gen) ? NULL : "vCPUs did not run again within 10 s";
}

/* One latency sample; returns an error message or NULL.  *call_ns: how long
 * the start call itself took (start only). */
static const char *one_sample(enum kind kind, struct world *w, uint64_t *ns,
			      uint64_t *call_ns)
{
	const struct impl *impl = w->impl;
	const char *err;
	uint64_t t0, t1, t2, t3, s;
	uint32_t gen;

	switch (kind) {
	case K_STOP:
		t0 = rsb_now_ns();
		impl->stop(w);
		t1 = rsb_now_ns();
		*ns = t1 - t0;
		if ((err = check_stopped(w, &s)) || (err = check_still_stopped(w, s)))
			return err;
		return restart(w, impl->start);

	case K_START:
		impl->stop(w);
		if ((err = check_stopped(w, &s)))
			return err;
		if (!wait_parked(w))
			return "stopped vCPUs did not park within 10 s";
		if ((err = check_still_stopped(w, s)))
			return err;
		gen = arm(w);
		t0 = rsb_now_ns();
		impl->start(w);
		t2 = rsb_now_ns();
		t1 = wait_entered(w, gen);
		if (!t1)
			return "vCPUs did not run again within 10 s";
		*ns = t1 > t0 ? t1 - t0 : 0;
		*call_ns = t2 - t0;
		return NULL;

	case K_PAUSE_SHORT:
		t0 = rsb_now_ns();
		impl->stop(w);
		gen = arm(w);
		impl->start(w);
		t1 = wait_entered(w, gen);
		if (!t1)
			return "vCPUs did not run again within 10 s";
		*ns = t1 > t0 ? t1 - t0 : 0;
		return NULL;

	case K_LOCK_UNLOCK:
		t0 = rsb_now_ns();
		impl->lock(w);
		t1 = rsb_now_ns();
		err = check_stopped(w, &s);
		gen = arm(w);
		t2 = rsb_now_ns();
		impl->unlock(w);
		t3 = rsb_now_ns();
		*ns = (t1 - t0) + (t3 - t2);
		if (err)
			return err;
		return wait_entered(w, gen) ? NULL : "vCPUs did not run again within 10 s";

	case K_STORM:
		break;
	}
	return "unknown benchmark";
}

static void get_stats(struct world *w, uint64_t *parks, uint64_t *wakes)
{
	*parks = *wakes = 0;
	if (w->impl->stats)
		w->impl->stats(w, parks, wakes);
}

/*
 * Paired runs: the world not being measured is kept stopped and quiet (its
 * vCPUs asleep), so the two never compete for the CPUs.
 */
static void go_idle(struct world *w)
{
	w->impl->stop(w);
	atomic_store_explicit(&w->idle, 1, memory_order_seq_cst);
}

static const char *wake_up(struct world *w)
{
	uint32_t gen;

	atomic_store_explicit(&w->idle, 0, memory_order_seq_cst);
	rsb_futex_wake(&w->idle, INT_MAX);
	gen = arm(w);
	w->impl->start(w);
	return wait_entered(w, gen) ? NULL : "vCPUs did not run again within 10 s";
}

static void bm_latency(struct rsb_state *st, void *arg)
{
	const struct bm *b = arg;
	struct samples smp = { 0 }, calls = { 0 }, refs[MAX_REFS] = { { 0 } };
	uint64_t parks0, wakes0, parks1, wakes1, parks = 0, wakes = 0, iters = 0;
	struct world w, rw[MAX_REFS];
	uint64_t max_iter = rsb_max_iterations(st);
	unsigned nref = 0, up = 0;
	bool w_up = false;
	int err = 0;

	while (nref < MAX_REFS && b->ref[nref])
		nref++;
	if (samples_init(&smp, max_iter) ||
	    samples_init(&calls, b->kind == K_START ? max_iter : 1))
		err = -ENOMEM;
	for (unsigned r = 0; r < nref; r++)
		if (samples_init(&refs[r], max_iter))
			err = -ENOMEM;
	if (!err) {
		err = world_up(&w, b->impl, b->n);
		w_up = !err;
	}
	/* The references wait stopped and asleep while the others run. */
	for (; !err && up < nref; up++) {
		err = world_up(&rw[up], b->ref[up], b->n);
		if (err)
			break;
		go_idle(&rw[up]);
	}
	if (err) {
		for (unsigned r = 0; r < up; r++)
			world_down(&rw[r]);
		if (w_up)
			world_down(&w);
		rsb_skip_with_error(st, err == -ENOMEM ? "out of memory" :
				    err == -ETIMEDOUT ? "vCPUs did not start" :
				    "cannot set up the vCPUs");
		goto out;
	}
	while (rsb_keep_running(st)) {
		uint64_t ns = 0, call_ns = 0, rns[MAX_REFS] = { 0 };
		const char *msg;

		get_stats(&w, &parks0, &wakes0);
		msg = one_sample(b->kind, &w, &ns, &call_ns);
		get_stats(&w, &parks1, &wakes1);
		parks += parks1 - parks0;
		wakes += wakes1 - wakes0;

		rsb_set_iteration_time(st, (double)ns * 1e-9);
		for (unsigned r = 0; r < nref && !msg; r++) {
			uint64_t unused;

			go_idle(&w);
			msg = wake_up(&rw[r]);
			if (!msg)
				msg = one_sample(b->kind, &rw[r], &rns[r], &unused);
			if (!msg) {
				go_idle(&rw[r]);
				msg = wake_up(&w);
			}
		}
		if (msg) {
			rsb_skip_with_error(st, msg);
			break;
		}
		samples_add(&smp, ns);
		if (b->kind == K_START)
			samples_add(&calls, call_ns);
		for (unsigned r = 0; r < nref; r++)
			samples_add(&refs[r], rns[r]);
		iters++;
	}
	world_down(&w);
	for (unsigned r = 0; r < nref; r++)
		world_down(&rw[r]);
	samples_report(st, &smp);
	if (b->kind == K_START) {
		qsort(calls.v, calls.n, sizeof(*calls.v), cmp_u64);
		rsb_counter(st, "call_p50_ns", percentile(&calls, 50));
	}
	for (unsigned r = 0; r < nref; r++) {
		char name[64];
		double p50 = percentile(&smp, 50), r50;

		qsort(refs[r].v, refs[r].n, sizeof(*refs[r].v), cmp_u64);
		r50 = percentile(&refs[r], 50);
		snprintf(name, sizeof(name), "%s_p50_ns", b->ref[r]->name);
		rsb_counter(st, name, r50);
		snprintf(name, sizeof(name), "vs_%s", b->ref[r]->name);
		rsb_counter(st, name, r50 > 0 ? p50 / r50 : 0);
	}
	/* The library's own counters per sample: did vCPUs sleep, how many
	 * wakes (the sample's untimed set-up included, the pairing not). */
	if (b->impl->stats && iters) {
		rsb_counter(st, "parks_per_op", (double)parks / (double)iters);
		rsb_counter(st, "wakes_per_op", (double)wakes / (double)iters);
	}
out:
	free(smp.v);
	free(calls.v);
	for (unsigned r = 0; r < nref; r++)
		free(refs[r].v);
}

static void bm_storm(struct rsb_state *st, void *arg)
{
	const struct bm *b = arg;
	const struct timespec free_window = { 0, STORM_FREE_NS };
	uint64_t tot_slices = 0, tot_ns = 0, tot_cycles = 0, f0, f1, ft0, ft1;
	struct world w;

	if (world_up(&w, b->impl, b->n)) {
		rsb_skip_with_error(st, "cannot set up the vCPUs");
		return;
	}
	/* The same vCPUs left alone for a moment: the rate to compare with. */
	f0 = slices_sum(&w);
	ft0 = rsb_now_ns();
	nanosleep(&free_window, NULL);
	f1 = slices_sum(&w);
	ft1 = rsb_now_ns();
	while (rsb_keep_running(st)) {
		uint64_t s0 = slices_sum(&w), t0 = rsb_now_ns(), t1;

		do {
			b->impl->stop(&w);
			b->impl->start(&w);
			tot_cycles++;
			t1 = rsb_now_ns();
		} while (t1 - t0 < STORM_WINDOW_NS);
		tot_slices += slices_sum(&w) - s0;
		tot_ns += t1 - t0;
		rsb_set_iteration_time(st, (double)(t1 - t0) * 1e-9);
	}
	world_down(&w);
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
	&impl_runstate, &impl_qemu_condvar, &impl_ck_brlock, &impl_urcu_qsbr,
	&impl_spin_floor, &impl_plain_load,
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

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/*
 * The paired references of runstate's rows: the floors and the model its
 * goals are set against.  Only where every thread has a CPU of its own:
 * oversubscribed, a sample is a matter of scheduler ticks, and pairing would
 * only make the sweep longer.
 */
static void refs_for(enum kind k, const struct impl *impl, unsigned nvcpus,
		     const struct impl **ref)
{
	unsigned n = 0;

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
	struct sigaction sa;
	int out = 1;

	if (sched_getaffinity(0, sizeof(all_cpus), &all_cpus) != 0) {
		perror("sched_getaffinity");
		return 1;
	}
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &all_cpus))
			cpu_list[ncpus++] = (int)c;

	/* Our own flag, removed before Google Benchmark sees argv. */
	for (int i = 1; i < argc; i++) {
		if (!strncmp(argv[i], "--vcpus=", 8)) {
			nsweep = parse_sweep(argv[i] + 8, sweep, ARRAY_SIZE(sweep));
			if (!nsweep) {
				fprintf(stderr, "runstate-bench: bad --vcpus list: %s\n", argv[i] + 8);
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
			printf("runstate-bench [--vcpus=N,N,...] [--kvm-vcpus=N,...] [Google Benchmark flags]\n"
			       "  --vcpus      vCPU counts to sweep (default from the %u CPUs here)\n"
			       "  --kvm-vcpus  vCPU counts of the KVM benchmarks (default 1..CPUs)\n\n",
			       ncpus);
		argv[out++] = argv[i];
	}
	argc = out;
	argv[argc] = NULL;
	if (!nsweep)
		nsweep = default_sweep(sweep);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_kick;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(RSB_KICK_SIGNAL, &sa, NULL);

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

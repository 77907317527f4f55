/* SPDX-License-Identifier: MIT */
/*
 * runstate-bench: the world harness.  A world is one benchmark's set of
 * simulated vCPU threads running one implementation (bench.h): each runs
 * short busy guest slices and asks the implementation between them whether
 * it may go on.  The benchmarks (bench.c) stop and start a world and read
 * the stamps its vCPUs leave; in an exclusive world, vCPU 0 also takes
 * the sections the benchmark thread asks for (rsb_exclusive()).
 *
 * With fewer vCPUs than CPUs, each vCPU is pinned to its own CPU and the
 * benchmark (management) thread to the first one; with as many or more,
 * nothing is pinned (oversubscribed: the threads that spin yield now and
 * then, see rsb_spin()), except in an exclusive world with as many vCPUs as
 * CPUs: its benchmark thread sleeps through each sample, so the vCPUs are
 * pinned one per CPU and it beside vCPU 0, which hands it its CPU.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

/* About 100 ns of dependent multiplies: a short guest slice, on the order of
 * a few translated blocks. */
#define SLICE_ROUNDS 100
/* Give up waiting for vCPUs after this long (a hang is a failure). */
#define WAIT_LIMIT_NS 10000000000ull

/* ---------------------------------------------------------------------------
 * Kicks and waiting
 */

/* Set by the kick signal's handler on the vCPU thread it interrupts; a sig
 * implementation's guest loop runs until it is set. */
static _Thread_local volatile sig_atomic_t tls_kicked;

static void on_kick(int sig)
{
	(void)sig;
	tls_kicked = 1;
}

/* Once, before any world: the kick signal's handler. */
void rsb_world_init(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_kick;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(RSB_KICK_SIGNAL, &sa, NULL);
}

void rsb_kick_signal(struct vcpu *v)
{
	pthread_kill(v->thread, RSB_KICK_SIGNAL);
}

void rsb_spin(const struct world *w, unsigned *i)
{
	rsu_cpu_relax();
	if ((++*i & 63) == 0 && w->oversub)
		sched_yield();
}

bool rsb_idle_wait(struct world *w)
{
	/* Sleeps only while idle is still 1: rsb_wake_up() clears it before
	 * its FUTEX_WAKE, so the wake cannot slip in between. */
	if (!atomic_load_explicit(&w->idle, memory_order_seq_cst))
		return false;
	rsu_futex_wait((uint32_t *)&w->idle, 1, -1);
	return true;
}


/* ---------------------------------------------------------------------------
 * vCPU threads
 */

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
	 * with the acquire load in rsb_wait_entered(). */
	uint32_t gen = atomic_load_explicit(&v->w->arm_gen, memory_order_relaxed);
	/* On arm_gen's line, so answering probes costs no extra miss: a
	 * relaxed echo, timed by rsb_probe() (no data rides on it). */
	uint32_t probe = atomic_load_explicit(&v->w->probe_req, memory_order_relaxed);

	if (__builtin_expect(probe != atomic_load_explicit(&v->probe_ack, memory_order_relaxed), 0))
		atomic_store_explicit(&v->probe_ack, probe, memory_order_relaxed);

	if (__builtin_expect(gen != atomic_load_explicit(&v->seen_gen, memory_order_relaxed), 0)) {
		atomic_store_explicit(&v->entry_ns, rsu_now_ns(), memory_order_relaxed);
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

/*
 * Exclusive worlds: vCPU 0 takes one section; returns an error message or
 * NULL, and *ns.  Timed: the begin and the end, vCPU 0's re-entry included
 * (excl_begin returns with vCPU 0 ready to run its slice); not timed: the
 * checks and the exclusive slice between them.
 */
static const char *excl_section(struct vcpu *v, uint64_t *ns)
{
	struct world *w = v->w;
	const struct impl *impl = w->impl;
	const char *err = NULL;
	uint64_t t0, t1, t2, t3, s0 = 0, s1 = 0;
	int r;

	t0 = rsu_now_ns();
	r = impl->excl_begin(v);
	t1 = rsu_now_ns();
	if (r) {
		err = "the section did not begin";
		t2 = t3 = t1;
		goto out;
	}
	/* Every other vCPU is out: none inside a slice now (acquire: pairs
	 * with slice()'s release store, which the implementation's own
	 * acknowledgement orders before the begin's return), and none
	 * completes one until the end. */
	for (unsigned i = 1; i < w->n; i++) {
		if (atomic_load_explicit(&w->v[i].in_slice, memory_order_acquire))
			err = "a vCPU is inside a guest slice after the section began";
		s0 += atomic_load_explicit(&w->v[i].slices, memory_order_relaxed);
	}
	slice(v);
	for (unsigned i = 1; i < w->n; i++)
		s1 += atomic_load_explicit(&w->v[i].slices, memory_order_relaxed);
	if (s1 != s0 && !err)
		err = "a guest slice completed during the section";
	t2 = rsu_now_ns();
	r = impl->excl_end(v);
	t3 = rsu_now_ns();
	if (r && !err)
		err = "the section did not end";
out:
	*ns = (t1 - t0) + (t3 - t2);
	return err;
}

/*
 * Before a section vCPU 0 waits, running its own slices, until every other
 * vCPU has completed EXCL_WARM_SLICES slices since vCPU 0 was ready to take
 * it.  Then all of them are busy again: back from the previous section (a
 * vCPU still asleep or waiting there would make the next section cheap),
 * and none kept from its CPU by the management thread on its way to sleep
 * (with as many vCPUs as CPUs that thread, woken, takes a vCPU's CPU for a
 * few microseconds, and a section begun meanwhile waited for it: runstate's
 * other vCPU reacted after 1 to 10 us instead of a fraction of one).
 *
 * It looks at their counters only every EXCL_CHECK_EVERY slices of its own,
 * and then runs EXCL_QUIET_SLICES more without looking: each look pulls the
 * lines a vCPU writes in every slice, and a QEMU vCPU's fence in
 * cpu_exec_end() then waits for them to come back.  Looking between every
 * slice, the model's other vCPU spent about half its time outside
 * cpu_exec(), and half the sections found nobody to wait for.
 *
 * A vCPU may wait several time slices for its CPU (oversubscribed, or a
 * busy machine: with a 2 ms limit, the QEMU model's other vCPU, woken by
 * one section's end, often had not run yet when the next one began, and
 * that one then cost 0.4 us instead of 10 or more): give up only after
 * EXCL_WARM_LIMIT_NS.
 */
#define EXCL_WARM_SLICES 8
#define EXCL_CHECK_EVERY 16
#define EXCL_QUIET_SLICES 32
#define EXCL_WARM_LIMIT_NS 100000000ull

static bool others_warm(const struct world *w, const uint64_t *base, uint64_t since)
{
	for (unsigned i = 1; i < w->n; i++)
		if (atomic_load_explicit(&w->v[i].slices, memory_order_relaxed) - base[i] <
		    EXCL_WARM_SLICES)
			return rsu_now_ns() - since > EXCL_WARM_LIMIT_NS;
	return true;
}

/*
 * vCPU 0 answered request req: let the benchmark thread, which may share
 * its CPU (rsb_world_up()), run until it has taken the answer.  Waiting
 * for a busy vCPU's time slice, each sample took 2 to 4 ms.  Bounded, in
 * case the benchmark thread gave up waiting.
 */
static void hand_over(struct world *w, uint32_t req)
{
	uint64_t t0 = rsu_now_ns();

	for (unsigned i = 0;
	     atomic_load_explicit(&w->excl_taken, memory_order_relaxed) != req; i++) {
		sched_yield();
		if ((i & 63) == 63 && rsu_now_ns() - t0 > WAIT_LIMIT_NS)
			break;
	}
}

/* vCPU 0's way through a request: two sections, each after its warm-up. */
struct excl_owner {
	uint32_t seen;                  /* the last request answered */
	enum { EO_IDLE, EO_WARMING, EO_QUIET } phase;
	unsigned count;                 /* own slices in this phase */
	unsigned done;                  /* sections of this request taken */
	uint64_t since;                 /* the warm-up's start */
	uint64_t ns[2];
	const char *err;
};

/*
 * Between two of vCPU 0's slices: false to run the next slice (nothing
 * asked, or warming up), true after a section.  vCPU 0 answers once, after
 * the second section, so that the benchmark thread wakes once per sample.
 */
static bool excl_step(struct vcpu *v, struct excl_owner *o)
{
	struct world *w = v->w;
	/* Acquire: pairs with rsb_exclusive()'s release store. */
	uint32_t req = atomic_load_explicit(&w->excl_req, memory_order_acquire);
	const char *e;

	if (__builtin_expect(req == o->seen, 1))
		return false;
	switch (o->phase) {
	case EO_IDLE:
		for (unsigned i = 1; i < w->n; i++)
			w->excl_base[i] = atomic_load_explicit(&w->v[i].slices,
							       memory_order_relaxed);
		o->since = rsu_now_ns();
		o->phase = EO_WARMING;
		o->count = 0;
		return false;
	case EO_WARMING:
		if (++o->count % EXCL_CHECK_EVERY || !others_warm(w, w->excl_base, o->since))
			return false;
		o->phase = EO_QUIET;
		o->count = 0;
		return false;
	case EO_QUIET:
		if (++o->count < EXCL_QUIET_SLICES)
			return false;
		break;
	}
	o->phase = EO_IDLE;
	e = excl_section(v, &o->ns[o->done]);
	if (!o->err)
		o->err = e;
	if (++o->done < 2)
		return true;
	w->excl_first_ns = o->ns[0];
	w->excl_ns = o->ns[1];
	w->excl_err = o->err;
	o->err = NULL;
	o->done = 0;
	o->seen = req;
	/* Release: pairs with rsb_exclusive()'s acquire load. */
	atomic_store_explicit(&w->excl_done, req, memory_order_release);
	rsu_futex_wake((uint32_t *)&w->excl_done, 1);
	hand_over(w, req);
	return true;
}

/* The loop of an exclusive world's vCPUs (bench.h). */
static void excl_loop(struct vcpu *v)
{
	const struct impl *impl = v->w->impl;
	struct excl_owner o = { .phase = EO_IDLE };
	bool owner = v->idx == 0;

	while (impl->enter(v)) {
		while (impl->may_run(v)) {
			if (owner && excl_step(v, &o))
				continue;
			if (impl->exec_start)
				impl->exec_start(v);
			slice(v);
			if (impl->exec_end)
				impl->exec_end(v);
		}
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct world *w = v->w;
	const struct impl *impl = w->impl;
	int err;

	v->tid = (pid_t)syscall(SYS_gettid);
	if (v->cpu < 0)
		rsu_unpin_self();
	err = impl->vcpu_init(v);
	atomic_store_explicit(&v->ready, err ? 2 : 1, memory_order_release);
	if (err)
		return NULL;
	while (!atomic_load_explicit(&w->go, memory_order_acquire))
		sched_yield();

	if (w->excl) {
		excl_loop(v);
	} else if (impl->sig) {
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

/*
 * Arm the world: every vCPU stamps the start of its next slice.  Called only
 * when no vCPU may begin a slice (after a stop or lock returned, before the
 * start), so the stamp is that of the first slice after the start, whether or
 * not the vCPU went through enter() (a brlock or QSBR vCPU may have been
 * between two slices during the whole stop).  One store, so it costs nothing
 * inside a timed region; the start that follows publishes it.
 */
uint32_t rsb_arm(struct world *w)
{
	uint32_t gen = atomic_load_explicit(&w->arm_gen, memory_order_relaxed) + 1;

	atomic_store_explicit(&w->arm_gen, gen, memory_order_release);
	return gen;
}

/*
 * Wait until every vCPU has begun a slice since rsb_arm() returned gen; returns
 * the latest stamp, or 0 after WAIT_LIMIT_NS.  The stamps are the vCPUs'
 * own, so how soon this thread notices does not matter: oversubscribed, it
 * naps rather than spins, leaving the CPUs to the vCPUs.
 */
uint64_t rsb_wait_entered(struct world *w, uint32_t gen)
{
	const struct timespec nap = { 0, 20000 };
	uint64_t last = 0, t0 = rsu_now_ns();
	unsigned spins = 0;

	for (unsigned i = 0; i < w->n; i++) {
		struct vcpu *v = &w->v[i];
		uint64_t e;

		while (atomic_load_explicit(&v->seen_gen, memory_order_acquire) != gen) {
			if (w->oversub && ++spins > 64)
				nanosleep(&nap, NULL);
			else
				rsu_cpu_relax();
			if ((++spins & 1023) == 0 && rsu_now_ns() - t0 > WAIT_LIMIT_NS)
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

bool rsb_wait_parked(struct world *w)
{
	const struct timespec nap = { 0, 20000 };
	uint64_t t0 = rsu_now_ns();

	if (!w->impl->parks)
		return true;
	for (;;) {
		if (all_sleeping(w)) {
			uint64_t t1 = rsu_now_ns();

			while (rsu_now_ns() - t1 < PARKED_NS)
				if (w->oversub)
					sched_yield();
				else
					rsu_cpu_relax();
			if (all_sleeping(w))
				return true;
		}
		if (rsu_now_ns() - t0 > WAIT_LIMIT_NS)
			return false;
		if (w->oversub)
			nanosleep(&nap, NULL);
	}
}

uint64_t rsb_slices_sum(const struct world *w)
{
	uint64_t s = 0;

	for (unsigned i = 0; i < w->n; i++)
		s += atomic_load_explicit(&w->v[i].slices, memory_order_relaxed);
	return s;
}

const char *rsb_exclusive(struct world *w, uint64_t *first_ns, uint64_t *ns)
{
	uint32_t req = atomic_load_explicit(&w->excl_req, memory_order_relaxed) + 1, d;
	uint64_t t0 = rsu_now_ns();

	/* Release: pairs with excl_step()'s acquire load. */
	atomic_store_explicit(&w->excl_req, req, memory_order_release);
	/* Asleep meanwhile: with as many vCPUs as CPUs, this thread would
	 * otherwise take a CPU from one of them.  Acquire: pairs with
	 * excl_step()'s release store. */
	while ((d = atomic_load_explicit(&w->excl_done, memory_order_acquire)) != req) {
		if (rsu_now_ns() - t0 > WAIT_LIMIT_NS)
			return "vCPU 0 did not take the sections within 10 s";
		rsu_futex_wait((uint32_t *)&w->excl_done, d, 100000000);
	}
	/* vCPU 0 yields until this is seen (hand_over()). */
	atomic_store_explicit(&w->excl_taken, req, memory_order_relaxed);
	*first_ns = w->excl_first_ns;
	*ns = w->excl_ns;
	return w->excl_err;
}

/*
 * The machine's mode, probed just before a sample.  Cross-CPU latencies on
 * the 2-CPU machine of docs/performance.md are bimodal (presumably the host
 * placing the VM's two vCPUs on nearby or distant cores), and a stop of
 * the spin floor is a handful of cache-line transfers: each sample must
 * say which mode it saw.  The probe is the round trip a stop is made of,
 * one store read by vCPU 0 between two slices and one store read back,
 * timed here.  A round trip may wait for the rest of a slice (up to about
 * 100 ns); the shortest of RSB_PROBE_ROUNDS does not, or hardly.
 *
 * The probe leaves vCPU 0's hot line shared; it takes it back at its next
 * stores, well before the sample that follows (rsb_probe() spins another
 * microsecond).
 */
#define PROBE_LIMIT_NS 1000000ull
#define PROBE_SETTLE_NS 1000ull

uint64_t rsb_probe(struct world *w)
{
	struct vcpu *v = &w->v[0];
	uint64_t best = UINT64_MAX, t0, t1;

	for (unsigned r = 0; r < RSB_PROBE_ROUNDS; r++) {
		uint32_t req = atomic_load_explicit(&w->probe_req, memory_order_relaxed) + 1;
		unsigned k = 0;

		t0 = rsu_now_ns();
		atomic_store_explicit(&w->probe_req, req, memory_order_relaxed);
		/* The clock only now and then: each read is ~20 ns, the
		 * resolution this wants. */
		while (atomic_load_explicit(&v->probe_ack, memory_order_relaxed) != req) {
			rsu_cpu_relax();
			if ((++k & 1023) == 0 && rsu_now_ns() - t0 > PROBE_LIMIT_NS)
				return 0;
		}
		t1 = rsu_now_ns();
		if (t1 - t0 < best)
			best = t1 - t0;
	}
	t0 = rsu_now_ns();
	while (rsu_now_ns() - t0 < PROBE_SETTLE_NS)
		rsu_cpu_relax();
	return best;
}

/* After a stop returned: no vCPU is inside a slice. */
bool rsb_all_out(const struct world *w)
{
	for (unsigned i = 0; i < w->n; i++)
		if (atomic_load_explicit(&w->v[i].in_slice, memory_order_acquire))
			return false;
	return true;
}

int rsb_world_up(struct world *w, const struct impl *impl, unsigned n, bool excl)
{
	pthread_attr_t attr;
	unsigned started = 0;
	uint32_t gen;
	bool pin_mgmt;
	int err;

	memset(w, 0, sizeof(*w));
	w->impl = impl;
	w->n = n;
	w->excl = excl;
	if (excl && (!impl->excl_begin || !impl->excl_end))
		return -EINVAL;
	w->oversub = n >= rsu_ncpus();
	w->v = aligned_alloc(_Alignof(struct vcpu), sizeof(struct vcpu) * n);
	if (!w->v)
		return -ENOMEM;
	if (excl && !(w->excl_base = calloc(n, sizeof(*w->excl_base)))) {
		free(w->v);
		return -ENOMEM;
	}
	memset(w->v, 0, sizeof(struct vcpu) * n);
	/*
	 * Pin only when every thread, the management one included, gets a
	 * CPU of its own: a vCPU pinned beside the management thread would
	 * make each wake-up of the latter wait for a scheduler tick.
	 *
	 * An exclusive world with as many vCPUs as CPUs is pinned too, one
	 * vCPU per CPU, and the management thread beside vCPU 0: it sleeps
	 * through each sample, and vCPU 0 hands it its CPU when it answers
	 * (hand_over()).  Unpinned, the scheduler now and then put vCPU 0 and
	 * the other vCPU on one CPU, and the section waited for a time slice
	 * (2 vCPUs on 2 CPUs: p50 32 us against 5.6 us pinned, in one
	 * sitting); pinned with the management thread elsewhere, each of its
	 * wake-ups waited for a busy vCPU's time slice (2 to 4 ms).
	 */
	pin_mgmt = n < rsu_ncpus() || (excl && n == rsu_ncpus());
	for (unsigned i = 0; i < n; i++) {
		w->v[i].idx = i;
		w->v[i].w = w;
		if (!pin_mgmt)
			w->v[i].cpu = -1;
		else if (n < rsu_ncpus())
			w->v[i].cpu = rsu_cpu_id(i + 1);
		else
			w->v[i].cpu = rsu_cpu_id(i);
	}
	err = impl->init(w);
	if (err) {
		free(w->excl_base);
		free(w->v);
		return err;
	}

	pthread_attr_init(&attr);
	for (unsigned i = 0; i < n; i++) {
		struct vcpu *v = &w->v[i];
		cpu_set_t set;

		/* Unpinned ones unpin themselves (vcpu_thread()). */
		if (v->cpu >= 0) {
			CPU_ZERO(&set);
			CPU_SET(v->cpu, &set);
			pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
		}
		err = -pthread_create(&v->thread, &attr, vcpu_thread, v);
		if (err)
			break;
		started++;
	}
	pthread_attr_destroy(&attr);
	if (pin_mgmt)
		rsu_pin_self(0);
	else
		rsu_unpin_self();

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
		free(w->excl_base);
		free(w->v);
		rsu_unpin_self();
		return err;
	}

	if (impl->created_stopped)
		impl->start(w);
	gen = rsb_arm(w);
	atomic_store_explicit(&w->go, 1, memory_order_release);
	if (!rsb_wait_entered(w, gen)) {
		rsb_world_down(w);
		return -ETIMEDOUT;
	}
	return 0;
}

void rsb_world_down(struct world *w)
{
	atomic_store_explicit(&w->idle, 0, memory_order_seq_cst);
	rsu_futex_wake((uint32_t *)&w->idle, INT_MAX);
	w->impl->quit(w);
	for (unsigned i = 0; i < w->n; i++)
		pthread_join(w->v[i].thread, NULL);
	w->impl->fini(w);
	free(w->excl_base);
	free(w->v);
	rsu_unpin_self();
}


/*
 * Paired runs: the world not being measured is kept stopped and quiet (its
 * vCPUs asleep), so the two never compete for the CPUs.
 */
void rsb_go_idle(struct world *w)
{
	w->impl->stop(w);
	atomic_store_explicit(&w->idle, 1, memory_order_seq_cst);
}

const char *rsb_wake_up(struct world *w)
{
	uint32_t gen;

	atomic_store_explicit(&w->idle, 0, memory_order_seq_cst);
	rsu_futex_wake((uint32_t *)&w->idle, INT_MAX);
	/* An exclusive world's next request waits for its vCPUs itself
	 * (others_warm()), asleep: polling here, this thread would keep a
	 * CPU from them. */
	if (w->excl) {
		w->impl->start(w);
		return NULL;
	}
	gen = rsb_arm(w);
	w->impl->start(w);
	return rsb_wait_entered(w, gen) ? NULL : "vCPUs did not run again within 10 s";
}


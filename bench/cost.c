/* SPDX-License-Identifier: MIT */
/*
 * The cost world (cost.h): N vCPU threads against an instrumented library,
 * one stop and one start at a time, with the work counters read around each
 * call.  Everything is arranged so that the counters read after a call hold
 * that call's work and nothing else: the busy vCPUs acknowledge the stop and
 * then wait at a gate, outside the library, until the next phase; the rest
 * wait in their own halt; the totals of a start are read once every woken
 * vCPU has come back (a woken vCPU passes the wake on before it returns).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cost.h"
#include "rsutil.h"

#define WAIT_LIMIT_NS 20000000000LL   /* a vCPU that is not back by then is lost */

struct vc {
	rs_vcpu v;                 /* first: rs_vcpu is 64-byte aligned */
	struct rsb_cost_world *w;
	unsigned idx;
};

struct rsb_cost_world {
	rs_runstate *rs;
	unsigned n, k;
	struct vc *vc;
	pthread_t *th;
	unsigned started;          /* threads created */
	/* Futex words the threads wait on, outside the library. */
	_Atomic uint32_t halt_gen;   /* the rest: bumped to make them enter */
	_Atomic uint32_t gate_gen;   /* the busy: bumped to let them re-enter */
	_Atomic uint32_t quit;
	/* Progress, polled by the driver. */
	_Atomic uint32_t registered;
	_Atomic uint32_t at_gate;    /* busy vCPUs out and waiting at the gate */
	_Atomic uint32_t resumed;    /* vCPUs back from a start */
	_Atomic uint64_t slices;
};

const char *rsb_cost_start_name(enum rsb_cost_start how)
{
	static const char *const names[] = { "busy-parked", "all-parked", "busy-out" };

	return how < RSB_START_KINDS ? names[how] : "?";
}

static void kick(rs_vcpu *v, void *opaque)
{
	/* A flag kick: the busy loop polls rs_may_run() between slices. */
	(void)v;
	(void)opaque;
}

/* About 100 ns of dependent multiplies, as bench/world.c's guest slice. */
static uint64_t slice(uint64_t x)
{
	for (int i = 0; i < 40; i++)
		x = x * 6364136223846793005u + 1442695040888963407u;
	return x;
}

static void wait_change(_Atomic uint32_t *gen, uint32_t seen)
{
	while (atomic_load_explicit(gen, memory_order_acquire) == seen)
		rsu_futex_wait((uint32_t *)gen, seen, -1);
}

static void bump(_Atomic uint32_t *gen)
{
	atomic_fetch_add_explicit(gen, 1, memory_order_release);
	rsu_futex_wake((uint32_t *)gen, 1 << 30);
}

static void *busy_thread(struct vc *c)
{
	struct rsb_cost_world *w = c->w;
	uint64_t x = c->idx;
	uint32_t gate = atomic_load_explicit(&w->gate_gen, memory_order_acquire);

	for (;;) {
		if (rs_vcpu_enter(&c->v) != 0)
			break;
		atomic_fetch_add_explicit(&w->resumed, 1, memory_order_release);
		do {
			x = slice(x);
			atomic_fetch_add_explicit(&w->slices, 1, memory_order_relaxed);
		} while (rs_may_run(w->rs) && !atomic_load_explicit(&w->quit, memory_order_relaxed));
		/* The acknowledgement, then out of the library until the
		 * driver's next phase. */
		rs_vcpu_quiesce(&c->v);
		atomic_fetch_add_explicit(&w->at_gate, 1, memory_order_release);
		wait_change(&w->gate_gen, gate);
		gate = atomic_load_explicit(&w->gate_gen, memory_order_acquire);
		if (atomic_load_explicit(&w->quit, memory_order_acquire))
			break;
	}
	return (void *)(uintptr_t)x;
}

static void *rest_thread(struct vc *c)
{
	struct rsb_cost_world *w = c->w;
	uint32_t h = atomic_load_explicit(&w->halt_gen, memory_order_acquire);

	for (;;) {
		/* Halted: registered, out, blocked outside the library. */
		wait_change(&w->halt_gen, h);
		h = atomic_load_explicit(&w->halt_gen, memory_order_acquire);
		if (atomic_load_explicit(&w->quit, memory_order_acquire))
			break;
		if (rs_vcpu_enter(&c->v) != 0)   /* parks: the VM is stopped */
			break;
		rs_vcpu_quiesce(&c->v);          /* nothing to run: halt again */
		atomic_fetch_add_explicit(&w->resumed, 1, memory_order_release);
	}
	return NULL;
}

static void *vcpu_main(void *arg)
{
	struct vc *c = arg;
	struct rsb_cost_world *w = c->w;
	void *r;

	if (rs_vcpu_register(w->rs, &c->v, kick, c) != 0) {
		fprintf(stderr, "cost: vCPU %u: rs_vcpu_register failed\n", c->idx);
		atomic_fetch_add_explicit(&w->registered, 1u << 20, memory_order_release);
		return NULL;
	}
	atomic_fetch_add_explicit(&w->registered, 1, memory_order_release);
	r = c->idx < w->k ? busy_thread(c) : rest_thread(c);
	rs_vcpu_unregister(&c->v);
	return r;
}

/* Wait until *ctr reaches want; -1 with a message after WAIT_LIMIT_NS. */
static int await(_Atomic uint32_t *ctr, uint32_t want, const char *what)
{
	uint64_t t0 = rsu_now_ns();

	while (atomic_load_explicit(ctr, memory_order_acquire) < want) {
		if (rsu_now_ns() - t0 > (uint64_t)WAIT_LIMIT_NS) {
			fprintf(stderr, "cost: %s: %u of %u after %lld s\n", what,
				atomic_load_explicit(ctr, memory_order_relaxed), want,
				WAIT_LIMIT_NS / 1000000000);
			return -1;
		}
		rsu_sleep_ns(20000);
	}
	return 0;
}

static uint64_t parks_now(rs_runstate *rs)
{
	struct rs_stats st = { .size = sizeof(st) };

	rs_get_stats(rs, &st);
	return st.parks;
}

void rsb_cost_world_free(struct rsb_cost_world *w)
{
	if (!w)
		return;
	if (w->rs) {
		/* Let everyone out: running VM, quit, open gate and halt. */
		atomic_store_explicit(&w->quit, 1, memory_order_release);
		rs_start(w->rs, 0);
		bump(&w->gate_gen);
		bump(&w->halt_gen);
		for (unsigned i = 0; i < w->started; i++)
			pthread_join(w->th[i], NULL);
		rs_destroy(w->rs);
	}
	free(w->vc);
	free(w->th);
	free(w);
}

struct rsb_cost_world *rsb_cost_world_new(unsigned n, unsigned k)
{
	struct rsb_cost_world *w = calloc(1, sizeof(*w));
	struct rs_config cfg = { .size = sizeof(cfg), .max_vcpus = 1024 };
	pthread_attr_t attr;

	if (!w || !n || !k || k > n || n > 1024) {
		fprintf(stderr, "cost: bad world: %u vCPUs, %u busy\n", n, k);
		free(w);
		return NULL;
	}
	w->n = n;
	w->k = k;
	w->vc = aligned_alloc(64, sizeof(*w->vc) * n);
	w->th = calloc(n, sizeof(*w->th));
	if (!w->vc || !w->th || rs_create(&cfg, &w->rs) != 0) {
		fprintf(stderr, "cost: out of memory\n");
		w->rs = NULL;
		rsb_cost_world_free(w);
		return NULL;
	}
	memset(w->vc, 0, sizeof(*w->vc) * n);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	/* One at a time, so that vCPU i takes slot i: the busy vCPUs are in
	 * slots 0..k-1, where a wake wave starts. */
	for (unsigned i = 0; i < n; i++) {
		w->vc[i].w = w;
		w->vc[i].idx = i;
		if (pthread_create(&w->th[i], &attr, vcpu_main, &w->vc[i]) != 0) {
			fprintf(stderr, "cost: cannot create vCPU thread %u of %u\n", i, n);
			break;
		}
		w->started++;
		if (await(&w->registered, i + 1, "registered vCPUs") ||
		    atomic_load_explicit(&w->registered, memory_order_acquire) != i + 1)
			break;
	}
	pthread_attr_destroy(&attr);
	if (w->started != n || atomic_load_explicit(&w->registered, memory_order_acquire) != n) {
		rsb_cost_world_free(w);
		return NULL;
	}
	/* Out of prelaunch: the busy vCPUs run. */
	rs_start(w->rs, 0);
	if (await(&w->resumed, k, "busy vCPUs running")) {
		rsb_cost_world_free(w);
		return NULL;
	}
	return w;
}

static int get(rs_runstate *rs, struct rs_cost *mine, struct rs_cost *all)
{
	if (mine)
		mine->size = sizeof(*mine);
	if (all)
		all->size = sizeof(*all);
	if (rs_cost_get(rs, mine, all) != 0) {
		fprintf(stderr, "cost: rs_cost_get failed\n");
		return -1;
	}
	return 0;
}

int rsb_cost_cycle(struct rsb_cost_world *w, enum rsb_cost_start how,
		   struct rsb_cost_sample *stop, struct rsb_cost_sample *start)
{
	unsigned rest = w->n - w->k, parked, woken;
	uint64_t t0, parks0, s0;
	int r;

	memset(stop, 0, sizeof(*stop));
	memset(start, 0, sizeof(*start));
	/* The busy vCPUs are in guest code: each has run a slice since we
	 * last looked (they were running already, this is to be sure). */
	s0 = atomic_load_explicit(&w->slices, memory_order_relaxed);
	while (atomic_load_explicit(&w->slices, memory_order_relaxed) < s0 + w->k)
		rsu_cpu_relax();

	/* The stop. */
	atomic_store_explicit(&w->at_gate, 0, memory_order_relaxed);
	rs_cost_reset(w->rs);
	t0 = rsu_now_ns();
	r = rs_stop(w->rs, RS_FOREVER);
	stop->ns = rsu_now_ns() - t0;
	if (r != 0 || get(w->rs, &stop->caller, NULL)) {
		fprintf(stderr, "cost: rs_stop: %d\n", r);
		return -1;
	}
	/* Its totals once the busy vCPUs are done acknowledging. */
	if (await(&w->at_gate, w->k, "busy vCPUs out after the stop") ||
	    get(w->rs, NULL, &stop->total))
		return -1;

	/* Place the vCPUs for the start. */
	parked = (how == RSB_START_BUSY_PARKED ? 0 : rest) + (how == RSB_START_BUSY_OUT ? 0 : w->k);
	woken = parked;
	atomic_store_explicit(&w->resumed, 0, memory_order_relaxed);
	parks0 = parks_now(w->rs);
	if (how != RSB_START_BUSY_PARKED)
		bump(&w->halt_gen);
	if (how != RSB_START_BUSY_OUT)
		bump(&w->gate_gen);
	/* rs_stats.parks counts a vCPU once its VS_PARK and RS_W_PARKED are
	 * set: from then on a wave must wake it. */
	t0 = rsu_now_ns();
	while (parks_now(w->rs) - parks0 < parked) {
		if (rsu_now_ns() - t0 > (uint64_t)WAIT_LIMIT_NS) {
			fprintf(stderr, "cost: %llu of %u vCPUs parked\n",
				(unsigned long long)(parks_now(w->rs) - parks0), parked);
			return -1;
		}
		rsu_sleep_ns(20000);
	}
	/* and asleep, as far as a short nap can tell. */
	rsu_sleep_ns(1000000);

	/* The start. */
	rs_cost_reset(w->rs);
	t0 = rsu_now_ns();
	r = rs_start(w->rs, 0);
	start->ns = rsu_now_ns() - t0;
	start->woken = woken;
	if (r != 0 || get(w->rs, &start->caller, NULL)) {
		fprintf(stderr, "cost: rs_start: %d\n", r);
		return -1;
	}
	if (await(&w->resumed, woken, "woken vCPUs back") || get(w->rs, NULL, &start->total))
		return -1;
	if (how == RSB_START_BUSY_OUT) {
		/* Now the busy vCPUs go back in, finding the VM running. */
		bump(&w->gate_gen);
		if (await(&w->resumed, woken + w->k, "busy vCPUs back"))
			return -1;
	}
	return 0;
}

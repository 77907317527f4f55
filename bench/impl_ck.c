/* SPDX-License-Identifier: MIT */
/*
 * ck_brlock: Concurrency Kit's big-reader lock (<ck_brlock.h>).
 *
 * A vCPU holds the read side while it executes a slice and drops and
 * re-takes it between slices (ck's read lock is one exchange and a load on
 * x86).  Stop takes the write side, which waits until every reader has
 * dropped it; start releases it.  Nobody sleeps (but for a world kept idle
 * beside a paired measurement): stopped vCPUs spin in the read lock.  A
 * stopped vCPU spins in ck_brlock_read_trylock() with a large
 * factor (ck_brlock_read_lock()'s loop, but one that can look at the quit
 * flag); when the world is oversubscribed it yields between attempts, or
 * the sweep would take minutes.  The stopper uses ck_brlock_write_lock().
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#include <ck_brlock.h>

#include "bench.h"

struct ckw {
	ck_brlock_t br;
	bool held;                      /* benchmark thread only */
};

struct ckr {
	ck_brlock_reader_t r;
	bool locked;                    /* this vCPU holds the read side */
} __attribute__((aligned(64)));

static struct ckw *ckw_of(const struct world *w)
{
	return w->impl_data;
}

static int ck_init(struct world *w)
{
	struct ckw *c = aligned_alloc(64, sizeof(*c));

	if (!c)
		return -ENOMEM;
	ck_brlock_init(&c->br);
	c->held = false;
	w->impl_data = c;
	return 0;
}

static void ck_fini(struct world *w)
{
	free(w->impl_data);
}

static int ck_vcpu_init(struct vcpu *v)
{
	struct ckr *r = aligned_alloc(64, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->locked = false;
	ck_brlock_read_register(&ckw_of(v->w)->br, &r->r);
	v->impl = r;
	return 0;
}

static void ck_vcpu_fini(struct vcpu *v)
{
	struct ckr *r = v->impl;

	/* After a quit the write side stays held (see ck_quit()) and the
	 * lock dies with the world: no unregistration. */
	if (!atomic_load_explicit(&v->w->quit, memory_order_acquire))
		ck_brlock_read_unregister(&ckw_of(v->w)->br, &r->r);
	free(r);
}

static bool ck_enter(struct vcpu *v)
{
	struct world *w = v->w;
	struct ckw *c = ckw_of(w);
	struct ckr *r = v->impl;

	if (r->locked) {
		ck_brlock_read_unlock(&r->r);
		r->locked = false;
	}
	while (!ck_brlock_read_trylock(&c->br, &r->r, 4096)) {
		if (atomic_load_explicit(&w->quit, memory_order_acquire))
			return false;
		if (!rsb_idle_wait(w) && w->oversub)
			sched_yield();
	}
	r->locked = true;
	return true;
}

/* Between slices: drop the read side, take it again unless a writer waits. */
static bool ck_may_run(struct vcpu *v)
{
	struct ckr *r = v->impl;

	ck_brlock_read_unlock(&r->r);
	r->locked = ck_brlock_read_trylock(&ckw_of(v->w)->br, &r->r, 1);
	return r->locked;
}

static void ck_stop(struct world *w)
{
	struct ckw *c = ckw_of(w);

	ck_brlock_write_lock(&c->br);
	c->held = true;
}

static void ck_start(struct world *w)
{
	struct ckw *c = ckw_of(w);

	c->held = false;
	ck_brlock_write_unlock(&c->br);
}

/*
 * Take the write side for good: every vCPU then fails its next trylock and
 * finds the quit flag in ck_enter().  (Releasing it would let a vCPU that
 * was between two slices during the whole hold run on without noticing.)
 */
static void ck_quit(struct world *w)
{
	struct ckw *c = ckw_of(w);

	if (!c->held)
		ck_brlock_write_lock(&c->br);
	c->held = true;
	atomic_store_explicit(&w->quit, 1, memory_order_release);
}

/* fastpath/ck_brlock: the read side dropped and re-taken, as between two
 * slices. */
struct ck_fast {
	ck_brlock_t br;
	ck_brlock_reader_t r;
};

static void *ck_fast_setup(void)
{
	struct ck_fast *f = aligned_alloc(64, sizeof(*f));

	if (!f)
		return NULL;
	ck_brlock_init(&f->br);
	ck_brlock_read_register(&f->br, &f->r);
	ck_brlock_read_lock(&f->br, &f->r);
	return f;
}

static __attribute__((noinline)) unsigned ck_fast_run(void *ctx, unsigned n)
{
	struct ck_fast *f = ctx;

	for (unsigned i = 0; i < n; i++) {
		ck_brlock_read_unlock(&f->r);
		if (__builtin_expect(!ck_brlock_read_trylock(&f->br, &f->r, 1), 0))
			return i;
	}
	return n;
}

static void ck_fast_teardown(void *ctx)
{
	struct ck_fast *f = ctx;

	ck_brlock_read_unlock(&f->r);
	ck_brlock_read_unregister(&f->br, &f->r);
	free(f);
}

const struct impl impl_ck_brlock = {
	.name = "ck_brlock",
	.sig = false,
	.parks = false,
	.created_stopped = false,
	.init = ck_init,
	.fini = ck_fini,
	.vcpu_init = ck_vcpu_init,
	.vcpu_fini = ck_vcpu_fini,
	.enter = ck_enter,
	.may_run = ck_may_run,
	.stop = ck_stop,
	.start = ck_start,
	.lock = ck_stop,
	.unlock = ck_start,
	.quit = ck_quit,
	.fast_setup = ck_fast_setup,
	.fast_run = ck_fast_run,
	.fast_teardown = ck_fast_teardown,
};

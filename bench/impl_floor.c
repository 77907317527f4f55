/* SPDX-License-Identifier: MIT */
/*
 * The references:
 *
 * spin_floor      the lower bound when nobody ever sleeps: vCPUs poll a flag
 *                 between slices, acknowledge a stop by incrementing a
 *                 counter and spin until the state changes; the stopper
 *                 spins until the counter reaches N.  (Oversubscribed, the
 *                 spinners yield now and then, see rsb_spin(); a world kept
 *                 idle beside a paired measurement sleeps, see
 *                 rsb_idle_wait().)
 * futex_wake_all  the reference for releasing N parked threads: they sleep on
 *                 one futex word and start is one FUTEX_WAKE(INT_MAX).  Its
 *                 stop (used only to park them, untimed) is spin_floor's.
 * plain_load      the fast-path floor: a loop of relaxed loads and branches.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "bench.h"

/*
 * seq counts edges: odd while stopped.  A vCPU remembers the value it
 * acknowledged and waits for seq to change, not for "running": a start
 * followed at once by the next stop (the storm) must not leave it waiting
 * for a running state it never saw.
 */
struct flw {
	_Atomic uint32_t seq;           /* odd while stopped; the futex */
	char pad0[60];
	_Atomic uint32_t acks;
	char pad1[60];
};

static struct flw *flw_of(const struct world *w)
{
	return w->impl_data;
}

static int fl_init(struct world *w)
{
	struct flw *f = aligned_alloc(64, sizeof(*f));

	if (!f)
		return -ENOMEM;
	atomic_init(&f->seq, 0);
	atomic_init(&f->acks, 0);
	w->impl_data = f;
	return 0;
}

static void fl_fini(struct world *w)
{
	free(w->impl_data);
}

static int fl_vcpu_init(struct vcpu *v)
{
	(void)v;
	return 0;
}

static void fl_vcpu_fini(struct vcpu *v)
{
	(void)v;
}

static bool fl_may_run(struct vcpu *v)
{
	return !(atomic_load_explicit(&flw_of(v->w)->seq, memory_order_relaxed) & 1);
}

/* Acknowledge every stop seen, and wait until the VM runs. */
static bool fl_enter(struct vcpu *v, bool sleep)
{
	struct world *w = v->w;
	struct flw *f = flw_of(w);
	unsigned i = 0;
	uint32_t s;

	/* Acquire: pairs with the release increment in fl_start(). */
	while ((s = atomic_load_explicit(&f->seq, memory_order_acquire)) & 1) {
		/* Release: the stopper's acquire load of acks sees our slice
		 * finished. */
		atomic_fetch_add_explicit(&f->acks, 1, memory_order_release);
		while (atomic_load_explicit(&f->seq, memory_order_acquire) == s) {
			if (atomic_load_explicit(&w->quit, memory_order_relaxed))
				return false;
			if (sleep)
				rsu_futex_wait((uint32_t *)&f->seq, s, -1);
			else if (!rsb_idle_wait(w))
				rsb_spin(w, &i);
		}
	}
	return !atomic_load_explicit(&w->quit, memory_order_acquire);
}

static bool spin_enter(struct vcpu *v)
{
	return fl_enter(v, false);
}

static bool futex_enter(struct vcpu *v)
{
	return fl_enter(v, true);
}

static void fl_stop(struct world *w)
{
	struct flw *f = flw_of(w);
	unsigned i = 0;

	/* Every vCPU acknowledged the previous stop before it returned, so
	 * no late increment can land after this reset. */
	atomic_store_explicit(&f->acks, 0, memory_order_relaxed);
	atomic_fetch_add_explicit(&f->seq, 1, memory_order_seq_cst);
	/* Acquire: pairs with the vCPUs' release increments. */
	while (atomic_load_explicit(&f->acks, memory_order_acquire) < w->n)
		rsb_spin(w, &i);
}

static void fl_start(struct world *w)
{
	atomic_fetch_add_explicit(&flw_of(w)->seq, 1, memory_order_release);
}

static void futex_start(struct world *w)
{
	struct flw *f = flw_of(w);

	atomic_fetch_add_explicit(&f->seq, 1, memory_order_release);
	rsu_futex_wake((uint32_t *)&f->seq, INT_MAX);
}

static void fl_quit(struct world *w)
{
	struct flw *f = flw_of(w);

	atomic_store_explicit(&w->quit, 1, memory_order_seq_cst);
	/* Make it odd (stopped), so running vCPUs leave their guest loop. */
	if (!(atomic_load_explicit(&f->seq, memory_order_relaxed) & 1))
		atomic_fetch_add_explicit(&f->seq, 1, memory_order_seq_cst);
	else
		atomic_fetch_add_explicit(&f->seq, 2, memory_order_seq_cst);
	rsu_futex_wake((uint32_t *)&f->seq, INT_MAX);
}

/* fastpath/spin_floor: the flag test; fastpath/plain_load: the bare load
 * and branch (the same instructions, but for the tested bits). */
static void *fl_fast_setup(void)
{
	struct flw *f = aligned_alloc(64, sizeof(*f));

	if (f)
		atomic_init(&f->seq, 0);
	return f;
}

static __attribute__((noinline)) unsigned fl_fast_run(void *ctx, unsigned n)
{
	struct flw *f = ctx;

	for (unsigned i = 0; i < n; i++)
		if (__builtin_expect(atomic_load_explicit(&f->seq, memory_order_relaxed) & 1, 0))
			return i;
	return n;
}

static __attribute__((noinline)) unsigned pl_fast_run(void *ctx, unsigned n)
{
	struct flw *f = ctx;

	for (unsigned i = 0; i < n; i++)
		if (__builtin_expect(atomic_load_explicit(&f->seq, memory_order_relaxed) != 0, 0))
			return i;
	return n;
}

static void fl_fast_teardown(void *ctx)
{
	free(ctx);
}

const struct impl impl_spin_floor = {
	.name = "spin_floor",
	.sig = false,
	.parks = false,
	.created_stopped = false,
	.init = fl_init,
	.fini = fl_fini,
	.vcpu_init = fl_vcpu_init,
	.vcpu_fini = fl_vcpu_fini,
	.enter = spin_enter,
	.may_run = fl_may_run,
	.stop = fl_stop,
	.start = fl_start,
	.lock = fl_stop,
	.unlock = fl_start,
	.quit = fl_quit,
	.fast_setup = fl_fast_setup,
	.fast_run = fl_fast_run,
	.fast_teardown = fl_fast_teardown,
};

const struct impl impl_futex_wake_all = {
	.name = "futex_wake_all",
	.sig = false,
	.parks = true,
	.created_stopped = false,
	.init = fl_init,
	.fini = fl_fini,
	.vcpu_init = fl_vcpu_init,
	.vcpu_fini = fl_vcpu_fini,
	.enter = futex_enter,
	.may_run = fl_may_run,
	.stop = fl_stop,
	.start = futex_start,
	.quit = fl_quit,
};

/* plain_load: the floor for the fast path, nothing else. */
const struct impl impl_plain_load = {
	.name = "plain_load",
	.fast_setup = fl_fast_setup,
	.fast_run = pl_fast_run,
	.fast_teardown = fl_fast_teardown,
};

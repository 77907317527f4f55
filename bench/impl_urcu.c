/* SPDX-License-Identifier: MIT */
/*
 * urcu_qsbr: liburcu's QSBR flavour.
 *
 * A vCPU is an online QSBR reader.  Between slices it reports a quiescent
 * state and loads a stop flag.  Stop sets the flag and calls
 * synchronize_rcu(): once every online reader has passed a quiescent state
 * after the store, each of them has finished its slice and its next flag load
 * sees the stop (the quiescent state and the grace period's start are full
 * barriers).  A stopped vCPU goes offline and sleeps on the flag (a futex);
 * start clears the flag and, if anyone sleeps, wakes them all with one
 * FUTEX_WAKE.
 *
 * _LGPL_SOURCE inlines liburcu's fast path (quiescent state, offline,
 * online) into this file, the best case for liburcu.  This object is linked
 * only into runstate-bench, which is not installed.
 */
#define _LGPL_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include <urcu/urcu-qsbr.h>

#include "bench.h"

struct uw {
	_Atomic uint32_t stop;          /* the futex stopped vCPUs sleep on */
	char pad[60];
	_Atomic uint32_t sleepers;
};

static struct uw *uw_of(const struct world *w)
{
	return w->impl_data;
}

static int u_init(struct world *w)
{
	struct uw *u = aligned_alloc(64, sizeof(*u));

	if (!u)
		return -ENOMEM;
	atomic_init(&u->stop, 0);
	atomic_init(&u->sleepers, 0);
	w->impl_data = u;
	return 0;
}

static void u_fini(struct world *w)
{
	free(w->impl_data);
}

static int u_vcpu_init(struct vcpu *v)
{
	(void)v;
	urcu_qsbr_register_thread();
	return 0;
}

static void u_vcpu_fini(struct vcpu *v)
{
	(void)v;
	urcu_qsbr_unregister_thread();
}

static bool u_enter(struct vcpu *v)
{
	struct world *w = v->w;
	struct uw *u = uw_of(w);

	for (;;) {
		if (atomic_load_explicit(&w->quit, memory_order_acquire))
			return false;
		/* Acquire: pairs with the release half of u_start()'s store. */
		if (!atomic_load_explicit(&u->stop, memory_order_acquire))
			return true;
		urcu_qsbr_thread_offline();
		/* Count ourselves before the last check: u_start() stores the
		 * flag and then reads sleepers (store buffering, both SC). */
		atomic_fetch_add_explicit(&u->sleepers, 1, memory_order_seq_cst);
		while (atomic_load_explicit(&u->stop, memory_order_seq_cst) &&
		       !atomic_load_explicit(&w->quit, memory_order_relaxed))
			rsu_futex_wait((uint32_t *)&u->stop, 1, -1);
		atomic_fetch_sub_explicit(&u->sleepers, 1, memory_order_relaxed);
		urcu_qsbr_thread_online();
	}
}

static bool u_may_run(struct vcpu *v)
{
	urcu_qsbr_quiescent_state();
	return !atomic_load_explicit(&uw_of(v->w)->stop, memory_order_relaxed);
}

static void u_stop(struct world *w)
{
	atomic_store_explicit(&uw_of(w)->stop, 1, memory_order_seq_cst);
	urcu_qsbr_synchronize_rcu();
}

static void u_start(struct world *w)
{
	struct uw *u = uw_of(w);

	atomic_store_explicit(&u->stop, 0, memory_order_seq_cst);
	if (atomic_load_explicit(&u->sleepers, memory_order_seq_cst))
		rsu_futex_wake((uint32_t *)&u->stop, INT_MAX);
}

static void u_quit(struct world *w)
{
	struct uw *u = uw_of(w);

	atomic_store_explicit(&w->quit, 1, memory_order_seq_cst);
	atomic_store_explicit(&u->stop, 1, memory_order_seq_cst);
	rsu_futex_wake((uint32_t *)&u->stop, INT_MAX);
}

/* fastpath/urcu_qsbr: a quiescent state and the flag load. */
static void *u_fast_setup(void)
{
	struct uw *u = aligned_alloc(64, sizeof(*u));

	if (!u)
		return NULL;
	atomic_init(&u->stop, 0);
	urcu_qsbr_register_thread();
	return u;
}

static __attribute__((noinline)) unsigned u_fast_run(void *ctx, unsigned n)
{
	struct uw *u = ctx;

	for (unsigned i = 0; i < n; i++) {
		urcu_qsbr_quiescent_state();
		if (__builtin_expect(atomic_load_explicit(&u->stop, memory_order_relaxed) != 0, 0))
			return i;
	}
	return n;
}

static void u_fast_teardown(void *ctx)
{
	urcu_qsbr_unregister_thread();
	free(ctx);
}

const struct impl impl_urcu_qsbr = {
	.name = "urcu_qsbr",
	.sig = false,
	.parks = true,
	.created_stopped = false,
	.init = u_init,
	.fini = u_fini,
	.vcpu_init = u_vcpu_init,
	.vcpu_fini = u_vcpu_fini,
	.enter = u_enter,
	.may_run = u_may_run,
	.stop = u_stop,
	.start = u_start,
	.lock = u_stop,
	.unlock = u_start,
	.quit = u_quit,
	.fast_setup = u_fast_setup,
	.fast_run = u_fast_run,
	.fast_teardown = u_fast_teardown,
};

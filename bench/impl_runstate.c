/* SPDX-License-Identifier: MIT */
/*
 * runstate: this library, used exactly as an emulator would.
 *
 * stop = rs_stop(rs, RS_FOREVER), start = rs_start(rs, 0), the internal lock
 * = rs_lock(RS_LOCK_SAVEVM) / rs_unlock().  runstate's vCPUs poll
 * rs_may_run() between slices and have no kick; runstate_sig's vCPUs never
 * poll and are kicked with a signal (the library's kick callback).
 *
 * An exclusive section (exclusive/runstate, on vCPU 0's thread):
 * rs_exclusive_begin(), which takes vCPU 0 out and waits for the others;
 * rs_vcpu_enter() of vCPU 0, which lets the owner's vCPU in; one slice;
 * rs_exclusive_end().  vCPU 0 then goes on polling rs_may_run().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <runstate.h>

#include "bench.h"

struct rsv {
	rs_vcpu rv;                     /* must stay first: aligned */
};

static rs_runstate *rs_of(const struct world *w)
{
	return w->impl_data;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "runstate-bench: %s: %s (%d)\n", what, rs_strerror(err), err);
	abort();
}

static int rsi_init(struct world *w)
{
	rs_runstate *rs;
	int err = rs_create(NULL, &rs);       /* stopped in prelaunch */

	if (err)
		return err;
	w->impl_data = rs;
	return 0;
}

static void rsi_fini(struct world *w)
{
	rs_destroy(rs_of(w));
}

static void kick_sig(rs_vcpu *rv, void *opaque)
{
	(void)rv;
	rsb_kick_signal(opaque);
}

static int rsi_vcpu_init(struct vcpu *v)
{
	struct rsv *p = aligned_alloc(_Alignof(rs_vcpu), sizeof(*p));
	int err;

	if (!p)
		return -ENOMEM;
	v->impl = p;
	err = rs_vcpu_register(rs_of(v->w), &p->rv, v->w->impl->sig ? kick_sig : NULL, v);
	if (err) {
		free(p);
		v->impl = NULL;
	}
	return err;
}

static void rsi_vcpu_fini(struct vcpu *v)
{
	struct rsv *p = v->impl;

	if (!p)
		return;
	(void)rs_vcpu_unregister(&p->rv);
	free(p);
}

static bool rsi_enter(struct vcpu *v)
{
	struct rsv *p = v->impl;

	for (;;) {
		int r = rs_vcpu_enter(&p->rv);

		if (r == 0)
			return true;
		if (r == RS_VCPU_EXIT)
			return false;
		if (r != RS_VCPU_WORK)
			die("rs_vcpu_enter", r);
	}
}

static bool rsi_may_run(struct vcpu *v)
{
	return rs_may_run(rs_of(v->w));
}

static void rsi_stop(struct world *w)
{
	int err = rs_stop(rs_of(w), RS_FOREVER);

	if (err)
		die("rs_stop", err);
}

static void rsi_start(struct world *w)
{
	int err = rs_start(rs_of(w), 0);

	if (err)
		die("rs_start", err);
}

static void rsi_lock(struct world *w)
{
	int err = rs_lock(rs_of(w), RS_LOCK_SAVEVM, RS_FOREVER);

	if (err)
		die("rs_lock", err);
}

static void rsi_unlock(struct world *w)
{
	int err = rs_unlock(rs_of(w), RS_LOCK_SAVEVM);

	if (err)
		die("rs_unlock", err);
}

/* Without a deadline, as the stop above and as QEMU's start_exclusive():
 * a deadline costs a clock read more (about 24 ns here, a quarter of a
 * section with one vCPU). */
static int rsi_excl_begin(struct vcpu *v)
{
	int err = rs_exclusive_begin(rs_of(v->w), RS_FOREVER);

	if (err)
		return err;
	/* The owner's vCPU back in: 0 while the VM may run (the section's
	 * bit fails the owner's own rs_may_run(), not this). */
	if (rsi_enter(v))
		return 0;
	(void)rs_exclusive_end(rs_of(v->w));
	return RS_EINVAL;
}

static int rsi_excl_end(struct vcpu *v)
{
	return rs_exclusive_end(rs_of(v->w));
}

static void rsi_quit(struct world *w)
{
	/* Polling vCPUs have no kick: stop first so they leave their guest
	 * loop, then an exit request ends their rs_vcpu_enter(). */
	(void)rs_stop(rs_of(w), RS_ASYNC);
	for (unsigned i = 0; i < w->n; i++) {
		struct rsv *p = w->v[i].impl;

		if (p)
			(void)rs_vcpu_request(&p->rv, RS_REQ_EXIT);
	}
}

static void rsi_stats(struct world *w, uint64_t *parks, uint64_t *wakes)
{
	struct rs_stats st = { .size = sizeof(st) };

	if (rs_get_stats(rs_of(w), &st) == 0) {
		*parks = st.parks;
		*wakes = st.wakes;
	}
}

/* fastpath/runstate: the calling thread registers and enters as a vCPU. */
struct rs_fast {
	rs_vcpu rv;
	rs_runstate *rs;
};

static void *rsi_fast_setup(void)
{
	struct rs_fast *f = aligned_alloc(_Alignof(rs_vcpu), sizeof(*f));
	int err;

	if (!f)
		return NULL;
	if ((err = rs_create(NULL, &f->rs)) != 0)
		die("rs_create", err);
	if ((err = rs_vcpu_register(f->rs, &f->rv, NULL, NULL)) != 0)
		die("rs_vcpu_register", err);
	if ((err = rs_start(f->rs, 0)) != 0)
		die("rs_start", err);
	if ((err = rs_vcpu_enter(&f->rv)) != 0)
		die("rs_vcpu_enter", err);
	return f;
}

/* The interpreter loop's check, n times: one load, one test, one branch. */
static __attribute__((noinline)) unsigned rsi_fast_run(void *ctx, unsigned n)
{
	const rs_runstate *rs = ((struct rs_fast *)ctx)->rs;

	for (unsigned i = 0; i < n; i++)
		if (__builtin_expect(!rs_may_run(rs), 0))
			return i;
	return n;
}

static void rsi_fast_teardown(void *ctx)
{
	struct rs_fast *f = ctx;

	(void)rs_vcpu_unregister(&f->rv);
	rs_destroy(f->rs);
	free(f);
}

#define RUNSTATE_IMPL(sym, nm, is_sig)				\
	const struct impl sym = {				\
		.name = nm,					\
		.sig = is_sig,					\
		.parks = true,					\
		.created_stopped = true,			\
		.init = rsi_init,				\
		.fini = rsi_fini,				\
		.vcpu_init = rsi_vcpu_init,			\
		.vcpu_fini = rsi_vcpu_fini,			\
		.enter = rsi_enter,				\
		.may_run = rsi_may_run,				\
		.stop = rsi_stop,				\
		.start = rsi_start,				\
		.lock = rsi_lock,				\
		.unlock = rsi_unlock,				\
		.quit = rsi_quit,				\
		.stats = rsi_stats,				\
		.excl_begin = rsi_excl_begin,			\
		.excl_end = rsi_excl_end,			\
		.fast_setup = rsi_fast_setup,			\
		.fast_run = rsi_fast_run,			\
		.fast_teardown = rsi_fast_teardown,		\
	}

RUNSTATE_IMPL(impl_runstate, "runstate", false);
RUNSTATE_IMPL(impl_runstate_sig, "runstate_sig", true);

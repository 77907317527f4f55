/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

_Atomic int tu_checks, tu_failures;

int tu_finish(const char *name)
{
	printf("%s: %d checks, %d failures\n", name, tu_checks, tu_failures);
	return tu_failures ? 1 : 0;
}

rs_runstate *tu_create(struct rs_config cfg, const struct rs_ops *ops)
{
	rs_runstate *rs = NULL;
	int err;

	cfg.size = sizeof(cfg);
	err = rs_create_ops(&cfg, ops, &rs);
	if (err || !rs) {
		fprintf(stderr, "rs_create_ops: %s\n", rs_strerror(err));
		exit(1);
	}
	return rs;
}

struct rs_state tu_decode(uint64_t w)
{
	struct rs_state st = { .size = sizeof(st) };

	if (rs_decode(w, &st) != 0) {
		CHECK(!"rs_decode() of a full-size struct failed");
		memset(&st, 0, sizeof(st));
	}
	return st;
}

/* ---------------------------------------------------------------------------
 * The simulated vCPU
 */
static void tu_vcpu_kick(rs_vcpu *v, void *opaque)
{
	struct tu_vcpu *t = opaque;

	(void)v;
	atomic_fetch_add(&t->kicks, 1);
	if (atomic_load(&t->drop_kicks) > 0) {
		atomic_fetch_sub(&t->drop_kicks, 1);
		return;
	}
	atomic_store(&t->kicked, true);
}

struct find_arg {
	const rs_vcpu *v;
	int active;
};

static void find_fn(const struct rs_vcpu_info *info, void *arg)
{
	struct find_arg *a = arg;

	if (info->vcpu == a->v)
		a->active = info->active;
}

int tu_vcpu_active(struct tu_vcpu *t)
{
	struct find_arg a = { &t->v, -1 };

	rs_vcpu_foreach(t->rs, find_fn, &a);
	return a.active;
}

/* Run the posted job, if any, on this thread.  Returns true if it left the
 * vCPU out (the loop must go back through rs_vcpu_enter()). */
static bool run_job(struct tu_vcpu *t)
{
	tu_job_fn *fn = atomic_load(&t->job);
	uint64_t t0;

	if (!fn)
		return false;
	atomic_store(&t->job, NULL);
	t->job_active_before = tu_vcpu_active(t) == 1;
	t0 = rsu_now_ns();
	t->job_result = fn(t->rs, t->job_timeout, t->job_arg);
	t->job_ns = rsu_now_ns() - t0;
	t->job_active_after = tu_vcpu_active(t) == 1;
	atomic_store(&t->job_done, true);
	return !t->job_active_after;
}

/* One guest slice.  Returns false if a job left the vCPU out. */
static bool slice(struct tu_vcpu *t)
{
	bool left = false;

	atomic_store(&t->in_guest, 1);
	atomic_fetch_add(&t->slices, 1);
	for (;;) {
		if (run_job(t)) {
			left = true;
			break;
		}
		if (atomic_load(&t->stuck)) {
			atomic_store(&t->is_stuck, true);
			continue;
		}
		atomic_store(&t->is_stuck, false);
		if (!atomic_load(&t->blocking)) {
			/* A little guest work: a window in which a check
			 * that a listener or a stopper sees no vCPU in guest
			 * code would catch one. */
			for (volatile int i = 0; i < 50; i++)
				;
			break;
		}
		if (atomic_exchange(&t->kicked, false) || atomic_load(&t->quit))
			break;
	}
	atomic_store(&t->in_guest, 0);
	return !left;
}

static void *tu_vcpu_main(void *arg)
{
	struct tu_vcpu *t = arg;
	int r = rs_vcpu_register(t->rs, &t->v, tu_vcpu_kick, t);

	atomic_store(&t->reg_result, r);
	atomic_store(&t->registered, r == 0);
	atomic_store(&t->started, true);
	if (r)
		return NULL;
	for (;;) {
		r = rs_vcpu_enter(&t->v);
		atomic_store(&t->last_enter, r);
		if (r == RS_VCPU_EXIT)
			break;
		if (r == RS_VCPU_WORK) {
			atomic_fetch_add(&t->work_seen, 1);
			run_job(t);   /* out: the job runs on a parked vCPU */
			continue;
		}
		CHECK_EQ(r, 0);
		if (r)
			break;
		/* The inline fast path, as an emulator's loop has it; then its
		 * out-of-line twin, which in checking builds also aborts if the
		 * library counts this vCPU out here.  On a quit, back through
		 * rs_vcpu_enter() for the exit request. */
		while (slice(t) && !atomic_load(&t->quit) && rs_may_run(t->rs) &&
		       rs_may_run_func(t->rs))
			;
	}
	rs_vcpu_unregister(&t->v);
	atomic_store(&t->registered, false);
	return NULL;
}

void tu_vcpu_spawn(struct tu_vcpu *t, rs_runstate *rs)
{
	memset(t, 0, sizeof(*t));
	t->rs = rs;
	if (pthread_create(&t->thread, NULL, tu_vcpu_main, t)) {
		fprintf(stderr, "pthread_create failed\n");
		exit(1);
	}
	while (!atomic_load(&t->started))
		tu_sleep_ms(1);
	CHECK_EQ(atomic_load(&t->reg_result), 0);
}

void tu_vcpu_reap(struct tu_vcpu *t)
{
	atomic_store(&t->quit, true);
	atomic_store(&t->stuck, false);
	if (atomic_load(&t->registered))
		CHECK_EQ(rs_vcpu_request(&t->v, RS_REQ_EXIT), 0);
	pthread_join(t->thread, NULL);
}

void tu_vcpu_post(struct tu_vcpu *t, tu_job_fn *fn, int64_t timeout, void *arg)
{
	t->job_arg = arg;
	t->job_timeout = timeout;
	atomic_store(&t->job_done, false);
	/* Publishes the arguments: the vCPU loads the job before them. */
	atomic_store(&t->job, fn);
}

bool tu_vcpu_job_wait(struct tu_vcpu *t, long ms)
{
	for (long i = 0; i < ms && !atomic_load(&t->job_done); i++)
		tu_sleep_ms(1);
	return atomic_load(&t->job_done);
}

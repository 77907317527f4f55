/* SPDX-License-Identifier: MIT */
/*
 * qemu_condvar: the model of QEMU's pause_all_vcpus() / resume_all_vcpus()
 * and of the vCPU thread loop around them (qemu_model.h), driving the
 * simulated vCPUs.
 *
 * qemu_condvar kicks the TCG way (cpu_exit(): set exit_request, which the
 * vCPU checks between slices) and broadcasts the halt condition.
 * qemu_condvar_sig kicks the KVM way (pthread_kill() unless thread_kicked;
 * the vCPU's guest loop only ends on the signal).  As in QEMU, the TCG kick
 * in resume_all_vcpus() also sets exit_request, so a released TCG vCPU makes
 * one empty trip through the BQL before it executes guest code.
 *
 * QEMU has no lighter internal lock: savevm and migration stop the VM, so
 * lock/unlock here are the same pause/resume.
 *
 * qemu_exclusive is qemu_condvar (TCG kicks) whose vCPUs also bracket every
 * guest slice with cpu_exec_start() / cpu_exec_end(), and whose vCPU 0
 * takes exclusive sections the way cpu_exec_step_atomic() does: outside
 * cpu_exec(), start_exclusive(), running = true, one slice, running =
 * false, end_exclusive() (the exclusive/<impl> rows, world.c).  A kicked
 * vCPU ends its slice, cpu_exec_end() reports it, and its exit request
 * takes it through the big lock once (as TCG's cpu_exec() returning to
 * the thread loop does) before its next cpu_exec_start() waits for the
 * section to end.  The per-slice bracket is the finest grain: QEMU
 * brackets one cpu_exec() call, which runs translated blocks until an exit
 * request, so it pays the bracket at most once per slice.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "qemu_model.h"

/* ---------------------------------------------------------------------------
 * The model (qemu_model.h), shared with bench_kvm.c
 */

int qm_init(struct qm *q, unsigned n, void (*signal)(struct qm *q, unsigned i), void *opaque)
{
	memset(q, 0, sizeof(*q));
	q->cpus = aligned_alloc(64, sizeof(*q->cpus) * (n ? n : 1));
	if (!q->cpus)
		return -ENOMEM;
	memset(q->cpus, 0, sizeof(*q->cpus) * (n ? n : 1));
	pthread_mutex_init(&q->bql, NULL);
	pthread_cond_init(&q->pause_cond, NULL);
	pthread_mutex_init(&q->cpu_list_lock, NULL);
	pthread_cond_init(&q->exclusive_cond, NULL);
	pthread_cond_init(&q->exclusive_resume, NULL);
	atomic_init(&q->pending_cpus, 0);
	q->running = false;
	q->n = n;
	q->signal = signal;
	q->opaque = opaque;
	for (unsigned i = 0; i < n; i++) {
		struct qm_cpu *c = &q->cpus[i];

		c->stop = false;
		c->stopped = true;      /* created stopped, as in QEMU */
		atomic_init(&c->running, false);
		atomic_init(&c->has_waiter, false);
		atomic_init(&c->exit_request, 0);
		atomic_init(&c->thread_kicked, 0);
		pthread_cond_init(&c->halt_cond, NULL);
	}
	return 0;
}

void qm_fini(struct qm *q)
{
	for (unsigned i = 0; i < q->n; i++)
		pthread_cond_destroy(&q->cpus[i].halt_cond);
	pthread_cond_destroy(&q->exclusive_resume);
	pthread_cond_destroy(&q->exclusive_cond);
	pthread_mutex_destroy(&q->cpu_list_lock);
	pthread_cond_destroy(&q->pause_cond);
	pthread_mutex_destroy(&q->bql);
	free(q->cpus);
	q->cpus = NULL;
}

void qm_kick(struct qm *q, unsigned i)
{
	struct qm_cpu *c = &q->cpus[i];

	pthread_cond_broadcast(&c->halt_cond);
	if (!q->signal) {
		/* mttcg_kick_vcpu_thread() = cpu_exit() */
		atomic_store_explicit(&c->exit_request, 1, memory_order_release);
	} else if (!atomic_load_explicit(&c->thread_kicked, memory_order_relaxed)) {
		/* cpus_kick_thread() */
		atomic_store_explicit(&c->thread_kicked, 1, memory_order_relaxed);
		q->signal(q, i);
	}
}

/* cpu_is_stopped(), cpu_thread_is_idle(), cpu_can_run(); BQL held.  A
 * modelled vCPU is never halted and has no queued work. */
static bool qm_is_stopped(const struct qm *q, const struct qm_cpu *c)
{
	return c->stopped || !q->running;
}

static bool qm_is_idle(const struct qm *q, const struct qm_cpu *c)
{
	return !c->stop && qm_is_stopped(q, c);
}

bool qm_can_run(const struct qm *q, const struct qm_cpu *c)
{
	return !c->stop && !qm_is_stopped(q, c);
}

void qm_wait_io_event(struct qm *q, struct qm_cpu *c)
{
	/* qemu_wait_io_event() */
	while (qm_is_idle(q, c) && !q->quit)
		pthread_cond_wait(&c->halt_cond, &q->bql);
	/* qemu_wait_io_event_common() */
	atomic_store_explicit(&c->thread_kicked, 0, memory_order_seq_cst);
	if (c->stop) {
		c->stop = false;
		c->stopped = true;
		pthread_cond_broadcast(&q->pause_cond);
	}
}

static bool qm_all_paused(const struct qm *q)
{
	for (unsigned i = 0; i < q->n; i++)
		if (!q->cpus[i].stopped)
			return false;
	return true;
}

void qm_pause_all(struct qm *q)
{
	pthread_mutex_lock(&q->bql);
	q->running = false;
	for (unsigned i = 0; i < q->n; i++) {
		q->cpus[i].stop = true;
		qm_kick(q, i);
	}
	while (!qm_all_paused(q)) {
		pthread_cond_wait(&q->pause_cond, &q->bql);
		for (unsigned i = 0; i < q->n; i++)
			qm_kick(q, i);
	}
	pthread_mutex_unlock(&q->bql);
}

void qm_resume_all(struct qm *q)
{
	pthread_mutex_lock(&q->bql);
	q->running = true;
	for (unsigned i = 0; i < q->n; i++) {
		q->cpus[i].stop = false;
		q->cpus[i].stopped = false;
		qm_kick(q, i);
	}
	pthread_mutex_unlock(&q->bql);
}

void qm_quit(struct qm *q)
{
	pthread_mutex_lock(&q->bql);
	q->quit = true;
	for (unsigned i = 0; i < q->n; i++) {
		atomic_store_explicit(&q->cpus[i].thread_kicked, 0, memory_order_relaxed);
		qm_kick(q, i);
	}
	pthread_mutex_unlock(&q->bql);
}

/* ---------------------------------------------------------------------------
 * The exclusive sections' model (qemu_model.h): cpus-common.c
 *
 * Every access to running, has_waiter and pending_cpus outside the mutex is
 * relaxed, as QEMU's qatomic_set() / qatomic_read() are; smp_mb() is a
 * seq_cst fence.  The two fences are the store-buffering pair that makes
 * the scheme work: a vCPU entering cpu_exec() stores running and then reads
 * pending_cpus; start_exclusive() stores pending_cpus and then reads
 * running.  At least one of them sees the other's store: either the vCPU
 * sees the section and waits, or the section sees the vCPU running and
 * waits for its cpu_exec_end().
 */

/* exclusive_idle(), cpu_list_lock held: wait until no section is pending. */
static void qm_exclusive_idle(struct qm *q)
{
	while (atomic_load_explicit(&q->pending_cpus, memory_order_relaxed))
		pthread_cond_wait(&q->exclusive_resume, &q->cpu_list_lock);
}

void qm_start_exclusive(struct qm *q, const struct qm_cpu *self)
{
	int running_cpus = 1;

	pthread_mutex_lock(&q->cpu_list_lock);
	qm_exclusive_idle(q);

	/* Make every other vCPU leave cpu_exec(). */
	atomic_store_explicit(&q->pending_cpus, 1, memory_order_relaxed);
	/* smp_mb(): pending_cpus before the vCPUs' running; pairs with the
	 * fences in qm_cpu_exec_start() and qm_cpu_exec_end(). */
	atomic_thread_fence(memory_order_seq_cst);
	for (unsigned i = 0; i < q->n; i++) {
		struct qm_cpu *c = &q->cpus[i];

		if (c == self || !atomic_load_explicit(&c->running, memory_order_relaxed))
			continue;
		atomic_store_explicit(&c->has_waiter, true, memory_order_relaxed);
		qm_kick(q, i);
		running_cpus++;
	}
	atomic_store_explicit(&q->pending_cpus, running_cpus, memory_order_relaxed);

	/* Wait for those to leave cpu_exec(); the mutex orders what they wrote
	 * before it. */
	while (atomic_load_explicit(&q->pending_cpus, memory_order_relaxed) > 1)
		pthread_cond_wait(&q->exclusive_cond, &q->cpu_list_lock);
	pthread_mutex_unlock(&q->cpu_list_lock);
}

void qm_end_exclusive(struct qm *q)
{
	pthread_mutex_lock(&q->cpu_list_lock);
	atomic_store_explicit(&q->pending_cpus, 0, memory_order_relaxed);
	pthread_cond_broadcast(&q->exclusive_resume);
	pthread_mutex_unlock(&q->cpu_list_lock);
}

void qm_cpu_exec_start(struct qm *q, struct qm_cpu *c)
{
	atomic_store_explicit(&c->running, true, memory_order_relaxed);
	/* smp_mb(): running before pending_cpus; pairs with the fence in
	 * qm_start_exclusive(). */
	atomic_thread_fence(memory_order_seq_cst);
	if (__builtin_expect(atomic_load_explicit(&q->pending_cpus, memory_order_relaxed) != 0, 0)) {
		pthread_mutex_lock(&q->cpu_list_lock);
		if (!atomic_load_explicit(&c->has_waiter, memory_order_relaxed)) {
			/* Not counted by the section: wait it out. */
			atomic_store_explicit(&c->running, false, memory_order_relaxed);
			qm_exclusive_idle(q);
			atomic_store_explicit(&c->running, true, memory_order_relaxed);
		}
		/* Else the section saw us running and waits for our
		 * cpu_exec_end(): go on. */
		pthread_mutex_unlock(&q->cpu_list_lock);
	}
}

void qm_cpu_exec_end(struct qm *q, struct qm_cpu *c)
{
	atomic_store_explicit(&c->running, false, memory_order_relaxed);
	/* smp_mb(): running before has_waiter; pairs with the fence in
	 * qm_start_exclusive().  A section that counted us but whose
	 * has_waiter we miss here finds us in our next cpu_exec_start(),
	 * which then runs on (has_waiter set) to the cpu_exec_end() that
	 * reports us. */
	atomic_thread_fence(memory_order_seq_cst);
	if (__builtin_expect(atomic_load_explicit(&c->has_waiter, memory_order_relaxed), 0)) {
		pthread_mutex_lock(&q->cpu_list_lock);
		if (atomic_load_explicit(&c->has_waiter, memory_order_relaxed)) {
			int left = atomic_load_explicit(&q->pending_cpus, memory_order_relaxed) - 1;

			atomic_store_explicit(&c->has_waiter, false, memory_order_relaxed);
			atomic_store_explicit(&q->pending_cpus, left, memory_order_relaxed);
			if (left == 1)
				pthread_cond_signal(&q->exclusive_cond);
		}
		pthread_mutex_unlock(&q->cpu_list_lock);
	}
}

/* ---------------------------------------------------------------------------
 * qemu_condvar, qemu_condvar_sig and qemu_exclusive
 */

static struct qm *qm_of(const struct world *w)
{
	return w->impl_data;
}

/* The KVM kick: only vCPUs whose thread runs (a world that failed to start
 * all of its threads quits with w->n lowered to those that do). */
static void q_signal(struct qm *q, unsigned i)
{
	struct world *w = q->opaque;

	if (i < w->n)
		rsb_kick_signal(&w->v[i]);
}

static int q_init(struct world *w)
{
	struct qm *q = malloc(sizeof(*q));
	int err;

	if (!q)
		return -ENOMEM;
	err = qm_init(q, w->n, w->impl->sig ? q_signal : NULL, w);
	if (err) {
		free(q);
		return err;
	}
	for (unsigned i = 0; i < w->n; i++)
		w->v[i].impl = &q->cpus[i];
	w->impl_data = q;
	return 0;
}

static void q_fini(struct world *w)
{
	qm_fini(qm_of(w));
	free(qm_of(w));
}

static int q_vcpu_init(struct vcpu *v)
{
	(void)v;
	return 0;
}

static void q_vcpu_fini(struct vcpu *v)
{
	(void)v;
}

/*
 * The vCPU thread's loop between two guest executions (mttcg_cpu_thread_fn
 * and kvm_vcpu_thread_fn): take the BQL, clear the exit request,
 * qemu_wait_io_event(), and go back to guest code once cpu_can_run().
 */
static bool q_enter(struct vcpu *v)
{
	struct qm *q = qm_of(v->w);
	struct qm_cpu *c = v->impl;
	bool run;

	pthread_mutex_lock(&q->bql);
	for (;;) {
		atomic_store_explicit(&c->exit_request, 0, memory_order_seq_cst);
		qm_wait_io_event(q, c);
		if (q->quit) {
			run = false;
			break;
		}
		if (qm_can_run(q, c)) {
			run = true;
			break;
		}
	}
	pthread_mutex_unlock(&q->bql);
	return run;
}

/* TCG: cpu_exec() leaves at the next block boundary once exit_request is
 * set. */
static bool q_may_run(struct vcpu *v)
{
	struct qm_cpu *c = v->impl;

	return !atomic_load_explicit(&c->exit_request, memory_order_relaxed);
}

static void q_stop(struct world *w)
{
	qm_pause_all(qm_of(w));
}

static void q_start(struct world *w)
{
	qm_resume_all(qm_of(w));
}

static void q_quit(struct world *w)
{
	atomic_store_explicit(&w->quit, 1, memory_order_relaxed);
	qm_quit(qm_of(w));
}

/* fastpath/qemu_condvar: TCG's check at each block, a load of the exit
 * request (QEMU reads icount_decr, set together with it). */
static void *q_fast_setup(void)
{
	struct qm_cpu *c = aligned_alloc(64, sizeof(*c));

	if (c)
		atomic_init(&c->exit_request, 0);
	return c;
}

static __attribute__((noinline)) unsigned q_fast_run(void *ctx, unsigned n)
{
	struct qm_cpu *c = ctx;

	for (unsigned i = 0; i < n; i++)
		if (__builtin_expect(atomic_load_explicit(&c->exit_request,
							  memory_order_relaxed) != 0, 0))
			return i;
	return n;
}

static void q_fast_teardown(void *ctx)
{
	free(ctx);
}

/* qemu_exclusive: the bracket around every slice, and vCPU 0's section. */
static void qx_exec_start(struct vcpu *v)
{
	qm_cpu_exec_start(qm_of(v->w), v->impl);
}

static void qx_exec_end(struct vcpu *v)
{
	qm_cpu_exec_end(qm_of(v->w), v->impl);
}

/* cpu_exec_step_atomic(): the caller is out of cpu_exec() (its last slice's
 * cpu_exec_end()); its own running is set for the exclusive slice. */
static int qx_excl_begin(struct vcpu *v)
{
	struct qm_cpu *c = v->impl;

	qm_start_exclusive(qm_of(v->w), c);
	atomic_store_explicit(&c->running, true, memory_order_relaxed);
	return 0;
}

static int qx_excl_end(struct vcpu *v)
{
	struct qm_cpu *c = v->impl;

	atomic_store_explicit(&c->running, false, memory_order_relaxed);
	qm_end_exclusive(qm_of(v->w));
	return 0;
}

/* fastpath/qemu_exclusive: what every slice costs a vCPU with no section
 * pending: cpu_exec_start(), TCG's exit-request check, cpu_exec_end(). */
static void *qx_fast_setup(void)
{
	struct qm *q = malloc(sizeof(*q));

	if (q && qm_init(q, 1, NULL, NULL)) {
		free(q);
		return NULL;
	}
	return q;
}

static __attribute__((noinline)) unsigned qx_fast_run(void *ctx, unsigned n)
{
	struct qm *q = ctx;
	struct qm_cpu *c = &q->cpus[0];

	for (unsigned i = 0; i < n; i++) {
		qm_cpu_exec_start(q, c);
		if (__builtin_expect(atomic_load_explicit(&c->exit_request,
							  memory_order_relaxed) != 0, 0)) {
			qm_cpu_exec_end(q, c);
			return i;
		}
		qm_cpu_exec_end(q, c);
	}
	return n;
}

static void qx_fast_teardown(void *ctx)
{
	qm_fini(ctx);
	free(ctx);
}

#define QEMU_IMPL(sym, nm, is_sig)				\
	const struct impl sym = {				\
		.name = nm,					\
		.sig = is_sig,					\
		.parks = true,					\
		.created_stopped = true,			\
		.init = q_init,					\
		.fini = q_fini,					\
		.vcpu_init = q_vcpu_init,			\
		.vcpu_fini = q_vcpu_fini,			\
		.enter = q_enter,				\
		.may_run = q_may_run,				\
		.stop = q_stop,					\
		.start = q_start,				\
		.lock = q_stop,					\
		.unlock = q_start,				\
		.quit = q_quit,					\
		.fast_setup = q_fast_setup,			\
		.fast_run = q_fast_run,				\
		.fast_teardown = q_fast_teardown,		\
	}

QEMU_IMPL(impl_qemu_condvar, "qemu_condvar", false);
QEMU_IMPL(impl_qemu_condvar_sig, "qemu_condvar_sig", true);

const struct impl impl_qemu_exclusive = {
	.name = "qemu_exclusive",
	.sig = false,
	.parks = true,
	.created_stopped = true,
	.init = q_init,
	.fini = q_fini,
	.vcpu_init = q_vcpu_init,
	.vcpu_fini = q_vcpu_fini,
	.enter = q_enter,
	.may_run = q_may_run,
	.stop = q_stop,
	.start = q_start,
	.lock = q_stop,
	.unlock = q_start,
	.quit = q_quit,
	.exec_start = qx_exec_start,
	.exec_end = qx_exec_end,
	.excl_begin = qx_excl_begin,
	.excl_end = qx_excl_end,
	.fast_setup = qx_fast_setup,
	.fast_run = qx_fast_run,
	.fast_teardown = qx_fast_teardown,
};

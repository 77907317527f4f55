/* SPDX-License-Identifier: MIT */
/*
 * qemu_condvar: a model of QEMU's pause_all_vcpus() / resume_all_vcpus()
 * (system/cpus.c) and of the vCPU thread loop around them, written from the
 * description in anchors.md:
 *
 * - one big lock (the BQL), held by the management thread around a whole
 *   stop or start, and by a vCPU thread except while it executes guest code;
 * - per vCPU: stop and stopped flags (under the BQL), an exit request
 *   (atomic), thread_kicked, and a halt condition it sleeps on;
 * - one pause condition the stopper sleeps on;
 * - stop: running = false; for each vCPU: stop = true and kick; then wait on
 *   the pause condition under the BQL until every vCPU is stopped,
 *   re-kicking every vCPU on every wake-up;
 * - start: running = true; for each vCPU: stop = stopped = false and kick.
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
 */
#include <errno.h>
#include <stdlib.h>

#include "bench.h"

struct qcpu {
	bool stop;                      /* BQL */
	bool stopped;                   /* BQL */
	_Atomic uint32_t exit_request;
	_Atomic uint32_t thread_kicked;
	pthread_cond_t halt_cond;
} __attribute__((aligned(64)));

struct qvm {
	pthread_mutex_t bql;
	pthread_cond_t pause_cond;
	bool running;                   /* BQL: runstate_is_running() */
	bool sig;
	struct qcpu *cpus;
	unsigned n;
};

static struct qvm *qvm_of(const struct world *w)
{
	return w->impl_data;
}

static int q_init(struct world *w)
{
	struct qvm *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	q->cpus = aligned_alloc(64, sizeof(*q->cpus) * (w->n ? w->n : 1));
	if (!q->cpus) {
		free(q);
		return -ENOMEM;
	}
	pthread_mutex_init(&q->bql, NULL);
	pthread_cond_init(&q->pause_cond, NULL);
	q->running = false;
	q->sig = w->impl->sig;
	q->n = w->n;
	for (unsigned i = 0; i < w->n; i++) {
		struct qcpu *c = &q->cpus[i];

		c->stop = false;
		c->stopped = true;      /* created stopped, as in QEMU */
		atomic_init(&c->exit_request, 0);
		atomic_init(&c->thread_kicked, 0);
		pthread_cond_init(&c->halt_cond, NULL);
		w->v[i].impl = c;
	}
	w->impl_data = q;
	return 0;
}

static void q_fini(struct world *w)
{
	struct qvm *q = qvm_of(w);

	for (unsigned i = 0; i < q->n; i++)
		pthread_cond_destroy(&q->cpus[i].halt_cond);
	pthread_cond_destroy(&q->pause_cond);
	pthread_mutex_destroy(&q->bql);
	free(q->cpus);
	free(q);
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

/* qemu_cpu_kick(), BQL held. */
static void q_kick(struct qvm *q, struct world *w, unsigned i)
{
	struct qcpu *c = &q->cpus[i];

	pthread_cond_broadcast(&c->halt_cond);
	if (!q->sig) {
		/* mttcg_kick_vcpu_thread() = cpu_exit() */
		atomic_store_explicit(&c->exit_request, 1, memory_order_release);
	} else if (!atomic_load_explicit(&c->thread_kicked, memory_order_relaxed)) {
		/* cpus_kick_thread() */
		atomic_store_explicit(&c->thread_kicked, 1, memory_order_relaxed);
		rsb_kick_signal(&w->v[i]);
	}
}

/* cpu_is_stopped(), cpu_thread_is_idle(), cpu_can_run(); BQL held.  A
 * simulated vCPU is never halted and has no queued work. */
static bool q_is_stopped(const struct qvm *q, const struct qcpu *c)
{
	return c->stopped || !q->running;
}

static bool q_is_idle(const struct qvm *q, const struct qcpu *c)
{
	if (c->stop)
		return false;
	return q_is_stopped(q, c);
}

static bool q_can_run(const struct qvm *q, const struct qcpu *c)
{
	return !c->stop && !q_is_stopped(q, c);
}

/*
 * The vCPU thread's loop between two guest executions (mttcg_cpu_thread_fn
 * and kvm_vcpu_thread_fn): take the BQL, clear the exit request,
 * qemu_wait_io_event(), and go back to guest code once cpu_can_run().
 */
static bool q_enter(struct vcpu *v)
{
	struct world *w = v->w;
	struct qvm *q = qvm_of(w);
	struct qcpu *c = v->impl;

	pthread_mutex_lock(&q->bql);
	for (;;) {
		atomic_store_explicit(&c->exit_request, 0, memory_order_seq_cst);
		/* qemu_wait_io_event() */
		while (q_is_idle(q, c) && !atomic_load_explicit(&w->quit, memory_order_relaxed))
			pthread_cond_wait(&c->halt_cond, &q->bql);
		/* qemu_wait_io_event_common() */
		atomic_store_explicit(&c->thread_kicked, 0, memory_order_seq_cst);
		if (c->stop) {
			c->stop = false;
			c->stopped = true;
			pthread_cond_broadcast(&q->pause_cond);
		}
		if (atomic_load_explicit(&w->quit, memory_order_relaxed)) {
			pthread_mutex_unlock(&q->bql);
			return false;
		}
		if (q_can_run(q, c)) {
			pthread_mutex_unlock(&q->bql);
			return true;
		}
	}
}

/* TCG: cpu_exec() leaves at the next block boundary once exit_request is
 * set. */
static bool q_may_run(struct vcpu *v)
{
	struct qcpu *c = v->impl;

	return !atomic_load_explicit(&c->exit_request, memory_order_relaxed);
}

static bool q_all_paused(const struct qvm *q)
{
	for (unsigned i = 0; i < q->n; i++)
		if (!q->cpus[i].stopped)
			return false;
	return true;
}

/* do_vm_stop() + pause_all_vcpus() */
static void q_stop(struct world *w)
{
	struct qvm *q = qvm_of(w);

	pthread_mutex_lock(&q->bql);
	q->running = false;
	for (unsigned i = 0; i < q->n; i++) {
		q->cpus[i].stop = true;
		q_kick(q, w, i);
	}
	while (!q_all_paused(q)) {
		pthread_cond_wait(&q->pause_cond, &q->bql);
		for (unsigned i = 0; i < q->n; i++)
			q_kick(q, w, i);
	}
	pthread_mutex_unlock(&q->bql);
}

/* vm_prepare_start() + resume_all_vcpus() */
static void q_start(struct world *w)
{
	struct qvm *q = qvm_of(w);

	pthread_mutex_lock(&q->bql);
	q->running = true;
	for (unsigned i = 0; i < q->n; i++) {
		q->cpus[i].stop = false;
		q->cpus[i].stopped = false;
		q_kick(q, w, i);
	}
	pthread_mutex_unlock(&q->bql);
}

static void q_quit(struct world *w)
{
	struct qvm *q = qvm_of(w);

	pthread_mutex_lock(&q->bql);
	atomic_store_explicit(&w->quit, 1, memory_order_relaxed);
	for (unsigned i = 0; i < q->n; i++) {
		atomic_store_explicit(&q->cpus[i].thread_kicked, 0, memory_order_relaxed);
		q_kick(q, w, i);
	}
	pthread_mutex_unlock(&q->bql);
}

/* fastpath/qemu_condvar: TCG's check at each block, a load of the exit
 * request (QEMU reads icount_decr, set together with it). */
static void *q_fast_setup(void)
{
	struct qcpu *c = aligned_alloc(64, sizeof(*c));

	if (c)
		atomic_init(&c->exit_request, 0);
	return c;
}

static __attribute__((noinline)) unsigned q_fast_run(void *ctx, unsigned n)
{
	struct qcpu *c = ctx;

	for (unsigned i = 0; i < n; i++)
		if (__builtin_expect(atomic_load_explicit(&c->exit_request, memory_order_relaxed) != 0, 0))
			return i;
	return n;
}

static void q_fast_teardown(void *ctx)
{
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

/* SPDX-License-Identifier: MIT */
/*
 * runstate-bench with real vCPUs: the stop and start benchmarks on KVM
 * vCPUs executing guest code (stress/kvm's VM and guest), registered only
 * where the kvm module is built and /dev/kvm is usable.
 *
 *	stop/runstate_kvm/vcpus:<N>        rs_stop(rs, RS_FOREVER) until it
 *	                                   returns: every vCPU out of KVM_RUN
 *	start/runstate_kvm/vcpus:<N>       rs_start() until every vCPU's guest
 *	                                   counter moved again
 *	stop/qemu_condvar_kvm/vcpus:<N>    the same for the QEMU model below
 *	start/qemu_condvar_kvm/vcpus:<N>
 *
 * runstate_kvm is stress/kvm's vCPU loop unchanged (rk_vm_start_threads():
 * rs_vcpu_enter(), clear immediate_exit, rs_may_run(), KVM_RUN; the kick is
 * a signal whose handler sets immediate_exit).
 *
 * qemu_condvar_kvm is qemu_condvar's model (qemu_model.h: a big lock,
 * per-vCPU stop and stopped flags under it, a pause condition, a halt
 * condition per vCPU, a kick that signals unless thread_kicked; the very
 * code the simulated rows run) with QEMU's KVM vCPU loop
 * (kvm_vcpu_thread_fn / kvm_cpu_exec): drop the big lock, KVM_RUN until it
 * returns -EINTR, clear immediate_exit, take the big lock,
 * qemu_wait_io_event().  Its kick handler sets immediate_exit, as QEMU's
 * SIG_IPI handler does.  Same VM set-up and guest code (stress/kvm,
 * rk_vm_create()), the loop written here with rk_vcpu_fd() and
 * rk_vcpu_kvm_run().
 *
 * The guest never leaves by itself (io_shift 32): every exit is a kick, so
 * the rows measure the stop and start protocols and nothing else.  Nothing
 * is pinned.
 *
 * start runs from the start call until the last vCPU entered the KVM_RUN
 * that executed guest code, as stamped by the vCPU threads themselves (the
 * benchmark thread then sees every guest counter move: the proof, not the
 * time).  runstate_kvm's stamp is stress/kvm's (rk_vcpu_resume_ns(): the
 * first check passed since the start); qemu_condvar_kvm's is the entry of
 * the KVM_RUN in progress once the counter moved (its first KVM_RUN after a
 * resume usually returns at once: the resume's own kick set immediate_exit,
 * as in QEMU).
 *
 * Counters: p50_ns, p99_ns (every sample; the time reported is the mean);
 * on start, call_p50_ns (the start call alone) and seen_p50_ns (until the
 * benchmark thread saw the last counter move, its own delay included).
 * runstate_kvm's
 * rows also measure qemu_condvar_kvm alternately, sample by sample in the
 * same run (the world not measured waits stopped, its vCPUs asleep):
 * qemu_condvar_kvm_p50_ns and vs_qemu_condvar_kvm, the ratio of the p50s.
 *
 * Checks on every sample: after a stop returns, no vCPU thread is inside
 * KVM_RUN, and no guest counter moves until the start; after a start, every
 * counter moves within 10 s.  A violation fails the benchmark.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include <runstate.h>

#include "bench.h"
#include "kvm.h"
#include "qemu_model.h"
#include "shim.h"

#define KW_WAIT_LIMIT_NS 10000000000ull

/* Separate kick signals: SIGUSR1 is the simulated worlds' (bench.c), and
 * each handler is process-wide. */
#define KW_RS_SIGNAL SIGUSR2
#define KW_Q_SIGNAL (SIGRTMIN + 1)

struct kw;

struct kw_ops {
	const char *name;
	int (*up)(struct kw *w);
	void (*down)(struct kw *w);
	void (*stop)(struct kw *w);
	void (*start)(struct kw *w);
	bool (*in_run)(const struct kw *w, unsigned i);
	int (*tid)(const struct kw *w, unsigned i);
	void (*mark)(struct kw *w, uint64_t t);
	uint64_t (*resume_ns)(const struct kw *w, unsigned i);
};

struct qkvm;

/* A KVM world: one VM with n vCPU threads under one implementation. */
struct kw {
	const struct kw_ops *ops;
	unsigned n;
	rs_runstate *rs;
	struct rk_vm *vm;
	struct qkvm *q;
	uint32_t snap[RK_MAX_VCPUS];
};

static void kw_die(const char *what, int err)
{
	fprintf(stderr, "runstate-bench: %s: %s (%d)\n", what, rs_strerror(err), err);
	abort();
}

/* ---------------------------------------------------------------------------
 * runstate_kvm: stress/kvm's loop and the library
 */

static int rk_up(struct kw *w)
{
	struct rk_config cfg = {
		.nvcpus = w->n,
		.io_shift = 32,
		.kick_signal = KW_RS_SIGNAL,
	};
	int err;

	if ((err = rs_create(NULL, &w->rs)) != 0)
		return err;
	if ((err = rk_vm_create(w->rs, &cfg, &w->vm, NULL, 0)) != 0)
		goto fail_rs;
	if ((err = rk_vm_start_threads(w->vm)) != 0)
		goto fail_vm;
	if ((err = rs_start(w->rs, 0)) != 0) {
		rk_vm_join_threads(w->vm);
		goto fail_vm;
	}
	return 0;
fail_vm:
	rk_vm_destroy(w->vm);
fail_rs:
	rs_destroy(w->rs);
	return err;
}

static void rk_down(struct kw *w)
{
	(void)rs_stop(w->rs, RS_FOREVER);
	rk_vm_join_threads(w->vm);
	rk_vm_destroy(w->vm);
	rs_destroy(w->rs);
}

static void rk_stop(struct kw *w)
{
	int err = rs_stop(w->rs, RS_FOREVER);

	if (err)
		kw_die("rs_stop", err);
}

static void rk_start(struct kw *w)
{
	int err = rs_start(w->rs, 0);

	if (err)
		kw_die("rs_start", err);
}

static bool rk_in_run(const struct kw *w, unsigned i)
{
	return rk_vcpu_in_run(w->vm, i);
}

static int rk_tid(const struct kw *w, unsigned i)
{
	return rk_vcpu_tid(w->vm, i);
}

static void rk_mark(struct kw *w, uint64_t t)
{
	rk_vm_mark_resume(w->vm, t);
}

static uint64_t rk_resume(const struct kw *w, unsigned i)
{
	return rk_vcpu_resume_ns(w->vm, i);
}

static const struct kw_ops kw_runstate = {
	.name = "runstate_kvm",
	.up = rk_up, .down = rk_down, .stop = rk_stop, .start = rk_start,
	.in_run = rk_in_run, .tid = rk_tid, .mark = rk_mark, .resume_ns = rk_resume,
};

/* ---------------------------------------------------------------------------
 * qemu_condvar_kvm: QEMU's pause/resume and KVM vCPU loop, modelled
 */

/* The KVM side of a model vCPU (qm_cpu: the QEMU side). */
struct qkcpu {
	_Atomic uint32_t in_run;
	_Atomic int tid;
	_Atomic uint64_t mark_ns, enter_ns;  /* the latest KVM_RUN's entry */
	pthread_t thread;
	bool started;
	_Atomic uint32_t ready;
	int fd;
	struct kvm_run *run;
	struct qkvm *q;
	unsigned idx;
	int error;
} __attribute__((aligned(64)));

struct qkvm {
	struct qm m;                    /* qemu_model.h */
	int sig;
	struct qkcpu *cpus;
};

/* The handler's vCPU (initial-exec: no lazy TLS allocation in a handler). */
static _Thread_local struct kvm_run *tls_q_run __attribute__((tls_model("initial-exec")));

/* kvm_ipi_signal() -> kvm_cpu_kick(): a kick that lands before KVM_RUN
 * makes it return -EINTR at once; one inside KVM_RUN exits it by itself. */
static void q_kick_handler(int sig)
{
	struct kvm_run *run = tls_q_run;

	(void)sig;
	if (run)
		__atomic_store_n(&run->immediate_exit, 1, __ATOMIC_RELAXED);
}

/* The model's kick (cpus_kick_thread()), to threads that run. */
static void qk_signal(struct qm *m, unsigned i)
{
	struct qkvm *q = m->opaque;

	if (q->cpus[i].started)
		pthread_kill(q->cpus[i].thread, q->sig);
}

/* kvm_cpu_exec(), BQL not held: KVM_RUN until it returns -EINTR. */
static int qk_exec(struct qkcpu *c)
{
	struct kvm_run *run = c->run;

	for (;;) {
		int ret, err;

		/* Read by the benchmark once the guest counter moved: then
		 * this KVM_RUN is the one executing guest code (the guest
		 * never exits by itself; only a kick ends it). */
		atomic_store_explicit(&c->enter_ns, rsu_now_ns(), memory_order_relaxed);
		atomic_store_explicit(&c->in_run, 1, memory_order_relaxed);
		ret = ioctl(c->fd, KVM_RUN, 0);
		err = errno;
		atomic_store_explicit(&c->in_run, 0, memory_order_relaxed);
		if (ret < 0) {
			if (err == EINTR || err == EAGAIN) {
				/* kvm_eat_signals() with KVM_CAP_IMMEDIATE_EXIT */
				__atomic_store_n(&run->immediate_exit, 0, __ATOMIC_RELAXED);
				return 0;
			}
			return -err;
		}
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			/* The next KVM_RUN completes it. */
			if (run->io.direction == KVM_EXIT_IO_IN)
				((uint8_t *)run + run->io.data_offset)[0] = 0;
			break;
		case KVM_EXIT_MMIO:
			if (!run->mmio.is_write)
				run->mmio.data[0] = 0;
			break;
		case KVM_EXIT_INTR:
			__atomic_store_n(&run->immediate_exit, 0, __ATOMIC_RELAXED);
			return 0;
		default:
			return -EPROTO;
		}
	}
}

/* kvm_vcpu_thread_fn() */
static void *qk_thread(void *arg)
{
	struct qkcpu *c = arg;
	struct qkvm *q = c->q;
	struct qm *m = &q->m;
	struct qm_cpu *mc = &m->cpus[c->idx];
	sigset_t set;

	atomic_store_explicit(&c->tid, (int)syscall(SYS_gettid), memory_order_relaxed);
	tls_q_run = c->run;
	sigemptyset(&set);
	sigaddset(&set, q->sig);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	pthread_mutex_lock(&m->bql);
	atomic_store_explicit(&c->ready, 1, memory_order_release);
	while (!m->quit) {
		if (qm_can_run(m, mc)) {
			int r;

			pthread_mutex_unlock(&m->bql);
			r = qk_exec(c);
			pthread_mutex_lock(&m->bql);
			if (r) {
				/* Out for good: a stop must not wait for it. */
				c->error = r;
				mc->stopped = true;
				pthread_cond_broadcast(&m->pause_cond);
				break;
			}
		}
		qm_wait_io_event(m, mc);
	}
	pthread_mutex_unlock(&m->bql);
	tls_q_run = NULL;
	return NULL;
}

static void qk_join(struct kw *w)
{
	struct qkvm *q = w->q;

	qm_quit(&q->m);
	for (unsigned i = 0; i < w->n; i++)
		if (q->cpus[i].started)
			pthread_join(q->cpus[i].thread, NULL);
}

static void qk_free(struct kw *w)
{
	struct qkvm *q = w->q;

	if (w->vm)
		rk_vm_destroy(w->vm);
	if (w->rs)
		rs_destroy(w->rs);
	qm_fini(&q->m);
	free(q->cpus);
	free(q);
}

static void qk_start(struct kw *w)
{
	qm_resume_all(&w->q->m);
}

static int qk_up(struct kw *w)
{
	struct rk_config cfg = {
		.nvcpus = w->n,
		.io_shift = 32,
		.kick_signal = KW_Q_SIGNAL,
	};
	struct sigaction sa;
	struct qkvm *q;
	int err;

	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->cpus = aligned_alloc(64, sizeof(*q->cpus) * w->n);
	if (!q->cpus || qm_init(&q->m, w->n, qk_signal, q)) {
		free(q->cpus);
		free(q);
		return -ENOMEM;
	}
	memset(q->cpus, 0, sizeof(*q->cpus) * w->n);
	q->sig = KW_Q_SIGNAL;
	for (unsigned i = 0; i < w->n; i++)
		q->cpus[i].q = q;
	w->q = q;
	w->rs = NULL;
	w->vm = NULL;
	/* The VM and guest of stress/kvm; its instance is never used. */
	if ((err = rs_create(NULL, &w->rs)) != 0)
		goto fail;
	if ((err = rk_vm_create(w->rs, &cfg, &w->vm, NULL, 0)) != 0)
		goto fail;
	/* Replaces the handler rk_vm_create() installed for this signal. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = q_kick_handler;
	sigemptyset(&sa.sa_mask);
	if (sigaction(q->sig, &sa, NULL)) {
		err = -errno;
		goto fail;
	}
	for (unsigned i = 0; i < w->n; i++) {
		struct qkcpu *c = &q->cpus[i];

		c->fd = rk_vcpu_fd(w->vm, i);
		c->run = rk_vcpu_kvm_run(w->vm, i);
		c->idx = i;
	}
	for (unsigned i = 0; i < w->n; i++) {
		struct qkcpu *c = &q->cpus[i];

		if ((err = -pthread_create(&c->thread, NULL, qk_thread, c)) != 0) {
			qk_join(w);
			goto fail;
		}
		c->started = true;
	}
	for (unsigned i = 0; i < w->n; i++)
		while (!atomic_load_explicit(&q->cpus[i].ready, memory_order_acquire))
			sched_yield();
	qk_start(w);
	return 0;
fail:
	qk_free(w);
	return err;
}

static void qk_down(struct kw *w)
{
	qk_join(w);
	qk_free(w);
}

static void qk_stop(struct kw *w)
{
	qm_pause_all(&w->q->m);
}

static bool qk_in_run(const struct kw *w, unsigned i)
{
	return atomic_load_explicit(&w->q->cpus[i].in_run, memory_order_relaxed) != 0;
}

static int qk_tid(const struct kw *w, unsigned i)
{
	return atomic_load_explicit(&w->q->cpus[i].tid, memory_order_relaxed);
}

static void qk_mark(struct kw *w, uint64_t t)
{
	for (unsigned i = 0; i < w->n; i++)
		atomic_store_explicit(&w->q->cpus[i].mark_ns, t, memory_order_relaxed);
}

static uint64_t qk_resume(const struct kw *w, unsigned i)
{
	const struct qkcpu *c = &w->q->cpus[i];
	uint64_t e = atomic_load_explicit(&c->enter_ns, memory_order_relaxed);

	return e >= atomic_load_explicit(&c->mark_ns, memory_order_relaxed) ? e : 0;
}

static const struct kw_ops kw_qemu = {
	.name = "qemu_condvar_kvm",
	.up = qk_up, .down = qk_down, .stop = qk_stop, .start = qk_start,
	.in_run = qk_in_run, .tid = qk_tid, .mark = qk_mark, .resume_ns = qk_resume,
};

/* ---------------------------------------------------------------------------
 * Worlds and samples
 */

static const char *kw_wait_moved(struct kw *w, uint64_t t0, uint64_t *last);

static int kw_up(struct kw *w, const struct kw_ops *ops, unsigned n)
{
	uint64_t unused;
	int err;

	memset(w, 0, sizeof(*w));
	w->ops = ops;
	w->n = n;
	if ((err = ops->up(w)) != 0)
		return err;
	/* Running: wait until every vCPU executed guest code. */
	for (unsigned i = 0; i < n; i++)
		w->snap[i] = rk_guest_counter(w->vm, i);
	if (kw_wait_moved(w, rsu_now_ns(), &unused)) {
		ops->down(w);
		return -ETIMEDOUT;
	}
	return 0;
}

/* Wait until every guest counter differs from w->snap; *last: when the last
 * one was seen moving. */
static const char *kw_wait_moved(struct kw *w, uint64_t t0, uint64_t *last)
{
	const struct timespec nap = { 0, 20000 };
	bool moved[RK_MAX_VCPUS] = { false };
	unsigned left = w->n, spins = 0;

	while (left) {
		uint64_t now = rsu_now_ns();

		for (unsigned i = 0; i < w->n; i++) {
			if (moved[i] || rk_guest_counter(w->vm, i) == w->snap[i])
				continue;
			moved[i] = true;
			left--;
			*last = now;
		}
		if (!left)
			break;
		if (now - t0 > KW_WAIT_LIMIT_NS)
			return "vCPUs did not execute guest code again within 10 s";
		/* The vCPUs' own stamps are what start reports, so this
		 * thread need not notice at once: after a short spin it naps,
		 * leaving the CPUs to the vCPUs (on a 2-core machine a
		 * spinning watcher delays a woken vCPU by a scheduler tick). */
		if (++spins > 64)
			nanosleep(&nap, NULL);
		else
			rsu_cpu_relax();
	}
	return NULL;
}

/* Stop just returned: every vCPU out, counters frozen from now on. */
static const char *kw_check_out(struct kw *w)
{
	for (unsigned i = 0; i < w->n; i++)
		if (w->ops->in_run(w, i))
			return "a vCPU is inside KVM_RUN after the stop returned";
	for (unsigned i = 0; i < w->n; i++)
		w->snap[i] = rk_guest_counter(w->vm, i);
	return NULL;
}

static const char *kw_check_frozen(struct kw *w)
{
	for (unsigned i = 0; i < w->n; i++)
		if (rk_guest_counter(w->vm, i) != w->snap[i])
			return "guest code ran while the VM was stopped";
	return NULL;
}

static bool kw_all_sleeping(const struct kw *w)
{
	for (unsigned i = 0; i < w->n; i++)
		if (!rsb_thread_sleeping(w->ops->tid(w, i)))
			return false;
	return true;
}

/* After a stop: every vCPU thread asleep (seen twice, 30 us apart). */
static const char *kw_wait_parked(struct kw *w)
{
	const struct timespec nap = { 0, 30000 };
	uint64_t t0 = rsu_now_ns();

	for (;;) {
		if (kw_all_sleeping(w)) {
			nanosleep(&nap, NULL);
			if (kw_all_sleeping(w))
				return NULL;
		}
		if (rsu_now_ns() - t0 > KW_WAIT_LIMIT_NS)
			return "stopped vCPUs did not park within 10 s";
		nanosleep(&nap, NULL);
	}
}

/* From stopped (snap taken) to running again. */
static const char *kw_restart(struct kw *w)
{
	uint64_t unused;
	const char *err = kw_check_frozen(w);

	if (err)
		return err;
	w->ops->start(w);
	return kw_wait_moved(w, rsu_now_ns(), &unused);
}

enum kw_kind { KW_STOP, KW_START };

struct kw_sample {
	uint64_t ns, call_ns, seen_ns;
};

static const char *kw_one(enum kw_kind k, struct kw *w, struct kw_sample *s)
{
	const char *err;
	uint64_t t0, t1, t2, last = 0, entry = 0;

	if (k == KW_STOP) {
		t0 = rsu_now_ns();
		w->ops->stop(w);
		t1 = rsu_now_ns();
		s->ns = t1 - t0;
		if ((err = kw_check_out(w)))
			return err;
		return kw_restart(w);
	}
	w->ops->stop(w);
	if ((err = kw_check_out(w)) || (err = kw_wait_parked(w)) || (err = kw_check_frozen(w)))
		return err;
	t0 = rsu_now_ns();
	w->ops->mark(w, t0);
	w->ops->start(w);
	t2 = rsu_now_ns();
	if ((err = kw_wait_moved(w, t0, &last)))
		return err;
	for (unsigned i = 0; i < w->n; i++) {
		uint64_t e = w->ops->resume_ns(w, i);

		if (!e)
			return "a vCPU ran guest code without an entry stamp";
		if (e > entry)
			entry = e;
	}
	s->ns = entry > t0 ? entry - t0 : 0;
	s->call_ns = t2 - t0;
	s->seen_ns = last > t0 ? last - t0 : 0;
	return NULL;
}

/* ---------------------------------------------------------------------------
 * Benchmarks
 */

struct kbm {
	enum kw_kind kind;
	const struct kw_ops *ops, *ref;
	unsigned n;
};

static void bm_kvm(struct rsb_state *st, void *arg)
{
	const struct kbm *b = arg;
	struct rsb_samples smp = { 0 }, calls = { 0 }, seen = { 0 }, refs = { 0 };
	struct kw w, rw;
	const char *msg = NULL;

	if (rsb_samples_init(&smp, 1024, 0) || rsb_samples_init(&calls, 1024, 0) ||
	    rsb_samples_init(&seen, 1024, 0) || rsb_samples_init(&refs, 1024, 0)) {
		rsb_skip_with_error(st, "out of memory");
		goto out;
	}
	if (kw_up(&w, b->ops, b->n)) {
		rsb_skip_with_error(st, "cannot set up the KVM vCPUs");
		goto out;
	}
	if (b->ref) {
		if (kw_up(&rw, b->ref, b->n)) {
			w.ops->down(&w);
			rsb_skip_with_error(st, "cannot set up the reference's KVM vCPUs");
			goto out;
		}
		/* The reference waits stopped, asleep. */
		rw.ops->stop(&rw);
		msg = kw_check_out(&rw);
	}
	while (!msg && rsb_keep_running(st)) {
		struct kw_sample s = { 0 }, rs = { 0 };

		msg = kw_one(b->kind, &w, &s);
		rsb_set_iteration_time(st, (double)s.ns * 1e-9);
		if (!msg && b->ref) {
			/* Swap: the one measured runs alone. */
			w.ops->stop(&w);
			if (!(msg = kw_check_out(&w)) && !(msg = kw_restart(&rw)) &&
			    !(msg = kw_one(b->kind, &rw, &rs))) {
				rw.ops->stop(&rw);
				if (!(msg = kw_check_out(&rw)))
					msg = kw_restart(&w);
			}
		}
		if (msg)
			break;
		if (rsb_samples_add(&smp, s.ns) || rsb_samples_add(&calls, s.call_ns) ||
		    rsb_samples_add(&seen, s.seen_ns) || rsb_samples_add(&refs, rs.ns))
			msg = "out of memory";
	}
	if (msg)
		rsb_skip_with_error(st, msg);
	if (b->ref)
		rw.ops->down(&rw);
	w.ops->down(&w);
	if (!msg) {
		double p50 = rsb_samples_pct(&smp, 50);

		rsb_counter(st, "p50_ns", p50);
		rsb_counter(st, "p99_ns", rsb_samples_pct(&smp, 99));
		if (b->kind == KW_START) {
			rsb_counter(st, "call_p50_ns", rsb_samples_pct(&calls, 50));
			rsb_counter(st, "seen_p50_ns", rsb_samples_pct(&seen, 50));
		}
		if (b->ref) {
			double r50 = rsb_samples_pct(&refs, 50);
			char name[64];

			snprintf(name, sizeof(name), "%s_p50_ns", b->ref->name);
			rsb_counter(st, name, r50);
			snprintf(name, sizeof(name), "vs_%s", b->ref->name);
			rsb_counter(st, name, r50 > 0 ? p50 / r50 : 0);
		}
	}
out:
	rsb_samples_free(&smp);
	rsb_samples_free(&calls);
	rsb_samples_free(&seen);
	rsb_samples_free(&refs);
}

void rsb_kvm_register(const unsigned *ns, size_t nn)
{
	static const struct kw_ops *const impls[] = { &kw_runstate, &kw_qemu };
	static const char *const kinds[] = { [KW_STOP] = "stop", [KW_START] = "start" };
	char why[200] = "";

	if (rk_probe(NULL, why, sizeof(why)) != 0) {
		fprintf(stderr, "runstate-bench: KVM benchmarks not registered: %s\n", why);
		return;
	}
	for (unsigned k = KW_STOP; k <= KW_START; k++) {
		for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++) {
			for (size_t j = 0; j < nn; j++) {
				struct kbm *b = malloc(sizeof(*b));
				char name[128];

				if (!b || ns[j] > RK_MAX_VCPUS) {
					free(b);
					continue;
				}
				b->kind = (enum kw_kind)k;
				b->ops = impls[i];
				b->ref = impls[i] == &kw_runstate ? &kw_qemu : NULL;
				b->n = ns[j];
				snprintf(name, sizeof(name), "%s/%s/vcpus:%u", kinds[k],
					 impls[i]->name, ns[j]);
				rsb_register(name, bm_kvm, b, RSB_TIME_MANUAL);
			}
		}
	}
}

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
 *	stop/kick_floor_kvm/vcpus:<N>      the kick alone: signal every vCPU
 *	                                   out of KVM_RUN, spin until each
 *	                                   acknowledged
 *	start/kick_floor_kvm/vcpus:<N>     one FUTEX_WAKE per vCPU, until each
 *	                                   entered KVM_RUN again
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
 * the rows measure the stop and start protocols and nothing else.  With
 * fewer vCPUs than CPUs each vCPU thread is pinned to a CPU of its own and
 * the benchmark thread to the first (kw_up()); otherwise nothing is.
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
 * kick_floor_kvm is no emulator: its vCPU threads do only what any design
 * must do to let a kick take them out of KVM_RUN and to sleep while
 * stopped (the loop is drawn above kf_thread()), and its stop and start
 * only kick and wait, wake and wait.  It is the floor that runstate_kvm's
 * rows are set against.
 *
 * Counters: p50_ns, p99_ns (every sample; the time reported is the mean);
 * on start, call_p50_ns (the start call alone) and seen_p50_ns (until the
 * benchmark thread saw the last counter move, its own delay included); on
 * stop, stopper_sleeps_per_op (voluntary context switches of the stopping
 * thread inside the stop call, per sample).  runstate_kvm's rows also
 * measure qemu_condvar_kvm and kick_floor_kvm alternately, sample by
 * sample in the same run (runstate_kvm, the model, the floor, again; the
 * worlds not measured wait stopped, their vCPUs asleep):
 * qemu_condvar_kvm_p50_ns, vs_qemu_condvar_kvm, kick_floor_kvm_p50_ns and
 * vs_kick_floor_kvm, the ratios of the p50s.
 *
 * Checks on every sample: after a stop returns, no vCPU thread is inside
 * KVM_RUN, and no guest counter moves until the start; after a start, every
 * counter moves within 10 s.  A violation fails the benchmark.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
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
#define KW_KF_SIGNAL (SIGRTMIN + 2)

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
struct kfloor;

/* A KVM world: one VM with n vCPU threads under one implementation. */
struct kw {
	const struct kw_ops *ops;
	unsigned n;
	rs_runstate *rs;
	struct rk_vm *vm;
	struct qkvm *q;
	struct kfloor *f;
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
/*
 * What the benchmark reads of a vCPU thread of qemu_condvar_kvm and of
 * kick_floor_kvm (runstate_kvm's are stress/kvm's): whether it is in
 * KVM_RUN, its thread id, and when it entered KVM_RUN (enter_ns) after
 * the benchmark's mark (mark_ns).  Relaxed: timestamps and hints.
 */
struct kstamp {
	_Atomic uint32_t in_run;
	_Atomic int tid;
	_Atomic uint64_t mark_ns, enter_ns;
};

struct qkcpu {
	struct kstamp st;               /* enter_ns: the latest KVM_RUN's entry */
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
		atomic_store_explicit(&c->st.enter_ns, rsu_now_ns(), memory_order_relaxed);
		atomic_store_explicit(&c->st.in_run, 1, memory_order_relaxed);
		ret = ioctl(c->fd, KVM_RUN, 0);
		err = errno;
		atomic_store_explicit(&c->st.in_run, 0, memory_order_relaxed);
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

	atomic_store_explicit(&c->st.tid, (int)syscall(SYS_gettid), memory_order_relaxed);
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

static struct kstamp *kw_stamp(const struct kw *w, unsigned i);

static bool ks_in_run(const struct kw *w, unsigned i)
{
	return atomic_load_explicit(&kw_stamp(w, i)->in_run, memory_order_relaxed) != 0;
}

static int ks_tid(const struct kw *w, unsigned i)
{
	return atomic_load_explicit(&kw_stamp(w, i)->tid, memory_order_relaxed);
}

static void ks_mark(struct kw *w, uint64_t t)
{
	for (unsigned i = 0; i < w->n; i++)
		atomic_store_explicit(&kw_stamp(w, i)->mark_ns, t, memory_order_relaxed);
}

/* The entry after the mark, or 0 if there was none yet. */
static uint64_t ks_resume(const struct kw *w, unsigned i)
{
	const struct kstamp *st = kw_stamp(w, i);
	uint64_t e = atomic_load_explicit(&st->enter_ns, memory_order_relaxed);

	return e >= atomic_load_explicit(&st->mark_ns, memory_order_relaxed) ? e : 0;
}

static const struct kw_ops kw_qemu = {
	.name = "qemu_condvar_kvm",
	.up = qk_up, .down = qk_down, .stop = qk_stop, .start = qk_start,
	.in_run = ks_in_run, .tid = ks_tid, .mark = ks_mark, .resume_ns = ks_resume,
};

/* ---------------------------------------------------------------------------
 * kick_floor_kvm: the kick and the wait, nothing else
 *
 * What every design must pay to take a KVM vCPU out of guest code and put
 * it back, with no run state, no registry, no settling:
 *
 *	vCPU thread                          stop (benchmark thread)
 *	loop:                                for each vCPU: seq = odd (stopped)
 *	  s = seq                            for each vCPU: pthread_kill
 *	  if s odd: acked = s, futex_wait    for each vCPU: spin until acked == seq
 *	  immediate_exit = 0
 *	  if seq != s: again                 start
 *	  KVM_RUN (until a kick: -EINTR)     for each vCPU: seq = even, FUTEX_WAKE 1
 *
 * The re-check of seq after clearing immediate_exit is the handshake every
 * correct loop needs (kvm.h): a kick that lands before the clear is erased
 * by it, but its stopper changed seq first, so the re-check sees that; one
 * that lands after the clear leaves immediate_exit set, and KVM_RUN returns
 * -EINTR at once.  The handler is q_kick_handler() (it only sets
 * immediate_exit).  Stopped vCPUs sleep at once (no spin before parking),
 * each on its own word: start is one FUTEX_WAKE per vCPU, as the issue
 * asks, and as runstate's per-vCPU park words are.
 * ---------------------------------------------------------------------------
 */

/* One floor vCPU.  seq is the management thread's and the futex, on a
 * line of its own; the rest is the vCPU thread's (acked, read by the
 * stopper) or read-mostly. */
struct kfcpu {
	_Atomic uint32_t seq;           /* odd while stopped; the futex */
	char pad0[60];
	_Atomic uint32_t acked;         /* the odd seq the vCPU went out for */
	struct kstamp st;               /* enter_ns: the first entry after the mark */
	_Atomic uint32_t ready;
	pthread_t thread;
	bool started;
	int fd;
	struct kvm_run *run;
	struct kfloor *f;
	int error;
} __attribute__((aligned(64)));

struct kfloor {
	_Atomic uint32_t quit;
	struct kfcpu *cpus;
};

/* The loop above; returns with the floor quitting or on a KVM_RUN error. */
static void *kf_thread(void *arg)
{
	struct kfcpu *c = arg;
	struct kvm_run *run = c->run;
	sigset_t set;

	atomic_store_explicit(&c->st.tid, (int)syscall(SYS_gettid), memory_order_relaxed);
	tls_q_run = run;
	sigemptyset(&set);
	sigaddset(&set, KW_KF_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	atomic_store_explicit(&c->ready, 1, memory_order_release);

	while (!atomic_load_explicit(&c->f->quit, memory_order_acquire)) {
		/* Acquire: pairs with kf_start()'s release store (whatever
		 * the management thread did while stopped is seen). */
		uint32_t s = atomic_load_explicit(&c->seq, memory_order_acquire);
		int ret, err;

		if (s & 1) {
			/* Out of KVM_RUN.  Release: pairs with kf_stop()'s
			 * acquire load; the stopper that sees this sees the
			 * guest's writes (the counter) final. */
			if (atomic_load_explicit(&c->acked, memory_order_relaxed) != s)
				atomic_store_explicit(&c->acked, s, memory_order_release);
			rsu_futex_wait((uint32_t *)&c->seq, s, -1);
			continue;
		}
		__atomic_store_n(&run->immediate_exit, 0, __ATOMIC_RELAXED);
		/* The clear stays before the re-check (the handler runs on
		 * this thread: a signal fence orders them). */
		atomic_signal_fence(memory_order_seq_cst);
		if (atomic_load_explicit(&c->seq, memory_order_relaxed) != s)
			continue;
		/* The start stamp, as stress/kvm's loop takes it: the check
		 * passed, KVM_RUN follows. */
		if (atomic_load_explicit(&c->st.enter_ns, memory_order_relaxed) <
		    atomic_load_explicit(&c->st.mark_ns, memory_order_relaxed))
			atomic_store_explicit(&c->st.enter_ns, rsu_now_ns(), memory_order_relaxed);
		atomic_store_explicit(&c->st.in_run, 1, memory_order_relaxed);
		ret = ioctl(c->fd, KVM_RUN, 0);
		err = errno;
		atomic_store_explicit(&c->st.in_run, 0, memory_order_relaxed);
		if (ret < 0 && (err == EINTR || err == EAGAIN))
			continue;
		if (ret < 0) {
			c->error = -err;
			break;
		}
		/* io_shift 32: the guest leaves by itself once every 2^32
		 * iterations; the next KVM_RUN completes the exit. */
		if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_IN)
			((uint8_t *)run + run->io.data_offset)[0] = 0;
		else if (run->exit_reason == KVM_EXIT_MMIO && !run->mmio.is_write)
			run->mmio.data[0] = 0;
		else if (run->exit_reason != KVM_EXIT_IO && run->exit_reason != KVM_EXIT_MMIO &&
			 run->exit_reason != KVM_EXIT_INTR) {
			c->error = -EPROTO;
			break;
		}
	}
	/* Out for good: a stop must not wait for this vCPU. */
	atomic_store_explicit(&c->acked, UINT32_MAX, memory_order_release);
	tls_q_run = NULL;
	return NULL;
}

static void kf_stop(struct kw *w)
{
	struct kfloor *f = w->f;

	for (unsigned i = 0; i < w->n; i++) {
		struct kfcpu *c = &f->cpus[i];

		/* seq_cst: before the kick (the signal's delivery then
		 * orders it before the handler, and the vCPU's re-check). */
		atomic_store_explicit(&c->seq, atomic_load_explicit(&c->seq,
								    memory_order_relaxed) + 1,
				      memory_order_seq_cst);
	}
	for (unsigned i = 0; i < w->n; i++)
		pthread_kill(f->cpus[i].thread, KW_KF_SIGNAL);
	for (unsigned i = 0; i < w->n; i++) {
		struct kfcpu *c = &f->cpus[i];
		uint32_t s = atomic_load_explicit(&c->seq, memory_order_relaxed), a;

		/* Acquire: pairs with kf_thread()'s release store of acked. */
		for (unsigned k = 0;
		     (a = atomic_load_explicit(&c->acked, memory_order_acquire)) != s &&
		     a != UINT32_MAX; k++) {
			rsu_cpu_relax();
			/* Where nothing is pinned (as many vCPUs as CPUs),
			 * the kicked vCPU's thread may be waiting for this
			 * very CPU to handle its exit: unpinned and without
			 * this yield, a stop/kick_floor_kvm/vcpus:1 run had
			 * a p50 of 4 ms, a scheduler tick.  With nobody else
			 * runnable here the yield returns at once. */
			if ((k & 63) == 63)
				sched_yield();
		}
	}
}

static void kf_start(struct kw *w)
{
	struct kfloor *f = w->f;

	for (unsigned i = 0; i < w->n; i++) {
		struct kfcpu *c = &f->cpus[i];

		/* Release: pairs with kf_thread()'s acquire load of seq. */
		atomic_store_explicit(&c->seq, atomic_load_explicit(&c->seq,
								    memory_order_relaxed) + 1,
				      memory_order_release);
		rsu_futex_wake((uint32_t *)&c->seq, 1);
	}
}

static void kf_join(struct kw *w)
{
	struct kfloor *f = w->f;

	atomic_store_explicit(&f->quit, 1, memory_order_seq_cst);
	for (unsigned i = 0; i < w->n; i++) {
		struct kfcpu *c = &f->cpus[i];

		if (!c->started)
			continue;
		/* Out of KVM_RUN and out of the futex wait: an odd seq and a
		 * kick, then a changed seq and a wake, until it returns. */
		while (atomic_load_explicit(&c->acked, memory_order_acquire) != UINT32_MAX) {
			const struct timespec ms = { 0, 1000000 };

			atomic_fetch_add_explicit(&c->seq, 1, memory_order_seq_cst);
			pthread_kill(c->thread, KW_KF_SIGNAL);
			rsu_futex_wake((uint32_t *)&c->seq, 1);
			nanosleep(&ms, NULL);
		}
		pthread_join(c->thread, NULL);
	}
}

static void kf_free(struct kw *w)
{
	if (w->vm)
		rk_vm_destroy(w->vm);
	if (w->rs)
		rs_destroy(w->rs);
	free(w->f->cpus);
	free(w->f);
}

static int kf_up(struct kw *w)
{
	struct rk_config cfg = {
		.nvcpus = w->n,
		.io_shift = 32,
		.kick_signal = KW_KF_SIGNAL,
	};
	struct sigaction sa;
	struct kfloor *f;
	int err;

	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->cpus = aligned_alloc(64, sizeof(*f->cpus) * w->n);
	if (!f->cpus) {
		free(f);
		return -ENOMEM;
	}
	memset(f->cpus, 0, sizeof(*f->cpus) * w->n);
	w->f = f;
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
	if (sigaction(KW_KF_SIGNAL, &sa, NULL)) {
		err = -errno;
		goto fail;
	}
	for (unsigned i = 0; i < w->n; i++) {
		struct kfcpu *c = &f->cpus[i];

		c->fd = rk_vcpu_fd(w->vm, i);
		c->run = rk_vcpu_kvm_run(w->vm, i);
		c->f = f;
	}
	for (unsigned i = 0; i < w->n; i++) {
		struct kfcpu *c = &f->cpus[i];

		if ((err = -pthread_create(&c->thread, NULL, kf_thread, c)) != 0) {
			kf_join(w);
			goto fail;
		}
		c->started = true;
	}
	for (unsigned i = 0; i < w->n; i++)
		while (!atomic_load_explicit(&f->cpus[i].ready, memory_order_acquire))
			sched_yield();
	return 0;
fail:
	kf_free(w);
	return err;
}

static void kf_down(struct kw *w)
{
	kf_join(w);
	kf_free(w);
}

static struct kstamp *kw_stamp(const struct kw *w, unsigned i)
{
	return w->q ? &w->q->cpus[i].st : &w->f->cpus[i].st;
}

static const struct kw_ops kw_kick_floor = {
	.name = "kick_floor_kvm",
	.up = kf_up, .down = kf_down, .stop = kf_stop, .start = kf_start,
	.in_run = ks_in_run, .tid = ks_tid, .mark = ks_mark, .resume_ns = ks_resume,
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
	/*
	 * With fewer vCPUs than CPUs, every vCPU thread on a CPU of its own
	 * and the benchmark (management) thread on the first, as the
	 * simulated worlds are (world.c), and as the goals are judged.
	 * Unpinned, the scheduler now and then put the stopper and the
	 * vCPU it kicked on one CPU: a stopper that spins then waits for a
	 * time slice (stop/kick_floor_kvm/vcpus:1 once had a p50 of 4 ms).
	 * Otherwise nothing is pinned.
	 */
	if (n < rsu_ncpus()) {
		for (unsigned i = 0; i < n; i++) {
			cpu_set_t set;

			CPU_ZERO(&set);
			CPU_SET(rsu_cpu_id(i + 1), &set);
			sched_setaffinity(ops->tid(w, i), sizeof(set), &set);
		}
		rsu_pin_self(0);
	} else {
		rsu_unpin_self();
	}
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

/*
 * After a stop: every vCPU thread asleep, for exactly KW_PARKED_NS, as
 * rsb_wait_parked() does for the simulated vCPUs (world.c says why): how
 * long a CPU has been idle decides how long waking it takes, so the start
 * must come the same time after every world's vCPUs fell asleep.  Until the
 * kick floor came, this polled with 30 us naps, and a world whose vCPUs
 * spin before they sleep (runstate's park) was started up to a nap later
 * than one whose vCPUs sleep at once.  Polls without napping while every
 * thread has a CPU of its own (fewer vCPUs than CPUs); else naps, leaving
 * the CPUs to the vCPUs still on their way to sleep.
 */
#define KW_PARKED_NS 100000ull

static const char *kw_wait_parked(struct kw *w)
{
	const struct timespec nap = { 0, 20000 };
	bool oversub = w->n >= rsu_ncpus();
	uint64_t t0 = rsu_now_ns();

	for (;;) {
		if (kw_all_sleeping(w)) {
			uint64_t t1 = rsu_now_ns();

			while (rsu_now_ns() - t1 < KW_PARKED_NS)
				if (oversub)
					sched_yield();
				else
					rsu_cpu_relax();
			if (kw_all_sleeping(w))
				return NULL;
		}
		if (rsu_now_ns() - t0 > KW_WAIT_LIMIT_NS)
			return "stopped vCPUs did not park within 10 s";
		if (oversub)
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
	uint64_t sleeps;        /* stop: the stopper's voluntary context switches */
};

/* Voluntary context switches of the calling thread so far: how often it
 * slept (a futex wait, a blocking system call). */
static uint64_t kw_own_sleeps(void)
{
	struct rusage ru;

	return getrusage(RUSAGE_THREAD, &ru) ? 0 : (uint64_t)ru.ru_nvcsw;
}

static const char *kw_one(enum kw_kind k, struct kw *w, struct kw_sample *s)
{
	const char *err;
	uint64_t t0, t1, t2, last = 0, entry = 0;

	if (k == KW_STOP) {
		/* Read outside the timed region (a system call each). */
		uint64_t v0 = kw_own_sleeps();

		t0 = rsu_now_ns();
		w->ops->stop(w);
		t1 = rsu_now_ns();
		s->ns = t1 - t0;
		s->sleeps = kw_own_sleeps() - v0;
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

#define KW_MAX_REFS 2

struct kbm {
	enum kw_kind kind;
	const struct kw_ops *ops;
	/* Measured alternately, sample by sample, in the same run; NULL
	 * ends the list. */
	const struct kw_ops *ref[KW_MAX_REFS + 1];
	unsigned n;
};

/* Swap from world a (running) to world b (stopped), so that the one
 * measured next runs alone; the other waits stopped, its vCPUs asleep. */
static const char *kw_swap(struct kw *a, struct kw *b)
{
	const char *msg;

	a->ops->stop(a);
	if ((msg = kw_check_out(a)))
		return msg;
	return kw_restart(b);
}

static void bm_kvm(struct rsb_state *st, void *arg)
{
	const struct kbm *b = arg;
	struct rsb_samples smp = { 0 }, calls = { 0 }, seen = { 0 }, refs[KW_MAX_REFS] = { { 0 } };
	struct kw w, rw[KW_MAX_REFS];
	unsigned nref = 0, up = 0;
	const char *msg = NULL;
	uint64_t sleeps = 0, iters = 0;
	/* Every sample in order, for a closer look (docs/performance.md):
	 * its time and the stopper's sleeps, then each reference's. */
	const char *log_path = getenv("RSB_SAMPLE_LOG");
	FILE *log = log_path && *log_path ? fopen(log_path, "a") : NULL;

	while (nref < KW_MAX_REFS && b->ref[nref])
		nref++;
	if (rsb_samples_init(&smp, 1024, 0) || rsb_samples_init(&calls, 1024, 0) ||
	    rsb_samples_init(&seen, 1024, 0)) {
		rsb_skip_with_error(st, "out of memory");
		goto out;
	}
	for (unsigned r = 0; r < nref; r++)
		if (rsb_samples_init(&refs[r], 1024, 0)) {
			rsb_skip_with_error(st, "out of memory");
			goto out;
		}
	if (kw_up(&w, b->ops, b->n)) {
		rsb_skip_with_error(st, "cannot set up the KVM vCPUs");
		goto out;
	}
	for (; up < nref; up++) {
		if (kw_up(&rw[up], b->ref[up], b->n)) {
			for (unsigned r = 0; r < up; r++)
				rw[r].ops->down(&rw[r]);
			w.ops->down(&w);
			rsb_skip_with_error(st, "cannot set up the reference's KVM vCPUs");
			goto out;
		}
		/* The references wait stopped, asleep. */
		rw[up].ops->stop(&rw[up]);
		if (!msg)
			msg = kw_check_out(&rw[up]);
	}
	while (!msg && rsb_keep_running(st)) {
		struct kw_sample s = { 0 }, rs[KW_MAX_REFS] = { { 0 } };

		msg = kw_one(b->kind, &w, &s);
		rsb_set_iteration_time(st, (double)s.ns * 1e-9);
		/* Each reference's sample right after this one: w, then
		 * each reference in turn, then back to w. */
		for (unsigned r = 0; r < nref && !msg; r++) {
			struct kw *from = r ? &rw[r - 1] : &w;

			if (!(msg = kw_swap(from, &rw[r])))
				msg = kw_one(b->kind, &rw[r], &rs[r]);
			if (!msg && r == nref - 1)
				msg = kw_swap(&rw[r], &w);
		}
		if (msg)
			break;
		if (rsb_samples_add(&smp, s.ns) || rsb_samples_add(&calls, s.call_ns) ||
		    rsb_samples_add(&seen, s.seen_ns))
			msg = "out of memory";
		sleeps += s.sleeps;
		iters++;
		if (log) {
			fprintf(log, "%s/%s/vcpus:%u\t%llu\t%llu\t%llu",
				b->kind == KW_STOP ? "stop" : "start", b->ops->name, b->n,
				(unsigned long long)(iters - 1), (unsigned long long)s.ns,
				(unsigned long long)s.sleeps);
			for (unsigned r = 0; r < nref; r++)
				fprintf(log, "\t%llu\t%llu", (unsigned long long)rs[r].ns,
					(unsigned long long)rs[r].sleeps);
			fputc('\n', log);
		}
		for (unsigned r = 0; r < nref && !msg; r++)
			if (rsb_samples_add(&refs[r], rs[r].ns))
				msg = "out of memory";
	}
	if (msg)
		rsb_skip_with_error(st, msg);
	for (unsigned r = 0; r < nref; r++)
		rw[r].ops->down(&rw[r]);
	w.ops->down(&w);
	if (!msg) {
		double p50 = rsb_samples_pct(&smp, 50);

		rsb_counter(st, "p50_ns", p50);
		rsb_counter(st, "p99_ns", rsb_samples_pct(&smp, 99));
		if (b->kind == KW_START) {
			rsb_counter(st, "call_p50_ns", rsb_samples_pct(&calls, 50));
			rsb_counter(st, "seen_p50_ns", rsb_samples_pct(&seen, 50));
		}
		/* Did the stop call sleep?  A stopper that sleeps until the
		 * last acknowledgement wakes it pays that wake-up on top of
		 * the kick (docs/performance.md, the kick floor). */
		if (b->kind == KW_STOP && iters)
			rsb_counter(st, "stopper_sleeps_per_op", (double)sleeps / (double)iters);
		for (unsigned r = 0; r < nref; r++) {
			double r50 = rsb_samples_pct(&refs[r], 50);
			char name[64];

			snprintf(name, sizeof(name), "%s_p50_ns", b->ref[r]->name);
			rsb_counter(st, name, r50);
			snprintf(name, sizeof(name), "vs_%s", b->ref[r]->name);
			rsb_counter(st, name, r50 > 0 ? p50 / r50 : 0);
		}
	}
out:
	rsb_samples_free(&smp);
	rsb_samples_free(&calls);
	rsb_samples_free(&seen);
	for (unsigned r = 0; r < nref; r++)
		rsb_samples_free(&refs[r]);
	if (log)
		fclose(log);
	rsu_unpin_self();
}

void rsb_kvm_register(const unsigned *ns, size_t nn)
{
	static const struct kw_ops *const impls[] = { &kw_runstate, &kw_qemu, &kw_kick_floor };
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
				/* runstate_kvm against the QEMU model and the
				 * kick itself (the floor every design pays). */
				memset(b->ref, 0, sizeof(b->ref));
				if (impls[i] == &kw_runstate) {
					b->ref[0] = &kw_qemu;
					b->ref[1] = &kw_kick_floor;
				}
				b->n = ns[j];
				snprintf(name, sizeof(name), "%s/%s/vcpus:%u", kinds[k],
					 impls[i]->name, ns[j]);
				rsb_register(name, bm_kvm, b, RSB_TIME_MANUAL);
			}
		}
	}
}

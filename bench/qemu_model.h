/* SPDX-License-Identifier: MIT */
/*
 * A model of QEMU's pause_all_vcpus() / resume_all_vcpus() (system/cpus.c)
 * and of the vCPU thread's wait around them, written from the description
 * in anchors.md, for two benchmark rows: qemu_condvar (impl_qemu.c,
 * simulated vCPUs, TCG or KVM kicks) and qemu_condvar_kvm (bench_kvm.c,
 * real KVM vCPUs).  impl_qemu.c holds the code.
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
 * Beside it, a model of QEMU 7.2's exclusive sections (cpus-common.c:
 * start_exclusive(), end_exclusive(), cpu_exec_start(), cpu_exec_end()),
 * for the rows exclusive/qemu_exclusive and fastpath/qemu_exclusive.  It is
 * written from a description of that code (the list below), not copied
 * from it: QEMU is GPL-2.0-only, this file is MIT.  impl_qemu.c holds it
 * too.
 *
 * - one mutex (qemu_cpu_list_lock), a count of the CPUs a section waits
 *   for plus one (pending_cpus; 0 when no section is pending), and two
 *   conditions: exclusive_cond (the section's owner waits for the count to
 *   fall to 1) and exclusive_resume (everyone else waits for it to be 0);
 * - per vCPU: running (inside cpu_exec(), written by the vCPU itself) and
 *   has_waiter (counted by a pending section, under the mutex);
 * - a vCPU brackets guest execution with cpu_exec_start() and
 *   cpu_exec_end(), each a store of running, a full fence and a load (of
 *   pending_cpus, of has_waiter); the mutex only when that load is set:
 *   then cpu_exec_start(), unless the section counted this vCPU already
 *   (has_waiter), clears running, waits for pending_cpus to be 0
 *   (exclusive_idle()) and sets running again; cpu_exec_end(), if
 *   has_waiter is still set, clears it and decrements pending_cpus,
 *   signalling exclusive_cond when that leaves 1;
 * - start_exclusive(): under the mutex, wait for any other section to end,
 *   pending_cpus = 1, full fence, then for each other vCPU seen running:
 *   has_waiter = true, kick it (qemu_cpu_kick(): exit_request), count it;
 *   publish the count and wait on exclusive_cond until it is 1;
 * - end_exclusive(): under the mutex, pending_cpus = 0 and broadcast
 *   exclusive_resume.
 */
#ifndef RSB_QEMU_MODEL_H
#define RSB_QEMU_MODEL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* A vCPU: the parts of QEMU's CPUState that pause, resume and exclusive
 * sections use. */
struct qm_cpu {
	bool stop;                      /* BQL */
	bool stopped;                   /* BQL */
	/* Exclusive sections: inside cpu_exec() (the vCPU's own stores), and
	 * counted by a pending section (qemu_cpu_list_lock; read without it
	 * by cpu_exec_end()). */
	_Atomic bool running;
	_Atomic bool has_waiter;
	_Atomic uint32_t exit_request;  /* TCG: cpu_exit() */
	_Atomic uint32_t thread_kicked;
	pthread_cond_t halt_cond;
} __attribute__((aligned(64)));

struct qm {
	pthread_mutex_t bql;
	pthread_cond_t pause_cond;
	bool running;                   /* BQL: runstate_is_running() */
	bool quit;                      /* BQL: the threads end */
	unsigned n;
	struct qm_cpu *cpus;            /* n of them, created stopped */
	/* The KVM kick (cpus_kick_thread()): signal vCPU i's thread.  NULL:
	 * the TCG kick, cpu_exit() (set exit_request, which the vCPU checks
	 * between slices). */
	void (*signal)(struct qm *q, unsigned i);
	void *opaque;                   /* for signal() */

	/* Exclusive sections (cpus-common.c). */
	pthread_mutex_t cpu_list_lock;
	pthread_cond_t exclusive_cond;
	pthread_cond_t exclusive_resume;
	/* Written under cpu_list_lock; read without it by cpu_exec_start(). */
	_Atomic int pending_cpus;
};

/* 0 or -ENOMEM. */
int qm_init(struct qm *q, unsigned n, void (*signal)(struct qm *q, unsigned i), void *opaque);
void qm_fini(struct qm *q);

/* qemu_cpu_kick(), BQL held. */
void qm_kick(struct qm *q, unsigned i);
/* cpu_can_run(), BQL held. */
bool qm_can_run(const struct qm *q, const struct qm_cpu *c);
/* qemu_wait_io_event() + qemu_wait_io_event_common(), BQL held: sleep while
 * idle and not quitting, then acknowledge a stop. */
void qm_wait_io_event(struct qm *q, struct qm_cpu *c);

/* do_vm_stop() + pause_all_vcpus(): returns once every vCPU is stopped. */
void qm_pause_all(struct qm *q);
/* vm_prepare_start() + resume_all_vcpus(). */
void qm_resume_all(struct qm *q);
/* End the vCPU threads' loops: quit, and kick every vCPU. */
void qm_quit(struct qm *q);

/* cpu_exec_start() / cpu_exec_end(), on vCPU c's thread around guest
 * execution: the first may wait (exclusive_idle()) for a section to end. */
void qm_cpu_exec_start(struct qm *q, struct qm_cpu *c);
void qm_cpu_exec_end(struct qm *q, struct qm_cpu *c);
/* start_exclusive() on vCPU self's thread, outside cpu_exec() (self NULL:
 * not a vCPU thread); returns once every other vCPU is out of cpu_exec().
 * end_exclusive() lets them back in. */
void qm_start_exclusive(struct qm *q, const struct qm_cpu *self);
void qm_end_exclusive(struct qm *q);

#endif

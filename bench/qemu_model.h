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
 */
#ifndef RSB_QEMU_MODEL_H
#define RSB_QEMU_MODEL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* A vCPU: the parts of QEMU's CPUState that pause and resume use. */
struct qm_cpu {
	bool stop;                      /* BQL */
	bool stopped;                   /* BQL */
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

#endif

/* SPDX-License-Identifier: MIT */
/*
 * The KVM harness's own definitions, shared by kvm.c (setup, threads,
 * readers) and kvm_loop.c (the kick, exits, the vCPU loop).
 */
#ifndef RS_KVM_PRIV_H
#define RS_KVM_PRIV_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "kvm.h"
#include "rsutil.h"

#define GUEST_MEM_SIZE 0x8000u   /* backed: 0..0x7fff; 0x8000 is MMIO */
#define TSS_ADDR       0xfffbd000u

/* The guest code's instructions, at these offsets from RK_GUEST_CODE
 * (kvm.c checks them against the code). */
enum {
	OFF_LOOP = 0x00,
	OFF_OUT = 0x08,
	OFF_IN = 0x0a,
	OFF_HLT = 0x10,
	OFF_MMIO_W = 0x11,
	OFF_MMIO_R = 0x15,
	OFF_END = 0x1a,
};

/* What the handler is interrupting: inside the window between the check
 * and KVM_RUN, or not. */
#define PHASE_NONE   0
#define PHASE_WINDOW 1

struct rk_vcpu {
	rs_vcpu rsv;                 /* first: 64-byte aligned */
	struct rk_vm *vm;
	unsigned idx;
	int fd;
	struct kvm_run *run;
	pthread_t thread;            /* set by the vCPU thread itself */
	pthread_t joinable;          /* set by rk_vm_start_threads() */
	atomic_int tid;
	bool thread_started;
	atomic_bool registered, exited;
	/* Read by the signal handler on this thread only. */
	volatile sig_atomic_t phase;
	atomic_uint in_run;
	/* Exit being handled (for rk_vcpu_describe). */
	atomic_int cur_exit;
	_Atomic uint64_t cur_exit_addr, cur_exit_ns;
	uint64_t exit_seq;
	uint32_t in_seq, mmio_seq;
	/* Statistics.  Single writer each (this thread, or its signal handler,
	 * which the same signal cannot interrupt), except kicks_sent. */
	_Atomic uint64_t runs, entries, eintr, exits_out, exits_in, exits_mmio_w, exits_mmio_r,
		exits_hlt, completions, kicks_sent, signals, window_kicks, lost_kicks;
	/* Kick to handler latency: when the last kick was sent, and the sum
	 * over handled signals. */
	_Atomic uint64_t kick_sent_ns, kick_lat_sum_ns;
	/* The first check that passed at or after mark_ns (benchmarks). */
	_Atomic uint64_t mark_ns, resume_ns;
	int error;
	char errmsg[160];
} __attribute__((aligned(64)));

struct rk_vm {
	rs_runstate *rs;
	struct rk_config cfg;
	int sig;
	int kvm_fd, vm_fd;
	uint8_t *mem;
	size_t run_size;
	unsigned n;
	atomic_int first_error;       /* index + 1 of the first failing vCPU */
	struct rk_vcpu *vcpus;        /* n of them */
};

/* Single-writer counter increment: no locked instruction on the hot path. */
static inline void bump(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

/* kvm_loop.c: install the kick signal's handler.  0 or -errno. */
int rk_kick_install(int sig);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * A minimal KVM host for runstate: a VM with N vCPUs, each running a few
 * bytes of real-mode guest code in a tight loop, each vCPU thread wired to
 * the library the way a production emulator is (docs/integration.md).
 *
 * The guest (at 0x1000, shared by every vCPU; BX and ECX differ per vCPU):
 *
 *	loop:	inc  dword [bx]          ; this vCPU's counter
 *		test dword [bx], ecx     ; ecx = 2^io_shift - 1
 *		jnz  loop
 *		out  0x10, al            ; KVM_EXIT_IO, out: the host counts it
 *		in   al, 0x11            ; KVM_EXIT_IO, in: the host supplies AL
 *		test al, 0x80            ; the host sets bit 7 to make it halt
 *		jz   1f
 *		hlt                      ; KVM_EXIT_HLT (no in-kernel irqchip)
 *	1:	mov  [0x8000], al        ; KVM_EXIT_MMIO, write (nothing mapped)
 *		mov  al, [0x8000]        ; KVM_EXIT_MMIO, read: the host supplies AL
 *		jmp  loop
 *
 * vCPU i's counter is a 32-bit word at guest-physical 0x2000 + 64 * i, one
 * cache line each; the host reads it with rk_guest_counter().
 *
 * The vCPU loop (rk_vcpu_run(), on the calling thread):
 *
 *	rs_vcpu_register(rs, &v, kick, vc)
 *	loop {
 *		rs_vcpu_enter()          -> parks while stopped; EXIT/WORK requests
 *		repeat {
 *			run->immediate_exit = 0     1. clear
 *			if (!rs_may_run(rs)) break  2. check (the fast path)
 *			ioctl(KVM_RUN)              3. enter
 *			handle the exit: EINTR -> slow path; I/O, MMIO -> supply
 *			data, next KVM_RUN completes it; HLT -> quiesce, wait
 *		}
 *		if an I/O or MMIO exit is pending: immediate_exit = 1,
 *		KVM_RUN (completes it, returns -EINTR), then rs_vcpu_enter()
 *	}
 *
 * The kick sends a signal (SIGUSR1 by default) with pthread_kill(); its
 * handler sets this thread's run->immediate_exit = 1.  A kick that lands
 * after the check therefore makes KVM_RUN return -EINTR at once.
 *
 * Not thread-safe against itself: create, start, join and destroy a VM from
 * one thread.  The readers (counters, stats, regs) may be called from any
 * thread.  Only for x86-64 Linux hosts.
 */
#ifndef RS_KVM_H
#define RS_KVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <runstate.h>

#define RK_MAX_VCPUS 64

/* Guest layout, for tests that look at guest registers. */
#define RK_GUEST_CODE      0x1000u
#define RK_GUEST_COUNTERS  0x2000u
#define RK_COUNTER_STRIDE  64u
#define RK_MMIO_ADDR       0x8000u
#define RK_PORT_OUT        0x10u
#define RK_PORT_IN         0x11u

/*
 * The immediate-exit handshake, and two ways to break it on purpose (to show
 * that the tests see the race).
 */
enum rk_handshake {
	/* clear immediate_exit, check the word, KVM_RUN; the handler sets
	 * immediate_exit.  The correct order. */
	RK_HANDSHAKE_ON = 0,
	/* Broken: the handler does not set immediate_exit, so a kick that
	 * lands between the check and KVM_RUN is lost. */
	RK_HANDSHAKE_NO_IE,
	/* Broken: check the word, then clear immediate_exit, then KVM_RUN,
	 * so the clear erases a kick that landed after the check. */
	RK_HANDSHAKE_CLEAR_LATE,
};

enum rk_exit_kind {
	RK_EXIT_NONE = 0,
	RK_EXIT_OUT,         /* out 0x10, al */
	RK_EXIT_IN,          /* in al, 0x11 */
	RK_EXIT_MMIO_WRITE,  /* mov [0x8000], al */
	RK_EXIT_MMIO_READ,   /* mov al, [0x8000] */
	RK_EXIT_HLT,
};

/* An exit being handled, as seen by the exit hook. */
struct rk_exit {
	enum rk_exit_kind kind;
	uint64_t addr;        /* port or guest-physical address */
	uint8_t value;        /* written by the guest (OUT, MMIO write) or
			       * supplied by the host (IN, MMIO read) */
	uint64_t rip;         /* address of the instruction */
	uint64_t rip_after;   /* the guest's RIP once the instruction completes */
	uint64_t seq;         /* per-vCPU exit sequence number, from 1 */
};

struct rk_vm;

struct rk_config {
	unsigned nvcpus;      /* 1..RK_MAX_VCPUS */
	/* The guest leaves by itself (OUT, IN, MMIO write, MMIO read) every
	 * 2^io_shift loop iterations, 0..32 (32: practically never, once
	 * every 2^32 iterations). */
	unsigned io_shift;
	/* Make the guest HLT after every hlt_every-th IN (0: never). */
	unsigned hlt_every;
	/* How long a halted vCPU waits, quiescent, before resuming: the
	 * timer interrupt of a real guest (0: 20 us).  A kick cuts it short. */
	uint64_t hlt_ns;
	/* Busy time between the check and KVM_RUN: the work a real emulator
	 * does there (QEMU's kvm_arch_pre_run), and a wide target for kicks.
	 * Kicks that land in it are counted (window_kicks). */
	uint64_t window_ns;
	/* End the window as soon as a kick lands in it: with a long
	 * window_ns, a stop issued any time within it lands there, and
	 * KVM_RUN follows the kick at once (a deterministic target for the
	 * race, on a machine too loaded for fine timing). */
	bool window_until_kick;
	enum rk_handshake handshake;
	/* Broken on purpose: a vCPU that must stop right after an I/O or MMIO
	 * exit does not complete it before it acknowledges. */
	bool no_complete;
	/* The kick signal (0: SIGUSR1).  The handler is process-wide. */
	int kick_signal;
	/* /dev/kvm unless NULL; the environment variable RS_KVM_DEVICE
	 * overrides both (to check the skip path). */
	const char *device;
	/*
	 * Called on the vCPU thread for every I/O and MMIO exit, after the
	 * host has handled it (data supplied) and before the loop re-checks
	 * the word: device emulation.  It may call rs_pause(..., RS_ASYNC) and
	 * the like (a guest panic raised by a device).
	 */
	void (*exit_hook)(struct rk_vm *vm, unsigned idx, const struct rk_exit *ex, void *arg);
	/* Called on the vCPU thread, with the vCPU out, for RS_REQ_WORK. */
	void (*work)(struct rk_vm *vm, unsigned idx, void *arg);
	void *arg;
};

/* Per-vCPU counters, all monotonic. */
struct rk_vcpu_stats {
	uint64_t runs;          /* KVM_RUN calls in the loop */
	uint64_t entries;       /* checks that passed (= runs) */
	uint64_t eintr;         /* KVM_RUN returned -EINTR (kicked) */
	uint64_t exits_out, exits_in, exits_mmio_w, exits_mmio_r, exits_hlt;
	uint64_t completions;   /* exits finished with immediate_exit = 1 */
	uint64_t kicks_sent;    /* kick callback calls */
	uint64_t signals;       /* kick signals handled on this thread */
	uint64_t window_kicks;  /* signals handled inside window_ns */
	/* A kick landed in the window and KVM_RUN still ran guest code: a
	 * lost kick.  Always 0 with RK_HANDSHAKE_ON. */
	uint64_t lost_kicks;
	/* Sum over handled signals of the time from the latest kick callback
	 * to the handler (divide by signals for the mean delivery latency). */
	uint64_t kick_latency_sum_ns;
};

struct rk_regs {
	uint64_t rip, rax, rbx, rcx, rflags;
};

/*
 * Can this process run the harness?  0, or a negative errno with the reason
 * in why: /dev/kvm missing or not openable, wrong API version, no
 * KVM_CAP_IMMEDIATE_EXIT, KVM_CREATE_VM failing.
 */
int rk_probe(const char *device, char *why, size_t len);

/*
 * Create a VM with cfg->nvcpus vCPUs for the instance rs (which must outlive
 * it), guest set up and counters at 0, installs the kick signal handler.
 * 0 or a negative errno, with the reason in why (may be NULL).
 */
int rk_vm_create(rs_runstate *rs, const struct rk_config *cfg, struct rk_vm **out,
		 char *why, size_t len);
/* Destroy; the vCPU threads must have returned (rk_vm_join_threads). */
void rk_vm_destroy(struct rk_vm *vm);

rs_runstate *rk_vm_runstate(const struct rk_vm *vm);
unsigned rk_vm_nvcpus(const struct rk_vm *vm);

/*
 * Run vCPU idx on the calling thread: register it, loop until an exit
 * request (rs_vcpu_request(..., RS_REQ_EXIT)) or an error, unregister.
 * Returns 0 or the vCPU's error (also kept for rk_vm_error()).
 */
int rk_vcpu_run(struct rk_vm *vm, unsigned idx);

/* One thread per vCPU running rk_vcpu_run(); returns once every vCPU is
 * registered (they start out: they run guest code once the VM runs).  On
 * failure, the threads it started have been joined again. */
int rk_vm_start_threads(struct rk_vm *vm);
/* Post exit requests (again every millisecond, so a lost kick does not
 * hang) and join every thread.  Returns the first vCPU error, or 0. */
int rk_vm_join_threads(struct rk_vm *vm);
/* First error of any vCPU, as text, or NULL. */
const char *rk_vm_error(const struct rk_vm *vm);

/* The library handle of vCPU idx (for rs_vcpu_request and the like). */
rs_vcpu *rk_vcpu_rs(struct rk_vm *vm, unsigned idx);
/* Index of the vCPU whose rs_vcpu_info.opaque this is, or -1. */
int rk_vcpu_index(const struct rk_vm *vm, const void *opaque);

/* vCPU idx's guest counter, read from guest memory (relaxed). */
uint32_t rk_guest_counter(const struct rk_vm *vm, unsigned idx);
/* All of them into out[nvcpus]. */
void rk_guest_counters(const struct rk_vm *vm, uint32_t *out);
/* Is vCPU idx's thread inside KVM_RUN now? */
bool rk_vcpu_in_run(const struct rk_vm *vm, unsigned idx);
/* Kernel thread id of vCPU idx's thread once it runs (0 before), for
 * /proc/self/task/TID/schedstat and the like. */
int rk_vcpu_tid(const struct rk_vm *vm, unsigned idx);
/* Checks passed so far (changes just before each KVM_RUN). */
uint64_t rk_vcpu_entries(const struct rk_vm *vm, unsigned idx);
void rk_vcpu_stats(const struct rk_vm *vm, unsigned idx, struct rk_vcpu_stats *st);
/* Sum over all vCPUs. */
void rk_vm_stats(const struct rk_vm *vm, struct rk_vcpu_stats *st);

/*
 * KVM_GET_REGS of vCPU idx from the calling thread.  Only meaningful while
 * the vCPU is out (the VM stopped or locked): KVM serializes vCPU ioctls on
 * a per-vCPU mutex that KVM_RUN holds, so while the vCPU runs this waits
 * for its next exit.
 */
int rk_vcpu_get_regs(struct rk_vm *vm, unsigned idx, struct rk_regs *regs);

/*
 * One line about vCPU idx for a stop that does not complete: the exit it is
 * handling (kind, address) and for how long, whether it is in KVM_RUN.
 * Returns the length like snprintf.
 */
int rk_vcpu_describe(const struct rk_vm *vm, unsigned idx, char *buf, size_t len);

/*
 * Benchmark helper.  With the VM running: rs_stop(timeout_ns) timed from
 * the call until it returns (every vCPU out), then rs_start() timed until
 * every vCPU's guest counter has moved (each vCPU executed guest code
 * again).  Leaves the VM running.  0, the rs_stop error, or -ETIMEDOUT if a
 * counter did not move within timeout_ns.
 */
struct rk_latency {
	uint64_t stop_ns;         /* rs_stop() call to return */
	uint64_t start_call_ns;   /* rs_start() call to return */
	/* rs_start() call until the watcher saw the first / last counter
	 * move (includes the watcher's own scheduling delay). */
	uint64_t start_first_ns, start_all_ns;
	/* rs_start() call until the first / last vCPU passed its check and
	 * called KVM_RUN, stamped by the vCPU threads themselves; each
	 * counter then moved, so that KVM_RUN ran guest code. */
	uint64_t resume_first_ns, resume_all_ns;
};
int rk_measure_stop_start(struct rk_vm *vm, int64_t timeout_ns, struct rk_latency *lat);

/*
 * The pieces, for a benchmark's own loop: after rk_vm_mark_resume(vm, t),
 * rk_vcpu_resume_ns(vm, i) is the CLOCK_MONOTONIC time at which vCPU i
 * first passed its check (and went on into KVM_RUN) at or after t, or 0
 * if it has not yet.
 */
void rk_vm_mark_resume(struct rk_vm *vm, uint64_t t);
uint64_t rk_vcpu_resume_ns(const struct rk_vm *vm, unsigned idx);

/*
 * For a benchmark's own vCPU loop that does not use the library (a model of
 * another emulator driving the same VM and guest): vCPU idx's file
 * descriptor, and its mapped struct kvm_run (as void *, so this header does
 * not need <linux/kvm.h>).  Never mix with rk_vcpu_run() or
 * rk_vm_start_threads() on the same VM; the loop installs its own kick
 * handler (use a cfg->kick_signal of its own).
 */
int rk_vcpu_fd(const struct rk_vm *vm, unsigned idx);
void *rk_vcpu_kvm_run(const struct rk_vm *vm, unsigned idx);

#endif /* RS_KVM_H */

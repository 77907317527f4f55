/* SPDX-License-Identifier: MIT */
/*
 * A minimal KVM host for runstate; see kvm.h for the guest and the loop, and
 * docs/integration.md for why the loop is the way it is.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "kvm.h"

#define GUEST_MEM_SIZE 0x8000u   /* backed: 0..0x7fff; 0x8000 is MMIO */
#define TSS_ADDR       0xfffbd000u

/*
 * The guest code, at RK_GUEST_CODE.  Real mode, CS = DS = 0; 0x66 makes
 * the operand 32 bits wide.  Offsets are checked by the static asserts.
 */
enum {
	OFF_LOOP = 0x00,
	OFF_OUT = 0x08,
	OFF_IN = 0x0a,
	OFF_HLT = 0x10,
	OFF_MMIO_W = 0x11,
	OFF_MMIO_R = 0x15,
	OFF_END = 0x1a,
};

static const uint8_t guest_code[] = {
	/* 00 */ 0x66, 0xff, 0x07,        /* inc  dword [bx] */
	/* 03 */ 0x66, 0x85, 0x0f,        /* test dword [bx], ecx */
	/* 06 */ 0x75, 0xf8,              /* jnz  00 */
	/* 08 */ 0xe6, RK_PORT_OUT,       /* out  0x10, al */
	/* 0a */ 0xe4, RK_PORT_IN,        /* in   al, 0x11 */
	/* 0c */ 0xa8, 0x80,              /* test al, 0x80 */
	/* 0e */ 0x74, 0x01,              /* jz   11 */
	/* 10 */ 0xf4,                    /* hlt */
	/* 11 */ 0x88, 0x06, 0x00, 0x80,  /* mov  [0x8000], al */
	/* 15 */ 0xa0, 0x00, 0x80,        /* mov  al, [0x8000] */
	/* 18 */ 0xeb, 0xe6,              /* jmp  00 */
};
_Static_assert(sizeof(guest_code) == OFF_END, "guest code layout");
_Static_assert(RK_MMIO_ADDR == GUEST_MEM_SIZE, "MMIO right above memory");
_Static_assert(RK_GUEST_COUNTERS + RK_MAX_VCPUS * RK_COUNTER_STRIDE <= GUEST_MEM_SIZE,
	       "counters fit");

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

/*
 * The handler reaches its vCPU through a thread-local pointer.  initial-exec:
 * no lazy TLS allocation (not async-signal-safe) even if this file ends up
 * in a shared object.
 */
static _Thread_local struct rk_vcpu *tls_vc __attribute__((tls_model("initial-exec")));

uint64_t rk_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Single-writer counter increment: no locked instruction on the hot path. */
static inline void bump(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

static void set_why(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!why || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
}

static int vcpu_fail(struct rk_vcpu *vc, int err, const char *fmt, ...)
{
	va_list ap;
	int expect = 0;

	if (vc->error)
		return vc->error;
	vc->error = err ? err : -EIO;
	va_start(ap, fmt);
	vsnprintf(vc->errmsg, sizeof(vc->errmsg), fmt, ap);
	va_end(ap);
	atomic_compare_exchange_strong_explicit(&vc->vm->first_error, &expect, (int)vc->idx + 1,
						memory_order_release, memory_order_relaxed);
	return vc->error;
}

/* ---------------------------------------------------------------------------
 * The kick
 */

/*
 * The kick signal's handler.  Async-signal-safe: thread-local load, relaxed
 * atomics on lock-free words, one byte store into the kvm_run page.
 *
 * Setting immediate_exit here closes the window between the fast-path check
 * and KVM_RUN: a signal that arrives in that window (user space, after the
 * check) leaves immediate_exit = 1 behind, and KVM_RUN returns -EINTR
 * without entering the guest.  A signal that arrives while the thread is
 * inside KVM_RUN makes KVM exit with -EINTR by itself (it checks for
 * pending signals with interrupts off just before every guest entry), and
 * the handler then runs on the way back to user space.
 */
static void kick_handler(int sig)
{
	struct rk_vcpu *vc = tls_vc;

	(void)sig;
	if (!vc)
		return;
	bump(&vc->signals);
	{
		/* clock_gettime() is async-signal-safe. */
		uint64_t sent = atomic_load_explicit(&vc->kick_sent_ns, memory_order_relaxed);
		uint64_t now = rk_now_ns();

		if (sent && now > sent)
			atomic_store_explicit(&vc->kick_lat_sum_ns,
					      atomic_load_explicit(&vc->kick_lat_sum_ns,
								   memory_order_relaxed) +
						      (now - sent),
					      memory_order_relaxed);
	}
	if (vc->phase == PHASE_WINDOW)
		bump(&vc->window_kicks);
	if (vc->vm->cfg.handshake != RK_HANDSHAKE_NO_IE)
		__atomic_store_n(&vc->run->immediate_exit, 1, __ATOMIC_RELAXED);
}

/*
 * The kick callback the library calls (from any thread, possibly several at
 * once, never after rs_vcpu_unregister() returned).  It only sends the
 * signal: pthread_kill() is async-signal-safe and does not call into the
 * library.  vc->thread was set before rs_vcpu_register(), whose slot
 * publication the library's scanners acquire.
 */
static void kick_cb(rs_vcpu *v, void *opaque)
{
	struct rk_vcpu *vc = opaque;

	(void)v;
	atomic_fetch_add_explicit(&vc->kicks_sent, 1, memory_order_relaxed);
	atomic_store_explicit(&vc->kick_sent_ns, rk_now_ns(), memory_order_relaxed);
	pthread_kill(vc->thread, vc->vm->sig);
}

static int install_handler(int sig)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: a kick also cuts short a blocking host call (the
	 * halt wait); the library retries its own futex waits on EINTR. */
	sa.sa_flags = 0;
	return sigaction(sig, &sa, NULL) ? -errno : 0;
}

/* ---------------------------------------------------------------------------
 * Exits
 */

static volatile uint32_t *counter_ptr(const struct rk_vm *vm, unsigned idx)
{
	return (volatile uint32_t *)(void *)(vm->mem + RK_GUEST_COUNTERS +
					     idx * RK_COUNTER_STRIDE);
}

uint32_t rk_guest_counter(const struct rk_vm *vm, unsigned idx)
{
	/* The guest writes it with ordinary stores; a relaxed load from the
	 * host is all a monotonic progress check needs.  After the vCPU's
	 * acknowledgement (release, see the library) the value is final
	 * for a lock holder. */
	return __atomic_load_n((uint32_t *)(uintptr_t)counter_ptr(vm, idx), __ATOMIC_RELAXED);
}

void rk_guest_counters(const struct rk_vm *vm, uint32_t *out)
{
	for (unsigned i = 0; i < vm->n; i++)
		out[i] = rk_guest_counter(vm, i);
}

static void exit_begin(struct rk_vcpu *vc, struct rk_exit *ex)
{
	ex->seq = ++vc->exit_seq;
	atomic_store_explicit(&vc->cur_exit_addr, ex->addr, memory_order_relaxed);
	atomic_store_explicit(&vc->cur_exit_ns, rk_now_ns(), memory_order_relaxed);
	atomic_store_explicit(&vc->cur_exit, (int)ex->kind, memory_order_relaxed);
}

static void exit_end(struct rk_vcpu *vc, const struct rk_exit *ex)
{
	struct rk_vm *vm = vc->vm;

	if (vm->cfg.exit_hook)
		vm->cfg.exit_hook(vm, vc->idx, ex, vm->cfg.arg);
	atomic_store_explicit(&vc->cur_exit, RK_EXIT_NONE, memory_order_relaxed);
}

/* Handle a KVM_EXIT_IO: supply the data; the next KVM_RUN completes it. */
static int handle_io(struct rk_vcpu *vc)
{
	struct kvm_run *run = vc->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	struct rk_exit ex = { .addr = run->io.port };

	if (run->io.size != 1 || run->io.count != 1)
		return vcpu_fail(vc, -EPROTO, "vcpu %u: I/O port 0x%x size %u count %u", vc->idx,
				 run->io.port, run->io.size, run->io.count);
	if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == RK_PORT_OUT) {
		ex.kind = RK_EXIT_OUT;
		ex.value = data[0];
		ex.rip = RK_GUEST_CODE + OFF_OUT;
		ex.rip_after = RK_GUEST_CODE + OFF_IN;
		bump(&vc->exits_out);
	} else if (run->io.direction == KVM_EXIT_IO_IN && run->io.port == RK_PORT_IN) {
		unsigned every = vc->vm->cfg.hlt_every;

		vc->in_seq++;
		/* Bit 6 set: never the value AL holds from the MMIO read, so
		 * an IN that was not completed is visible in AL. */
		ex.value = (uint8_t)(0x40u | (vc->in_seq & 0x3fu));
		if (every && vc->in_seq % every == 0)
			ex.value |= 0x80u;
		data[0] = ex.value;
		ex.kind = RK_EXIT_IN;
		ex.rip = RK_GUEST_CODE + OFF_IN;
		ex.rip_after = RK_GUEST_CODE + OFF_IN + 2;
		bump(&vc->exits_in);
	} else {
		return vcpu_fail(vc, -EPROTO, "vcpu %u: unexpected I/O %s port 0x%x", vc->idx,
				 run->io.direction == KVM_EXIT_IO_IN ? "in" : "out", run->io.port);
	}
	exit_begin(vc, &ex);
	exit_end(vc, &ex);
	return 0;
}

static int handle_mmio(struct rk_vcpu *vc)
{
	struct kvm_run *run = vc->run;
	struct rk_exit ex = { .addr = run->mmio.phys_addr };

	if (run->mmio.phys_addr != RK_MMIO_ADDR || run->mmio.len != 1)
		return vcpu_fail(vc, -EPROTO, "vcpu %u: MMIO at 0x%llx len %u", vc->idx,
				 (unsigned long long)run->mmio.phys_addr, run->mmio.len);
	if (run->mmio.is_write) {
		ex.kind = RK_EXIT_MMIO_WRITE;
		ex.value = run->mmio.data[0];
		ex.rip = RK_GUEST_CODE + OFF_MMIO_W;
		ex.rip_after = RK_GUEST_CODE + OFF_MMIO_R;
		bump(&vc->exits_mmio_w);
	} else {
		vc->mmio_seq++;
		/* Bit 6 clear: never what an IN supplies. */
		ex.value = (uint8_t)(0x20u | (vc->mmio_seq & 0x1fu));
		run->mmio.data[0] = ex.value;
		ex.kind = RK_EXIT_MMIO_READ;
		ex.rip = RK_GUEST_CODE + OFF_MMIO_R;
		ex.rip_after = RK_GUEST_CODE + OFF_MMIO_R + 3;
		bump(&vc->exits_mmio_r);
	}
	exit_begin(vc, &ex);
	exit_end(vc, &ex);
	return 0;
}

/*
 * Finish a pending I/O or MMIO exit without running guest code: KVM
 * completes the instruction (writes AL for an IN or MMIO read, advances RIP)
 * at the start of KVM_RUN, then sees immediate_exit and returns -EINTR.
 * Done before acknowledging a stop, so a lock holder (savevm, migration)
 * sees the guest state with the exit finished.
 */
static int complete_exit(struct rk_vcpu *vc)
{
	struct kvm_run *run = vc->run;

	for (;;) {
		int ret, err;

		__atomic_store_n(&run->immediate_exit, 1, __ATOMIC_RELAXED);
		atomic_store_explicit(&vc->in_run, 1, memory_order_relaxed);
		ret = ioctl(vc->fd, KVM_RUN, 0);
		err = errno;
		atomic_store_explicit(&vc->in_run, 0, memory_order_relaxed);
		if (ret < 0 && err == EINTR) {
			bump(&vc->completions);
			return 0;
		}
		if (ret < 0 && err == EAGAIN)
			continue;
		if (ret < 0)
			return vcpu_fail(vc, -err, "vcpu %u: KVM_RUN (completion): %s", vc->idx,
					 strerror(err));
		/* Completing the instruction produced another exit (a string
		 * instruction would); handle it and go on completing. */
		if (run->exit_reason == KVM_EXIT_IO)
			ret = handle_io(vc);
		else if (run->exit_reason == KVM_EXIT_MMIO)
			ret = handle_mmio(vc);
		else
			return vcpu_fail(vc, -EPROTO, "vcpu %u: exit %u during completion",
					 vc->idx, run->exit_reason);
		if (ret)
			return ret;
	}
}

/* ---------------------------------------------------------------------------
 * The vCPU loop
 */

#define RUN_SLOW   0   /* take the slow path: rs_vcpu_enter() */
#define RUN_HALTED 1   /* the guest halted */

/*
 * Run guest code while the word allows it.  Returns RUN_SLOW, RUN_HALTED
 * or a negative errno.  Called with the vCPU active.
 */
static int run_active(struct rk_vcpu *vc)
{
	struct rk_vm *vm = vc->vm;
	struct kvm_run *run = vc->run;
	enum rk_handshake hs = vm->cfg.handshake;
	volatile uint32_t *ctr = counter_ptr(vm, vc->idx);
	bool pending = false;

	for (;;) {
		uint64_t wk0, wk1;
		uint32_t c0;
		int ret, err;

		/*
		 * 1. Clear.  A kick that landed before this point is erased
		 * here, but its stopper changed the word before kicking, and
		 * the check below (program order after the handler's return,
		 * which went through the kernel) sees that change.
		 */
		if (hs != RK_HANDSHAKE_CLEAR_LATE)
			__atomic_store_n(&run->immediate_exit, 0, __ATOMIC_RELAXED);
		/* The clear stays before the check: the compiler must not sink
		 * it, or a kick between the check and the clear is erased.
		 * Same-thread ordering against the handler: a signal fence. */
		atomic_signal_fence(memory_order_seq_cst);

		/* 2. Check: the fast path, one load and one compare. */
		if (!rs_may_run(vm->rs))
			break;
		bump(&vc->entries);
		if (atomic_load_explicit(&vc->resume_ns, memory_order_relaxed) <
		    atomic_load_explicit(&vc->mark_ns, memory_order_relaxed))
			atomic_store_explicit(&vc->resume_ns, rk_now_ns(), memory_order_relaxed);

		/*
		 * The window between the check and KVM_RUN: the handshake is
		 * what makes a kick landing here harmless.  The phase lets the
		 * handler count such kicks (window_kicks), and a kick counted
		 * here while the guest then ran is a lost kick.  window_ns
		 * widens the window on purpose.
		 */
		wk0 = atomic_load_explicit(&vc->window_kicks, memory_order_relaxed);
		vc->phase = PHASE_WINDOW;
		atomic_signal_fence(memory_order_seq_cst);
		if (vm->cfg.window_ns) {
			uint64_t end = rk_now_ns() + vm->cfg.window_ns;

			while (rk_now_ns() < end) {
				/* Ends early once a kick landed in it, if asked:
				 * KVM_RUN then follows that kick at once. */
				if (vm->cfg.window_until_kick &&
				    atomic_load_explicit(&vc->window_kicks,
							 memory_order_relaxed) != wk0)
					break;
				cpu_relax();
			}
		}
		if (hs == RK_HANDSHAKE_CLEAR_LATE) {
			/* Broken on purpose: clearing after the check erases a
			 * kick that landed in the window. */
			__atomic_store_n(&run->immediate_exit, 0, __ATOMIC_RELAXED);
		}
		c0 = *ctr;
		atomic_signal_fence(memory_order_seq_cst);
		vc->phase = PHASE_NONE;
		atomic_signal_fence(memory_order_seq_cst);
		/* Read after the phase ends: every kick counted in the window
		 * is in wk1 (the few instructions of the ioctl() wrapper
		 * after this are the only part not watched). */
		wk1 = atomic_load_explicit(&vc->window_kicks, memory_order_relaxed);

		/* 3. Enter.  This also completes a pending I/O exit. */
		atomic_store_explicit(&vc->in_run, 1, memory_order_relaxed);
		ret = ioctl(vc->fd, KVM_RUN, 0);
		err = errno;
		atomic_store_explicit(&vc->in_run, 0, memory_order_relaxed);
		bump(&vc->runs);
		pending = false;
		/* A kick landed in the window, yet the guest ran: lost. */
		if (wk1 != wk0 && *ctr != c0)
			bump(&vc->lost_kicks);

		if (ret < 0) {
			if (err == EINTR) {
				/* Kicked: the slow path decides (a stop, or a
				 * request that only rs_vcpu_enter() returns). */
				bump(&vc->eintr);
				return RUN_SLOW;
			}
			if (err == EAGAIN)
				continue;
			return vcpu_fail(vc, -err, "vcpu %u: KVM_RUN: %s", vc->idx,
					 strerror(err));
		}
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			ret = handle_io(vc);
			pending = true;
			break;
		case KVM_EXIT_MMIO:
			ret = handle_mmio(vc);
			pending = true;
			break;
		case KVM_EXIT_HLT:
			/* RIP is past the HLT already: nothing pending. */
			bump(&vc->exits_hlt);
			return RUN_HALTED;
		case KVM_EXIT_INTR:
			bump(&vc->eintr);
			return RUN_SLOW;
		case KVM_EXIT_FAIL_ENTRY:
			return vcpu_fail(vc, -EIO, "vcpu %u: entry failed, reason 0x%llx", vc->idx,
					 (unsigned long long)
						 run->fail_entry.hardware_entry_failure_reason);
		case KVM_EXIT_INTERNAL_ERROR:
			return vcpu_fail(vc, -EIO, "vcpu %u: KVM internal error %u", vc->idx,
					 run->internal.suberror);
		default:
			return vcpu_fail(vc, -EPROTO, "vcpu %u: unexpected exit %u", vc->idx,
					 run->exit_reason);
		}
		if (ret)
			return ret;
	}
	/*
	 * The check failed.  Finish a pending exit before acknowledging (in
	 * rs_vcpu_enter()), as KVM's API asks: an exit left half done would
	 * be seen by the lock holder, and lost if the state were saved.
	 */
	if (pending && !vm->cfg.no_complete)
		return complete_exit(vc) ? vc->error : RUN_SLOW;
	return RUN_SLOW;
}

/* The halted guest waits for its "timer"; a kick cuts the wait short. */
static void halt_wait(struct rk_vcpu *vc)
{
	uint64_t ns = vc->vm->cfg.hlt_ns ? vc->vm->cfg.hlt_ns : 20000;
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000u),
			       .tv_nsec = (long)(ns % 1000000000u) };

	nanosleep(&ts, NULL);
}

int rk_vcpu_run(struct rk_vm *vm, unsigned idx)
{
	struct rk_vcpu *vc;
	sigset_t set;
	int r;

	if (!vm || idx >= vm->n)
		return -EINVAL;
	vc = &vm->vcpus[idx];
	if (tls_vc)
		return -EBUSY;
	vc->thread = pthread_self();
	atomic_store_explicit(&vc->tid, (int)syscall(SYS_gettid), memory_order_relaxed);
	tls_vc = vc;
	/* The kick signal stays unblocked on the vCPU thread: the handler
	 * only sets immediate_exit, harmless wherever it lands. */
	sigemptyset(&set);
	sigaddset(&set, vm->sig);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	r = rs_vcpu_register(vm->rs, &vc->rsv, kick_cb, vc);
	if (r) {
		tls_vc = NULL;
		vcpu_fail(vc, r, "vcpu %u: rs_vcpu_register: %s", idx, rs_strerror(r));
		atomic_store_explicit(&vc->exited, true, memory_order_release);
		return r;
	}
	atomic_store_explicit(&vc->registered, true, memory_order_release);

	for (;;) {
		r = rs_vcpu_enter(&vc->rsv);
		if (r == RS_VCPU_EXIT)
			break;
		if (r == RS_VCPU_WORK) {
			if (vm->cfg.work)
				vm->cfg.work(vm, idx, vm->cfg.arg);
			continue;
		}
		if (r < 0) {
			vcpu_fail(vc, r, "vcpu %u: rs_vcpu_enter: %s", idx, rs_strerror(r));
			break;
		}
		r = run_active(vc);
		if (r == RUN_HALTED) {
			/* Out while halted: a stop does not wait for a halted
			 * vCPU, and the next rs_vcpu_enter() parks it if the VM
			 * stopped meanwhile. */
			rs_vcpu_quiesce(&vc->rsv);
			halt_wait(vc);
		} else if (r < 0) {
			break;
		}
	}
	/* Counts as the acknowledgement if we were active. */
	rs_vcpu_unregister(&vc->rsv);
	tls_vc = NULL;
	atomic_store_explicit(&vc->exited, true, memory_order_release);
	return vc->error;
}

/* ---------------------------------------------------------------------------
 * Setup
 */

static const char *device_path(const char *device)
{
	const char *env = getenv("RS_KVM_DEVICE");

	if (env && *env)
		return env;
	return device ? device : "/dev/kvm";
}

/* Open the device and check what the harness needs. */
static int open_kvm(const char *device, char *why, size_t len)
{
	const char *path = device_path(device);
	int fd, r;

	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		set_why(why, len, "cannot open %s: %s", path, strerror(errno));
		return r;
	}
	r = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (r != KVM_API_VERSION) {
		if (r < 0)
			set_why(why, len, "%s: KVM_GET_API_VERSION: %s (not a KVM device?)", path,
				strerror(errno));
		else
			set_why(why, len, "%s: KVM API version %d, want %d", path, r,
				KVM_API_VERSION);
		close(fd);
		return -ENOTSUP;
	}
	if (ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_IMMEDIATE_EXIT) <= 0) {
		set_why(why, len, "%s: no KVM_CAP_IMMEDIATE_EXIT", path);
		close(fd);
		return -ENOTSUP;
	}
	if (ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) <= 0) {
		set_why(why, len, "%s: no KVM_CAP_USER_MEMORY", path);
		close(fd);
		return -ENOTSUP;
	}
	return fd;
}

int rk_probe(const char *device, char *why, size_t len)
{
	int fd = open_kvm(device, why, len), vm;

	if (fd < 0)
		return fd;
	vm = ioctl(fd, KVM_CREATE_VM, 0);
	if (vm < 0) {
		int r = -errno;

		set_why(why, len, "KVM_CREATE_VM: %s", strerror(errno));
		close(fd);
		return r;
	}
	close(vm);
	close(fd);
	return 0;
}

static int setup_vcpu(struct rk_vm *vm, struct rk_vcpu *vc, char *why, size_t len)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_segment *segs[6];

	vc->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)vc->idx);
	if (vc->fd < 0) {
		set_why(why, len, "KVM_CREATE_VCPU %u: %s", vc->idx, strerror(errno));
		return -errno;
	}
	vc->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vc->fd, 0);
	if (vc->run == MAP_FAILED) {
		vc->run = NULL;
		set_why(why, len, "mmap kvm_run: %s", strerror(errno));
		return -errno;
	}
	if (ioctl(vc->fd, KVM_GET_SREGS, &sregs) < 0) {
		set_why(why, len, "KVM_GET_SREGS: %s", strerror(errno));
		return -errno;
	}
	/* Real mode with every segment at 0 (reset has CS at 0xf000). */
	segs[0] = &sregs.cs;
	segs[1] = &sregs.ds;
	segs[2] = &sregs.es;
	segs[3] = &sregs.ss;
	segs[4] = &sregs.fs;
	segs[5] = &sregs.gs;
	for (int i = 0; i < 6; i++) {
		segs[i]->base = 0;
		segs[i]->selector = 0;
	}
	if (ioctl(vc->fd, KVM_SET_SREGS, &sregs) < 0) {
		set_why(why, len, "KVM_SET_SREGS: %s", strerror(errno));
		return -errno;
	}
	memset(&regs, 0, sizeof(regs));
	regs.rip = RK_GUEST_CODE;
	regs.rflags = 2;      /* bit 1 is always set */
	regs.rbx = RK_GUEST_COUNTERS + vc->idx * RK_COUNTER_STRIDE;
	regs.rcx = vm->cfg.io_shift >= 32 ? 0xffffffffu : (1u << vm->cfg.io_shift) - 1;
	if (ioctl(vc->fd, KVM_SET_REGS, &regs) < 0) {
		set_why(why, len, "KVM_SET_REGS: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

int rk_vm_create(rs_runstate *rs, const struct rk_config *cfg, struct rk_vm **out,
		 char *why, size_t len)
{
	struct kvm_userspace_memory_region region;
	struct rk_vm *vm;
	void *vp = NULL;
	int r, sz;

	if (!rs || !cfg || !out || cfg->nvcpus < 1 || cfg->nvcpus > RK_MAX_VCPUS ||
	    cfg->io_shift > 32) {
		set_why(why, len, "invalid configuration");
		return -EINVAL;
	}
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	if (posix_memalign(&vp, 64, cfg->nvcpus * sizeof(struct rk_vcpu))) {
		free(vm);
		return -ENOMEM;
	}
	memset(vp, 0, cfg->nvcpus * sizeof(struct rk_vcpu));
	vm->vcpus = vp;
	vm->rs = rs;
	vm->cfg = *cfg;
	vm->n = cfg->nvcpus;
	vm->sig = cfg->kick_signal ? cfg->kick_signal : SIGUSR1;
	vm->vm_fd = -1;
	for (unsigned i = 0; i < vm->n; i++) {
		vm->vcpus[i].vm = vm;
		vm->vcpus[i].idx = i;
		vm->vcpus[i].fd = -1;
	}

	vm->kvm_fd = open_kvm(cfg->device, why, len);
	if (vm->kvm_fd < 0) {
		r = vm->kvm_fd;
		goto fail;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		r = -errno;
		set_why(why, len, "KVM_CREATE_VM: %s", strerror(errno));
		goto fail;
	}
	/* Needed by Intel hosts without unrestricted guest for real mode;
	 * harmless elsewhere. */
	(void)ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)TSS_ADDR);

	vm->mem = mmap(NULL, GUEST_MEM_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vm->mem == MAP_FAILED) {
		vm->mem = NULL;
		r = -errno;
		set_why(why, len, "mmap guest memory: %s", strerror(errno));
		goto fail;
	}
	memcpy(vm->mem + RK_GUEST_CODE, guest_code, sizeof(guest_code));
	memset(&region, 0, sizeof(region));
	region.slot = 0;
	region.guest_phys_addr = 0;
	region.memory_size = GUEST_MEM_SIZE;
	region.userspace_addr = (uintptr_t)vm->mem;
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
		r = -errno;
		set_why(why, len, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
		goto fail;
	}
	sz = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz < (int)sizeof(struct kvm_run)) {
		r = sz < 0 ? -errno : -EPROTO;
		set_why(why, len, "KVM_GET_VCPU_MMAP_SIZE: %d", sz);
		goto fail;
	}
	vm->run_size = (size_t)sz;
	for (unsigned i = 0; i < vm->n; i++) {
		r = setup_vcpu(vm, &vm->vcpus[i], why, len);
		if (r)
			goto fail;
	}
	r = install_handler(vm->sig);
	if (r) {
		set_why(why, len, "sigaction: %s", strerror(-r));
		goto fail;
	}
	*out = vm;
	return 0;
fail:
	rk_vm_destroy(vm);
	return r;
}

void rk_vm_destroy(struct rk_vm *vm)
{
	if (!vm)
		return;
	for (unsigned i = 0; i < vm->n; i++) {
		struct rk_vcpu *vc = &vm->vcpus[i];

		if (vc->run)
			munmap(vc->run, vm->run_size);
		if (vc->fd >= 0)
			close(vc->fd);
	}
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->mem)
		munmap(vm->mem, GUEST_MEM_SIZE);
	free(vm->vcpus);
	free(vm);
}

/* ---------------------------------------------------------------------------
 * Threads
 */

static void *vcpu_thread(void *p)
{
	struct rk_vcpu *vc = p;

	rk_vcpu_run(vc->vm, vc->idx);
	return NULL;
}

int rk_vm_start_threads(struct rk_vm *vm)
{
	uint64_t deadline;

	for (unsigned i = 0; i < vm->n; i++) {
		struct rk_vcpu *vc = &vm->vcpus[i];
		int r = pthread_create(&vc->joinable, NULL, vcpu_thread, vc);

		if (r) {
			rk_vm_join_threads(vm);
			return -r;
		}
		vc->thread_started = true;
	}
	deadline = rk_now_ns() + 5000000000u;
	for (unsigned i = 0; i < vm->n; i++) {
		struct rk_vcpu *vc = &vm->vcpus[i];

		while (!atomic_load_explicit(&vc->registered, memory_order_acquire)) {
			int r = 0;

			if (atomic_load_explicit(&vc->exited, memory_order_acquire))
				r = vc->error ? vc->error : -EIO;
			else if (rk_now_ns() > deadline)
				r = -ETIMEDOUT;
			if (r) {
				rk_vm_join_threads(vm);
				return r;
			}
			sched_yield();
		}
	}
	return 0;
}

int rk_vm_join_threads(struct rk_vm *vm)
{
	int err = 0;

	for (unsigned i = 0; i < vm->n; i++) {
		struct rk_vcpu *vc = &vm->vcpus[i];
		uint64_t deadline = rk_now_ns() + 10000000000u;

		if (!vc->thread_started)
			continue;
		/* Re-post every millisecond: a request kick can be lost with
		 * a broken handshake, and the library re-kicks only for
		 * stops.  pthread_t stays valid until the join. */
		while (!atomic_load_explicit(&vc->exited, memory_order_acquire)) {
			struct timespec ts = { 0, 1000000 };

			if (atomic_load_explicit(&vc->registered, memory_order_acquire))
				rs_vcpu_request(&vc->rsv, RS_REQ_EXIT);
			if (rk_now_ns() > deadline) {
				fprintf(stderr, "rk: vcpu %u does not exit\n", i);
				abort();
			}
			nanosleep(&ts, NULL);
		}
		pthread_join(vc->joinable, NULL);
		vc->thread_started = false;
		if (vc->error && !err)
			err = vc->error;
	}
	return err;
}

const char *rk_vm_error(const struct rk_vm *vm)
{
	int i = atomic_load_explicit(&((struct rk_vm *)(uintptr_t)vm)->first_error,
				     memory_order_acquire);

	return i ? vm->vcpus[i - 1].errmsg : NULL;
}

/* ---------------------------------------------------------------------------
 * Readers
 */

rs_runstate *rk_vm_runstate(const struct rk_vm *vm)
{
	return vm->rs;
}

unsigned rk_vm_nvcpus(const struct rk_vm *vm)
{
	return vm->n;
}

rs_vcpu *rk_vcpu_rs(struct rk_vm *vm, unsigned idx)
{
	return idx < vm->n ? &vm->vcpus[idx].rsv : NULL;
}

int rk_vcpu_index(const struct rk_vm *vm, const void *opaque)
{
	for (unsigned i = 0; i < vm->n; i++)
		if (opaque == &vm->vcpus[i])
			return (int)i;
	return -1;
}

bool rk_vcpu_in_run(const struct rk_vm *vm, unsigned idx)
{
	return atomic_load_explicit(&vm->vcpus[idx].in_run, memory_order_relaxed) != 0;
}

int rk_vcpu_tid(const struct rk_vm *vm, unsigned idx)
{
	return atomic_load_explicit(&vm->vcpus[idx].tid, memory_order_relaxed);
}

uint64_t rk_vcpu_entries(const struct rk_vm *vm, unsigned idx)
{
	return atomic_load_explicit(&vm->vcpus[idx].entries, memory_order_relaxed);
}

int rk_vcpu_fd(const struct rk_vm *vm, unsigned idx)
{
	return idx < vm->n ? vm->vcpus[idx].fd : -1;
}

void *rk_vcpu_kvm_run(const struct rk_vm *vm, unsigned idx)
{
	return idx < vm->n ? vm->vcpus[idx].run : NULL;
}

#define LD(f) atomic_load_explicit(&vc->f, memory_order_relaxed)

void rk_vcpu_stats(const struct rk_vm *vm, unsigned idx, struct rk_vcpu_stats *st)
{
	const struct rk_vcpu *vc = &vm->vcpus[idx];

	st->runs = LD(runs);
	st->entries = LD(entries);
	st->eintr = LD(eintr);
	st->exits_out = LD(exits_out);
	st->exits_in = LD(exits_in);
	st->exits_mmio_w = LD(exits_mmio_w);
	st->exits_mmio_r = LD(exits_mmio_r);
	st->exits_hlt = LD(exits_hlt);
	st->completions = LD(completions);
	st->kicks_sent = LD(kicks_sent);
	st->signals = LD(signals);
	st->window_kicks = LD(window_kicks);
	st->lost_kicks = LD(lost_kicks);
	st->kick_latency_sum_ns = LD(kick_lat_sum_ns);
}

void rk_vm_stats(const struct rk_vm *vm, struct rk_vcpu_stats *sum)
{
	memset(sum, 0, sizeof(*sum));
	for (unsigned i = 0; i < vm->n; i++) {
		struct rk_vcpu_stats s;

		rk_vcpu_stats(vm, i, &s);
		sum->runs += s.runs;
		sum->entries += s.entries;
		sum->eintr += s.eintr;
		sum->exits_out += s.exits_out;
		sum->exits_in += s.exits_in;
		sum->exits_mmio_w += s.exits_mmio_w;
		sum->exits_mmio_r += s.exits_mmio_r;
		sum->exits_hlt += s.exits_hlt;
		sum->completions += s.completions;
		sum->kicks_sent += s.kicks_sent;
		sum->signals += s.signals;
		sum->window_kicks += s.window_kicks;
		sum->lost_kicks += s.lost_kicks;
		sum->kick_latency_sum_ns += s.kick_latency_sum_ns;
	}
}

int rk_vcpu_get_regs(struct rk_vm *vm, unsigned idx, struct rk_regs *out)
{
	struct kvm_regs regs;

	if (!vm || idx >= vm->n || !out)
		return -EINVAL;
	if (ioctl(vm->vcpus[idx].fd, KVM_GET_REGS, &regs) < 0)
		return -errno;
	out->rip = regs.rip;
	out->rax = regs.rax;
	out->rbx = regs.rbx;
	out->rcx = regs.rcx;
	out->rflags = regs.rflags;
	return 0;
}

static const char *exit_name(int k)
{
	switch (k) {
	case RK_EXIT_OUT: return "port I/O out";
	case RK_EXIT_IN: return "port I/O in";
	case RK_EXIT_MMIO_WRITE: return "MMIO write";
	case RK_EXIT_MMIO_READ: return "MMIO read";
	case RK_EXIT_HLT: return "HLT";
	default: return "none";
	}
}

int rk_vcpu_describe(const struct rk_vm *vm, unsigned idx, char *buf, size_t len)
{
	const struct rk_vcpu *vc;
	int k;

	if (!vm || idx >= vm->n)
		return -EINVAL;
	vc = &vm->vcpus[idx];
	k = atomic_load_explicit(&vc->cur_exit, memory_order_relaxed);
	if (k == RK_EXIT_NONE)
		return snprintf(buf, len, "vcpu %u: no exit being handled, %s KVM_RUN", idx,
				rk_vcpu_in_run(vm, idx) ? "in" : "not in");
	{
		uint64_t since = atomic_load_explicit(&vc->cur_exit_ns, memory_order_relaxed);
		uint64_t now = rk_now_ns();

		return snprintf(buf, len, "vcpu %u: handling %s at 0x%llx for %.3f ms", idx,
				exit_name(k),
				(unsigned long long)atomic_load_explicit(&vc->cur_exit_addr,
									 memory_order_relaxed),
				now > since ? (double)(now - since) / 1e6 : 0.0);
	}
}

/* ---------------------------------------------------------------------------
 * Benchmark helper
 */

int rk_measure_stop_start(struct rk_vm *vm, int64_t timeout_ns, struct rk_latency *lat)
{
	uint32_t snap[RK_MAX_VCPUS];
	bool moved[RK_MAX_VCPUS] = { false };
	unsigned left = vm->n;
	uint64_t t0, t1, deadline;
	int r;

	t0 = rk_now_ns();
	r = rs_stop(vm->rs, timeout_ns);
	t1 = rk_now_ns();
	lat->stop_ns = t1 - t0;
	if (r)
		return r;
	/* Every vCPU is out: the counters are final until the start. */
	rk_guest_counters(vm, snap);
	t0 = rk_now_ns();
	rk_vm_mark_resume(vm, t0);
	r = rs_start(vm->rs, 0);
	t1 = rk_now_ns();
	lat->start_call_ns = t1 - t0;
	lat->start_first_ns = lat->start_all_ns = 0;
	if (r)
		return r;
	deadline = t0 + (timeout_ns < 0 ? 10000000000u : (uint64_t)timeout_ns);
	for (unsigned spins = 0; left; spins++) {
		uint64_t now = rk_now_ns();

		for (unsigned i = 0; i < vm->n; i++) {
			if (moved[i] || rk_guest_counter(vm, i) == snap[i])
				continue;
			moved[i] = true;
			left--;
			if (!lat->start_first_ns)
				lat->start_first_ns = now - t0;
			if (!left)
				lat->start_all_ns = now - t0;
		}
		if (!left)
			break;
		if (now > deadline)
			return -ETIMEDOUT;
		/* (The vCPU-side stamps below do not depend on how fast this
		 * loop notices.) */
		/* With more vCPUs than cores the watcher must not hold a
		 * core the vCPUs need. */
		if (vm->n > 1 && spins > 64)
			sched_yield();
		else
			cpu_relax();
	}
	lat->resume_first_ns = UINT64_MAX;
	lat->resume_all_ns = 0;
	for (unsigned i = 0; i < vm->n; i++) {
		uint64_t e = rk_vcpu_resume_ns(vm, i);
		uint64_t d = e > t0 ? e - t0 : 0;

		if (d < lat->resume_first_ns)
			lat->resume_first_ns = d;
		if (d > lat->resume_all_ns)
			lat->resume_all_ns = d;
	}
	return 0;
}

void rk_vm_mark_resume(struct rk_vm *vm, uint64_t t)
{
	for (unsigned i = 0; i < vm->n; i++)
		atomic_store_explicit(&vm->vcpus[i].mark_ns, t, memory_order_relaxed);
}

uint64_t rk_vcpu_resume_ns(const struct rk_vm *vm, unsigned idx)
{
	const struct rk_vcpu *vc = &vm->vcpus[idx];
	uint64_t e = atomic_load_explicit(&vc->resume_ns, memory_order_relaxed);

	return e >= atomic_load_explicit(&vc->mark_ns, memory_order_relaxed) ? e : 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * The KVM harness's vCPU side: the kick, exit handling and the vCPU loop
 * (kvm.h describes it; docs/integration.md says why it is so).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kvm_priv.h"

/*
 * The handler reaches its vCPU through a thread-local pointer.  initial-exec:
 * no lazy TLS allocation (not async-signal-safe) even if this file ends up
 * in a shared object.
 */
static _Thread_local struct rk_vcpu *tls_vc __attribute__((tls_model("initial-exec")));

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
		/* rsu_now_ns() is clock_gettime(): async-signal-safe. */
		uint64_t sent = atomic_load_explicit(&vc->kick_sent_ns, memory_order_relaxed);
		uint64_t now = rsu_now_ns();

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
	atomic_store_explicit(&vc->kick_sent_ns, rsu_now_ns(), memory_order_relaxed);
	pthread_kill(vc->thread, vc->vm->sig);
}

int rk_kick_install(int sig)
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
	atomic_store_explicit(&vc->cur_exit_ns, rsu_now_ns(), memory_order_relaxed);
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
			atomic_store_explicit(&vc->resume_ns, rsu_now_ns(), memory_order_relaxed);

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
			uint64_t end = rsu_now_ns() + vm->cfg.window_ns;

			while (rsu_now_ns() < end) {
				/* Ends early once a kick landed in it, if asked:
				 * KVM_RUN then follows that kick at once. */
				if (vm->cfg.window_until_kick &&
				    atomic_load_explicit(&vc->window_kicks,
							 memory_order_relaxed) != wk0)
					break;
				rsu_cpu_relax();
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

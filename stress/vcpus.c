/* SPDX-License-Identifier: MIT */
/*
 * runstate-stress: the vCPUs.  Simulated vCPU threads run guest slices
 * through the real fast path and take kicks (a signal or a futex); the
 * hot-plug thread plugs and unplugs them and posts work requests.  With
 * --kvm the same slots are run by KVM vCPUs (kvmglue.c), and the checks see
 * either kind through vc_in_guest() and vc_count().
 */
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>

#include "stress.h"

/* 0 when slot i is not in guest code; else 1 + the edge it read when it
 * entered, or IN_GUEST_NOSTAMP for a KVM vCPU inside KVM_RUN. */
uint32_t vc_in_guest(int i)
{
	if (ctx.cfg.kvm)
		return kvm_in_guest(i);
	/* Acquire: pairs with the release stores in run_slice(). */
	return atomic_load_explicit(&ctx.vcpus[i].in_guest, memory_order_acquire);
}

/* Guest progress of slot i: slices entered, or the KVM guest's counter
 * (32 bits, wraps: compare for equality only). */
uint64_t vc_count(int i)
{
	if (ctx.cfg.kvm)
		return kvm_count(i);
	return atomic_load_explicit(&ctx.vcpus[i].slices, memory_order_acquire);
}

/* "in KVM_RUN" or "entered at edge N", for a vc_in_guest() value. */
const char *in_guest_str(uint32_t g, char *buf, size_t n)
{
	if (g == IN_GUEST_NOSTAMP)
		return "in KVM_RUN";
	snprintf(buf, n, "entered at edge %u", g - 1);
	return buf;
}

/* Halts of slot i so far (liveness: a halted vCPU makes progress). */
uint64_t vc_halts(int i)
{
	if (ctx.cfg.kvm)
		return kvm_halts(i);
	return atomic_load(&ctx.vcpus[i].halts);
}

/* Is addr inside a vCPU's rs_vcpu (a futex wait there is a park)? */
bool is_park_addr(const void *addr)
{
	uintptr_t a = (uintptr_t)addr, b = (uintptr_t)ctx.vcpus;

	if (!ctx.vcpus || a < b || a >= b + (uintptr_t)ctx.nslots * sizeof(struct vcpu))
		return false;
	return (a - b) % sizeof(struct vcpu) < sizeof(rs_vcpu);
}

static void deliver_kick(struct vcpu *v)
{
	/* Release: pairs with the exchange in the slice loops. */
	atomic_store_explicit(&v->kick_word, 1, memory_order_release);
	if (!v->blocking)
		return;
	if (ctx.cfg.kick_signal)
		pthread_kill(v->tid, KICK_SIGNAL);
	else
		rsu_futex_wake((uint32_t *)&v->kick_word, 1);
}

/* The kick callback.  Must not call into the library. */
static void kick_cb(rs_vcpu *rv, void *opaque)
{
	struct vcpu *v = opaque;
	uint64_t per;

	(void)rv;
	if (atomic_load_explicit(&v->life, memory_order_acquire) == VL_GONE)
		violation(V_KICK, "kick callback for vCPU slot %d ran after its "
				  "rs_vcpu_unregister() returned", v->index);
	INC(ctx.stats.kicks);
	per = atomic_load_explicit(&v->period, memory_order_relaxed);
	if (atomic_exchange_explicit(&v->kicked_period, per, memory_order_relaxed) == per)
		INC(ctx.stats.rekicks);
	if (rsu_rng_chance(hook_rng(), ctx.cfg.fault_rate)) {
		INC(ctx.stats.kicks_dropped);  /* a lost kick: the re-kick must recover */
	} else {
		deliver_kick(v);
		if (rsu_rng_chance(hook_rng(), ctx.cfg.fault_rate)) {
			/* The kicker is preempted right after the signal: the
			 * kicked vCPU runs meanwhile. */
			INC(ctx.stats.slow_kicks);
			rsu_sleep_ns(rsu_rng_range(hook_rng(), 50 * US, 500 * US));
		}
	}
	/* "No kick callback runs after rs_vcpu_unregister() returns"
	 * (docs/protocol.md section 7): check at the end too. */
	if (atomic_load_explicit(&v->life, memory_order_acquire) == VL_GONE)
		violation(V_KICK, "kick callback for vCPU slot %d still running after its "
				  "rs_vcpu_unregister() returned", v->index);
}

void on_kick_signal(int sig)
{
	(void)sig;  /* its only job is to end ppoll() */
}

/* ---------------------------------------------------------------------------
 * vCPU threads
 */

static void blocking_wait(struct vcpu *v, const sigset_t *run_mask)
{
	if (ctx.cfg.kick_signal) {
		/* KVM_RUN with KVM_SET_SIGNAL_MASK: the kick signal is blocked
		 * except inside ppoll, so a kick sent before the entry makes
		 * it return at once; kick_word plays immediate_exit. */
		while (!atomic_exchange_explicit(&v->kick_word, 0, memory_order_acquire) &&
		       !atomic_load_explicit(&v->exit_flag, memory_order_acquire))
			ppoll(NULL, 0, NULL, run_mask);
	} else {
		/* TSan delivers signals late: a futex kick instead. */
		while (!atomic_exchange_explicit(&v->kick_word, 0, memory_order_acquire) &&
		       !atomic_load_explicit(&v->exit_flag, memory_order_acquire))
			rsu_futex_wait((uint32_t *)&v->kick_word, 0, -1);
	}
}

/* A vCPU slow to acknowledge: busy for 0.2-2 ms, or descheduled for
 * 0.2-4 ms. */
void slow_vcpu(struct thr *t)
{
	if (rsu_rng_below(&t->rng, 2))
		rsu_spin_ns(rsu_rng_range(&t->rng, 200 * US, 2 * MS));
	else
		rsu_sleep_ns(rsu_rng_range(&t->rng, 200 * US, 4 * MS));
}

/* One guest slice; true if a kick ended it.  busy: a spinning slice even
 * on a blocking vCPU (a section owner's: nobody else would kick it). */
bool run_slice(struct vcpu *v, struct thr *t, const sigset_t *run_mask, bool busy)
{
	uint32_t e = rsu_edge(rs_word(ctx.rs));
	bool kicked = false;

	atomic_fetch_add_explicit(&v->slices, 1, memory_order_relaxed);
	atomic_store_explicit(&v->stamp, e + 1, memory_order_relaxed);
	/* Release: a checker that sees in_guest sees the slice count (and the
	 * stamp) too. */
	atomic_store_explicit(&v->in_guest, e + 1, memory_order_release);
	INC(ctx.stats.slices);
	if (rsu_rng_chance(&t->rng, ctx.cfg.fault_rate / 4)) {
		/* Slow to acknowledge: busy in guest, deaf to kicks. */
		INC(ctx.stats.slow_acks);
		slow_vcpu(t);
	}
	if (v->blocking && !busy) {
		blocking_wait(v, run_mask);
		kicked = true;
	} else {
		int64_t len = rsu_rng_range(&t->rng, ctx.cfg.slice_ns / 2,
					    ctx.cfg.slice_ns * 3 / 2);
		uint64_t end = rsu_now_ns() + (uint64_t)len;

		for (int i = 0;; i++) {
			if (atomic_load_explicit(&v->kick_word, memory_order_relaxed) &&
			    atomic_exchange_explicit(&v->kick_word, 0, memory_order_acquire)) {
				kicked = true;
				break;
			}
			if ((i & 15) == 15 && rsu_now_ns() >= end)
				break;
			rsu_cpu_relax();
		}
	}
	atomic_store_explicit(&v->in_guest, 0, memory_order_release);
	return kicked;
}


/*
 * A guest panic raised during device emulation, from inside the vCPU.
 * VD_ANY: synchronous one time in five.  A call that may wait, made on a
 * vCPU thread, returns with the vCPU out (docs/semantics.md, "Calls from a
 * vCPU thread"), so the caller must go back to rs_vcpu_enter() before
 * guest code; the checking build's rs_may_run_func() in the loop below
 * aborts if it does not.  A KVM exit hook, whose loop goes back to the
 * fast path, uses VD_ASYNC.
 */
bool vcpu_device(struct thr *t, int mode)
{
	enum rs_pause p = rsu_rng_below(&t->rng, 2) ? RS_PAUSE_PANICKED : RS_PAUSE_WATCHDOG;
	bool sync = mode == VD_SYNC || (mode == VD_ANY && rsu_rng_below(&t->rng, 5) == 0);
	struct opctx c;
	int r;

	if (sync && atomic_load(&ctx.sync_inflight) < LIN_UNGATED / 2) {
		/* Synchronous: this vCPU counts as out from the call on, and
		 * stays out after it: no waiting for itself, no park inside. */
		if (!op_begin_ungated(t, &c, LIN_PAUSE, p, RS_FOREVER))
			return false;
		atomic_fetch_add(&ctx.sync_inflight, 1);
		INC(ctx.stats.vcpu_panic_sync);
		set_op(t, "vcpu sync pause");
		r = rs_pause(ctx.rs, p, RS_FOREVER);
		op_end(&c, r);
		atomic_fetch_sub(&ctx.sync_inflight, 1);
		set_op(t, "guest");
		if (r)
			bad_result("rs_pause(FOREVER) from a vCPU thread", r);
		else
			stop_check("rs_pause(FOREVER) from a vCPU thread", c.w_before);
		return true;  /* back to rs_vcpu_enter() */
	}
	if (!op_begin(t, &c, LIN_PAUSE, p, 0, RS_ASYNC, true))
		return false;
	INC(ctx.stats.vcpu_panic_async);
	r = rs_pause(ctx.rs, p, RS_ASYNC);
	op_end(&c, r);
	if (r)
		bad_result("rs_pause(ASYNC) from a vCPU thread", r);
	return false;  /* finish the exit; the fast path then fails */
}

static void *vcpu_main(void *arg)
{
	struct vcpu *v = arg;
	struct thr *t = thr_claim(ctx.thr_vcpu0 + v->index);
	double p_dev = (double)ctx.cfg.slice_ns / (2.0 * MS);  /* one per 2 ms of guest time */
	sigset_t block, run_mask;
	bool leave = false;
	int r;

	sigemptyset(&block);
	sigaddset(&block, KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &block, &run_mask);
	sigdelset(&run_mask, KICK_SIGNAL);
	v->tid = pthread_self();

	set_op(t, "register");
	r = rs_vcpu_register(ctx.rs, &v->rv, kick_cb, v);
	if (r) {
		bad_result("rs_vcpu_register", r);
		atomic_store_explicit(&v->life, VL_GONE, memory_order_release);
		thr_release(t);
		return NULL;
	}
	/* Release: pairs with the hot-plug thread's acquire wait. */
	atomic_store_explicit(&v->life, VL_REGISTERED, memory_order_release);
	while (!leave) {
		if (atomic_load_explicit(&v->exit_flag, memory_order_acquire))
			break;
		set_op(t, "enter");
		r = rs_vcpu_enter(&v->rv);
		if (r == RS_VCPU_EXIT)
			break;
		if (r == RS_VCPU_WORK) {
			INC(ctx.stats.work);
			continue;
		}
		if (r) {
			bad_result("rs_vcpu_enter", r);
			break;
		}
		atomic_fetch_add_explicit(&v->period, 1, memory_order_relaxed);
		set_op(t, "guest");
		for (;;) {
			bool kicked;

			if (rsu_rng_chance(&t->rng, 0.01)) {
				/* HLT: quiescent until the "interrupt". */
				atomic_store(&v->halted, true);
				atomic_fetch_add(&v->halts, 1);
				INC(ctx.stats.halts);
				set_op(t, "halted");
				r = rs_vcpu_quiesce(&v->rv);
				if (r)
					bad_result("rs_vcpu_quiesce", r);
				rsu_sleep_ns(rsu_rng_range(&t->rng, 20 * US, 300 * US));
				atomic_store(&v->halted, false);
				break;
			}
			kicked = run_slice(v, t, &run_mask, false);
			if (!atomic_load(&ctx.calm) && !atomic_load(&ctx.stop) &&
			    rsu_rng_chance(&t->rng, p_dev) && vcpu_device(t, VD_ANY))
				break;
			/* A section from this vCPU thread: at random in storm
			 * phases, and one at the start of each calm phase (the
			 * rest of it is the liveness window).  It returns with
			 * the vCPU out, or active from a section slice: back
			 * through rs_vcpu_enter() either way. */
			if (ctx.cfg.excl_vcpu_rate > 0 && !atomic_load(&ctx.stop) &&
			    (atomic_load(&ctx.calm)
			     ? atomic_exchange(&ctx.excl_calm_vcpu, false)
			     : rsu_rng_chance(&t->rng, ctx.cfg.excl_vcpu_rate))) {
				r = vcpu_section(v, t, &run_mask, atomic_load(&ctx.calm));
				if (r == RS_VCPU_EXIT)
					leave = true;
				break;
			}
			/* The fast path's check, out of line: in checking builds
			 * it aborts if the library counts this vCPU out (a
			 * missed rs_vcpu_enter() after a call that waited). */
			if (kicked || !rs_may_run_func(ctx.rs) ||
			    atomic_load_explicit(&v->exit_flag, memory_order_relaxed))
				break;
		}
	}
	set_op(t, "unregister");
	r = rs_vcpu_unregister(&v->rv);
	if (r)
		bad_result("rs_vcpu_unregister", r);
	/* Release: a kick callback that sees GONE ran after the return. */
	atomic_store_explicit(&v->life, VL_GONE, memory_order_release);
	thr_release(t);
	return NULL;
}

/* The library handle of slot i. */
rs_vcpu *vc_rs(int i)
{
	if (ctx.cfg.kvm)
		return kvm_vcpu_rs(i);
	return &ctx.vcpus[i].rv;
}

/* Plug a vCPU into a free slot; returns the slot or -1. */
int plug(struct thr *t, struct rsu_rng *r)
{
	struct vcpu *v = NULL;
	void *(*fn)(void *) = ctx.cfg.kvm ? kvm_vcpu_main : vcpu_main;

	for (int i = 0; i < ctx.nslots; i++) {
		if (atomic_load(&ctx.vcpus[i].life) == VL_FREE) {
			v = &ctx.vcpus[i];
			break;
		}
	}
	if (!v)
		return -1;
	set_op(t, "plug");
	v->blocking = !ctx.cfg.kvm && rsu_rng_below(r, 3) == 0;
	atomic_store(&v->exit_flag, false);
	atomic_store(&v->halted, false);
	atomic_store(&v->kick_word, 0);
	atomic_store(&v->stamp, 0);
	v->next_dev_ns = rsu_now_ns() + (uint64_t)rsu_rng_range(r, 0, 2 * MS);
	atomic_store(&v->life, VL_STARTING);
	if (pthread_create(&v->thread, NULL, fn, v)) {
		atomic_store(&v->life, VL_FREE);
		return -1;
	}
	/* Acquire: pairs with the release store after registration. */
	while (atomic_load_explicit(&v->life, memory_order_acquire) == VL_STARTING) {
		int starting = VL_STARTING;

		/* A KVM vCPU registers inside rk_vcpu_run(). */
		if (ctx.cfg.kvm && kvm_registered(v->index) &&
		    atomic_compare_exchange_strong(&v->life, &starting, VL_REGISTERED))
			break;
		rsu_sleep_ns(20 * US);
	}
	if (atomic_load_explicit(&v->life, memory_order_acquire) == VL_GONE) {
		/* It failed to register (reported) or ran into an error. */
		pthread_join(v->thread, NULL);
		atomic_store(&v->life, VL_FREE);
		set_op(t, NULL);
		return -1;
	}
	atomic_fetch_add(&ctx.nplugged, 1);
	INC(ctx.stats.plugs);
	set_op(t, NULL);
	return v->index;
}

/* Unplug: exit flag, exit request, kick, join. */
void unplug(struct thr *t, struct vcpu *v)
{
	int r;

	set_op(t, "unplug");
	atomic_store_explicit(&v->exit_flag, true, memory_order_release);
	r = rs_vcpu_request(vc_rs(v->index), RS_REQ_EXIT);
	if (r && r != RS_EINVAL)   /* EINVAL: it already saw the flag and left */
		bad_result("rs_vcpu_request(EXIT)", r);
	/* A KVM vCPU has only the library's kick: a lost exit request shows
	 * as a hang in the join. */
	if (!ctx.cfg.kvm)
		deliver_kick(v);
	set_op(t, "unplug: join");
	pthread_join(v->thread, NULL);
	atomic_store(&v->life, VL_FREE);
	atomic_fetch_sub(&ctx.nplugged, 1);
	INC(ctx.stats.unplugs);
	set_op(t, NULL);
}

void *hotplug_main(void *arg)
{
	struct thr *t = &ctx.thr[THR_HOTPLUG];
	int lo = ctx.cfg.vcpus > 1 ? ctx.cfg.vcpus - 1 : 1;
	int hi = ctx.cfg.vcpus + ctx.cfg.hotplug_extra;

	(void)arg;
	while (!atomic_load(&ctx.stop)) {
		int n = atomic_load(&ctx.nplugged), pick;
		bool calm;

		set_op(t, NULL);
		rsu_sleep_ns(rsu_rng_range(&t->rng, 2 * MS, 20 * MS));
		if (atomic_load(&ctx.stop))
			break;
		/* Calm phases are the liveness windows: plug only (a new vCPU
		 * must start running), never unplug or post requests, which
		 * would wake a vCPU that a start failed to wake. */
		calm = atomic_load(&ctx.calm);
		pick = (int)rsu_rng_below(&t->rng, (uint64_t)ctx.nslots);
		if (rsu_rng_below(&t->rng, 8) == 0 && !calm) {
			/* A work request (run_on_cpu). */
			if (atomic_load(&ctx.vcpus[pick].life) == VL_REGISTERED &&
			    !atomic_load(&ctx.vcpus[pick].exit_flag)) {
				int r = rs_vcpu_request(vc_rs(pick), RS_REQ_WORK);

				if (r)
					bad_result("rs_vcpu_request(WORK)", r);
			}
			continue;
		}
		if (n < lo || (n < hi && rsu_rng_below(&t->rng, 2))) {
			plug(t, &t->rng);
		} else if (n > lo && !calm) {
			for (int k = 0; k < ctx.nslots; k++) {
				struct vcpu *v = &ctx.vcpus[(pick + k) % ctx.nslots];

				if (atomic_load(&v->life) == VL_REGISTERED) {
					unplug(t, v);
					break;
				}
			}
		}
	}
	set_op(t, NULL);
	return NULL;
}

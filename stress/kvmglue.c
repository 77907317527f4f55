/* SPDX-License-Identifier: MIT */
/*
 * runstate-stress --kvm: the vCPU slots run by stress/kvm's KVM vCPUs.  Slot
 * i is the VM's vCPU i; the checks read its guest counter from guest memory
 * and the module's in-KVM_RUN flag.  In a build without stress/kvm only the
 * probe is real (it says why --kvm is skipped); the rest is never called.
 */
#include <inttypes.h>
#include <stdio.h>

#include "stress.h"

#ifdef RS_STRESS_KVM
#include "kvm.h"

/* 0, or 77 (a skip) with the reason on stderr. */
int kvm_probe(void)
{
	char why[256] = "";

	if (rk_probe(NULL, why, sizeof(why))) {
		fprintf(stderr, "%s: --kvm: %s; skipped\n", ctx.argv0, why);
		return 77;
	}
	return 0;
}

unsigned kvm_max_vcpus(void)
{
	return RK_MAX_VCPUS;
}

uint32_t kvm_in_guest(int i)
{
	return rk_vcpu_in_run(ctx.vm, (unsigned)i) ? IN_GUEST_NOSTAMP : 0;
}

uint64_t kvm_count(int i)
{
	return rk_guest_counter(ctx.vm, (unsigned)i);
}

uint64_t kvm_halts(int i)
{
	struct rk_vcpu_stats s;

	rk_vcpu_stats(ctx.vm, (unsigned)i, &s);
	return s.exits_hlt;
}

rs_vcpu *kvm_vcpu_rs(int i)
{
	return rk_vcpu_rs(ctx.vm, (unsigned)i);
}

/*
 * --kvm: slot i runs the VM's vCPU i with rk_vcpu_run() on a thread of its
 * own; an unplug ends it with an exit request and a later plug runs the
 * same KVM vCPU on a new thread (QEMU too keeps an unplugged vCPU's fd).
 */
void *kvm_vcpu_main(void *arg)
{
	struct vcpu *v = arg;
	struct thr *t = thr_claim(ctx.thr_vcpu0 + v->index);
	int r;

	v->tid = pthread_self();
	set_op(t, "kvm");
	r = rk_vcpu_run(ctx.vm, (unsigned)v->index);
	if (r) {
		const char *why = rk_vm_error(ctx.vm);

		violation(V_RESULT, "rk_vcpu_run(vCPU %d) failed: %s", v->index,
			  why ? why : rs_strerror(r));
	}
	/* Release: pairs with the acquire loads in plug(). */
	atomic_store_explicit(&v->life, VL_GONE, memory_order_release);
	thr_release(t);
	return NULL;
}

struct find_arg {
	const rs_vcpu *v;
	bool found;
};

static void find_one(const struct rs_vcpu_info *info, void *arg)
{
	struct find_arg *a = arg;

	if (info->vcpu == a->v)
		a->found = true;
}

/* Has rk_vcpu_run() registered slot i yet? */
bool kvm_registered(int i)
{
	struct find_arg a = { vc_rs(i), false };

	rs_vcpu_foreach(ctx.rs, find_one, &a);
	return a.found;
}

/* Device emulation of a KVM vCPU: called on its thread for every I/O and
 * MMIO exit, with the exit's data supplied.  About once per 1-3 ms a guest
 * panic or watchdog (vcpu_device()); sometimes a slow exit. */
static void kvm_exit_hook(struct rk_vm *vm, unsigned idx, const struct rk_exit *ex, void *arg)
{
	struct vcpu *v = &ctx.vcpus[idx];
	struct thr *t = &ctx.thr[ctx.thr_vcpu0 + (int)idx];
	uint64_t now;

	(void)vm;
	(void)ex;
	(void)arg;
	INC(ctx.stats.kvm_hooks);
	if (rsu_rng_chance(&t->rng, ctx.cfg.fault_rate / 16)) {
		/* Slow device emulation: the vCPU is slow to acknowledge. */
		INC(ctx.stats.kvm_slow_exits);
		slow_vcpu(t);
	}
	now = rsu_now_ns();
	if (now < v->next_dev_ns)
		return;
	v->next_dev_ns = now + (uint64_t)rsu_rng_range(&t->rng, 1 * MS, 3 * MS);
	/* Asynchronous only: the loop goes on with the fast path. */
	if (!atomic_load(&ctx.calm) && !atomic_load(&ctx.stop))
		vcpu_device(t, VD_ASYNC);
}

/* RS_REQ_WORK (run_on_cpu), with the vCPU out; rs_vcpu_enter() follows.
 * Half the time a synchronous panic from there. */
static void kvm_work(struct rk_vm *vm, unsigned idx, void *arg)
{
	struct thr *t = &ctx.thr[ctx.thr_vcpu0 + (int)idx];

	(void)vm;
	(void)arg;
	INC(ctx.stats.work);
	if (!atomic_load(&ctx.calm) && !atomic_load(&ctx.stop) && rsu_rng_below(&t->rng, 2))
		vcpu_device(t, VD_SYNC);
}

/* The VM, every slot a KVM vCPU from the start; hot-plug runs them on
 * threads of their own, or not.  0, or 2 with the reason on stderr. */
int kvm_setup(void)
{
	struct rk_config kc = { 0 };
	char why[256] = "";

	kc.nvcpus = (unsigned)ctx.nslots;
	kc.io_shift = ctx.cfg.kvm_io_shift;
	kc.hlt_every = 32;
	kc.exit_hook = kvm_exit_hook;
	kc.work = kvm_work;
	if (rk_vm_create(ctx.rs, &kc, &ctx.vm, why, sizeof(why))) {
		fprintf(stderr, "%s: --kvm: %s\n", ctx.argv0, why);
		return 2;
	}
	return 0;
}

void kvm_teardown(void)
{
	rk_vm_destroy(ctx.vm);
}

/* After the run: the kicks the module's callback sent (the library must
 * count as many), and none lost: with the immediate_exit handshake no kick
 * is (kvm.h). */
uint64_t kvm_final_kicks(void)
{
	struct rk_vcpu_stats k;

	rk_vm_stats(ctx.vm, &k);
	if (k.lost_kicks)
		violation(V_KICK, "%" PRIu64 " kicks landed between the check and KVM_RUN, and the "
				  "guest ran anyway", k.lost_kicks);
	return k.kicks_sent;
}

/* A vCPU in the state dump. */
void kvm_print_vcpu(const struct rs_vcpu_info *info)
{
	int i = rk_vcpu_index(ctx.vm, info->opaque);
	char d[200] = "?";

	if (i >= 0)
		rk_vcpu_describe(ctx.vm, (unsigned)i, d, sizeof(d));
	fprintf(stderr, "    vcpu slot %d: %s%s, out for %.3f ms, unacked for %.3f ms; %s, "
			"guest counter %u\n",
		i, info->active ? "active" : "out", info->parked ? " parked" : "",
		(double)info->out_for_ns / 1e6, (double)info->unacked_ns / 1e6, d,
		i >= 0 ? rk_guest_counter(ctx.vm, (unsigned)i) : 0);
}

#else /* !RS_STRESS_KVM */

int kvm_probe(void)
{
	fprintf(stderr, "%s: --kvm: built without the KVM harness (stress/kvm); skipped\n",
		ctx.argv0);
	return 77;
}

/* The rest is only called with --kvm, which kvm_probe() turned down. */
unsigned kvm_max_vcpus(void)
{
	return MAX_VCPU_SLOTS;
}

uint32_t kvm_in_guest(int i)
{
	(void)i;
	return 0;
}

uint64_t kvm_count(int i)
{
	(void)i;
	return 0;
}

uint64_t kvm_halts(int i)
{
	(void)i;
	return 0;
}

rs_vcpu *kvm_vcpu_rs(int i)
{
	(void)i;
	return NULL;
}

void *kvm_vcpu_main(void *arg)
{
	return arg;
}

bool kvm_registered(int i)
{
	(void)i;
	return false;
}

int kvm_setup(void)
{
	return 2;
}

void kvm_teardown(void)
{
}

uint64_t kvm_final_kicks(void)
{
	return 0;
}

void kvm_print_vcpu(const struct rs_vcpu_info *info)
{
	(void)info;
}

#endif

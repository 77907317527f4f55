/* SPDX-License-Identifier: MIT */
/*
 * vCPUs: registration, the slow path a vCPU takes whenever the fast path
 * fails, requests, and the rules for library calls made on a vCPU thread.
 * The protocols the slow path runs are elsewhere, each with both its
 * sides: going active and out in ack.c, parking in park.c, the slot and
 * its pins in registry.c.
 */
#include <stdio.h>
#include <stdlib.h>

#include "instance.h"

#define VCPU_MAGIC 0x72737663u  /* "rsvc" */

static _Thread_local struct rs_vcpu_impl *tls_self;

static struct rs_vcpu_impl *impl_of(rs_vcpu *v)
{
	return (struct rs_vcpu_impl *)(void *)v;
}

static bool is_registered(struct rs_vcpu_impl *v)
{
	return atomic_load_explicit(&v->registered, memory_order_acquire) == VCPU_MAGIC;
}

/* The vCPU, if pv is registered and this is its thread; else NULL. */
static struct rs_vcpu_impl *own_vcpu(rs_vcpu *pv)
{
	struct rs_vcpu_impl *v = pv ? impl_of(pv) : NULL;

	return v && is_registered(v) && tls_self == v ? v : NULL;
}

/* ---------------------------------------------------------------------------
 * The slow path
 */

static int vcpu_enter(struct rs_vcpu_impl *v)
{
	struct rs_instance *ri = rs_vcpu_inst(v);
	const uint32_t reqmask = VS_EXIT | VS_WORK;
	uint32_t s = atomic_load_explicit(&v->state, memory_order_relaxed);

	if (s & VS_ACTIVE) {
		/* Acquire: the fast path's relaxed load gets its ordering
		 * here (see rs_may_run()). */
		if (!(s & reqmask) && rs_excl_lets_run(&ri->excl, rs_word_load(ri, memory_order_acquire)))
			return 0;
		rs_ack_go_out(v);
	}
	for (;;) {
		int req = rs_park_take_request(v);

		if (req)
			return req;
		if (rs_excl_lets_run(&ri->excl, rs_word_load(ri, memory_order_acquire)) && rs_ack_enter(v))
			return 0;
		rs_park(v, reqmask);
	}
}

/* ---------------------------------------------------------------------------
 * Library calls made from a vCPU thread
 *
 * A call that may wait, made on a registered vCPU's thread, takes that vCPU
 * out first (its acknowledgement, if a stop wants one), so the call never
 * waits for its own vCPU, and a stop raised from a vCPU thread never
 * deadlocks.  The vCPU stays out when the call returns: no call parks
 * inside itself, so every timeout is honoured, and the emulator goes back
 * through rs_vcpu_enter() before guest code (which returns at once when the
 * VM may run).  A call with RS_ASYNC never waits and leaves the vCPU as it
 * was.
 */
void rs_vcpu_thread_out(struct rs_instance *ri)
{
	struct rs_vcpu_impl *self = tls_self;

	if (self && rs_vcpu_inst(self) == ri &&
	    (atomic_load_explicit(&self->state, memory_order_relaxed) & VS_ACTIVE))
		rs_ack_go_out(self);
}

/*
 * Checking builds: rs_may_run_func() is the fast path's check, and on a
 * vCPU's thread it may only be asked while the vCPU is active.  Asked while
 * the library counts the vCPU out (after a call that took it out, or after
 * rs_vcpu_quiesce()), a true answer would let it run guest code unseen by
 * stoppers; that is the emulator's bug, caught here.
 */
void rs_vcpu_check_active(struct rs_instance *ri)
{
#ifndef NDEBUG
	struct rs_vcpu_impl *self = tls_self;

	if (self && rs_vcpu_inst(self) == ri &&
	    !(atomic_load_explicit(&self->state, memory_order_relaxed) & VS_ACTIVE)) {
		fprintf(stderr, "runstate: rs_may_run_func() on the thread of vCPU %u while it "
				"is out: go through rs_vcpu_enter() before guest code\n",
			rs_vcpu_slot(self));
		abort();
	}
#else
	(void)ri;
#endif
}

/* ---------------------------------------------------------------------------
 * Public vCPU API
 */

int rs_vcpu_register(rs_runstate *rs, rs_vcpu *pv, rs_kick_fn *kickfn, void *opaque)
{
	struct rs_instance *ri = rs_inst(rs);
	struct rs_vcpu_impl *v;
	uint64_t now;
	int slot;

	if (!rs || !pv)
		return RS_EINVAL;
	v = impl_of(pv);
	if (tls_self || is_registered(v))
		return RS_EINVAL;
	/* No memset: a rs_vcpu_request() racing with an unregistration and
	 * this registration of the same storage may read registered, ri and
	 * slot at any time (atomics, stored one by one); it acts only after
	 * finding v in the slot it read, pinned (see there). */
	atomic_store_explicit(&v->ri, ri, memory_order_relaxed);
	rs_vcpu_set_slot(v, UINT32_MAX);
	v->kick = kickfn;
	v->opaque = opaque;
	atomic_store_explicit(&v->state, 0, memory_order_relaxed);
	atomic_store_explicit(&v->kick_ns, 0, memory_order_relaxed);
	atomic_store_explicit(&v->wanted_ns, 0, memory_order_relaxed);
	atomic_store_explicit(&v->tree_hi, 0, memory_order_relaxed);
	atomic_store_explicit(&v->cpu, -1, memory_order_relaxed);
	now = rs_now(ri) | 1;
	atomic_store_explicit(&v->out_since_ns, now, memory_order_relaxed);
	atomic_store_explicit(&v->last_ack_ns, now, memory_order_relaxed);
	RS_DELAY(ri, "register");
	slot = rs_registry_insert(&ri->reg, v);
	if (slot < 0)
		return slot;
	atomic_store_explicit(&v->registered, VCPU_MAGIC, memory_order_release);
	tls_self = v;
	return 0;
}

int rs_vcpu_unregister(rs_vcpu *pv)
{
	struct rs_vcpu_impl *v;

	if (!(v = own_vcpu(pv)))
		return RS_EINVAL;
	/* Unregistering counts as acknowledgement. */
	if (atomic_load_explicit(&v->state, memory_order_relaxed) & VS_ACTIVE)
		rs_ack_go_out(v);
	rs_registry_remove(&rs_vcpu_inst(v)->reg, rs_vcpu_slot(v));
	atomic_store_explicit(&v->registered, 0, memory_order_relaxed);
	tls_self = NULL;
	return 0;
}

int rs_vcpu_enter(rs_vcpu *pv)
{
	struct rs_vcpu_impl *v = own_vcpu(pv);

	return v ? vcpu_enter(v) : RS_EINVAL;
}

int rs_vcpu_quiesce(rs_vcpu *pv)
{
	struct rs_vcpu_impl *v = own_vcpu(pv);

	if (!v)
		return RS_EINVAL;
	if (atomic_load_explicit(&v->state, memory_order_relaxed) & VS_ACTIVE)
		rs_ack_go_out(v);
	return 0;
}

int rs_vcpu_request(rs_vcpu *pv, unsigned req)
{
	struct rs_vcpu_impl *v, *pinned;
	struct rs_instance *ri;
	uint32_t bits = 0, i;

	if (!pv || !req || (req & ~(RS_REQ_EXIT | RS_REQ_WORK)))
		return RS_EINVAL;
	v = impl_of(pv);
	/* Acquire: pairs with the release store in rs_vcpu_register(), so
	 * ri and slot below are at least those of that registration. */
	if (!is_registered(v))
		return RS_EINVAL;
	if (req & RS_REQ_EXIT)
		bits |= VS_EXIT;
	if (req & RS_REQ_WORK)
		bits |= VS_WORK;
	/*
	 * The owner may be unregistering v and registering the same storage
	 * again meanwhile, so ri and slot may belong to the old registration
	 * or the new one, or be a mix of both.  Pin the slot they name, as a
	 * scanner does, and act only if it holds v: then v is registered
	 * there (unregistration waits for the pin), and it is the current
	 * registration, whichever ri and slot came from.
	 */
	ri = rs_vcpu_inst(v);
	i = rs_vcpu_slot(v);
	if (!ri)
		return RS_EINVAL;
	pinned = rs_registry_pin(&ri->reg, i);
	if (pinned != v) {
		/* Another vCPU now (unpin it), or none (nothing pinned). */
		if (pinned)
			rs_registry_unpin(&ri->reg, i);
		return RS_EINVAL;
	}
	rs_park_request(ri, v, bits);
	rs_registry_unpin(&ri->reg, i);
	return 0;
}

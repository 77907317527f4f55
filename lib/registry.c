/* SPDX-License-Identifier: MIT */
/*
 * The registry: a fixed array of slots, one per registered vCPU, and the
 * pins that make it safe for a scanner, a waker or a requester on another
 * thread to touch a vCPU whose owner may be unregistering it.  The pin side
 * of the pairing is inline in registry.h; the remover's side is here.
 *
 * Why pins and not RCU (which the listener set uses): a vCPU's storage is
 * the emulator's, so its unregistration must return only once no thread
 * can touch it; with RCU that is a grace period (milliseconds) per
 * unregistration, with pins a wait for the scans in flight on that one
 * slot (a few instructions).  The price is two read-modify-writes per
 * occupied slot per scan.
 */
#include <sched.h>
#include <stdlib.h>

#include "instance.h"

size_t rs_registry_bytes(unsigned max_vcpus)
{
	return (size_t)max_vcpus * sizeof(struct rs_slot);
}

void rs_registry_init(struct rs_registry *reg, unsigned max_vcpus, struct rs_slot *mem,
		      struct rs_cost_part *cost)
{
	reg->slots = mem;
	reg->nslots = max_vcpus;
#ifdef RS_INSTRUMENT
	reg->cost = cost;
#else
	(void)cost;
#endif
}

int rs_registry_insert(struct rs_registry *reg, struct rs_vcpu_impl *v)
{
	uint32_t i, hw;

	for (i = 0; i < reg->nslots; i++) {
		struct rs_vcpu_impl *expect = NULL;

		if (atomic_load_explicit(&reg->slots[i].vcpu, memory_order_relaxed))
			continue;
		/* Fill in the slot number before publishing: the CAS's
		 * release half pairs with the pinners' seq_cst load of the
		 * slot (rs_registry_pin()), so whoever finds v sees all of
		 * it. */
		rs_vcpu_set_slot(v, i);
		if (atomic_compare_exchange_strong_explicit(&reg->slots[i].vcpu, &expect, v,
							    memory_order_seq_cst,
							    memory_order_relaxed))
			break;
	}
	if (i == reg->nslots)
		return RS_ENOSPC;
	/* seq_cst: a vCPU that registers and parks at once (finding
	 * RS_W_PARKED already set, so making no CAS of its own on the word)
	 * must be found by the next wake wave, which starts with a seq_cst
	 * fence (park.c, rs_park_wake_all()); and a stopper's scan, after its
	 * fence, must find a vCPU that registers and announces (P1).  The
	 * load and the failed CAS too: when another registration already
	 * raised hiwater past our slot we write nothing, and only an SC read
	 * of its write puts that write before our announcement in the total
	 * order (the vCPU side of P1 has no fence; weak-memory.md). */
	hw = atomic_load_explicit(&reg->hiwater, memory_order_seq_cst);
	while (hw < i + 1 &&
	       !atomic_compare_exchange_weak_explicit(&reg->hiwater, &hw, i + 1,
						      memory_order_seq_cst, memory_order_seq_cst))
		;
	atomic_fetch_add_explicit(&reg->nregistered, 1, memory_order_relaxed);
	return (int)i;
}

void rs_registry_remove(struct rs_registry *reg, uint32_t i)
{
	struct rs_slot *sl = &reg->slots[i];

	/* seq_cst store, then seq_cst load of pins: against the pinner's
	 * seq_cst increment, then load of the slot (rs_registry_pin()). */
	atomic_store_explicit(&sl->vcpu, NULL, memory_order_seq_cst);
	while (atomic_load_explicit(&sl->pins, memory_order_seq_cst))
		sched_yield();
	atomic_fetch_sub_explicit(&reg->nregistered, 1, memory_order_relaxed);
}

struct rs_vcpu_impl *rs_registry_peek(struct rs_registry *reg, uint32_t i)
{
	return i < reg->nslots ? atomic_load_explicit(&reg->slots[i].vcpu, memory_order_relaxed) :
				 NULL;
}

uint32_t rs_registry_count(struct rs_registry *reg)
{
	return atomic_load_explicit(&reg->nregistered, memory_order_relaxed);
}

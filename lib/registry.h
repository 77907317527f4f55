/* SPDX-License-Identifier: MIT */
/*
 * registry.c and this header: the slots that registered vCPUs occupy, and
 * the pins that let another thread touch a vCPU without racing with its
 * unregistration.  Every function takes the registry part of the instance
 * (&ri->reg); the ones on the stop path (pin, unpin, the walk) are inline
 * here, so that a scan's callback inlines into it.
 *
 * The pairing, both sides in this module: a pinner increments the slot's
 * pins, then loads the slot (both seq_cst, rs_registry_pin()); the remover
 * stores NULL into the slot, then loads pins (both seq_cst,
 * rs_registry_remove()).  In the single total order one of the two comes
 * first, so either the pinner finds the slot empty or the remover sees the
 * pin and waits for it (docs/protocol.md, P9).
 */
#ifndef RS_REGISTRY_H
#define RS_REGISTRY_H

struct rs_slot {
	_Atomic(struct rs_vcpu_impl *) vcpu;
	_Atomic uint32_t pins;         /* threads that may touch the vCPU */
};

struct rs_registry {
	struct rs_slot *slots;
	uint32_t nslots;
	_Atomic uint32_t hiwater;      /* slots [0, hiwater) may be in use */
	_Atomic uint32_t nregistered;
#ifdef RS_INSTRUMENT
	struct rs_cost_part *cost;     /* the instance's work counters (cost.h) */
#endif
};

/* The bytes of max_vcpus slots; rs_registry_init() uses them, zeroed, from
 * mem (the instance's block, instance.c).  cost: the instance's work
 * counters (NULL unless instrumented). */
RS_HIDDEN size_t rs_registry_bytes(unsigned max_vcpus);
RS_HIDDEN void rs_registry_init(struct rs_registry *reg, unsigned max_vcpus, struct rs_slot *mem,
				struct rs_cost_part *cost);
/* Publish v in a free slot and return its index, or RS_ENOSPC. */
RS_HIDDEN int rs_registry_insert(struct rs_registry *reg, struct rs_vcpu_impl *v);
/* Empty slot i and wait until no pinner can touch its vCPU. */
RS_HIDDEN void rs_registry_remove(struct rs_registry *reg, uint32_t i);
/* Slot i's vCPU, unpinned: a hint that must not be dereferenced for more
 * than a prefetch. */
RS_HIDDEN struct rs_vcpu_impl *rs_registry_peek(struct rs_registry *reg, uint32_t i);
/* Registered vCPUs, relaxed (a hint). */
RS_HIDDEN uint32_t rs_registry_count(struct rs_registry *reg);

/* The slots that may be in use are [0, rs_registry_hiwater()).  Acquire:
 * pairs with the seq_cst raise in rs_registry_insert(). */
static inline uint32_t rs_registry_hiwater(struct rs_registry *reg)
{
	return atomic_load_explicit(&reg->hiwater, memory_order_acquire);
}

static inline void rs_registry_unpin(struct rs_registry *reg, uint32_t i)
{
	/* Release: what the pinner did to the vCPU comes before the
	 * remover's load that sees the pin gone. */
	atomic_fetch_sub_explicit(&reg->slots[i].pins, 1, memory_order_release);
}

/* Pin slot i and return its vCPU, or NULL (nothing pinned then; also for
 * an index out of range). */
static inline struct rs_vcpu_impl *rs_registry_pin(struct rs_registry *reg, uint32_t i)
{
	struct rs_slot *sl;
	struct rs_vcpu_impl *v;

	if (i >= reg->nslots)
		return NULL;
	sl = &reg->slots[i];
	RS_COST_ADD(reg->cost, RS_COST_SLOTS, 1);
	/* An empty slot costs one shared read. */
	if (!atomic_load_explicit(&sl->vcpu, memory_order_relaxed))
		return NULL;
	RS_COST_ADD(reg->cost, RS_COST_PINS, 1);
	/* seq_cst pin, then seq_cst load of the slot: against the remover's
	 * seq_cst store of NULL, then load of pins (rs_registry_remove()),
	 * one of the two sees the other. */
	atomic_fetch_add_explicit(&sl->pins, 1, memory_order_seq_cst);
	v = atomic_load_explicit(&sl->vcpu, memory_order_seq_cst);
	if (!v)
		rs_registry_unpin(reg, i);
	return v;
}

/* Visit every registered vCPU, pinned; stop early (and return false) when
 * fn returns false. */
typedef bool rs_slot_fn(struct rs_vcpu_impl *v, void *arg);
static inline bool rs_registry_for_each(struct rs_registry *reg, rs_slot_fn *fn, void *arg)
{
	uint32_t n = rs_registry_hiwater(reg);

	for (uint32_t i = 0; i < n; i++) {
		struct rs_vcpu_impl *v = rs_registry_pin(reg, i);
		bool go_on;

		if (!v)
			continue;
		go_on = fn(v, arg);
		rs_registry_unpin(reg, i);
		if (!go_on)
			return false;
	}
	return true;
}

#endif

/* SPDX-License-Identifier: MIT */
/*
 * vcpu.c: a vCPU's record and its own thread's calls (registration, the
 * slow path, requests).  The state word's protocols are in ack.c (active
 * and out) and park.c (parked).
 */
#ifndef RS_VCPU_H
#define RS_VCPU_H

/*
 * Per-vCPU state word, also the futex the vCPU parks on.
 *
 *  31            8   7..6    5      4      3      2      1       0
 * +----------------+------+------+------+------+------+-------+--------+
 * |  generation    | rsvd | TREE | EXIT | WORK | PARK | WANTED| ACTIVE |
 * +----------------+------+------+------+------+------+-------+--------+
 *
 * ACTIVE  executing guest code or handling an exit (else: out)
 * WANTED  a stopper counted this vCPU in the pending count and kicked it;
 *         the vCPU's next active->out transition decrements the count
 * PARK    the vCPU sleeps (or is about to) on this word
 * WORK, EXIT  requests posted by rs_vcpu_request()
 * TREE    woken by a tree wake: wake the slots up to tree_hi (park.c)
 * generation  +1 on every active->out transition: a scanner that saw
 *         ACTIVE with generation g knows the vCPU has been out since once
 *         the generation differs from g
 */
#define VS_ACTIVE   0x01u
#define VS_WANTED   0x02u
#define VS_PARK     0x04u
#define VS_WORK     0x08u
#define VS_EXIT     0x10u
#define VS_TREE     0x20u
#define VS_GEN_ONE  0x100u

/*
 * rs_vcpu_request() may run on any thread while the owner unregisters and
 * registers the same storage again: every field it reads before it has
 * validated the vCPU through a pinned slot (registered, ri, slot) is an
 * atomic, and registration never memsets them (rs_vcpu_register()).
 */
struct rs_vcpu_impl {
	_Atomic uint32_t state;
	_Atomic uint32_t slot;
	_Atomic(struct rs_instance *) ri;
	rs_kick_fn *kick;
	void *opaque;
	_Atomic uint64_t kick_ns;     /* last kick (re-kick pacing) */
	_Atomic uint64_t wanted_ns;   /* first kick of this active period */
	_Atomic uint64_t out_since_ns; /* 0 while active */
	_Atomic uint64_t last_ack_ns;  /* the last active->out transition */
	/* The CPU this vCPU's thread ran on when it last entered guest code
	 * (rs_ack_enter()), -1 if unknown.  A hint for a waiting stopper
	 * (rs_ack_wait()): relaxed, stale once the thread migrates. */
	_Atomic int32_t cpu;
	_Atomic uint32_t registered;
	/* 1 + the end of the slot range this vCPU must wake when a tree
	 * wake woke it, 0 when none is handed over (park.c): written by the
	 * waker whose CAS set VS_TREE, right after it. */
	_Atomic uint32_t tree_hi;
#ifdef RS_INSTRUMENT
	/* Depth of the wake that woke this vCPU in a tree wave (cost.h):
	 * written with tree_hi, before its release store. */
	_Atomic uint32_t tree_depth;
#endif
};
_Static_assert(sizeof(struct rs_vcpu_impl) <= sizeof(rs_vcpu), "rs_vcpu storage too small");
_Static_assert(_Alignof(struct rs_vcpu_impl) <= _Alignof(rs_vcpu), "rs_vcpu alignment");

/* The instance and slot of a vCPU known to be registered (its own thread,
 * or a pinner of its slot): set before the vCPU was published. */
static inline struct rs_instance *rs_vcpu_inst(const struct rs_vcpu_impl *v)
{
	return atomic_load_explicit(&((struct rs_vcpu_impl *)v)->ri, memory_order_relaxed);
}

static inline uint32_t rs_vcpu_slot(const struct rs_vcpu_impl *v)
{
	return atomic_load_explicit(&((struct rs_vcpu_impl *)v)->slot, memory_order_relaxed);
}

static inline void rs_vcpu_set_slot(struct rs_vcpu_impl *v, uint32_t i)
{
	atomic_store_explicit(&v->slot, i, memory_order_relaxed);
}

static inline rs_vcpu *rs_vcpu_handle(struct rs_vcpu_impl *v)
{
	return (rs_vcpu *)(void *)v;
}

/* A call that may wait, on a vCPU thread: take that vCPU out (if it is one
 * of ri's and active).  Checking builds: abort when the fast path is asked
 * on the thread of a vCPU that is out. */
RS_HIDDEN void rs_vcpu_thread_out(struct rs_instance *ri);
RS_HIDDEN void rs_vcpu_check_active(struct rs_instance *ri);

#endif

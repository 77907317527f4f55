/* SPDX-License-Identifier: MIT */
/*
 * exclusive.c: exclusive sections.  The queue of threads that want a
 * section, the owner, and both sides of the word's RS_W_EXCL bit: the
 * owner sets it and waits for the vCPUs (ack.c's protocol, as a stop
 * does), its end clears it or hands it to the next waiter.  The vCPU side,
 * "may this thread's vCPU run with this word?", is rs_excl_lets_run().
 */
#ifndef RS_EXCLUSIVE_H
#define RS_EXCLUSIVE_H

struct rs_excl_waiter;

/*
 * mutex guards head, tail and every waiter's links; owner and the word's
 * RS_W_EXCL change only under it.  owner is the token of the thread that
 * holds the section (rs_excl_token's address in that thread), NULL when
 * none; it is read without the mutex by vCPU slow paths, which only ask
 * whether it is their own thread's token.  The inline functions take the
 * part (&ri->excl), as registry.h's do.
 */
struct rs_excl {
	_Atomic uint32_t mutex;
	_Atomic(const void *) owner;
	struct rs_excl_waiter *head, *tail;
};

/* One per thread: its address identifies the thread as a section owner. */
extern _Thread_local char rs_excl_token RS_HIDDEN;

/* Does the calling thread hold ri's section?  A relaxed load suffices: only
 * this thread stores its own token (or a hand-over, which this thread
 * acquired before it returned from rs_exclusive_begin()), and only this
 * thread removes it, in program order before anything it asks later. */
static inline bool rs_excl_mine(struct rs_excl *x)
{
	return atomic_load_explicit(&x->owner, memory_order_relaxed) == &rs_excl_token;
}

/*
 * The vCPU slow path's test (rs_vcpu_enter(), rs_ack_enter(), rs_park()):
 * may the calling thread's vCPU run guest code with word w?  When w lets
 * every vCPU run; or when the only bit that keeps them out is the section's
 * and this thread owns it.  The fast path (rs_may_run()) knows nothing of
 * sections: it fails on the owner's thread too, which then asks here.
 */
static inline bool rs_excl_lets_run(struct rs_excl *x, uint64_t w)
{
	if (rs_w_may_run(w))
		return true;
	return (w & RS_W_NORUN_MASK) == RS_W_EXCL && rs_excl_mine(x);
}

/* The word keeps vCPUs out only for a section (or lets them run): then
 * the owner's vCPU may run, and a parked owner must be woken. */
static inline bool rs_w_may_run_but_excl(uint64_t w)
{
	return rs_w_may_run(w & ~RS_W_EXCL);
}

/* For rs_dump(): is a section held (a snapshot)? */
RS_HIDDEN bool rs_excl_held(struct rs_instance *ri);

#endif

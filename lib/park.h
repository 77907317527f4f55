/* SPDX-License-Identifier: MIT */
/*
 * park.c: parked vCPUs.  Both sides of RS_W_PARKED: a vCPU that may not run
 * sets it before it sleeps, and whoever makes the CAS that clears it wakes
 * every parked vCPU, in a tree.  And requests, which wake one vCPU.
 */
#ifndef RS_PARK_H
#define RS_PARK_H

/* Park v until the word may let it run or a request in reqmask arrives;
 * the caller loops and re-checks.  On v's own thread, v out. */
RS_HIDDEN void rs_park(struct rs_vcpu_impl *v, uint32_t reqmask);
/* Wake every parked vCPU, in a tree (after a CAS that cleared
 * RS_W_PARKED). */
RS_HIDDEN void rs_park_wake_all(struct rs_instance *ri);
/* After a successful seq_cst CAS of the word from old to nw: if it cleared
 * RS_W_PARKED, wake the parked vCPUs.  Inline: every claim and every
 * releasing command asks, and few need to. */
static inline void rs_park_release(struct rs_instance *ri, uint64_t old, uint64_t nw)
{
	if ((old & RS_W_PARKED) && !(nw & RS_W_PARKED))
		rs_park_wake_all(ri);
}
/* Post request bits (VS_WORK, VS_EXIT) to v, pinned: wake it if parked,
 * else kick it. */
RS_HIDDEN void rs_park_request(struct rs_instance *ri, struct rs_vcpu_impl *v, uint32_t bits);
/* Take a pending request on v's own thread: RS_VCPU_EXIT, RS_VCPU_WORK
 * (its bit cleared) or 0. */
RS_HIDDEN int rs_park_take_request(struct rs_vcpu_impl *v);
/* Before a command that may start the VM: a prefetch hint for the wake. */
RS_HIDDEN void rs_park_prefetch(struct rs_instance *ri);

#endif

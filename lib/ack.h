/* SPDX-License-Identifier: MIT */
/*
 * ack.c: acknowledgements.  Both halves of the store-buffering pairing
 * between a vCPU going active and a stopper scanning, the kicks, and the
 * pending count through which the last acknowledgement hands a stop edge
 * back to its waiter.
 */
#ifndef RS_ACK_H
#define RS_ACK_H

/* pending: the number of active vCPUs with VS_WANTED set, plus
 * PENDING_SLEEPER while a stopper sleeps on it.  Written by the stopper
 * (counting) and by every acknowledging vCPU, so on a line of its own with
 * nothing but the re-kick delay, which only waiting stoppers read. */
struct rs_ack {
	_Atomic uint32_t pending;
	int64_t rekick_ns;
	/* How long a waiting stopper spins before it sleeps (rs_ack_wait()):
	 * twice the last wait that had to wait, within the bounds below.
	 * Relaxed: a hint, read and written by stoppers only. */
	_Atomic uint64_t spin_ns;
	/* The edge scanners that clear hint bits (hint_clear() in ack.c):
	 * each bumps clr_start before its first clear in a hint word and
	 * clr_done after its last re-check there; a scanner that sees them
	 * differ around its load of a hint word visits the word's every
	 * slot.  Written only by clearing scanners, on a line of their
	 * own. */
	_Alignas(RS_LINE) _Atomic uint64_t clr_start, clr_done;
	/* The active hint: bit i % 64 of hint[i / 64] is set whenever the
	 * vCPU in slot i may be active (set by the vCPU as it announces,
	 * cleared lazily by a stop edge's scan that finds it out), so that
	 * a scan skips the slots of vCPUs that have not run since the last
	 * stop (docs/protocol.md, P22).  The pointer is read-mostly, on a
	 * line of its own: every announcement reads it. */
	_Alignas(RS_LINE) _Atomic uint64_t *hint;
	uint32_t nhint;
};
#define RS_ACK_SPIN_MIN_NS 4000
#define RS_ACK_SPIN_MAX_NS 100000
#define PENDING_SLEEPER 0x80000000u
#define PENDING_COUNT   0x7fffffffu

/* The bytes of the active hint for max_vcpus, a whole number of lines;
 * rs_ack_init() uses them, zeroed, from hint (the instance's block,
 * instance.c). */
RS_HIDDEN size_t rs_ack_hint_bytes(unsigned max_vcpus);
RS_HIDDEN void rs_ack_init(struct rs_instance *ri, int64_t rekick_ns, unsigned max_vcpus,
			   _Atomic uint64_t *hint);

/* The vCPU side, on its own thread: out -> active when the word lets it run
 * (true: active, and the word it re-loaded still lets it run; false: it
 * retreated and ran no guest code); and active -> out, the
 * acknowledgement. */
RS_HIDDEN bool rs_ack_enter(struct rs_vcpu_impl *v);
RS_HIDDEN void rs_ack_go_out(struct rs_vcpu_impl *v);

/* The stopper side.  Scan the vCPUs: check (count and kick the newly
 * active), re-kick laggards after the delay, or kick every active vCPU for
 * a new stop edge.  True when every registered vCPU is out.  With mycpu
 * >= 0 (the caller's CPU), *on_mycpu says whether a vCPU still in guest
 * code last entered it on that CPU (rs_ack_wait()'s spin); else -1, NULL. */
enum rs_scan_mode { RS_SCAN_CHECK, RS_SCAN_REKICK, RS_SCAN_EDGE };
RS_HIDDEN bool rs_ack_scan(struct rs_instance *ri, enum rs_scan_mode mode, int mycpu,
			    bool *on_mycpu);
/* Wait until every registered vCPU is out, kicking and re-kicking; 0 or
 * RS_ETIMEDOUT at the deadline. */
RS_HIDDEN int rs_ack_wait(struct rs_instance *ri, uint64_t deadline);
/* Some registered vCPU is active (a hint: no kick, no count). */
RS_HIDDEN bool rs_ack_any_active(struct rs_instance *ri);
/* Some wanted acknowledgement is still outstanding (a hint, seq_cst). */
RS_HIDDEN bool rs_ack_outstanding(struct rs_instance *ri);
RS_HIDDEN unsigned rs_ack_pending_count(struct rs_instance *ri);
/* Kick v now (it must be pinned or its own thread's); returns the time
 * just after the kick, which it stores as v's last kick. */
RS_HIDDEN uint64_t rs_ack_kick(struct rs_instance *ri, struct rs_vcpu_impl *v);

#endif

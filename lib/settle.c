/* SPDX-License-Identifier: MIT */
/*
 * Settling: the backlog of edges, made by every CAS that changes running
 * and taken off by one thread at a time, in edge order.
 *
 * An edge (running <-> stopped) advances the edge counter and either joins
 * the backlog (the backlog field counts edges not yet settled) or, when the
 * backlog is full, is coalesced (the overflow bit).  The backlog's work is
 * done by whoever holds the settle mutex, one entry at a time and in edge
 * order:
 *
 *   stop edge:  wait until every registered vCPU is out, then emit STOP;
 *   start edge: emit RESUME;
 *   coalesced run (the edges made while the overflow bit was set, taken as
 *   one entry once the backlog has drained): report them as lost, and run
 *   the listeners once if their net effect changed running.
 *
 * Each entry ends with a CAS that takes it off the backlog ("claims" it);
 * the claim of the last one lets vCPUs run when the VM runs, and it also
 * takes RS_W_PARKED and wakes the parked vCPUs (park.c).
 *
 * Synchronous callers take the settle mutex and wait (for the vCPUs of stop
 * edges up to their own).  Everyone else helps without waiting: try the
 * mutex, process what needs no waiting, unlock, re-check (rs_settle_help()).
 * The vCPU whose acknowledgement completes a stop helps too (ack.c), so an
 * asynchronous stop settles without any thread waiting for it.
 *
 * Both sides of the pairings of the backlog are in this file: the edge
 * maker's store of its word (note_edge()) and the settler's load of it
 * (edge_word()); the makers' counts of coalesced edges (rs_edge_cas()) and
 * the settler's reading of them (absorb()); the settler's release of
 * `settled` and the waiters' acquire of it (edge_unsettled()); the failed
 * trylock and the holder's re-check after unlocking (rs_settle_help()).
 */
#include <sched.h>

#include "instance.h"

/* An edge_word slot that no edge's word can match: its edge field is one
 * more than an edge that maps to the slot, and every edge that maps to it
 * differs from that by a multiple of RS_EDGE_WORDS (even). */
static uint64_t edge_word_empty(uint64_t e)
{
	return (uint64_t)(uint32_t)(e + 1) << RS_W_EDGE_SHIFT;
}

void rs_settle_init(struct rs_instance *ri)
{
	/* Edge 0 is the initial stopped state, settled from the start. */
	for (uint64_t i = 0; i < RS_EDGE_WORDS; i++)
		atomic_init(&ri->settle.edge_word[i], edge_word_empty(i));
}

enum { SETTLE_DONE = 0, SETTLE_BLOCKED = 1 };

/*
 * The word made by edge e's CAS.  Its maker stores it right after the CAS
 * (note_edge()); if it has not yet, wait for it, briefly: a maker is never
 * blocked between its CAS and that store.  Edge e is in the backlog, and the
 * backlog never holds more edges than there are slots, so the slot holds e's
 * word or (before the store) the empty mark left when the slot's previous
 * edge was claimed (settle_locked()); never a word of another edge.
 */
static uint64_t edge_word(struct rs_instance *ri, uint64_t e)
{
	_Atomic uint64_t *slot = &ri->settle.edge_word[e % RS_EDGE_WORDS];

	for (int spin = 0;; spin++) {
		/* Pairs with the release store in note_edge(). */
		uint64_t w = atomic_load_explicit(slot, memory_order_acquire);

		if (rs_w_edge(w) == (uint32_t)e)
			return w;
		if (spin < 100)
			rs_cpu_relax();
		else
			sched_yield();
	}
}

/* After a successful CAS from old to nw: record an edge for the settler. */
static void note_edge(struct rs_instance *ri, uint64_t old, uint64_t nw)
{
	if (rs_w_running(old) == rs_w_running(nw))
		return;
	if (!(nw & RS_W_OVERFLOW)) {
		/* In the backlog: its word for the settler.  Release: pairs
		 * with the acquire load in edge_word(). */
		atomic_store_explicit(&ri->settle.edge_word[rs_w_edge(nw) % RS_EDGE_WORDS], nw,
				      memory_order_release);
	}
	if (rs_w_running(nw))
		RS_STAT_INC(ri, start_edges);
	else
		RS_STAT_INC(ri, stop_edges);
}

/*
 * Every CAS on the word that may make an edge: a command's, a lock's, an
 * unlock's.  seq_cst: a stop edge's CAS is the stopper's half of the
 * store-buffering pairing with a vCPU's announcement (ack.c), and its
 * release half publishes what the caller wrote before the command to every
 * thread that sees the new word.  *old is the expected word, updated on
 * failure as by the CAS.
 *
 * A coalesced edge counts itself, under its generation (the word's
 * RS_W_COAL_GEN): in flight from before its CAS until after it bumped
 * coalesced_made, which absorb() relies on to count the run exactly.  The
 * increment of coalesce_inflight is seq_cst so that it comes before the CAS
 * in the single total order (pairs with absorb()'s load after its own CAS);
 * the decrement is a release, so that a settler that reads it sees the bump
 * of coalesced_made before it.
 */
RS_HOT bool rs_edge_cas(struct rs_instance *ri, uint64_t *old, uint64_t nw)
{
	uint64_t was = *old;
	bool coal = (nw & RS_W_OVERFLOW) && rs_w_running(was) != rs_w_running(nw);
	unsigned g = rs_w_coal_gen(nw);
	bool ok;

	if (coal)
		atomic_fetch_add_explicit(&ri->settle.coalesce_inflight[g], 1, memory_order_seq_cst);
	ok = rs_word_cas_weak(ri, old, nw, memory_order_seq_cst, memory_order_acquire);
	if (coal) {
		if (ok)
			atomic_fetch_add_explicit(&ri->settle.coalesced_made[g], 1, memory_order_relaxed);
		atomic_fetch_sub_explicit(&ri->settle.coalesce_inflight[g], 1, memory_order_release);
	}
	if (ok)
		note_edge(ri, was, nw);
	return ok;
}

/*
 * Take the backlog's first entry off it (the claim).  Only the settle mutex
 * holder takes entries off, so this cannot fail for good: the CAS retries
 * over concurrent edges and parkers.  The claim that empties the backlog of
 * a running VM lets vCPUs run; it also clears RS_W_PARKED, and if that was
 * set, wakes the parked vCPUs.
 */
static void claim(struct rs_instance *ri)
{
	uint64_t w = rs_word_load(ri, memory_order_relaxed), nw;

	do {
		nw = w - RS_W_BACKLOG_ONE;
		/* Runnable but for a section: the owner may run, and may be
		 * parked (a stop during its section): wake them all, the
		 * others park again (exclusive.c, P20). */
		if (rs_w_may_run_but_excl(nw))
			nw &= ~RS_W_PARKED;
		RS_DELAY(ri, "settle-clear");
		/* seq_cst: pairs with the parkers' CAS that sets RS_W_PARKED
		 * (rs_park()); whichever comes first in the word's order, a
		 * parked vCPU is woken or sees the word runnable.  Its
		 * release half publishes what the listeners and the settler
		 * wrote to every vCPU that then acquires the word. */
	} while (!rs_word_cas_weak(ri, &w, nw, memory_order_seq_cst, memory_order_relaxed));
	rs_park_release(ri, w, nw);
}

/*
 * The backlog is empty and edges were coalesced: make them one entry (the
 * "coalesced run") in a CAS that ends the overflow, so that edges made from
 * now on join the backlog again, after it.  The run's edge counter ends 1
 * after the last settled edge if the run changed running, 2 if not.  The
 * same CAS flips the generation.  False if the CAS lost a race (then the
 * caller reloads the word).
 *
 * How many edges the run has: the word counted them modulo 2^9 (the
 * previous absorb reset the count), and coalesced_made[g] counts every
 * edge of generation g, bumped by its maker after its CAS, so it lags by
 * the bumps not landed yet.  Read after our CAS, it holds none of the next
 * run's (those have the other generation, and generation g comes back only
 * with the next absorb, which is ours to make), and a bump not landed
 * belongs to a maker still counted in coalesce_inflight[g], read before it
 * (a maker's decrement releases its bump; the seq_cst load acquires).  So
 * with fewer than 2^9 in flight, the count is the only value congruent to
 * the word's count between the landed bumps and 2^9 above them; with more
 * (never in practice), wait until fewer are.
 */
static bool absorb(struct rs_instance *ri, uint64_t w)
{
	unsigned coal = rs_w_coal(w), g = rs_w_coal_gen(w);
	uint32_t tail = rs_w_edge_tail(w);
	uint32_t end = tail + ((coal & 1) ? 1u : 2u);
	uint64_t nw = (w & ~(RS_W_OVERFLOW | RS_W_COAL_MASK | RS_W_EDGE_MASK)) ^ RS_W_COAL_GEN;
	uint64_t landed;

	nw |= (uint64_t)end << RS_W_EDGE_SHIFT | RS_W_BACKLOG_ONE;
	/* seq_cst: a CAS on the word like any claim (see claim()). */
	if (!rs_word_cas_strong(ri, &w, nw, memory_order_seq_cst, memory_order_relaxed))
		return false;
	while (atomic_load_explicit(&ri->settle.coalesce_inflight[g], memory_order_seq_cst) >=
	       1u << RS_W_COAL_BITS)
		sched_yield();
	/* Acquire: pairs with the makers' release of coalesce_inflight (their
	 * bump comes before it), seen through the load above. */
	landed = atomic_load_explicit(&ri->settle.coalesced_made[g], memory_order_acquire) -
		 ri->settle.coalesced[g];
	ri->settle.synth_n = landed + ((coal - landed) & ((1u << RS_W_COAL_BITS) - 1));
	ri->settle.coalesced[g] += ri->settle.synth_n;
	ri->settle.synth = true;
	ri->settle.synth_edge = end;
	ri->settle.synth_word = nw;
	return true;
}

/*
 * Process the backlog with the settle mutex held.  Stop entries that start
 * at or before the edge `block_until` wait for the vCPUs until `deadline`;
 * later ones (and all of them with NO_BLOCK) only check.  Returns
 * SETTLE_DONE when the backlog is empty (and no edge is being coalesced),
 * SETTLE_BLOCKED when a later stop entry still has active vCPUs,
 * RS_ETIMEDOUT.
 */
static int settle_locked(struct rs_instance *ri, uint32_t block_until, bool block,
			 uint64_t deadline)
{
	for (;;) {
		uint64_t w = rs_word_load(ri, memory_order_seq_cst);
		uint32_t s = atomic_load_explicit(&ri->settle.settled, memory_order_relaxed), last;
		uint64_t n, ew;
		bool stop, flip;

		if (rs_w_backlog(w) == 0) {
			if (!(w & RS_W_OVERFLOW))
				return SETTLE_DONE;
			absorb(ri, w);
			continue;
		}
		/* The first entry: a coalesced run, or one edge. */
		if (ri->settle.synth) {
			last = ri->settle.synth_edge;
			n = ri->settle.synth_n;
			ew = ri->settle.synth_word;
		} else {
			last = s + 1;
			n = 1;
			ew = edge_word(ri, last);
		}
		stop = rs_edge_is_stop(last);
		/* One edge always changes running; a run, if it is odd. */
		flip = (n & 1) != 0;
		if (flip && stop) {
			if (block && last - block_until - 1 >= UINT32_C(1) << 31) {
				/* last <= block_until, modulo 2^32 (both are in the
				 * backlog's reach): wait for the vCPUs. */
				int r = rs_ack_wait(ri, deadline);

				if (r)
					return r;
			} else if (!rs_ack_scan(ri, RS_SCAN_CHECK, -1, NULL)) {
				return SETTLE_BLOCKED;
			}
			/* Every vCPU is out: quiesce the devices, then tell
			 * management (QEMU's order). */
			rs_run_listeners(ri, false, ew);
		}
		/* A start's RESUME comes before its listeners; no vCPU runs
		 * before the claim below.  A coalesced run's edges are
		 * reported lost (their own words are gone), with the word
		 * that ends the run. */
		if (ri->settle.synth)
			rs_events_emit(ri, ri->settle.settled_seq + 1, n, RS_EVENT_LOST, ew);
		else
			rs_events_emit(ri, ri->settle.settled_seq + 1, 1, stop ? RS_EVENT_STOP : RS_EVENT_RESUME, ew);
		if (flip && !stop)
			rs_run_listeners(ri, true, ew);
		/* Leave the empty mark in the slot before the claim: the next
		 * edge that uses the slot (last + RS_EDGE_WORDS) can join the
		 * backlog only after this claim, and its maker's CAS reads
		 * the claim or a later RMW of the word, so its store lands
		 * after this one (the claim's release orders them). */
		if (!ri->settle.synth)
			atomic_store_explicit(&ri->settle.edge_word[last % RS_EDGE_WORDS],
					      edge_word_empty(last), memory_order_relaxed);
		ri->settle.synth = false;
		ri->settle.settled_seq += n;
		claim(ri);
		/* Release: pairs with the acquire loads of settled
		 * (edge_unsettled()): a caller that sees its edge settled sees
		 * the vCPUs' acknowledgements too. */
		atomic_store_explicit(&ri->settle.settled, last, memory_order_release);
	}
}

void rs_settle_help(struct rs_instance *ri)
{
	for (;;) {
		int r;

		/* Nothing unsettled: nothing to do.  This load comes after
		 * our caller's change (or unlock), so the argument below
		 * holds for it as for the re-check at the end. */
		if (!rs_w_settling(rs_word_load(ri, memory_order_seq_cst)))
			return;
		if (!rs_mutex_trylock(&ri->settle.mutex))
			return; /* the holder re-checks after unlocking */
		r = settle_locked(ri, 0, false, 0);
		rs_mutex_unlock(ri, &ri->settle.mutex);
		/*
		 * Re-check after unlocking: a thread whose trylock failed
		 * while we held the mutex left its edge or its
		 * acknowledgement to us.  Its change precedes its failed
		 * trylock, which precedes our unlock, which precedes these
		 * loads in the seq_cst order, so we see it.
		 */
		if (!rs_w_settling(rs_word_load(ri, memory_order_seq_cst)))
			return;
		/* Blocked on vCPUs: if an acknowledgement is outstanding, the
		 * vCPU that brings pending to zero does so after this load,
		 * hence after our unlock, and helps itself.  Not "no vCPU is
		 * active": a vCPU that announces and retreats (it saw the
		 * word settling) is active for a moment without being
		 * counted, and its retreat helps nobody -- the model found
		 * this (tests/model, design spec-recheck). */
		if (r == SETTLE_BLOCKED && rs_ack_outstanding(ri))
			return;
	}
}

/*
 * The edge a stopping call (or rs_wait()) waits for, from the word after its
 * change (or the word it saw): the word's edge; while edges are coalesced,
 * the end of the coalesced run (at least one past the backlog's last edge).
 */
uint32_t rs_settle_target(uint64_t w)
{
	return (w & RS_W_OVERFLOW) ? rs_w_edge_tail(w) + 1 : rs_w_edge(w);
}

/*
 * Is edge t (see rs_settle_target()) settled?  If not, the answer is true.
 * Called with the settle mutex held, or racing with the settler (then the
 * answer may be stale, never wrong for an edge settled before the call).
 *
 * The unsettled edges are those after `settled` up to the word's
 * rs_settle_target(): at most the backlog's bound plus 2 of them, because a
 * coalesced run moves the counter by its net effect only.  t was one of
 * them or older when the caller took it.  Modulo 2^32, t falls in that
 * window only if it is still unsettled, or if some 2^32 edges settled
 * while the caller sat between its change and this call: then it waits
 * for a current edge as well, which exists, so it never returns early and
 * never waits for an edge that may never come.
 */
static bool edge_unsettled(struct rs_instance *ri, uint32_t t)
{
	/* Acquire: pairs with the release store in settle_locked(). */
	uint32_t s = atomic_load_explicit(&ri->settle.settled, memory_order_acquire);
	uint64_t w = rs_word_load(ri, memory_order_acquire);
	uint32_t off = t - s;

	return rs_w_settling(w) && off != 0 && off <= rs_settle_target(w) - s;
}

/*
 * Make sure edges up to t (see edge_unsettled()) are settled, waiting for
 * vCPUs until deadline.  The caller is out if it is a vCPU thread.
 */
int rs_settle_through(struct rs_instance *ri, uint32_t t, uint64_t deadline)
{
	int r = 0;

	if (!edge_unsettled(ri, t))
		return 0;
	r = rs_mutex_lock(ri, &ri->settle.mutex, deadline);
	if (r)
		return r;
	/* Under the mutex nobody else settles: look again, exactly. */
	if (edge_unsettled(ri, t))
		r = settle_locked(ri, t, true, deadline);
	rs_mutex_unlock(ri, &ri->settle.mutex);
	/* Same re-check as rs_settle_help(): hand on what arrived. */
	rs_settle_help(ri);
	return r == RS_ETIMEDOUT ? r : 0;
}

int rs_wait(rs_runstate *rs, int64_t timeout_ns)
{
	struct rs_instance *ri = rs_inst(rs);
	uint64_t w;
	int r;

	if (!rs)
		return RS_EINVAL;
	if (timeout_ns != RS_ASYNC) {
		if ((r = rs_no_wait_in_listener()))
			return r;
		rs_vcpu_thread_out(ri);
	}
	w = rs_word_load(ri, memory_order_acquire);
	if (!rs_w_settling(w))
		return 0;
	if (timeout_ns == RS_ASYNC) {
		/* Help without waiting, then answer. */
		rs_settle_help(ri);
		r = edge_unsettled(ri, rs_settle_target(w)) ? RS_ETIMEDOUT : 0;
	} else {
		r = rs_settle_through(ri, rs_settle_target(w), rs_deadline(ri, timeout_ns));
	}
	if (r == RS_ETIMEDOUT)
		RS_STAT_INC(ri, timeouts);
	return r;
}

uint64_t rs_settle_coalesced(struct rs_instance *ri)
{
	return atomic_load_explicit(&ri->settle.coalesced_made[0], memory_order_relaxed) +
	       atomic_load_explicit(&ri->settle.coalesced_made[1], memory_order_relaxed);
}

uint32_t rs_settle_settled(struct rs_instance *ri)
{
	return atomic_load_explicit(&ri->settle.settled, memory_order_acquire);
}

bool rs_settle_busy(struct rs_instance *ri)
{
	return atomic_load_explicit(&ri->settle.mutex, memory_order_relaxed) != 0;
}

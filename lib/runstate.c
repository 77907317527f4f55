/* SPDX-License-Identifier: MIT */
/*
 * Instances, commands, settling and events.
 *
 * Every command is rs_transition() inside one compare-and-swap loop on the
 * word.  An edge (running <-> stopped) advances the edge counter and either
 * joins the backlog (the backlog field counts edges not yet settled) or,
 * when the backlog is full, is coalesced (the overflow bit).  The backlog's
 * work is done by whoever holds the settle mutex, one entry at a time and in
 * edge order:
 *
 *   stop edge:  wait until every registered vCPU is out, then emit STOP;
 *   start edge: emit RESUME;
 *   coalesced run (the edges made while the overflow bit was set, taken as
 *   one entry once the backlog has drained): report them as lost, and run
 *   the listeners once if their net effect changed running.
 *
 * Each entry ends with a CAS that takes it off the backlog ("claims" it);
 * the claim of the last one lets vCPUs run when the VM runs, and it also
 * takes RS_W_PARKED and wakes the parked vCPUs.
 *
 * Synchronous callers take the settle mutex and wait (for the vCPUs of stop
 * edges up to their own).  Everyone else helps without waiting: try the
 * mutex, process what needs no waiting, unlock, re-check (rs_settle_help()).
 * The vCPU whose acknowledgement completes a stop helps too, so an
 * asynchronous stop settles without any thread waiting for it.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <stdarg.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"

bool rs_may_run_func(const rs_runstate *rs)
{
	rs_vcpu_check_active(rs);
	return rs_may_run(rs);
}

uint64_t rs_word(const rs_runstate *rs)
{
	if (!rs)
		return 0;
	/* Acquire: pairs with the release part of every command's CAS, so a
	 * caller that sees a state also sees what was written before it. */
	return atomic_load_explicit(&((rs_runstate *)rs)->word, memory_order_acquire);
}

/* The CPUs this process may run on (its affinity mask, as taskset or a
 * container's cpuset leaves it; else the online count): the early wake's
 * "fewer vCPUs than CPUs" (wake_early()). */
static uint32_t usable_cpus(void)
{
	cpu_set_t set;
	long n;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (uint32_t)CPU_COUNT(&set);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (uint32_t)n : 1;
}

/* An edge_word slot that no edge's word can match: its edge field is one
 * more than an edge that maps to the slot, and every edge that maps to it
 * differs from that by a multiple of RS_EDGE_WORDS (even). */
static uint64_t edge_word_empty(uint64_t e)
{
	return (uint64_t)(uint32_t)(e + 1) << RS_W_EDGE_SHIFT;
}

int rs_create(const struct rs_config *cfg, rs_runstate **out)
{
	struct rs_config c = { 0 };
	rs_runstate *rs;

	if (!out)
		return RS_EINVAL;
	if (cfg)
		c = *cfg;
	if (!c.max_vcpus)
		c.max_vcpus = 1024;
	if (!c.rekick_ns)
		c.rekick_ns = 1000000;
	if (!c.event_capacity)
		c.event_capacity = 256;
	if (!c.max_backlog)
		c.max_backlog = 64;
	if ((c.event_capacity & (c.event_capacity - 1)) || c.event_capacity > (1u << 20) ||
	    c.max_vcpus > (1u << 20) || c.rekick_ns < 0 || c.max_backlog > RS_W_BACKLOG_MAX)
		return RS_EINVAL;

	rs = aligned_alloc(64, (sizeof(*rs) + 63) & ~(size_t)63);
	if (!rs)
		return RS_ENOMEM;
	memset(rs, 0, sizeof(*rs));
	rs->ring = calloc(c.event_capacity, sizeof(*rs->ring));
	rs->slots = calloc(c.max_vcpus, sizeof(*rs->slots));
	if (!rs->ring || !rs->slots) {
		free(rs->ring);
		free(rs->slots);
		free(rs);
		return RS_ENOMEM;
	}
	rs_ops_fill(&rs->ops, c.ops);
	rs->rekick_ns = c.rekick_ns;
	rs->ring_mask = c.event_capacity - 1;
	rs->nslots = c.max_vcpus;
	rs->ncpus = usable_cpus();
	rs->backlog = c.max_backlog;
	/* Edge 0 is the initial stopped state, settled from the start. */
	atomic_init(&rs->word, (uint64_t)RS_PAUSE_PRELAUNCH << RS_W_PAUSE_SHIFT);
	for (uint64_t i = 0; i < RS_EDGE_WORDS; i++)
		atomic_init(&rs->edge_word[i], edge_word_empty(i));
	atomic_init(&rs->ev_fd, -1);
	*out = rs;
	return 0;
}

void rs_destroy(rs_runstate *rs)
{
	if (!rs)
		return;
	rs_listeners_destroy(rs);
	if (atomic_load_explicit(&rs->ev_fd, memory_order_relaxed) >= 0)
		close(atomic_load_explicit(&rs->ev_fd, memory_order_relaxed));
	free(rs->ring);
	free(rs->slots);
	free(rs);
}

/* ---------------------------------------------------------------------------
 * Events
 */

/*
 * Produce a record: an event (count 1) or, for a coalesced run, an
 * RS_EVENT_LOST record covering the count edges from seq on.  It occupies
 * the ring slot of its first seq; readers skip the rest of its range.
 */
static void emit(rs_runstate *rs, uint64_t seq, uint64_t count, enum rs_event_kind kind,
		 uint64_t word)
{
	/* Only the settle mutex holder produces: ev_head has one writer. */
	struct rs_ev_slot *s = &rs->ring[seq & rs->ring_mask];
	uint64_t head = seq + count - 1;

	/* Seqlock-style slot: mark it invalid, fill it, then publish the
	 * seq with release.  Pairs with the acquire loads in
	 * rs_events_read(), which re-check seq after copying. */
	atomic_store_explicit(&s->seq, 0, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&s->time_ns, rs_now(rs), memory_order_relaxed);
	atomic_store_explicit(&s->kind, kind, memory_order_relaxed);
	atomic_store_explicit(&s->word, word, memory_order_relaxed);
	atomic_store_explicit(&s->count, count, memory_order_relaxed);
	atomic_store_explicit(&s->seq, seq, memory_order_release);
	/* Release (seq_cst): pairs with the acquire load of ev_head in
	 * readers, and with rs_events_fd()'s head check. */
	atomic_store_explicit(&rs->ev_head, head, memory_order_seq_cst);

	/* Blocked readers: store the futex word, then look for waiters;
	 * rs_events_wait() counts itself, then loads ev_head (seq_cst
	 * both sides: one of the two sees the other). */
	atomic_store_explicit(&rs->ev_seq32, (uint32_t)head, memory_order_seq_cst);
	if (atomic_load_explicit(&rs->ev_waiters, memory_order_seq_cst))
		rs_futex_wake(rs, &rs->ev_seq32, INT_MAX);
	{
		/* seq_cst: against rs_events_fd()'s install then head
		 * check (store buffering): one of the two sees the other. */
		int fd = atomic_load_explicit(&rs->ev_fd, memory_order_seq_cst);
		uint64_t one = 1;

		/* Non-blocking: a full counter (2^64 - 2 unread) just
		 * stays readable. */
		if (fd >= 0 && write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			rs_fatal("eventfd write", -errno);
	}
}

int rs_events_wait(rs_runstate *rs, uint64_t cursor, int64_t timeout_ns)
{
	uint64_t deadline;
	int r = 0;

	if (!rs)
		return RS_EINVAL;
	if (timeout_ns == RS_ASYNC)
		return atomic_load_explicit(&rs->ev_head, memory_order_acquire) >= cursor ?
			       0 : RS_ETIMEDOUT;
	if ((r = rs_no_wait_in_listener("rs_events_wait")))
		return r;
	deadline = rs_deadline(rs, timeout_ns);
	rs_vcpu_thread_out(rs);   /* a vCPU thread that may block is out */
	atomic_fetch_add_explicit(&rs->ev_waiters, 1, memory_order_seq_cst);
	for (;;) {
		uint64_t head = atomic_load_explicit(&rs->ev_head, memory_order_seq_cst);
		int64_t left;

		if (head >= cursor)
			break;
		left = rs_remaining(rs, deadline);
		if (left == 0) {
			r = RS_ETIMEDOUT;
			break;
		}
		rs_futex_wait(rs, &rs->ev_seq32, (uint32_t)head, left);
	}
	/* Release: orders this waiter's reads before a producer's check
	 * that finds it gone (only the count matters to the producer). */
	atomic_fetch_sub_explicit(&rs->ev_waiters, 1, memory_order_release);
	return r;
}

int rs_events_fd(rs_runstate *rs)
{
	int fd, expect = -1;

	if (!rs)
		return RS_EINVAL;
	fd = atomic_load_explicit(&rs->ev_fd, memory_order_acquire);
	if (fd >= 0)
		return fd;
	fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* seq_cst install, then seq_cst head check: pairs with emit()'s
	 * seq_cst head store, then fd load, so an event is either seen
	 * here or signalled there. */
	if (!atomic_compare_exchange_strong_explicit(&rs->ev_fd, &expect, fd,
						     memory_order_seq_cst, memory_order_acquire)) {
		close(fd);
		return expect;
	}
	/* Events produced before the fd existed are pending too. */
	if (atomic_load_explicit(&rs->ev_head, memory_order_seq_cst)) {
		uint64_t one = 1;

		if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			return -errno;
	}
	return fd;
}

uint64_t rs_events_cursor(const rs_runstate *rs)
{
	if (!rs)
		return 0;
	return atomic_load_explicit(&((rs_runstate *)rs)->ev_head, memory_order_acquire) + 1;
}

/* Append the record of `dropped` events lost from seq `first` on. */
static void lost_record(rs_runstate *rs, struct rs_event *e, uint64_t first, uint64_t dropped)
{
	memset(e, 0, sizeof(*e));
	e->kind = RS_EVENT_LOST;
	e->seq = first;
	e->lost = dropped;
	e->time_ns = rs_now(rs);
}

int rs_events_read(const rs_runstate *crs, uint64_t *cursor, struct rs_event *buf, size_t n,
		   uint64_t *lost)
{
	rs_runstate *rs = (rs_runstate *)crs;
	uint64_t cap, cur, head, dropped = 0;
	size_t got = 0;

	if (!rs || !cursor || (!buf && n))
		return RS_EINVAL;
	cap = (uint64_t)rs->ring_mask + 1;
	cur = *cursor ? *cursor : 1;
	/* Acquire: pairs with the release store of ev_head in emit(). */
	head = atomic_load_explicit(&rs->ev_head, memory_order_acquire);
	while (got < n && cur <= head) {
		struct rs_ev_slot *s = &rs->ring[cur & rs->ring_mask];
		uint64_t seq1, seq2, t, w, cnt;
		uint32_t k;

		if (head - cur >= cap) {
			/* Overwritten before we got to it.  A loss is only
			 * ever reported before the first event returned, so
			 * stop here if we already copied some. */
			if (got)
				break;
			dropped += head - cap + 1 - cur;
			cur = head - cap + 1;
			continue;
		}
		/* Pairs with the release store of s->seq in emit(). */
		seq1 = atomic_load_explicit(&s->seq, memory_order_acquire);
		t = atomic_load_explicit(&s->time_ns, memory_order_relaxed);
		k = atomic_load_explicit(&s->kind, memory_order_relaxed);
		w = atomic_load_explicit(&s->word, memory_order_relaxed);
		cnt = atomic_load_explicit(&s->count, memory_order_relaxed);
		/* Orders the copies before the re-check of seq (seqlock read). */
		atomic_thread_fence(memory_order_acquire);
		seq2 = atomic_load_explicit(&s->seq, memory_order_relaxed);
		if (seq1 != cur || seq2 != cur || cnt == 0) {
			/* Not event cur: the writer is overwriting this slot
			 * (event cur is gone), or cur lies inside a coalesced
			 * run whose record sits at the run's first seq.
			 * Either way cur was never read: count it lost
			 * (before any event returned). */
			if (got)
				break;
			dropped++;
			cur++;
			head = atomic_load_explicit(&rs->ev_head, memory_order_acquire);
			continue;
		}
		if (k == RS_EVENT_LOST) {
			/* A coalesced run: its edges never had events. */
			if (got)
				break;
			dropped += cnt;
			cur += cnt;
			continue;
		}
		if (dropped && !lost) {
			/* The explicit record of the loss, first. */
			lost_record(rs, &buf[got], cur - dropped, dropped);
			atomic_fetch_add_explicit(&rs->stats.events_lost, dropped,
						  memory_order_relaxed);
			dropped = 0;
			if (++got == n)
				break;  /* the event itself comes next time */
		}
		buf[got].seq = cur;
		buf[got].time_ns = t;
		buf[got].kind = (enum rs_event_kind)k;
		buf[got].lost = 0;
		buf[got].word = w;
		rs_decode(w, &buf[got].state);
		got++;
		cur++;
	}
	if (dropped && !lost && got < n) {
		lost_record(rs, &buf[got++], cur - dropped, dropped);
		atomic_fetch_add_explicit(&rs->stats.events_lost, dropped, memory_order_relaxed);
		dropped = 0;
	}
	if (dropped)   /* reported through *lost (no room is impossible: got < n) */
		atomic_fetch_add_explicit(&rs->stats.events_lost, dropped, memory_order_relaxed);
	*cursor = cur;
	if (lost)
		*lost = dropped;
	return (int)got;
}

/* ---------------------------------------------------------------------------
 * Settling
 */

enum { SETTLE_DONE = 0, SETTLE_BLOCKED = 1 };

static int wait_stop_edge(rs_runstate *rs, uint64_t deadline);

/*
 * The word made by edge e's CAS.  Its maker stores it right after the CAS
 * (note_edge()); if it has not yet, wait for it, briefly: a maker is never
 * blocked between its CAS and that store.  Edge e is in the backlog, and the
 * backlog never holds more edges than there are slots, so the slot holds e's
 * word or (before the store) the empty mark left when the slot's previous
 * edge was claimed (settle_locked()); never a word of another edge.
 */
static uint64_t edge_word(rs_runstate *rs, uint64_t e)
{
	_Atomic uint64_t *slot = &rs->edge_word[e % RS_EDGE_WORDS];

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
static void note_edge(rs_runstate *rs, uint64_t old, uint64_t nw)
{
	if (rs_w_running(old) == rs_w_running(nw))
		return;
	if (!(nw & RS_W_OVERFLOW)) {
		/* In the backlog: its word for the settler.  Release: pairs
		 * with the acquire load in edge_word(). */
		atomic_store_explicit(&rs->edge_word[rs_w_edge(nw) % RS_EDGE_WORDS], nw,
				      memory_order_release);
	}
	if (rs_w_running(nw))
		RS_STAT_INC(rs, start_edges);
	else
		RS_STAT_INC(rs, stop_edges);
}

/*
 * Every CAS on the word that may make an edge: a command's, a lock's, an
 * unlock's.  seq_cst, for the reasons apply() gives.  *old is the expected
 * word, updated on failure as by the CAS.
 *
 * A coalesced edge counts itself, under its generation (the word's
 * RS_W_COAL_GEN): in flight from before its CAS until after it bumped
 * coalesced_made, which absorb() relies on to count the run exactly.  The
 * increment of coalesce_inflight is seq_cst so that it comes before the CAS
 * in the single total order (pairs with absorb()'s load after its own CAS);
 * the decrement is a release, so that a settler that reads it sees the bump
 * of coalesced_made before it.
 */
static bool word_cas(rs_runstate *rs, uint64_t *old, uint64_t nw)
{
	uint64_t was = *old;
	bool coal = (nw & RS_W_OVERFLOW) && rs_w_running(was) != rs_w_running(nw);
	unsigned g = rs_w_coal_gen(nw);
	bool ok;

	if (coal)
		atomic_fetch_add_explicit(&rs->coalesce_inflight[g], 1, memory_order_seq_cst);
	ok = atomic_compare_exchange_weak_explicit(&rs->word, old, nw, memory_order_seq_cst,
						   memory_order_acquire);
	if (coal) {
		if (ok)
			atomic_fetch_add_explicit(&rs->coalesced_made[g], 1, memory_order_relaxed);
		atomic_fetch_sub_explicit(&rs->coalesce_inflight[g], 1, memory_order_release);
	}
	if (ok)
		note_edge(rs, was, nw);
	return ok;
}

/*
 * Take the backlog's first entry off it (the claim).  Only the settle mutex
 * holder takes entries off, so this cannot fail for good: the CAS retries
 * over concurrent edges and parkers.  The claim that empties the backlog of
 * a running VM lets vCPUs run; it also clears RS_W_PARKED, and if that was
 * set, wakes the parked vCPUs.
 */
static void claim(rs_runstate *rs)
{
	uint64_t w = atomic_load_explicit(&rs->word, memory_order_relaxed), nw;

	do {
		nw = w - RS_W_BACKLOG_ONE;
		if (rs_w_may_run(nw))
			nw &= ~RS_W_PARKED;
		RS_DELAY(rs, "settle-clear");
		/* seq_cst: pairs with the parkers' CAS that sets RS_W_PARKED
		 * (park()); whichever comes first in the word's order, a
		 * parked vCPU is woken or sees the word runnable.  Its
		 * release half publishes what the listeners and the settler
		 * wrote to every vCPU that then acquires the word. */
	} while (!atomic_compare_exchange_weak_explicit(&rs->word, &w, nw, memory_order_seq_cst,
							memory_order_relaxed));
#ifndef RS_PLANT_START_NO_WAKE
	if ((w & RS_W_PARKED) && !(nw & RS_W_PARKED))
		rs_wake_parked(rs);
#endif
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
static bool absorb(rs_runstate *rs, uint64_t w)
{
	unsigned coal = rs_w_coal(w), g = rs_w_coal_gen(w);
	uint32_t tail = rs_w_edge_tail(w);
	uint32_t end = tail + ((coal & 1) ? 1u : 2u);
	uint64_t nw = (w & ~(RS_W_OVERFLOW | RS_W_COAL_MASK | RS_W_EDGE_MASK)) ^ RS_W_COAL_GEN;
	uint64_t landed;

	nw |= (uint64_t)end << RS_W_EDGE_SHIFT | RS_W_BACKLOG_ONE;
	/* seq_cst: a CAS on the word like any claim (see claim()). */
	if (!atomic_compare_exchange_strong_explicit(&rs->word, &w, nw, memory_order_seq_cst,
						     memory_order_relaxed))
		return false;
	while (atomic_load_explicit(&rs->coalesce_inflight[g], memory_order_seq_cst) >=
	       1u << RS_W_COAL_BITS)
		sched_yield();
	/* Acquire: pairs with the makers' release of coalesce_inflight (their
	 * bump comes before it), seen through the load above. */
	landed = atomic_load_explicit(&rs->coalesced_made[g], memory_order_acquire) -
		 rs->coalesced[g];
	rs->synth_n = landed + ((coal - landed) & ((1u << RS_W_COAL_BITS) - 1));
	rs->coalesced[g] += rs->synth_n;
	rs->synth = true;
	rs->synth_edge = end;
	rs->synth_word = nw;
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
static int settle_locked(rs_runstate *rs, uint32_t block_until, bool block, uint64_t deadline)
{
	for (;;) {
		uint64_t w = atomic_load_explicit(&rs->word, memory_order_seq_cst);
		uint32_t s = atomic_load_explicit(&rs->settled, memory_order_relaxed), last;
		uint64_t n, ew;
		bool stop, flip;

		if (rs_w_backlog(w) == 0) {
			if (!(w & RS_W_OVERFLOW))
				return SETTLE_DONE;
			absorb(rs, w);
			continue;
		}
		/* The first entry: a coalesced run, or one edge. */
		if (rs->synth) {
			last = rs->synth_edge;
			n = rs->synth_n;
			ew = rs->synth_word;
		} else {
			last = s + 1;
			n = 1;
			ew = edge_word(rs, last);
		}
		stop = rs_edge_is_stop(last);
		/* One edge always changes running; a run, if it is odd. */
		flip = (n & 1) != 0;
		if (flip && stop) {
			if (block && last - block_until - 1 >= UINT32_C(1) << 31) {
				/* last <= block_until, modulo 2^32 (both are in the
				 * backlog's reach): wait for the vCPUs. */
				int r = wait_stop_edge(rs, deadline);

				if (r)
					return r;
			} else if (!rs_scan_out(rs, RS_SCAN_CHECK)) {
				return SETTLE_BLOCKED;
			}
			/* Every vCPU is out: quiesce the devices, then tell
			 * management (QEMU's order). */
			rs_run_listeners(rs, false, ew);
		}
		/* A start's RESUME comes before its listeners; no vCPU runs
		 * before the claim below.  A coalesced run's edges are
		 * reported lost (their own words are gone), with the word
		 * that ends the run. */
		if (rs->synth)
			emit(rs, rs->settled_seq + 1, n, RS_EVENT_LOST, ew);
		else
			emit(rs, rs->settled_seq + 1, 1, stop ? RS_EVENT_STOP : RS_EVENT_RESUME, ew);
		if (flip && !stop)
			rs_run_listeners(rs, true, ew);
		/* Leave the empty mark in the slot before the claim: the next
		 * edge that uses the slot (last + RS_EDGE_WORDS) can join the
		 * backlog only after this claim, and its maker's CAS reads
		 * the claim or a later RMW of the word, so its store lands
		 * after this one (the claim's release orders them). */
		if (!rs->synth)
			atomic_store_explicit(&rs->edge_word[last % RS_EDGE_WORDS],
					      edge_word_empty(last), memory_order_relaxed);
		rs->synth = false;
		rs->settled_seq += n;
		claim(rs);
		/* Release: pairs with the acquire loads of settled
		 * (edge_unsettled()): a caller that sees its edge settled sees
		 * the vCPUs' acknowledgements too. */
		atomic_store_explicit(&rs->settled, last, memory_order_release);
	}
}

/* Wait until every registered vCPU is out, kicking and re-kicking. */
static int wait_stop_edge(rs_runstate *rs, uint64_t deadline)
{
	for (int spin = 0;; spin++) {
		uint32_t p;
		int64_t left, nap;

		/* Read pending before the scan: an acknowledgement after
		 * the scan changes it and the futex wait returns at once. */
		p = atomic_load_explicit(&rs->pending, memory_order_seq_cst);
		if (rs_scan_out(rs, spin > 0 && spin % 64 == 0 ? RS_SCAN_REKICK : RS_SCAN_CHECK))
			return 0;
		left = rs_remaining(rs, deadline);
		if (left == 0)
			return RS_ETIMEDOUT;
		if (spin < 64) {
			rs_cpu_relax();
			continue;
		}
		if (!(p & PENDING_COUNT))
			continue;
		/* Announce the sleeper; the acknowledgement that brings the
		 * count to zero wakes us (pending_dec() in vcpu.c). */
		if (!(p & PENDING_SLEEPER) &&
		    !atomic_compare_exchange_strong_explicit(&rs->pending, &p, p | PENDING_SLEEPER,
							     memory_order_seq_cst,
							     memory_order_relaxed))
			continue;
		nap = rs->rekick_ns;
		if (left > 0 && left < nap)
			nap = left;
		RS_DELAY(rs, "stopper-sleep");
		rs_futex_wait(rs, &rs->pending, p | PENDING_SLEEPER, nap);
		/* After a nap the next scan re-kicks the laggards. */
		spin = 63;
	}
}

void rs_settle_help(rs_runstate *rs)
{
	for (;;) {
		int r;

		/* Nothing unsettled: nothing to do.  This load comes after
		 * our caller's change (or unlock), so the argument below
		 * holds for it as for the re-check at the end. */
		if (!rs_w_settling(atomic_load_explicit(&rs->word, memory_order_seq_cst)))
			return;
		if (!rs_mutex_trylock(&rs->settle_mutex))
			return; /* the holder re-checks after unlocking */
		r = settle_locked(rs, 0, false, 0);
		rs_mutex_unlock(rs, &rs->settle_mutex);
		/*
		 * Re-check after unlocking: a thread whose trylock failed
		 * while we held the mutex left its edge or its
		 * acknowledgement to us.  Its change precedes its failed
		 * trylock, which precedes our unlock, which precedes these
		 * loads in the seq_cst order, so we see it.
		 */
		if (!rs_w_settling(atomic_load_explicit(&rs->word, memory_order_seq_cst)))
			return;
		/* Blocked on vCPUs: if an acknowledgement is outstanding, the
		 * vCPU that brings pending to zero does so after this load,
		 * hence after our unlock, and helps itself.  Not "no vCPU is
		 * active": a vCPU that announces and retreats (it saw the
		 * word settling) is active for a moment without being
		 * counted, and its retreat helps nobody -- the model found
		 * this (tests/model, design spec-recheck). */
		if (r == SETTLE_BLOCKED &&
		    (atomic_load_explicit(&rs->pending, memory_order_seq_cst) & PENDING_COUNT))
			return;
	}
}

/*
 * The edge a stopping call (or rs_wait()) waits for, from the word after its
 * change (or the word it saw): the word's edge; while edges are coalesced,
 * the end of the coalesced run (at least one past the backlog's last edge).
 */
static uint32_t wait_target(uint64_t w)
{
	return (w & RS_W_OVERFLOW) ? rs_w_edge_tail(w) + 1 : rs_w_edge(w);
}

/*
 * Is edge t (see wait_target()) settled?  If not, the answer is true.
 * Called with the settle mutex held, or racing with the settler (then the
 * answer may be stale, never wrong for an edge settled before the call).
 *
 * The unsettled edges are those after `settled` up to the word's
 * wait_target(): at most the backlog's bound plus 2 of them, because a
 * coalesced run moves the counter by its net effect only.  t was one of
 * them or older when the caller took it.  Modulo 2^32, t falls in that
 * window only if it is still unsettled, or if some 2^32 edges settled
 * while the caller sat between its change and this call: then it waits
 * for a current edge as well, which exists, so it never returns early and
 * never waits for an edge that may never come.
 */
static bool edge_unsettled(rs_runstate *rs, uint32_t t)
{
	/* Acquire: pairs with the release store in settle_locked(). */
	uint32_t s = atomic_load_explicit(&rs->settled, memory_order_acquire);
	uint64_t w = atomic_load_explicit(&rs->word, memory_order_acquire);
	uint32_t off = t - s;

	return rs_w_settling(w) && off != 0 && off <= wait_target(w) - s;
}

/*
 * Make sure edges up to t (see edge_unsettled()) are settled, waiting for
 * vCPUs until deadline.  The caller is out if it is a vCPU thread.
 */
static int settle_through(rs_runstate *rs, uint32_t t, uint64_t deadline)
{
	int r = 0;

	if (!edge_unsettled(rs, t))
		return 0;
	r = rs_mutex_lock(rs, &rs->settle_mutex, deadline);
	if (r)
		return r;
	/* Under the mutex nobody else settles: look again, exactly. */
	if (edge_unsettled(rs, t))
		r = settle_locked(rs, t, true, deadline);
	rs_mutex_unlock(rs, &rs->settle_mutex);
	/* Same re-check as rs_settle_help(): hand on what arrived. */
	rs_settle_help(rs);
	return r == RS_ETIMEDOUT ? r : 0;
}

int rs_wait(rs_runstate *rs, int64_t timeout_ns)
{
	uint64_t w;
	int r;

	if (!rs)
		return RS_EINVAL;
	if (timeout_ns != RS_ASYNC) {
		if ((r = rs_no_wait_in_listener("rs_wait")))
			return r;
		rs_vcpu_thread_out(rs);
	}
	w = atomic_load_explicit(&rs->word, memory_order_acquire);
	if (!rs_w_settling(w))
		return 0;
	if (timeout_ns == RS_ASYNC) {
		/* Help without waiting, then answer. */
		rs_settle_help(rs);
		r = edge_unsettled(rs, wait_target(w)) ? RS_ETIMEDOUT : 0;
	} else {
		r = settle_through(rs, wait_target(w), rs_deadline(rs, timeout_ns));
	}
	if (r == RS_ETIMEDOUT)
		RS_STAT_INC(rs, timeouts);
	return r;
}

/* ---------------------------------------------------------------------------
 * Commands
 */

static bool made_edge(uint64_t old, uint64_t nw)
{
	return rs_w_running(old) != rs_w_running(nw);
}

/*
 * The early wake.  A start edge with parked vCPUs need not wait for
 * settling to wake them: a futex wake-up takes microseconds to reach a
 * sleeping thread, and the settle work (the RESUME event, the claim) a
 * fraction of one, so it is done while the wake-ups are in flight.  The
 * start's own CAS then also clears RS_W_PARKED, and the starter wakes the
 * parked vCPUs right after it (releasing()).  A vCPU that wakes before the
 * claim spins in park() and runs as soon as the claim lands; one that gives
 * up re-parks and sets RS_W_PARKED again, which the claim sees and wakes
 * (claim()): an early wake can cost a wasted wake-up, never a lost one.
 * Decided per CAS attempt, on the word that attempt would write: a start
 * whose CAS loses to a stop (or a lock) recomputes, and wakes nobody if it
 * no longer makes a start edge.
 *
 * Only when settling will be short and the wake-ups do not compete with it:
 * the edge is the whole backlog (exact: the new word says so), no listener
 * is registered, and there are fewer vCPUs than usable CPUs (oversubscribed,
 * early-woken vCPUs compete with the settling thread and many re-park:
 * about half of them in a trial with 4 vCPUs on 2 CPUs).  The last two
 * loads are hints.
 */
static bool wake_early(rs_runstate *rs, uint64_t old, uint64_t nw)
{
#ifdef RS_PLANT_START_NO_WAKE
	(void)rs, (void)old, (void)nw;
	return false;
#else
	if (!made_edge(old, nw) || !(nw & RS_W_PARKED) || (nw & RS_W_OVERFLOW) ||
	    rs_w_backlog(nw) != 1)
		return false;
	if (atomic_load_explicit(&rs->nlisteners, memory_order_relaxed) ||
	    atomic_load_explicit(&rs->nregistered, memory_order_relaxed) >= rs->ncpus)
		return false;
	RS_DELAY(rs, "early-wake");
	return true;
#endif
}

/*
 * Apply a command: the one CAS.  seq_cst: the CAS is the stopper's half of
 * the store-buffering pairing with a vCPU's out->active announcement
 * (rs_vcpu_enter()), and its release half publishes what the caller wrote
 * before the command to every thread that sees the new word.  For the
 * early wake it is also the CAS that clears RS_W_PARKED, paired like the
 * claim with the parkers' CAS that sets it (park()): the wave that follows
 * wakes every vCPU that set it before.  early: NULL, or where to say that
 * the caller must start that wave.
 */
static int apply(rs_runstate *rs, enum rs_cmd cmd, int arg, int arg2, uint64_t *oldp,
		 uint64_t *newp, bool *early)
{
	/* Acquire: if nothing changes, this load is the command's read. */
	uint64_t old = atomic_load_explicit(&rs->word, memory_order_acquire);

	for (;;) {
		uint64_t nw;
		bool wake = false;
		int err = rs_transition(old, cmd, arg, arg2, rs->backlog, &nw);

		if (err)
			return err;
		if (nw == old)
			break;
		if (early && (wake = wake_early(rs, old, nw)))
			nw &= ~RS_W_PARKED;
		RS_DELAY(rs, "command-cas");
		*oldp = old;
		if (word_cas(rs, &old, nw)) {
			*newp = nw;
			if (early)
				*early = wake;
			return 0;
		}
	}
	*oldp = *newp = old;
	return 0;
}

/* After the CAS: kick for a stop edge, then settle (waiting or helping). */
static int finish(rs_runstate *rs, uint64_t old, uint64_t nw, int64_t timeout_ns,
		  uint64_t deadline)
{
	int r = 0;

	if (made_edge(old, nw) && !rs_w_running(nw))
		rs_kick_active(rs);
#ifdef RS_PLANT_STOP_NO_WAIT
	/* Planted bug: a synchronous stop that does not wait for the vCPUs. */
	timeout_ns = RS_ASYNC;
#endif
	if (timeout_ns == RS_ASYNC || rs_w_running(nw))
		rs_settle_help(rs);
	else
		r = settle_through(rs, wait_target(nw), deadline);
	if (r == RS_ETIMEDOUT)
		RS_STAT_INC(rs, timeouts);
	return r;
}

/* Before a call that may wait: refuse it inside a listener, fix its
 * deadline, and take the calling vCPU (if any) out. */
static int may_wait(rs_runstate *rs, int64_t timeout_ns, const char *what, uint64_t *deadline)
{
	int r;

	*deadline = 0;
	if (timeout_ns == RS_ASYNC)
		return 0;
	if ((r = rs_no_wait_in_listener(what)))
		return r;
	*deadline = rs_deadline(rs, timeout_ns);
	rs_vcpu_thread_out(rs);
	return 0;
}

/* A stopping command: the CAS, then wait or help. */
static int stopping(rs_runstate *rs, enum rs_cmd cmd, int arg, int arg2, int64_t timeout_ns)
{
	uint64_t deadline, old, nw;
	int r;

	if (!rs)
		return RS_EINVAL;
	if ((r = may_wait(rs, timeout_ns, "a synchronous stopping call", &deadline)))
		return r;
	r = apply(rs, cmd, arg, arg2, &old, &nw, NULL);
	if (r)
		return r;
	return finish(rs, old, nw, timeout_ns, deadline);
}

/* A command that cannot stop the VM: the CAS (waking early if it can),
 * then help settle. */
static int releasing(rs_runstate *rs, enum rs_cmd cmd, int arg)
{
	uint64_t old, nw;
	bool early = false;
	int r;

	if (!rs)
		return RS_EINVAL;
	rs_prefetch_wake(rs);
	r = apply(rs, cmd, arg, 0, &old, &nw, &early);
	if (r)
		return r;
	if (old == nw)
		return 0;
	if (early)
		rs_wake_parked(rs);
	rs_settle_help(rs);
	return 0;
}

int rs_stop(rs_runstate *rs, int64_t timeout_ns)
{
	return stopping(rs, RS_CMD_STOP, 0, 0, timeout_ns);
}

int rs_io_error(rs_runstate *rs, int64_t timeout_ns)
{
	return stopping(rs, RS_CMD_IO_ERROR, 0, 0, timeout_ns);
}

int rs_pause(rs_runstate *rs, enum rs_pause p, int64_t timeout_ns)
{
	if (p <= RS_PAUSE_NONE || p >= RS_PAUSE_COUNT)
		return RS_EINVAL;
	return stopping(rs, RS_CMD_PAUSE, p, 0, timeout_ns);
}

int rs_start(rs_runstate *rs, unsigned flags)
{
	if (flags & ~RS_START_FORCE)
		return RS_EINVAL;
	return releasing(rs, RS_CMD_START, (int)flags);
}

int rs_retry(rs_runstate *rs)
{
	return releasing(rs, RS_CMD_RETRY, 0);
}

int rs_cont(rs_runstate *rs)
{
	return releasing(rs, RS_CMD_CONT, 0);
}

int rs_reset(rs_runstate *rs)
{
	return releasing(rs, RS_CMD_RESET, 0);
}

/* ---------------------------------------------------------------------------
 * Internal locks
 *
 * Uncontended, a lock or unlock is one CAS.  A thread that finds the bit
 * held registers in lock_waiters[r] under lockq_mutex and sets
 * RS_W_LOCKWAIT in the word with the same CAS that observes the bit held;
 * from then on every unlock sees RS_W_LOCKWAIT, takes the slow path under
 * lockq_mutex, and hands the bit to a waiter (grants[r]++) instead of
 * clearing it.  RS_W_LOCKWAIT only changes under lockq_mutex.
 */

static unsigned total_lock_waiters(rs_runstate *rs)
{
	unsigned n = 0;

	for (int i = 0; i < RS_LOCK_COUNT; i++)
		n += rs->lock_waiters[i];
	return n;
}

static void word_clear_lockwait(rs_runstate *rs)
{
	uint64_t w = atomic_load_explicit(&rs->word, memory_order_relaxed);

	/* seq_cst, like every CAS on the word (a change others must see). */
	while (!atomic_compare_exchange_weak_explicit(&rs->word, &w, w & ~RS_W_LOCKWAIT,
						      memory_order_seq_cst, memory_order_relaxed))
		;
}

/* Take bit r waiting up to deadline; 0 or RS_EBUSY.  *oldp and *newp get the CAS. */
static int lock_wait(rs_runstate *rs, enum rs_lock r, uint64_t deadline, uint64_t *oldp,
		     uint64_t *newp)
{
	int err = 0;
	uint32_t g, my;

	if (rs_mutex_lock(rs, &rs->lockq_mutex, deadline))
		return RS_EBUSY;
	/* Under lockq_mutex: either take the bit or, in the same CAS that
	 * sees it held, tell every future unlock to hand it over. */
	for (uint64_t w = atomic_load_explicit(&rs->word, memory_order_acquire);;) {
		uint64_t nw;

		if (!(w & RS_W_LOCK(r))) {
			rs_transition(w, RS_CMD_LOCK, r, 0, rs->backlog, &nw);
			if (word_cas(rs, &w, nw)) {
				rs_mutex_unlock(rs, &rs->lockq_mutex);
				*oldp = w;
				*newp = nw;
				return 0;
			}
		} else if (w & RS_W_LOCKWAIT ||
			   atomic_compare_exchange_weak_explicit(&rs->word, &w, w | RS_W_LOCKWAIT,
								 memory_order_seq_cst,
								 memory_order_acquire)) {
			break;
		}
	}
	rs->lock_waiters[r]++;
	my = rs->lock_issued[r];
	for (;;) {
		int64_t left;

		/* Only a hand-over issued after we registered is ours to take. */
		if (rs->lock_taken[r] < rs->lock_issued[r] && rs->lock_taken[r] >= my) {
			rs->lock_taken[r]++;
			break;
		}
		left = rs_remaining(rs, deadline);
		if (left == 0) {
			rs->lock_waiters[r]--;
			err = RS_EBUSY;
			break;
		}
		g = atomic_load_explicit(&rs->lock_grants[r], memory_order_relaxed);
		rs_mutex_unlock(rs, &rs->lockq_mutex);
		RS_DELAY(rs, "lock-wait");
		rs_futex_wait(rs, &rs->lock_grants[r], g, left);
		if (rs_mutex_lock(rs, &rs->lockq_mutex, UINT64_MAX))
			rs_fatal("lockq mutex", RS_ETIMEDOUT);
	}
	if (!total_lock_waiters(rs))
		word_clear_lockwait(rs);
	rs_mutex_unlock(rs, &rs->lockq_mutex);
	*oldp = *newp = atomic_load_explicit(&rs->word, memory_order_acquire);
	return err;
}

static int lock_common(rs_runstate *rs, enum rs_lock r, int64_t timeout_ns, bool try)
{
	uint64_t deadline, old, nw;
	int err;

	if (!rs || r < 0 || r >= RS_LOCK_COUNT)
		return RS_EINVAL;
	if ((err = may_wait(rs, timeout_ns, "rs_lock/rs_trylock that waits", &deadline)))
		return err;
	err = apply(rs, RS_CMD_LOCK, r, 0, &old, &nw, NULL);
	if (err == RS_EBUSY && !try && timeout_ns != RS_ASYNC)
		err = lock_wait(rs, r, deadline, &old, &nw);
	if (err)
		return err;
	return finish(rs, old, nw, timeout_ns, deadline);
}

int rs_lock(rs_runstate *rs, enum rs_lock r, int64_t timeout_ns)
{
	return lock_common(rs, r, timeout_ns, false);
}

int rs_trylock(rs_runstate *rs, enum rs_lock r, int64_t timeout_ns)
{
	return lock_common(rs, r, timeout_ns, true);
}

/*
 * Unlock (p == NONE) or unlock with a pause reason.  Returns 0 with the CAS
 * in *oldp and *newp, or an error with nothing changed.
 */
static int unlock_common(rs_runstate *rs, enum rs_lock r, enum rs_pause p, uint64_t *oldp,
			 uint64_t *newp)
{
	uint64_t w = atomic_load_explicit(&rs->word, memory_order_acquire), nw;
	int err;

	for (;;) {
		err = rs_transition(w, RS_CMD_UNLOCK, r, p, rs->backlog, &nw);
		if (err)
			return err;
		if (w & RS_W_LOCKWAIT)
			break;
		RS_DELAY(rs, "unlock-cas");
		if (word_cas(rs, &w, nw)) {
			*oldp = w;
			*newp = nw;
			return 0;
		}
	}

	/* Contended: decide between hand-over and release under the mutex. */
	if (rs_mutex_lock(rs, &rs->lockq_mutex, UINT64_MAX))
		rs_fatal("lockq mutex", RS_ETIMEDOUT);
	w = atomic_load_explicit(&rs->word, memory_order_acquire);
	for (;;) {
		err = rs_transition(w, RS_CMD_UNLOCK, r, p, rs->backlog, &nw);
		if (err)
			break;
		if (rs->lock_waiters[r]) {
			/* Hand over: the bit stays set; only the pause reason
			 * (if any) is applied. */
			if (p != RS_PAUSE_NONE)
				rs_transition(w, RS_CMD_PAUSE, p, 0, rs->backlog, &nw);
			else
				nw = w;
		}
		if (nw == w)
			break;
		if (word_cas(rs, &w, nw))
			break;
	}
	if (!err && rs->lock_waiters[r]) {
		rs->lock_waiters[r]--;
		rs->lock_issued[r]++;
		atomic_fetch_add_explicit(&rs->lock_grants[r], 1, memory_order_relaxed);
		/* Any registered waiter may be the eligible one: wake them all. */
		rs_futex_wake(rs, &rs->lock_grants[r], INT_MAX);
	}
	rs_mutex_unlock(rs, &rs->lockq_mutex);
	if (!err) {
		*oldp = w;
		*newp = nw;
	}
	return err;
}

int rs_unlock(rs_runstate *rs, enum rs_lock r)
{
	uint64_t old, nw;
	int err;

	if (!rs)
		return RS_EINVAL;
	err = unlock_common(rs, r, RS_PAUSE_NONE, &old, &nw);
	if (err)
		return err;
	if (old != nw)
		rs_settle_help(rs);
	return 0;
}

int rs_unlock_pause(rs_runstate *rs, enum rs_lock r, enum rs_pause p, int64_t timeout_ns)
{
	uint64_t deadline, old, nw;
	int err;

	if (!rs || p <= RS_PAUSE_NONE || p >= RS_PAUSE_COUNT)
		return RS_EINVAL;
	if ((err = may_wait(rs, timeout_ns, "a synchronous rs_unlock_pause", &deadline)))
		return err;
	err = unlock_common(rs, r, p, &old, &nw);
	if (err)
		return err;
	return finish(rs, old, nw, timeout_ns, deadline);
}

/* ---------------------------------------------------------------------------
 * Introspection
 */

int rs_get_stats(const rs_runstate *crs, struct rs_stats *st)
{
	rs_runstate *rs = (rs_runstate *)crs;

	if (!rs || !st)
		return RS_EINVAL;
#define GET(f) st->f = atomic_load_explicit(&rs->stats.f, memory_order_relaxed)
	GET(stop_edges);
	GET(start_edges);
	GET(parks);
	GET(wakes);
	GET(kicks);
	GET(rekicks);
	GET(timeouts);
	GET(events_lost);
	GET(listener_runs);
#undef GET
	st->coalesced = atomic_load_explicit(&rs->coalesced_made[0], memory_order_relaxed) +
			atomic_load_explicit(&rs->coalesced_made[1], memory_order_relaxed);
	return 0;
}

struct dump_buf {
	char *p;
	size_t len, need;
};

__attribute__((format(printf, 2, 3)))
static void dprint(struct dump_buf *d, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(d->need < d->len ? d->p + d->need : NULL,
		      d->need < d->len ? d->len - d->need : 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		d->need += (size_t)n;
}

static void dump_vcpu(const struct rs_vcpu_info *info, void *arg)
{
	struct dump_buf *d = arg;

	dprint(d, "vcpu %u (%p): %s%s, last ack %.3f ms ago", info->index, (void *)info->vcpu,
	       info->active ? "active" : "out", info->parked ? " (parked)" : "",
	       (double)info->since_ack_ns / 1e6);
	if (info->unacked_ns)
		dprint(d, ", kicked %.3f ms ago and not acknowledged", (double)info->unacked_ns / 1e6);
	dprint(d, "\n");
}

int rs_dump(rs_runstate *rs, char *buf, size_t len)
{
	struct dump_buf d = { .p = buf, .len = len };
	struct rs_stats st;
	struct rs_state s;
	uint64_t w;
	unsigned reg, out;

	if (!rs || (!buf && len))
		return RS_EINVAL;
	if (len)
		buf[0] = 0;
	w = rs_word(rs);
	rs_decode(w, &s);
	dprint(&d, "word 0x%016llx: %s, edge %u, locks=", (unsigned long long)w,
	       s.running ? "running" : "stopped", s.edge);
	for (int i = 0; i < RS_LOCK_COUNT; i++)
		if (s.locks & (1u << i))
			dprint(&d, "%s,", rs_lock_name(i));
	dprint(&d, "%s pause=%s legacy=%s%s%s%s\n", s.io_error ? "io-error" : "-",
	       rs_pause_name(s.pause), rs_legacy_status(w), s.settling ? " settling" : "",
	       w & RS_W_PARKED ? " parked" : "", w & RS_W_LOCKWAIT ? " lockwait" : "");
	dprint(&d, "backlog %u%s, settled edge %llu, events %llu, pending acks %u%s\n",
	       rs_w_backlog(w), w & RS_W_OVERFLOW ? " (coalescing)" : "",
	       (unsigned long long)atomic_load_explicit(&rs->settled, memory_order_acquire),
	       (unsigned long long)atomic_load_explicit(&rs->ev_head, memory_order_acquire),
	       atomic_load_explicit(&rs->pending, memory_order_relaxed) & PENDING_COUNT,
	       atomic_load_explicit(&rs->settle_mutex, memory_order_relaxed) ? ", settler busy" : "");
	rs_get_stats(rs, &st);
	dprint(&d, "stats: stop-edges %llu start-edges %llu parks %llu wakes %llu kicks %llu "
	       "rekicks %llu timeouts %llu events-lost %llu listener-runs %llu coalesced %llu\n",
	       (unsigned long long)st.stop_edges, (unsigned long long)st.start_edges,
	       (unsigned long long)st.parks, (unsigned long long)st.wakes,
	       (unsigned long long)st.kicks, (unsigned long long)st.rekicks,
	       (unsigned long long)st.timeouts, (unsigned long long)st.events_lost,
	       (unsigned long long)st.listener_runs, (unsigned long long)st.coalesced);
	rs_vcpu_count(rs, &reg, &out);
	dprint(&d, "vcpus: %u registered, %u out\n", reg, out);
	rs_vcpu_foreach(rs, dump_vcpu, &d);
	return d.need > INT_MAX ? INT_MAX : (int)d.need;
}

/* SPDX-License-Identifier: MIT */
/*
 * Instances, commands, settling and events.
 *
 * Every command is rs_transition() inside one compare-and-swap loop on the
 * word.  An edge (running <-> stopped) sets RS_W_SETTLING; the edge's work
 * is then done by whoever holds the settle mutex, one edge at a time and in
 * edge order:
 *
 *   stop edge:  wait until every registered vCPU is out, then emit STOP;
 *   start edge: emit RESUME.
 *
 * When the settled edge catches up with the word's edge, the settler clears
 * RS_W_SETTLING with a CAS that fails if a new edge arrived meanwhile; the
 * CAS that lets vCPUs run also takes RS_W_PARKED and wakes the parked vCPUs.
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
	return rs_may_run(rs);
}

uint32_t rs_word(const rs_runstate *rs)
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
	if ((c.event_capacity & (c.event_capacity - 1)) || c.event_capacity > (1u << 20) ||
	    c.max_vcpus > (1u << 20) || c.rekick_ns < 0)
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
	/* Edge 0 is the initial stopped state, settled from the start. */
	atomic_init(&rs->word, (uint32_t)RS_PAUSE_PRELAUNCH << RS_W_PAUSE_SHIFT);
	atomic_init(&rs->edge_word[0], atomic_load_explicit(&rs->word, memory_order_relaxed));
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

static void emit_event(rs_runstate *rs, uint32_t edge, uint32_t word)
{
	/* Only the settle mutex holder produces: ev_head has one writer. */
	uint64_t seq = atomic_load_explicit(&rs->ev_head, memory_order_relaxed) + 1;
	struct rs_ev_slot *s = &rs->ring[seq & rs->ring_mask];

	/* Seqlock-style slot: mark it invalid, fill it, then publish the
	 * seq with release.  Pairs with the acquire loads in
	 * rs_events_read(), which re-check seq after copying. */
	atomic_store_explicit(&s->seq, 0, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&s->time_ns, rs_now(rs), memory_order_relaxed);
	atomic_store_explicit(&s->kind, rs_edge_is_stop(edge) ? RS_EVENT_STOP : RS_EVENT_RESUME,
			      memory_order_relaxed);
	atomic_store_explicit(&s->word, word, memory_order_relaxed);
	atomic_store_explicit(&s->seq, seq, memory_order_release);
	/* Release (seq_cst): pairs with the acquire load of ev_head in
	 * readers, and with rs_events_fd()'s head check. */
	atomic_store_explicit(&rs->ev_head, seq, memory_order_seq_cst);

	/* Blocked readers: store the futex word, then look for waiters;
	 * rs_events_wait() counts itself, then loads ev_head (seq_cst
	 * both sides: one of the two sees the other). */
	atomic_store_explicit(&rs->ev_seq32, (uint32_t)seq, memory_order_seq_cst);
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
	struct rs_vcpu_impl *self;
	uint64_t deadline;
	int r = 0;

	if (!rs)
		return RS_EINVAL;
	if (timeout_ns != RS_ASYNC && (r = rs_no_wait_in_listener("rs_events_wait")))
		return r;
	deadline = rs_deadline(rs, timeout_ns);
	self = rs_call_begin(rs);   /* a blocked vCPU thread counts as out */
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
	atomic_fetch_sub_explicit(&rs->ev_waiters, 1, memory_order_relaxed);
	return rs_call_end(self, r);
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
	/* seq_cst install, then seq_cst head check: pairs with
	 * emit_event()'s seq_cst head store, then fd load, so an event is
	 * either seen here or signalled there. */
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

int rs_events_read(const rs_runstate *crs, uint64_t *cursor, struct rs_event *buf, size_t n,
		   uint64_t *lost)
{
	rs_runstate *rs = (rs_runstate *)crs;
	uint64_t cap, cur, head, dropped = 0;
	bool dropped_reported = false;
	size_t got = 0;

	if (!rs || !cursor || (!buf && n))
		return RS_EINVAL;
	cap = (uint64_t)rs->ring_mask + 1;
	cur = *cursor ? *cursor : 1;
	/* Acquire: pairs with the release store of ev_head in emit_event(). */
	head = atomic_load_explicit(&rs->ev_head, memory_order_acquire);
	while (got < n && cur <= head) {
		struct rs_ev_slot *s = &rs->ring[cur & rs->ring_mask];
		uint64_t seq1, seq2, t;
		uint32_t k, w;

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
		/* Pairs with the release store of s->seq in emit_event(). */
		seq1 = atomic_load_explicit(&s->seq, memory_order_acquire);
		t = atomic_load_explicit(&s->time_ns, memory_order_relaxed);
		k = atomic_load_explicit(&s->kind, memory_order_relaxed);
		w = atomic_load_explicit(&s->word, memory_order_relaxed);
		/* Orders the copies before the re-check of seq (seqlock read). */
		atomic_thread_fence(memory_order_acquire);
		seq2 = atomic_load_explicit(&s->seq, memory_order_relaxed);
		if (seq1 != cur || seq2 != cur) {
			/* The writer is overwriting this slot: event cur is
			 * gone.  Count it lost (before any event returned). */
			if (got)
				break;
			dropped++;
			cur++;
			head = atomic_load_explicit(&rs->ev_head, memory_order_acquire);
			continue;
		}
		if (dropped && !lost && !dropped_reported) {
			/* The explicit record of the loss, first. */
			memset(&buf[got], 0, sizeof(buf[got]));
			buf[got].kind = RS_EVENT_LOST;
			buf[got].seq = cur - dropped;
			buf[got].lost = dropped;
			buf[got].time_ns = rs_now(rs);
			if (++got == n) {
				/* No room for the event itself: it is read
				 * next time; the loss is reported now. */
				break;
			}
			dropped_reported = true;
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
	if (dropped && !lost && !dropped_reported && got < n) {
		memset(&buf[got], 0, sizeof(buf[got]));
		buf[got].kind = RS_EVENT_LOST;
		buf[got].seq = cur - dropped;
		buf[got].lost = dropped;
		buf[got].time_ns = rs_now(rs);
		got++;
	}
	if (dropped)
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

/*
 * Process edges with the settle mutex held.  Stop edges up to `block_until`
 * wait for the vCPUs until `deadline`; later ones (and all of them when
 * block_until is NO_BLOCK) only check.  Returns SETTLE_DONE when the word
 * was caught up and RS_W_SETTLING cleared, SETTLE_BLOCKED when a stop edge
 * beyond block_until still has active vCPUs, RS_ETIMEDOUT.
 */
#define NO_BLOCK UINT32_MAX

static int wait_stop_edge(rs_runstate *rs, uint64_t deadline);
static uint32_t edge_word(rs_runstate *rs, uint32_t e);

static int settle_locked(rs_runstate *rs, uint32_t block_until, uint64_t deadline)
{
	for (;;) {
		uint32_t w = atomic_load_explicit(&rs->word, memory_order_seq_cst);
		uint32_t s = atomic_load_explicit(&rs->settled, memory_order_relaxed);

		if (rs_w_edge(w) == s) {
			uint32_t nw = w & ~RS_W_SETTLING;

			if (!(w & RS_W_SETTLING))
				return SETTLE_DONE;
			if (rs_w_may_run(nw))
				nw &= ~RS_W_PARKED;
			RS_DELAY(rs, "settle-clear");
			/* seq_cst: pairs with the parkers' CAS that sets
			 * RS_W_PARKED (rs_vcpu_enter()); whichever comes first
			 * in the word's order, a parked vCPU is woken or sees
			 * the word runnable. */
			if (atomic_compare_exchange_strong_explicit(&rs->word, &w, nw,
								    memory_order_seq_cst,
								    memory_order_relaxed)) {
#ifndef RS_PLANT_START_NO_WAKE
				if ((w & RS_W_PARKED) && !(nw & RS_W_PARKED))
					rs_wake_parked(rs);
#endif
				return SETTLE_DONE;
			}
			continue;
		}

		uint32_t e = rs_edge_next(s);
		uint32_t ew;

		if (rs_edge_is_stop(e)) {
			if (block_until != NO_BLOCK && rs_edge_le(e, block_until)) {
				int r = wait_stop_edge(rs, deadline);

				if (r)
					return r;
			} else if (!rs_scan_out(rs, RS_SCAN_CHECK)) {
				return SETTLE_BLOCKED;
			}
			/* Every vCPU is out: quiesce the devices, then tell
			 * management (QEMU's order). */
			ew = edge_word(rs, e);
			rs_run_listeners(rs, false, ew);
			emit_event(rs, e, ew);
		} else {
			/* RESUME first, then restart the devices; no vCPU
			 * runs before RS_W_SETTLING clears below. */
			ew = edge_word(rs, e);
			emit_event(rs, e, ew);
			rs_run_listeners(rs, true, ew);
		}
		/* Release: pairs with the acquire load of settled in
		 * settled_through(); a caller that sees its edge settled
		 * sees the vCPUs' acknowledgements too. */
		atomic_store_explicit(&rs->settled, e, memory_order_release);
	}
}

/*
 * The word made by edge e's CAS.  Its maker stores it right after the CAS
 * (note_edge()); if it has not yet, wait for it, briefly.  If 64 or more
 * edges happened since, the slot was reused: describe the edge with the
 * current word and the edge's own running flag.
 */
static uint32_t edge_word(rs_runstate *rs, uint32_t e)
{
	_Atomic uint32_t *slot = &rs->edge_word[e % RS_EDGE_WORDS];

	for (int spin = 0;; spin++) {
		/* Pairs with the release store in note_edge(). */
		uint32_t w = atomic_load_explicit(slot, memory_order_acquire);
		uint32_t we = rs_w_edge(w);

		if (we == e)
			return w;
		if (we != e && rs_edge_le(e, we)) {
			w = atomic_load_explicit(&rs->word, memory_order_acquire);
			if (rs_edge_is_stop(e) && rs_w_running(w))
				w |= (uint32_t)RS_PAUSE_PAUSED << RS_W_PAUSE_SHIFT;
			else if (!rs_edge_is_stop(e))
				w &= ~RS_W_STOPPED_MASK;
			return (w & ~RS_W_EDGE_MASK) | (e << RS_W_EDGE_SHIFT);
		}
		if (spin < 100)
			rs_cpu_relax();
		else
			sched_yield();
	}
}

/* After a CAS from old to nw: record an edge's word for the settler. */
static void note_edge(rs_runstate *rs, uint32_t old, uint32_t nw)
{
	_Atomic uint32_t *slot;
	uint32_t e = rs_w_edge(nw), cur;

	if (e == rs_w_edge(old))
		return;
	slot = &rs->edge_word[e % RS_EDGE_WORDS];
	cur = atomic_load_explicit(slot, memory_order_relaxed);
	/* Never overwrite a newer edge's word (a maker 64 edges later may
	 * have been quicker).  Release: pairs with the acquire load in
	 * edge_word(). */
	while (!(rs_w_edge(cur) != e && rs_edge_le(e, rs_w_edge(cur))) &&
	       !atomic_compare_exchange_weak_explicit(slot, &cur, nw, memory_order_release,
						      memory_order_relaxed))
		;
	if (rs_edge_is_stop(e))
		RS_STAT_INC(rs, stop_edges);
	else
		RS_STAT_INC(rs, start_edges);
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
		 * count to zero wakes us (rs_vcpu_ack()). */
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

static uint32_t load_settled(rs_runstate *rs)
{
	/* Pairs with the release store in settle_locked(). */
	return atomic_load_explicit(&rs->settled, memory_order_acquire);
}

void rs_settle_help(rs_runstate *rs)
{
	for (;;) {
		int r;

		/* Nothing unsettled: nothing to do.  This load comes after
		 * our caller's change (or unlock), so the argument below
		 * holds for it as for the re-check at the end. */
		if (!(atomic_load_explicit(&rs->word, memory_order_seq_cst) & RS_W_SETTLING))
			return;
		if (!rs_mutex_trylock(&rs->settle_mutex))
			return; /* the holder re-checks after unlocking */
		r = settle_locked(rs, NO_BLOCK, 0);
		rs_mutex_unlock(rs, &rs->settle_mutex);
		/*
		 * Re-check after unlocking: a thread whose trylock failed
		 * while we held the mutex left its edge or its
		 * acknowledgement to us.  Its change precedes its failed
		 * trylock, which precedes our unlock, which precedes these
		 * loads in the seq_cst order, so we see it.
		 */
		if (!(atomic_load_explicit(&rs->word, memory_order_seq_cst) & RS_W_SETTLING))
			return;
		/* Blocked on vCPUs: if an acknowledgement is outstanding, the
		 * vCPU that brings pending to zero does so after this load,
		 * hence after our unlock, and helps itself.  Not "no vCPU is
		 * active": a vCPU that announces and retreats (it saw the
		 * settling bit) is active for a moment without being counted,
		 * and its retreat helps nobody -- the model found this
		 * (tests/model, design spec-recheck). */
		if (r == SETTLE_BLOCKED &&
		    (atomic_load_explicit(&rs->pending, memory_order_seq_cst) & PENDING_COUNT))
			return;
	}
}

/*
 * Make sure edges up to `target` are settled, waiting for vCPUs until
 * deadline.  The caller is out if it is a vCPU thread.
 */
static int settle_through(rs_runstate *rs, uint32_t target, uint64_t deadline)
{
	int r;

	if (rs_edge_le(target, load_settled(rs)))
		return 0;
	r = rs_mutex_lock(rs, &rs->settle_mutex, deadline);
	if (r)
		return r;
	r = settle_locked(rs, target, deadline);
	rs_mutex_unlock(rs, &rs->settle_mutex);
	/* Same re-check as rs_settle_help(): hand on what arrived. */
	rs_settle_help(rs);
	if (r == RS_ETIMEDOUT)
		return r;
	return rs_edge_le(target, load_settled(rs)) ? 0 : RS_ETIMEDOUT;
}

int rs_wait(rs_runstate *rs, int64_t timeout_ns)
{
	struct rs_vcpu_impl *self;
	uint64_t deadline;
	int r = 0;

	if (!rs)
		return RS_EINVAL;
	if (timeout_ns != RS_ASYNC && (r = rs_no_wait_in_listener("rs_wait")))
		return r;
	deadline = rs_deadline(rs, timeout_ns);
	self = rs_call_begin(rs);
	for (;;) {
		uint32_t w = atomic_load_explicit(&rs->word, memory_order_acquire);

		if (!(w & RS_W_SETTLING))
			break;
		r = rs_mutex_lock(rs, &rs->settle_mutex, deadline);
		if (r)
			break;
		r = settle_locked(rs, rs_w_edge(w), deadline);
		rs_mutex_unlock(rs, &rs->settle_mutex);
		rs_settle_help(rs);
		if (r < 0)
			break;
		if (timeout_ns == RS_ASYNC)
			break;
	}
	if (r == RS_ETIMEDOUT)
		RS_STAT_INC(rs, timeouts);
	return rs_call_end(self, r < 0 ? r : 0);
}

/* ---------------------------------------------------------------------------
 * Commands
 */

static bool made_edge(uint32_t old, uint32_t nw)
{
	return rs_w_edge(old) != rs_w_edge(nw);
}

/*
 * The early wake.  A start edge with parked vCPUs need not wait for
 * settling to wake them: a futex wake-up takes microseconds to reach a
 * sleeping thread, and the settle work (the RESUME event, the clearing CAS)
 * a fraction of one, so it is done while the wake-ups are in flight.  The
 * start's own CAS then also clears RS_W_PARKED, and the starter wakes the
 * parked vCPUs right after it (releasing()).  A vCPU that wakes before
 * RS_W_SETTLING clears spins in park() and runs as soon as it clears; one
 * that gives up re-parks and sets RS_W_PARKED again, which the settling CAS
 * sees and wakes (settle_locked()): an early wake can cost a wasted wake-up,
 * never a lost one.  Decided per CAS attempt, on the word that attempt
 * replaces: a start whose CAS loses to a stop (or a lock) recomputes, and
 * wakes nobody if it no longer makes a start edge.
 *
 * Only when settling will be short and the wake-ups do not compete with it:
 * the edge is the next to settle, no listener is registered, and there are
 * fewer vCPUs than usable CPUs (oversubscribed, early-woken vCPUs compete
 * with the settling thread and many re-park: about half of them in a trial
 * with 4 vCPUs on 2 CPUs).  The loads are hints.
 */
static bool wake_early(rs_runstate *rs, uint32_t old, uint32_t nw)
{
#ifdef RS_PLANT_START_NO_WAKE
	(void)rs, (void)old, (void)nw;
	return false;
#else
	if (!made_edge(old, nw) || !(nw & RS_W_PARKED))
		return false;
	if (atomic_load_explicit(&rs->nlisteners, memory_order_relaxed) ||
	    rs_edge_next(atomic_load_explicit(&rs->settled, memory_order_relaxed)) != rs_w_edge(nw) ||
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
 * settling CAS with the parkers' CAS that sets it (park()): the wave that
 * follows wakes every vCPU that set it before.  early: NULL, or where to
 * say that the caller must start that wave.
 */
static int apply(rs_runstate *rs, enum rs_cmd cmd, int arg, int arg2, uint32_t *oldp,
		 uint32_t *newp, bool *early)
{
	/* Acquire: if nothing changes, this load is the command's read. */
	uint32_t old = atomic_load_explicit(&rs->word, memory_order_acquire);

	for (;;) {
		uint32_t nw;
		bool wake = false;
		int err = rs_transition(old, cmd, arg, arg2, &nw);

		if (err)
			return err;
		if (nw == old)
			break;
		if (early && (wake = wake_early(rs, old, nw)))
			nw &= ~RS_W_PARKED;
		RS_DELAY(rs, "command-cas");
		if (atomic_compare_exchange_weak_explicit(&rs->word, &old, nw, memory_order_seq_cst,
							  memory_order_acquire)) {
			note_edge(rs, old, nw);
			*oldp = old;
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
static int finish(rs_runstate *rs, uint32_t old, uint32_t nw, int64_t timeout_ns,
		  struct rs_vcpu_impl *self, uint64_t deadline)
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
		r = settle_through(rs, rs_w_edge(nw), deadline);
	if (r == RS_ETIMEDOUT)
		RS_STAT_INC(rs, timeouts);
	return rs_call_end(self, r);
}

/* A stopping command: the CAS, then wait or help. */
static int stopping(rs_runstate *rs, enum rs_cmd cmd, int arg, int arg2, int64_t timeout_ns)
{
	struct rs_vcpu_impl *self = NULL;
	uint64_t deadline = 0;
	uint32_t old, nw;
	int r;

	if (!rs)
		return RS_EINVAL;
	if (timeout_ns != RS_ASYNC) {
		if ((r = rs_no_wait_in_listener("a synchronous stopping call")))
			return r;
		deadline = rs_deadline(rs, timeout_ns);
		/* A vCPU thread that will block counts as out from here. */
		self = rs_call_begin(rs);
	}
	r = apply(rs, cmd, arg, arg2, &old, &nw, NULL);
	if (r)
		return rs_call_end(self, r);
	return finish(rs, old, nw, timeout_ns, self, deadline);
}

/* A command that cannot stop the VM: the CAS (waking early if it can),
 * then help settle. */
static int releasing(rs_runstate *rs, enum rs_cmd cmd, int arg)
{
	uint32_t old, nw;
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
	uint32_t w = atomic_load_explicit(&rs->word, memory_order_relaxed);

	while (!atomic_compare_exchange_weak_explicit(&rs->word, &w, w & ~RS_W_LOCKWAIT,
						      memory_order_seq_cst, memory_order_relaxed))
		;
}

/* Take bit r waiting up to deadline; 0 or RS_EBUSY.  *oldp and *newp get the CAS. */
static int lock_wait(rs_runstate *rs, enum rs_lock r, uint64_t deadline, uint32_t *oldp,
		     uint32_t *newp)
{
	int err = 0;
	uint32_t g, my;

	if (rs_mutex_lock(rs, &rs->lockq_mutex, deadline))
		return RS_EBUSY;
	/* Under lockq_mutex: either take the bit or, in the same CAS that
	 * sees it held, tell every future unlock to hand it over. */
	for (uint32_t w = atomic_load_explicit(&rs->word, memory_order_acquire);;) {
		uint32_t nw;

		if (!(w & RS_W_LOCK(r))) {
			rs_transition(w, RS_CMD_LOCK, r, 0, &nw);
			if (atomic_compare_exchange_weak_explicit(&rs->word, &w, nw,
								  memory_order_seq_cst,
								  memory_order_acquire)) {
				note_edge(rs, w, nw);
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
	struct rs_vcpu_impl *self = NULL;
	uint64_t deadline = 0;
	uint32_t old, nw;
	int err;

	if (!rs || r < 0 || r >= RS_LOCK_COUNT)
		return RS_EINVAL;
	if (timeout_ns != RS_ASYNC) {
		if ((err = rs_no_wait_in_listener("rs_lock/rs_trylock that waits")))
			return err;
		deadline = rs_deadline(rs, timeout_ns);
		self = rs_call_begin(rs);
	}
	err = apply(rs, RS_CMD_LOCK, r, 0, &old, &nw, NULL);
	if (err == RS_EBUSY && !try && timeout_ns != RS_ASYNC)
		err = lock_wait(rs, r, deadline, &old, &nw);
	if (err)
		return rs_call_end(self, err);
	return finish(rs, old, nw, timeout_ns, self, deadline);
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
static int unlock_common(rs_runstate *rs, enum rs_lock r, enum rs_pause p, uint32_t *oldp,
			 uint32_t *newp)
{
	uint32_t w = atomic_load_explicit(&rs->word, memory_order_acquire), nw;
	int err;

	for (;;) {
		err = rs_transition(w, RS_CMD_UNLOCK, r, p, &nw);
		if (err)
			return err;
		if (w & RS_W_LOCKWAIT)
			break;
		RS_DELAY(rs, "unlock-cas");
		if (atomic_compare_exchange_weak_explicit(&rs->word, &w, nw, memory_order_seq_cst,
							  memory_order_acquire)) {
			note_edge(rs, w, nw);
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
		err = rs_transition(w, RS_CMD_UNLOCK, r, p, &nw);
		if (err)
			break;
		if (rs->lock_waiters[r]) {
			/* Hand over: the bit stays set; only the pause reason
			 * (if any) is applied. */
			if (p != RS_PAUSE_NONE)
				rs_transition(w, RS_CMD_PAUSE, p, 0, &nw);
			else
				nw = w;
		}
		if (nw == w)
			break;
		if (atomic_compare_exchange_weak_explicit(&rs->word, &w, nw, memory_order_seq_cst,
							  memory_order_acquire)) {
			note_edge(rs, w, nw);
			break;
		}
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
	uint32_t old, nw;
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
	struct rs_vcpu_impl *self = NULL;
	uint64_t deadline = 0;
	uint32_t old, nw;
	int err;

	if (!rs || p <= RS_PAUSE_NONE || p >= RS_PAUSE_COUNT)
		return RS_EINVAL;
	if (timeout_ns != RS_ASYNC) {
		if ((err = rs_no_wait_in_listener("a synchronous rs_unlock_pause")))
			return err;
		deadline = rs_deadline(rs, timeout_ns);
		self = rs_call_begin(rs);
	}
	err = unlock_common(rs, r, p, &old, &nw);
	if (err)
		return rs_call_end(self, err);
	return finish(rs, old, nw, timeout_ns, self, deadline);
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
	uint32_t w;
	unsigned reg, out;

	if (!rs || (!buf && len))
		return RS_EINVAL;
	if (len)
		buf[0] = 0;
	w = rs_word(rs);
	rs_decode(w, &s);
	dprint(&d, "word 0x%08x: %s, edge %u, locks=", w, s.running ? "running" : "stopped",
	       s.edge);
	for (int i = 0; i < RS_LOCK_COUNT; i++)
		if (s.locks & (1u << i))
			dprint(&d, "%s,", rs_lock_name(i));
	dprint(&d, "%s pause=%s legacy=%s%s%s%s\n", s.io_error ? "io-error" : "-",
	       rs_pause_name(s.pause), rs_legacy_status(w), s.settling ? " settling" : "",
	       w & RS_W_PARKED ? " parked" : "", w & RS_W_LOCKWAIT ? " lockwait" : "");
	dprint(&d, "settled edge %u, events %llu, pending acks %u%s\n",
	       atomic_load_explicit(&rs->settled, memory_order_acquire),
	       (unsigned long long)atomic_load_explicit(&rs->ev_head, memory_order_acquire),
	       atomic_load_explicit(&rs->pending, memory_order_relaxed) & PENDING_COUNT,
	       atomic_load_explicit(&rs->settle_mutex, memory_order_relaxed) ? ", settler busy" : "");
	rs_get_stats(rs, &st);
	dprint(&d, "stats: stop-edges %llu start-edges %llu parks %llu wakes %llu kicks %llu "
	       "rekicks %llu timeouts %llu events-lost %llu listener-runs %llu\n",
	       (unsigned long long)st.stop_edges, (unsigned long long)st.start_edges,
	       (unsigned long long)st.parks, (unsigned long long)st.wakes,
	       (unsigned long long)st.kicks, (unsigned long long)st.rekicks,
	       (unsigned long long)st.timeouts, (unsigned long long)st.events_lost,
	       (unsigned long long)st.listener_runs);
	rs_vcpu_count(rs, &reg, &out);
	dprint(&d, "vcpus: %u registered, %u out\n", reg, out);
	rs_vcpu_foreach(rs, dump_vcpu, &d);
	return d.need > INT_MAX ? INT_MAX : (int)d.need;
}

/* SPDX-License-Identifier: MIT */
/*
 * The event ring.  The settle mutex holder produces records in edge order
 * (rs_events_emit()); readers copy them out with their own cursors and are
 * told of every record they missed, never shown a gap.  Producing never
 * waits for readers: a slot is a small seqlock, written by one producer
 * and validated by each reader after copying.
 *
 * Pairings, both sides here: the slot's seq store (release) and the
 * reader's loads around its copy (acquire, fence, re-check); head's store
 * and the readers' acquire loads of it; the blocked reader's count and
 * head load against the producer's futex-word store and waiter count
 * (store buffering, seq_cst both sides); the eventfd's install against the
 * producer's head store then fd load (likewise).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "instance.h"

int rs_events_init(struct rs_instance *ri, unsigned capacity)
{
	ri->ev.ring = calloc(capacity, sizeof(*ri->ev.ring));
	if (!ri->ev.ring)
		return RS_ENOMEM;
	ri->ev.mask = capacity - 1;
	atomic_init(&ri->ev.fd, -1);
	return 0;
}

void rs_events_destroy(struct rs_instance *ri)
{
	int fd = atomic_load_explicit(&ri->ev.fd, memory_order_relaxed);

	if (fd >= 0)
		close(fd);
	free(ri->ev.ring);
	ri->ev.ring = NULL;
}

/*
 * Produce a record: an event (count 1) or, for a coalesced run, an
 * RS_EVENT_LOST record covering the count edges from seq on.  It occupies
 * the ring slot of its first seq; readers skip the rest of its range.
 */
void rs_events_emit(struct rs_instance *ri, uint64_t seq, uint64_t count,
		    enum rs_event_kind kind, uint64_t word)
{
	/* Only the settle mutex holder produces: ev.head has one writer. */
	struct rs_ev_slot *s = &ri->ev.ring[seq & ri->ev.mask];
	uint64_t head = seq + count - 1;

	/* Seqlock-style slot: mark it invalid, fill it, then publish the
	 * seq with release.  Pairs with the acquire loads in
	 * rs_events_read(), which re-check seq after copying. */
	atomic_store_explicit(&s->seq, 0, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&s->time_ns, rs_now(ri), memory_order_relaxed);
	atomic_store_explicit(&s->kind, kind, memory_order_relaxed);
	atomic_store_explicit(&s->word, word, memory_order_relaxed);
	atomic_store_explicit(&s->count, count, memory_order_relaxed);
	atomic_store_explicit(&s->seq, seq, memory_order_release);
	/* Release (seq_cst): pairs with the acquire load of ev.head in
	 * readers, and with rs_events_fd()'s head check. */
	atomic_store_explicit(&ri->ev.head, head, memory_order_seq_cst);

	/* Blocked readers: store the futex word, then look for waiters;
	 * rs_events_wait() counts itself, then loads ev.head (seq_cst
	 * both sides: one of the two sees the other). */
	atomic_store_explicit(&ri->ev.seq32, (uint32_t)head, memory_order_seq_cst);
	if (atomic_load_explicit(&ri->ev.waiters, memory_order_seq_cst))
		rs_futex_wake(ri, &ri->ev.seq32, INT_MAX);
	{
		/* seq_cst: against rs_events_fd()'s install then head
		 * check (store buffering): one of the two sees the other. */
		int fd = atomic_load_explicit(&ri->ev.fd, memory_order_seq_cst);
		uint64_t one = 1;

		/* Non-blocking: a full counter (2^64 - 2 unread) just
		 * stays readable. */
		if (fd >= 0 && write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			rs_fatal("eventfd write", -errno);
	}
}

int rs_events_wait(rs_runstate *rs, uint64_t cursor, int64_t timeout_ns)
{
	struct rs_instance *ri = rs_inst(rs);
	uint64_t deadline;
	int r = 0;

	if (!rs)
		return RS_EINVAL;
	if (timeout_ns == RS_ASYNC)
		return atomic_load_explicit(&ri->ev.head, memory_order_acquire) >= cursor ?
			       0 : RS_ETIMEDOUT;
	if ((r = rs_no_wait_in_listener()))
		return r;
	deadline = rs_deadline(ri, timeout_ns);
	rs_vcpu_thread_out(ri);   /* a vCPU thread that may block is out */
	atomic_fetch_add_explicit(&ri->ev.waiters, 1, memory_order_seq_cst);
	for (;;) {
		uint64_t head = atomic_load_explicit(&ri->ev.head, memory_order_seq_cst);
		int64_t left;

		if (head >= cursor)
			break;
		left = rs_remaining(ri, deadline);
		if (left == 0) {
			r = RS_ETIMEDOUT;
			break;
		}
		rs_futex_wait(ri, &ri->ev.seq32, (uint32_t)head, left);
	}
	/* Release: orders this waiter's reads before a producer's check
	 * that finds it gone (only the count matters to the producer). */
	atomic_fetch_sub_explicit(&ri->ev.waiters, 1, memory_order_release);
	return r;
}

int rs_events_fd(rs_runstate *rs)
{
	struct rs_instance *ri = rs_inst(rs);
	int fd, expect = -1;

	if (!rs)
		return RS_EINVAL;
	fd = atomic_load_explicit(&ri->ev.fd, memory_order_acquire);
	if (fd >= 0)
		return fd;
	fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* seq_cst install, then seq_cst head check: pairs with rs_events_emit()'s
	 * seq_cst head store, then fd load, so an event is either seen
	 * here or signalled there. */
	if (!atomic_compare_exchange_strong_explicit(&ri->ev.fd, &expect, fd,
						     memory_order_seq_cst, memory_order_acquire)) {
		close(fd);
		return expect;
	}
	/* Events produced before the fd existed are pending too. */
	if (atomic_load_explicit(&ri->ev.head, memory_order_seq_cst)) {
		uint64_t one = 1;

		if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			return -errno;
	}
	return fd;
}

RS_HOT uint64_t rs_events_cursor(const rs_runstate *rs)
{
	return rs ? rs_events_head(rs_inst(rs)) + 1 : 0;
}

uint64_t rs_events_head(struct rs_instance *ri)
{
	/* Acquire: pairs with the release store of head in
	 * rs_events_emit(). */
	return atomic_load_explicit(&ri->ev.head, memory_order_acquire);
}

/* One record, as the library knows it, copied into the caller's record of
 * event_size bytes: the fields both know, and zeros in what only the
 * caller knows.  The decoded state carries the size that fits. */
static void put_record(struct rs_event *e, void *dst, size_t event_size)
{
	size_t room = event_size - offsetof(struct rs_event, state);

	e->state.size = (uint32_t)(room < sizeof(e->state) ? room : sizeof(e->state));
	if (event_size <= sizeof(*e)) {
		memcpy(dst, e, event_size);
	} else {
		memcpy(dst, e, sizeof(*e));
		memset((char *)dst + sizeof(*e), 0, event_size - sizeof(*e));
	}
}

/* The record of `dropped` events lost from seq `first` on. */
static void lost_record(struct rs_instance *ri, struct rs_event *e, uint64_t first,
			uint64_t dropped)
{
	memset(e, 0, sizeof(*e));
	e->kind = RS_EVENT_LOST;
	e->seq = first;
	e->lost = dropped;
	e->time_ns = rs_now(ri);
}

int rs_events_read(const rs_runstate *rs, uint64_t *cursor, struct rs_event *buf, size_t n,
		   size_t event_size, uint64_t *lost)
{
	struct rs_instance *ri = rs_inst(rs);
	char *out = (char *)buf;
	struct rs_event e;
	uint64_t cap, cur, head, dropped = 0;
	size_t got = 0;

	if (!rs || !cursor || (!buf && n) || event_size < RS_EVENT_SIZE_0_9)
		return RS_EINVAL;
	cap = (uint64_t)ri->ev.mask + 1;
	cur = *cursor ? *cursor : 1;
	head = rs_events_head(ri);
	while (got < n && cur <= head) {
		struct rs_ev_slot *s = &ri->ev.ring[cur & ri->ev.mask];
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
		/* Pairs with the release store of s->seq in rs_events_emit(). */
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
			head = rs_events_head(ri);
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
			lost_record(ri, &e, cur - dropped, dropped);
			put_record(&e, out + got * event_size, event_size);
			atomic_fetch_add_explicit(&ri->stats.events_lost, dropped,
						  memory_order_relaxed);
			dropped = 0;
			if (++got == n)
				break;  /* the event itself comes next time */
		}
		memset(&e, 0, sizeof(e));
		e.seq = cur;
		e.time_ns = t;
		e.kind = (enum rs_event_kind)k;
		e.word = w;
		rs_decode_into(w, &e.state);
		put_record(&e, out + got * event_size, event_size);
		got++;
		cur++;
	}
	if (dropped && !lost && got < n) {
		lost_record(ri, &e, cur - dropped, dropped);
		put_record(&e, out + got++ * event_size, event_size);
		atomic_fetch_add_explicit(&ri->stats.events_lost, dropped, memory_order_relaxed);
		dropped = 0;
	}
	if (dropped)   /* reported through *lost (no room is impossible: got < n) */
		atomic_fetch_add_explicit(&ri->stats.events_lost, dropped, memory_order_relaxed);
	*cursor = cur;
	if (lost)
		*lost = dropped;
	return (int)got;
}

/* SPDX-License-Identifier: MIT */
/*
 * events.c: the event ring.  One producer at a time (the settle mutex
 * holder), any number of readers, each with its own cursor.
 */
#ifndef RS_EVENTS_H
#define RS_EVENTS_H

struct rs_ev_slot {
	_Atomic uint64_t seq;   /* seq of the event held, 0 while written */
	_Atomic uint64_t time_ns;
	_Atomic uint64_t word;
	_Atomic uint64_t count; /* RS_EVENT_LOST: the edges it covers; else 1 */
	_Atomic uint32_t kind;
};

struct rs_events {
	_Atomic uint64_t head;     /* seq of the newest record */
	_Atomic uint32_t seq32;    /* low bits of head: the futex */
	_Atomic uint32_t waiters;  /* threads in rs_events_wait() */
	_Atomic int fd;            /* eventfd, -1 until asked for */
	uint32_t mask;             /* capacity - 1 */
	struct rs_ev_slot *ring;
};

RS_HIDDEN int rs_events_init(struct rs_instance *ri, unsigned capacity);
RS_HIDDEN void rs_events_destroy(struct rs_instance *ri);
/* Produce a record (settle mutex held): an event (count 1) or, for a
 * coalesced run, an RS_EVENT_LOST record of count edges from seq on. */
RS_HIDDEN void rs_events_emit(struct rs_instance *ri, uint64_t seq, uint64_t count,
			      enum rs_event_kind kind, uint64_t word);
/* The newest record's seq (acquire). */
RS_HIDDEN uint64_t rs_events_head(struct rs_instance *ri);

#endif

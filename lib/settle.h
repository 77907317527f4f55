/* SPDX-License-Identifier: MIT */
/*
 * settle.c: the backlog.  Every CAS that may make an edge (rs_edge_cas())
 * and the settler that takes the edges off the backlog in order, waiting
 * for the vCPUs of stop edges, producing events and running listeners.
 */
#ifndef RS_SETTLE_H
#define RS_SETTLE_H

/* The words made by the edges in the backlog, for listeners and events: the
 * edge maker stores its new word in edge_word[edge % RS_EDGE_WORDS].  The
 * backlog never holds more than RS_W_BACKLOG_MAX edges, so no slot is
 * reused before its edge has settled. */
#define RS_EDGE_WORDS 128
_Static_assert(RS_EDGE_WORDS > RS_W_BACKLOG_MAX && !(RS_EDGE_WORDS & (RS_EDGE_WORDS - 1)),
	       "a slot per backlog entry, indexable modulo 2^32");

struct rs_settle {
	/* The settle mutex serializes the processing of the backlog; it is
	 * held by the thread that waits for the vCPUs of a stop edge.
	 * settled is the edge counter of the last entry settled (written
	 * under the mutex, read anywhere).  The rest is the settler's own,
	 * under the mutex: settled_seq, the event number of that entry's
	 * last edge; coalesced[g], the coalesced edges of generation g
	 * accounted for so far (absorb()); synth_*, the run of coalesced
	 * edges that is the backlog's first entry after an absorb: its edge
	 * counter, its number of edges, the word at the absorb. */
	_Atomic uint32_t mutex;
	_Atomic uint32_t settled;
	uint64_t settled_seq;
	uint64_t coalesced[2];
	bool synth;
	uint32_t synth_edge;
	uint64_t synth_n, synth_word;

	/* Written by edge makers and read by the settler, usually the same
	 * thread. */
	_Alignas(RS_LINE) _Atomic uint64_t edge_word[RS_EDGE_WORDS];
	/* Coalesced edges, by generation (RS_W_COAL_GEN): their makers count
	 * themselves in flight before their CAS, and made after it
	 * (rs_edge_cas()); only while the backlog overflows. */
	_Alignas(RS_LINE) _Atomic uint64_t coalesced_made[2];
	_Atomic uint32_t coalesce_inflight[2];
};

RS_HIDDEN void rs_settle_init(struct rs_instance *ri);
/* Every CAS of the word that may make an edge (seq_cst, weak): *old is the
 * expected word, updated on failure. */
RS_HIDDEN bool rs_edge_cas(struct rs_instance *ri, uint64_t *old, uint64_t nw);
/* Help settle without waiting (try the mutex, process what needs no
 * waiting, unlock, re-check).  After any change that may leave work. */
RS_HIDDEN void rs_settle_help(struct rs_instance *ri);
/* The edge a stopping call waits for, from the word its change made. */
RS_HIDDEN uint32_t rs_settle_target(uint64_t w);
/* Settle through edge t, waiting for vCPUs until deadline: 0 or
 * RS_ETIMEDOUT.  The caller is out if it is a vCPU thread. */
RS_HIDDEN int rs_settle_through(struct rs_instance *ri, uint32_t t, uint64_t deadline);
/* For rs_get_stats() and rs_dump(). */
RS_HIDDEN uint64_t rs_settle_coalesced(struct rs_instance *ri);
RS_HIDDEN uint32_t rs_settle_settled(struct rs_instance *ri);
RS_HIDDEN bool rs_settle_busy(struct rs_instance *ri);

#endif
